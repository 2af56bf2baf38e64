//! xt_CLASSIFY (`-j CLASSIFY --set-class MAJOR:MINOR`): classify_tg() sets
//! skb->priority and goes on. The kernel allows it at output, forward and postrouting
//! (mangle); the eBPF programs run those chains at TC egress, before the qdisc, the
//! priority's reader, and write the priority when the chains are done. Between the
//! kernel's hook and TC egress nothing sets the priority again (ip_forward() sets it
//! from the TOS before the forward hook), and no rule here reads it (`meta priority`
//! is refused), so the qdisc sees the kernel's value.

use netlink_proto::xt::Blob;
use nftshim_ebpf::ir::Statement;

use super::{Decompiled, XtCx};
use crate::compile::{Family, Hook};

/// `struct xt_classify_target_info`: priority u32 @0.
pub fn classify(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if !matches!(cx.family, Family::Ip | Family::Ip6) {
        return Err(
            "xt target CLASSIFY outside ip and ip6 tables is not supported by the \
                    eBPF data plane"
                .into(),
        );
    }
    if !matches!(cx.hook, Hook::Output | Hook::Forward | Hook::Postrouting) {
        return Err(format!(
            "xt target CLASSIFY in {:?} chains is not supported by the eBPF data plane",
            cx.hook
        ));
    }
    Ok(Decompiled::Statement(Statement::SetPriority(b.u32(0))))
}
