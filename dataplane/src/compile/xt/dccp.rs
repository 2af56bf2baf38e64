//! xt_dccp (`-m dccp`): ports, `--dccp-types` and `--dccp-option` as dccp_mt() tests
//! them, in its order: a later fragment fails; a header cut short (under 12 bytes)
//! drops the packet; ports; the packet type; then dccp_find_option(), which drops the
//! packet when the data offset is below the header's length or the options run past
//! the datagram (hotdrop, reproduced by the residual operations).

use nftshim_ebpf::residual::{Insn, PayloadBase};

use super::{need_protocol, port_test, Decompiled, XtCx};
use crate::compile::residual::SCRATCH;
use netlink_proto::xt::Blob;

const IPPROTO_DCCP: u8 = 33;
const XT_DCCP_SRC_PORTS: u16 = 0x01;
const XT_DCCP_DEST_PORTS: u16 = 0x02;
const XT_DCCP_TYPE: u16 = 0x04;
const XT_DCCP_OPTION: u16 = 0x08;

/// `struct xt_dccp_info`: dpts u16[2] @0, spts @4, flags u16 @8, invflags @10,
/// typemask @12, option u8 @14.
pub(super) fn dccp(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    need_protocol(cx, "dccp", &[IPPROTO_DCCP])?;
    let (flags, inv) = (b.u16(8), b.u16(10));
    // struct dccp_hdr: 12 bytes.
    let mut insns = vec![Insn::XtTransportHeader { len: 12 }];
    if flags & XT_DCCP_SRC_PORTS != 0 {
        insns.extend(port_test(
            0,
            b.u16(4),
            b.u16(6),
            inv & XT_DCCP_SRC_PORTS != 0,
        ));
    }
    if flags & XT_DCCP_DEST_PORTS != 0 {
        insns.extend(port_test(
            2,
            b.u16(0),
            b.u16(2),
            inv & XT_DCCP_DEST_PORTS != 0,
        ));
    }
    if flags & XT_DCCP_TYPE != 0 {
        // match_types(): typemask & 1 << dccph_type, the type being bits 1..5 of
        // byte 8 (after dccph_x).
        let typemask = b.u16(12);
        insns.extend([
            Insn::Payload {
                base: PayloadBase::Transport,
                offset: 8,
                len: 1,
                dreg: SCRATCH,
            },
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len: 1,
                mask: vec![0x1e],
                xor: vec![0],
            },
            Insn::Lookup {
                sreg: SCRATCH,
                len: 1,
                negated: inv & XT_DCCP_TYPE != 0,
                elements: (0..16u8)
                    .filter(|t| typemask & 1 << t != 0)
                    .map(|t| (vec![t << 1], vec![t << 1]))
                    .collect(),
            },
        ]);
    }
    if flags & XT_DCCP_OPTION != 0 {
        insns.push(Insn::XtDccpOption {
            option: b.u8(14),
            invert: inv & XT_DCCP_OPTION != 0,
        });
    }
    Ok(Decompiled::Residual(vec![], insns))
}
