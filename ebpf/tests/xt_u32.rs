//! xt_u32's tests ([`Insn::XtU32`], bpf/lib/xt_u32.h) in the kernel with
//! BPF_PROG_TEST_RUN, at XDP and TC, against the reference (src/residual/u32match.rs,
//! u32_match_it()): random tests of random datagrams, with offsets, masks and `@`
//! jumps that often land inside them and sometimes past their end or overflow `at`.

mod common;

use common::check::LOOPBACK;
use common::frames;
use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{Insn, ResidualProgram, U32Op, U32Test, XtU32};
use proptest::collection::vec;
use proptest::prelude::*;

/// Mostly offsets inside small datagrams, sometimes anywhere.
fn number() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0u32..80, 1 => any::<u32>(), 1 => (u32::MAX - 8)..=u32::MAX]
}

fn step() -> impl Strategy<Value = (U32Op, u32)> {
    prop_oneof![
        3 => prop_oneof![Just(0x3cu32), Just(0xff), Just(0xffff), Just(0), any::<u32>()]
            .prop_map(|m| (U32Op::And, m)),
        2 => (0u32..32).prop_map(|n| (U32Op::RightShift, n)),
        1 => (0u32..32).prop_map(|n| (U32Op::LeftShift, n)),
        3 => number().prop_map(|n| (U32Op::At, n)),
    ]
}

fn range() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        2 => Just((0, u32::MAX)),
        3 => (0u32..300, 0u32..300).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        // min > max: a range nothing is in.
        1 => (1u32..300).prop_map(|a| (a, a - 1)),
    ]
}

fn u32_test() -> impl Strategy<Value = U32Test> {
    (number(), vec(step(), 0..5), vec(range(), 0..4)).prop_map(|(start, steps, ranges)| U32Test {
        start,
        steps,
        ranges,
    })
}

fn u32_match() -> impl Strategy<Value = XtU32> {
    (vec(u32_test(), 0..4), any::<bool>()).prop_map(|(tests, invert)| XtU32 { tests, invert })
}

/// Small bytes, so that `@` jumps read from them stay inside the datagram.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(0u8..24, 0..100),
        1 => vec(any::<u8>(), 0..100),
        1 => vec(0u8..4, 2040..2200),
    ]
}

fn run(program: &Program, frame: &[u8], v6: bool) -> Option<(Verdict, [Verdict; 2])> {
    let loaded = load_or_skip(&compile_program(program).unwrap(), LoadOptions::default())?;
    let want = Reference::new(program)
        .unwrap()
        .evaluate(&frames::fields_with_headers(frame, v6))
        .unwrap()
        .verdict;
    let meta = SkbMeta {
        mark: 0,
        ingress_ifindex: LOOPBACK,
        ifindex: 0,
    };
    let tc = loaded.run_tc(frame, meta, 1).unwrap().verdict;
    let xdp = loaded.run_xdp(frame, 1).unwrap().verdict;
    Some((want, [xdp, tc]))
}

fn program(matches: &[XtU32]) -> Program {
    // One rule per match, dropping and accepting in turn: every packet meets them all
    // until one decides.
    let rules = matches
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let test = Test::Residual(ResidualProgram {
                insns: vec![Insn::XtU32(u.clone())],
            });
            Rule::new(
                vec![Match::is(test)],
                if i % 2 == 0 {
                    Action::Drop
                } else {
                    Action::Accept
                },
            )
        })
        .collect();
    Program::single(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn u32_tests_agree_with_the_reference(
        matches in vec(u32_match(), 1..4),
        packets in vec((payload(), any::<bool>()), 1..6),
    ) {
        let program = program(&matches);
        let Some(loaded) = load_or_skip(&compile_program(&program).unwrap(), LoadOptions::default()) else {
            return Ok(());
        };
        let mut reference = Reference::new(&program).unwrap();
        for (payload, v6) in &packets {
            let frame = frames::udp_carrying(payload, *v6);
            let want = reference.evaluate(&frames::fields_with_headers(&frame, *v6)).unwrap();
            let meta = SkbMeta { mark: 0, ingress_ifindex: LOOPBACK, ifindex: 0 };
            let tc = loaded.run_tc(&frame, meta, 1).unwrap();
            let xdp = loaded.run_xdp(&frame, 1).unwrap();
            prop_assert_eq!(tc.verdict, want.verdict, "TC for {:?} in a {}-byte frame", &matches, frame.len());
            prop_assert_eq!(xdp.verdict, want.verdict, "XDP for {:?} in a {}-byte frame", &matches, frame.len());
        }
    }
}

/// Known answers on one IPv4 UDP datagram (the reference agrees with the kernel's
/// arithmetic by construction; these pin the meaning): the protocol byte, the UDP
/// destination port found through the header length, a word past the end, a read
/// 4 bytes from the end, and the inversion.
#[test]
fn known_answers() {
    let frame = frames::udp_carrying(&[0xab; 32], false);
    let dlen = (frame.len() - 14) as u32; // 60
    let t = |start: u32, steps: &[(U32Op, u32)], ranges: &[(u32, u32)]| U32Test {
        start,
        steps: steps.to_vec(),
        ranges: ranges.to_vec(),
    };
    let dport = [
        (U32Op::RightShift, 22),
        (U32Op::And, 0x3c),
        (U32Op::At, 0),
        (U32Op::And, 0xffff),
    ];
    for (tests, invert, hit) in [
        (vec![t(6, &[(U32Op::And, 0xff)], &[(17, 17)])], false, true),
        (vec![t(6, &[(U32Op::And, 0xff)], &[(6, 6)])], false, false),
        (vec![t(0, &dport, &[(53, 53)])], false, true),
        (vec![t(0, &dport, &[(4000, 4000)])], false, false),
        (vec![t(0, &dport, &[(1, 52), (53, 53)])], true, false),
        (
            vec![t(dlen - 4, &[], &[(0xabab_abab, 0xabab_abab)])],
            false,
            true,
        ),
        (vec![t(dlen - 3, &[], &[(0, u32::MAX)])], false, false),
        (vec![t(dlen - 3, &[], &[(0, u32::MAX)])], true, true),
        (
            vec![
                t(6, &[(U32Op::And, 0xff)], &[(17, 17)]),
                t(0, &[(U32Op::RightShift, 28)], &[(4, 4)]),
            ],
            false,
            true,
        ),
        (vec![], false, true),
        (vec![t(0, &[], &[])], false, false),
    ] {
        let u = XtU32 { tests, invert };
        assert_eq!(u.holds(&frame[14..]), hit, "{u:?}");
        let want = if hit { Verdict::Drop } else { Verdict::Accept };
        let Some((reference, got)) = run(&program(std::slice::from_ref(&u)), &frame, false) else {
            return;
        };
        assert_eq!(reference, want, "{u:?}");
        assert_eq!(got, [want, want], "{u:?}");
    }
}
