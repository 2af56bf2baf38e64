//! ip6t_frag (`-m frag`): frag_mt6() finds the fragment header with ipv6_find_hdr()
//! (not there: no match; an extension header cut short, or the fragment header's 8
//! bytes missing: the packet is dropped, "hotdrop"), then tests the identification
//! range and the flags. `--fraglen` is accepted by checkentry and never tested.

use nftshim_ebpf::residual::{CmpOp, Insn};

use super::{Decompiled, XtCx};
use crate::compile::residual::SCRATCH;
use crate::compile::rule::V6;
use netlink_proto::xt::Blob;

const NEXTHDR_FRAGMENT: u8 = 44;
const IP6T_FRAG_RES: u8 = 0x04;
const IP6T_FRAG_FST: u8 = 0x08;
const IP6T_FRAG_MF: u8 = 0x10;
const IP6T_FRAG_NMF: u8 = 0x20;
const IP6T_FRAG_INV_IDS: u8 = 0x01;

/// `(first word of the header & mask) == value` (next header, reserved, offset and
/// flags), in the scratch register after the header's 8 bytes.
fn word_test(mask: [u8; 4], value: [u8; 4]) -> [Insn; 2] {
    let tmp = SCRATCH + 8;
    [
        Insn::Bitwise {
            sreg: SCRATCH,
            dreg: tmp,
            len: 4,
            mask: mask.to_vec(),
            xor: vec![0; 4],
        },
        Insn::Cmp {
            sreg: tmp,
            op: CmpOp::Eq,
            data: value.to_vec(),
        },
    ]
}

/// `struct ip6t_frag`: ids u32[2] @0, hdrlen @8, flags u8 @12, invflags @13.
pub(super) fn frag(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if cx.families != V6 {
        return Err("xt match frag outside ip6 tables is not supported".into());
    }
    let (flags, inv) = (b.u8(12), b.u8(13));
    let mut insns = vec![
        Insn::XtIpv6Header {
            header: NEXTHDR_FRAGMENT,
            len: 8,
            dreg: SCRATCH,
            whole: false,
            offset: 0,
            drops: true,
        },
        // The identification, always tested (the default range is every id).
        Insn::Range {
            sreg: SCRATCH + 4,
            negated: inv & IP6T_FRAG_INV_IDS != 0,
            from: b.u32(0).to_be_bytes().to_vec(),
            to: b.u32(4).to_be_bytes().to_vec(),
        },
    ];
    if flags & IP6T_FRAG_RES != 0 {
        // The reserved byte and the two reserved bits of the offset field are 0.
        insns.extend(word_test([0, 0xff, 0, 0x06], [0; 4]));
    }
    if flags & IP6T_FRAG_FST != 0 {
        // Offset 0.
        insns.extend(word_test([0, 0, 0xff, 0xf8], [0; 4]));
    }
    if flags & IP6T_FRAG_MF != 0 {
        insns.extend(word_test([0, 0, 0, 1], [0, 0, 0, 1]));
    }
    if flags & IP6T_FRAG_NMF != 0 {
        insns.extend(word_test([0, 0, 0, 1], [0; 4]));
    }
    Ok(Decompiled::Residual(vec![], insns))
}
