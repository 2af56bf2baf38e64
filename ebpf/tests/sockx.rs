//! The socket tests of xt_cgroup (`Insn::XtFullSocket`, `Insn::XtCgroupClassid`,
//! bpf/lib/sockx.h): the programs verify at XDP and TC (ingress and egress, the
//! namespace's cookie set), and BPF_PROG_TEST_RUN's packets, which have no socket
//! (skb->sk NULL), never match them, inverted or not, as the reference says. Packets
//! from real sockets: nft-tests/rulesets/iptables-cgroup.ipt and
//! nft-tests/tests/sockx_e2e.rs.

mod common;

use common::frames::{addr, icmp, tcp, udp};
use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{Insn, ResidualProgram};

fn program(test: Insn) -> Program {
    Program::single(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![
            Rule::new(
                vec![Match::is(Test::Residual(ResidualProgram {
                    insns: vec![test],
                }))],
                Action::Drop,
            ),
            Rule::new(vec![], Action::Continue),
        ],
    })
}

#[test]
fn packets_without_a_socket_never_match() {
    // The classid tests also fail inverted: cgroup_mt_v0/v2 first need a full socket.
    for test in [
        Insn::XtFullSocket,
        Insn::XtCgroupClassid {
            classid: 0,
            invert: false,
        },
        Insn::XtCgroupClassid {
            classid: 1,
            invert: true,
        },
    ] {
        without_a_socket(program(test));
    }
}

fn without_a_socket(program: Program) {
    let compiled = compile_program(&program).unwrap();
    let frames = [
        tcp(addr("10.0.0.1"), addr("10.0.0.2"), 1000, 22, 0x02),
        udp(addr("fd00::1"), addr("fd00::2"), 1000, 53),
        icmp(addr("10.0.0.1"), addr("10.0.0.2"), 8, 1),
    ];
    for egress in [false, true] {
        let options = LoadOptions {
            tc_egress: egress,
            netns_cookie: 1,
            ..LoadOptions::default()
        };
        let Some(loaded) = load_or_skip(&compiled, options) else {
            return;
        };
        for frame in &frames {
            let fields = common::frames::fields_of(frame, 0, 0);
            let want = Reference::new(&program).unwrap().evaluate(&fields).unwrap();
            assert_eq!(want.verdict, Verdict::Accept);
            // The second rule and the policy, not the socket rule.
            assert_eq!(want.counted, vec![1, 2]);
            for ingress_ifindex in [0, 1] {
                let meta = SkbMeta {
                    mark: 0,
                    ifindex: 0,
                    ingress_ifindex,
                };
                let before = loaded.counters().unwrap();
                let run = loaded.run_tc(frame, meta, 1).unwrap();
                let after = loaded.counters().unwrap();
                assert_eq!(run.verdict, want.verdict, "TC egress {egress}");
                assert_eq!(after[0].packets, before[0].packets);
                assert_eq!(after[1].packets, before[1].packets + 1);
            }
            if !egress {
                assert_eq!(loaded.run_xdp(frame, 1).unwrap().verdict, want.verdict);
            }
        }
    }
}
