//! `reject`: the answer nft_reject_{ipv4,ipv6,inet,netdev} would send, as an IR action,
//! and where the eBPF programs send it along the path the kernel's answer takes.
//!
//! The kernel sends its answer from the hook: from ip/ip6/inet chains through the local
//! output path (output and postrouting chains, then the device), from a netdev ingress
//! chain straight out of the device. The TC program answers at ingress out of the same
//! device, at egress into the local stack, and its answer is not judged by the chains
//! the kernel's answer would meet. So a reject is enforced where that makes no
//! difference: at input, prerouting (TCP reset only) and netdev ingress, when no chain
//! sits on the way out (forward, output, postrouting, netdev egress).
//!
//! Known difference: the kernel rate-limits ICMP errors (`net.ipv4.icmp_ratelimit`,
//! `net.ipv6.icmp.ratelimit`, per destination); the eBPF programs answer every packet.

use netlink_proto::expr::reject::{Reject as TypedReject, RejectType};
use nftshim_ebpf::ir::{Action, IcmpxCode, Reject};
use nftshim_engine::DataplaneError;

use super::{refuse, Family, Hook, HookChain, Program, SymRule};

/// The action of `reject` in a chain of `family` at `hook`.
pub fn action(family: Family, hook: Hook, r: &TypedReject) -> Result<Action, String> {
    let code = || r.icmp_code().ok_or("reject without an ICMP code");
    let reject = match r.reject_type().ok_or("reject without a type")? {
        RejectType::TcpRst => Reject::TcpReset,
        // nft_reject_ipv4/ipv6 send their family's unreachable with this code;
        // nft_reject_inet and _netdev the packet's family's, with the same code.
        RejectType::IcmpUnreach => Reject::Icmp(code()?),
        RejectType::IcmpxUnreach => match family {
            Family::Inet | Family::Netdev => Reject::Icmpx(icmpx(code()?)?),
            // nft never sends it there; the kernel's ipv4/ipv6 eval would only drop.
            Family::Ip | Family::Ip6 => {
                return Err("reject with icmpx in an ip/ip6 table is not supported".into())
            }
        },
        RejectType::Unknown(t) => return Err(format!("reject of unknown type {t}")),
    };
    match hook {
        Hook::Input | Hook::Ingress => {}
        Hook::Prerouting if reject == Reject::TcpReset => {}
        // The kernel answers a forwarded packet from an address of its own (the route
        // back), the eBPF program from the packet's destination.
        Hook::Prerouting | Hook::Forward if reject != Reject::TcpReset => {
            return Err(
                "reject with an ICMP error for forwarded packets is not supported by \
                        the eBPF data plane (the answer's source address would differ)"
                    .into(),
            )
        }
        _ => {
            return Err(format!(
                "reject in a {hook:?} chain is not supported by the eBPF data plane (its \
                 answer would not pass the chains the kernel's answer passes)"
            ))
        }
    }
    Ok(Action::Reject(reject))
}

fn icmpx(code: u8) -> Result<IcmpxCode, String> {
    Ok(match code {
        0 => IcmpxCode::NoRoute,
        1 => IcmpxCode::PortUnreachable,
        2 => IcmpxCode::HostUnreachable,
        3 => IcmpxCode::AdminProhibited,
        other => return Err(format!("reject with icmpx code {other}")),
    })
}

/// The answers of rejects at input, prerouting and netdev ingress leave through the
/// egress side, where the kernel's output path and the eBPF program's differ: no chain
/// may sit there.
pub fn check(program: &Program) -> Result<(), DataplaneError> {
    let Some(rejecting) = program.chains.iter().find(|c| rejects(program, c)) else {
        return Ok(());
    };
    let netdev = program
        .chains
        .iter()
        .find(|c| c.hook == Hook::Ingress && rejects(program, c));
    let ip = program
        .chains
        .iter()
        .find(|c| c.hook != Hook::Ingress && rejects(program, c));
    if let (Some(n), Some(i)) = (netdev, ip) {
        return Err(refuse(format!(
            "{} and {} both reject: answers routed (ip hooks) and sent back as they came \
             (netdev) in one program are not supported by the eBPF data plane",
            n.label(),
            i.label()
        )));
    }
    let outbound = program.chains.iter().find(|c| {
        !c.is_noop()
            && matches!(
                c.hook,
                Hook::Forward | Hook::Output | Hook::Postrouting | Hook::Egress
            )
    });
    match outbound {
        Some(c) => Err(refuse(format!(
            "{} rejects packets, and {} would judge the answers differently from the \
             kernel: reject with chains on the way out is not supported by the eBPF data \
             plane yet",
            rejecting.label(),
            c.label()
        ))),
        None => Ok(()),
    }
}

/// Whether a packet can be rejected by `chain` or a chain it jumps to.
fn rejects(program: &Program, chain: &HookChain) -> bool {
    let mut rules: Vec<&SymRule> = chain.rules.iter().collect();
    rules.extend(program.reachable(chain).flat_map(|r| r.rules.iter()));
    rules.iter().any(|r| matches!(r.action, Action::Reject(_)))
}

/// Whether reject answers are routed: the rejects are in ip/ip6/inet chains.
pub fn routes_answers(program: &Program) -> bool {
    program
        .chains
        .iter()
        .any(|c| c.hook != Hook::Ingress && rejects(program, c))
}
