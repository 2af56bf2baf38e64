//! `reject`: the answer nft_reject_{ipv4,ipv6,inet,netdev} would send, as an IR action,
//! and where the eBPF programs send it along the path the kernel's answer takes.
//!
//! The kernel sends its answer from the hook: from ip/ip6/inet chains through the local
//! output path (output and postrouting chains, then the device; an answer to a local
//! packet then comes in on `lo`), from a netdev ingress chain straight out of the
//! device. The TC program answers at ingress out of the same device (by the route back
//! for IP hooks), at egress into the local stack of that device, or for a forwarded
//! packet (a forward chain's reject, `forward_answers`) by the route back to its sender
//! out of the egress of that route's device, from the address that route gives an ICMP
//! error (`bpf/lib/reject.h`, `ns_route_fwd_answer`). An answer from TC
//! ingress is marked ([`marks_answers`]) so that the egress program judges it as the
//! kernel's locally generated answer (output, postrouting and netdev egress chains; not
//! forward). So a reject is enforced where that makes no difference:
//! - at input, prerouting (TCP reset only) and netdev ingress, when no chain sits on
//!   the way out (forward, output, postrouting, netdev egress);
//! - at forward, where answers are always marked: with the same conditions on the
//!   chains on the answers' way out, on plain Ethernet devices (and veth), and with the
//!   sysctls that shape the kernel's answers at their defaults
//!   ([`check_forward_answers`]);
//! - at input and prerouting with chains on the way out, when answers are marked and
//!   the chains the answer meets there see nothing of it that differs from the
//!   kernel's ([`check_answer_path`]);
//! - at output, when only output (and forward) chains exist and what the output chains
//!   do to the answer is known from the ruleset alone (`answer_fate`): they let it
//!   through (the reject stays), or they drop it (the kernel's answer never arrives:
//!   the reject becomes a drop).
//!
//! Known difference: the kernel rate-limits ICMP errors (`net.ipv4.icmp_ratelimit`,
//! `net.ipv6.icmp.ratelimit`, per destination, and `icmp_msgs_per_sec`), with buckets
//! it shares with the errors its stack sends; the eBPF programs answer every packet,
//! forwarded ones too.

use netlink_proto::expr::reject::{Reject as TypedReject, RejectType};
use nftshim_ebpf::ir::{Action, IcmpxCode, Match, Reject, Test};
use nftshim_engine::DataplaneError;

use std::sync::Arc;

use super::{refuse, Facts, Family, Hook, HookChain, Program, SymMatch, SymRule};

/// The action of `reject` in a chain of `family` at `hook`.
pub fn action(family: Family, hook: Hook, r: &TypedReject) -> Result<Action, String> {
    if family == Family::Arp {
        return Err("reject in an arp table is not supported".into());
    }
    if family == Family::Bridge {
        // nft_reject_bridge answers out of the port with its own rules: not modelled.
        return Err("reject in a bridge table is not supported by the eBPF data plane".into());
    }
    let code = || r.icmp_code().ok_or("reject without an ICMP code");
    let reject = match r.reject_type().ok_or("reject without a type")? {
        RejectType::TcpRst => Reject::TcpReset,
        // nft_reject_ipv4/ipv6 send their family's unreachable with this code;
        // nft_reject_inet and _netdev the packet's family's, with the same code.
        RejectType::IcmpUnreach => Reject::Icmp(code()?),
        RejectType::IcmpxUnreach => match family {
            Family::Inet | Family::Netdev => Reject::Icmpx(icmpx(code()?)?),
            Family::Arp | Family::Bridge => unreachable!("refused above"),
            // nft never sends it there; the kernel's ipv4/ipv6 eval would only drop.
            Family::Ip | Family::Ip6 => {
                return Err("reject with icmpx in an ip/ip6 table is not supported".into())
            }
        },
        RejectType::Unknown(t) => return Err(format!("reject of unknown type {t}")),
    };
    at_hook(hook, reject)
}

/// The action of a reject sending `reject` at `hook` (nft `reject`, iptables `REJECT`:
/// both send nf_send_unreach/nf_send_reset's answers), if it is enforced there.
pub fn at_hook(hook: Hook, reject: Reject) -> Result<Action, String> {
    match hook {
        // Output: [`check`] decides from the whole program. Forward: the egress program
        // routes the answer back as the kernel does (`forward_answers`).
        Hook::Input | Hook::Ingress | Hook::Output | Hook::Forward => {}
        Hook::Prerouting if reject == Reject::TcpReset => {}
        // nf_send_unreach() at prerouting routes toward the sender first: its ICMP
        // error comes from the address of that route, for local destinations too.
        Hook::Prerouting => {
            return Err(
                "reject with an ICMP error at prerouting is not supported by the eBPF \
                 data plane (the answer's source address would differ)"
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
pub fn check(program: &mut Program) -> Result<(), DataplaneError> {
    resolve_output(program)?;
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
    if rejecting.hook == Hook::Output {
        return Ok(());
    }
    let outbound = program.chains.iter().find(|c| {
        !c.is_noop()
            && matches!(
                c.hook,
                Hook::Forward | Hook::Output | Hook::Postrouting | Hook::Egress
            )
    });
    let Some(outbound) = outbound else {
        return Ok(());
    };
    // netdev answers leave by dev_queue_xmit (netdev egress only); ours are seen as
    // forwarded there. Unmarked answers are too.
    if netdev.is_some() || !marks_answers(program) {
        return Err(refuse(format!(
            "{} rejects packets, and {} would judge the answers differently from the \
             kernel: reject with chains on the way out is not supported by the eBPF data \
             plane yet",
            rejecting.label(),
            outbound.label()
        )));
    }
    check_answer_path(program, rejecting)
}

/// Whether answers routed from TC ingress are marked for the egress programs
/// (`ir::Program::mark_answers`): only when every device has an egress program to take
/// the mark off (an ip chain at forward, output or postrouting, or conntrack).
pub fn marks_answers(program: &Program) -> bool {
    routes_answers(program)
        && (super::attach::uses_ct(program)
            || program.chains.iter().any(|c| {
                !c.is_noop()
                    && c.family != Family::Arp
                    && matches!(c.hook, Hook::Forward | Hook::Output | Hook::Postrouting)
            }))
}

/// A marked answer meets the output, postrouting and netdev egress chains of its
/// device as the kernel's answer does (ip_local_out: a locally generated packet, no
/// input device, mark 0). What they see of it is the kernel's, except:
/// - its connection: the kernel's reset carries the rejected packet's (nf_ct_attach:
///   related, reply direction, that connection's mark and status), its ICMP error is
///   tracked on its own (related to a confirmed connection, else invalid); the egress
///   program does not reproduce them;
/// - the mark when `fwmark_reflect` is on (the program sends 0, the sysctl's default);
/// - what residual programs read (sockets, routes, ...), and what statements would do
///   to it (a new mark reroutes the kernel's answer; logs show its fields);
/// - a reject of the answer (the kernel's answer to it goes to a local address).
///
/// So those chains must not read or set any of that.
fn check_answer_path(program: &Program, rejecting: &HookChain) -> Result<(), DataplaneError> {
    for c in program.chains.iter().filter(|c| {
        !c.is_noop()
            && c.family != Family::Arp
            && matches!(c.hook, Hook::Output | Hook::Postrouting | Hook::Egress)
    }) {
        let mut rules: Vec<&Arc<SymRule>> = c.rules.iter().collect();
        rules.extend(program.reachable(c).flat_map(|r| r.rules.iter()));
        let why = if super::rules_use_ct(&c.rules)
            || program.reachable(c).any(|r| super::rules_use_ct(&r.rules))
        {
            Some("reads or sets connection tracking state")
        } else if rules.iter().any(|r| matches!(r.action, Action::Reject(_))) {
            Some("rejects packets")
        } else if rules.iter().any(|r| !r.statements.is_empty()) {
            Some("has statements")
        } else if rules.iter().any(|r| r.matches.iter().any(reads_unknown)) {
            Some("tests the mark or what a residual program reads")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(refuse(format!(
                "{} rejects packets, and {} on the answers' way out {why}: it would see \
                 the answers differently from the kernel's (not supported by the eBPF \
                 data plane)",
                rejecting.label(),
                c.label()
            )));
        }
    }
    Ok(())
}

/// Tests of what a marked answer does not have as the kernel's (see
/// [`check_answer_path`]).
fn reads_unknown(m: &SymMatch) -> bool {
    let SymMatch::Ir(Match { test, .. }) = m else {
        return false;
    };
    matches!(
        test,
        Test::Mark { .. }
            | Test::Residual(_)
            | Test::InSet {
                field: nftshim_ebpf::ir::SetField::Mark,
                ..
            }
    )
}

/// Whether a packet can be rejected by `chain` or a chain it jumps to.
fn rejects(program: &Program, chain: &HookChain) -> bool {
    chain
        .rules
        .iter()
        .chain(program.reachable(chain).flat_map(|r| r.rules.iter()))
        .any(|r| matches!(r.action, Action::Reject(_)))
}

/// Whether a forward chain rejects: the egress programs then route the answers to
/// forwarded packets back to their senders (`ir::Program::forward_answers`). Only with
/// marked answers ([`check`] refuses forward rejects without them): the answer keeps
/// the forwarded packet's input device, and only the mark keeps the egress program of
/// the device it leaves by from judging it as forwarded.
pub fn forward_answers(program: &Program) -> bool {
    marks_answers(program)
        && program
            .chains
            .iter()
            .any(|c| c.hook == Hook::Forward && rejects(program, c))
}

/// The egress programs answer forwarded packets as the kernel does with its defaults:
/// the ICMP error from the address the route back gives (not the input device's,
/// `icmp_errors_use_inbound_ifaddr`), TTL and hop limit 64 (`ip_default_ttl`, the
/// devices' IPv6 `hop_limit`), mark 0 (`fwmark_reflect`). Refused when the namespace
/// sets one of these otherwise (read when the ruleset is compiled).
pub fn check_forward_answers(program: &Program, facts: &Facts) -> Result<(), DataplaneError> {
    let Some(c) = program
        .chains
        .iter()
        .find(|c| c.hook == Hook::Forward && rejects(program, c))
    else {
        return Ok(());
    };
    // The answer is built from the output device's Ethernet frame and leaves with the
    // route back's Ethernet header.
    if let Some((idx, _)) = facts
        .link_types
        .iter()
        .find(|(_, &t)| t != libc::ARPHRD_ETHER && t != libc::ARPHRD_LOOPBACK)
    {
        let name = facts.links.get(idx).map_or("?", |n| n.as_str());
        return Err(refuse(format!(
            "{} rejects forwarded packets, and {name} is not an Ethernet device: answers \
             routed through it are not supported by the eBPF data plane",
            c.label()
        )));
    }
    // A stacked device's packets meet the egress programs of the devices under it,
    // which would see the answer as forwarded once the first took its mark off.
    if let Some((idx, kind)) = facts.layered_links.iter().next() {
        let name = facts.links.get(idx).map_or("?", |n| n.as_str());
        return Err(refuse(format!(
            "{} rejects forwarded packets, and {name} is a {kind} device: answers through \
             stacked devices are not supported by the eBPF data plane",
            c.label()
        )));
    }
    if let Some((key, value)) = facts.answer_sysctls.first() {
        return Err(refuse(format!(
            "{} rejects forwarded packets, and {key} is {value}: the kernel's answers \
             would differ from the eBPF data plane's (not supported)",
            c.label()
        )));
    }
    Ok(())
}

/// Whether reject answers are routed: the rejects are in ip/ip6/inet chains.
pub fn routes_answers(program: &Program) -> bool {
    program
        .chains
        .iter()
        .any(|c| c.hook != Hook::Ingress && rejects(program, c))
}

/// Rejects in output chains: kept, turned into drops, or refused (see the module doc).
fn resolve_output(program: &mut Program) -> Result<(), DataplaneError> {
    let outputs: Vec<usize> = (0..program.chains.len())
        .filter(|&i| program.chains[i].hook == Hook::Output && rejects(program, &program.chains[i]))
        .collect();
    let Some(&first) = outputs.first() else {
        return Ok(());
    };
    let label = program.chains[first].label();
    if let Some(c) = program
        .chains
        .iter()
        .find(|c| !c.is_noop() && !matches!(c.hook, Hook::Output | Hook::Forward))
    {
        return Err(refuse(format!(
            "{label} rejects packets, and the answers would meet {} differently from the \
             kernel's: reject in output chains with chains at other hooks is not supported \
             by the eBPF data plane yet",
            c.label()
        )));
    }
    // Every reject of the output chains and of the chains they reach, by position.
    let mut regular_rejects: Vec<(String, usize, Reject, u8)> = Vec::new();
    let mut base_rejects: Vec<(usize, usize, Reject, u8)> = Vec::new();
    for &ci in &outputs {
        let c = &program.chains[ci];
        let fams = families(c.family);
        for (ri, r) in c.rules.iter().enumerate() {
            if let Action::Reject(rj) = r.action {
                base_rejects.push((ci, ri, rj, fams));
            }
        }
        for (name, rc) in program.regular.iter() {
            if !program.reachable(c).any(|x| std::ptr::eq(x, rc)) {
                continue;
            }
            for (ri, r) in rc.rules.iter().enumerate() {
                if let Action::Reject(rj) = r.action {
                    regular_rejects.push((name.clone(), ri, rj, fams));
                }
            }
        }
    }
    let decide = |rj: Reject, fams: u8| -> Result<Action, DataplaneError> {
        let mut fates = Vec::new();
        for fam in [V4, V6] {
            if fams & fam != 0 {
                fates.push(answer_fate(program, &Answer::of(rj, fam)));
            }
        }
        match fates.as_slice() {
            [Fate::Passes, ..] if fates.iter().all(|f| *f == Fate::Passes) => {
                Ok(Action::Reject(rj))
            }
            [Fate::Dropped, ..] if fates.iter().all(|f| *f == Fate::Dropped) => Ok(Action::Drop),
            _ => Err(refuse(format!(
                "{label}: what the output chains do to the answers of its reject cannot be \
                 known from the ruleset alone (the kernel judges its answers there again); \
                 not supported by the eBPF data plane"
            ))),
        }
    };
    let mut base_actions = Vec::new();
    for (ci, ri, rj, fams) in &base_rejects {
        base_actions.push((*ci, *ri, decide(*rj, *fams)?));
    }
    let mut regular_actions = Vec::new();
    for (name, ri, rj, fams) in &regular_rejects {
        regular_actions.push((name.clone(), *ri, decide(*rj, *fams)?));
    }
    for (ci, ri, a) in base_actions {
        Arc::make_mut(&mut program.chains[ci].rules[ri]).action = a;
    }
    for (name, ri, a) in regular_actions {
        if let Some(c) = program.regular.get_mut(&name) {
            Arc::make_mut(&mut c.rules[ri]).action = a;
        }
    }
    Ok(())
}

const V4: u8 = 1;
const V6: u8 = 2;

fn families(f: Family) -> u8 {
    match f {
        Family::Ip => V4,
        Family::Ip6 => V6,
        Family::Inet | Family::Netdev => V4 | V6,
        Family::Arp | Family::Bridge => 0,
    }
}

/// The kernel's answer to a packet rejected at output, as the output chains see it: a
/// TCP reset or an ICMP/ICMPv6 destination unreachable, to the local sender (through
/// `lo`, mark 0 unless `fwmark_reflect`, which is not known here: marks are unknown).
/// Addresses and the reset's ports are not known.
struct Answer {
    family: u8,
    /// IPPROTO_TCP, IPPROTO_ICMP or IPPROTO_ICMPV6.
    l4proto: u8,
}

impl Answer {
    fn of(r: Reject, family: u8) -> Answer {
        let l4proto = match (r, family) {
            (Reject::TcpReset, _) => 6,
            (_, V4) => 1,
            _ => 58,
        };
        Answer { family, l4proto }
    }
    fn is_icmp_error(&self) -> bool {
        self.l4proto != 6
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Accepted by every output chain: the local sender gets it.
    Passes,
    /// Dropped (or rejected, which for an answer sends nothing more).
    Dropped,
    /// Depends on what the ruleset cannot tell.
    Unknown,
}

/// How a chain's evaluation of the answer ends.
enum Flow {
    /// The end of a regular chain or `return`: back to the caller.
    Continue,
    Accept,
    Dropped,
    Unknown,
}

/// What the output chains, in priority order, do to `a`.
fn answer_fate(program: &Program, a: &Answer) -> Fate {
    let mut chains: Vec<&HookChain> = program
        .chains
        .iter()
        .filter(|c| c.hook == Hook::Output && families(c.family) & a.family != 0)
        .collect();
    chains.sort_by_key(|c| c.priority);
    for c in chains {
        match eval_rules(program, &c.rules, a, 0) {
            Flow::Accept => continue,
            Flow::Dropped => return Fate::Dropped,
            Flow::Unknown => return Fate::Unknown,
            Flow::Continue => {
                if c.policy_counter.is_some() {
                    // The chain's own counters would count the answer.
                    return Fate::Unknown;
                }
                if c.policy == nftshim_ebpf::ir::Verdict::Drop {
                    return Fate::Dropped;
                }
            }
        }
    }
    Fate::Passes
}

fn eval_rules(program: &Program, rules: &[Arc<SymRule>], a: &Answer, depth: usize) -> Flow {
    if depth > nftshim_ebpf::ir::JUMP_STACK_SIZE {
        return Flow::Unknown;
    }
    for r in rules {
        match matches(r, a) {
            Some(false) => continue,
            None => return Flow::Unknown,
            Some(true) => {}
        }
        if !r.counters.is_empty() || !r.statements.is_empty() {
            // The answer would be counted, logged or marked.
            return Flow::Unknown;
        }
        let target = |t: &String| program.regular.get(t).map(|c| c.rules.as_slice());
        match &r.action {
            Action::Continue => {}
            Action::Accept => return Flow::Accept,
            Action::Drop => return Flow::Dropped,
            // No answer to an ICMP error, nor a reset to a reset.
            Action::Reject(Reject::TcpReset) => return Flow::Dropped,
            Action::Reject(_) if a.is_icmp_error() => return Flow::Dropped,
            Action::Reject(_) => return Flow::Unknown,
            Action::Return => return Flow::Continue,
            Action::Jump(t) => match target(t).map(|rs| eval_rules(program, rs, a, depth + 1)) {
                Some(Flow::Continue) => {}
                Some(other) => return other,
                None => return Flow::Unknown,
            },
            Action::Goto(t) => {
                return target(t).map_or(Flow::Unknown, |rs| eval_rules(program, rs, a, depth + 1))
            }
        }
    }
    Flow::Continue
}

/// Whether all of a rule's matches hold for the answer: None when unknown.
fn matches(r: &SymRule, a: &Answer) -> Option<bool> {
    let mut all = Some(true);
    for m in &r.matches {
        match match_answer(m, a) {
            Some(false) => return Some(false),
            None => all = None,
            Some(true) => {}
        }
    }
    all
}

fn match_answer(m: &SymMatch, a: &Answer) -> Option<bool> {
    let (test, negated) = match m {
        SymMatch::IfName {
            output: true,
            patterns,
            negated,
        } => return Some(patterns.iter().any(|p| p.matches("lo")) != *negated),
        SymMatch::IfName { .. } | SymMatch::IfType { .. } => return None,
        SymMatch::Ir(Match { test, negated }) => (test, *negated),
    };
    // A field the answer does not have fails the match, negated or not.
    let is = |present: bool, holds: Option<bool>| -> Option<bool> {
        if !present {
            return Some(false);
        }
        holds.map(|h| h != negated)
    };
    let v4 = a.family == V4;
    let everything4 = |nets: &Vec<ipnet::Ipv4Net>| nets.iter().any(|n| n.prefix_len() == 0);
    let everything6 = |nets: &Vec<ipnet::Ipv6Net>| nets.iter().any(|n| n.prefix_len() == 0);
    match test {
        Test::IpSaddr(n) | Test::IpDaddr(n) => is(v4, everything4(n).then_some(true)),
        Test::Ip6Saddr(n) | Test::Ip6Daddr(n) => is(!v4, everything6(n).then_some(true)),
        Test::L4Proto(p) => is(true, Some(p.contains(&a.l4proto))),
        Test::Sport(_) | Test::Dport(_) => is(!a.is_icmp_error(), None),
        Test::IcmpType(t) => is(a.l4proto == 1, Some(t.contains(&3))),
        Test::Icmpv6Type(t) => is(a.l4proto == 58, Some(t.contains(&1))),
        // LOOPBACK_IFINDEX.
        Test::Oif(idx) => is(true, Some(idx.contains(&1))),
        _ => None,
    }
}
