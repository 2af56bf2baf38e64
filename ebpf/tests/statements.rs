//! Statements and stateful matches in the kernel with BPF_PROG_TEST_RUN: limit (packets,
//! bytes, over, refill), quota, meta mark set, ct mark set and restore, log events, and
//! random programs using them against the reference evaluator.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::check::Checker;
use common::frames::{self, addr, ACK, SYN};
use common::{gen, load_or_skip, L4Spec, PacketSpec};
use nftshim_ebpf::ir::{
    ct_state, Action, Chain, L3Scope, Limit, Match, PortRange, Program, Quota, Rule, Statement,
    Test, Verdict,
};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use proptest::prelude::*;

fn base(policy: Verdict, rules: Vec<Rule>) -> Chain {
    Chain {
        scope: L3Scope::Inet,
        policy,
        rules,
    }
}

fn load(program: &Program) -> Option<LoadedProgram> {
    load_or_skip(
        &compile_program(program).expect("program compiles"),
        LoadOptions::default(),
    )
}

fn udp(dport: u16) -> PacketSpec {
    PacketSpec::v4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        L4Spec::Udp { sport: 9, dport },
    )
}

fn limit(rate: u64, unit_secs: u64, burst: u32, bytes: bool) -> Test {
    Test::Limit(Limit {
        rate,
        unit_secs,
        burst,
        bytes,
        state: None,
    })
}

const DAY: u64 = 86400;

/// Accepts at most what the limit allows, drops the rest (policy).
fn limited(test: Match) -> Program {
    Program::single(base(
        Verdict::Drop,
        vec![Rule::new(vec![test], Action::Accept)],
    ))
}

#[test]
fn a_packet_limit_passes_its_burst_then_refills_at_its_rate() {
    // 1/day, burst 3: three packets, then none for a day.
    let program = limited(Match::is(limit(1, DAY, 3, false)));
    let Some(loaded) = load(&program) else {
        return;
    };
    let frame = udp(1).frame();
    let passed: Vec<bool> = (0..6)
        .map(|_| {
            loaded
                .run_tc(&frame, SkbMeta::default(), 1)
                .unwrap()
                .verdict
                == Verdict::Accept
        })
        .collect();
    assert_eq!(passed, [true, true, true, false, false, false]);

    // The default burst is 5.
    let program = limited(Match::is(limit(1, DAY, 0, false)));
    let loaded = load(&program).unwrap();
    let passed = (0..8)
        .filter(|_| loaded.run_xdp(&frame, 1).unwrap().verdict == Verdict::Accept)
        .count();
    assert_eq!(passed, 5);

    // 10/second, burst 1: one now, one more after a tenth of a second.
    let program = limited(Match::is(limit(10, 1, 1, false)));
    let loaded = load(&program).unwrap();
    let run = || {
        loaded
            .run_tc(&frame, SkbMeta::default(), 1)
            .unwrap()
            .verdict
    };
    assert_eq!(run(), Verdict::Accept);
    assert_eq!(run(), Verdict::Drop);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(run(), Verdict::Accept);
    assert_eq!(run(), Verdict::Drop);
}

#[test]
fn limit_over_inverts_and_byte_limits_charge_by_length() {
    let frame = udp(1).frame();
    let len = udp(1).l3_len() as u64;
    // `limit rate over 1/day burst 2`: the first two are within (not matched: policy
    // drops them), the rest are over.
    let program = limited(Match::not(limit(1, DAY, 2, false)));
    let Some(loaded) = load(&program) else {
        return;
    };
    let verdicts: Vec<Verdict> = (0..4)
        .map(|_| {
            loaded
                .run_tc(&frame, SkbMeta::default(), 1)
                .unwrap()
                .verdict
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Drop,
            Verdict::Drop,
            Verdict::Accept,
            Verdict::Accept
        ]
    );

    // `limit rate 10*len bytes/day` with no burst: the bucket holds a day's worth, ten
    // packets of this length.
    let program = limited(Match::is(limit(10 * len, DAY, 0, true)));
    let loaded = load(&program).unwrap();
    let passed = (0..15)
        .filter(|_| {
            loaded
                .run_tc(&frame, SkbMeta::default(), 1)
                .unwrap()
                .verdict
                == Verdict::Accept
        })
        .count();
    assert_eq!(passed, 10);
}

#[test]
fn a_quota_counts_every_packet_and_is_over_past_its_bytes() {
    let spec = udp(1);
    let frame = spec.frame();
    let len = spec.l3_len() as u64;
    // 2.5 packets' worth: two are within; `used` starts it at half a packet.
    let quota = |used| {
        Test::Quota(Quota {
            bytes: 5 * len / 2,
            used,
            state: None,
        })
    };
    let program = limited(Match::is(quota(0)));
    let Some(loaded) = load(&program) else {
        return;
    };
    let verdicts: Vec<Verdict> = (0..4)
        .map(|_| {
            loaded
                .run_tc(&frame, SkbMeta::default(), 1)
                .unwrap()
                .verdict
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Accept,
            Verdict::Accept,
            Verdict::Drop,
            Verdict::Drop
        ]
    );

    let program = limited(Match::not(quota(len / 2)));
    let loaded = load(&program).unwrap();
    let verdicts: Vec<Verdict> = (0..3)
        .map(|_| {
            loaded
                .run_tc(&frame, SkbMeta::default(), 1)
                .unwrap()
                .verdict
        })
        .collect();
    assert_eq!(
        verdicts,
        [Verdict::Drop, Verdict::Drop, Verdict::Accept],
        "quota over"
    );

    // Exactly the quota is not over (kernel 6.18: over when consumed > quota).
    let program = limited(Match::is(Test::Quota(Quota {
        bytes: 2 * len,
        used: 0,
        state: None,
    })));
    let loaded = load(&program).unwrap();
    let verdicts: Vec<Verdict> = (0..3)
        .map(|_| {
            loaded
                .run_tc(&frame, SkbMeta::default(), 1)
                .unwrap()
                .verdict
        })
        .collect();
    assert_eq!(verdicts, [Verdict::Accept, Verdict::Accept, Verdict::Drop]);
}

#[test]
fn meta_mark_set_is_seen_by_later_rules_and_chains_and_written_back() {
    let mark = |v| {
        Match::is(Test::Mark {
            mask: u32::MAX,
            values: vec![v],
        })
    };
    let program = Program {
        base_chains: vec![
            base(
                Verdict::Accept,
                vec![
                    Rule::new(vec![], Action::Continue).with(Statement::set_mark(0x10)),
                    Rule::new(vec![mark(0x10)], Action::Continue).with(Statement::SetMark {
                        and: !0xf0,
                        xor: 0x20,
                    }),
                    Rule::new(vec![mark(0x20)], Action::Accept),
                ],
            ),
            base(
                Verdict::Accept,
                vec![Rule::new(vec![mark(0x20)], Action::Drop)],
            ),
        ],
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut check = Checker::for_program(&loaded, &program);
    assert_eq!(check.packet(&udp(1)).unwrap(), Verdict::Drop);
    check.finish().unwrap();
    let run = loaded
        .run_tc(
            &udp(1).frame(),
            SkbMeta {
                mark: 7,
                ..SkbMeta::default()
            },
            1,
        )
        .unwrap();
    assert_eq!(run.mark, Some(0x20), "written back to the skb");
}

#[test]
fn ct_mark_set_sticks_to_the_connection_and_restores() {
    let ctmark = |v| {
        Match::is(Test::CtMark {
            mask: u32::MAX,
            values: vec![v],
        })
    };
    let program = Program {
        base_chains: vec![base(
            Verdict::Accept,
            vec![
                // New connections to port 80 get ct mark 0x80 (from the meta mark).
                Rule::new(
                    vec![
                        Match::is(Test::CtState(ct_state::NEW)),
                        Match::is(Test::Dport(vec![PortRange::single(80)])),
                    ],
                    Action::Continue,
                )
                .with(Statement::set_mark(0x80))
                .with(Statement::SetCtMarkFromMark {
                    and: u32::MAX,
                    xor: 0,
                }),
                Rule::new(vec![ctmark(0x80)], Action::Continue)
                    .with(Statement::SetMarkFromCtMark { and: 0xf0, xor: 1 }),
                // Without a connection, `meta mark set ct mark` stops the rule.
                Rule::new(
                    vec![Match::is(Test::CtState(ct_state::INVALID))],
                    Action::Drop,
                )
                .with(Statement::SetMarkFromCtMark {
                    and: u32::MAX,
                    xor: 0,
                }),
            ],
        )],
        conntrack: true,
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let (a, b) = (addr("10.0.0.1"), addr("10.0.0.2"));
    let run = |frame: &[u8]| loaded.run_tc(frame, SkbMeta::default(), 1).unwrap();
    let syn = run(&frames::tcp(a, b, 40000, 80, SYN));
    assert_eq!((syn.verdict, syn.mark), (Verdict::Accept, Some(0x81)));
    let reply = run(&frames::tcp(b, a, 80, 40000, SYN | ACK));
    assert_eq!(
        reply.mark,
        Some(0x81),
        "the reply restores the connection's mark"
    );
    // An invalid packet (bad flags): the drop rule breaks at its statement.
    let invalid = run(&frames::tcp(a, b, 40001, 80, 0));
    assert_eq!((invalid.verdict, invalid.mark), (Verdict::Accept, Some(0)));
    let counters = loaded.counters().unwrap();
    assert_eq!(
        counters.iter().map(|c| c.packets).collect::<Vec<_>>(),
        [1, 2, 1, 3]
    );
}

/// `meta mark set` / `ct mark set` from either mark with and/or/xor (what `ct mark set
/// ct mark or 1` and `meta mark set ct mark and 0xff xor 0x1000` compile to), with the
/// connection read from conntrack, against the reference.
#[test]
fn mark_statements_with_and_xor_agree_with_the_reference() {
    let conn = || {
        Match::is(Test::CtState(
            ct_state::NEW | ct_state::ESTABLISHED | ct_state::RELATED,
        ))
    };
    let program = Program {
        base_chains: vec![base(
            Verdict::Drop,
            vec![
                Rule::new(
                    vec![
                        Match::is(Test::CtState(ct_state::NEW)),
                        Match::is(Test::Dport(vec![PortRange::single(80)])),
                    ],
                    Action::Continue,
                )
                .with(Statement::SetMark {
                    and: !0xff,
                    xor: 0x80,
                })
                .with(Statement::SetCtMarkFromMark {
                    and: u32::MAX,
                    xor: 0x0f00,
                }),
                Rule::new(vec![conn()], Action::Continue)
                    .with(Statement::SetCtMark { and: !1, xor: 1 }),
                Rule::new(vec![conn()], Action::Continue).with(Statement::SetMark {
                    and: !0x10,
                    xor: 0x10,
                }),
                Rule::new(vec![conn()], Action::Continue).with(Statement::SetMarkFromCtMark {
                    and: 0xff,
                    xor: 0x1000,
                }),
                // Later rules see the new ct mark.
                Rule::new(
                    vec![Match::is(Test::CtMark {
                        mask: u32::MAX,
                        values: vec![0x0e81],
                    })],
                    Action::Accept,
                ),
            ],
        )],
        conntrack: true,
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut reference = nftshim_ebpf::reference::Reference::new(&program).unwrap();
    let (a, b) = (addr("10.0.0.1"), addr("10.0.0.2"));
    // (frame, meta mark in, conntrack state and ct mark the packet meets, expected
    // verdict and mark out)
    let cases = [
        (
            frames::tcp(a, b, 40000, 80, SYN),
            0x102,
            (ct_state::NEW, 0),
            (Verdict::Accept, 0x1081),
        ),
        (
            frames::tcp(a, b, 40001, 81, SYN),
            0,
            (ct_state::NEW, 0),
            (Verdict::Drop, 0x1001),
        ),
        (
            frames::tcp(b, a, 80, 40000, SYN | ACK),
            0,
            (ct_state::ESTABLISHED, 0x0e81),
            (Verdict::Accept, 0x1081),
        ),
        // Invalid (no flags): no connection, no ct mark; only the policy.
        (
            frames::tcp(a, b, 40002, 80, 0),
            7,
            (ct_state::INVALID, 0),
            (Verdict::Drop, 7),
        ),
    ];
    for (frame, mark, (state, ct_mark), want) in cases {
        let meta = SkbMeta {
            mark,
            ..SkbMeta::default()
        };
        let got = loaded.run_tc(&frame, meta, 1).unwrap();
        let mut fields = frames::fields_of(&frame, meta.ingress_ifindex, mark);
        fields.ct.state = state;
        fields.ct.mark = ct_mark;
        let r = reference.evaluate(&fields).unwrap();
        let by_reference = (r.verdict, r.effects.mark.unwrap_or(mark));
        assert_eq!(by_reference, want, "reference");
        assert_eq!((got.verdict, got.mark.unwrap_or(0)), want, "BPF");
    }
}

#[test]
fn shifted_mark_statements_agree_with_the_reference() {
    use nftshim_ebpf::ir::MarkShift;
    let conn = || {
        Match::is(Test::CtState(
            ct_state::NEW | ct_state::ESTABLISHED | ct_state::RELATED,
        ))
    };
    let shift = |from_ct, to_ct, and, xor, left, by, post| {
        Statement::MarkShift(MarkShift {
            from_ct,
            to_ct,
            and,
            xor,
            left,
            by,
            post,
        })
    };
    let program = Program {
        base_chains: vec![base(
            Verdict::Drop,
            vec![
                // ct mark set (meta mark | 0x10) << 8
                Rule::new(
                    vec![
                        Match::is(Test::CtState(ct_state::NEW)),
                        Match::is(Test::Dport(vec![PortRange::single(80)])),
                    ],
                    Action::Continue,
                )
                .with(shift(false, true, !0x10, 0x10, true, 8, 0)),
                // meta mark set ct mark >> 8
                Rule::new(vec![conn()], Action::Continue).with(shift(
                    true,
                    false,
                    u32::MAX,
                    0,
                    false,
                    8,
                    0,
                )),
                // meta mark set ((meta mark & 0xff) << 4) ^ 0xf0000000
                Rule::new(
                    vec![Match::is(Test::Dport(vec![PortRange::single(81)]))],
                    Action::Continue,
                )
                .with(shift(false, false, 0xff, 0, true, 4, 0xf000_0000)),
                // Later rules see the new ct mark.
                Rule::new(
                    vec![Match::is(Test::CtMark {
                        mask: u32::MAX,
                        values: vec![0x11200],
                    })],
                    Action::Accept,
                ),
            ],
        )],
        conntrack: true,
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut reference = nftshim_ebpf::reference::Reference::new(&program).unwrap();
    let (a, b) = (addr("10.0.0.1"), addr("10.0.0.2"));
    // (frame, meta mark in, conntrack state, expected verdict and mark out)
    let cases = [
        (
            frames::tcp(a, b, 40000, 80, SYN),
            0x102,
            ct_state::NEW,
            (Verdict::Accept, 0x112),
        ),
        (
            frames::tcp(a, b, 40001, 81, SYN),
            0x1234,
            ct_state::NEW,
            (Verdict::Drop, 0xf000_0000),
        ),
        // No connection: the ct mark cannot be read, the rule stops there.
        (
            frames::tcp(a, b, 40002, 81, 0),
            0x1234,
            ct_state::INVALID,
            (Verdict::Drop, 0xf000_0340),
        ),
    ];
    for (frame, mark, state, want) in cases {
        let meta = SkbMeta {
            mark,
            ..SkbMeta::default()
        };
        let got = loaded.run_tc(&frame, meta, 1).unwrap();
        let mut fields = frames::fields_of(&frame, meta.ingress_ifindex, mark);
        fields.ct.state = state;
        let r = reference.evaluate(&fields).unwrap();
        let by_reference = (r.verdict, r.effects.mark.unwrap_or(mark));
        assert_eq!(by_reference, want, "reference");
        assert_eq!((got.verdict, got.mark.unwrap_or(mark)), want, "BPF");
    }
}

#[test]
fn connmark_save_and_restore_merges_agree_with_the_reference() {
    use nftshim_ebpf::ir::MarkMerge;
    let conn = || {
        Match::is(Test::CtState(
            ct_state::NEW | ct_state::ESTABLISHED | ct_state::RELATED,
        ))
    };
    let merge = |to_ct, keep, and, left, by| {
        Statement::MarkMerge(MarkMerge {
            to_ct,
            keep,
            and,
            left,
            by,
        })
    };
    let program = Program {
        base_chains: vec![base(
            Verdict::Drop,
            vec![
                // ct mark set 0xab000000 on new connections.
                Rule::new(
                    vec![Match::is(Test::CtState(ct_state::NEW))],
                    Action::Continue,
                )
                .with(Statement::SetCtMark {
                    and: 0,
                    xor: 0xab00_0000,
                }),
                // CONNMARK --save-mark --ctmask 0xff00 --nfmask 0xff --left-shift-mark 8
                Rule::new(vec![conn()], Action::Continue).with(merge(true, !0xff00, 0xff, true, 8)),
                // CONNMARK --restore-mark --nfmask 0xfffffff (top nibble of the mark kept)
                Rule::new(
                    vec![Match::is(Test::Dport(vec![PortRange::single(80)]))],
                    Action::Continue,
                )
                .with(merge(false, 0xf000_0000, u32::MAX, true, 0)),
                // CONNMARK --restore-mark --ctmask 0xff000000 --nfmask 0xff --right-shift-mark 24
                Rule::new(
                    vec![Match::is(Test::Dport(vec![PortRange::single(81)]))],
                    Action::Continue,
                )
                .with(merge(false, !0xff, 0xff00_0000, false, 24)),
                // Later rules see the merged ct mark.
                Rule::new(
                    vec![Match::is(Test::CtMark {
                        mask: u32::MAX,
                        values: vec![0xab00_3400],
                    })],
                    Action::Accept,
                ),
            ],
        )],
        conntrack: true,
        ..Program::default()
    };
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut reference = nftshim_ebpf::reference::Reference::new(&program).unwrap();
    let (a, b) = (addr("10.0.0.1"), addr("10.0.0.2"));
    // (frame, meta mark in, conntrack state, expected verdict and mark out)
    let cases = [
        // ct = 0xab000000, save: 0xab003400; restore keeps 0x5 of the mark's top nibble:
        // 0x5... ^ 0xab003400.
        (
            frames::tcp(a, b, 40000, 80, SYN),
            0x5000_1234,
            ct_state::NEW,
            (Verdict::Accept, 0x5000_0000 ^ 0xab00_3400),
        ),
        // ct 0xab000000 ^ (0x12 << 8); restore 0xab >> 24 into the low byte.
        (
            frames::tcp(a, b, 40001, 81, SYN),
            0x7777_7712,
            ct_state::NEW,
            (Verdict::Drop, 0x7777_77ab),
        ),
        // No connection: neither merge does anything, and the rule goes on.
        (
            frames::tcp(a, b, 40002, 81, 0),
            0x1234,
            ct_state::INVALID,
            (Verdict::Drop, 0x1234),
        ),
    ];
    for (frame, mark, state, want) in cases {
        let meta = SkbMeta {
            mark,
            ..SkbMeta::default()
        };
        let got = loaded.run_tc(&frame, meta, 1).unwrap();
        let mut fields = frames::fields_of(&frame, meta.ingress_ifindex, mark);
        fields.ct.state = state;
        let r = reference.evaluate(&fields).unwrap();
        let by_reference = (r.verdict, r.effects.mark.unwrap_or(mark));
        assert_eq!(by_reference, want, "reference");
        assert_eq!((got.verdict, got.mark.unwrap_or(mark)), want, "BPF");
    }
}

#[test]
fn classify_priority_agrees_with_the_reference() {
    let program = Program::single(base(
        Verdict::Accept,
        vec![
            Rule::new(
                vec![Match::is(Test::Dport(vec![PortRange::single(80)]))],
                Action::Continue,
            )
            .with(Statement::SetPriority(0x0001_000a)),
            // A later CLASSIFY wins.
            Rule::new(
                vec![Match::is(Test::Dport(vec![PortRange::new(80, 81)]))],
                Action::Continue,
            )
            .with(Statement::SetPriority(0x0002_0003)),
            Rule::new(
                vec![Match::is(Test::Dport(vec![PortRange::single(82)]))],
                Action::Continue,
            )
            .with(Statement::SetPriority(5)),
            // Dropped after it: the priority does not matter, but is still the value set.
            Rule::new(
                vec![Match::is(Test::Dport(vec![PortRange::single(82)]))],
                Action::Drop,
            ),
        ],
    ));
    let Some(loaded) = load(&program) else {
        return;
    };
    let mut reference = nftshim_ebpf::reference::Reference::new(&program).unwrap();
    let (a, b) = (addr("10.0.0.1"), addr("10.0.0.2"));
    // (destination port, expected verdict and priority out; 0 when untouched)
    let cases = [
        (80, (Verdict::Accept, 0x0002_0003)),
        (81, (Verdict::Accept, 0x0002_0003)),
        (82, (Verdict::Drop, 5)),
        (83, (Verdict::Accept, 0)),
    ];
    for (dport, want) in cases {
        let frame = frames::tcp(a, b, 40000, dport, SYN);
        let meta = SkbMeta::default();
        let got = loaded.run_tc(&frame, meta, 1).unwrap();
        let fields = frames::fields_of(&frame, meta.ingress_ifindex, 0);
        let r = reference.evaluate(&fields).unwrap();
        assert_eq!(
            (r.verdict, r.effects.priority.unwrap_or(0)),
            want,
            "reference, port {dport}"
        );
        assert_eq!(
            (got.verdict, got.priority.unwrap_or(0)),
            want,
            "BPF, port {dport}"
        );
    }
}

#[test]
fn log_events_carry_the_rule_prefix_mark_and_headers() {
    let program = Program::single(base(
        Verdict::Accept,
        vec![
            Rule::new(vec![], Action::Continue)
                .with(Statement::Log {
                    prefix: "first: ".into(),
                })
                .with(Statement::set_mark(3))
                .with(Statement::Log {
                    prefix: "second: ".into(),
                }),
            Rule::new(
                vec![Match::is(Test::Dport(vec![PortRange::single(53)]))],
                Action::Drop,
            )
            .with(Statement::Log {
                prefix: "first: ".into(),
            }),
        ],
    ));
    let Some(loaded) = load(&program) else {
        return;
    };
    let spec = udp(53);
    let frame = spec.frame();
    loaded
        .run_tc(
            &frame,
            SkbMeta {
                mark: 1,
                ingress_ifindex: 4,
                ifindex: 0,
            },
            1,
        )
        .unwrap();
    let events = loaded.read_logs().unwrap();
    let summary: Vec<(u32, &str, u32)> = events
        .iter()
        .map(|e| (e.rule, loaded.log_prefix(e.prefix).unwrap(), e.mark))
        .collect();
    assert_eq!(
        summary,
        [(0, "first: ", 1), (0, "second: ", 3), (1, "first: ", 3)]
    );
    for e in &events {
        assert_eq!(e.iif, 4);
        assert_eq!(e.len as usize, spec.l3_len());
        assert_eq!(e.l3_off, 14);
        assert_eq!(e.ct_state, ct_state::INVALID);
        assert_eq!(e.headers, frame[..frame.len().min(128)]);
    }
    assert!(
        loaded.read_logs().unwrap().is_empty(),
        "events are taken once"
    );
}

/// xt_NFLOG / `log group`: one perf event per statement that ran, with the mark at
/// the time, skb->protocol and the frame up to the network header plus the
/// statement's snap length (or the whole packet).
#[test]
fn nflog_events_carry_the_frame_up_to_the_snap_length() {
    let program = Program::single(base(
        Verdict::Accept,
        vec![Rule::new(vec![], Action::Continue)
            .with(Statement::Nflog {
                spec: "short".into(),
                snap: 20,
            })
            .with(Statement::set_mark(3))
            .with(Statement::Nflog {
                spec: "all".into(),
                snap: 0xfffb,
            })],
    ));
    let Some(mut loaded) = load(&program) else {
        return;
    };
    assert!(loaded.has_nflog());
    let spec = udp(53);
    let frame = spec.frame();
    loaded
        .run_tc(
            &frame,
            SkbMeta {
                mark: 1,
                ingress_ifindex: 4,
                ifindex: 0,
            },
            1,
        )
        .unwrap();
    let (events, lost) = loaded.read_nflog();
    assert_eq!(lost, 0);
    let summary: Vec<(&str, u32, usize)> = events
        .iter()
        .map(|e| (loaded.log_prefix(e.spec).unwrap(), e.mark, e.frame.len()))
        .collect();
    assert_eq!(
        summary,
        [("short", 1, 14 + 20), ("all", 3, 14 + spec.l3_len())]
    );
    for e in &events {
        assert_eq!((e.iif, e.l3_off, e.protocol), (4, 14, 0x0800));
        assert_eq!(e.len as usize, spec.l3_len());
        assert_eq!(e.uid_gid, None, "no socket at ingress");
        assert_eq!(e.frame[..], frame[..e.frame.len()]);
    }
    assert!(loaded.read_nflog().0.is_empty(), "events are taken once");
}

/// NFLOG at input (a dataplane spec key of hook 1: FEATURE_NFLOG_INPUT): the event
/// carries the ids of the socket early demux would attach, here a UDP socket of this
/// process's namespace connected to the datagram's source (the test run's device is
/// its loopback, the lookup's namespace), and none for a datagram from another port
/// (the socket is not connected to it) or at prerouting's ingress without the feature.
#[test]
fn nflog_input_events_carry_the_connected_sockets_ids() {
    let nflog = |hook: u8| {
        Program::single(base(
            Verdict::Accept,
            vec![Rule::new(vec![], Action::Continue).with(Statement::Nflog {
                spec: format!("nflog/{hook}/7/-/0/"),
                snap: 0xfffb,
            })],
        ))
    };
    let compiled = compile_program(&nflog(1)).expect("program compiles");
    assert_ne!(
        compiled.config.features & nftshim_ebpf::maps::FEATURE_NFLOG_INPUT,
        0
    );
    let pre = compile_program(&nflog(0)).expect("program compiles");
    assert_eq!(
        pre.config.features & nftshim_ebpf::maps::FEATURE_NFLOG_INPUT,
        0
    );
    let Some(mut input) = load(&nflog(1)) else {
        return;
    };
    let Some(mut prerouting) = load(&nflog(0)) else {
        return;
    };
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    // To the loopback device's address (zero): PACKET_HOST.
    let frame = |sport: u16| {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0; 6])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .udp(sport, pa)
            .write(&mut f, b"data")
            .unwrap();
        f
    };
    let meta = SkbMeta {
        mark: 0,
        ingress_ifindex: 1,
        ifindex: 0,
    };
    let ids = |loaded: &mut LoadedProgram, sport: u16| {
        loaded.run_tc(&frame(sport), meta, 1).unwrap();
        let (events, lost) = loaded.read_nflog();
        assert_eq!((events.len(), lost), (1, 0));
        events[0].uid_gid
    };
    // SAFETY: getuid/getgid cannot fail.
    let me = unsafe { (libc_ids::getuid(), libc_ids::getgid()) };
    assert_eq!(ids(&mut input, pb), Some(me), "connected to the source");
    let other = if pb == 65535 { pb - 1 } else { pb + 1 };
    assert_eq!(ids(&mut input, other), None, "connected elsewhere");
    assert_eq!(ids(&mut prerouting, pb), None, "no lookup for prerouting");
}

/// The process's ids (its sockets' files carry them as fsuid/fsgid).
mod libc_ids {
    extern "C" {
        pub fn getuid() -> u32;
        pub fn getgid() -> u32;
    }
}

/// Sets for the random programs: one per key type the generated packets exercise.
fn program_sets() -> BTreeMap<String, nftshim_ebpf::ir::Set> {
    use nftshim_ebpf::ir::{Set, SetElement, SetKey};
    BTreeMap::from([
        (
            "nets".to_string(),
            Set {
                key: SetKey::Ipv4,
                elements: vec![
                    SetElement::Ipv4("10.0.0.0/24".parse().unwrap()),
                    SetElement::Ipv4("192.168.1.200/32".parse().unwrap()),
                ],
            },
        ),
        (
            "ports".to_string(),
            Set {
                key: SetKey::Port,
                elements: vec![
                    SetElement::Port(PortRange::new(20, 60)),
                    SetElement::Port(PortRange::single(8080)),
                ],
            },
        ),
        (
            "ifs".to_string(),
            Set {
                key: SetKey::U32,
                elements: vec![SetElement::U32(2), SetElement::U32(7)],
            },
        ),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn bpf_agrees_with_the_reference_on_programs_with_statements(
        mut program in gen::program_with_extras(8),
        packets in prop::collection::vec(gen::packet(), 16),
    ) {
        program.sets = program_sets();
        let Some(loaded) = load(&program) else { return Ok(()) };
        let mut check = Checker::for_program(&loaded, &program);
        for spec in &packets {
            check.packet(spec)?;
        }
        check.finish()?;
    }
}

/// The verifier's hardest case: every feature on (conntrack, jumps, residual checks,
/// statements, reject) with every LBVS dimension, at several chain sizes.
#[test]
fn everything_at_once_verifies_at_every_chain_size() {
    use nftshim_ebpf::ir::{IcmpxCode, Reject, Set, SetElement, SetField, SetKey};
    for n in [1usize, 5000, 20_000] {
        let mut rules: Vec<Rule> = (0..n)
            .map(|i| {
                Rule::new(
                    vec![
                        Match::is(Test::IpSaddr(vec![format!(
                            "10.{}.{}.0/24",
                            i >> 8 & 255,
                            i & 255
                        )
                        .parse()
                        .unwrap()])),
                        Match::is(Test::Ip6Daddr(vec!["2001:db8::/32".parse().unwrap()])),
                        Match::is(Test::L4Proto(vec![6])),
                        Match::is(Test::Sport(vec![PortRange::new(1024, 65535)])),
                        Match::is(Test::Dport(vec![PortRange::single((i % 60000) as u16)])),
                        Match::not(Test::IcmpType(vec![8])),
                        Match::not(Test::Iif(vec![9])),
                        Match::is(Test::Oif(vec![0])),
                        Match::is(Test::Mark {
                            mask: 0xff,
                            values: vec![0],
                        }),
                        Match::not(Test::Mark {
                            mask: u32::MAX,
                            values: vec![7],
                        }),
                        Match::not(Test::CtState(ct_state::INVALID)),
                        Match::not(Test::CtMark {
                            mask: u32::MAX,
                            values: vec![1],
                        }),
                    ],
                    Action::Accept,
                )
            })
            .collect();
        rules.push(
            Rule::new(
                vec![
                    Match::is(Test::InSet {
                        field: SetField::Dport,
                        set: "ports".into(),
                    }),
                    Match::is(Test::CtStatus(1)),
                    Match::is(limit(1, DAY, 1, false)),
                    Match::not(Test::Quota(Quota {
                        bytes: 1,
                        used: 0,
                        state: None,
                    })),
                ],
                Action::Jump("sub".into()),
            )
            .with(Statement::set_mark(1))
            .with(Statement::SetCtMark { and: 0, xor: 2 })
            .with(Statement::Log { prefix: "x".into() })
            .with(Statement::SetMarkFromCtMark { and: 1, xor: 0 }),
        );
        rules.push(Rule::new(
            vec![
                Match::not(Test::CtLabel { bit: 3, set: false }),
                Match::is(Test::CtLabel { bit: 99, set: true }),
            ],
            Action::Continue,
        ));
        rules.push(Rule::new(
            vec![],
            Action::Reject(Reject::Icmpx(IcmpxCode::AdminProhibited)),
        ));
        let program = Program {
            base_chains: vec![base(Verdict::Drop, rules)],
            chains: BTreeMap::from([
                (
                    "sub".to_string(),
                    Chain {
                        scope: L3Scope::Inet,
                        policy: Verdict::Accept,
                        rules: vec![Rule::new(vec![], Action::Goto("sub2".into()))],
                    },
                ),
                (
                    "sub2".to_string(),
                    Chain {
                        scope: L3Scope::Inet,
                        policy: Verdict::Accept,
                        rules: vec![Rule::new(vec![], Action::Return)],
                    },
                ),
            ]),
            sets: BTreeMap::from([(
                "ports".to_string(),
                Set {
                    key: SetKey::Port,
                    elements: vec![SetElement::Port(PortRange::new(1, 100))],
                },
            )]),
            conntrack: true,
            route_answers: false,
            mark_answers: false,
            forward_answers: false,
            bridge_frames: false,
            bridge_tx_mark: false,
            bridge_clear_mark: false,
            ct_labels: true,
        };
        let compiled = compile_program(&program).unwrap();
        assert_eq!(compiled.config.dims, (1 << 12) - 1, "all dimensions in use");
        assert_eq!(
            compiled.config.features,
            0b11111 | nftshim_ebpf::maps::FEATURE_CT_LABELS,
            "all features in use"
        );
        let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
            return;
        };
        // A TCP SYN from no rule's prefix: new, the full scan, then rejected.
        let frame = frames::tcp(addr("172.16.0.1"), addr("10.0.0.2"), 4000, 80, SYN);
        let run = loaded.run_tc(&frame, SkbMeta::default(), 1).unwrap();
        assert_eq!(run.verdict, Verdict::Drop);
        assert!(run.reply.is_some(), "{n} rules: answered");
    }
}
