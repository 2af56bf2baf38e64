//! Header writes ([`crate::ir::Statement::PayloadSet`]) as nft_payload_set_eval() does
//! them, on the header bytes of [`PacketFields`]: the reference for the BPF side
//! (bpf/lib/rewrite.h). Checksums are fixed up as the kernel does for a packet whose
//! checksum is not CHECKSUM_PARTIAL (what the reference models; the BPF side asks the
//! kernel which it is).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::fields::{L3Fields, PacketFields};
use crate::ir::{EcnTcp, PayloadWrite, TcpOptStrip, WriteBase};

/// The 16-bit one's complement sum of `bytes` as big-endian words (a last odd byte is
/// a high byte), as csum_partial() starts a buffer; folded, not complemented.
pub fn sum16(bytes: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = (pair[0] as u32) << 8 | pair.get(1).copied().unwrap_or(0) as u32;
        s += word;
    }
    fold(s)
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// nft_csum_replace(): the checksum `old` after bytes summing to `from` became bytes
/// summing to `to`; a result of 0 is written as 0xffff (CSUM_MANGLED_0).
pub fn csum_replace(old: u16, from: u16, to: u16) -> u16 {
    match csum_replace_keep_zero(old, from, to) {
        0 => 0xffff,
        r => r,
    }
}

/// csum_replace2() (xtables targets): the same, a result of 0 left as it is.
pub fn csum_replace_keep_zero(old: u16, from: u16, to: u16) -> u16 {
    !fold(!old as u32 + !from as u32 + to as u32)
}

/// Offset of the transport checksum a pseudo-header change updates, from the
/// transport header (nft_payload_l4csum_offset); `None`: none to update.
fn pseudo_csum_offset(l4proto: u8, network: &[u8], th: usize) -> Option<usize> {
    match l4proto {
        6 => Some(16),
        // A UDP checksum of 0 means none (a header cut short: none either).
        17 => match network.get(th + 6..th + 8) {
            Some([0, 0]) | None => None,
            Some(_) => Some(6),
        },
        136 => Some(6),
        58 => Some(2),
        _ => None,
    }
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Runs one write on `p`'s headers and re-reads the fields parsed from the bytes it
/// changed. False when the kernel breaks the rule (the bytes are not in the packet);
/// the checksum fix-ups done before the failing step stay, as in the kernel.
pub fn apply(w: &PayloadWrite, p: &mut PacketFields) -> bool {
    let Some(h) = p.headers.as_mut() else {
        return false;
    };
    let base = match w.base {
        WriteBase::Network => h.nh,
        WriteBase::Transport => match h.transport {
            Some(th) => th,
            None => return false,
        },
    };
    let net = &mut h.network;
    let off = base + w.offset as usize;
    let len = w.len as usize;
    if off + len > net.len() {
        return false;
    }
    let old = net[off..off + len].to_vec();
    let new = w.new_bytes(&old);
    let (from, to) = (sum16(&old), sum16(&new));
    let csum_replace = if w.csum_keep_zero {
        csum_replace_keep_zero
    } else {
        csum_replace
    };
    // xtables targets (the checksum's zero kept) write nothing when the bytes stay:
    // a checksum of 0xffff would become 0 otherwise.
    if w.csum_inet && !(w.csum_keep_zero && old == new) {
        let at = base + w.csum_offset as usize;
        if at + 2 > net.len() {
            return false;
        }
        let sum = csum_replace(get16(net, at), from, to);
        put16(net, at, sum);
    }
    if w.pseudo_header && !p.later_fragment {
        if let (Some(th), Some(proto)) = (h.transport, p.l4proto) {
            if let Some(o) = pseudo_csum_offset(proto, net, th) {
                let at = th + o;
                if at + 2 > net.len() {
                    return false;
                }
                let sum = csum_replace(get16(net, at), from, to);
                put16(net, at, sum);
            }
        }
    }
    net[off..off + len].copy_from_slice(&new);
    reparse(w, p);
    true
}

/// What xt_TCPOPTSTRIP's target gives a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StripOutcome {
    /// XT_CONTINUE (options stripped or not).
    Continue,
    /// NF_DROP: the TCP header is cut short.
    Drop,
}

const IPPROTO_TCP: u8 = 6;
const TCPOPT_NOP: u8 = 1;

/// tcpoptstrip_mangle_packet() on `p`'s headers: each option of a stripped kind, as
/// the kernel walks them, becomes NOPs (its length bytes too), the TCP checksum fixed
/// up byte by byte as the kernel's inet_proto_csum_replace2() calls do it for a packet
/// that is not CHECKSUM_PARTIAL (csum_replace2(): a zero result stays 0). Later
/// fragments are left alone; a TCP header shorter than 20 bytes, a data offset under 5
/// or a header past the packet's end drops the packet.
pub fn strip_tcp_options(s: &TcpOptStrip, p: &mut PacketFields) -> StripOutcome {
    let later_fragment = p.later_fragment;
    let Some(h) = p.headers.as_mut() else {
        return StripOutcome::Continue;
    };
    let (Some(th), Some(IPPROTO_TCP)) = (h.transport, p.l4proto) else {
        return StripOutcome::Continue;
    };
    if later_fragment {
        return StripOutcome::Continue;
    }
    let net = &mut h.network;
    if th + 20 > net.len() {
        return StripOutcome::Drop;
    }
    let hdrlen = usize::from(net[th + 12] >> 4) * 4;
    if hdrlen < 20 || th + hdrlen > net.len() {
        return StripOutcome::Drop;
    }
    let opt = &mut net[th..th + hdrlen];
    let mut i = 20;
    while i + 1 < hdrlen {
        let optl = match (opt[i], opt[i + 1]) {
            (k, l) if k <= TCPOPT_NOP || l == 0 => 1,
            (_, l) => usize::from(l),
        };
        if i + optl > hdrlen {
            break;
        }
        if s.strips(opt[i]) {
            for j in i..i + optl {
                // The byte's place in its 16-bit word of the checksum.
                let shift = if j % 2 == 0 { 8 } else { 0 };
                let (o, n) = (u16::from(opt[j]) << shift, u16::from(TCPOPT_NOP) << shift);
                let sum = csum_replace_keep_zero(get16(opt, 16), o, n);
                put16(opt, 16, sum);
                opt[j] = TCPOPT_NOP;
            }
        }
        i += optl;
    }
    StripOutcome::Continue
}

/// ipt_ECN's set_ect_tcp(), run by ecn_tg() when the IPv4 header says TCP: the 20
/// bytes at ip_hdrlen() (in a later fragment too, whose payload they then are) must be
/// in the datagram, or the packet is dropped; when ECE or CWR differ from what the
/// target sets, they change and the TCP checksum follows (inet_proto_csum_replace2()
/// on bytes 12-13, for a packet that is not CHECKSUM_PARTIAL). Later rules see the new
/// flags.
pub fn ecn_tcp(e: &EcnTcp, p: &mut PacketFields) -> StripOutcome {
    let later_fragment = p.later_fragment;
    let Some(h) = p.headers.as_mut() else {
        return StripOutcome::Continue;
    };
    let ip = h.nh;
    let net = &mut h.network;
    if net.len() < ip + 20 || net[ip] >> 4 != 4 || net[ip + 9] != IPPROTO_TCP {
        return StripOutcome::Continue;
    }
    let th = ip + usize::from(net[ip] & 0x0f) * 4;
    if th + 20 > net.len() {
        return StripOutcome::Drop;
    }
    let old = net[th + 13];
    let mut new = old;
    if let Some(ece) = e.ece {
        new = (new & !0x40) | if ece { 0x40 } else { 0 };
    }
    if let Some(cwr) = e.cwr {
        new = (new & !0x80) | if cwr { 0x80 } else { 0 };
    }
    if new == old {
        return StripOutcome::Continue;
    }
    let from = get16(net, th + 12);
    net[th + 13] = new;
    let sum = csum_replace_keep_zero(get16(net, th + 16), from, get16(net, th + 12));
    put16(net, th + 16, sum);
    if !later_fragment && p.tcp_flags.is_some() {
        p.tcp_flags = Some(new);
    }
    StripOutcome::Continue
}

/// The fields a write can change: addresses and ports (the compiler refuses writes
/// that would change how the packet parses).
fn reparse(w: &PayloadWrite, p: &mut PacketFields) {
    let Some(h) = p.headers.as_ref() else {
        return;
    };
    let net = &h.network[h.nh..];
    match (w.base, &mut p.l3) {
        (WriteBase::Network, L3Fields::V4 { saddr, daddr }) if net.len() >= 20 => {
            *saddr = Ipv4Addr::from(<[u8; 4]>::try_from(&net[12..16]).unwrap());
            *daddr = Ipv4Addr::from(<[u8; 4]>::try_from(&net[16..20]).unwrap());
        }
        (WriteBase::Network, L3Fields::V6 { saddr, daddr }) if net.len() >= 40 => {
            *saddr = Ipv6Addr::from(<[u8; 16]>::try_from(&net[8..24]).unwrap());
            *daddr = Ipv6Addr::from(<[u8; 16]>::try_from(&net[24..40]).unwrap());
        }
        (WriteBase::Transport, _) => {
            if let (Some(th), Some(_)) = (h.transport, p.ports) {
                if th + 4 <= h.network.len() {
                    p.ports = Some((get16(&h.network, th), get16(&h.network, th + 2)));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header checksum of a header whose checksum field is zero.
    fn ip_checksum(h: &[u8]) -> u16 {
        !sum16(h)
    }

    #[test]
    fn incremental_update_equals_recomputed_checksum() {
        let mut h = [
            0x45, 0, 0, 28, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = ip_checksum(&h);
        put16(&mut h, 10, c);
        // ttl 64 -> 23, as `ip ttl set 23` writes bytes 8..10.
        let old = [h[8], h[9]];
        h[8] = 23;
        let updated = csum_replace(c, sum16(&old), sum16(&h[8..10]));
        put16(&mut h, 10, 0);
        assert_eq!(updated, ip_checksum(&h));
    }

    #[test]
    fn zero_result_is_mangled() {
        // A checksum that ends up zero is written as 0xffff.
        assert_eq!(csum_replace(0x0001, 0x0000, 0x0001), 0xffff);
        assert_eq!(csum_replace(0x1234, 0x0000, 0x0000), 0x1234);
    }

    /// A TCP packet's fields whose header (20 bytes, then `options`) starts at 0 of
    /// the network bytes, checksum `csum`.
    fn tcp(options: &[u8], csum: u16) -> PacketFields {
        let mut net = vec![0u8; 20];
        net[12] = ((20 + options.len()) / 4 << 4) as u8;
        put16(&mut net, 16, csum);
        net.extend_from_slice(options);
        PacketFields {
            l4proto: Some(IPPROTO_TCP),
            headers: Some(crate::residual::Headers {
                network: net,
                transport: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn kinds(k: &[u8]) -> TcpOptStrip {
        let mut s = TcpOptStrip { kinds: [0; 32] };
        for &k in k {
            s.kinds[usize::from(k / 8)] |= 1 << (k % 8);
        }
        s
    }

    fn options_after(s: &TcpOptStrip, p: &mut PacketFields) -> (StripOutcome, Vec<u8>, u16) {
        let outcome = strip_tcp_options(s, p);
        let net = &p.headers.as_ref().unwrap().network;
        (outcome, net[20..].to_vec(), get16(net, 16))
    }

    #[test]
    fn strips_as_tcpoptstrip_mangle_packet_walks() {
        // MSS, SACK permitted, timestamps, NOP, window scale: SACK-perm and timestamps
        // go; the checksum moves by the sum difference.
        let opts = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 3, 3, 7,
        ];
        let mut p = tcp(&opts, 0x1234);
        let (o, out, c) = options_after(&kinds(&[4, 8]), &mut p);
        let mut want = opts;
        want[4..16].fill(1);
        assert_eq!((o, &out[..]), (StripOutcome::Continue, &want[..]));
        assert_eq!(
            c,
            csum_replace_keep_zero(0x1234, sum16(&opts), sum16(&want))
        );
        // A length byte of 0 makes a one-byte option: only its kind byte goes, and
        // the walk goes on at the next byte (kind 0 there: one byte, kept).
        let mut p = tcp(&[5, 0, 0, 0], 0x1234);
        assert_eq!(options_after(&kinds(&[5]), &mut p).1, vec![1, 0, 0, 0]);
        // An option running past the header ends the walk: nothing after it either.
        let mut p = tcp(&[3, 3, 7, 9, 5, 9, 9, 9, 30, 6, 0, 0], 0x1234);
        let (_, out, c) = options_after(&kinds(&[3, 9, 30]), &mut p);
        assert_eq!(out, vec![1, 1, 1, 1, 1, 1, 1, 1, 30, 6, 0, 0]);
        assert_ne!(c, 0x1234);
        // The header's last byte is never an option start.
        let mut p = tcp(&[1, 1, 1, 6], 0x1234);
        let (_, out, c) = options_after(&kinds(&[6]), &mut p);
        assert_eq!((out, c), (vec![1, 1, 1, 6], 0x1234));
    }

    #[test]
    fn a_checksum_of_0xffff_becomes_0_once_a_byte_changes() {
        // A field of 0xffff (the same sum as 0): the kernel's first fix-up gives a
        // value in 0..=0xfffe, and its fix-ups of bytes that stay keep that value.
        let mut p = tcp(&[4, 2, 1, 1], 0xffff);
        let (_, _, c) = options_after(&kinds(&[4]), &mut p);
        assert_eq!(c, csum_replace_keep_zero(0xffff, 0x0402, 0x0101));
        assert_ne!(c, 0xffff);
    }

    #[test]
    fn cut_short_headers_drop_and_later_fragments_pass() {
        let mut p = tcp(&[], 0);
        p.headers.as_mut().unwrap().network[12] = 0x40;
        assert_eq!(strip_tcp_options(&kinds(&[2]), &mut p), StripOutcome::Drop);
        let mut p = tcp(&[2, 4, 5, 0xb4], 0);
        p.headers.as_mut().unwrap().network[12] = 0x70;
        assert_eq!(strip_tcp_options(&kinds(&[2]), &mut p), StripOutcome::Drop);
        let mut p = tcp(&[2, 4, 5, 0xb4], 0);
        p.headers.as_mut().unwrap().network.truncate(19);
        assert_eq!(strip_tcp_options(&kinds(&[2]), &mut p), StripOutcome::Drop);
        let mut p = tcp(&[2, 4, 5, 0xb4], 0);
        p.later_fragment = true;
        assert_eq!(
            strip_tcp_options(&kinds(&[2]), &mut p),
            StripOutcome::Continue
        );
        assert_eq!(p.headers.unwrap().network[20], 2);
    }
}
