//! Matches on one transport-like header read at `par->thoff`, as x_tables gives it:
//! ipt_ah (`-m ah`, the IPv4 authentication header's SPI), xt_ipcomp (`-m ipcomp`, the
//! IP compression header's CPI) and ip6t_mh (`-m mh`, the mobility header's type).
//! They fail on later fragments and drop the packet (hotdrop) when the header is cut
//! short; mh also when its payload protocol is not IPPROTO_NONE.

use nftshim_ebpf::residual::{Insn, PayloadBase};

use super::{need_protocol, Decompiled, XtCx};
use crate::compile::residual::SCRATCH;
use crate::compile::rule::{V4, V6};
use netlink_proto::xt::Blob;

const IPPROTO_AH: u8 = 51;
const IPPROTO_COMP: u8 = 108;
const IPPROTO_MH: u8 = 135;

fn load(offset: u16, len: u8) -> Insn {
    Insn::Payload {
        base: PayloadBase::Transport,
        offset,
        len,
        dreg: SCRATCH,
    }
}

fn in_range(from: Vec<u8>, to: Vec<u8>, negated: bool) -> Insn {
    // from > to: nothing is inside.
    Insn::Range {
        sreg: SCRATCH,
        negated,
        from,
        to,
    }
}

/// `struct ipt_ah`: spis u32[2] @0, invflags u8 @8 (IPT_AH_INV_SPI 1). ah_mt(): the
/// 12-byte `struct ip_auth_hdr`, then min <= spi <= max, `!= invert`.
pub(super) fn ah(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if cx.families != V4 {
        return Err("xt match ah outside ip tables is not supported".into());
    }
    need_protocol(cx, "ah", &[IPPROTO_AH])?;
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::XtTransportHeader { len: 12 },
            load(4, 4),
            in_range(
                b.u32(0).to_be_bytes().to_vec(),
                b.u32(4).to_be_bytes().to_vec(),
                b.u8(8) & 1 != 0,
            ),
        ],
    ))
}

/// `struct xt_ipcomp`: spis u32[2] @0, invflags u8 @8 (XT_IPCOMP_INV_SPI 1), for ip
/// and ip6 tables. comp_mt(): the 4-byte `struct ip_comp_hdr`, then
/// min <= ntohs(cpi) <= max as 32-bit numbers, `!= invert`.
pub(super) fn ipcomp(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    need_protocol(cx, "ipcomp", &[IPPROTO_COMP])?;
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::XtTransportHeader { len: 4 },
            // nexthdr, flags, cpi: the cpi alone, as a big-endian 32-bit number.
            load(0, 4),
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len: 4,
                mask: vec![0, 0, 0xff, 0xff],
                xor: vec![0; 4],
            },
            in_range(
                b.u32(0).to_be_bytes().to_vec(),
                b.u32(4).to_be_bytes().to_vec(),
                b.u8(8) & 1 != 0,
            ),
        ],
    ))
}

/// `struct ip6t_mh`: types u8[2] @0, invflags @2 (IP6T_MH_INV_TYPE 1). mh_mt6(): the
/// 6-byte `struct ip6_mh`, its payload protocol IPPROTO_NONE (else hotdrop), then
/// min <= type <= max, `!= invert`.
pub(super) fn mh(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if cx.families != V6 {
        return Err("xt match mh outside ip6 tables is not supported".into());
    }
    need_protocol(cx, "mh", &[IPPROTO_MH])?;
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::XtTransportHeader { len: 6 },
            load(0, 1),
            Insn::XtDropUnless {
                sreg: SCRATCH,
                data: vec![59],
            },
            load(2, 1),
            in_range(vec![b.u8(0)], vec![b.u8(1)], b.u8(2) & 1 != 0),
        ],
    ))
}
