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
//! The packet form on IPv4 (hmark_pkt_set_htuple_ipv4) is a statement
//! ([`nftshim_ebpf::ir::Hmark`], bpf/lib/hmark.h): skb->mark set outright, allowed
//! where `-j MARK` is (not in input chains: the data plane runs them before the
//! kernel's input route lookup, which policy routing may make read the mark). On IPv6
//! (hmark_pkt_set_htuple_ipv6: an ipv6_find_hdr() walk that stops at AH, the tuple of
//! an ICMPv6 error's quoted packet, a zero tuple when the walk fails) it is refused:
//! that walk is not built.

use netlink_proto::xt::Blob;
use nftshim_ebpf::ir::{Hmark, Statement};

use super::{Decompiled, XtCx};
use crate::compile::rule::{mark_set_allowed_in, V4, V6};
use crate::compile::Family;

/// XT_HMARK_FLAG(XT_HMARK_CT).
const FLAG_CT: u32 = 1 << 12;
/// XT_HMARK_FLAG(XT_HMARK_METHOD_L3).
const FLAG_L3: u32 = 1 << 13;

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
    let flags = b.u32(40);
    if flags & FLAG_CT == 0 {
        if version == V6 {
            return Err(
                "ip6tables' HMARK without --hmark-tuple ct is not supported by the eBPF \
                 data plane (hmark_pkt_set_htuple_ipv6's header walk is not built)"
                    .into(),
            );
        }
        mark_set_allowed_in(cx.family, cx.hook)?;
        let four = |off: usize| -> [u8; 4] { b.bytes(off, 4).try_into().unwrap_or([0; 4]) };
        return Ok(Decompiled::Statement(Statement::Hmark(Hmark {
            src_mask: four(0),
            dst_mask: four(16),
            port_mask: four(32),
            port_set: four(36),
            l3: flags & FLAG_L3 != 0,
            proto_mask: b.u16(44) as u8,
            rnd: b.u32(48),
            modulus: b.u32(52),
            offset: b.u32(56),
        })));
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
