//! `fib saddr|daddr [. iif|oif] type` (nft_fib4_eval_type(),
//! net/ipv4/netfilter/nft_fib_ipv4.c): inet_dev_addr_type() of the packet's source or
//! destination address, with the input or output device, into a register; the same
//! lookup in the runtime's mirror of the local routing table as xt_addrtype
//! (nftshim_ebpf::addrtype). IPv4 only: in inet tables the rule must already be
//! limited to IPv4 packets (IPv6's nft_fib6_eval_type() needs a full route lookup).
//! The other results (`oif`, `oifname`) need the full routing tables: refused.

use netlink_proto::consts::{NFTA_FIB_F_DADDR, NFTA_FIB_F_IIF, NFTA_FIB_F_OIF};
use netlink_proto::expr::fib::{Fib, FibResult};
use nftshim_ebpf::residual::AddrDev;

use super::rule::{V4, V6};
use super::{Family, Hook};

/// The address's offset in the IPv4 header and the device of the lookup.
pub fn addr_type(
    family: Family,
    hook: Hook,
    families: u8,
    f: &Fib,
) -> Result<(u32, AddrDev), String> {
    if f.result() != Some(FibResult::Addrtype) {
        return Err(
            "fib oif and oifname are not supported by the eBPF data plane (they need a \
             lookup in the namespace's full routing tables)"
                .into(),
        );
    }
    let v4 = match family {
        Family::Ip => true,
        Family::Inet => families & V6 == 0 && families & V4 != 0,
        _ => false,
    };
    if !v4 {
        return Err(
            "fib type is supported by the eBPF data plane for IPv4 only (in inet tables, \
             after a match that limits the rule to IPv4)"
                .into(),
        );
    }
    if !matches!(
        hook,
        Hook::Prerouting | Hook::Input | Hook::Forward | Hook::Output | Hook::Postrouting
    ) {
        return Err("fib type outside the IP hooks is not supported by the eBPF data plane".into());
    }
    let flags = f.flags().unwrap_or(0);
    let offset = if flags & u32::from(NFTA_FIB_F_DADDR) != 0 {
        16
    } else {
        12
    };
    let dev = if flags & u32::from(NFTA_FIB_F_IIF) != 0 {
        AddrDev::In
    } else if flags & u32::from(NFTA_FIB_F_OIF) != 0 {
        AddrDev::Out
    } else {
        AddrDev::None
    };
    Ok((offset, dev))
}
