//! What ebtables' matches read that nf_tables' expressions do not (reference side of
//! [`super::Insn::PayloadIndexed`] and [`super::Insn::Ip6SkipExthdr`]).

/// A [`super::Insn::PayloadIndexed`] load ends at most this many bytes after the
/// network header (ebt_arp's destination address: 8 + 2 * 255 + 4 + 4), well inside
/// the BPF program's header copy (`NS_RES_HDR_MAX`).
pub const MAX_INDEXED_END: u32 = 1024;

/// ipv6_skip_exthdr() on the datagram `ip` from the end of its fixed header, with the
/// next header of that header: (the header type it stops at, its offset), or `None`
/// (-1: "no next header", or a header cut short). The walk has no bound but the packet;
/// a later fragment stops it at the fragment header, whose type is then the result.
pub fn ipv6_skip_exthdr(ip: &[u8]) -> Option<(u8, usize)> {
    let mut next = *ip.get(6)?;
    let mut start = 40usize;
    while matches!(next, 0 | 43 | 44 | 51 | 59 | 60) {
        if next == 59 {
            return None;
        }
        let hp = ip.get(start..start + 2)?;
        let hdrlen = match next {
            44 => {
                let fo = ip.get(start + 2..start + 4)?;
                if u16::from_be_bytes([fo[0], fo[1]]) & !7 != 0 {
                    break;
                }
                8
            }
            51 => (hp[1] as usize + 2) * 4,
            _ => (hp[1] as usize + 1) * 8,
        };
        next = hp[0];
        start += hdrlen;
    }
    Some((next, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv6(next: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = next;
        p.extend_from_slice(ext);
        p
    }

    #[test]
    fn skips_options_and_stops_at_later_fragments_and_none() {
        // Hop-by-hop (8 bytes) then TCP.
        let mut hbh = vec![6u8, 0, 0, 0, 0, 0, 0, 0];
        hbh.extend_from_slice(&[0; 20]);
        assert_eq!(ipv6_skip_exthdr(&ipv6(0, &hbh)), Some((6, 48)));
        // A first fragment is stepped over; a later one stops the walk on itself.
        let first = [17u8, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(ipv6_skip_exthdr(&ipv6(44, &first)), Some((17, 48)));
        let later = [17u8, 0, 0, 8, 0, 0, 0, 0];
        assert_eq!(ipv6_skip_exthdr(&ipv6(44, &later)), Some((44, 40)));
        assert_eq!(ipv6_skip_exthdr(&ipv6(59, &[])), None);
        // A header cut short.
        assert_eq!(ipv6_skip_exthdr(&ipv6(60, &[6])), None);
        // No extension header: the transport header right after.
        assert_eq!(ipv6_skip_exthdr(&ipv6(58, &[])), Some((58, 40)));
    }
}
