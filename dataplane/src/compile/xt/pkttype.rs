//! `-m pkttype` (net/netfilter/xt_pkttype.c): the skb's packet type (host, broadcast,
//! multicast, other host), with pkttype_mt()'s reading of looped-back copies of
//! packets sent to a group (a residual operation of the data plane's own). TC sees
//! the skb->pkt_type the kernel's hooks see: set by eth_type_trans() before TC ingress
//! and the IP stack, and kept on the way out to TC egress.

use netlink_proto::xt::Blob;
use nftshim_ebpf::residual::{CmpOp, Insn};

use super::super::residual::SCRATCH;
use super::Decompiled;

/// `struct xt_pkttype_info`: pkttype int @0, invert int @4.
pub fn pkttype(b: Blob<'_>) -> Result<Decompiled, String> {
    let (pkttype, invert) = (b.u32(0), b.u32(4) != 0);
    let Ok(pkttype) = u8::try_from(pkttype) else {
        // No packet has that type.
        return Ok(if invert {
            Decompiled::Always
        } else {
            Decompiled::Never
        });
    };
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::XtPktType { dreg: SCRATCH },
            Insn::Cmp {
                sreg: SCRATCH,
                op: if invert { CmpOp::Neq } else { CmpOp::Eq },
                data: vec![pkttype],
            },
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cx, xt_match};
    use super::super::{decompile_match, Decompiled};
    use super::*;
    use crate::compile::{Family, Hook};

    fn pkttype(family: Family, hook: Hook, pkttype: u32, invert: u32) -> Decompiled {
        let mut info = vec![0u8; 8];
        info[..4].copy_from_slice(&pkttype.to_ne_bytes());
        info[4..].copy_from_slice(&invert.to_ne_bytes());
        let cx = cx(family, hook, None);
        let m = xt_match("pkttype", 0, info);
        decompile_match(&cx, &m).unwrap()
    }

    #[test]
    fn packet_type_compared_or_not() {
        // --pkt-type multicast (PACKET_MULTICAST 2), at every hook.
        for hook in [Hook::Input, Hook::Forward, Hook::Output] {
            assert_eq!(
                pkttype(Family::Ip6, hook, 2, 0),
                Decompiled::Residual(
                    vec![],
                    vec![
                        Insn::XtPktType { dreg: SCRATCH },
                        Insn::Cmp {
                            sreg: SCRATCH,
                            op: CmpOp::Eq,
                            data: vec![2],
                        },
                    ]
                )
            );
        }
        let Decompiled::Residual(_, insns) = pkttype(Family::Ip, Hook::Input, 1, 1) else {
            panic!()
        };
        assert!(matches!(&insns[1], Insn::Cmp { op: CmpOp::Neq, data, .. } if data == &[1]));
        assert_eq!(pkttype(Family::Ip, Hook::Input, 256, 0), Decompiled::Never);
        assert_eq!(pkttype(Family::Ip, Hook::Input, 256, 1), Decompiled::Always);
    }
}
