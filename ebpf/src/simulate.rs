//! Runs a [`CompiledProgram`] on [`PacketFields`] the way bpf/lib/eval.h runs the maps:
//! look up one vector id per used dimension, then walk the chains' rule ranges taking
//! set bits of the AND in order, following the rule table's actions and the chain
//! table's ranges and policies. It lets the map builder be tested against the
//! reference evaluator without a kernel. Residual checks, statements and reject are
//! not simulated (programs with them are tested in the kernel).

use crate::fields::{L3Fields, PacketFields};
use crate::ir::{Verdict, JUMP_STACK_SIZE};
use crate::maps::{
    ActionKind, CompiledProgram, Dim, CTSTATE_VALUES, ICMP6_BASE, ICMP_ABSENT, KIND_IPV4,
    KIND_IPV6, KIND_OTHER, L4PROTO_ABSENT, PORT_ABSENT,
};
use crate::reference::{Effects, Evaluation};

pub fn classify(program: &CompiledProgram, p: &PacketFields) -> Evaluation {
    let live = &program.live;
    let kind = match p.l3 {
        L3Fields::V4 { .. } => KIND_IPV4,
        L3Fields::V6 { .. } => KIND_IPV6,
        L3Fields::None => KIND_OTHER,
    };
    let scope = live.base_scope[kind];
    let mut counted = Vec::new();
    if scope == 0 {
        return Evaluation {
            verdict: Verdict::Accept,
            counted,
            jump_overflow: false,
            effects: Effects::default(),
        };
    }
    let ids: Vec<u32> = Dim::ALL
        .iter()
        .filter(|d| program.uses(**d))
        .map(|d| vector_id(program, *d, p))
        .collect();
    let matches = |rule: usize| ids.iter().all(|&id| program.vector_bit(id, rule));

    let mut base = scope.trailing_zeros() as usize;
    let mut chain = base;
    let mut pos = program.chains[chain].start as usize;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    loop {
        let end = program.chains[chain].end as usize;
        let hit = (pos..end).find(|&r| matches(r));
        let action = hit.map(|r| {
            counted.push(r);
            program.rules[r]
        });
        let kind = action.map(|a| a.kind);
        // Where to go: a verdict for this base chain, or the next position.
        let base_verdict = match kind {
            Some(k) if k == ActionKind::Continue as u8 => {
                pos = hit.unwrap_or(end) + 1;
                None
            }
            Some(k) if k == ActionKind::Accept as u8 => Some(Verdict::Accept),
            Some(k) if k == ActionKind::Drop as u8 => Some(Verdict::Drop),
            Some(k) if k == ActionKind::Jump as u8 || k == ActionKind::Goto as u8 => {
                if k == ActionKind::Jump as u8 {
                    if stack.len() >= JUMP_STACK_SIZE {
                        return Evaluation {
                            verdict: Verdict::Drop,
                            counted,
                            jump_overflow: true,
                            effects: Effects::default(),
                        };
                    }
                    stack.push((chain, hit.unwrap_or(end) + 1));
                }
                chain = action.map_or(chain, |a| a.arg as usize);
                pos = program.chains[chain].start as usize;
                None
            }
            // Return, or the end of the chain.
            _ => match stack.pop() {
                Some((c, resume)) => {
                    chain = c;
                    pos = resume;
                    None
                }
                None => {
                    counted.push(program.nrules() + base);
                    Some(
                        if program.chains[base].policy == ActionKind::Accept as u32 {
                            Verdict::Accept
                        } else {
                            Verdict::Drop
                        },
                    )
                }
            },
        };
        match base_verdict {
            None => {}
            Some(Verdict::Drop) => {
                return Evaluation {
                    verdict: Verdict::Drop,
                    counted,
                    jump_overflow: false,
                    effects: Effects::default(),
                }
            }
            Some(Verdict::Accept) => {
                let later = if base + 1 >= 32 {
                    0
                } else {
                    scope & (!0u32 << (base + 1))
                };
                if later == 0 {
                    return Evaluation {
                        verdict: Verdict::Accept,
                        counted,
                        jump_overflow: false,
                        effects: Effects::default(),
                    };
                }
                base = later.trailing_zeros() as usize;
                chain = base;
                pos = program.chains[chain].start as usize;
                stack.clear();
            }
        }
    }
}

fn vector_id(program: &CompiledProgram, dim: Dim, p: &PacketFields) -> u32 {
    let (cfg, live) = (&program.config, &program.live);
    let lpm = |entries: &crate::maps::LpmEntries, src: bool| match p.l3 {
        L3Fields::V4 { saddr, daddr, .. } => {
            let a = if src { saddr } else { daddr };
            entries
                .v4
                .iter()
                .filter(|(n, _)| n.contains(&a))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, id)| *id)
        }
        L3Fields::V6 { saddr, daddr, .. } => {
            let a = if src { saddr } else { daddr };
            entries
                .v6
                .iter()
                .filter(|(n, _)| n.contains(&a))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, id)| *id)
        }
        L3Fields::None => Some(live.absent[dim as usize]),
    };
    let hash = |entries: &[(u32, u32)], key: u32| {
        entries
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(live.miss[dim as usize], |(_, id)| *id)
    };
    let ports = p.transport_ports();
    match dim {
        // The builder puts a /0 in each trie, so IP lookups cannot miss.
        Dim::Saddr => lpm(&program.saddr, true).expect("/0 entry"),
        Dim::Daddr => lpm(&program.daddr, false).expect("/0 entry"),
        Dim::L4Proto => program.l4proto[p.l4proto.map_or(L4PROTO_ABSENT, usize::from)],
        Dim::Sport => program.sport[ports.map_or(PORT_ABSENT, |(s, _)| s as usize)],
        Dim::Dport => program.dport[ports.map_or(PORT_ABSENT, |(_, d)| d as usize)],
        Dim::Icmp => {
            let index = match (p.icmpv4_type(), p.icmpv6_type()) {
                (Some(t), _) => t as usize,
                (_, Some(t)) => ICMP6_BASE + t as usize,
                _ => ICMP_ABSENT,
            };
            program.icmp[index]
        }
        Dim::Iif => hash(&program.iif, p.iif),
        Dim::Oif => hash(&program.oif, p.oif),
        Dim::Mark0 => hash(&program.mark[0], p.mark & cfg.mark_mask[0]),
        Dim::Mark1 => hash(&program.mark[1], p.mark & cfg.mark_mask[1]),
        Dim::CtState => program.ctstate[p.ct.state.trailing_zeros() as usize % CTSTATE_VALUES],
        Dim::CtMark if !p.ct.has_conn() => live.absent[Dim::CtMark as usize],
        Dim::CtMark => hash(&program.ctmark, p.ct.mark & cfg.ctmark_mask),
    }
}
