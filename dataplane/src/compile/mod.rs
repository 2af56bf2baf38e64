//! From a committed ruleset to the eBPF rule IR, in two steps:
//!
//! 1. [`decompile`] reads every base chain's register bytecode back into predicates
//!    ([`rule`]), the way `nft` itself prints it: a payload/meta load, optionally
//!    masked, then a `cmp`, `range` or set `lookup`, with the dependencies nft emits
//!    (`meta nfproto`, `meta l4proto`) before transport fields. The result, a
//!    [`Program`], depends only on the ruleset. Whatever cannot be enforced exactly is
//!    refused here, with the expression named.
//! 2. [`instantiate`] ([`attach`]) turns a program into one IR chain per interface and
//!    direction for the namespace's current [`Facts`] (interface names, local
//!    addresses): base chains of the hooks a TC program stands for are flattened into
//!    one first-match list, behind guards that select the packets each hook sees.
//!    It is rerun whenever the facts change.

pub mod attach;
pub mod bridge;
mod ct;
mod fib;
pub mod kernel_ct;
pub mod maps;
pub mod nflog;
pub mod reject;
mod residual;
pub mod rule;
pub mod sets;
pub mod xt;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use netlink_proto::consts::*;
use netlink_proto::extra::{
    NFPROTO_ARP, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV,
};
use nftshim_ebpf::ir::{Action, Match, Statement, Test, Verdict};
use nftshim_engine::view::{BaseChain, Chain, Table};
use nftshim_engine::{CounterRef, DataplaneError, RulesetView};

pub use attach::{instantiate, Direction, Plan};

/// The errno of every refusal: the ruleset is valid, the data plane cannot enforce it.
pub const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;

pub fn refuse(reason: impl Into<String>) -> DataplaneError {
    DataplaneError {
        errno: EOPNOTSUPP,
        reason: reason.into(),
    }
}

/// Table families the data plane enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Netdev,
    /// arp: input and output, ARP frames only (see `bpf/lib/arp.h`).
    Arp,
    /// bridge: prerouting, input and forward (see [`bridge`]).
    Bridge,
}

/// Where a base chain hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    /// netdev ingress (per device).
    Ingress,
    /// netdev egress (per device).
    Egress,
}

impl Hook {
    /// Whether the kernel gives rules of this hook an input device (`meta iif`,
    /// `iifname`) and an output device (`meta oif`, `oifname`).
    pub fn has_iif(self) -> bool {
        matches!(
            self,
            Hook::Prerouting | Hook::Input | Hook::Forward | Hook::Ingress
        )
    }
    pub fn has_oif(self) -> bool {
        matches!(
            self,
            Hook::Forward | Hook::Output | Hook::Postrouting | Hook::Egress
        )
    }
}

/// A rule's predicate: an IR match, or one on interface names, which is resolved to
/// interface indexes against the namespace's current links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymMatch {
    Ir(Match),
    IfName {
        output: bool,
        patterns: Vec<IfNamePattern>,
        negated: bool,
    },
    /// `meta iiftype`: the ARPHRD_* type of skb->dev, the input device (or with
    /// `output` the output device), is (not) one of `types`.
    IfType {
        output: bool,
        types: Vec<u16>,
        negated: bool,
    },
}

/// `iifname "eth0"` (the whole 16-byte name) or `iifname "eth*"` (a prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfNamePattern {
    /// The bytes `cmp` compares: a full name is NUL-padded to IFNAMSIZ.
    pub bytes: Vec<u8>,
}

impl IfNamePattern {
    /// Whether a device called `name` holds the compared bytes, as the kernel's
    /// register (the name NUL-padded to 16 bytes) would.
    pub fn matches(&self, name: &str) -> bool {
        let mut padded = [0u8; 16];
        let n = name.as_bytes();
        if n.len() >= 16 {
            return false;
        }
        padded[..n.len()].copy_from_slice(n);
        self.bytes.len() <= 16 && padded[..self.bytes.len()] == self.bytes[..]
    }
}

/// One rule, decompiled: all matches must hold; then the action (a rule that only
/// counts is [`Action::Continue`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymRule {
    pub handle: u64,
    pub matches: Vec<SymMatch>,
    pub action: Action,
    /// Side effects when the matches hold, before the action.
    pub statements: Vec<Statement>,
    /// The ruleset's counters that count what this rule's IR counter counts.
    pub counters: Vec<CounterRef>,
    /// The rate estimators the rule counts into or reads (xt_RATEEST, xt_rateest).
    pub rateest: Vec<xt::rateest::RateestUse>,
    /// The IR copies [`attach::instantiate`] made of this rule.
    pub flat: attach::FlatMemo,
}

/// One enforced base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookChain {
    pub table: String,
    pub chain: String,
    pub family: Family,
    pub hook: Hook,
    pub priority: i32,
    /// netdev chains: the devices they are bound to.
    pub devices: Vec<String>,
    pub policy: Verdict,
    /// Shared with the rule cache and earlier programs: a rule a commit did not
    /// change is the same allocation, not a copy.
    pub rules: Vec<Arc<SymRule>>,
    /// The chain's own counters (packets that meet its policy), when it has them.
    pub policy_counter: Option<CounterRef>,
}

impl HookChain {
    pub fn label(&self) -> String {
        format!(
            "chain {} {} {}",
            family_name(self.family),
            self.table,
            self.chain
        )
    }
    /// Whether a rule tests the connection tracking state.
    pub fn uses_ct(&self) -> bool {
        rules_use_ct(&self.rules)
    }
    /// No rule, an accept policy and nothing to count: the chain does nothing.
    pub fn is_noop(&self) -> bool {
        self.rules.is_empty() && self.policy == Verdict::Accept && self.policy_counter.is_none()
    }
}

/// Whether a rule reads or sets connection tracking state (nf_tables starts tracking a
/// namespace's packets as soon as one such expression exists).
pub fn rules_use_ct(rules: &[Arc<SymRule>]) -> bool {
    rules.iter().any(|r| {
        r.matches.iter().any(|m| {
            matches!(
                m,
                SymMatch::Ir(Match {
                    test: Test::CtState(_)
                        | Test::CtStatus(_)
                        | Test::CtMark { .. }
                        | Test::CtLabel { .. }
                        | Test::InSet {
                            field: nftshim_ebpf::ir::SetField::CtMark,
                            ..
                        },
                    ..
                })
            ) || matches!(
                m,
                SymMatch::Ir(Match {
                    test: Test::Residual(p),
                    ..
                }) if p.reads_ct()
            )
        }) || r.statements.iter().any(|s| {
            matches!(
                s,
                Statement::SetCtMark { .. }
                    | Statement::SetMarkFromCtMark { .. }
                    | Statement::SetCtMarkFromMark { .. }
            ) || matches!(s, Statement::MarkShift(m) if m.from_ct || m.to_ct)
                || matches!(s, Statement::MarkMerge(_))
        })
    })
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Ip => "ip",
        Family::Ip6 => "ip6",
        Family::Inet => "inet",
        Family::Netdev => "netdev",
        Family::Arp => "arp",
        Family::Bridge => "bridge",
    }
}

/// A regular chain some base chain jumps (or goes) to, directly or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegularChain {
    pub label: String,
    pub rules: Vec<Arc<SymRule>>,
}

/// The program-wide name of a regular chain (jump targets are per table).
pub fn regular_chain_key(family: Family, table: &str, chain: &str) -> String {
    format!("{} {table} {chain}", family_name(family))
}

/// Everything of a ruleset the data plane enforces; independent of the namespace's
/// interfaces and addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    pub chains: Vec<HookChain>,
    /// Regular chains reachable from `chains`, by [`regular_chain_key`].
    pub regular: BTreeMap<String, RegularChain>,
    /// Some rule of the namespace uses connection labels ([`uses_labels`]).
    pub ct_labels: bool,
    /// The IP versions (`V4 | V6`) the kernel would track connections of for this
    /// ruleset ([`kernel_ct::versions`]): the programs track whenever it would, so that
    /// connections start when the kernel's do.
    pub kernel_conntrack: u8,
    /// xt_recent's lists every rule of the ruleset names (reachable or not: they
    /// live while a rule names them), by name.
    pub recent: BTreeMap<Vec<u8>, xt::recent::ListNeed>,
}

impl Program {
    /// Whether a packet can be accepted by this base chain: by one of its rules or by
    /// a rule of a chain it jumps to (an accept there ends the base chain too).
    pub fn accepts(&self, chain: &HookChain) -> bool {
        // `return` in the base chain itself applies its policy (attach::flatten).
        if chain.policy == Verdict::Accept && chain.rules.iter().any(|r| r.action == Action::Return)
        {
            return true;
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<&Vec<Arc<SymRule>>> = vec![&chain.rules];
        while let Some(rules) = todo.pop() {
            for r in rules {
                match &r.action {
                    Action::Accept => return true,
                    Action::Jump(t) | Action::Goto(t) if seen.insert(t.as_str()) => {
                        if let Some(c) = self.regular.get(t) {
                            todo.push(&c.rules);
                        }
                    }
                    _ => {}
                }
            }
        }
        false
    }

    /// The regular chains `chain` reaches through jumps and gotos.
    pub fn reachable<'p>(&'p self, chain: &'p HookChain) -> impl Iterator<Item = &'p RegularChain> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<&String> = chain.rules.iter().filter_map(target_of).collect();
        let mut out = Vec::new();
        while let Some(t) = todo.pop() {
            if !seen.insert(t) {
                continue;
            }
            if let Some(c) = self.regular.get(t) {
                todo.extend(c.rules.iter().filter_map(target_of));
                out.push(c);
            }
        }
        out.into_iter()
    }

    /// Nothing to enforce and no state to keep (a recent list lives while a rule
    /// names it, even one no packet reaches now).
    pub fn is_empty(&self) -> bool {
        self.chains.iter().all(HookChain::is_noop) && self.recent.is_empty()
    }
    /// Whether some chain needs the local-address set (input chains do).
    pub fn needs_local_addresses(&self) -> bool {
        self.chains.iter().any(|c| c.hook == Hook::Input)
    }
}

/// What the namespace looks like right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// ifindex -> name.
    pub links: BTreeMap<u32, String>,
    /// ifindex -> ARPHRD_* type (`meta iiftype`).
    pub link_types: BTreeMap<u32, u16>,
    /// Destinations the kernel delivers locally (local routing table, broadcast,
    /// multicast).
    pub local_v4: Vec<Ipv4Net>,
    pub local_v6: Vec<Ipv6Net>,
    /// Links whose frames the kernel's ARP hooks never see as theirs: no ARP
    /// (IFF_NOARP), not Ethernet, or the port of a master that takes its frames.
    pub no_arp: std::collections::BTreeSet<u32>,
    /// Bridge devices by ifindex.
    pub bridges: BTreeMap<u32, bridge::BridgeDevice>,
    /// Ports of those bridges by ifindex.
    pub bridge_ports: BTreeMap<u32, bridge::BridgePort>,
    /// br_netfilter passes bridged IPv4 or IPv6 frames through the IP hooks
    /// (`net.bridge.bridge-nf-call-iptables` or `-ip6tables` is 1).
    pub br_netfilter: bool,
    /// The IPv4 local routing table as address type lookups see it (see
    /// nftshim_ebpf::addrtype).
    pub addrtype_v4: Vec<nftshim_ebpf::addrtype::Route>,
    /// Why the table cannot be mirrored, if it cannot.
    pub addrtype_v4_unsupported: Option<String>,
    /// Links with an l3mdev routing table (VRF devices and their ports), where
    /// inet_dev_addr_type() looks up another table than the local one.
    pub l3mdev: std::collections::BTreeSet<u32>,
    /// Sysctls that shape the kernel's reject answers to forwarded packets and are
    /// not at the value the eBPF answers assume: (name, value). See
    /// [`reject::check_forward_answers`].
    pub answer_sysctls: Vec<(String, String)>,
    /// Links stacked on others or under a master (not a plain device or veth), whose
    /// packets meet the programs of two devices on their way out: (ifindex, kind).
    pub layered_links: BTreeMap<u32, String>,
    /// Early demux sysctls (`net.ipv4.ip_early_demux`, `tcp_early_demux`,
    /// `udp_early_demux`) that are off: see `nflog::check_facts`.
    pub early_demux_off: Vec<String>,
}

/// Reads every base chain of the ruleset into a [`Program`], or refuses the ruleset.
pub fn decompile(view: &RulesetView<'_>) -> Result<Program, DataplaneError> {
    decompile_cached(view, &mut RuleCache::default())
}

/// [`decompile`], taking the rules an earlier pass decompiled from `cache`.
pub fn decompile_cached(
    view: &RulesetView<'_>,
    cache: &mut RuleCache,
) -> Result<Program, DataplaneError> {
    let result = decompile_with(view, cache);
    cache.end_pass(result.is_ok());
    result
}

fn decompile_with(
    view: &RulesetView<'_>,
    cache: &mut RuleCache,
) -> Result<Program, DataplaneError> {
    let scan = cache.scan(view);
    let mut program = Program {
        ct_labels: scan.labels,
        kernel_conntrack: kernel_ct::versions_with(view, |t| scan.tracking.contains(&t.handle)),
        ..Program::default()
    };
    for table in view.tables() {
        if table.is_dormant() {
            // Dormant tables are unregistered from their hooks: nothing to enforce.
            continue;
        }
        if !table.flowtables.is_empty() {
            return Err(refuse(format!(
                "table {}: flowtables are not supported by the eBPF data plane",
                table.name
            )));
        }
        for chain in &table.chains {
            let Some(base) = &chain.base else {
                // Regular chains run only when jumped to: added with their callers.
                continue;
            };
            let hook_chain = decompile_chain(view, table, chain, base, cache)?;
            add_jump_targets(view, table, &hook_chain, &mut program, cache)?;
            program.chains.push(hook_chain);
        }
    }
    program.recent = xt::recent::lists_of(scan.recent.iter().copied());
    attach::check_composable(&program)?;
    reject::check(&mut program)?;
    Ok(program)
}

fn decompile_chain(
    view: &RulesetView<'_>,
    table: &Table,
    chain: &Chain,
    base: &BaseChain,
    cache: &mut RuleCache,
) -> Result<HookChain, DataplaneError> {
    let label = |what: &str| format!("table {} chain {}: {what}", table.name, chain.name);
    let family = table_family(table).map_err(|why| refuse(label(&why)))?;
    let hook = hook_of(family, base).map_err(|why| refuse(label(&why)))?;
    match base.chain_type.as_str() {
        // A route chain re-routes only when a rule changed the packet; rules here
        // never do.
        "filter" | "route" => {}
        other => {
            return Err(refuse(label(&format!(
                "chains of type {other} are not supported by the eBPF data plane"
            ))))
        }
    }
    let policy = match base.policy {
        NF_ACCEPT => Verdict::Accept,
        NF_DROP => Verdict::Drop,
        other => return Err(refuse(label(&format!("policy {other}")))),
    };
    let ctx = rule::ChainContext {
        view,
        table,
        family,
        hook,
        base: true,
        priority: Some(base.priority),
    };
    let rules = decompile_rules(&ctx, chain, cache)?;
    if base.chain_type == "route"
        && rules
            .iter()
            .flat_map(|r| &r.statements)
            .any(|st| !keeps_the_route(family, st))
    {
        // The kernel re-routes when a route chain changed the mark (or what else
        // nf_route_table_hook4/6 compares); TC cannot.
        return Err(refuse(label(
            "meta mark set in a route chain (or a header write after which the kernel \
             routes again) is not supported by the eBPF data plane",
        )));
    }
    Ok(HookChain {
        table: table.name.clone(),
        chain: chain.name.clone(),
        family,
        hook,
        priority: base.priority,
        devices: base.devices.clone(),
        policy,
        rules,
        policy_counter: base.counters.map(|_| CounterRef::Chain {
            table: table.handle,
            chain: chain.handle,
        }),
    })
}

/// Whether `st`, in a route chain of `family`, leaves alone everything after which
/// the kernel routes the packet again: nf_route_table_hook4() compares the addresses,
/// the mark and the TOS byte; nf_route_table_hook6() the addresses, the mark, the hop
/// limit and the first word (traffic class, flow label), which is every IPv6 header
/// byte a write may change. What is left: writes of the connection's mark, and IPv4
/// writes of the TTL and such (the header
/// checksum changes with them, but is not compared).
fn keeps_the_route(family: Family, st: &Statement) -> bool {
    use nftshim_ebpf::ir::WriteBase;
    match st {
        // The connection's mark is not compared.
        Statement::SetCtMark { .. } | Statement::SetCtMarkFromMark { .. } => true,
        Statement::MarkShift(m) => m.to_ct,
        Statement::MarkMerge(m) => m.to_ct,
        // Not compared either (xt_CLASSIFY).
        Statement::SetPriority(_) => true,
        // TCP options are not compared (xt_TCPOPTSTRIP).
        Statement::TcpOptStrip(_) => true,
        // Nor are TCP flags (ipt_ECN's TCP operations).
        Statement::EcnTcp(_) => true,
        // The packet goes to a listener unchanged.
        Statement::Nflog { .. } => true,
        Statement::PayloadSet(w) if family == Family::Ip && w.base == WriteBase::Network => {
            let compared = |at: usize| at == 1 || (12..20).contains(&at);
            (0..usize::from(w.len)).all(|k| {
                let at = usize::from(w.offset) + k;
                let added = w.saturating.is_some_and(|s| usize::from(s.at) == k);
                !compared(at) || (w.mask[k] == 0xff && w.xor[k] == 0 && !added)
            })
        }
        _ => false,
    }
}

/// The data plane's family of a table, or why it has none.
fn table_family(table: &Table) -> Result<Family, String> {
    match table.family {
        NFPROTO_IPV4 => Ok(Family::Ip),
        NFPROTO_IPV6 => Ok(Family::Ip6),
        NFPROTO_INET => Ok(Family::Inet),
        NFPROTO_NETDEV => Ok(Family::Netdev),
        NFPROTO_ARP => Ok(Family::Arp),
        NFPROTO_BRIDGE => Ok(Family::Bridge),
        other => Err(format!(
            "family {other} is not supported by the eBPF data plane"
        )),
    }
}

/// The arp family's hook numbers (`NF_ARP_IN`, `NF_ARP_OUT`).
const NF_ARP_IN: u32 = 0;
const NF_ARP_OUT: u32 = 1;

/// Where a base chain of `family` hooks in, or why it cannot.
fn hook_of(family: Family, base: &BaseChain) -> Result<Hook, String> {
    match (family, base.hooknum) {
        (Family::Netdev, NF_NETDEV_INGRESS) => Ok(Hook::Ingress),
        (Family::Netdev, NF_NETDEV_EGRESS) => Ok(Hook::Egress),
        (Family::Netdev, _) => Err("unknown netdev hook".into()),
        (Family::Arp, NF_ARP_IN) => Ok(Hook::Input),
        (Family::Arp, NF_ARP_OUT) => Ok(Hook::Output),
        (Family::Arp, _) => {
            Err("the arp forward hook is not supported by the eBPF data plane".into())
        }
        (Family::Bridge, NF_INET_PRE_ROUTING) => Ok(Hook::Prerouting),
        (Family::Bridge, NF_INET_LOCAL_IN) => Ok(Hook::Input),
        (Family::Bridge, NF_INET_FORWARD) => Ok(Hook::Forward),
        (Family::Bridge, NF_INET_LOCAL_OUT) => Ok(Hook::Output),
        (Family::Bridge, NF_INET_POST_ROUTING) => Ok(Hook::Postrouting),
        (Family::Bridge, _) => Err("unknown bridge hook".into()),
        (_, NF_INET_PRE_ROUTING) => Ok(Hook::Prerouting),
        (_, NF_INET_LOCAL_IN) => Ok(Hook::Input),
        (_, NF_INET_FORWARD) => Ok(Hook::Forward),
        (_, NF_INET_LOCAL_OUT) => Ok(Hook::Output),
        (_, NF_INET_POST_ROUTING) => Ok(Hook::Postrouting),
        _ => Err("the inet ingress hook is not supported by the eBPF data plane".into()),
    }
}

/// What [`decompile`] would refuse in one rule, judged from the rule and its chain
/// alone, so that the refusal can be reported on the message that adds the rule. A
/// regular chain is judged under the hook that allows the most (forward, or netdev
/// ingress); what depends on the hooks it is reached from is left to [`decompile`].
/// What the kernel resolves in the `adder`'s context is judged here only: the rule
/// keeps what it resolved, whoever commits later.
pub fn check_rule(
    view: &RulesetView<'_>,
    table: &Table,
    chain: &Chain,
    rule: &nftshim_engine::view::Rule,
    adder: &nftshim_engine::Caller,
) -> Result<(), DataplaneError> {
    let label = |why: String| refuse(format!("table {} chain {}: {why}", table.name, chain.name));
    if adder.private_cgroupns {
        xt::cgroup::check_adder_cgroupns(&rule.exprs).map_err(label)?;
    }
    if adder.netns_private_userns {
        xt::owner::check_netns_userns(&rule.exprs).map_err(label)?;
    }
    if table.is_dormant() {
        return Ok(());
    }
    let family = table_family(table).map_err(label)?;
    let (hook, base) = match &chain.base {
        Some(b) => (hook_of(family, b).map_err(label)?, true),
        None if family == Family::Netdev => (Hook::Ingress, false),
        // Input has the input device, output the output device: input allows as much.
        None if family == Family::Arp => (Hook::Input, false),
        None => (Hook::Forward, false),
    };
    let ctx = rule::ChainContext {
        view,
        table,
        family,
        hook,
        base,
        priority: chain.base.as_ref().map(|b| b.priority),
    };
    decompile_expanded(&ctx, rule)
        .map(drop)
        .map_err(|why| label(format!("rule (handle {}): {why}", rule.handle)))
}

fn decompile_rules(
    ctx: &rule::ChainContext<'_>,
    chain: &Chain,
    cache: &mut RuleCache,
) -> Result<Vec<Arc<SymRule>>, DataplaneError> {
    let key: ChainKey = (
        ctx.table.handle,
        chain.handle,
        ctx.hook,
        ctx.base,
        ctx.priority,
    );
    // The same chain reached twice in one pass (a regular chain two base chains of
    // one hook jump to) finds this pass's entry.
    let old = cache
        .now
        .remove(&key)
        .or_else(|| cache.before.remove(&key))
        .filter(|c| c.family == ctx.family && c.table == ctx.table.name);
    let (mut old_rules, old_max) = old.map_or((Vec::new(), 0), |c| (c.rules, c.max_handle));
    let mut aligner = Aligner::new(old_max);
    let mut kept = CachedChain {
        family: ctx.family,
        table: ctx.table.name.clone(),
        max_handle: 0,
        rules: Vec::with_capacity(chain.rules.len()),
    };
    let mut rules = Vec::with_capacity(chain.rules.len());
    let result = (|| {
        for (position, r) in chain.rules.iter().enumerate() {
            kept.max_handle = kept.max_handle.max(r.handle);
            let hit = aligner
                .find(&old_rules, r.handle)
                .map(|i| std::mem::take(&mut old_rules[i]))
                .filter(|c| {
                    c.rules.is_some()
                        && (std::ptr::eq(c.source.as_ptr(), Arc::as_ptr(r)) || c.exprs == r.exprs)
                });
            if let Some(mut c) = hit {
                rules.extend(c.rules.iter().flatten().cloned());
                // The current allocation: the next pass compares it by address.
                if !std::ptr::eq(c.source.as_ptr(), Arc::as_ptr(r)) {
                    c.source = Arc::downgrade(r);
                }
                kept.rules.push(c);
                continue;
            }
            let refused = |why: String| {
                refuse(format!(
                    "table {} chain {}: rule {} (handle {}): {why}",
                    ctx.table.name,
                    chain.name,
                    position + 1,
                    r.handle
                ))
            };
            let decompiled: Vec<Arc<SymRule>> = decompile_expanded(ctx, r)
                .map_err(refused)?
                .into_iter()
                .map(Arc::new)
                .collect();
            rules.extend(decompiled.iter().cloned());
            kept.rules.push(CachedRule::new(ctx, r, decompiled));
        }
        Ok(())
    })();
    if result.is_err() {
        // Refused: what was decompiled and what was not reached yet stay for the next
        // pass (entries taken above are left empty: handle 0).
        kept.max_handle = kept.max_handle.max(old_max);
        kept.rules
            .extend(old_rules.into_iter().filter(|c| c.rules.is_some()));
    }
    cache.now.insert(key, kept);
    result.map(|()| rules)
}

/// Rules decompiled by the last passes, for a commit that adds one rule to 10,000 to
/// decompile one, and to share the other rules' [`SymRule`]s (an `Arc` each) rather
/// than copy them. Kept per chain and chain context (table, chain, hook, base or
/// regular, priority; the family and table name are checked), in the chain's order, so
/// that a rule's entry is most often the next one. A rule's entry is found by its
/// handle (never given again in a namespace, nor are those of a batch that failed)
/// and taken when its expressions are the same (renaming a chain rewrites the jumps to
/// it): the same allocation, or equal expressions. Rules that read a named set, a map
/// or an object are decompiled every time: those change on their own (a rename
/// rewrites a verdict map's elements too). Constant anonymous sets live and die with
/// their rule.
#[derive(Default)]
pub struct RuleCache {
    /// Chains decompiled in this pass.
    now: HashMap<ChainKey, CachedChain, foldhash::fast::RandomState>,
    /// The previous pass's, dropped at the end of this one unless taken.
    before: HashMap<ChainKey, CachedChain, foldhash::fast::RandomState>,
    /// What the whole-ruleset scans ([`RuleCache::scan`]) found in each rule of each
    /// chain (reachable or not), by table and chain handle.
    scanned: HashMap<(u64, u64), ScannedChain, foldhash::fast::RandomState>,
}

/// Table handle, chain handle, hook, base chain, priority (of the chain, or for a
/// regular one of the base chain it is reached from).
type ChainKey = (u64, u64, Hook, bool, Option<i32>);

struct CachedChain {
    family: Family,
    table: String,
    /// The largest rule handle of `rules`: a rule with a larger one is new.
    max_handle: u64,
    rules: Vec<CachedRule>,
}

#[derive(Default)]
struct CachedRule {
    handle: u64,
    /// The engine's rule it was made from. A weak reference keeps the allocation, so
    /// the same address is the same rule, unchanged: the engine changes a rule only
    /// through `Arc::make_mut`, which moves a rule that has weak references.
    source: std::sync::Weak<nftshim_engine::view::Rule>,
    exprs: Vec<nftshim_engine::view::Expr>,
    /// None: decompiled on every pass (see [`RuleCache`]).
    rules: Option<Vec<Arc<SymRule>>>,
}

impl HasHandle for CachedRule {
    fn handle(&self) -> u64 {
        self.handle
    }
}

impl CachedRule {
    fn new(
        ctx: &rule::ChainContext<'_>,
        r: &Arc<nftshim_engine::view::Rule>,
        rules: Vec<Arc<SymRule>>,
    ) -> CachedRule {
        let reads_table = r.exprs.iter().any(|e| match e.name.as_str() {
            "lookup" => !ctx.view.set_of(ctx.table, e).is_some_and(|set| {
                let constant = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT;
                set.flags & constant == constant && set.flags & NFT_SET_MAP == 0
            }),
            "dynset" | "objref" => true,
            // HMARK's `ct` form depends on the whole ruleset (xt::hmark).
            "target" => e
                .data
                .iter()
                .any(|a| a.id() == NFTA_TARGET_NAME && a.str_bytes() == b"HMARK"),
            _ => false,
        });
        if reads_table {
            // Kept for its place in the chain only.
            return CachedRule {
                handle: r.handle,
                ..CachedRule::default()
            };
        }
        CachedRule {
            handle: r.handle,
            source: Arc::downgrade(r),
            exprs: r.exprs.clone(),
            rules: Some(rules),
        }
    }
}

trait HasHandle {
    fn handle(&self) -> u64;
}

/// Finds, for each rule of a chain in order, the entry of the rule with the same
/// handle among the entries an earlier pass kept in the chain's order then: the next
/// entry, or one a few further (rules deleted), else by a map built on the first such
/// miss. A rule with a handle larger than every entry's is new: appending looks up
/// nothing.
struct Aligner {
    cursor: usize,
    max_handle: u64,
    by_handle: Option<HashMap<u64, usize, foldhash::fast::RandomState>>,
}

impl Aligner {
    const LOOKAHEAD: usize = 8;

    fn new(max_handle: u64) -> Aligner {
        Aligner {
            cursor: 0,
            max_handle,
            by_handle: None,
        }
    }

    fn find<E: HasHandle>(&mut self, old: &[E], handle: u64) -> Option<usize> {
        if handle > self.max_handle {
            return None;
        }
        let end = old.len().min(self.cursor + Self::LOOKAHEAD);
        if let Some(i) = (self.cursor..end).find(|&i| old[i].handle() == handle) {
            self.cursor = i + 1;
            return Some(i);
        }
        let map = self.by_handle.get_or_insert_with(|| {
            old.iter()
                .enumerate()
                .map(|(i, e)| (e.handle(), i))
                .collect()
        });
        let i = *map.get(&handle)?;
        self.cursor = i + 1;
        Some(i)
    }
}

/// What the whole-ruleset scans need of one rule.
#[derive(Default)]
struct ScannedRule {
    handle: u64,
    /// As [`CachedRule::source`].
    source: std::sync::Weak<nftshim_engine::view::Rule>,
    /// [`uses_labels`]
    labels: bool,
    /// [`kernel_ct::rule_tracks`]
    tracks: bool,
    /// [`xt::recent::names_a_list`]
    recent: bool,
}

impl HasHandle for ScannedRule {
    fn handle(&self) -> u64 {
        self.handle
    }
}

#[derive(Default)]
struct ScannedChain {
    max_handle: u64,
    rules: Vec<ScannedRule>,
}

/// What the scans of every rule of the ruleset (any table, dormant or not, any chain,
/// reached or not) found.
struct Scan<'v> {
    /// Some rule uses connection labels.
    labels: bool,
    /// Tables with a rule that turns connection tracking on.
    tracking: std::collections::BTreeSet<u64>,
    /// The rules that name an xt_recent list, in table, chain and rule order.
    recent: Vec<(&'v Table, &'v nftshim_engine::view::Rule)>,
}

impl RuleCache {
    /// Scans every rule of the ruleset, reading again only the rules that are not the
    /// same allocations as in the last pass.
    fn scan<'v>(&mut self, view: &'v RulesetView<'_>) -> Scan<'v> {
        let mut scan = Scan {
            labels: false,
            tracking: Default::default(),
            recent: Vec::new(),
        };
        let mut before = std::mem::take(&mut self.scanned);
        for table in view.tables() {
            for chain in &table.chains {
                let mut old = before
                    .remove(&(table.handle, chain.handle))
                    .unwrap_or_default();
                let mut aligner = Aligner::new(old.max_handle);
                let mut kept = ScannedChain {
                    max_handle: 0,
                    rules: Vec::with_capacity(chain.rules.len()),
                };
                for r in &chain.rules {
                    kept.max_handle = kept.max_handle.max(r.handle);
                    let hit = aligner
                        .find(&old.rules, r.handle)
                        .map(|i| std::mem::take(&mut old.rules[i]))
                        .filter(|c| std::ptr::eq(c.source.as_ptr(), Arc::as_ptr(r)));
                    let s = hit.unwrap_or_else(|| ScannedRule {
                        handle: r.handle,
                        source: Arc::downgrade(r),
                        labels: r.exprs.iter().any(uses_labels),
                        tracks: kernel_ct::rule_tracks(r),
                        recent: xt::recent::names_a_list(r),
                    });
                    scan.labels |= s.labels;
                    if s.tracks {
                        scan.tracking.insert(table.handle);
                    }
                    if s.recent {
                        scan.recent.push((table, &**r));
                    }
                    kept.rules.push(s);
                }
                self.scanned.insert((table.handle, chain.handle), kept);
            }
        }
        scan
    }

    /// After a refusal, the chains the pass did not reach keep their entries too: the
    /// next commit (most often the same ruleset without the refused rule) finds them.
    fn end_pass(&mut self, complete: bool) {
        if complete {
            self.before = std::mem::take(&mut self.now);
        } else {
            self.before.extend(self.now.drain());
        }
    }
}

/// One rule's predicates: one rule, or one per element of the map it looks up.
fn decompile_expanded(
    ctx: &rule::ChainContext<'_>,
    r: &nftshim_engine::view::Rule,
) -> Result<Vec<SymRule>, String> {
    let mut out = Vec::new();
    match maps::expand_rule(ctx.view, ctx.table, r)? {
        None => decompile_counting_early(ctx, r, &|i| i, &mut out)?,
        Some(expanded) => {
            for e in &expanded {
                // A second set lookup expands in each rule of the first.
                let Some(inner) = maps::expand_rule(ctx.view, ctx.table, &e.rule)? else {
                    decompile_counting_early(ctx, &e.rule, &|i| e.original_index(i), &mut out)?;
                    continue;
                };
                if expanded.len().saturating_mul(inner.len()) > maps::MAX_DOUBLE_EXPANSION {
                    return Err(format!(
                        "two set lookups of {} and {} elements in one rule are not supported \
                         by the eBPF data plane (more than {} rules)",
                        expanded.len(),
                        inner.len(),
                        maps::MAX_DOUBLE_EXPANSION
                    ));
                }
                for f in &inner {
                    let original = |i| e.original_index(f.original_index(i));
                    decompile_counting_early(ctx, &f.rule, &original, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}

/// One rule, or, when a counter stands before some of its matches
/// (`ip protocol tcp counter tcp dport 22`), the rules that count what reaches each
/// such counter and then the rule without them.
///
/// The kernel's counter counts every packet the matches before it let through, also
/// those a later match then stops; the IR counts only rules that match whole. A rule
/// of the matches before the counter, which counts and continues, counts the same
/// packets, and the rule without that counter decides the rest. Exact only when the
/// matches before it are pure (evaluated twice, they give the same answer and change
/// nothing), so nothing else is split.
fn decompile_counting_early(
    ctx: &rule::ChainContext<'_>,
    r: &nftshim_engine::view::Rule,
    original: &dyn Fn(usize) -> usize,
    out: &mut Vec<SymRule>,
) -> Result<(), String> {
    let whole = match rule::decompile_rule_indexed(ctx, r, &|i| Some(original(i))) {
        Ok(decompiled) => {
            out.extend(decompiled);
            return Ok(());
        }
        Err(why) => why,
    };
    let mut counted: Vec<usize> = Vec::new();
    let mut split = Vec::new();
    while let Some(at) = early_counter(&r.exprs, &counted) {
        let prefix = r.with_exprs(r.exprs[..=at].to_vec());
        let without_counted = |i: usize| (!counted.contains(&i)).then(|| original(i));
        match rule::decompile_rule_indexed(ctx, &prefix, &without_counted) {
            Ok(counting) => split.extend(counting),
            Err(_) => return Err(whole),
        }
        counted.push(at);
    }
    if counted.is_empty() {
        return Err(whole);
    }
    let without_counted = |i: usize| (!counted.contains(&i)).then(|| original(i));
    match rule::decompile_rule_indexed(ctx, r, &without_counted) {
        Ok(rest) => {
            out.extend(split);
            out.extend(rest);
            Ok(())
        }
        Err(_) => Err(whole),
    }
}

/// The first counter (not in `counted`) that only pure matches precede and some
/// expression follows.
fn early_counter(exprs: &[nftshim_engine::view::Expr], counted: &[usize]) -> Option<usize> {
    for (i, e) in exprs.iter().enumerate() {
        if counted.contains(&i) {
            continue;
        }
        if e.name == "counter" {
            return (i + 1 < exprs.len()).then_some(i);
        }
        if !is_pure_match(e) {
            return None;
        }
    }
    None
}

/// Whether the kernel counts the expression as a user of connection labels
/// (nf_connlabels_get(): xt_connlabel's checkentry, nft_ct's labels get and set), in
/// any table, dormant or not, and any chain, reached or not: while one exists, new
/// connections get the labels extension.
/// Reads only the one attribute it needs: every rule is scanned on every commit.
fn uses_labels(e: &nftshim_engine::view::Expr) -> bool {
    let attr = |id: u16| e.data.iter().find(|a| a.id() == id);
    match e.name.as_str() {
        "match" => attr(NFTA_MATCH_NAME).is_some_and(|a| a.str_bytes() == b"connlabel"),
        "ct" => attr(NFTA_CT_KEY).is_some_and(|a| a.as_u32_be() == Some(NFT_CT_LABELS)),
        _ => false,
    }
}

/// A load or a comparison: no side effect, and the same answer every time it runs on
/// the same packet.
fn is_pure_match(e: &nftshim_engine::view::Expr) -> bool {
    let has = |kind: u16| e.data.iter().any(|a| a.id() == kind);
    match e.name.as_str() {
        "cmp" | "range" | "bitwise" | "byteorder" => true,
        "payload" => !has(NFTA_PAYLOAD_SREG),
        "meta" => !has(NFTA_META_SREG),
        "ct" => !has(NFTA_CT_SREG),
        "exthdr" => !has(NFTA_EXTHDR_SREG),
        "lookup" => !has(NFTA_LOOKUP_DREG),
        _ => false,
    }
}

/// Decompiles the regular chains `base` reaches through jumps and gotos, under its hook
/// (what a rule may test depends on the hook, so a chain reached from several hooks is
/// checked under each; its predicates do not depend on the hook).
fn add_jump_targets(
    view: &RulesetView<'_>,
    table: &Table,
    base: &HookChain,
    program: &mut Program,
    cache: &mut RuleCache,
) -> Result<(), DataplaneError> {
    let ctx = rule::ChainContext {
        view,
        table,
        family: base.family,
        hook: base.hook,
        base: false,
        priority: Some(base.priority),
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = targets(&base.rules);
    while let Some(key) = todo.pop() {
        if !seen.insert(key.clone()) {
            continue;
        }
        let chain = table
            .chains
            .iter()
            .find(|c| {
                c.base.is_none() && regular_chain_key(base.family, &table.name, &c.name) == key
            })
            .ok_or_else(|| {
                refuse(format!(
                    "{}: jump to a chain that is not a regular chain of its table",
                    base.label()
                ))
            })?;
        let rules = decompile_rules(&ctx, chain, cache)?;
        todo.extend(targets(&rules));
        // An nflog statement carries its hook (the message's, and whether it has the
        // socket's ids): one chain cannot serve two hooks' statements.
        if let Some(old) = program.regular.get(&key) {
            if nflog::specs(&old.rules) != nflog::specs(&rules) {
                return Err(refuse(format!(
                    "{}: nflog (NFLOG, log group) in a regular chain reached from more than                      one hook is not supported by the eBPF data plane",
                    base.label()
                )));
            }
        }
        program.regular.insert(
            key,
            RegularChain {
                label: format!(
                    "chain {} {} {}",
                    family_name(base.family),
                    table.name,
                    chain.name
                ),
                rules,
            },
        );
    }
    Ok(())
}

fn target_of(r: &Arc<SymRule>) -> Option<&String> {
    match &r.action {
        Action::Jump(t) | Action::Goto(t) => Some(t),
        _ => None,
    }
}

fn targets(rules: &[Arc<SymRule>]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|r| match &r.action {
            Action::Jump(t) | Action::Goto(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}
