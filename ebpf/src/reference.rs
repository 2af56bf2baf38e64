//! A direct evaluator of the IR over [`PacketFields`], written from nf_tables' semantics
//! (nf_hook_slow over the base chains, nft_do_chain in each) and sharing no code with
//! the map builder, so tests can hold the compiled BPF programs to it.

use std::collections::HashMap;

use crate::fields::{L3Fields, PacketFields};
use crate::ir::{Action, Chain, L3Scope, Match, Program, Test, Verdict, JUMP_STACK_SIZE};

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
}

/// The reference can only run what it models.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {what} is not supported")]
pub struct Unsupported {
    pub rule: usize,
    pub what: String,
}

/// Evaluates a lone chain (a program with that one base chain).
pub fn evaluate(chain: &Chain, packet: &PacketFields) -> Result<Evaluation, Unsupported> {
    Reference::new(&Program::single(chain.clone()))?.evaluate(packet)
}

/// A program, ready to evaluate packets.
pub struct Reference<'a> {
    program: &'a Program,
    /// Number of each chain's first rule, by chain name (regular chains).
    first_rule: HashMap<&'a str, usize>,
    base_first_rule: Vec<usize>,
    nrules: usize,
}

impl<'a> Reference<'a> {
    pub fn new(program: &'a Program) -> Result<Self, Unsupported> {
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
        let reference = Reference {
            program,
            first_rule,
            base_first_rule,
            nrules: next,
        };
        let rules = program.chains_in_order().flat_map(|(_, c)| c.rules.iter());
        for (number, r) in rules.enumerate() {
            {
                if let Some(m) = r.matches.iter().find(|m| !is_stateless(&m.test)) {
                    return Err(Unsupported {
                        rule: number,
                        what: format!("{:?}", m.test),
                    });
                }
                if let Some(s) = r.statements.first() {
                    return Err(Unsupported {
                        rule: number,
                        what: format!("{s:?}"),
                    });
                }
                if let Action::Reject(_) = r.action {
                    return Err(Unsupported {
                        rule: number,
                        what: format!("{:?}", r.action),
                    });
                }
            }
        }
        Ok(reference)
    }

    pub fn nrules(&self) -> usize {
        self.nrules
    }

    /// Runs the hook's base chains on one packet.
    pub fn evaluate(&self, packet: &PacketFields) -> Result<Evaluation, Unsupported> {
        let mut eval = Evaluation {
            verdict: Verdict::Accept,
            counted: Vec::new(),
            jump_overflow: false,
        };
        for (b, base) in self.program.base_chains.iter().enumerate() {
            if !in_scope(base.scope, &packet.l3) {
                continue;
            }
            if self.run_base_chain(b, packet, &mut eval)? == Verdict::Drop {
                eval.verdict = Verdict::Drop;
                break;
            }
        }
        Ok(eval)
    }

    /// One base chain, as nft_do_chain: the verdict it gives the packet.
    fn run_base_chain(
        &self,
        b: usize,
        packet: &PacketFields,
        eval: &mut Evaluation,
    ) -> Result<Verdict, Unsupported> {
        let counted = &mut eval.counted;
        let base = &self.program.base_chains[b];
        // (chain, its first rule's number, next rule index in it)
        let mut chain: &Chain = base;
        let mut first = self.base_first_rule[b];
        let mut next = 0usize;
        let mut stack: Vec<(&Chain, usize, usize)> = Vec::new();
        loop {
            let hit = (next..chain.rules.len())
                .find(|&i| chain.rules[i].matches.iter().all(|m| holds(m, packet)));
            let Some(i) = hit else {
                // End of the chain: back to the caller, or the policy.
                match stack.pop() {
                    Some((c, f, n)) => {
                        (chain, first, next) = (c, f, n);
                        continue;
                    }
                    None => {
                        counted.push(self.nrules + b);
                        return Ok(base.policy);
                    }
                }
            };
            counted.push(first + i);
            match &chain.rules[i].action {
                Action::Continue => next = i + 1,
                Action::Accept => return Ok(Verdict::Accept),
                Action::Drop => return Ok(Verdict::Drop),
                Action::Jump(name) | Action::Goto(name) => {
                    let target = self.program.chains.get(name).ok_or_else(|| Unsupported {
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
                Action::Return => match stack.pop() {
                    Some((c, f, n)) => (chain, first, next) = (c, f, n),
                    None => {
                        counted.push(self.nrules + b);
                        return Ok(base.policy);
                    }
                },
                Action::Reject(_) => {
                    return Err(Unsupported {
                        rule: first + i,
                        what: "reject".into(),
                    })
                }
            }
        }
    }
}

fn in_scope(scope: L3Scope, l3: &L3Fields) -> bool {
    matches!(
        (scope, l3),
        (L3Scope::Netdev, _)
            | (L3Scope::Ipv4 | L3Scope::Inet, L3Fields::V4 { .. })
            | (L3Scope::Ipv6 | L3Scope::Inet, L3Fields::V6 { .. })
    )
}

/// Whether one stateless match holds: the field is present and membership differs
/// from negation.
pub fn holds(m: &Match, packet: &PacketFields) -> bool {
    match field_in_set(&m.test, packet) {
        None => false,
        Some(member) => member != m.negated,
    }
}

fn is_stateless(test: &Test) -> bool {
    !matches!(
        test,
        Test::CtStatus(_) | Test::InSet { .. } | Test::Limit(_) | Test::Quota(_)
    )
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
        (Test::CtStatus(_) | Test::InSet { .. } | Test::Limit(_) | Test::Quota(_), _) => {
            return None
        }
    })
}
