//! The chain part of the map builder: the program's rules in one numbering, each
//! chain's range of it, each rule's action with jump targets resolved, and a bound on
//! the bpf_loop steps any packet can take.

use std::collections::HashMap;

use super::checks::{reject_arg, Extras};
use super::sets::SetIds;
use super::{
    ActionKind, BpfChain, BpfRule, BuildError, BLOCK_RULES, CHAIN_NETDEV, FEATURE_BRIDGE,
    FEATURE_BRIDGE_CLEAR, FEATURE_BRIDGE_TX, FEATURE_CHECKS, FEATURE_CONNTRACK, FEATURE_FWD_REJECT,
    FEATURE_JUMPS, FEATURE_MARK_ANSWERS, FEATURE_REJECT, FEATURE_ROUTE_ANSWERS, FEATURE_STMTS,
    KIND_IPV4, KIND_IPV6, KIND_OTHER, MAX_BASE_CHAINS, MAX_STEPS, RULE_CHECKS, RULE_STMTS,
};
use crate::ir::{Action, Chain, ChainRef, L3Scope, Program, Rule, Test};

pub(super) struct Layout<'a> {
    /// By rule number.
    pub rule_refs: Vec<&'a Rule>,
    pub rules: Vec<BpfRule>,
    /// By chain id.
    pub chains: Vec<BpfChain>,
    pub max_steps: u32,
    pub base_scope: [u32; 3],
    pub features: u32,
    pub extras: Extras,
    pub fast_rule: [[u32; 8]; 3],
}

pub(super) fn layout<'a>(program: &'a Program, sets: &SetIds) -> Result<Layout<'a>, BuildError> {
    if program.base_chains.len() > MAX_BASE_CHAINS {
        return Err(BuildError::TooManyBaseChains {
            chains: program.base_chains.len(),
        });
    }
    let ordered: Vec<(ChainRef<'_>, &Chain)> = program.chains_in_order().collect();
    let ids: HashMap<&str, u32> = ordered
        .iter()
        .enumerate()
        .filter_map(|(id, (r, _))| match r {
            ChainRef::Regular(name) => Some((*name, id as u32)),
            ChainRef::Base(_) => None,
        })
        .collect();

    let mut features = if program.conntrack {
        FEATURE_CONNTRACK
    } else {
        0
    };
    if program.mark_answers {
        features |= FEATURE_MARK_ANSWERS;
    }
    if program.bridge_frames {
        features |= FEATURE_BRIDGE;
    }
    if program.bridge_tx_mark {
        features |= FEATURE_BRIDGE_TX;
    }
    if program.bridge_clear_mark {
        features |= FEATURE_BRIDGE_CLEAR;
    }
    let mut rule_refs = Vec::new();
    let mut rules = Vec::new();
    let mut extras = Extras::default();
    let mut chains = Vec::with_capacity(ordered.len());
    // Chain ids each chain's rules jump or go to, for the loop check and step bound.
    let mut targets: Vec<Vec<u32>> = Vec::with_capacity(ordered.len());
    for (chain_ref, chain) in &ordered {
        let start = rule_refs.len() as u32;
        let mut chain_targets = Vec::new();
        for r in &chain.rules {
            let number = rule_refs.len();
            let resolve = |name: &str| {
                ids.get(name)
                    .copied()
                    .ok_or_else(|| BuildError::UnknownChain {
                        rule: number,
                        chain: name.to_string(),
                    })
            };
            let (kind, arg) = match &r.action {
                Action::Accept => (ActionKind::Accept, 0),
                Action::Drop => (ActionKind::Drop, 0),
                Action::Continue => (ActionKind::Continue, 0),
                Action::Return => (ActionKind::Return, 0),
                Action::Jump(name) => (ActionKind::Jump, resolve(name)?),
                Action::Goto(name) => (ActionKind::Goto, resolve(name)?),
                Action::Reject(reject) => {
                    features |= FEATURE_REJECT;
                    if program.route_answers {
                        features |= FEATURE_ROUTE_ANSWERS;
                    }
                    if program.forward_answers {
                        features |= FEATURE_FWD_REJECT;
                    }
                    (ActionKind::Reject, reject_arg(reject))
                }
            };
            if matches!(kind, ActionKind::Jump | ActionKind::Goto) {
                features |= FEATURE_JUMPS;
                chain_targets.push(arg);
            }
            let mut rule = BpfRule {
                kind: kind as u8,
                arg,
                ..BpfRule::default()
            };
            if let Some((ext, checks, stmts)) = extras.add(number, r, sets)? {
                rule.ext = ext;
                if checks {
                    rule.flags |= RULE_CHECKS;
                    features |= FEATURE_CHECKS;
                }
                if stmts {
                    rule.flags |= RULE_STMTS;
                    features |= FEATURE_STMTS;
                }
            }
            rules.push(rule);
            rule_refs.push(r);
        }
        let policy = match chain_ref {
            ChainRef::Base(_) => ActionKind::from(chain.policy),
            ChainRef::Regular(_) => ActionKind::Accept,
        };
        chains.push(BpfChain {
            start,
            end: rule_refs.len() as u32,
            policy: policy as u32,
            // Bridge chains share the netdev scope; their programs charge what the
            // bridge hooks count (`Program::bridge_frames`), for every chain.
            flags: match chain_ref {
                ChainRef::Base(_) if chain.scope == L3Scope::Netdev && !program.bridge_frames => {
                    CHAIN_NETDEV
                }
                _ => 0,
            },
        });
        targets.push(chain_targets);
    }

    let names: Vec<String> = ordered
        .iter()
        .map(|(r, _)| match r {
            ChainRef::Base(i) => format!("base chain {i}"),
            ChainRef::Regular(name) => name.to_string(),
        })
        .collect();
    let mut bound = StepBound {
        chains: &chains,
        targets: &targets,
        names: &names,
        memo: vec![Visit::New; chains.len()],
    };
    let mut steps: u64 = 0;
    for base in 0..program.base_chains.len() {
        steps = steps.saturating_add(bound.steps(base)?);
    }
    // Regular chains no base chain reaches: still checked for loops.
    for chain in program.base_chains.len()..chains.len() {
        bound.steps(chain)?;
    }

    let mut base_scope = [0u32; 3];
    for (b, chain) in program.base_chains.iter().enumerate() {
        let kinds: &[usize] = match chain.scope {
            L3Scope::Ipv4 => &[KIND_IPV4],
            L3Scope::Ipv6 => &[KIND_IPV6],
            L3Scope::Inet => &[KIND_IPV4, KIND_IPV6],
            L3Scope::Netdev => &[KIND_IPV4, KIND_IPV6, KIND_OTHER],
        };
        for &k in kinds {
            base_scope[k] |= 1 << b;
        }
    }

    let fast_rule = if program.conntrack {
        fast_rules(program, base_scope)
    } else {
        [[0; 8]; 3]
    };

    Ok(Layout {
        fast_rule,
        rule_refs,
        rules,
        chains,
        max_steps: steps.clamp(1, MAX_STEPS) as u32,
        base_scope,
        features,
        extras,
    })
}

/// For each packet kind and ct state, the rule that decides every such packet without
/// looking at anything else, if there is one: the first rule of the first base chain
/// that can match the state at all tests nothing but `ct state`, has no statements, and
/// drops, or accepts while no later base chain sees the packet. Its counter is still
/// counted; the LBVS lookups and scan are skipped (`ct state established,related
/// accept` at the top of the only input chain).
fn fast_rules(program: &Program, base_scope: [u32; 3]) -> [[u32; 8]; 3] {
    let mut fast = [[0u32; 8]; 3];
    for (kind, mask) in base_scope.iter().enumerate() {
        if *mask == 0 {
            continue;
        }
        let b = mask.trailing_zeros() as usize;
        if program.base_chains[b].scope == L3Scope::Netdev {
            // Its counters may charge the link-layer header (at egress).
            continue;
        }
        let last_base = mask.count_ones() == 1;
        let first: usize = program.base_chains[..b].iter().map(|c| c.rules.len()).sum();
        for (bit, slot) in fast[kind].iter_mut().enumerate() {
            let state = 1u32 << bit;
            let can_match = |r: &&Rule| {
                r.matches.iter().all(|m| match m.test {
                    Test::CtState(mask) => (state & mask != 0) != m.negated,
                    _ => true,
                })
            };
            let Some((i, r)) = program.base_chains[b]
                .rules
                .iter()
                .enumerate()
                .find(|(_, r)| can_match(r))
            else {
                continue;
            };
            let only_ct_state = r.matches.iter().all(|m| matches!(m.test, Test::CtState(_)))
                && r.statements.is_empty();
            let drop = match r.action {
                Action::Drop => true,
                Action::Accept if last_base => false,
                _ => continue,
            };
            if only_ct_state {
                *slot = (((first + i + 1) as u32) << 1) | drop as u32;
            }
        }
    }
    fast
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    InProgress,
    Done(u64),
}

/// The most bpf_loop steps one visit of a chain can take, jumps included: one scan
/// step per 4096-rule block of its range, one more per rule that can match (the scan
/// resumes after it in the same block), one for its end, plus the steps of every chain
/// it jumps or goes to. Saturates; the evaluation drops a packet that would need more
/// steps than bpf_loop allows.
struct StepBound<'a> {
    chains: &'a [BpfChain],
    targets: &'a [Vec<u32>],
    names: &'a [String],
    memo: Vec<Visit>,
}

impl StepBound<'_> {
    fn steps(&mut self, chain: usize) -> Result<u64, BuildError> {
        match self.memo[chain] {
            Visit::Done(steps) => return Ok(steps),
            Visit::InProgress => {
                return Err(BuildError::ChainLoop {
                    chain: self.names[chain].clone(),
                })
            }
            Visit::New => {}
        }
        self.memo[chain] = Visit::InProgress;
        let c = self.chains[chain];
        let blocks = if c.end > c.start {
            ((c.end as usize - 1) / BLOCK_RULES - c.start as usize / BLOCK_RULES + 1) as u64
        } else {
            0
        };
        let mut steps = blocks + 1 + (c.end - c.start) as u64;
        for i in 0..self.targets[chain].len() {
            let target = self.targets[chain][i] as usize;
            steps = steps.saturating_add(self.steps(target)?);
        }
        self.memo[chain] = Visit::Done(steps);
        Ok(steps)
    }
}
