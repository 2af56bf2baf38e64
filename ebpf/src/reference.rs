//! A direct evaluator of the IR over [`PacketFields`]: rules in order, first verdict
//! wins, else the policy. It shares no code with the map builder, so tests can hold the
//! compiled BPF classifier to it.

use crate::fields::{L3Fields, PacketFields};
use crate::ir::{Action, Chain, L3Scope, Match, Test, Verdict};

/// What evaluating one packet does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Counter indexes incremented, in order: continue rules that matched, then the
    /// deciding rule, or `rules.len()` for the policy. Empty when the chain does not see
    /// the packet (outside its scope; it passes).
    pub counted: Vec<usize>,
}

/// The reference can only run what the data plane runs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {what} is not supported")]
pub struct Unsupported {
    pub rule: usize,
    pub what: String,
}

pub fn evaluate(chain: &Chain, packet: &PacketFields) -> Result<Evaluation, Unsupported> {
    if !in_scope(chain.scope, &packet.l3) {
        return Ok(Evaluation {
            verdict: Verdict::Accept,
            counted: Vec::new(),
        });
    }
    let mut counted = Vec::new();
    for (index, rule) in chain.rules.iter().enumerate() {
        if let Some(m) = rule.matches.iter().find(|m| !is_stateless(&m.test)) {
            return Err(Unsupported {
                rule: index,
                what: format!("{:?}", m.test),
            });
        }
        if !rule.matches.iter().all(|m| holds(m, packet)) {
            continue;
        }
        counted.push(index);
        let verdict = match &rule.action {
            Action::Accept => Verdict::Accept,
            Action::Drop => Verdict::Drop,
            Action::Continue => continue,
            other => {
                return Err(Unsupported {
                    rule: index,
                    what: format!("{other:?}"),
                })
            }
        };
        return Ok(Evaluation { verdict, counted });
    }
    counted.push(chain.rules.len());
    Ok(Evaluation {
        verdict: chain.policy,
        counted,
    })
}

fn in_scope(scope: L3Scope, l3: &L3Fields) -> bool {
    matches!(
        (scope, l3),
        (L3Scope::Netdev, _)
            | (L3Scope::Ipv4 | L3Scope::Inet, L3Fields::V4 { .. })
            | (L3Scope::Ipv6 | L3Scope::Inet, L3Fields::V6 { .. })
    )
}

/// Whether one match holds: the field is present and membership differs from negation.
pub fn holds(m: &Match, packet: &PacketFields) -> bool {
    match field_in_set(&m.test, packet) {
        None => false,
        Some(member) => member != m.negated,
    }
}

fn is_stateless(test: &Test) -> bool {
    !matches!(
        test,
        Test::CtState(_)
            | Test::CtStatus(_)
            | Test::CtMark { .. }
            | Test::InSet { .. }
            | Test::Limit(_)
            | Test::Quota(_)
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
        (
            Test::CtState(_)
            | Test::CtStatus(_)
            | Test::CtMark { .. }
            | Test::InSet { .. }
            | Test::Limit(_)
            | Test::Quota(_),
            _,
        ) => return None,
    })
}
