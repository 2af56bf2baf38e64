//! A direct evaluator of the IR over [`PacketFields`], written from nf_tables' semantics
//! (nf_hook_slow over the base chains, nft_do_chain in each, the expressions' own
//! rules) and sharing no code with the map builder, so tests can hold the compiled BPF
//! programs to it. It keeps the state the data plane keeps: limit buckets, quota
//! counts and set contents (connection tracking is [`crate::conntrack`]'s).

use std::collections::{BTreeMap, HashMap};

use crate::fields::{L3Fields, PacketFields};
use crate::ir::{
    Action, Chain, L3Scope, Limit, Match, Program, Reject, Rule, Set, SetElement, SetField,
    Statement, Test, Verdict, JUMP_STACK_SIZE,
};
use crate::residual::Outcome;

/// What evaluating one packet does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Counter indexes incremented, in order: rules that matched (their number in the
    /// program), and `nrules + b` when base chain b's policy decided. Empty when no base
    /// chain sees the packet (it passes).
    pub counted: Vec<usize>,
    /// A jump found the jump stack full (the packet is dropped, as by the kernel).
    pub jump_overflow: bool,
    pub effects: Effects,
}

/// What statements and reject did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The packet was rejected this way (and dropped).
    pub reject: Option<Reject>,
    /// The meta mark after the chains, if a statement set it.
    pub mark: Option<u32>,
    /// The ct mark after the chains, if a statement set it.
    pub ct_mark: Option<u32>,
    /// skb->priority after the chains, if a statement (xt_CLASSIFY) set it.
    pub priority: Option<u32>,
    /// `log` statements that ran: rule number, prefix, the meta mark then.
    pub logs: Vec<(usize, String, u32)>,
    /// The datagram's header bytes after `payload set` statements changed them.
    pub network: Option<Vec<u8>>,
}

/// The reference can only run what it models.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {what}")]
pub struct Unsupported {
    pub rule: usize,
    pub what: String,
}

/// Evaluates a lone chain (a program with that one base chain, no stateful parts).
pub fn evaluate(chain: &Chain, packet: &PacketFields) -> Result<Evaluation, Unsupported> {
    Reference::new(&Program::single(chain.clone()))?.evaluate(packet)
}

/// nft_limit's bucket: its size and a packet's cost in nanoseconds' worth of tokens.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u64,
    last: u64,
    max: u64,
}

impl Bucket {
    fn new(limit: &Limit, now: u64) -> Self {
        let nsecs = limit.unit_secs * 1_000_000_000;
        let max = if limit.bytes {
            nsecs * (limit.rate + limit.burst as u64) / limit.rate
        } else {
            let burst = if limit.burst == 0 { 5 } else { limit.burst };
            nsecs / limit.rate * burst as u64
        };
        Bucket {
            tokens: max,
            last: now,
            max,
        }
    }

    /// Refills for the time since the last packet, then takes `cost` if there is that
    /// much: whether the packet is within the rate.
    fn take(&mut self, cost: u64, now: u64) -> bool {
        let tokens = (self.tokens + now.saturating_sub(self.last)).min(self.max);
        self.last = self.last.max(now);
        if tokens >= cost {
            self.tokens = tokens - cost;
            true
        } else {
            self.tokens = tokens;
            false
        }
    }
}

fn limit_cost(limit: &Limit, len: u32) -> u64 {
    let nsecs = limit.unit_secs * 1_000_000_000;
    if limit.bytes {
        nsecs.wrapping_mul(len as u64) / limit.rate
    } else {
        nsecs / limit.rate
    }
}

/// A program, ready to evaluate packets, with its state.
pub struct Reference<'a> {
    program: &'a Program,
    /// Number of each regular chain's first rule.
    first_rule: HashMap<&'a str, usize>,
    base_first_rule: Vec<usize>,
    nrules: usize,
    /// Limit buckets and quota counts by (rule, index of the match in the rule).
    buckets: HashMap<(usize, usize), Bucket>,
    consumed: HashMap<(usize, usize), u64>,
    sets: BTreeMap<String, Set>,
    /// When limit buckets start full.
    start: u64,
}

impl<'a> Reference<'a> {
    pub fn new(program: &'a Program) -> Result<Self, Unsupported> {
        Self::starting_at(program, 0)
    }

    /// A program whose limit buckets are full at time `start` (ns).
    pub fn starting_at(program: &'a Program, start: u64) -> Result<Self, Unsupported> {
        let mut next = 0;
        let mut base_first_rule = Vec::new();
        for chain in &program.base_chains {
            base_first_rule.push(next);
            next += chain.rules.len();
        }
        let mut first_rule = HashMap::new();
        for (name, chain) in &program.chains {
            first_rule.insert(name.as_str(), next);
            next += chain.rules.len();
        }
        let rules = program.chains_in_order().flat_map(|(_, c)| c.rules.iter());
        for (number, r) in rules.enumerate() {
            for m in &r.matches {
                if let Test::InSet { set, .. } = &m.test {
                    if !program.sets.contains_key(set) {
                        return Err(Unsupported {
                            rule: number,
                            what: format!("no set {set:?}"),
                        });
                    }
                }
            }
        }
        Ok(Reference {
            program,
            first_rule,
            base_first_rule,
            nrules: next,
            buckets: HashMap::new(),
            consumed: HashMap::new(),
            sets: program.sets.clone(),
            start,
        })
    }

    pub fn nrules(&self) -> usize {
        self.nrules
    }

    /// Adds an element to a set (as the loader's `set_insert`).
    pub fn set_insert(&mut self, set: &str, element: SetElement) {
        if let Some(s) = self.sets.get_mut(set) {
            if !s.elements.contains(&element) {
                s.elements.push(element);
            }
        }
    }

    pub fn set_remove(&mut self, set: &str, element: &SetElement) {
        if let Some(s) = self.sets.get_mut(set) {
            s.elements.retain(|e| e != element);
        }
    }

    /// Runs the hook's base chains on one packet at the start time.
    pub fn evaluate(&mut self, packet: &PacketFields) -> Result<Evaluation, Unsupported> {
        let start = self.start;
        self.evaluate_at(packet, start)
    }

    /// Runs the hook's base chains on one packet at time `now` (ns, for limits).
    pub fn evaluate_at(
        &mut self,
        packet: &PacketFields,
        now: u64,
    ) -> Result<Evaluation, Unsupported> {
        let mut eval = Evaluation {
            verdict: Verdict::Accept,
            counted: Vec::new(),
            jump_overflow: false,
            effects: Effects::default(),
        };
        // Statements change what later rules see.
        let mut packet = packet.clone();
        for (b, base) in self.program.base_chains.iter().enumerate() {
            if !in_scope(base.scope, &packet.l3) {
                continue;
            }
            if self.run_base_chain(b, &mut packet, now, &mut eval)? == Verdict::Drop {
                eval.verdict = Verdict::Drop;
                break;
            }
        }
        Ok(eval)
    }

    /// One base chain, as nft_do_chain: the verdict it gives the packet.
    fn run_base_chain(
        &mut self,
        b: usize,
        packet: &mut PacketFields,
        now: u64,
        eval: &mut Evaluation,
    ) -> Result<Verdict, Unsupported> {
        let program = self.program;
        let base = &program.base_chains[b];
        // The current chain, its first rule's number, and the next rule in it.
        let mut chain: &Chain = base;
        let mut first = self.base_first_rule[b];
        let mut next = 0usize;
        let mut stack: Vec<(&Chain, usize, usize)> = Vec::new();
        loop {
            let mut hit = None;
            for i in next..chain.rules.len() {
                if self.rule_drops(&chain.rules[i], packet) {
                    return Ok(Verdict::Drop);
                }
                if self.rule_matches(&chain.rules[i], first + i, packet, now) {
                    eval.counted.push(first + i);
                    match self.run_statements(&chain.rules[i], first + i, packet, eval) {
                        Statements::Done => {
                            hit = Some(i);
                            break;
                        }
                        Statements::Broke => {}
                        Statements::Dropped => return Ok(Verdict::Drop),
                    }
                }
            }
            let action = hit.map(|i| &chain.rules[i].action);
            match action {
                Some(Action::Continue) => next = hit.unwrap_or(0) + 1,
                Some(Action::Accept) => return Ok(Verdict::Accept),
                Some(Action::Drop) => return Ok(Verdict::Drop),
                Some(Action::Reject(r)) => {
                    eval.effects.reject = Some(*r);
                    return Ok(Verdict::Drop);
                }
                Some(Action::Jump(name) | Action::Goto(name)) => {
                    let i = hit.unwrap_or(0);
                    let target = program.chains.get(name).ok_or_else(|| Unsupported {
                        rule: first + i,
                        what: format!("unknown chain {name:?}"),
                    })?;
                    if matches!(chain.rules[i].action, Action::Jump(_)) {
                        if stack.len() >= JUMP_STACK_SIZE {
                            eval.jump_overflow = true;
                            return Ok(Verdict::Drop);
                        }
                        stack.push((chain, first, i + 1));
                    }
                    chain = target;
                    first = self.first_rule[name.as_str()];
                    next = 0;
                }
                // Return, or the end of the chain: back to the caller, or the policy.
                Some(Action::Return) | None => match stack.pop() {
                    Some((c, f, n)) => (chain, first, next) = (c, f, n),
                    None => {
                        eval.counted.push(self.nrules + b);
                        return Ok(base.policy);
                    }
                },
            }
        }
    }

    /// Whether a rule's matches hold: the stateless ones (in any order, they have no
    /// side effects), then limits and quotas in rule order, each consulted only if the
    /// ones before it held.
    fn rule_matches(&mut self, rule: &Rule, number: usize, p: &PacketFields, now: u64) -> bool {
        for m in &rule.matches {
            if !matches!(m.test, Test::Limit(_) | Test::Quota(_) | Test::Nth(_))
                && !self.holds(m, p)
            {
                return false;
            }
        }
        for (index, m) in rule.matches.iter().enumerate() {
            let within = match &m.test {
                // Charged `p.len`, as at the IP hooks and at netdev ingress (packets
                // here have no padding or inner VLAN tag); at netdev egress the programs
                // charge the Ethernet header too, which this reference does not model.
                Test::Limit(limit) => {
                    let start = self.start;
                    let bucket = self
                        .buckets
                        .entry((number, index))
                        .or_insert_with(|| Bucket::new(limit, start));
                    bucket.take(limit_cost(limit, p.len), now)
                }
                Test::Quota(quota) => {
                    let consumed = self.consumed.entry((number, index)).or_insert(quota.used);
                    *consumed += p.len as u64;
                    *consumed <= quota.bytes
                }
                Test::Nth(nth) => {
                    let seen = self.consumed.entry((number, index)).or_insert(0);
                    *seen += 1;
                    nth.hits(*seen)
                }
                _ => continue,
            };
            if within == m.negated {
                return false;
            }
        }
        true
    }

    /// Whether an xtables match of the rule drops the packet ("hotdrop"): its residual
    /// program gives [`Outcome::Drops`] and the rule's other stateless matches hold
    /// (the map builder runs such a program as the rule's last check).
    fn rule_drops(&self, rule: &Rule, p: &PacketFields) -> bool {
        let none = crate::residual::Headers::default();
        let drops = rule.matches.iter().any(|m| {
            matches!(&m.test, Test::Residual(program) if program.can_drop()
                && program.run(p.headers.as_ref().unwrap_or(&none), &p.meta_values())
                    == Outcome::Drops)
        });
        drops
            && rule.matches.iter().all(|m| match &m.test {
                Test::Residual(program) if program.can_drop() => true,
                Test::Limit(_) | Test::Quota(_) | Test::Nth(_) => true,
                _ => self.holds(m, p),
            })
    }

    /// Runs a matched rule's statements: whether they all ran, one broke the rule or
    /// one dropped the packet.
    fn run_statements(
        &self,
        rule: &Rule,
        number: usize,
        p: &mut PacketFields,
        eval: &mut Evaluation,
    ) -> Statements {
        let conn = p.ct.has_conn();
        for s in &rule.statements {
            match s {
                Statement::SetMark { and, xor } => {
                    p.mark = (p.mark & and) ^ xor;
                    eval.effects.mark = Some(p.mark);
                }
                Statement::SetMarkFromCtMark { and, xor } => {
                    if !conn {
                        return Statements::Broke;
                    }
                    p.mark = (p.ct.mark & and) ^ xor;
                    eval.effects.mark = Some(p.mark);
                }
                Statement::SetCtMark { and, xor } if conn => {
                    p.ct.mark = (p.ct.mark & and) ^ xor;
                    eval.effects.ct_mark = Some(p.ct.mark);
                }
                Statement::SetCtMarkFromMark { and, xor } if conn => {
                    p.ct.mark = (p.mark & and) ^ xor;
                    eval.effects.ct_mark = Some(p.ct.mark);
                }
                Statement::SetCtMark { .. } | Statement::SetCtMarkFromMark { .. } => {}
                Statement::MarkShift(m) => {
                    if m.from_ct && !conn {
                        return Statements::Broke;
                    }
                    if m.to_ct && !conn {
                        continue;
                    }
                    let v = m.apply(if m.from_ct { p.ct.mark } else { p.mark });
                    if m.to_ct {
                        p.ct.mark = v;
                        eval.effects.ct_mark = Some(v);
                    } else {
                        p.mark = v;
                        eval.effects.mark = Some(v);
                    }
                }
                Statement::MarkMerge(m) if conn => {
                    if m.to_ct {
                        p.ct.mark = m.apply(p.ct.mark, p.mark);
                        eval.effects.ct_mark = Some(p.ct.mark);
                    } else {
                        p.mark = m.apply(p.mark, p.ct.mark);
                        eval.effects.mark = Some(p.mark);
                    }
                }
                Statement::MarkMerge(_) => {}
                Statement::SetPriority(v) => eval.effects.priority = Some(*v),
                Statement::Log { prefix } => {
                    eval.effects.logs.push((number, prefix.clone(), p.mark))
                }
                Statement::Nflog { spec, .. } => {
                    eval.effects.logs.push((number, spec.clone(), p.mark))
                }
                Statement::EcnTcp(e) => {
                    let outcome = crate::rewrite::ecn_tcp(e, p);
                    eval.effects.network = p.headers.as_ref().map(|h| h.network.clone());
                    if outcome == crate::rewrite::StripOutcome::Drop {
                        return Statements::Dropped;
                    }
                }
                Statement::TcpOptStrip(strip) => {
                    let outcome = crate::rewrite::strip_tcp_options(strip, p);
                    eval.effects.network = p.headers.as_ref().map(|h| h.network.clone());
                    if outcome == crate::rewrite::StripOutcome::Drop {
                        return Statements::Dropped;
                    }
                }
                Statement::Hmark(h) => {
                    let mark = match (&p.l3, &p.headers) {
                        (L3Fields::V4 { .. }, Some(hd)) => h.mark_ipv4(&hd.network),
                        _ => None,
                    };
                    if let Some(m) = mark {
                        p.mark = m;
                        eval.effects.mark = Some(m);
                    }
                }
                Statement::PayloadSet(w) => {
                    let ok = crate::rewrite::apply(w, p);
                    // Even a breaking write may have fixed a checksum up.
                    eval.effects.network = p.headers.as_ref().map(|h| h.network.clone());
                    if !ok {
                        return Statements::Broke;
                    }
                }
            }
        }
        Statements::Done
    }

    /// Whether one stateless match holds: the field is present and membership differs
    /// from negation.
    fn holds(&self, m: &Match, packet: &PacketFields) -> bool {
        let member = match &m.test {
            Test::InSet { field, set } => self
                .sets
                .get(set)
                .and_then(|s| set_member(*field, s, packet)),
            test => field_in_set(test, packet),
        };
        match member {
            None => false,
            Some(member) => member != m.negated,
        }
    }
}

/// How a rule's statements ended.
enum Statements {
    Done,
    /// One broke the rule: its action is skipped.
    Broke,
    /// One dropped the packet (xt_TCPOPTSTRIP's NF_DROP).
    Dropped,
}

fn in_scope(scope: L3Scope, l3: &L3Fields) -> bool {
    matches!(
        (scope, l3),
        (L3Scope::Netdev, _)
            | (L3Scope::Ipv4 | L3Scope::Inet, L3Fields::V4 { .. })
            | (L3Scope::Ipv6 | L3Scope::Inet, L3Fields::V6 { .. })
    )
}

/// Whether one stateless match (not a set lookup) holds.
pub fn holds(m: &Match, packet: &PacketFields) -> bool {
    match field_in_set(&m.test, packet) {
        None => false,
        Some(member) => member != m.negated,
    }
}

/// A set lookup: `None` when the packet has no such field.
fn set_member(field: SetField, set: &Set, p: &PacketFields) -> Option<bool> {
    let has = |e: &SetElement| -> bool {
        match (field, e, &p.l3) {
            (SetField::IpSaddr, SetElement::Ipv4(n), L3Fields::V4 { saddr, .. }) => {
                n.contains(saddr)
            }
            (SetField::IpDaddr, SetElement::Ipv4(n), L3Fields::V4 { daddr, .. }) => {
                n.contains(daddr)
            }
            (SetField::Ip6Saddr, SetElement::Ipv6(n), L3Fields::V6 { saddr, .. }) => {
                n.contains(saddr)
            }
            (SetField::Ip6Daddr, SetElement::Ipv6(n), L3Fields::V6 { daddr, .. }) => {
                n.contains(daddr)
            }
            (SetField::Sport, SetElement::Port(r), _) => {
                p.transport_ports().is_some_and(|(s, _)| r.contains(s))
            }
            (SetField::Dport, SetElement::Port(r), _) => {
                p.transport_ports().is_some_and(|(_, d)| r.contains(d))
            }
            (SetField::L4Proto, SetElement::Proto(v), _) => p.l4proto == Some(*v),
            (SetField::Iif, SetElement::U32(v), _) => p.iif == *v,
            (SetField::Oif, SetElement::U32(v), _) => p.oif == *v,
            (SetField::Mark, SetElement::U32(v), _) => p.mark == *v,
            (SetField::CtMark, SetElement::U32(v), _) => p.ct.mark == *v,
            _ => false,
        }
    };
    let present = match field {
        SetField::IpSaddr | SetField::IpDaddr => matches!(p.l3, L3Fields::V4 { .. }),
        SetField::Ip6Saddr | SetField::Ip6Daddr => matches!(p.l3, L3Fields::V6 { .. }),
        SetField::Sport | SetField::Dport => p.transport_ports().is_some(),
        SetField::L4Proto => p.l4proto.is_some(),
        SetField::Iif | SetField::Oif | SetField::Mark => true,
        SetField::CtMark => p.ct.has_conn(),
    };
    present.then(|| set.elements.iter().any(has))
}

/// `None` when the field is absent from the packet, else whether its value is in the set.
fn field_in_set(test: &Test, p: &PacketFields) -> Option<bool> {
    Some(match (test, &p.l3) {
        (Test::IpSaddr(nets), L3Fields::V4 { saddr, .. }) => nets.iter().any(|n| n.contains(saddr)),
        (Test::IpDaddr(nets), L3Fields::V4 { daddr, .. }) => nets.iter().any(|n| n.contains(daddr)),
        (Test::Ip6Saddr(nets), L3Fields::V6 { saddr, .. }) => {
            nets.iter().any(|n| n.contains(saddr))
        }
        (Test::Ip6Daddr(nets), L3Fields::V6 { daddr, .. }) => {
            nets.iter().any(|n| n.contains(daddr))
        }
        (Test::IpSaddr(_) | Test::IpDaddr(_) | Test::Ip6Saddr(_) | Test::Ip6Daddr(_), _) => {
            return None
        }
        (Test::L4Proto(protos), _) => protos.contains(&p.l4proto?),
        (Test::Sport(ranges), _) => {
            let (sport, _) = p.transport_ports()?;
            ranges.iter().any(|r| r.contains(sport))
        }
        (Test::Dport(ranges), _) => {
            let (_, dport) = p.transport_ports()?;
            ranges.iter().any(|r| r.contains(dport))
        }
        (Test::IcmpType(types), _) => types.contains(&p.icmpv4_type()?),
        (Test::Icmpv6Type(types), _) => types.contains(&p.icmpv6_type()?),
        (Test::Iif(indexes), _) => indexes.contains(&p.iif),
        (Test::Oif(indexes), _) => indexes.contains(&p.oif),
        (Test::Mark { mask, values }, _) => values.contains(&(p.mark & mask)),
        (Test::CtState(mask), _) => p.ct.state & mask != 0,
        (Test::CtMark { mask, values }, _) => {
            if !p.ct.has_conn() {
                return None;
            }
            values.contains(&(p.ct.mark & mask))
        }
        (Test::CtStatus(mask), _) => {
            if !p.ct.has_conn() {
                return None;
            }
            p.ct.status & mask != 0
        }
        // Without header bytes (not IP) only meta loads succeed.
        (Test::Residual(program), _) => {
            let none = crate::residual::Headers::default();
            program.holds(p.headers.as_ref().unwrap_or(&none), &p.meta_values())
        }
        // Set lookups need the program's sets; limits and quotas its state.
        (Test::InSet { .. } | Test::Limit(_) | Test::Quota(_) | Test::Nth(_), _) => return None,
        // The model's packets are IP or raw frames, never ARP frames of an ARP hook.
        (Test::ArpHook, _) => return None,
        // Nor frames classified at a bridge port.
        (Test::BridgeHook(_), _) => return None,
        // Nor connection labels (ebpf/tests/conntrack.rs tests them with the tracker).
        (Test::CtLabel { .. }, _) => return None,
    })
}
