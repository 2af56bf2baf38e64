//! xt_string's `--algo kmp` search ([`Insn::XtString`], bpf/lib/xt_string.h) in the
//! kernel with BPF_PROG_TEST_RUN, at XDP and TC, against the reference
//! (src/residual/string.rs): random patterns and payloads over a small alphabet (so
//! that occurrences are frequent), windows that cut them, `--icase` with the Latin-1
//! letters the kernel's toupper() maps, and payloads past the 2048-byte header copy.

mod common;

use common::check::LOOPBACK;
use common::frames;
use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{kernel_toupper, Insn, ResidualProgram, XtString};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Letters with and without case, and bytes toupper() leaves alone.
const ALPHABET: [u8; 7] = [b'a', b'A', 0xff, 0xdf, 0xbf, 0xf7, 0xd7];

fn search() -> impl Strategy<Value = (XtString, Vec<u8>, bool)> {
    (
        vec(select(&ALPHABET[..]), 1..6),
        vec(select(&ALPHABET[..]), 0..3000),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u16..3200,
        prop_oneof![1 => Just(None), 3 => (0u16..3200).prop_map(Some)],
        any::<prop::sample::Index>(),
    )
        .prop_map(|(pattern, mut payload, icase, invert, v6, a, b, at)| {
            // Often an occurrence at a random place.
            if payload.len() > pattern.len() {
                let i = at.index(payload.len() - pattern.len());
                payload[i..i + pattern.len()].copy_from_slice(&pattern);
            }
            let (from, to) = match b {
                None => (a.min(100), 65535),
                Some(b) => (a.min(b), a.max(b)),
            };
            let pattern = if icase {
                pattern.iter().map(|&c| kernel_toupper(c)).collect()
            } else {
                pattern
            };
            let s = XtString {
                from,
                to,
                pattern,
                icase,
                invert,
            };
            (s, payload, v6)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn kmp_searches_agree_with_the_reference(
        searches in vec(search(), 1..4),
    ) {
        // One rule per search, dropping and accepting in turn: every packet meets them all.
        let rules = searches
            .iter()
            .enumerate()
            .map(|(i, (s, _, _))| {
                let test = Test::Residual(ResidualProgram { insns: vec![Insn::XtString(s.clone())] });
                Rule::new(vec![Match::is(test)], if i % 2 == 0 { Action::Drop } else { Action::Accept })
            })
            .collect();
        let program = Program::single(Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules,
        });
        let compiled = compile_program(&program).unwrap();
        let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
            return Ok(());
        };
        let mut reference = Reference::new(&program).unwrap();
        for (s, payload, v6) in &searches {
            let frame = frames::udp_carrying(payload, *v6);
            let want = reference.evaluate(&frames::fields_with_headers(&frame, *v6)).unwrap();
            for hook in ["XDP", "TC"] {
                let got = if hook == "XDP" {
                    loaded.run_xdp(&frame, 1).unwrap()
                } else {
                    let meta = SkbMeta { mark: 0, ingress_ifindex: LOOPBACK, ifindex: 0 };
                    loaded.run_tc(&frame, meta, 1).unwrap()
                };
                prop_assert_eq!(
                    got.verdict, want.verdict,
                    "{} for {:?} in a {}-byte frame", hook, s, frame.len()
                );
            }
        }
    }
}

#[test]
fn a_match_past_the_header_copy_and_one_ending_at_to() {
    let mut payload = vec![b'.'; 2900];
    payload[2500..2504].copy_from_slice(b"test");
    let frame = frames::udp_carrying(&payload, false);
    // The payload starts at offset 28 of the datagram.
    let at = 28 + 2500;
    for (from, to, found) in [
        (0, 65535, true),
        (at as u16, at as u16 + 4, true),
        (at as u16, at as u16 + 3, false),
        (at as u16 + 1, 65535, false),
    ] {
        let s = XtString {
            from,
            to,
            pattern: b"test".to_vec(),
            icase: false,
            invert: false,
        };
        let test = Test::Residual(ResidualProgram {
            insns: vec![Insn::XtString(s)],
        });
        let program = Program::single(Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: vec![Rule::new(vec![Match::is(test)], Action::Drop)],
        });
        let Some(loaded) =
            load_or_skip(&compile_program(&program).unwrap(), LoadOptions::default())
        else {
            return;
        };
        let want = if found {
            Verdict::Drop
        } else {
            Verdict::Accept
        };
        assert_eq!(
            Reference::new(&program)
                .unwrap()
                .evaluate(&frames::fields_with_headers(&frame, false))
                .unwrap()
                .verdict,
            want
        );
        let meta = SkbMeta {
            mark: 0,
            ingress_ifindex: LOOPBACK,
            ifindex: 0,
        };
        assert_eq!(loaded.run_tc(&frame, meta, 1).unwrap().verdict, want);
        assert_eq!(loaded.run_xdp(&frame, 1).unwrap().verdict, want);
    }
}
