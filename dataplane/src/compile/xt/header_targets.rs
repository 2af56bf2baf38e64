//! Targets that rewrite a field of the IP header (net/netfilter/xt_DSCP.c, xt_HL.c):
//! `-j DSCP`, `-j TOS`, `-j TTL`, `-j HL`. Each is a header write, `(old & mask) ^ xor`
//! over the field's bytes with the IPv4 header checksum fixed up as the kernel's
//! csum_replace2() does; the rule decompiler then applies the restrictions of every
//! header write (`rule/write.rs`: e.g. no DSCP write in input chains, which the data
//! plane runs before the kernel's input route lookup reads the DSCP).
//!
//! `--ttl-inc`/`--ttl-dec` (`--hl-*`) keep the byte and add to it, saturating
//! ([`SaturatingAdd`]).
//!
//! The kernel writes only when the value changes (`if (dscp != info->dscp)`, `if
//! (new_ttl != iph->ttl)`): the data plane's writes with the checksum's zero kept
//! (`csum_keep_zero`, these targets' writes) leave the checksum alone too when the
//! bytes stay (a checksum of 0xffff would otherwise become 0).
//!
//! IPv4 writes cover the whole 16-bit word of the field (the byte beside it kept), so
//! that the checksum difference is summed at the right byte positions (as nft widens
//! its own checksummed writes), and leave a fixed-up checksum of 0 as 0: the kernel's
//! csum_replace2() and ipv4_change_dsfield() do not turn it into 0xffff as
//! nft_csum_replace() does.

use nftshim_ebpf::ir::{PayloadWrite, SaturatingAdd, WriteBase};

use super::{version, Decompiled, XtCx};
use crate::compile::rule::V4;

/// The IPv4 header checksum's offset.
const IPV4_CHECK: u8 = 10;

/// `len` bytes at `offset` of the network header become `(old & mask) ^ xor`; IPv4's
/// header checksum follows. IPv4 writes start at an even offset and cover whole
/// 16-bit words (see the module doc).
pub(super) fn network_write(v: u8, offset: u8, mask: &[u8], xor: &[u8]) -> Decompiled {
    Decompiled::Write(network_write_spec(v, offset, mask, xor))
}

/// [`network_write`]'s write.
pub(super) fn network_write_spec(v: u8, offset: u8, mask: &[u8], xor: &[u8]) -> PayloadWrite {
    let (mut wide_mask, mut wide_xor) = ([0xffu8; 16], [0u8; 16]);
    let (start, len) = if v == V4 {
        let start = offset & !1;
        let end = (offset as usize + mask.len()).div_ceil(2) * 2;
        (start, end - start as usize)
    } else {
        (offset, mask.len())
    };
    let at = (offset - start) as usize;
    wide_mask[at..at + mask.len()].copy_from_slice(mask);
    wide_xor[at..at + xor.len()].copy_from_slice(xor);
    let mut w = PayloadWrite {
        base: WriteBase::Network,
        offset: start,
        len: len as u8,
        mask: [0; 16],
        xor: [0; 16],
        csum_inet: v == V4,
        csum_offset: if v == V4 { IPV4_CHECK } else { 0 },
        pseudo_header: false,
        csum_keep_zero: v == V4,
        saturating: None,
    };
    w.mask[..len].copy_from_slice(&wide_mask[..len]);
    w.xor[..len].copy_from_slice(&wide_xor[..len]);
    w
}

/// The DS field (IPv4's TOS byte, IPv6's traffic class: bits 4..12 of the first two
/// bytes) becomes `(ds & keep) ^ value`, as ipv4_change_dsfield()/ipv6_change_dsfield()
/// do with `(ds & mask) | value` when `value` has no bit of `keep` (both callers).
fn ds_write(v: u8, keep: u8, value: u8) -> Decompiled {
    if v == V4 {
        network_write(v, 1, &[keep], &[value])
    } else {
        // Version and flow label bits are kept.
        let mask = 0xf00f | (u16::from(keep) << 4);
        let xor = u16::from(value) << 4;
        network_write(v, 0, &mask.to_be_bytes(), &xor.to_be_bytes())
    }
}

/// `struct xt_DSCP_info`: dscp u8 @0 (at most 0x3f, checked). dscp_tg()/dscp_tg6():
/// the DS field's upper six bits become it, the ECN bits stay.
pub fn dscp(cx: &XtCx<'_>, b: netlink_proto::xt::Blob<'_>) -> Result<Decompiled, String> {
    let v = version(cx, "DSCP")?;
    let dscp = b.u8(0) & 0x3f;
    Ok(ds_write(v, 0x03, dscp << 2))
}

/// `struct xt_tos_target_info`: tos_value u8 @0, tos_mask @1. tos_tg()/tos_tg6():
/// `new = (old & ~tos_mask) ^ tos_value`, the whole DS field written.
pub fn tos(cx: &XtCx<'_>, b: netlink_proto::xt::Blob<'_>) -> Result<Decompiled, String> {
    let v = version(cx, "TOS")?;
    let (value, mask) = (b.u8(0), b.u8(1));
    if v == V4 {
        Ok(network_write(v, 1, &[!mask], &[value]))
    } else {
        let keep = 0xf00f | (u16::from(!mask) << 4);
        let xor = u16::from(value) << 4;
        Ok(network_write(v, 0, &keep.to_be_bytes(), &xor.to_be_bytes()))
    }
}

/// `struct ipt_TTL_info` / `ip6t_HL_info`: mode u8 @0 (set 0, inc 1, dec 2), value @1.
/// IPv4's TTL is byte 8, IPv6's hop limit byte 7. Setting is a write of the value;
/// ttl_tg()/hl_tg6() saturate an increment at 255 and a decrement at 0: the byte kept
/// by the mask, then a saturating add (the IPv4 checksum follows the result, as the
/// kernel's csum_replace2() of the old and new TTL).
pub fn hop_limit(
    cx: &XtCx<'_>,
    b: netlink_proto::xt::Blob<'_>,
    v: u8,
) -> Result<Decompiled, String> {
    let name = if v == V4 { "TTL" } else { "HL" };
    if version(cx, name)? != v {
        return Err(format!(
            "xt target {name} in a table of the other IP version"
        ));
    }
    let (mode, value) = (b.u8(0), b.u8(1));
    let offset = if v == V4 { 8 } else { 7 };
    match mode {
        0 => Ok(network_write(v, offset, &[0], &[value])),
        1 | 2 => {
            let mut w = network_write_spec(v, offset, &[0xff], &[0]);
            w.saturating = Some(SaturatingAdd {
                // The byte's index in the (IPv4: widened) write.
                at: offset - w.offset,
                by: value,
                down: mode == 2,
            });
            Ok(Decompiled::Write(w))
        }
        // ttl_tg()/hl_tg6(): an unknown mode keeps the value (checkentry refuses it).
        _ => Ok(Decompiled::Always),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cx, xt_target};
    use super::super::{decompile_target, Decompiled};
    use crate::compile::{Family, Hook};
    use nftshim_ebpf::ir::{PayloadWrite, WriteBase};

    fn target(family: Family, name: &str, rev: u32, info: &[u8]) -> Result<Decompiled, String> {
        let cx = cx(family, Hook::Forward, None);
        let t = xt_target(name, rev, info.to_vec());
        decompile_target(&cx, &t)
    }

    fn write(offset: u8, mask: &[u8], xor: &[u8], v4: bool) -> Decompiled {
        let mut w = PayloadWrite {
            base: WriteBase::Network,
            offset,
            len: mask.len() as u8,
            mask: [0; 16],
            xor: [0; 16],
            csum_inet: v4,
            csum_offset: if v4 { 10 } else { 0 },
            pseudo_header: false,
            csum_keep_zero: v4,
            saturating: None,
        };
        w.mask[..mask.len()].copy_from_slice(mask);
        w.xor[..xor.len()].copy_from_slice(xor);
        Decompiled::Write(w)
    }

    /// The header bytes a write leaves, from `old`.
    fn applied(d: &Decompiled, old: &[u8]) -> Vec<u8> {
        let Decompiled::Write(w) = d else {
            panic!("not a write: {d:?}")
        };
        w.new_bytes(old)
    }

    #[test]
    fn dscp_keeps_the_ecn_bits() {
        // --set-dscp 0x2e (EF) on IPv4: TOS byte 1 (in the word of bytes 0 and 1),
        // checksum fixed up.
        let d = target(Family::Ip, "DSCP", 0, &[0x2e, 0, 0, 0]).unwrap();
        assert_eq!(d, write(0, &[0xff, 0x03], &[0, 0xb8], true));
        assert_eq!(applied(&d, &[0x45, 0x03]), vec![0x45, 0xbb]);
        assert_eq!(applied(&d, &[0x45, 0xfc]), vec![0x45, 0xb8]);
        // IPv6: the traffic class spans bytes 0 and 1; version and flow label stay.
        let d = target(Family::Ip6, "DSCP", 0, &[0x3f, 0, 0, 0]).unwrap();
        assert_eq!(d, write(0, &[0xf0, 0x3f], &[0x0f, 0xc0], false));
        // Version 6, traffic class 0x01 (ECT(1)), flow label 0xabcde.
        assert_eq!(applied(&d, &[0x60, 0x1a]), vec![0x6f, 0xda]);
    }

    #[test]
    fn tos_masks_then_xors_the_whole_ds_field() {
        // --set-tos 0x10/0x3f: value @0, mask @1.
        let d = target(Family::Ip, "TOS", 1, &[0x10, 0x3f]).unwrap();
        assert_eq!(d, write(0, &[0xff, 0xc0], &[0, 0x10], true));
        assert_eq!(applied(&d, &[0x45, 0xff]), vec![0x45, 0xd0]);
        let d = target(Family::Ip6, "TOS", 1, &[0x10, 0x3f]).unwrap();
        assert_eq!(d, write(0, &[0xfc, 0x0f], &[0x01, 0x00], false));
        // Traffic class 0xff becomes 0xd0.
        assert_eq!(applied(&d, &[0x6f, 0xf5]), vec![0x6d, 0x05]);
    }

    #[test]
    fn ttl_and_hop_limit_set_is_a_write_inc_and_dec_saturate() {
        // The TTL with the protocol beside it.
        let d = target(Family::Ip, "TTL", 0, &[0, 42]).unwrap();
        assert_eq!(d, write(8, &[0, 0xff], &[42, 0], true));
        assert_eq!(applied(&d, &[64, 6]), vec![42, 6]);
        let d = target(Family::Ip6, "HL", 0, &[0, 7]).unwrap();
        assert_eq!(d, write(7, &[0], &[7], false));
        // --ttl-inc 10: saturates at 255, the protocol byte kept.
        let d = target(Family::Ip, "TTL", 0, &[1, 10]).unwrap();
        assert_eq!(applied(&d, &[64, 6]), vec![74, 6]);
        assert_eq!(applied(&d, &[250, 17]), vec![255, 17]);
        let Decompiled::Write(w) = &d else { panic!() };
        assert!(w.csum_inet && w.csum_keep_zero && w.offset == 8 && w.len == 2);
        // --hl-dec 5: saturates at 0; IPv6 has no header checksum.
        let d = target(Family::Ip6, "HL", 0, &[2, 5]).unwrap();
        assert_eq!(applied(&d, &[64]), vec![59]);
        assert_eq!(applied(&d, &[3]), vec![0]);
        let Decompiled::Write(w) = &d else { panic!() };
        assert!(!w.csum_inet && w.offset == 7 && w.len == 1);
        // --ttl-dec 0 keeps the TTL.
        let d = target(Family::Ip, "TTL", 0, &[2, 0]).unwrap();
        assert_eq!(applied(&d, &[9, 1]), vec![9, 1]);
        // Each in its own family's tables only.
        assert!(target(Family::Ip6, "TTL", 0, &[0, 1]).is_err());
        assert!(target(Family::Ip, "HL", 0, &[0, 1]).is_err());
    }
}
