//! ipt_ECN's TCP operations ([`Statement::EcnTcp`], bpf/lib/xt_ecn.h) in the kernel
//! with BPF_PROG_TEST_RUN: the frame the program lets through is the reference's
//! (src/rewrite.rs `ecn_tcp`) byte for byte, over arbitrary flags, checksums and
//! operations; ECE and CWR are what the target sets, the other bits and bytes stay, and
//! the TCP checksum verifies whenever it did before; later fragments get their payload
//! rewritten as set_ect_tcp() does; cut-short headers are dropped; later rules see the
//! new flags; UDP is left alone.

mod common;

use common::frames;
use common::load_or_skip;
use nftshim_ebpf::fields::PacketFields;
use nftshim_ebpf::ir::{
    Action, Chain, EcnTcp, L3Scope, Match, Program, Rule, Statement, Test, Verdict,
};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{CmpOp, Headers, Insn, PayloadBase, ResidualProgram};
use nftshim_ebpf::rewrite::sum16;
use proptest::prelude::*;

/// `-j ECN ...` (the target reads the protocol itself), then `rest`, policy accept.
fn program(e: EcnTcp, rest: Vec<Rule>) -> Program {
    let mut rules = vec![Rule::new(vec![], Action::Continue).with(Statement::EcnTcp(e))];
    rules.extend(rest);
    Program::single(Chain {
        scope: L3Scope::Ipv4,
        policy: Verdict::Accept,
        rules,
    })
}

fn load(program: &Program) -> Option<LoadedProgram> {
    load_or_skip(
        &compile_program(program).expect("program compiles"),
        LoadOptions::default(),
    )
}

/// An Ethernet frame with an IPv4 header (protocol `proto`, fragment field `frag`) and
/// `l4` after it; when `l4` is a whole TCP header its checksum is made right.
fn frame(proto: u8, frag: u16, mut l4: Vec<u8>) -> Vec<u8> {
    let (src, dst) = ([10u8, 0, 0, 1], [10u8, 0, 0, 2]);
    if proto == 6 && frag == 0 && l4.len() >= 20 {
        l4[16..18].fill(0);
        let mut pseudo = [src, dst].concat();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&l4);
        let c = !sum16(&pseudo);
        l4[16..18].copy_from_slice(&c.to_be_bytes());
    }
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + l4.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34]);
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = !sum16(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// A TCP header with these flags (and 4 payload bytes).
fn tcp(flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 24];
    t[0..2].copy_from_slice(&1234u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t[14..16].copy_from_slice(&64000u16.to_be_bytes());
    t[20..24].copy_from_slice(b"ecn!");
    t
}

fn fields(f: &[u8]) -> PacketFields {
    let mut p = frames::fields_of(f, 0, 0);
    p.headers = Some(Headers {
        network: f[14..].to_vec(),
        transport: (!p.later_fragment && f.len() >= 14 + 20 + 8).then_some(20),
        protocol: 0x0800,
        ..Default::default()
    });
    p
}

/// The BPF program and the reference on `f`: same verdict, same frame out.
fn run(loaded: &LoadedProgram, program: &Program, f: &[u8]) -> (Verdict, Vec<u8>) {
    let run = loaded.run_tc(f, SkbMeta::default(), 1).unwrap();
    let eval = Reference::new(program)
        .unwrap()
        .evaluate(&fields(f))
        .unwrap();
    assert_eq!(run.verdict, eval.verdict, "verdict");
    if run.verdict == Verdict::Accept {
        let expected = match eval.effects.network {
            Some(net) => [&f[..14], &net[..]].concat(),
            None => f.to_vec(),
        };
        assert_eq!(run.packet, expected, "the frame let through");
    }
    (run.verdict, run.packet)
}

fn tcp_checksum_verifies(f: &[u8]) -> bool {
    let net = &f[14..];
    let mut all = net[12..20].to_vec();
    all.extend_from_slice(&[0, 6]);
    all.extend_from_slice(&((net.len() - 20) as u16).to_be_bytes());
    all.extend_from_slice(&net[20..]);
    sum16(&all) == 0xffff
}

/// The flags byte set_ect_tcp() leaves.
fn want_flags(e: EcnTcp, old: u8) -> u8 {
    let mut v = old;
    if let Some(b) = e.ece {
        v = if b { v | 0x40 } else { v & !0x40 };
    }
    if let Some(b) = e.cwr {
        v = if b { v | 0x80 } else { v & !0x80 };
    }
    v
}

fn ops() -> impl Strategy<Value = EcnTcp> {
    (
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_filter("one operation at least", |(a, b)| {
            a.is_some() || b.is_some()
        })
        .prop_map(|(ece, cwr)| EcnTcp { ece, cwr })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn bpf_sets_the_bits_as_the_kernel_does(
        e in ops(),
        flags in any::<u8>(),
        csum_ffff in any::<bool>(),
    ) {
        let mut f = frame(6, 0, tcp(flags));
        if csum_ffff {
            // 0xffff for its equal 0 (or the other way round): still verifies.
            let c = u16::from_be_bytes([f[50], f[51]]);
            if c == 0 || c == 0xffff {
                f[50..52].copy_from_slice(&(!c).to_be_bytes());
            }
        }
        let p = program(e, vec![]);
        let Some(loaded) = load(&p) else { return Ok(()) };
        let (verdict, out) = run(&loaded, &p, &f);
        prop_assert_eq!(verdict, Verdict::Accept);
        prop_assert_eq!(out[47], want_flags(e, flags));
        // Only the flags and (when they changed) the checksum differ.
        for (k, (a, b)) in f.iter().zip(&out).enumerate() {
            if k != 47 && k != 50 && k != 51 {
                prop_assert_eq!(a, b, "byte {}", k);
            }
        }
        if out[47] == flags {
            prop_assert_eq!(&out, &f);
        }
        prop_assert!(tcp_checksum_verifies(&out));
    }
}

#[test]
fn remove_clears_both_bits_and_later_rules_see_it() {
    let e = EcnTcp {
        ece: Some(false),
        cwr: Some(false),
    };
    // A later rule drops packets whose TCP flags byte still has CWR or ECE.
    let flags = Match::is(Test::Residual(ResidualProgram {
        insns: vec![
            Insn::Payload {
                base: PayloadBase::Transport,
                offset: 13,
                len: 1,
                dreg: 0,
            },
            Insn::Bitwise {
                sreg: 0,
                dreg: 0,
                len: 1,
                mask: vec![0xc0],
                xor: vec![0],
            },
            Insn::Cmp {
                sreg: 0,
                op: CmpOp::Neq,
                data: vec![0],
            },
        ],
    }));
    let p = program(e, vec![Rule::new(vec![flags.clone()], Action::Drop)]);
    let Some(loaded) = load(&p) else { return };
    let f = frame(6, 0, tcp(0xc2));
    let (verdict, out) = run(&loaded, &p, &f);
    assert_eq!(verdict, Verdict::Accept);
    assert_eq!(out[47], 0x02);
    assert!(tcp_checksum_verifies(&out));
    // Setting CWR instead: the later rule drops.
    let p = program(
        EcnTcp {
            ece: None,
            cwr: Some(true),
        },
        vec![Rule::new(vec![flags], Action::Drop)],
    );
    let Some(loaded) = load(&p) else { return };
    assert_eq!(run(&loaded, &p, &frame(6, 0, tcp(0x02))).0, Verdict::Drop);
}

#[test]
fn fragments_short_headers_and_udp() {
    let e = EcnTcp {
        ece: Some(true),
        cwr: None,
    };
    let p = program(e, vec![]);
    let Some(loaded) = load(&p) else { return };
    // A later fragment (offset 8 bytes) of 24 payload bytes: its byte 13 and 16-17
    // change as if they were a TCP header.
    let mut payload = vec![0u8; 24];
    payload[16..18].copy_from_slice(&[0x12, 0x34]);
    let f = frame(6, 1, payload);
    let (verdict, out) = run(&loaded, &p, &f);
    assert_eq!(verdict, Verdict::Accept);
    assert_eq!(out[47], 0x40);
    assert_ne!(&out[50..52], &f[50..52]);
    // A later fragment of 16 bytes, and a TCP header cut at 16: dropped.
    let run_tc = |f: &[u8]| loaded.run_tc(f, SkbMeta::default(), 1).unwrap().verdict;
    assert_eq!(run_tc(&frame(6, 1, vec![0; 16])), Verdict::Drop);
    assert_eq!(
        run_tc(&frame(6, 0, tcp(0x02)[..16].to_vec())),
        Verdict::Drop
    );
    // UDP: untouched, even with 20 bytes whose byte 13 would change.
    let f = frame(17, 0, vec![0; 24]);
    let (verdict, out) = run(&loaded, &p, &f);
    assert_eq!((verdict, out), (Verdict::Accept, f));
}

/// xt_u32 after the target reads the flags as rewritten (from the header copy, not
/// the skb, which gets the write after the chains).
#[test]
fn u32_sees_the_new_flags() {
    use nftshim_ebpf::residual::{U32Op, U32Test, XtU32};
    // "0>>22&0x3C@12>>16&0xC0=0x80": CWR alone.
    let cwr_only = Match::is(Test::Residual(ResidualProgram {
        insns: vec![Insn::XtU32(XtU32 {
            tests: vec![U32Test {
                start: 0,
                steps: vec![
                    (U32Op::RightShift, 22),
                    (U32Op::And, 0x3c),
                    (U32Op::At, 12),
                    (U32Op::RightShift, 16),
                    (U32Op::And, 0xc0),
                ],
                ranges: vec![(0x80, 0x80)],
            }],
            invert: false,
        })],
    }));
    for (e, verdict) in [
        (
            EcnTcp {
                ece: Some(false),
                cwr: Some(true),
            },
            Verdict::Drop,
        ),
        (
            EcnTcp {
                ece: None,
                cwr: Some(false),
            },
            Verdict::Accept,
        ),
    ] {
        let p = program(e, vec![Rule::new(vec![cwr_only.clone()], Action::Drop)]);
        let Some(loaded) = load(&p) else { return };
        assert_eq!(
            run(&loaded, &p, &frame(6, 0, tcp(0x42))).0,
            verdict,
            "{e:?}"
        );
    }
}
