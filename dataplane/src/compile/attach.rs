//! Which base chains a TC program stands for, and how they become one IR chain.
//!
//! A TC program sees, per interface and direction, what several netfilter hooks see:
//! - ingress: netdev ingress (this device), then prerouting, then input for packets
//!   the namespace delivers locally (destination in its local routing table);
//! - egress: forward (packets that came in on a device: `skb_iif != 0`) or output
//!   (generated here: `skb_iif == 0`), then postrouting, then netdev egress (this
//!   device). Forward is enforced at egress, after the kernel's routing decision, so
//!   that `oif` is known and packets the kernel would not forward are left to it.
//! - arp input (ingress) and output (egress) see the ARP frames the program tells
//!   apart as the kernel's ARP hooks' (`Test::ArpHook`, `bpf/lib/arp.h`), on the links
//!   whose frames those hooks see ([`Facts::no_arp`]); after netdev ingress, before
//!   netdev egress.
//! - bridge prerouting, and input for link-local frames passed up on a port, at a
//!   bridge port's ingress (after netdev ingress); bridge input at the bridge device's
//!   ingress (before everything else there); bridge forward (copies that came in on a
//!   port of the same bridge), output (copies the bridge device sent) and postrouting
//!   (both) at a port's egress (see [`super::bridge`]).
//!
//! The chains are flattened in hook and priority order into one first-match list; a
//! chain's rules are guarded by matches selecting the packets its hook sees, and its
//! drop policy becomes a guarded last rule. This is exact when an `accept`, which in
//! the kernel ends only its own base chain, cannot skip a later chain: so a chain
//! with accept rules must be the last one its packets meet ([`check_composable`]).
//! Chains of equal priority on one hook run in registration order, which the view
//! does not tell; such ties are refused unless their order cannot matter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nftshim_ebpf::ir::{self, Action, L3Scope, Match, Test, Verdict};
use nftshim_engine::{CounterRef, DataplaneError};

use super::bridge::{port_classes, ports_of, PortClasses};
use super::rule::family_guard;
use super::{refuse, rules_use_ct, Facts, Family, Hook, HookChain, Program, SymMatch, SymRule};
use nftshim_ebpf::ir::bridge_classes;
use nftshim_ebpf::residual::{AddrDev, Insn};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

/// The IR program of each (ifindex, direction) that has one: the flattened base
/// chains as its one base chain, and the regular chains they jump to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Attach points that see the same chains in the same order share one program.
    pub chains: BTreeMap<(u32, Direction), Arc<ir::Program>>,
    /// For each program, per IR counter slot (rule numbering, see [`ir::Program`]): the
    /// ruleset's counters that slot counts for. Slots past the list count for none.
    pub counters: BTreeMap<(u32, Direction), Arc<Vec<Vec<CounterRef>>>>,
}

/// What an attach point's program is made of: its stages (chain, class, order), and
/// the flags set on the flattened program. Equal keys make equal programs, whichever
/// interface they are for (interface matches are resolved at run time by ifindex).
#[derive(PartialEq)]
struct PlanKey {
    stages: Vec<(*const HookChain, Class, u8)>,
    track: bool,
    marking: bool,
    bridge_tx_mark: bool,
}

const V4: u8 = 1;
const V6: u8 = 2;
const OTHER: u8 = 4;
/// ARP frames at an ARP hook.
const ARP: u8 = 8;

/// Which of a hook's packets a chain sees at a TC attach point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    All,
    /// Ingress packets for a local destination (input).
    Local,
    /// Egress packets generated in the namespace (output).
    LocalOrigin,
    /// Egress packets that came in on a device (forward).
    Forwarded,
    /// ARP frames at the ARP hook of the direction.
    Arp,
    /// Frames of these classes (`bridge_classes`) at a bridge port's or the bridge
    /// device's ingress.
    Bridge(u32),
    /// Egress frames that came in on a port of this bridge (ifindex), not sent by it.
    BridgeForwarded(u32),
    /// Egress frames the bridge device sent.
    BridgeSent,
    /// Both of the above.
    BridgePostrouting(u32),
}

/// What a link is to the bridge hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BridgeRole {
    None,
    Port { bridge: u32, classes: PortClasses },
    Bridge,
}

impl BridgeRole {
    fn of(ifindex: u32, facts: &Facts) -> BridgeRole {
        if facts.bridges.contains_key(&ifindex) {
            return BridgeRole::Bridge;
        }
        match facts.bridge_ports.get(&ifindex) {
            Some(port) => match facts.bridges.get(&port.bridge) {
                Some(bridge) => BridgeRole::Port {
                    bridge: port.bridge,
                    classes: port_classes(port, bridge),
                },
                None => BridgeRole::None,
            },
            None => BridgeRole::None,
        }
    }
}

struct Stage<'p> {
    chain: &'p HookChain,
    class: Class,
    /// Hook order at the attach point; priority orders chains within one.
    order: u8,
}

fn families(f: Family) -> u8 {
    match f {
        Family::Ip => V4,
        Family::Ip6 => V6,
        Family::Inet => V4 | V6,
        Family::Netdev | Family::Bridge => V4 | V6 | OTHER | ARP,
        Family::Arp => ARP,
    }
}

/// The stages of one attach point: `device` is the link's name (`None`: any link no
/// netdev chain names), `arp` whether the ARP hooks see its frames, `bridge` what it
/// is to a bridge.
fn stages<'p>(
    program: &'p Program,
    dir: Direction,
    device: Option<&str>,
    arp: bool,
    bridge: BridgeRole,
) -> Vec<Stage<'p>> {
    let on_device = |c: &HookChain| device.is_some_and(|d| c.devices.iter().any(|x| x == d));
    let mut out: Vec<Stage<'p>> = program
        .chains
        .iter()
        .filter(|c| !c.is_noop())
        .filter_map(|c| {
            let (class, order) = match (dir, c.hook) {
                _ if c.family == Family::Bridge => return bridge_stage(c, dir, bridge),
                _ if c.family == Family::Arp && !arp => return None,
                (Direction::Ingress, Hook::Input) if c.family == Family::Arp => (Class::Arp, 3),
                (Direction::Egress, Hook::Output) if c.family == Family::Arp => (Class::Arp, 0),
                (Direction::Ingress, Hook::Ingress) if on_device(c) => (Class::All, 1),
                (Direction::Ingress, Hook::Prerouting) => (Class::All, 2),
                (Direction::Ingress, Hook::Input) => (Class::Local, 3),
                (Direction::Egress, Hook::Forward) => (Class::Forwarded, 0),
                (Direction::Egress, Hook::Output) => (Class::LocalOrigin, 0),
                (Direction::Egress, Hook::Postrouting) => (Class::All, 1),
                (Direction::Egress, Hook::Egress) if on_device(c) => (Class::All, 2),
                _ => return None,
            };
            Some(Stage {
                chain: c,
                class,
                order,
            })
        })
        .collect();
    out.sort_by_key(|s| (s.order, s.chain.priority));
    out
}

/// A bridge chain's stage at an attach point, if its hook sees frames there. Orders:
/// bridge input at the bridge device precedes its TC ingress (netdev ingress, order
/// 1); at a port, the bridge's rx handler follows netdev ingress; forward precedes
/// netdev egress.
fn bridge_stage<'p>(c: &'p HookChain, dir: Direction, role: BridgeRole) -> Option<Stage<'p>> {
    let (class, order) = match (dir, c.hook, role) {
        (Direction::Ingress, Hook::Input, BridgeRole::Bridge) => {
            (Class::Bridge(bridge_classes::ALL), 0)
        }
        (Direction::Ingress, Hook::Input, BridgeRole::Port { classes, .. }) => {
            (Class::Bridge(classes.input), 2)
        }
        (Direction::Ingress, Hook::Prerouting, BridgeRole::Port { classes, .. }) => {
            (Class::Bridge(classes.prerouting), 2)
        }
        (Direction::Egress, Hook::Forward, BridgeRole::Port { bridge, .. }) => {
            (Class::BridgeForwarded(bridge), 0)
        }
        (Direction::Egress, Hook::Output, BridgeRole::Port { .. }) => (Class::BridgeSent, 0),
        (Direction::Egress, Hook::Postrouting, BridgeRole::Port { bridge, .. }) => {
            (Class::BridgePostrouting(bridge), 1)
        }
        _ => return None,
    };
    if class == Class::Bridge(0) {
        return None;
    }
    Some(Stage {
        chain: c,
        class,
        order,
    })
}

fn overlap(a: &Stage<'_>, b: &Stage<'_>) -> bool {
    let classes = match (a.class, b.class) {
        (Class::Bridge(x), Class::Bridge(y)) => x & y != 0,
        (Class::BridgeSent, Class::BridgeForwarded(_))
        | (Class::BridgeForwarded(_), Class::BridgeSent) => false,
        // Bridge stages against the others: assumed to meet (the bridge's frames
        // include IP and ARP ones).
        (
            Class::Bridge(_)
            | Class::BridgeForwarded(_)
            | Class::BridgeSent
            | Class::BridgePostrouting(_),
            _,
        )
        | (
            _,
            Class::Bridge(_)
            | Class::BridgeForwarded(_)
            | Class::BridgeSent
            | Class::BridgePostrouting(_),
        ) => true,
        (Class::All, _) | (_, Class::All) => true,
        (x, y) => x == y,
    };
    classes && families(a.chain.family) & families(b.chain.family) != 0
}

/// An accept ends only its own base chain: no chain may follow one with accept rules
/// on the same packets. The check covers every device a netdev chain names, and any
/// other device, so that it holds whatever links appear later.
pub fn check_composable(program: &Program) -> Result<(), DataplaneError> {
    let mut devices: BTreeSet<Option<&str>> = BTreeSet::new();
    devices.insert(None);
    for c in &program.chains {
        for d in &c.devices {
            devices.insert(Some(d.as_str()));
        }
    }
    // Any port: prerouting and port input see disjoint classes, each some.
    let any_port = BridgeRole::Port {
        bridge: 0,
        classes: PortClasses {
            prerouting: bridge_classes::OTHER,
            input: (0..16).fold(0, |a, x| a | bridge_classes::link_local(x)),
        },
    };
    for dir in [Direction::Ingress, Direction::Egress] {
        for device in &devices {
            for role in [BridgeRole::None, BridgeRole::Bridge, any_port] {
                let st = stages(program, dir, *device, true, role);
                check_lengths(program, &st)?;
                check_stages(program, &st)?;
            }
        }
    }
    Ok(())
}

/// Bridge hooks count frames from the network header untrimmed, the IP hooks the
/// datagram: one program (one length per packet) cannot run chains of both that
/// charge bytes (counters, limits, quotas) or read the length.
fn check_lengths(program: &Program, st: &[Stage<'_>]) -> Result<(), DataplaneError> {
    let charges = |s: &&Stage<'_>| {
        s.chain.policy_counter.is_some()
            || reads_length(&s.chain.rules)
            || program.reachable(s.chain).any(|c| reads_length(&c.rules))
    };
    let (bridge, other): (Vec<&Stage<'_>>, Vec<&Stage<'_>>) =
        st.iter().partition(|s| s.chain.family == Family::Bridge);
    if let (Some(b), Some(o)) = (bridge.first(), other.first()) {
        if bridge.iter().any(charges) || other.iter().any(charges) {
            let (bridge, other) = (b, o);
            return Err(refuse(format!(
                "{} and {} meet the same frames at one TC program, which counts lengths \
                 either as the bridge hooks or as the IP hooks do: not supported by the \
                 eBPF data plane when either counts, limits or reads lengths",
                bridge.chain.label(),
                other.chain.label()
            )));
        }
    }
    Ok(())
}

/// Whether rules count bytes or read the packet's length.
fn reads_length(rules: &[Arc<SymRule>]) -> bool {
    rules.iter().any(|r| {
        !r.counters.is_empty()
            || r.matches.iter().any(|m| {
                matches!(
                    m,
                    SymMatch::Ir(Match {
                        test: Test::Limit(_) | Test::Quota(_) | Test::Residual(_),
                        ..
                    })
                )
            })
    })
}

fn check_stages(program: &Program, st: &[Stage<'_>]) -> Result<(), DataplaneError> {
    for (i, a) in st.iter().enumerate() {
        for b in &st[i + 1..] {
            if !overlap(a, b) {
                continue;
            }
            let same_hook = a.order == b.order
                && a.chain.hook == b.chain.hook
                && (a.chain.family == Family::Bridge) == (b.chain.family == Family::Bridge);
            let pass_through = |c: &HookChain| !program.accepts(c) && c.policy == Verdict::Accept;
            if same_hook
                && a.chain.priority == b.chain.priority
                && !(pass_through(a.chain) && pass_through(b.chain))
            {
                return Err(refuse(format!(
                    "{} and {} share hook {:?} and priority {}: their order is not \
                             known to the eBPF data plane",
                    a.chain.label(),
                    b.chain.label(),
                    a.chain.hook,
                    a.chain.priority
                )));
            }
            if program.accepts(a.chain) {
                return Err(refuse(format!(
                    "{} accepts packets that {} must see next: several base chains \
                             with accept rules on one path are not supported by the eBPF data \
                             plane yet",
                    a.chain.label(),
                    b.chain.label()
                )));
            }
        }
    }
    Ok(())
}

/// Whether some chain reads or sets connection tracking state.
pub fn uses_ct(program: &Program) -> bool {
    program.kernel_conntrack != 0
        || program.chains.iter().any(HookChain::uses_ct)
        || program.regular.values().any(|c| rules_use_ct(&c.rules))
}

/// nf_conntrack runs at prerouting and output with priority -200
/// (NF_IP_PRI_CONNTRACK): a chain there at -200 or before sees packets without their
/// connection (`ct state` invalid). The programs track before every chain, so a ct
/// expression in such a chain, or in a regular chain it may reach, is refused.
fn check_before_conntrack(program: &Program) -> Result<(), DataplaneError> {
    const NF_IP_PRI_CONNTRACK: i32 = -200;
    let regular_ct = program.regular.values().any(|c| rules_use_ct(&c.rules));
    for c in &program.chains {
        if !matches!(c.hook, Hook::Prerouting | Hook::Output) || c.priority > NF_IP_PRI_CONNTRACK {
            continue;
        }
        let jumps = c
            .rules
            .iter()
            .any(|r| matches!(r.action, Action::Jump(_) | Action::Goto(_)));
        if c.uses_ct() || (jumps && regular_ct) {
            return Err(refuse(format!(
                "{}: ct expressions at priority {} (connection tracking runs at -200, after it)                  are not supported by the eBPF data plane",
                c.label(),
                c.priority
            )));
        }
    }
    Ok(())
}

/// The IR chains for the namespace as it is now. When some rule uses conntrack, every
/// interface and direction gets a program, which tracks (nf_conntrack sees every
/// packet of the namespace once it is on) into the namespace's shared connection
/// table, even where no chain applies.
pub fn instantiate(program: &Program, facts: &Facts) -> Result<Plan, DataplaneError> {
    let track = uses_ct(program);
    if track {
        check_before_conntrack(program)?;
    }
    let marks = super::reject::marks_answers(program);
    // Bridge chains at ports' egress: the bridge device's egress marks what it sends,
    // and every egress program takes such a mark off (see [`super::bridge`]).
    let bridge_tx = program.chains.iter().any(|c| {
        c.family == Family::Bridge
            && matches!(c.hook, Hook::Forward | Hook::Output | Hook::Postrouting)
    });
    check_addrtype(program, facts)?;
    check_br_netfilter(program, facts)?;
    super::reject::check_forward_answers(program, facts)?;
    let forward_answers = super::reject::forward_answers(program);
    super::nflog::check_facts(program, facts)?;
    let mut plan = Plan::default();
    // A program of 10,000 rules is flattened once, not once per interface.
    type Built = (Arc<ir::Program>, Arc<Vec<Vec<CounterRef>>>);
    let mut built: Vec<(PlanKey, Built)> = Vec::new();
    for (&ifindex, name) in &facts.links {
        for dir in [Direction::Ingress, Direction::Egress] {
            let arp = !facts.no_arp.contains(&ifindex);
            let role = BridgeRole::of(ifindex, facts);
            let st = stages(program, dir, Some(name), arp, role);
            let marking = bridge_tx && dir == Direction::Egress;
            if st.is_empty() && !track && !marking {
                continue;
            }
            let key = PlanKey {
                stages: st
                    .iter()
                    .map(|s| (s.chain as *const HookChain, s.class, s.order))
                    .collect(),
                track,
                marking,
                bridge_tx_mark: marking && role == BridgeRole::Bridge,
            };
            if let Some((_, (chains, slots))) = built.iter().find(|(k, _)| *k == key) {
                plan.chains.insert((ifindex, dir), chains.clone());
                plan.counters.insert((ifindex, dir), slots.clone());
                continue;
            }
            let (mut chains, slots) = if !st.is_empty() {
                let (base, mut slots) = flatten(&st, facts)?;
                let (ir_program, regular_slots) = with_regular_chains(base, program, facts);
                slots.extend(regular_slots);
                (ir_program, slots)
            } else {
                // Tracks or marks only: no rule, nothing counted.
                let only_tracks = ir::Program::single(ir::Chain {
                    scope: L3Scope::Inet,
                    policy: Verdict::Accept,
                    rules: Vec::new(),
                });
                (only_tracks, Vec::new())
            };
            chains.conntrack = track;
            chains.ct_labels = program.ct_labels;
            chains.mark_answers = marks;
            chains.forward_answers = forward_answers;
            chains.bridge_frames = st.iter().any(|s| s.chain.family == Family::Bridge);
            chains.bridge_tx_mark = key.bridge_tx_mark;
            chains.bridge_clear_mark = marking;
            let (chains, slots) = (Arc::new(chains), Arc::new(slots));
            plan.chains.insert((ifindex, dir), chains.clone());
            plan.counters.insert((ifindex, dir), slots.clone());
            built.push((key, (chains, slots)));
        }
    }
    Ok(plan)
}

/// br_netfilter's bridge prerouting hook (NF_BR_PRI_BRNF, 0) validates and trims IP
/// frames and runs the IP hooks on them. Bridge chains at TC egress and at the bridge
/// device's ingress come after it, as in the kernel; prerouting chains at a port's TC
/// ingress come before it, which the kernel's are only below priority 0 (at 0 they
/// were registered after it). Known: the sysctl is read when links or addresses
/// change, not when it changes.
/// IPv4 address type lookups (xt_addrtype, nft_fib `type`) read the mirror of the
/// local routing table: refused when the table holds what the mirror does not
/// follow, or, for lookups with a device, when some device has an l3mdev (VRF)
/// table, which inet_dev_addr_type() consults instead of the local one.
fn check_addrtype(program: &Program, facts: &Facts) -> Result<(), DataplaneError> {
    let lookups: Vec<&Insn> = program
        .chains
        .iter()
        .flat_map(|c| c.rules.iter())
        .chain(program.regular.values().flat_map(|c| c.rules.iter()))
        .flat_map(|r| r.matches.iter())
        .filter_map(|m| match m {
            SymMatch::Ir(Match {
                test: Test::Residual(p),
                ..
            }) => Some(p.insns.iter()),
            _ => None,
        })
        .flatten()
        .filter(|i| matches!(i, Insn::AddrType { .. }))
        .collect();
    if lookups.is_empty() {
        return Ok(());
    }
    if let Some(why) = &facts.addrtype_v4_unsupported {
        return Err(refuse(format!(
            "IPv4 address types (xt addrtype, fib type): {why}"
        )));
    }
    let with_dev = lookups.iter().any(|i| {
        matches!(
            i,
            Insn::AddrType {
                dev: AddrDev::In | AddrDev::Out,
                ..
            }
        )
    });
    if with_dev && !facts.l3mdev.is_empty() {
        return Err(refuse(
            "IPv4 address types of a device's table (xt addrtype --limit-iface-in/out, \
             fib . iif/oif type) are not supported by the eBPF data plane in a namespace \
             with VRF devices (l3mdev tables)",
        ));
    }
    Ok(())
}

fn check_br_netfilter(program: &Program, facts: &Facts) -> Result<(), DataplaneError> {
    const NF_BR_PRI_BRNF: i32 = 0;
    if !facts.br_netfilter {
        return Ok(());
    }
    let late = program.chains.iter().find(|c| {
        c.family == Family::Bridge
            && c.hook == Hook::Prerouting
            && c.priority >= NF_BR_PRI_BRNF
            && !c.is_noop()
    });
    match late {
        Some(c) => Err(refuse(format!(
            "{}: bridge prerouting chains at priority 0 or later with br_netfilter on \
             (net.bridge.bridge-nf-call-iptables or -ip6tables), which validates and trims \
             IP frames before them, are not supported by the eBPF data plane",
            c.label()
        ))),
        None => Ok(()),
    }
}

/// The flattened chain and, per rule, the counters it counts for.
fn flatten(
    stages: &[Stage<'_>],
    facts: &Facts,
) -> Result<(ir::Chain, Vec<Vec<CounterRef>>), DataplaneError> {
    let scope_fams = stages
        .iter()
        .fold(0, |acc, s| acc | families(s.chain.family));
    let scope = if scope_fams & (OTHER | ARP) != 0 {
        L3Scope::Netdev
    } else if scope_fams == V4 {
        L3Scope::Ipv4
    } else if scope_fams == V6 {
        L3Scope::Ipv6
    } else {
        L3Scope::Inet
    };
    let mut rules = Vec::new();
    let mut slots = Vec::new();
    let link_facts = FlatMemo::link_facts(facts);
    for s in stages {
        let guards = guards(s, scope_fams, facts);
        let guard_families: Vec<u8> = guards.iter().map(|g| first_family(g)).collect();
        rules.reserve(s.chain.rules.len() * guards.len());
        slots.reserve(s.chain.rules.len() * guards.len());
        for r in &s.chain.rules {
            // A rule whose first match reads one IP version's header never matches
            // behind the guard of the other (the field is absent: no match, negated or
            // not), and nothing after that first match runs: the copy is left out.
            let rule_family = match r.matches.first() {
                Some(SymMatch::Ir(m)) => family_of(m),
                _ => 0,
            };
            let wanted = (0..guards.len()).filter(|&gi| {
                let g = guard_families[gi];
                rule_family == 0 || g == 0 || g == rule_family
            });
            for gi in wanted {
                let g = &guards[gi];
                let action = base_action(s.chain, &r.action);
                // A rule a commit left alone was flattened before, behind the same
                // guard, with the same action and facts: its copy is a pointer.
                let uses_facts = r.matches.iter().any(|m| !matches!(m, SymMatch::Ir(_)));
                let rule_facts = uses_facts.then_some(&link_facts);
                let rule = r.flat.get(rule_facts, g, &action).unwrap_or_else(|| {
                    let mut matches = Vec::with_capacity(g.len() + r.matches.len());
                    matches.extend_from_slice(g);
                    matches.extend(r.matches.iter().map(|m| resolve_one(m, facts)));
                    let mut rule = ir::Rule::new(matches, action.clone());
                    rule.statements = r.statements.clone();
                    r.flat.put(rule_facts, g, &action, &rule);
                    rule
                });
                rules.push(rule);
                let mut slot = r.counters.clone();
                if r.action == Action::Return {
                    // nft_do_chain() counts a base chain's return as its policy.
                    slot.extend(s.chain.policy_counter);
                }
                slots.push(slot);
            }
        }
        // The policy as a guarded last rule: a drop, or (to count the packets that
        // meet an accept policy for the chain's own counters) a rule that only counts.
        let policy_action = match s.chain.policy {
            Verdict::Drop => Some(Action::Drop),
            Verdict::Accept if s.chain.policy_counter.is_some() => Some(Action::Continue),
            Verdict::Accept => None,
        };
        if let Some(action) = policy_action {
            for g in &guards {
                rules.push(ir::Rule::new(g.clone(), action.clone()));
                slots.push(s.chain.policy_counter.into_iter().collect());
            }
        }
    }
    let chain = ir::Chain {
        scope,
        policy: Verdict::Accept,
        rules,
    };
    Ok((chain, slots))
}

/// The IR copies flatten made of one decompiled rule, each with what it was made
/// behind: the guard's matches, the action in its chain, and the facts that interface
/// matches were resolved with. Decompiled rules live across commits (shared by
/// pointer), so an unchanged rule's copies are taken from here, not made again: one
/// pointer per rule instead of its matches' allocations, and later stages see the same
/// rule by pointer.
#[derive(Default)]
pub struct FlatMemo(std::sync::Mutex<Vec<FlatCopy>>);

/// What interface matches resolve with: interface names and types by ifindex.
type LinkFacts = (BTreeMap<u32, String>, BTreeMap<u32, u16>);

struct FlatCopy {
    /// None for a rule without interface matches (the facts do not matter).
    facts: Option<std::sync::Arc<LinkFacts>>,
    guard: Vec<Match>,
    action: Action,
    rule: ir::Rule,
}

impl FlatMemo {
    /// More copies than a rule has guards and actions in practice: beyond, start over.
    const MAX: usize = 8;

    fn link_facts(facts: &Facts) -> std::sync::Arc<LinkFacts> {
        std::sync::Arc::new((facts.links.clone(), facts.link_types.clone()))
    }

    fn get(
        &self,
        facts: Option<&std::sync::Arc<LinkFacts>>,
        guard: &[Match],
        action: &Action,
    ) -> Option<ir::Rule> {
        let same_facts = |c: &FlatCopy| match (&c.facts, facts) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        let copies = self.0.lock().unwrap_or_else(|p| p.into_inner());
        copies
            .iter()
            .find(|c| same_facts(c) && c.action == *action && c.guard == guard)
            .map(|c| c.rule.clone())
    }

    fn put(
        &self,
        facts: Option<&std::sync::Arc<LinkFacts>>,
        guard: &[Match],
        action: &Action,
        rule: &ir::Rule,
    ) {
        let mut copies = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if copies.len() >= Self::MAX {
            copies.clear();
        }
        copies.push(FlatCopy {
            facts: facts.cloned(),
            guard: guard.to_vec(),
            action: action.clone(),
            rule: rule.clone(),
        });
    }
}

/// A copy of a rule starts without copies of its own.
impl Clone for FlatMemo {
    fn clone(&self) -> Self {
        FlatMemo::default()
    }
}

/// Copies are a cache: they never make two rules differ.
impl PartialEq for FlatMemo {
    fn eq(&self, _: &FlatMemo) -> bool {
        true
    }
}

impl Eq for FlatMemo {}

impl std::fmt::Debug for FlatMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlatMemo")
    }
}

/// The IP version (`V4`, `V6`) a match reads a header field of, or 0: on a packet of
/// the other version the field is absent and the match fails, negated or not.
fn family_of(m: &Match) -> u8 {
    use nftshim_ebpf::ir::SetField;
    match &m.test {
        Test::IpSaddr(_)
        | Test::IpDaddr(_)
        | Test::InSet {
            field: SetField::IpSaddr | SetField::IpDaddr,
            ..
        } => V4,
        Test::Ip6Saddr(_)
        | Test::Ip6Daddr(_)
        | Test::InSet {
            field: SetField::Ip6Saddr | SetField::Ip6Daddr,
            ..
        } => V6,
        _ => 0,
    }
}

/// The IP version a guard (a conjunction) selects by one of its matches, or 0.
fn first_family(guard: &[Match]) -> u8 {
    guard.iter().map(family_of).find(|&f| f != 0).unwrap_or(0)
}

/// What a rule of base chain `chain` does in the flattened chain: `return` there has
/// nothing to pop, so the chain's policy decides (an accept policy ends only this
/// chain, as `accept` does: [`Program::accepts`] counts it, for the composition checks).
fn base_action(chain: &HookChain, action: &Action) -> Action {
    match (action, chain.policy) {
        (Action::Return, Verdict::Accept) => Action::Accept,
        (Action::Return, Verdict::Drop) => Action::Drop,
        (other, _) => other.clone(),
    }
}

/// A program of `base` and every regular chain (interface names resolved), and the
/// counters of the regular chains' rules in rule-numbering order. Jumps need no guards:
/// a regular chain runs only for the packets of the rule that jumped.
fn with_regular_chains(
    base: ir::Chain,
    program: &Program,
    facts: &Facts,
) -> (ir::Program, Vec<Vec<CounterRef>>) {
    let scope = base.scope;
    let mut out = ir::Program::single(base);
    out.route_answers = super::reject::routes_answers(program);
    let mut slots = Vec::new();
    // `program.regular` and `out.chains` are both ordered by key: rule numbering order.
    for (key, c) in &program.regular {
        let rules = c
            .rules
            .iter()
            .map(|r| {
                let mut rule = ir::Rule::new(resolve(&r.matches, facts), r.action.clone());
                rule.statements = r.statements.clone();
                slots.push(r.counters.clone());
                rule
            })
            .collect();
        out.chains.insert(
            key.clone(),
            ir::Chain {
                scope,
                policy: Verdict::Accept,
                rules,
            },
        );
    }
    (out, slots)
}

/// Alternatives (a disjunction of conjunctions) selecting the packets of a stage.
fn guards(s: &Stage<'_>, scope_fams: u8, facts: &Facts) -> Vec<Vec<Match>> {
    let fams = families(s.chain.family);
    // Copies the bridge forwarded: not sent by the bridge device, in from a port.
    let forwarded = |bridge| {
        vec![
            Match::is(Test::BridgeHook(bridge_classes::NOT_SENT)),
            Match::is(Test::Iif(ports_of(&facts.bridge_ports, bridge))),
        ]
    };
    let mut alts: Vec<Vec<Match>> = match s.class {
        Class::Arp => vec![vec![Match::is(Test::ArpHook)]],
        Class::Bridge(classes) => vec![vec![Match::is(Test::BridgeHook(classes))]],
        Class::BridgeForwarded(bridge) => vec![forwarded(bridge)],
        Class::BridgeSent => vec![vec![Match::is(Test::BridgeHook(bridge_classes::SENT))]],
        Class::BridgePostrouting(bridge) => vec![
            vec![Match::is(Test::BridgeHook(bridge_classes::SENT))],
            forwarded(bridge),
        ],
        Class::Local => {
            let mut v = Vec::new();
            if fams & V4 != 0 {
                v.push(vec![Match::is(Test::IpDaddr(facts.local_v4.clone()))]);
            }
            if fams & V6 != 0 {
                v.push(vec![Match::is(Test::Ip6Daddr(facts.local_v6.clone()))]);
            }
            v
        }
        _ if fams == scope_fams => vec![vec![]],
        _ => {
            let mut v = Vec::new();
            if fams & V4 != 0 {
                v.push(vec![family_guard(V4)]);
            }
            if fams & V6 != 0 {
                v.push(vec![family_guard(V6)]);
            }
            v
        }
    };
    let class_match = match s.class {
        Class::LocalOrigin => Some(Match::is(Test::Iif(vec![0]))),
        Class::Forwarded => Some(Match::not(Test::Iif(vec![0]))),
        _ => None,
    };
    if let Some(m) = class_match {
        for a in &mut alts {
            a.push(m.clone());
        }
    }
    alts
}

/// Interface names and types to the indexes of the links that have them now.
fn resolve(matches: &[SymMatch], facts: &Facts) -> Vec<Match> {
    matches.iter().map(|m| resolve_one(m, facts)).collect()
}

fn resolve_one(m: &SymMatch, facts: &Facts) -> Match {
    match m {
        SymMatch::Ir(m) => m.clone(),
        SymMatch::IfName {
            output,
            patterns,
            negated,
        } => {
            let idx = facts
                .links
                .iter()
                .filter(|(_, name)| patterns.iter().any(|p| p.matches(name)))
                .map(|(&i, _)| i)
                .collect();
            device_match(*output, idx, *negated)
        }
        SymMatch::IfType {
            output,
            types,
            negated,
        } => {
            let idx = facts
                .link_types
                .iter()
                .filter(|(_, t)| types.contains(t))
                .map(|(&i, _)| i)
                .collect();
            device_match(*output, idx, *negated)
        }
    }
}

/// `meta iif`/`oif` in `idx`: what interface name and type matches resolve to.
fn device_match(output: bool, idx: Vec<u32>, negated: bool) -> Match {
    let test = if output {
        Test::Oif(idx)
    } else {
        Test::Iif(idx)
    };
    Match { test, negated }
}
