//! xt_owner (`Insn::XtOwner`) and `meta skuid/skgid` (`Insn::SockUgid`) in the programs
//! built with them (feature NS_F_SOCKCRED, bpf/lib/xt_owner.h and sockcred.h): they
//! load (the CO-RE relocations of the credential reads against the running kernel's
//! BTF, the verifier) at TC egress, and on BPF_PROG_TEST_RUN's packets, which have no
//! socket, they take owner_mt()'s "no socket" branch, `(match ^ invert) == 0`, as the
//! reference does, and skuid breaks. Real sockets of other users: nft-tests
//! tests/owner_e2e.rs.

mod common;

use common::frames::{addr, udp};
use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::{compile_program, FEATURE_SOCKCRED};
use nftshim_ebpf::residual::{CmpOp, Headers, Insn, MetaValues, ResidualProgram};

const UID: u8 = 1;
const GID: u8 = 2;
const SOCKET: u8 = 4;
const SUPPL: u8 = 8;

fn owner(match_flags: u8, invert: u8) -> Insn {
    Insn::XtOwner {
        uid_min: 0,
        uid_max: 4_294_967_294,
        gid_min: 0,
        gid_max: 4_294_967_294,
        match_flags,
        invert,
    }
}

#[test]
fn without_a_socket_owner_holds_when_match_equals_invert() {
    let cases: Vec<(Vec<Insn>, bool)> = vec![
        (vec![owner(SOCKET, 0)], false),
        (vec![owner(SOCKET, SOCKET)], true),
        (vec![owner(UID, 0)], false),
        (vec![owner(UID, UID)], true),
        (vec![owner(UID | GID, UID)], false),
        (vec![owner(UID | GID, UID | GID)], true),
        (vec![owner(GID | SUPPL, GID)], false),
        (
            vec![
                Insn::SockUgid {
                    gid: false,
                    dreg: 0,
                },
                Insn::Cmp {
                    sreg: 0,
                    op: CmpOp::Neq,
                    data: 12345u32.to_ne_bytes().to_vec(),
                },
            ],
            false,
        ),
    ];
    let rules = cases
        .iter()
        .map(|(insns, _)| {
            Rule::new(
                vec![Match::is(Test::Residual(ResidualProgram {
                    insns: insns.clone(),
                }))],
                Action::Continue,
            )
        })
        .collect();
    let program = Program::single(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules,
    });
    let compiled = compile_program(&program).unwrap();
    assert_ne!(compiled.config.features & FEATURE_SOCKCRED, 0);
    let options = LoadOptions {
        tc_egress: true,
        ..LoadOptions::default()
    };
    let Some(loaded) = load_or_skip(&compiled, options) else {
        return;
    };
    let frame = udp(addr("10.0.0.1"), addr("10.0.0.2"), 4000, 53);
    let before = loaded.counters().unwrap();
    let meta = SkbMeta {
        mark: 0,
        ifindex: 1,
        ingress_ifindex: 0,
    };
    loaded.run_tc(&frame, meta, 1).unwrap();
    let after = loaded.counters().unwrap();
    for (i, (insns, want)) in cases.iter().enumerate() {
        let got = after[i].packets > before[i].packets;
        assert_eq!(got, *want, "case {i}: {insns:?}");
        let reference = ResidualProgram {
            insns: insns.clone(),
        }
        .holds(&Headers::default(), &MetaValues::default());
        assert_eq!(reference, *want, "reference, case {i}: {insns:?}");
    }
}
