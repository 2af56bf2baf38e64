//! Runs a [`CompiledChain`] on [`PacketFields`] the way `ns_classify` in
//! bpf/lib/classify.h runs the maps: look up one vector id per used dimension, AND the
//! vectors, take set bits in order, count continue rules, stop at a verdict. It lets the
//! map builder be tested against the reference evaluator without a kernel.

use crate::fields::{L3Fields, PacketFields};
use crate::ir::Verdict;
use crate::maps::{
    ActionKind, CompiledChain, Dim, ICMP6_BASE, ICMP_ABSENT, L4PROTO_ABSENT, PORT_ABSENT,
    SCOPE_IPV4, SCOPE_IPV6, SCOPE_OTHER,
};
use crate::reference::Evaluation;

pub fn classify(chain: &CompiledChain, p: &PacketFields) -> Evaluation {
    let cfg = &chain.config;
    let scope = match p.l3 {
        L3Fields::V4 { .. } => SCOPE_IPV4,
        L3Fields::V6 { .. } => SCOPE_IPV6,
        L3Fields::None => SCOPE_OTHER,
    };
    if cfg.l3_scope & scope == 0 {
        return Evaluation {
            verdict: Verdict::Accept,
            counted: Vec::new(),
        };
    }
    let ids: Vec<u32> = Dim::ALL
        .iter()
        .filter(|d| chain.uses(**d))
        .map(|d| vector_id(chain, *d, p))
        .collect();
    let mut counted = Vec::new();
    for rule in 0..chain.nrules() {
        let all = ids
            .iter()
            .all(|&id| chain.vector(id)[rule / 64] & (1 << (rule % 64)) != 0);
        if !all {
            continue;
        }
        counted.push(rule);
        match chain.actions[rule] {
            a if a == ActionKind::Accept as u32 => {
                return Evaluation {
                    verdict: Verdict::Accept,
                    counted,
                }
            }
            a if a == ActionKind::Drop as u32 => {
                return Evaluation {
                    verdict: Verdict::Drop,
                    counted,
                }
            }
            _ => {}
        }
    }
    counted.push(chain.nrules());
    let verdict = if cfg.policy == ActionKind::Accept as u32 {
        Verdict::Accept
    } else {
        Verdict::Drop
    };
    Evaluation { verdict, counted }
}

fn vector_id(chain: &CompiledChain, dim: Dim, p: &PacketFields) -> u32 {
    let cfg = &chain.config;
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
        L3Fields::None => Some(cfg.absent[dim as usize]),
    };
    let hash = |entries: &[(u32, u32)], key: u32| {
        entries
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(cfg.miss[dim as usize], |(_, id)| *id)
    };
    let ports = p.transport_ports();
    match dim {
        // The builder puts a /0 in each trie, so IP lookups cannot miss.
        Dim::Saddr => lpm(&chain.saddr, true).expect("/0 entry"),
        Dim::Daddr => lpm(&chain.daddr, false).expect("/0 entry"),
        Dim::L4Proto => chain.l4proto[p.l4proto.map_or(L4PROTO_ABSENT, usize::from)],
        Dim::Sport => chain.sport[ports.map_or(PORT_ABSENT, |(s, _)| s as usize)],
        Dim::Dport => chain.dport[ports.map_or(PORT_ABSENT, |(_, d)| d as usize)],
        Dim::Icmp => {
            let index = match (p.icmpv4_type(), p.icmpv6_type()) {
                (Some(t), _) => t as usize,
                (_, Some(t)) => ICMP6_BASE + t as usize,
                _ => ICMP_ABSENT,
            };
            chain.icmp[index]
        }
        Dim::Iif => hash(&chain.iif, p.iif),
        Dim::Oif => hash(&chain.oif, p.oif),
        Dim::Mark0 => hash(&chain.mark[0], p.mark & cfg.mark_mask[0]),
        Dim::Mark1 => hash(&chain.mark[1], p.mark & cfg.mark_mask[1]),
    }
}
