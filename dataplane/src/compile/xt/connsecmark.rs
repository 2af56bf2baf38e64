//! xt_CONNSECMARK (`-j CONNSECMARK --save|--restore`, mangle and security tables):
//! connsecmark_tg() copies skb->secmark to the packet's connection when the connection
//! has none (`--save`), or the connection's back to a packet without one
//! (`--restore`); nothing else. In a namespace served by nftshimd both secmarks stay
//! 0, so the target is exactly a no-op:
//! - nothing here sets skb->secmark: xt SECMARK, nft secmark objects and `meta secmark
//!   set` are refused by the eBPF data plane (`secmark_setters_stay_refused` in
//!   tests.rs fails if that changes), and the kernel's own netfilter has no rules in
//!   the namespace (they live in nftshimd);
//! - so no connection gets a secmark either (`ct secmark set` is refused too), and a
//!   restore finds none to copy.
//!
//! Its checkentry turns the kernel's connection tracking on for the family
//! (nf_ct_netns_get()); [`crate::compile::kernel_ct`] counts that, so the programs
//! track from the same moment.

use netlink_proto::xt::Blob;

use super::Decompiled;

/// `struct xt_connsecmark_target_info`: mode u8 @0 (CONNSECMARK_SAVE 1, _RESTORE 2;
/// the control plane refused any other).
pub fn connsecmark(_b: Blob<'_>) -> Result<Decompiled, String> {
    Ok(Decompiled::Always)
}
