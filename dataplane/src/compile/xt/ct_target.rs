//! xt_CT (`-j CT`, raw table) with only `--ctevents` / `--expevents` (or nothing): a
//! no-op here. xt_ct_tg_check() allocates a conntrack template (zone 0, default
//! direction, no helper, no timeout policy) carrying the event masks; xt_ct_target()
//! attaches it to a packet that has no conntrack entry yet (IP_CT_NEW on the
//! template); nf_conntrack_in() then sees a template, not a real entry, drops it from
//! the skb and looks the packet up as without one, in the template's zone (0, the
//! default). init_conntrack() copies the template's event masks into a new entry's
//! ecache extension; the template has no helper or timeout extension to copy. So the
//! entry, its state and everything a rule can read of it are those the packet gets
//! without the target: the masks only choose which ctnetlink events the entry
//! generates. nftshimd serves no ctnetlink (shim/engine/src/nfnl.rs answers only
//! nf_tables, compat and ulog), and the namespace's packets are tracked by the
//! programs, not the kernel's conntrack, so no event is delivered either way. A
//! packet that already has an entry (looped back) is left alone by the kernel too.
//!
//! What does change in the kernel: the checkentry takes nf_ct_netns_get(), which turns
//! connection tracking (and IPv4/IPv6 defragmentation) on for the family. The first is
//! mirrored ([`crate::compile::kernel_ct`]: the programs track whenever the kernel
//! would, so connections start at the same packet); the second is the data plane's
//! documented fragment difference (it judges fragments one by one).
//!
//! Refused: `--notrack` (the untracked state), `--zone` and the zone direction/mark
//! flags (zones are not modelled by the tracker), `--helper` (no helpers in the
//! tracker: related expectations would differ) and `--timeout` (the tracker keeps its
//! own fixed timeouts).

use netlink_proto::xt::Blob;

use super::Decompiled;

/// `struct xt_ct_target_info` (revision 0) / `_v1` (1, 2): flags u16 @0, zone u16 @2,
/// ct_events u32 @4, exp_events u32 @8, helper [16] @12, (v1) timeout [32] @28.
pub fn ct_target(rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    let flags = b.u16(0);
    let refuse = |what: &str, why: &str| {
        Err(format!(
            "xt target CT {what} is not supported by the eBPF data plane ({why})"
        ))
    };
    if flags & 0x3 != 0 {
        return refuse(
            "--notrack",
            "the tracker has no untracked state set by rules",
        );
    }
    if b.u16(2) != 0 || flags & !0x3 != 0 {
        return refuse("--zone", "the tracker does not model conntrack zones");
    }
    if b.u8(12) != 0 {
        return refuse("--helper", "the tracker runs no conntrack helpers");
    }
    if rev >= 1 && b.u8(28) != 0 {
        return refuse(
            "--timeout",
            "the tracker keeps its own timeouts, not timeout policies",
        );
    }
    Ok(Decompiled::Always)
}
