//! Several chains per program, in the kernel with BPF_PROG_TEST_RUN: base chains in
//! hook order, jump/goto/return, the jump stack limit, and resuming a scan after a
//! return, each checked against the reference evaluator (verdicts and counters).

mod common;

use std::collections::BTreeMap;

use common::check::Checker;
use common::{load_or_skip, L4Spec, PacketSpec};
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, PortRange, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram};
use nftshim_ebpf::maps::compile_program;

fn chain(scope: L3Scope, policy: Verdict, rules: Vec<Rule>) -> Chain {
    Chain {
        scope,
        policy,
        rules,
    }
}

fn regular(rules: Vec<Rule>) -> Chain {
    chain(L3Scope::Inet, Verdict::Accept, rules)
}

fn dport(port: u16) -> Match {
    Match::is(Test::Dport(vec![PortRange::single(port)]))
}

fn udp(dport: u16) -> PacketSpec {
    PacketSpec::v4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        L4Spec::Udp { sport: 9, dport },
    )
}

fn load(program: &Program) -> Option<LoadedProgram> {
    load_or_skip(
        &compile_program(program).expect("program compiles"),
        LoadOptions::default(),
    )
}

#[test]
fn accept_ends_only_the_current_base_chain() {
    let program = Program {
        base_chains: vec![
            chain(
                L3Scope::Inet,
                Verdict::Accept,
                vec![
                    Rule::new(vec![dport(53)], Action::Accept),
                    Rule::new(vec![dport(80)], Action::Drop),
                ],
            ),
            // IPv4 only: IPv6 packets skip it.
            chain(
                L3Scope::Ipv4,
                Verdict::Drop,
                vec![
                    Rule::new(vec![dport(53)], Action::Continue),
                    Rule::new(vec![dport(22)], Action::Accept),
                ],
            ),
            chain(
                L3Scope::Inet,
                Verdict::Accept,
                vec![Rule::new(vec![dport(22)], Action::Drop)],
            ),
        ],
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut check = Checker::for_program(&loaded, &program);
    // 53: accepted by base 0, counted by base 1, dropped by base 1's policy.
    assert_eq!(check.packet(&udp(53)).unwrap(), Verdict::Drop);
    // 80: base 0 drops; later chains never see it.
    assert_eq!(check.packet(&udp(80)).unwrap(), Verdict::Drop);
    // 22: accepted by base 1, dropped by base 2.
    assert_eq!(check.packet(&udp(22)).unwrap(), Verdict::Drop);
    // IPv6 53: base 0 accepts, base 1 does not see it, base 2's policy accepts.
    let v6 = PacketSpec::v6(
        "::1",
        "::2",
        L4Spec::Udp {
            sport: 9,
            dport: 53,
        },
    );
    assert_eq!(check.packet(&v6).unwrap(), Verdict::Accept);
    // Counter 4 + b is base chain b's policy: base 1 dropped 53 (XDP and TC).
    assert_eq!(check.counters[2].packets, 2, "base 1 counted 53");
    assert_eq!(check.counters[5].packets, 2, "base 1 policy");
    assert_eq!(check.counters[6].packets, 2, "base 2 policy, IPv6");
    check.finish().unwrap();
}

/// Base chain `jump d00`, policy drop; `dI` jumps to `dI+1`; the last accepts.
fn nested_jumps(jumps: usize) -> Program {
    let name = |i: usize| format!("d{i:02}");
    let mut chains = BTreeMap::new();
    for i in 0..jumps {
        let action = if i + 1 < jumps {
            Action::Jump(name(i + 1))
        } else {
            Action::Accept
        };
        chains.insert(name(i), regular(vec![Rule::new(vec![], action)]));
    }
    Program {
        base_chains: vec![chain(
            L3Scope::Inet,
            Verdict::Drop,
            vec![Rule::new(vec![], Action::Jump(name(0)))],
        )],
        chains,
        ..Program::default()
    }
}

#[test]
fn a_jump_past_the_stack_drops_as_nft_do_chain_does() {
    for (jumps, verdict) in [(16, Verdict::Accept), (17, Verdict::Drop)] {
        let program = nested_jumps(jumps);
        let Some(loaded) = load(&program) else {
            return;
        };
        let mut check = Checker::for_program(&loaded, &program);
        assert_eq!(check.packet(&udp(1)).unwrap(), verdict, "{jumps} jumps");
        assert_eq!(check.stats.jump_overflows, 2 * (jumps == 17) as u64);
        check.finish().unwrap();
    }
}

#[test]
fn goto_does_not_come_back_and_return_pops_to_the_last_jump() {
    let program = Program {
        base_chains: vec![chain(
            L3Scope::Inet,
            Verdict::Drop,
            vec![
                Rule::new(vec![dport(1)], Action::Jump("a".into())),
                Rule::new(vec![dport(2)], Action::Goto("b".into())),
                Rule::new(vec![dport(3)], Action::Return),
                Rule::new(vec![], Action::Accept),
            ],
        )],
        chains: BTreeMap::from([
            // a goes to b: b's return comes back to the base chain's rule 1.
            (
                "a".into(),
                regular(vec![Rule::new(vec![], Action::Goto("b".into()))]),
            ),
            (
                "b".into(),
                regular(vec![
                    Rule::new(vec![dport(1)], Action::Return),
                    Rule::new(vec![], Action::Continue),
                ]),
            ),
        ]),
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut check = Checker::for_program(&loaded, &program);
    assert_eq!(
        check.packet(&udp(1)).unwrap(),
        Verdict::Accept,
        "back after the jump"
    );
    assert_eq!(
        check.packet(&udp(2)).unwrap(),
        Verdict::Drop,
        "goto from the base chain: policy"
    );
    assert_eq!(
        check.packet(&udp(3)).unwrap(),
        Verdict::Drop,
        "return in a base chain: policy"
    );
    check.finish().unwrap();
}

#[test]
fn a_return_resumes_the_scan_after_the_jump_across_blocks() {
    // Rule i drops UDP to 10000 + i, except rule 4095 (the last of the first block),
    // which jumps to x for every packet; x accepts 14096 and returns otherwise.
    let rules = (0..5000u16)
        .map(|i| {
            if i == 4095 {
                Rule::new(vec![], Action::Jump("x".into()))
            } else {
                Rule::new(vec![dport(10000 + i)], Action::Drop)
            }
        })
        .collect();
    let program = Program {
        base_chains: vec![chain(L3Scope::Inet, Verdict::Accept, rules)],
        chains: BTreeMap::from([(
            "x".into(),
            regular(vec![Rule::new(vec![dport(14096)], Action::Accept)]),
        )]),
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut check = Checker::for_program(&loaded, &program);
    assert_eq!(check.packet(&udp(14096)).unwrap(), Verdict::Accept);
    assert_eq!(check.packet(&udp(14097)).unwrap(), Verdict::Drop);
    assert_eq!(check.packet(&udp(10005)).unwrap(), Verdict::Drop);
    assert_eq!(check.packet(&udp(16000)).unwrap(), Verdict::Accept);
    assert_eq!(
        check.counters[4097].packets, 2,
        "rule 4097 after the return"
    );
    check.finish().unwrap();
}
