//! Header writes ([`crate::ir::Statement::PayloadSet`]) as nft_payload_set_eval() does
//! them, on the header bytes of [`PacketFields`]: the reference for the BPF side
//! (bpf/lib/rewrite.h). Checksums are fixed up as the kernel does for a packet whose
//! checksum is not CHECKSUM_PARTIAL (what the reference models; the BPF side asks the
//! kernel which it is).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::fields::{L3Fields, PacketFields};
use crate::ir::{PayloadWrite, TcpOptStrip, WriteBase};

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
}
