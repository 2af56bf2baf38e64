//! xt_HMARK (`-j HMARK`): skb->mark = a hash of the packet's (or its connection's)
//! addresses, ports and protocol, scaled into `--hmark-mod` and offset
//! (hmark_tg_v4/v6()).
//!
//! `--hmark-tuple ct` hashes the connection's tuples; hmark_ct_set_htuple() finds no
//! connection (nf_ct_get() NULL) when the kernel does not track the family, and the
//! target then returns XT_CONTINUE without marking. hmark_tg_check() does not turn
//! tracking on itself: other rules do ([`crate::compile::kernel_ct`], over the whole
//! ruleset, dormant tables included). So where nothing in the ruleset turns it on for
//! the rule's family, the `ct` form is exactly a no-op and is accepted as one. Where
//! something does, it is refused: the hash would need the tracker's tuples exactly
//! as the kernel's (ICMP errors RELATED there and INVALID here in known cases, SCTP
//! and GRE tracked generically), which is not built.
//!
//! The packet form (hmark_pkt_set_htuple_ipv4/ipv6) is refused for now.

use netlink_proto::xt::Blob;

use super::{Decompiled, XtCx};
use crate::compile::rule::{V4, V6};
use crate::compile::Family;

/// XT_HMARK_FLAG(XT_HMARK_CT).
const FLAG_CT: u32 = 1 << 12;

/// `struct xt_hmark_info`: src_mask @0, dst_mask @16, port_mask @32, port_set @36,
/// flags u32 @40, proto_mask u16 @44, hashrnd @48, hmodulus @52, hoffset @56.
pub fn hmark(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let version = match cx.family {
        Family::Ip => V4,
        Family::Ip6 => V6,
        _ => {
            return Err(
                "xt target HMARK outside ip and ip6 tables is not supported by the eBPF \
                 data plane"
                    .into(),
            )
        }
    };
    if b.u32(40) & FLAG_CT == 0 {
        return Err(
            "xt target HMARK without --hmark-tuple ct is not supported by the eBPF data \
             plane yet (the packet tuple's hash is not built)"
                .into(),
        );
    }
    let Some(view) = cx.view else {
        return Err("xt target HMARK --hmark-tuple ct needs the whole ruleset".into());
    };
    if crate::compile::kernel_ct::versions(view) & version != 0 {
        return Err(
            "xt target HMARK --hmark-tuple ct where connection tracking is on for the \
             family is not supported by the eBPF data plane (the hash of the kernel's \
             connection tuples is not built)"
                .into(),
        );
    }
    // No connection can exist for this family: hmark_tg_v4/v6 continue unmarked.
    Ok(Decompiled::Always)
}
