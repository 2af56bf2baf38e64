//! `-m cpu` (net/netfilter/xt_cpu.c): the CPU that runs the hook is `--cpu`
//! (`cpu_mt()`: `(info->cpu == smp_processor_id()) ^ info->invert`).
//!
//! TC sees the CPU the netfilter hook sees only where both run in one pass over the
//! packet. At ingress they do: TC ingress and the IP stack's PREROUTING and INPUT run
//! in one __netif_receive_skb() call, after RPS has picked the CPU. At egress they need
//! not: a packet sent while its neighbour is unresolved waits in the neighbour's queue
//! after FORWARD/OUTPUT/POSTROUTING and reaches TC egress from the softirq that handles
//! the ARP or NDP reply, on whichever CPU that is. Those hooks are refused.

use netlink_proto::xt::Blob;
use nftshim_ebpf::residual::Insn;

use super::super::{Family, Hook};
use super::{Decompiled, XtCx};

/// `struct xt_cpu_info`: cpu u32 @0, invert u32 @4 (0 or 1: checkentry).
pub fn cpu(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if !matches!(cx.family, Family::Ip | Family::Ip6) {
        return Err(
            "xt match cpu outside ip/ip6 tables is not supported by the eBPF data plane".into(),
        );
    }
    if !matches!(cx.hook, Hook::Prerouting | Hook::Input) {
        return Err(format!(
            "xt match cpu at the {:?} hook is not supported by the eBPF data plane (TC \
             egress may run on another CPU than the hook: packets waiting for neighbour \
             resolution leave from the reply's softirq)",
            cx.hook
        ));
    }
    Ok(Decompiled::Residual(
        vec![],
        vec![Insn::XtCpu {
            cpu: b.u32(0),
            invert: b.u32(4) != 0,
        }],
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cx, xt_match};
    use super::super::{decompile_match, Decompiled};
    use super::*;

    fn cpu(hook: Hook, cpu: u32, invert: u32) -> Result<Decompiled, String> {
        let mut info = vec![0u8; 8];
        info[..4].copy_from_slice(&cpu.to_ne_bytes());
        info[4..].copy_from_slice(&invert.to_ne_bytes());
        let cx = cx(Family::Ip, hook, None);
        let m = xt_match("cpu", 0, info);
        decompile_match(&cx, &m)
    }

    #[test]
    fn cpu_compared_at_ingress_hooks_only() {
        for hook in [Hook::Prerouting, Hook::Input] {
            assert_eq!(
                cpu(hook, 4294967295, 1),
                Ok(Decompiled::Residual(
                    vec![],
                    vec![Insn::XtCpu {
                        cpu: u32::MAX,
                        invert: true
                    }]
                ))
            );
        }
        for hook in [Hook::Forward, Hook::Output, Hook::Postrouting] {
            let e = cpu(hook, 0, 0).unwrap_err();
            assert!(e.contains("cpu"), "{e}");
        }
    }
}
