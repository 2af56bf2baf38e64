//! xt_rateest's comparison in the kernel with BPF_PROG_TEST_RUN: the BPF program reads
//! the estimators' rates from `rateest_rates` (as the runtime's estimator timer leaves
//! them) and decides as xt_rateest_mt() does, for every flag and mode combination the
//! kernel's checkentry takes, constants around the rates, and estimators without an
//! entry (a new estimator, which reads 0); the reference agrees on every one.

mod common;

use common::frames::{self, addr};
use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::rateest::{
    Sample, MATCH_ABS, MATCH_BPS, MATCH_DELTA, MATCH_INVERT, MATCH_PPS, MATCH_REL,
};
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{Headers, Insn, ResidualProgram};

const SCRATCH: u8 = 48;

fn name(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..s.len()].copy_from_slice(s.as_bytes());
    n
}

/// One rule: `-m rateest ... -j DROP`, policy accept.
fn program(flags: u16, mode: u16, consts: [u32; 4]) -> Program {
    let data = consts.iter().flat_map(|c| c.to_ne_bytes()).collect();
    let residual = ResidualProgram {
        insns: vec![
            Insn::Immediate {
                dreg: SCRATCH,
                data,
            },
            Insn::XtRateest {
                sreg: SCRATCH,
                name1: name("RE1"),
                name2: name("RE2"),
                flags,
                mode,
            },
        ],
    };
    Program::single(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![Rule::new(
            vec![Match::is(Test::Residual(residual))],
            Action::Drop,
        )],
    })
}

#[test]
fn rateest_comparisons_agree_with_the_reference() {
    let frame = frames::udp(addr("10.0.0.1"), addr("10.0.0.2"), 9, 53);
    let mut fields = frames::fields_of(&frame, 0, 0);
    let network = frame[14..].to_vec();
    let headers = Headers {
        transport: Some(((network[0] & 0xf) as usize) * 4),
        network,
        protocol: 0x0800,
        ..Default::default()
    };
    // Rates of RE1 and RE2 (None: no entry in the map).
    let rates: [(Option<Sample>, Option<Sample>); 5] = [
        (None, None),
        (
            Some(Sample { bps: 0, pps: 0 }),
            Some(Sample { bps: 0, pps: 0 }),
        ),
        (Some(Sample { bps: 100, pps: 5 }), None),
        (
            Some(Sample { bps: 100, pps: 5 }),
            Some(Sample { bps: 99, pps: 6 }),
        ),
        (
            Some(Sample {
                bps: 1 << 33,
                pps: 7,
            }),
            Some(Sample { bps: 100, pps: 5 }),
        ),
    ];
    let consts: [[u32; 4]; 4] = [
        [0, 0, 0, 0],
        [100, 5, 100, 5],
        [101, 4, 99, 6],
        [u32::MAX, 9, 1, u32::MAX],
    ];
    let kinds = [
        MATCH_ABS,
        MATCH_REL,
        MATCH_ABS | MATCH_DELTA,
        MATCH_REL | MATCH_DELTA,
    ];
    // One load (the verifier takes seconds); each case rewrites its maps.
    let Some(mut loaded) = load_or_skip(
        &compile_program(&program(MATCH_ABS | MATCH_BPS, 1, [0; 4])).expect("program compiles"),
        LoadOptions::default(),
    ) else {
        return;
    };
    let (mut drops, mut total) = (0, 0);
    for kind in kinds {
        for rate in [MATCH_BPS, MATCH_PPS, MATCH_BPS | MATCH_PPS] {
            for invert in [0, MATCH_INVERT] {
                for mode in 1..=3u16 {
                    for c in consts {
                        let flags = kind | rate | invert;
                        let p = program(flags, mode, c);
                        loaded
                            .patch(
                                &compile_program(&p).expect("program compiles"),
                                LoadOptions::default(),
                            )
                            .expect("same constants");
                        for (r1, r2) in rates {
                            let mut h = headers.clone();
                            let mut map: aya::maps::HashMap<_, [u8; 16], [u64; 2]> =
                                aya::maps::HashMap::try_from(
                                    loaded.ebpf_mut().map_mut("rateest_rates").unwrap(),
                                )
                                .unwrap();
                            for (n, r) in [("RE1", r1), ("RE2", r2)] {
                                match r {
                                    Some(s) => {
                                        map.insert(name(n), [s.bps, s.pps], 0).unwrap();
                                        h.rateest.push((name(n), s));
                                    }
                                    None => {
                                        let _ = map.remove(&name(n));
                                    }
                                }
                            }
                            fields.headers = Some(h);
                            let eval = Reference::new(&p).unwrap().evaluate(&fields).unwrap();
                            let run = loaded.run_tc(&frame, SkbMeta::default(), 1).unwrap();
                            assert_eq!(
                                run.verdict, eval.verdict,
                                "flags {flags:#x} mode {mode} consts {c:?} rates {r1:?} {r2:?}"
                            );
                            drops += (run.verdict == Verdict::Drop) as u32;
                            total += 1;
                        }
                    }
                }
            }
        }
    }
    // Both outcomes were exercised.
    assert!(
        drops > total / 10 && drops < total * 9 / 10,
        "{drops} of {total}"
    );
}
