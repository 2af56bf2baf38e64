//! The reference of the residual operations that run one xtables match's own walk
//! (net/netfilter/xt_sctp.c, xt_dccp.c), written from the kernel's code. Unlike nft's
//! expressions these may drop the packet outright: an xtables match that meets a
//! malformed header sets `par->hotdrop`, and nft_compat then gives NF_DROP.

use super::{store, Headers, Insn, Outcome, REGS_LEN};

/// `XT_NUM_SCTP_FLAGS`: chunk flag tests an xt_sctp match carries at most.
pub const SCTP_MAX_FLAGS: usize = 4;

/// `chunk_match_type` of `struct xt_sctp_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SctpChunkMatch {
    /// `SCTP_CHUNK_MATCH_ANY`: some chunk of a type in the map passes its flag test.
    Any,
    /// `SCTP_CHUNK_MATCH_ALL`: every type in the map has a chunk that passes.
    All,
    /// `SCTP_CHUNK_MATCH_ONLY`: every chunk's type is in the map and passes.
    Only,
    /// Any other value checkentry lets through (more than one of the bits): the walk
    /// runs (and may drop) but never matches.
    Other,
}

/// xt_sctp's `--chunk-types` test.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SctpChunks {
    pub kind: SctpChunkMatch,
    /// `XT_SCTP_CHUNK_TYPES` in invflags.
    pub invert: bool,
    /// The chunk types: bit `t % 8` of byte `t / 8`.
    pub map: [u8; 32],
    /// The kernel's chunkmap has bits set past type 255 (its words 8 to 63, which no
    /// chunk clears): `All` never holds.
    pub map_beyond: bool,
    /// `flag_info[..flag_count]`: (chunk type, flags, flag mask); the first entry of a
    /// chunk's type decides (match_flags()).
    pub flags: Vec<(u8, u8, u8)>,
}

impl SctpChunks {
    fn has(map: &[u8; 32], t: u8) -> bool {
        map[t as usize / 8] & (1 << (t % 8)) != 0
    }

    fn flags_pass(&self, t: u8, chunk_flags: u8) -> bool {
        match self.flags.iter().find(|(ft, ..)| *ft == t) {
            Some((_, flag, mask)) => chunk_flags & mask == *flag,
            None => true,
        }
    }

    /// match_packet() from the first chunk at `start` to `end`: `None` drops.
    fn matches(&self, packet: &[u8], start: usize) -> Option<bool> {
        let end = packet.len();
        let mut left = self.map;
        let mut off = start;
        loop {
            let hdr = packet.get(off..off + 4)?;
            let clen = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
            if clen == 0 {
                return None;
            }
            off += (clen + 3) & !3;
            let (t, flags) = (hdr[0], hdr[1]);
            if Self::has(&self.map, t) {
                let pass = self.flags_pass(t, flags);
                match self.kind {
                    SctpChunkMatch::Any if pass => return Some(true),
                    SctpChunkMatch::All if pass => left[t as usize / 8] &= !(1 << (t % 8)),
                    SctpChunkMatch::Only if !pass => return Some(false),
                    _ => {}
                }
            } else if self.kind == SctpChunkMatch::Only {
                return Some(false);
            }
            if off >= end {
                break;
            }
        }
        Some(match self.kind {
            SctpChunkMatch::All => left == [0; 32] && !self.map_beyond,
            SctpChunkMatch::Only => true,
            SctpChunkMatch::Any | SctpChunkMatch::Other => false,
        })
    }
}

/// `__dccp_hdr_len()`: the generic header (12 bytes, 16 with extended sequence
/// numbers) and the part of the packet type.
pub fn dccp_header_len(byte8: u8) -> usize {
    let extended = byte8 & 1 != 0;
    let typed = match (byte8 >> 1) & 0xf {
        2 => 0,                     // DATA
        3 | 4 | 5 | 6 | 8 | 9 => 8, // ACK, DATAACK, CLOSEREQ, CLOSE, SYNC, SYNCACK
        0 => 4,                     // REQUEST: service code
        _ => 12,                    // RESPONSE, RESET and the rest (dccp_hdr_reset)
    };
    12 + if extended { 4 } else { 0 } + typed
}

/// dccp_find_option() on the header at `th`: `None` drops.
fn dccp_find_option(packet: &[u8], th: usize, option: u8) -> Option<bool> {
    let h = packet.get(th..th + 12)?;
    let (doff, hdrlen) = (h[4] as usize * 4, dccp_header_len(h[8]));
    if doff < hdrlen {
        return None;
    }
    let optlen = doff - hdrlen;
    if optlen == 0 {
        return Some(false);
    }
    let op = packet.get(th + hdrlen..th + doff)?;
    let mut i = 0;
    while i < optlen {
        if op[i] == option {
            return Some(true);
        }
        if op[i] < 2 {
            i += 1;
            continue;
        }
        // A length byte past the options ends the walk (older kernels read the byte
        // after them and step past the end all the same).
        if i + 1 >= optlen {
            break;
        }
        i += (op[i + 1] as usize).max(1);
    }
    Some(false)
}

/// `struct ip6t_opts`' `opts[]`: options an `--hbh-opts` / `--dst-opts` lists at most.
pub const IPV6_MAX_OPTS: usize = 16;

/// hbh_mt6()'s strict walk of the options header `hdr` (all of it, as its length
/// field gives): the options from byte 2 are `opts` in order. A type that differs or
/// a length that differs (0xff: any) fails; so does running out of the header before
/// every option of the rule is seen, or an option (but the rule's last) that runs past
/// the header. The kernel's test against skb->len follows from the header being in
/// the packet whole.
pub fn ipv6_options_match(hdr: &[u8], opts: &[(u8, u8)]) -> bool {
    let mut ptr = 2usize;
    let mut left = hdr.len().saturating_sub(2);
    for (i, &(want_type, want_len)) in opts.iter().enumerate() {
        let Some(&t) = hdr.get(ptr).filter(|_| left >= 1) else {
            return false;
        };
        if t != want_type {
            return false;
        }
        let optlen = if t == 0 {
            1
        } else {
            let Some(&l) = hdr.get(ptr + 1).filter(|_| left >= 2) else {
                return false;
            };
            if want_len != 0xff && want_len != l {
                return false;
            }
            l as usize + 2
        };
        if left < optlen && i + 1 < opts.len() {
            return false;
        }
        ptr += optlen;
        left = left.saturating_sub(optlen);
    }
    true
}

/// ip6t_ipv6header's bits (linux/netfilter_ipv6/ip6t_ipv6header.h).
pub mod ipv6header_mask {
    pub const HOPOPTS: u8 = 0x80;
    pub const DSTOPTS: u8 = 0x40;
    pub const ROUTING: u8 = 0x20;
    pub const FRAGMENT: u8 = 0x10;
    pub const AH: u8 = 0x08;
    pub const ESP: u8 = 0x04;
    pub const NONE: u8 = 0x02;
    pub const PROTO: u8 = 0x01;
}

/// ipv6header_mt6()'s walk over the datagram `ip` (skb->len bytes from the network
/// header): from the fixed header's next header, while the type is one of
/// ip6t_ext_hdr()'s (hop-by-hop, routing, fragment, ESP, AH, none, destination
/// options), a bit per type. "No next header" stops the walk first; fewer than 2
/// bytes left fails the match (`None`: the kernel returns false, inversions
/// notwithstanding); ESP stops the walk after that length test. A fragment header
/// counts 8 bytes (later fragments are walked on too), AH (length + 2) * 4, the
/// others (length + 1) * 8; a header running past the packet stops the walk with its
/// next header field. A walk that does not end on "none" or ESP sets PROTO.
pub fn ipv6_header_types(ip: &[u8]) -> Option<u8> {
    use ipv6header_mask as m;
    // The kernel reads ipv6_hdr()'s next header without a length check; every IPv6
    // packet at the hooks has its 40 bytes.
    let mut next = *ip.get(6)?;
    let mut ptr = 40usize;
    let mut temp = 0u8;
    while matches!(next, 0 | 43 | 44 | 50 | 51 | 59 | 60) {
        if next == 59 {
            temp |= m::NONE;
            break;
        }
        // `len` is skb->len - ptr, and ptr never passes skb->len inside the loop.
        let hp = ip.get(ptr..ptr + 2)?;
        if next == 50 {
            temp |= m::ESP;
            break;
        }
        let hdrlen = match next {
            44 => 8,
            51 => (hp[1] as usize + 2) << 2,
            _ => (hp[1] as usize + 1) << 3,
        };
        temp |= match next {
            0 => m::HOPOPTS,
            43 => m::ROUTING,
            44 => m::FRAGMENT,
            51 => m::AH,
            _ => m::DSTOPTS,
        };
        next = hp[0];
        ptr += hdrlen;
        if ptr > ip.len() {
            break;
        }
    }
    if next != 59 && next != 50 {
        temp |= m::PROTO;
    }
    Some(temp)
}

impl Insn {
    /// Whether the operation may drop the packet ([`Outcome::Drops`]).
    pub fn can_drop(&self) -> bool {
        matches!(
            self,
            Insn::XtTransportHeader { .. }
                | Insn::XtSctpChunks(_)
                | Insn::XtDccpOption { .. }
                | Insn::XtDropUnless { .. }
                | Insn::XtIpv6Header { drops: true, .. }
                | Insn::XtConnlimitTuple
        )
    }
}

/// Why ipv6_find_hdr() found no header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NotFound {
    /// -ENOENT: the header is not there.
    Absent,
    /// -EBADMSG: an extension header on the way is cut short.
    Malformed,
}

/// ipv6_find_hdr() with a target (no flags, no fragment offset wanted) over the
/// datagram `ip`: the offset of the header of type `target`.
fn ipv6_find_hdr(ip: &[u8], target: u8) -> Result<usize, NotFound> {
    // The kernel reads ipv6_hdr()'s next header without a length check; every IPv6
    // packet at the hooks has its 40 bytes.
    let mut next = *ip.get(6).ok_or(NotFound::Malformed)?;
    let mut start = 40usize;
    loop {
        let found = next == target;
        if !matches!(next, 0 | 43 | 44 | 51 | 60) {
            return if found {
                Ok(start)
            } else {
                Err(NotFound::Absent)
            };
        }
        let hp = ip.get(start..start + 2).ok_or(NotFound::Malformed)?;
        if next == 43 {
            ip.get(start..start + 4).ok_or(NotFound::Malformed)?;
        }
        let hdrlen = match next {
            44 => {
                let fo = ip.get(start + 2..start + 4).ok_or(NotFound::Malformed)?;
                if u16::from_be_bytes([fo[0], fo[1]]) & !7 != 0 {
                    return if found {
                        Ok(start)
                    } else {
                        Err(NotFound::Absent)
                    };
                }
                8
            }
            51 => (hp[1] as usize + 2) * 4,
            _ => (hp[1] as usize + 1) * 8,
        };
        if found {
            return Ok(start);
        }
        next = hp[0];
        start += hdrlen;
    }
}

/// Runs an xt operation (`None`: not one).
pub(super) fn step(insn: &Insn, regs: &mut [u8; REGS_LEN], h: &Headers) -> Option<Outcome> {
    // The transport header of a packet that is not a later fragment.
    let th = h.transport.filter(|_| !h.later_fragment);
    let result = |found: Option<bool>, invert: bool| match found {
        None => Outcome::Drops,
        Some(f) if f != invert => Outcome::Holds,
        Some(_) => Outcome::Breaks,
    };
    Some(match insn {
        Insn::XtTransportHeader { len } => match th {
            None => Outcome::Breaks,
            Some(th) if th + *len as usize > h.network.len() => Outcome::Drops,
            Some(_) => Outcome::Holds,
        },
        Insn::XtSctpChunks(c) => match th {
            None => Outcome::Breaks,
            Some(th) => result(c.matches(&h.network, th + 12), c.invert),
        },
        Insn::XtDccpOption { option, invert } => match th {
            None => Outcome::Breaks,
            Some(th) => result(dccp_find_option(&h.network, th, *option), *invert),
        },
        Insn::XtDropUnless { sreg, data } => {
            let got = &regs[*sreg as usize..*sreg as usize + data.len()];
            if got == data.as_slice() {
                Outcome::Holds
            } else {
                Outcome::Drops
            }
        }
        Insn::XtIpv6Header {
            header,
            len,
            dreg,
            whole,
            offset,
            drops,
        } => {
            if h.protocol != 0x86dd {
                return Some(Outcome::Breaks);
            }
            let malformed = if *drops {
                Outcome::Drops
            } else {
                Outcome::Breaks
            };
            let ip = h.network.get(h.nh..).unwrap_or(&[]);
            let (offset, len) = (*offset as usize, *len as usize);
            match ipv6_find_hdr(ip, *header) {
                Err(NotFound::Absent) => Outcome::Breaks,
                Err(NotFound::Malformed) => malformed,
                Ok(at) => match ip.get(at..at + offset + len) {
                    Some(bytes) if *whole && at + (bytes[1] as usize + 1) * 8 > ip.len() => {
                        malformed
                    }
                    Some(bytes) => {
                        store(regs, *dreg, &bytes[offset..]);
                        Outcome::Holds
                    }
                    None => malformed,
                },
            }
        }
        Insn::XtIpv6Options { header, opts } => {
            let ip = h.network.get(h.nh..).unwrap_or(&[]);
            let whole = ipv6_find_hdr(ip, *header).ok().and_then(|at| {
                let len = (*ip.get(at + 1)? as usize + 1) * 8;
                ip.get(at..at + len)
            });
            match whole {
                Some(hdr) if h.protocol == 0x86dd && ipv6_options_match(hdr, opts) => {
                    Outcome::Holds
                }
                _ => Outcome::Breaks,
            }
        }
        Insn::XtSrhSegment { next, dreg } => {
            let ip = h.network.get(h.nh..).unwrap_or(&[]);
            let address = ipv6_find_hdr(ip, 43).ok().and_then(|at| {
                let (left, last) = (*ip.get(at + 3)?, *ip.get(at + 4)?);
                let (left, last) = (left as usize, last as usize);
                let index = if *next {
                    left.checked_sub(1)?
                } else {
                    (left != last).then_some(left + 1)?
                };
                let off = at + 8 + 16 * index;
                ip.get(off..off + 16)
            });
            match address {
                Some(a) if h.protocol == 0x86dd => {
                    store(regs, *dreg, a);
                    Outcome::Holds
                }
                _ => Outcome::Breaks,
            }
        }
        Insn::XtIpv6HeaderTypes { dreg } => {
            let ip = h.network.get(h.nh..).unwrap_or(&[]);
            match ipv6_header_types(ip) {
                Some(types) if h.protocol == 0x86dd => {
                    store(regs, *dreg, &[types]);
                    Outcome::Holds
                }
                _ => Outcome::Breaks,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(t: u8, flags: u8, len: u16) -> Vec<u8> {
        let mut c = vec![t, flags];
        c.extend_from_slice(&len.to_be_bytes());
        c.resize(((len as usize).max(4) + 3) & !3, 0);
        c
    }

    fn sctp(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        chunks.iter().for_each(|c| p.extend_from_slice(c));
        p
    }

    fn map(types: &[u8]) -> [u8; 32] {
        let mut m = [0; 32];
        types
            .iter()
            .for_each(|t| m[*t as usize / 8] |= 1 << (t % 8));
        m
    }

    fn chunks(kind: SctpChunkMatch, types: &[u8], flags: Vec<(u8, u8, u8)>) -> SctpChunks {
        SctpChunks {
            kind,
            invert: false,
            map: map(types),
            map_beyond: false,
            flags,
        }
    }

    #[test]
    fn chunk_walk_follows_match_packet() {
        use SctpChunkMatch::*;
        let data_init = sctp(&[chunk(0, 3, 16), chunk(1, 0, 20)]);
        assert_eq!(
            chunks(Any, &[1], vec![]).matches(&data_init, 12),
            Some(true)
        );
        assert_eq!(
            chunks(All, &[0, 1], vec![]).matches(&data_init, 12),
            Some(true)
        );
        assert_eq!(
            chunks(All, &[0, 3], vec![]).matches(&data_init, 12),
            Some(false)
        );
        assert_eq!(
            chunks(Only, &[0], vec![]).matches(&data_init, 12),
            Some(false)
        );
        assert_eq!(
            chunks(Only, &[0, 1, 2], vec![]).matches(&data_init, 12),
            Some(true)
        );
        // Flags: DATA with flags & 1 == 0 fails; the second entry for DATA is ignored.
        let f = vec![(0, 0, 1), (0, 3, 3)];
        assert_eq!(
            chunks(Any, &[0], f.clone()).matches(&data_init, 12),
            Some(false)
        );
        assert_eq!(
            chunks(Only, &[0, 1], f).matches(&data_init, 12),
            Some(false)
        );
        // Past-255 bits: ALL never holds.
        let mut beyond = chunks(All, &[0], vec![]);
        beyond.map_beyond = true;
        assert_eq!(beyond.matches(&data_init, 12), Some(false));
        // No chunk, length 0, a cut chunk header: dropped (ANY's hit comes first).
        assert_eq!(chunks(Any, &[0], vec![]).matches(&sctp(&[]), 12), None);
        let zero = sctp(&[chunk(0, 0, 16), chunk(3, 0, 0)]);
        assert_eq!(chunks(Any, &[0], vec![]).matches(&zero, 12), Some(true));
        assert_eq!(chunks(Any, &[1], vec![]).matches(&zero, 12), None);
        let mut cut = sctp(&[chunk(0, 0, 16)]);
        cut.extend_from_slice(&[1, 0]);
        assert_eq!(chunks(Other, &[1], vec![]).matches(&cut, 12), None);
        // A chunk running past the end ends the walk without a drop.
        let long = sctp(&[chunk(0, 0, 4), vec![1, 0, 0, 200]]);
        assert_eq!(chunks(Any, &[3], vec![]).matches(&long, 12), Some(false));
    }

    #[test]
    fn ipv6_find_hdr_tells_absent_from_malformed() {
        // Hop-by-hop (8 bytes), fragment (offset 0), then UDP.
        let mut ip = vec![0u8; 40];
        ip[6] = 0;
        ip.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]);
        ip.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 9]);
        ip.extend_from_slice(&[0; 8]);
        assert_eq!(ipv6_find_hdr(&ip, 0), Ok(40));
        assert_eq!(ipv6_find_hdr(&ip, 44), Ok(48));
        assert_eq!(ipv6_find_hdr(&ip, 17), Ok(56));
        assert_eq!(ipv6_find_hdr(&ip, 60), Err(NotFound::Absent));
        // A later fragment: the fragment header is found, what follows it is not.
        ip[50] = 0x01;
        assert_eq!(ipv6_find_hdr(&ip, 44), Ok(48));
        assert_eq!(ipv6_find_hdr(&ip, 17), Err(NotFound::Absent));
        // The fragment header cut after its first two bytes.
        ip.truncate(50);
        assert_eq!(ipv6_find_hdr(&ip, 44), Err(NotFound::Malformed));
        assert_eq!(ipv6_find_hdr(&ip, 0), Ok(40));
        // No next header: the walk ends there.
        ip[40] = 59;
        assert_eq!(ipv6_find_hdr(&ip, 44), Err(NotFound::Absent));
    }

    #[test]
    fn ipv6_options_follow_hbh_mt6() {
        // 16 bytes: PadN of 2 bytes (1, 0), option 5 with 4 data bytes, two Pad1,
        // option 0xc2 with 1 data byte, Pad1.
        let hdr = [17, 1, 1, 0, 5, 4, 9, 9, 9, 9, 0, 0, 0xc2, 1, 7, 0];
        assert!(ipv6_options_match(&hdr, &[]));
        assert!(ipv6_options_match(&hdr, &[(1, 0)]));
        assert!(ipv6_options_match(
            &hdr,
            &[(1, 0xff), (5, 4), (0, 0), (0, 9)]
        ));
        assert!(ipv6_options_match(
            &hdr,
            &[(1, 0), (5, 4), (0, 0), (0, 0), (0xc2, 1), (0, 0)]
        ));
        // A wrong type or length fails; Pad1's length is never looked at.
        assert!(!ipv6_options_match(&hdr, &[(5, 4)]));
        assert!(!ipv6_options_match(&hdr, &[(1, 0), (5, 3)]));
        // Past the header's last byte: fewer options there than the rule lists.
        assert!(!ipv6_options_match(
            &hdr,
            &[(1, 0), (5, 4), (0, 0), (0, 0), (0xc2, 1), (0, 0), (0, 0)]
        ));
        // The last option may run past the header, another may not.
        let long = [17, 0, 5, 9, 0, 0, 0, 0];
        assert!(ipv6_options_match(&long, &[(5, 9)]));
        assert!(!ipv6_options_match(&long, &[(5, 9), (0, 0)]));
        // A type in the header's last byte: no length to read.
        let last = [17, 0, 0, 0, 0, 0, 0, 5];
        assert!(ipv6_options_match(&last, &[(0, 0); 5]));
        assert!(!ipv6_options_match(
            &last,
            &[(0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (5, 0xff)]
        ));
    }

    #[test]
    fn dccp_options_follow_dccp_find_option() {
        // A DATA packet (header 12 bytes) with doff 5: options 7 (len 4), then 0.
        let mut p = vec![0u8; 20];
        p[4] = 5;
        p[8] = 2 << 1;
        p[12..16].copy_from_slice(&[35, 4, 1, 2]);
        assert_eq!(dccp_find_option(&p, 0, 35), Some(true));
        assert_eq!(dccp_find_option(&p, 0, 0), Some(true));
        assert_eq!(dccp_find_option(&p, 0, 2), Some(false));
        // A length byte of 0 steps one byte (onto it, a kind 0): the 4 after it is
        // read as an option kind.
        p[12..16].copy_from_slice(&[5, 0, 4, 1]);
        assert_eq!(dccp_find_option(&p, 0, 4), Some(true));
        assert_eq!(dccp_find_option(&p, 0, 2), Some(false));
        // Data offset below the header's length, or options past the packet: dropped.
        p[4] = 2;
        assert_eq!(dccp_find_option(&p, 0, 35), None);
        p[4] = 6;
        assert_eq!(dccp_find_option(&p, 0, 35), None);
        // An ACK with extended sequence numbers: 12 + 4 + 8 bytes of header.
        p[8] = 3 << 1 | 1;
        assert_eq!(dccp_header_len(p[8]), 24);
    }
}
