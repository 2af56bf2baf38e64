//! The compiler on rulesets written by the real `nft` (see tests/fixtures/capture.sh):
//! decompiled predicates, refusals, and the per-interface plans evaluated with the
//! eBPF crate's reference evaluator.

use std::net::{Ipv4Addr, Ipv6Addr};

use nftshim_dataplane::compile::{
    decompile, instantiate, Direction, Facts, Family, Hook, IfNamePattern, Program, SymMatch,
    SymRule,
};
use nftshim_ebpf::fields::{L3Fields, PacketFields};
use nftshim_ebpf::ir::{ct_state, Action, Match, PortRange, Statement, Test, Verdict};
use nftshim_ebpf::reference::{Evaluation, Reference, Unsupported};
use nftshim_ebpf::residual::{CmpOp, Insn, PayloadBase, ResidualProgram};
use nftshim_ebpf::{Ipv4Net, Ipv6Net};
use nftshim_engine::Netns;

/// The eBPF crate's reference evaluator on a planned program.
fn evaluate(
    p: &nftshim_ebpf::ir::Program,
    packet: &PacketFields,
) -> Result<Evaluation, Unsupported> {
    Reference::new(p)?.evaluate(packet)
}

fn fixture(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/{name}.state.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn netns(state: serde_json::Value) -> Netns {
    Netns::from_persisted(state).expect("engine state")
}

fn program(name: &str) -> Program {
    let ns = netns(fixture(name));
    decompile(&ns.view()).unwrap_or_else(|e| panic!("{name}: refused: {e}"))
}

fn ir(test: Test) -> SymMatch {
    SymMatch::Ir(Match::is(test))
}
fn not(test: Test) -> SymMatch {
    SymMatch::Ir(Match::not(test))
}
fn v4() -> SymMatch {
    ir(Test::IpSaddr(vec![Ipv4Net::default()]))
}
fn v6() -> SymMatch {
    ir(Test::Ip6Saddr(vec![Ipv6Net::default()]))
}
fn net4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}
/// Prefixes covering [lo, hi], computed independently of the crate (bit by bit).
fn range4(lo: [u8; 4], hi: [u8; 4]) -> Vec<Ipv4Net> {
    let (mut cur, hi) = (u32::from_be_bytes(lo) as u64, u32::from_be_bytes(hi) as u64);
    let mut out = Vec::new();
    while cur <= hi {
        let mut plen = 32;
        while plen > 0 {
            let size = 1u64 << (33 - plen);
            if cur % size != 0 || cur + size - 1 > hi {
                break;
            }
            plen -= 1;
        }
        out.push(Ipv4Net::new(Ipv4Addr::from(cur as u32), plen).unwrap());
        cur += 1u64 << (32 - plen);
    }
    out
}

fn ports(r: &[(u16, u16)]) -> Vec<PortRange> {
    r.iter().map(|&(a, b)| PortRange::new(a, b)).collect()
}

#[test]
fn every_predicate_form_decompiles() {
    let p = program("basic");
    assert_eq!(p.chains.len(), 1);
    let c = &p.chains[0];
    assert_eq!(
        (c.family, c.hook, c.policy),
        (Family::Inet, Hook::Input, Verdict::Drop)
    );
    let rules: Vec<(Vec<SymMatch>, Action)> = c
        .rules
        .iter()
        .map(|r| (r.matches.clone(), r.action.clone()))
        .collect();
    let expected = vec![
        (vec![ir(Test::Iif(vec![1]))], Action::Accept),
        (vec![ir(Test::L4Proto(vec![1]))], Action::Accept),
        (
            vec![
                v4(),
                ir(Test::IpSaddr(vec![net4("10.0.0.0/8")])),
                ir(Test::L4Proto(vec![6])),
                ir(Test::Dport(ports(&[(22, 22), (80, 90)]))),
            ],
            Action::Accept,
        ),
        (
            vec![
                v6(),
                ir(Test::Ip6Daddr(vec!["fe80::/64".parse().unwrap()])),
                ir(Test::L4Proto(vec![17])),
                not(Test::Sport(ports(&[(53, 53)]))),
            ],
            Action::Drop,
        ),
        (
            vec![
                ir(Test::L4Proto(vec![6])),
                not(Test::Dport(ports(&[(8000, 8100)]))),
            ],
            Action::Continue,
        ),
        (
            vec![ir(Test::Mark {
                mask: 0xff,
                values: vec![2],
            })],
            Action::Drop,
        ),
        (
            vec![SymMatch::IfName {
                output: false,
                patterns: vec![IfNamePattern {
                    bytes: b"veth".to_vec(),
                }],
                negated: false,
            }],
            Action::Drop,
        ),
        (
            vec![
                v6(),
                ir(Test::L4Proto(vec![58])),
                ir(Test::Icmpv6Type(vec![128])),
            ],
            Action::Accept,
        ),
        (
            vec![
                v4(),
                ir(Test::IpSaddr(vec![net4("1.2.3.4/32"), net4("5.6.7.0/24")])),
            ],
            Action::Drop,
        ),
        (
            vec![
                v4(),
                ir(Test::L4Proto(vec![17])),
                ir(Test::Dport(ports(&[(53, 53)]))),
            ],
            Action::Accept,
        ),
        (
            vec![v4(), ir(Test::IpDaddr(vec![net4("192.168.0.0/23")]))],
            Action::Drop,
        ),
        // nft writes an address range as `cmp gte` and `cmp lte`: two predicates.
        (
            vec![
                v4(),
                ir(Test::IpDaddr(range4([192, 168, 2, 1], [255; 4]))),
                ir(Test::IpDaddr(range4([0; 4], [192, 168, 2, 6]))),
            ],
            Action::Drop,
        ),
        (
            vec![
                ir(Test::L4Proto(vec![6])),
                ir(Test::Sport(ports(&[(0, 1023)]))),
            ],
            Action::Drop,
        ),
    ];
    assert_eq!(rules.len(), expected.len(), "{rules:#?}");
    for (i, (got, want)) in rules.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "rule {}", i + 1);
    }
}

#[test]
fn log_and_reject_at_input_are_enforced() {
    use nftshim_ebpf::ir::{IcmpxCode, Reject};
    let state = fixture("refused");
    let program = decompile(&only_chain(&state, "c_log").view()).unwrap();
    let rule = &program.chains[0].rules[0];
    // Level warning (4), no flags, prefix "x": the worker's LogSpec key.
    assert_eq!(
        rule.statements,
        vec![Statement::Log {
            prefix: "4/0/x".into()
        }]
    );
    assert_eq!(rule.action, Action::Accept);
    let program = decompile(&only_chain(&state, "c_reject").view()).unwrap();
    // Plain `reject` in an inet table: icmpx port-unreachable.
    assert_eq!(
        program.chains[0].rules[0].action,
        Action::Reject(Reject::Icmpx(IcmpxCode::PortUnreachable))
    );
}

/// The ruleset with only table `table`'s chain `keep` among its base chains.
fn only_chain(state: &serde_json::Value, keep: &str) -> Netns {
    let mut s = state.clone();
    for t in s["ruleset"]["tables"].as_array_mut().unwrap() {
        t["chains"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["name"] == keep || c["base"].is_null());
    }
    netns(s)
}

#[test]
fn unsupported_constructs_are_refused_with_a_reason() {
    let state = fixture("refused");
    let cases = [
        ("c_oif_in_input", "no output device"),
        ("c_nat", "type nat"),
    ];
    for (chain, why) in cases {
        let ns = only_chain(&state, chain);
        let err = decompile(&ns.view()).expect_err(chain);
        assert_eq!(err.errno, libc::EOPNOTSUPP, "{chain}");
        assert!(err.reason.contains(why), "{chain}: {}", err.reason);
        assert!(
            err.reason.contains(chain),
            "{chain}: reason names the chain: {}",
            err.reason
        );
    }
    // With none of them, the table is fine.
    let ns = only_chain(&state, "none of them");
    assert!(decompile(&ns.view()).unwrap().is_empty());
}

/// The residual program of the one rule of base chain `chain` of the fixture.
fn residual_of(state: &serde_json::Value, chain: &str) -> Vec<Insn> {
    let p = decompile(&only_chain(state, chain).view()).expect(chain);
    let programs: Vec<&ResidualProgram> = p.chains[0].rules[0]
        .matches
        .iter()
        .filter_map(|m| match m {
            SymMatch::Ir(Match {
                test: Test::Residual(program),
                negated: false,
            }) => Some(program),
            _ => None,
        })
        .collect();
    assert_eq!(programs.len(), 1, "{chain}: {:?}", p.chains[0].rules[0]);
    programs[0].insns.clone()
}

#[test]
fn header_fields_lbvs_does_not_index_become_residual_programs() {
    let state = fixture("refused");
    // ip ttl 1 (under the inet table's ipv4 dependency, which LBVS takes).
    assert_eq!(
        residual_of(&state, "c_ttl"),
        [
            Insn::Payload {
                base: PayloadBase::Network,
                offset: 8,
                len: 1,
                dreg: 0
            },
            Insn::Cmp {
                sreg: 0,
                op: CmpOp::Eq,
                data: vec![1]
            },
        ]
    );
    // th dport 22: the kernel reads the bytes of any transport header.
    assert_eq!(
        residual_of(&state, "c_th"),
        [
            Insn::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: 0
            },
            Insn::Cmp {
                sreg: 0,
                op: CmpOp::Eq,
                data: vec![0, 22]
            },
        ]
    );
}

#[test]
fn sctp_chunk_matches_become_chunk_walks() {
    let state = fixture("sctp");
    let chunk = |kind, offset, len, present| Insn::SctpChunk {
        kind,
        offset,
        len,
        dreg: 0,
        present,
    };
    let cmp = |data: &[u8]| Insn::Cmp {
        sreg: 0,
        op: CmpOp::Eq,
        data: data.to_vec(),
    };
    // `exists` and `missing`: the present flag, then 1 or 0.
    assert_eq!(
        residual_of(&state, "c_exists"),
        [chunk(0, 0, 1, true), cmp(&[1])]
    );
    assert_eq!(
        residual_of(&state, "c_missing"),
        [chunk(1, 0, 1, true), cmp(&[0])]
    );
    // A field: its bytes in the INIT chunk (after type, flags, length, tag, a_rwnd and
    // the outbound streams).
    assert_eq!(
        residual_of(&state, "c_field"),
        [chunk(1, 14, 2, false), cmp(&[0, 1])]
    );
    // In a set: the flags byte, looked up.
    let set = residual_of(&state, "c_set");
    assert_eq!(set[0], chunk(0, 1, 1, false));
    assert!(
        matches!(
            &set[1..],
            [Insn::Lookup {
                sreg: 0,
                len: 1,
                negated: false,
                ..
            }]
        ),
        "{set:?}"
    );
    // In netdev chains: in the netdev view.
    assert_eq!(
        residual_of(&state, "c_netdev"),
        [Insn::NetdevView, chunk(3, 0, 1, true), cmp(&[1])]
    );
}

#[test]
fn ct_state_forms_decompile_to_the_states_they_hold_for() {
    use ct_state::*;
    let p = program("ct");
    let c = &p.chains[0];
    let got: Vec<(Vec<SymMatch>, Action)> = c
        .rules
        .iter()
        .map(|r| (r.matches.clone(), r.action.clone()))
        .collect();
    let ct = |bits| ir(Test::CtState(bits));
    let expected = vec![
        // ct state established,related accept
        (vec![ct(ESTABLISHED | RELATED)], Action::Accept),
        // ct state invalid drop
        (vec![ct(INVALID)], Action::Drop),
        // ct state new tcp dport 22 accept
        (
            vec![
                ct(NEW),
                ir(Test::L4Proto(vec![6])),
                ir(Test::Dport(ports(&[(22, 22)]))),
            ],
            Action::Accept,
        ),
        // ct state != established counter
        (
            vec![ct(INVALID | RELATED | NEW | UNTRACKED)],
            Action::Continue,
        ),
        // ct state untracked accept
        (vec![ct(UNTRACKED)], Action::Accept),
        // ct state { new, untracked } counter
        (vec![ct(NEW | UNTRACKED)], Action::Continue),
        // ct state == established accept
        (vec![ct(ESTABLISHED)], Action::Accept),
        // ct state != { invalid, new } counter
        (
            vec![ct(ESTABLISHED | RELATED | UNTRACKED)],
            Action::Continue,
        ),
    ];
    assert_eq!(got, expected);
}

#[test]
fn a_ruleset_with_ct_tracks_on_every_interface_and_direction() {
    // nf_conntrack sees every packet of the namespace once a ct expression exists: every
    // link and direction gets a program that tracks into the shared table, the ones no
    // chain applies to included (an empty accepting chain).
    let p = program("ct");
    let plan = instantiate(&p, &facts()).unwrap();
    let keys: Vec<(u32, Direction)> = plan.chains.keys().copied().collect();
    assert_eq!(
        keys,
        [
            (1, Direction::Ingress),
            (1, Direction::Egress),
            (7, Direction::Ingress),
            (7, Direction::Egress)
        ]
    );
    assert!(plan.chains.values().all(|c| c.conntrack));
    let egress = &plan.chains[&(7, Direction::Egress)];
    assert!(egress.base_chains.iter().all(|c| c.rules.is_empty()));
    // Without ct, only the input chain's direction has programs, and they do not track.
    let plan = instantiate(&program("basic"), &facts()).unwrap();
    assert!(plan.chains.values().all(|c| !c.conntrack));
}

#[test]
fn ct_before_connection_tracking_is_refused() {
    // A prerouting or output chain at priority -200 or before runs ahead of
    // nf_conntrack: its packets have no connection yet.
    for (hook, priority, refused) in [
        (Hook::Prerouting, -300, true),
        (Hook::Output, -200, true),
        (Hook::Output, -199, false),
        (Hook::Input, -300, false),
    ] {
        let mut p = program("ct");
        p.chains[0].hook = hook;
        p.chains[0].priority = priority;
        let got = instantiate(&p, &facts());
        assert_eq!(got.is_err(), refused, "{hook:?} {priority}: {got:?}");
    }
}

#[test]
fn a_limit_keeps_its_rules_identity() {
    let ns = only_chain(&fixture("refused"), "c_limit");
    let p = decompile(&ns.view()).unwrap();
    let rule = &p.chains[0].rules[0];
    let [SymMatch::Ir(Match {
        test: Test::Limit(limit),
        negated: false,
    })] = rule.matches.as_slice()
    else {
        panic!("{:?}", rule.matches)
    };
    let state = limit.state.expect("a shared bucket");
    assert_eq!((state.rule, state.expr), (rule.handle, 0));
    assert_eq!((limit.rate, limit.unit_secs, limit.burst), (1, 1, 5));
}

fn facts() -> Facts {
    Facts {
        links: [(1, "lo".to_string()), (7, "veth0".to_string())].into(),
        local_v4: vec![net4("127.0.0.0/8"), net4("10.1.0.1/32")],
        local_v6: vec!["::1/128".parse().unwrap()],
        ..Facts::default()
    }
}

fn tcp4(saddr: [u8; 4], daddr: [u8; 4], dport: u16, iif: u32) -> PacketFields {
    PacketFields {
        l3: L3Fields::V4 {
            saddr: Ipv4Addr::from(saddr),
            daddr: Ipv4Addr::from(daddr),
        },
        l4proto: Some(6),
        ports: Some((40000, dport)),
        icmp_type: None,
        iif,
        oif: 0,
        mark: 0,
        ..PacketFields::default()
    }
}

/// Interfaces whose attach points see the same chains share one planned program (a
/// large ruleset is flattened once); one with a chain of its own gets its own.
#[test]
fn interfaces_with_the_same_chains_share_their_program() {
    let p = program("hooks");
    let mut f = facts();
    f.links.insert(8, "veth1".to_string());
    let plan = instantiate(&p, &f).unwrap();
    let at = |i, d| plan.chains[&(i, d)].clone();
    for d in [Direction::Ingress, Direction::Egress] {
        assert!(std::sync::Arc::ptr_eq(&at(7, d), &at(8, d)));
        assert!(std::sync::Arc::ptr_eq(
            &plan.counters[&(7, d)],
            &plan.counters[&(8, d)]
        ));
    }
    // lo's ingress also runs the netdev chain bound to it.
    assert!(!std::sync::Arc::ptr_eq(
        &at(1, Direction::Ingress),
        &at(7, Direction::Ingress)
    ));
    assert_ne!(at(1, Direction::Ingress), at(7, Direction::Ingress));
    // Sharing changes nothing: each is what planning that interface alone gives.
    let mut alone = facts();
    alone.links.remove(&7);
    alone.links.insert(8, "veth1".to_string());
    let single = instantiate(&p, &alone).unwrap();
    assert_eq!(
        single.chains[&(8, Direction::Ingress)],
        at(8, Direction::Ingress)
    );
}

#[test]
fn hooks_flatten_into_guarded_chains() {
    let p = program("hooks");
    let plan = instantiate(&p, &facts()).unwrap();
    let ingress = &plan.chains[&(7, Direction::Ingress)];
    let lo_ingress = &plan.chains[&(1, Direction::Ingress)];
    let egress = &plan.chains[&(7, Direction::Egress)];
    let eval = |c, pkt: &PacketFields| evaluate(c, pkt).unwrap().verdict;
    // prerouting drops 203.0.113.0/24 whatever the destination.
    assert_eq!(
        eval(ingress, &tcp4([203, 0, 113, 9], [10, 9, 9, 9], 22, 7)),
        Verdict::Drop
    );
    // input (policy drop, ssh accepted) sees local destinations only.
    assert_eq!(
        eval(ingress, &tcp4([192, 0, 2, 1], [10, 1, 0, 1], 22, 7)),
        Verdict::Accept
    );
    assert_eq!(
        eval(ingress, &tcp4([192, 0, 2, 1], [10, 1, 0, 1], 23, 7)),
        Verdict::Drop
    );
    assert_eq!(
        eval(ingress, &tcp4([192, 0, 2, 1], [10, 9, 9, 9], 23, 7)),
        Verdict::Accept
    );
    // ip6 input drops echo requests; IPv6 others pass.
    let echo6 = PacketFields {
        l3: L3Fields::V6 {
            saddr: Ipv6Addr::LOCALHOST,
            daddr: Ipv6Addr::LOCALHOST,
        },
        l4proto: Some(58),
        ports: None,
        icmp_type: Some(128),
        iif: 1,
        oif: 0,
        mark: 0,
        ..PacketFields::default()
    };
    assert_eq!(eval(lo_ingress, &echo6), Verdict::Drop);
    assert_eq!(
        eval(
            ingress,
            &PacketFields {
                icmp_type: Some(129),
                ..echo6.clone()
            }
        ),
        Verdict::Accept
    );
    // netdev ingress on lo only: marked frames dropped there, not on veth0.
    let marked = PacketFields {
        mark: 3,
        ..tcp4([192, 0, 2, 1], [10, 9, 9, 9], 80, 1)
    };
    assert_eq!(eval(lo_ingress, &marked), Verdict::Drop);
    assert_eq!(
        eval(
            ingress,
            &PacketFields {
                iif: 7,
                ..marked.clone()
            }
        ),
        Verdict::Accept
    );
    // forward (egress, came in on a device) drops what leaves through lo; output counts.
    let fwd = PacketFields {
        oif: 7,
        ..tcp4([192, 0, 2, 1], [10, 9, 9, 9], 80, 3)
    };
    assert_eq!(eval(egress, &fwd), Verdict::Accept);
    let lo_egress = &plan.chains[&(1, Direction::Egress)];
    assert_eq!(
        eval(
            lo_egress,
            &PacketFields {
                oif: 1,
                ..fwd.clone()
            }
        ),
        Verdict::Drop
    );
    let local = PacketFields {
        oif: 1,
        iif: 0,
        ..fwd.clone()
    };
    assert_eq!(eval(lo_egress, &local), Verdict::Accept);
}

#[test]
fn interface_names_resolve_against_current_links() {
    let p = program("basic");
    let mut f = facts();
    let chain = |f: &Facts| instantiate(&p, f).unwrap().chains[&(7, Direction::Ingress)].clone();
    // UDP to port 53 from 192.0.2.1 meets `iifname "veth*" drop` (rule 7) before
    // `meta nfproto ipv4 udp dport 53 accept` (rule 10).
    let dns = PacketFields {
        l4proto: Some(17),
        ports: Some((5000, 53)),
        ..tcp4([192, 0, 2, 1], [10, 1, 0, 1], 53, 7)
    };
    assert_eq!(evaluate(&chain(&f), &dns).unwrap().verdict, Verdict::Drop);
    // Renamed: no longer matched, rule 10 accepts.
    f.links.insert(7, "eth0".into());
    assert_eq!(evaluate(&chain(&f), &dns).unwrap().verdict, Verdict::Accept);
    // Renamed back into the pattern: dropped again.
    f.links.insert(7, "veth9".into());
    assert_eq!(evaluate(&chain(&f), &dns).unwrap().verdict, Verdict::Drop);
}

#[test]
fn chains_an_accept_would_skip_are_refused() {
    let state = fixture("conflict");
    let keep = |names: &[&str]| {
        let mut s = state.clone();
        for t in s["ruleset"]["tables"].as_array_mut().unwrap() {
            t["chains"]
                .as_array_mut()
                .unwrap()
                .retain(|c| names.iter().any(|n| c["name"] == *n));
        }
        netns(s)
    };
    // a (accepts) then b: an accept in a must not skip b.
    let err = decompile(&keep(&["a", "b"]).view()).unwrap_err();
    assert!(
        err.reason.contains("accepts packets that"),
        "{}",
        err.reason
    );
    // b and c: same priority, drop-only: order cannot matter, composed.
    let p = decompile(&keep(&["b", "c"]).view()).unwrap();
    let plan = instantiate(&p, &facts()).unwrap();
    let c = &plan.chains[&(7, Direction::Ingress)];
    let from = |s| tcp4(s, [10, 1, 0, 1], 80, 7);
    assert_eq!(
        evaluate(c, &from([192, 0, 2, 1])).unwrap().verdict,
        Verdict::Drop
    );
    assert_eq!(
        evaluate(c, &from([192, 0, 2, 2])).unwrap().verdict,
        Verdict::Drop
    );
    assert_eq!(
        evaluate(c, &from([192, 0, 2, 3])).unwrap().verdict,
        Verdict::Accept
    );
    // a alone is fine.
    assert!(decompile(&keep(&["a"]).view()).is_ok());
}

#[test]
fn jump_goto_and_return_run_regular_chains() {
    let p = program("jumps");
    let keys: Vec<&str> = p.regular.keys().map(String::as_str).collect();
    assert_eq!(keys, ["inet t blocked", "inet t ssh", "inet t web"]);
    let input = &p.chains[0];
    let actions: Vec<Action> = input.rules.iter().map(|r| r.action.clone()).collect();
    assert_eq!(
        actions,
        [
            Action::Jump("inet t blocked".into()),
            Action::Jump("inet t web".into()),
            Action::Accept
        ]
    );
    let web: Vec<Action> = p.regular["inet t web"]
        .rules
        .iter()
        .map(|r| r.action.clone())
        .collect();
    assert_eq!(web, [Action::Goto("inet t ssh".into()), Action::Drop]);
    assert_eq!(p.regular["inet t ssh"].rules[1].action, Action::Return);

    let plan = instantiate(&p, &facts()).unwrap();
    let prog = &plan.chains[&(7, Direction::Ingress)];
    let verdict = |saddr, dport| {
        evaluate(prog, &tcp4(saddr, [10, 1, 0, 1], dport, 7))
            .unwrap()
            .verdict
    };
    // blocked drops before anything else.
    assert_eq!(verdict([192, 0, 2, 1], 22), Verdict::Drop);
    // web goes to ssh, which accepts.
    assert_eq!(verdict([10, 2, 3, 4], 22), Verdict::Accept);
    // ssh returns past web (a goto does not come back there): input accepts port 80.
    assert_eq!(verdict([10, 2, 3, 4], 80), Verdict::Accept);
    // Without the goto, web drops port 80.
    assert_eq!(verdict([172, 16, 0, 1], 80), Verdict::Drop);
    // Nothing decides: back in input, whose policy drops.
    assert_eq!(verdict([172, 16, 0, 1], 443), Verdict::Drop);
    // Not for a local address: input does not see it.
    let fwd = evaluate(prog, &tcp4([192, 0, 2, 1], [10, 9, 9, 9], 22, 7)).unwrap();
    assert_eq!(fwd.verdict, Verdict::Accept);
}

#[test]
fn goto_in_base_chains_is_refused() {
    let ns = only_chain(&fixture("jumps-refused"), "c_goto");
    let err = decompile(&ns.view()).expect_err("c_goto");
    assert_eq!(err.errno, libc::EOPNOTSUPP);
    assert!(
        err.reason.contains("verdict goto in a base chain"),
        "{}",
        err.reason
    );
}

#[test]
fn return_in_a_base_chain_is_its_policy() {
    let state = fixture("base-return");
    let verdicts = |chain: &str| {
        let p = decompile(&only_chain(&state, chain).view()).unwrap();
        let plan = instantiate(&p, &facts()).unwrap();
        let prog = plan.chains[&(7, Direction::Ingress)].clone();
        let slots = plan.counters[&(7, Direction::Ingress)].clone();
        let verdict = |dport| {
            evaluate(&prog, &tcp4([192, 0, 2, 1], [10, 1, 0, 1], dport, 7))
                .unwrap()
                .verdict
        };
        ([verdict(1), verdict(2), verdict(3)], slots)
    };
    // Policy drop: port 1 returns before the accept rule, and is dropped.
    let (drop_policy, slots) = verdicts("c_drop");
    assert_eq!(drop_policy, [Verdict::Drop, Verdict::Accept, Verdict::Drop]);
    // nft's chains have no policy counter: the return counts for its rule's counter
    // only (iptables-nft's chains have one: nft-tests/rulesets/iptables-return.ipt).
    assert_eq!(
        slots.iter().filter(|s| !s.is_empty()).count(),
        2,
        "{slots:?}"
    );
    // Policy accept: port 1 returns before the drop rule, and is accepted.
    let (accept_policy, _) = verdicts("c_accept");
    assert_eq!(
        accept_policy,
        [Verdict::Accept, Verdict::Drop, Verdict::Accept]
    );
    // An accepting return ends only its own chain: input's chain must still see the
    // packet, which the flattened program cannot do after an accept (refused as an
    // accept rule would be).
    let mut both = state.clone();
    for t in both["ruleset"]["tables"].as_array_mut().unwrap() {
        t["chains"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["name"] == "c_early" || c["name"] == "c_late");
    }
    let err = decompile(&netns(both).view()).expect_err("return in prerouting, then input");
    assert_eq!(err.errno, libc::EOPNOTSUPP);
    assert!(err.reason.contains("accept"), "{}", err.reason);
}

#[test]
fn meta_mark_set_constant_runs_before_the_verdict() {
    let state = fixture("mark");
    let p = decompile(&only_chain(&state, "pre").view()).unwrap();
    let got: Vec<(Action, Vec<Statement>)> = p.chains[0]
        .rules
        .iter()
        .map(|r| (r.action.clone(), r.statements.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (Action::Accept, vec![Statement::set_mark(0x10)]),
            (Action::Continue, vec![Statement::set_mark(7)]),
            (Action::Continue, vec![Statement::set_mark(0x2a)]),
        ]
    );
    let plan = instantiate(&p, &facts()).unwrap();
    let prog = &plan.chains[&(7, Direction::Ingress)];
    let ssh = evaluate(prog, &tcp4([192, 0, 2, 1], [10, 1, 0, 1], 22, 7)).unwrap();
    assert_eq!(
        (ssh.verdict, ssh.effects.mark),
        (Verdict::Accept, Some(0x10))
    );
    let other = evaluate(prog, &tcp4([192, 0, 2, 1], [10, 1, 0, 1], 23, 7)).unwrap();
    assert_eq!(
        (other.verdict, other.effects.mark),
        (Verdict::Accept, Some(0x2a))
    );

    let cases = [
        ("c_input", "meta mark set in an input chain"),
        ("c_route", "meta mark set in a route chain"),
        ("c_priority", "meta priority set"),
    ];
    for (chain, why) in cases {
        let err = decompile(&only_chain(&state, chain).view()).expect_err(chain);
        assert_eq!(err.errno, libc::EOPNOTSUPP, "{chain}");
        assert!(err.reason.contains(why), "{chain}: {}", err.reason);
    }
}

#[test]
fn mark_statements_take_the_meta_or_ct_mark_with_and_or_xor() {
    let state = fixture("mark");
    let p = decompile(&only_chain(&state, "c_from_reg").view()).unwrap();
    assert_eq!(
        p.chains[0].rules[0].statements,
        // meta mark | 0x10
        [Statement::SetMark {
            and: !0x10,
            xor: 0x10
        }]
    );

    let state = fixture("mark-bitwise");
    let has_conn = ir(Test::CtState(
        ct_state::NEW | ct_state::ESTABLISHED | ct_state::RELATED,
    ));
    let p = decompile(&only_chain(&state, "pre").view()).unwrap();
    let rules = &p.chains[0].rules;
    assert_eq!(
        rules[0].statements,
        [Statement::SetMark {
            and: !0x10,
            xor: 0x10
        }]
    );
    // Reading the ct mark breaks the rule without a connection, before any statement.
    assert_eq!(rules[1].matches, [has_conn.clone()]);
    assert_eq!(
        rules[1].statements,
        [Statement::SetMarkFromCtMark {
            and: 0xffff_0000,
            xor: 1
        }]
    );
    assert!(rules[2].matches.contains(&has_conn));
    assert_eq!(
        (&rules[2].action, &rules[2].statements[..]),
        (
            &Action::Accept,
            &[Statement::SetCtMark {
                and: !0x100,
                xor: 0x100
            }][..]
        )
    );
    let p = decompile(&only_chain(&state, "out").view()).unwrap();
    let rules = &p.chains[0].rules;
    assert_eq!(
        rules[0].statements,
        [Statement::SetCtMarkFromMark { and: !0, xor: 3 }]
    );
    assert_eq!(rules[1].matches, [has_conn.clone()]);
    assert_eq!(
        rules[1].statements,
        [Statement::SetCtMark { and: 0xff, xor: 0 }]
    );

    // The prerouting plan on the reference: ct mark 0x1234_5678, meta mark 0x2.
    let p = decompile(&only_chain(&state, "pre").view()).unwrap();
    let plan = instantiate(&p, &facts()).unwrap();
    let prog = &plan.chains[&(7, Direction::Ingress)];
    let mut ssh = tcp4([192, 0, 2, 1], [10, 1, 0, 1], 22, 7);
    ssh.mark = 2;
    ssh.ct.state = ct_state::ESTABLISHED;
    ssh.ct.mark = 0x1234_5678;
    let run = evaluate(prog, &ssh).unwrap();
    assert_eq!(
        (run.verdict, run.effects.mark, run.effects.ct_mark),
        (Verdict::Accept, Some(0x1234_0001), Some(0x1234_5778))
    );
    // Untracked: the ct mark rules do not match; only `meta mark | 0x10` ran.
    let mut untracked = tcp4([192, 0, 2, 1], [10, 1, 0, 1], 22, 7);
    untracked.mark = 2;
    let run = evaluate(prog, &untracked).unwrap();
    assert_eq!(
        (run.verdict, run.effects.mark, run.effects.ct_mark),
        (Verdict::Accept, Some(0x12), None)
    );

    // `meta mark set ct mark >> 8`: a shifted mark, under a connection.
    let p = decompile(&only_chain(&state, "c_shift").view()).unwrap();
    let rule = &p.chains[0].rules[0];
    assert_eq!(rule.matches, [has_conn]);
    assert_eq!(
        rule.statements,
        [Statement::MarkShift(nftshim_ebpf::ir::MarkShift {
            from_ct: true,
            to_ct: false,
            and: u32::MAX,
            xor: 0,
            left: false,
            by: 8,
            post: 0
        })]
    );

    let cases = [("c_limit", "ct mark read after limit or quota")];
    for (chain, why) in cases {
        let err = decompile(&only_chain(&state, chain).view()).expect_err(chain);
        assert_eq!(err.errno, libc::EOPNOTSUPP, "{chain}");
        assert!(err.reason.contains(why), "{chain}: {}", err.reason);
    }
}

#[test]
fn an_accept_in_a_jumped_chain_counts_for_the_caller() {
    let ns = netns(fixture("jumps-accept"));
    let err = decompile(&ns.view()).expect_err("the second chain would be skipped");
    assert_eq!(err.errno, libc::EOPNOTSUPP);
    assert!(
        err.reason
            .contains("chain inet t first accepts packets that chain inet t second"),
        "{}",
        err.reason
    );
}

/// A verdict map becomes one rule per element, each with the element's verdict.
#[test]
fn verdict_maps_expand_to_one_rule_per_element() {
    let state = fixture("refused");
    let ns = only_chain(&state, "c_vmap");
    let program = decompile(&ns.view()).expect("a vmap is enforced");
    let rules = &program.chains[0].rules;
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].action, nftshim_ebpf::ir::Action::Accept);
    let state = fixture("jumps-refused");
    let ns = only_chain(&state, "c_vmap_in_target");
    let program = decompile(&ns.view()).expect("a vmap in a jump target is enforced");
    assert!(!program.regular.is_empty(), "the jump target is compiled");
}

/// Rules of a planned program that test [`Test::ArpHook`], and all its rules.
fn arp_guarded(p: &nftshim_ebpf::ir::Program) -> (usize, usize) {
    let rules = p.base_chains.iter().flat_map(|c| &c.rules);
    let guarded = rules
        .clone()
        .filter(|r| {
            r.matches
                .iter()
                .any(|m| m.test == Test::ArpHook && !m.negated)
        })
        .count();
    (guarded, rules.count())
}

#[test]
fn arp_chains_see_arp_frames_of_links_that_do_arp() {
    let p = program("arp");
    let hooks: Vec<(Family, Hook)> = p.chains.iter().map(|c| (c.family, c.hook)).collect();
    assert!(hooks.contains(&(Family::Arp, Hook::Input)), "{hooks:?}");
    assert!(hooks.contains(&(Family::Arp, Hook::Output)), "{hooks:?}");
    let mut f = facts();
    f.no_arp.insert(1); // lo: IFF_NOARP
    let plan = instantiate(&p, &f).unwrap();
    // veth0 ingress: the arp input chain's two rules and its drop policy, each behind
    // the ARP guard; the inet chain's policy (per family) is not.
    let ingress = &plan.chains[&(7, Direction::Ingress)];
    assert_eq!(arp_guarded(ingress), (3, 5));
    // egress: arp output alone.
    assert_eq!(arp_guarded(&plan.chains[&(7, Direction::Egress)]), (1, 1));
    // lo: the inet chain only, and no egress program at all.
    assert_eq!(arp_guarded(&plan.chains[&(1, Direction::Ingress)]).0, 0);
    assert!(!plan.chains.contains_key(&(1, Direction::Egress)));
    // IP packets never meet the arp chains: the inet input policy decides.
    let eval = |c, pkt: &PacketFields| evaluate(c, pkt).unwrap().verdict;
    assert_eq!(
        eval(ingress, &tcp4([192, 0, 2, 1], [10, 1, 0, 1], 22, 7)),
        Verdict::Drop
    );
    assert_eq!(
        eval(ingress, &tcp4([192, 0, 2, 1], [10, 9, 9, 9], 22, 7)),
        Verdict::Accept
    );
}

/// A frame from 192.0.2.1 to 10.9.9.9: TCP to `dport`, the IPv4 version/IHL byte given.
fn tcp4_frame(ver_ihl: u8, dport: u16) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[ver_ihl, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[192, 0, 2, 1, 10, 9, 9, 9]);
    f.extend_from_slice(&[0x9c, 0x40]);
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0, 0, 0, 0, 0]);
    f
}

#[test]
fn netdev_chains_read_headers_in_the_netdev_view() {
    use nftshim_ebpf::residual::{Headers, NetdevFrame};
    let p = program("netdev-headers");
    let chain = |family, hook| {
        p.chains
            .iter()
            .find(|c| c.family == family && c.hook == hook)
            .unwrap()
    };
    // In netdev chains every header test is a residual program in the netdev view.
    for c in [
        chain(Family::Netdev, Hook::Ingress),
        chain(Family::Netdev, Hook::Egress),
    ] {
        for r in &c.rules {
            let residual = r.matches.iter().find_map(|m| match m {
                SymMatch::Ir(Match {
                    test: Test::Residual(program),
                    ..
                }) => Some(program),
                _ => None,
            });
            let program = residual.unwrap_or_else(|| panic!("{}: {:?}", c.chain, r.matches));
            assert_eq!(program.insns[0], Insn::NetdevView, "{}", c.chain);
            assert_eq!(r.matches.len(), 1, "{}: nothing indexed", c.chain);
        }
    }
    // The same match in an ip table is still indexed by LBVS.
    let input = chain(Family::Ip, Hook::Input);
    assert!(input.rules[0].matches.iter().all(|m| !matches!(
        m,
        SymMatch::Ir(Match {
            test: Test::Residual(_),
            ..
        })
    )));

    // Evaluated on frames as the kernel's netdev ingress sees them.
    let plan = instantiate(&p, &facts()).unwrap();
    let lo_ingress = &plan.chains[&(1, Direction::Ingress)];
    let at_ingress = |frame: Vec<u8>| {
        let packet = PacketFields {
            iif: 1,
            headers: Some(Headers {
                netdev: Some(NetdevFrame {
                    frame,
                    skb_protocol: 0x0800,
                    egress: false,
                    accel: None,
                }),
                ..Headers::default()
            }),
            ..tcp4([192, 0, 2, 1], [10, 9, 9, 9], 22, 1)
        };
        evaluate(lo_ingress, &packet).unwrap().verdict
    };
    assert_eq!(at_ingress(tcp4_frame(0x45, 22)), Verdict::Drop);
    assert_eq!(at_ingress(tcp4_frame(0x45, 23)), Verdict::Accept);
    // An IPv4 header nft_set_pktinfo_ipv4_validate refuses: no transport protocol,
    // so `tcp dport 22` cannot match (the IP hooks never see such a packet).
    assert_eq!(at_ingress(tcp4_frame(0x55, 22)), Verdict::Accept);
}

#[test]
fn header_writes_decompile_to_payload_set_statements_or_are_refused() {
    use nftshim_ebpf::ir::{PayloadWrite, WriteBase};
    let state = fixture("payload-set");
    let p = decompile(&only_chain(&state, "c_ok").view()).unwrap();
    let writes: Vec<PayloadWrite> = p.chains[0]
        .rules
        .iter()
        .flat_map(|r| &r.statements)
        .map(|s| match s {
            Statement::PayloadSet(w) => *w,
            other => panic!("not a write: {other:?}"),
        })
        .collect();
    let mut ttl = PayloadWrite {
        base: WriteBase::Network,
        offset: 8,
        len: 2,
        mask: [0; 16],
        xor: [0; 16],
        csum_inet: true,
        csum_offset: 10,
        pseudo_header: false,
        csum_keep_zero: false,
        saturating: None,
    };
    // ip ttl set 23: bytes 8-9 read, the protocol byte kept.
    ttl.mask[1] = 0xff;
    ttl.xor[0] = 23;
    // tcp dport set 2222: a constant, with the TCP checksum fixed up.
    let mut dport = PayloadWrite {
        base: WriteBase::Transport,
        offset: 2,
        csum_offset: 16,
        ..ttl
    };
    (dport.mask, dport.xor) = ([0; 16], [0; 16]);
    dport.xor[..2].copy_from_slice(&2222u16.to_be_bytes());
    // ip6 daddr set 2001:db8::7: no checksum of its own, the pseudo-header's.
    let daddr6 = PayloadWrite {
        base: WriteBase::Network,
        offset: 24,
        len: 16,
        mask: [0; 16],
        xor: "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets(),
        csum_inet: false,
        csum_offset: 0,
        pseudo_header: true,
        csum_keep_zero: false,
        saturating: None,
    };
    assert_eq!(writes, [ttl, dport, daddr6]);

    let cases = [
        ("c_protocol", "protocol"),
        ("c_daddr_input", "in input chains"),
        ("c_before_conntrack", "before conntrack"),
        ("c_icmpv6", "other than TCP, UDP and UDP-Lite"),
    ];
    for (chain, why) in cases {
        let err = decompile(&only_chain(&state, chain).view()).expect_err(chain);
        assert_eq!(err.errno, libc::EOPNOTSUPP, "{chain}");
        assert!(err.reason.contains(why), "{chain}: {}", err.reason);
    }
}

/// A namespace with bridge br0 (3) and its ports p1 (4, forwarding) and p2 (5,
/// blocking), and a plain link eth0 (9).
fn bridge_facts() -> Facts {
    use nftshim_dataplane::compile::bridge::{BridgeDevice, BridgePort};
    let port = |state| BridgePort {
        bridge: 3,
        state,
        group_fwd_mask: 0,
    };
    Facts {
        links: [
            (1, "lo".to_string()),
            (3, "br0".to_string()),
            (4, "p1".to_string()),
            (5, "p2".to_string()),
            (9, "eth0".to_string()),
        ]
        .into(),
        no_arp: [1, 4, 5].into(),
        bridges: [(3, BridgeDevice::default())].into(),
        bridge_ports: [(4, port(3)), (5, port(4))].into(),
        ..Facts::default()
    }
}

/// The bridge guards of a planned program's rules, in rule order.
fn bridge_guards(p: &nftshim_ebpf::ir::Program) -> Vec<Test> {
    p.base_chains
        .iter()
        .flat_map(|c| &c.rules)
        .map(|r| r.matches[0].test.clone())
        .collect()
}

#[test]
fn bridge_chains_run_at_ports_and_the_bridge_device_only() {
    use nftshim_ebpf::ir::bridge_classes::{link_local, ALL, OTHER};
    let p = program("bridge");
    let hooks: Vec<(Family, Hook)> = p.chains.iter().map(|c| (c.family, c.hook)).collect();
    assert_eq!(
        hooks,
        [
            (Family::Bridge, Hook::Prerouting),
            (Family::Bridge, Hook::Input),
            (Family::Bridge, Hook::Forward)
        ]
    );
    let plan = instantiate(&p, &bridge_facts()).unwrap();
    let keys: Vec<(u32, Direction)> = plan.chains.keys().copied().collect();
    // br0: input; p1: prerouting and input (link-local), forward; p2 (blocking):
    // input (link-local) and forward; lo and eth0 nothing at ingress. Every egress
    // program takes off the mark br0's egress puts on what it sends.
    assert_eq!(
        keys,
        [
            (1, Direction::Egress),
            (3, Direction::Ingress),
            (3, Direction::Egress),
            (4, Direction::Ingress),
            (4, Direction::Egress),
            (5, Direction::Ingress),
            (5, Direction::Egress),
            (9, Direction::Egress)
        ]
    );
    assert!(plan.chains[&(3, Direction::Egress)].bridge_tx_mark);
    assert!(plan.chains[&(3, Direction::Egress)].base_chains[0]
        .rules
        .is_empty());
    let input_ll: u32 = (2u8..16)
        .filter(|&x| x != 0x0e)
        .fold(0, |a, x| a | link_local(x));
    let br0 = &plan.chains[&(3, Direction::Ingress)];
    assert!(br0.bridge_frames);
    assert_eq!(
        bridge_guards(br0),
        [Test::BridgeHook(ALL), Test::BridgeHook(ALL)]
    );
    let p1 = &plan.chains[&(4, Direction::Ingress)];
    assert_eq!(
        bridge_guards(p1),
        [
            Test::BridgeHook(OTHER | link_local(0)),
            Test::BridgeHook(input_ll),
            Test::BridgeHook(input_ll)
        ]
    );
    assert_eq!(
        bridge_guards(&plan.chains[&(5, Direction::Ingress)]),
        [Test::BridgeHook(input_ll), Test::BridgeHook(input_ll)]
    );
    // Forward: copies that came in on a port of br0, whichever the port's state.
    assert_eq!(
        bridge_guards(&plan.chains[&(4, Direction::Egress)]),
        [Test::BridgeHook(nftshim_ebpf::ir::bridge_classes::NOT_SENT)]
    );
    // The forward rule itself names p1 and p2 by index.
    let fwd = &plan.chains[&(4, Direction::Egress)].base_chains[0].rules[0];
    assert!(
        fwd.matches.contains(&Match::is(Test::Iif(vec![4]))),
        "{fwd:?}"
    );
    assert!(
        fwd.matches.contains(&Match::is(Test::Oif(vec![5]))),
        "{fwd:?}"
    );
}

#[test]
fn bridge_prerouting_after_br_netfilter_s_hook_is_refused() {
    // A prerouting chain at priority 0 comes after br_netfilter's hook, even before
    // any bridge exists.
    let p = program("bridge");
    for mut f in [bridge_facts(), facts()] {
        f.br_netfilter = true;
        let err = instantiate(&p, &f).expect_err("br_netfilter");
        assert_eq!(err.errno, libc::EOPNOTSUPP);
        assert!(err.reason.contains("br_netfilter"), "{}", err.reason);
    }
    // Chains at the ports' egress come after it in the kernel too.
    let mut f = bridge_facts();
    f.br_netfilter = true;
    instantiate(&program("bridge-output"), &f).expect("no prerouting chain");
}

#[test]
fn bridge_constructs_that_are_not_enforced_are_refused() {
    let state = fixture("bridge-refused");
    // Link-layer loads are enforced (see link_layer_loads_read_the_frame_...).
    let ether = matches_of(&state, "c_ether");
    assert!(residual_in(&ether).iter().any(|i| matches!(
        i,
        Insn::Payload {
            base: PayloadBase::LinkLayer,
            ..
        }
    )));
    // So are network header loads at the ports' egress: nft_payload reads them from
    // skb_network_offset(), whatever skb->data is there.
    let ip = matches_of(&state, "c_ip");
    assert!(residual_in(&ip).iter().any(|i| matches!(
        i,
        Insn::Payload {
            base: PayloadBase::Network,
            offset: 12,
            ..
        }
    )));
    let cases = [
        ("c_tcp", "header matches in bridge forward"),
        ("c_iif_in_input", "does not know the port"),
        ("c_pkttype", "meta pkttype in bridge chains"),
        ("c_log", "in bridge chains"),
        ("c_counting_input", "counts lengths"),
    ];
    for (chain, why) in cases {
        let ns = only_chain(&state, chain);
        let err = decompile(&ns.view()).expect_err(chain);
        assert_eq!(err.errno, libc::EOPNOTSUPP, "{chain}");
        assert!(err.reason.contains(why), "{chain}: {}", err.reason);
    }
}

#[test]
fn bridge_output_is_told_from_forwarded_copies_by_the_bridge_device_s_mark() {
    use nftshim_ebpf::ir::bridge_classes::{NOT_SENT, SENT};
    let p = program("bridge-output");
    let plan = instantiate(&p, &bridge_facts()).unwrap();
    // Every link has an egress program, which takes the mark off; br0's puts it on.
    for i in [1, 3, 4, 5, 9] {
        let e = &plan.chains[&(i, Direction::Egress)];
        assert!(e.bridge_clear_mark, "{i}");
        assert_eq!(e.bridge_tx_mark, i == 3, "{i}");
        assert_eq!(e.bridge_frames, i == 4 || i == 5, "{i}");
    }
    assert!(!plan.chains.contains_key(&(3, Direction::Ingress)));
    let rules = &plan.chains[&(4, Direction::Egress)].base_chains[0].rules;
    let sent = Match::is(Test::BridgeHook(SENT));
    let forwarded = [
        Match::is(Test::BridgeHook(NOT_SENT)),
        Match::is(Test::Iif(vec![4, 5])),
    ];
    // forward and output (disjoint, either order), then postrouting for both.
    assert_eq!(rules.len(), 4, "{rules:?}");
    let output = Match::is(Test::Oif(vec![4]));
    let from_p1 = Match::is(Test::Iif(vec![4]));
    let firsts: Vec<&Vec<Match>> = rules[..2].iter().map(|r| &r.matches).collect();
    assert!(firsts.contains(&&vec![sent.clone(), output]), "{firsts:?}");
    let mut fwd = forwarded.to_vec();
    fwd.push(from_p1);
    assert!(firsts.contains(&&fwd), "{firsts:?}");
    assert_eq!(rules[2].matches, [sent]);
    assert_eq!(rules[3].matches, forwarded);
}

/// The rules of the one base chain `chain` of the fixture `expansion`.
fn expansion_rules(chain: &str) -> Result<Vec<SymRule>, nftshim_engine::DataplaneError> {
    let ns = only_chain(&fixture("expansion"), chain);
    decompile(&ns.view()).map(|p| p.chains[0].rules.iter().map(|r| (**r).clone()).collect())
}

/// The expression index each rule's counters name (`CounterRef::Rule`).
fn counter_exprs(r: &SymRule) -> Vec<u32> {
    r.counters
        .iter()
        .filter_map(|c| match c {
            nftshim_engine::CounterRef::Rule { expr, .. } => Some(*expr),
            _ => None,
        })
        .collect()
}

fn tcp_dport(first: u16, last: u16) -> Vec<SymMatch> {
    vec![
        ir(Test::L4Proto(vec![6])),
        ir(Test::Dport(ports(&[(first, last)]))),
    ]
}

#[test]
fn a_counter_before_matches_counts_what_reaches_it() {
    // ip protocol tcp counter tcp dport 22 drop: the counter (expression 2) counts
    // every TCP packet; the drop takes port 22 only.
    let rules = expansion_rules("c_early_counter").unwrap();
    assert_eq!(rules.len(), 2, "{rules:#?}");
    assert_eq!(rules[0].matches, vec![ir(Test::L4Proto(vec![6]))]);
    assert_eq!(rules[0].action, Action::Continue);
    assert_eq!(counter_exprs(&rules[0]), vec![2]);
    assert_eq!(rules[1].matches, tcp_dport(22, 22));
    assert_eq!(rules[1].action, Action::Drop);
    assert!(rules[1].counters.is_empty());
}

#[test]
fn statements_after_a_map_keep_their_expression_index() {
    // udp dport vmap { 80 : continue, 443 : accept } counter: only the `continue`
    // element reaches the counter (expression 4).
    let rules = expansion_rules("c_vmap_counter").unwrap();
    assert_eq!(rules.len(), 2, "{rules:#?}");
    assert_eq!(rules[0].action, Action::Continue);
    assert_eq!(counter_exprs(&rules[0]), vec![4]);
    assert_eq!(rules[1].action, Action::Accept);
    assert!(rules[1].counters.is_empty());
    // meta mark set tcp dport map { 22 : 1, 80 : 2 } counter: the element's data is an
    // expression more, but the counter is still the rule's expression 5.
    let rules = expansion_rules("c_map_counter").unwrap();
    assert_eq!(rules.len(), 2, "{rules:#?}");
    for (r, (port, mark)) in rules.iter().zip([(22, 1), (80, 2)]) {
        assert_eq!(r.matches, tcp_dport(port, port));
        assert_eq!(r.statements, vec![Statement::SetMark { and: 0, xor: mark }]);
        assert_eq!(counter_exprs(r), vec![5]);
    }
}

#[test]
fn concatenated_intervals_become_one_rule_per_element() {
    // ip saddr . tcp dport @boxes, boxes = { 10.0.0.0/8 . 10-23, 192.168.1.1 . 80 }.
    let rules = expansion_rules("c_boxes").unwrap();
    let expected = [("10.0.0.0/8", 10, 23), ("192.168.1.1/32", 80, 80)];
    assert_eq!(rules.len(), expected.len(), "{rules:#?}");
    for (r, (net, first, last)) in rules.iter().zip(expected) {
        let mut want = tcp_dport(first, last);
        want.insert(1, ir(Test::IpSaddr(vec![net4(net)])));
        assert_eq!(r.matches, want);
        assert_eq!(r.action, Action::Accept);
    }
    // Not in any element is a conjunction: refused.
    let err = expansion_rules("c_negated_boxes").unwrap_err();
    assert_eq!(err.errno, libc::EOPNOTSUPP);
    assert!(err.reason.contains("negated lookup"), "{}", err.reason);
}

#[test]
fn rules_kept_from_an_earlier_pass_are_those_a_fresh_pass_makes() {
    use nftshim_dataplane::compile::{decompile_cached, RuleCache};
    let mut cache = RuleCache::default();
    let state = fixture("expansion");
    let view_of = |state: &serde_json::Value| only_chain(state, "c_boxes");
    let first = view_of(&state);
    let fresh = decompile(&first.view()).unwrap();
    assert_eq!(decompile_cached(&first.view(), &mut cache).unwrap(), fresh);
    assert_eq!(decompile_cached(&first.view(), &mut cache).unwrap(), fresh);
    // The named set changes, the rule that reads it does not: it is decompiled again.
    let mut changed = state.clone();
    for set in changed["ruleset"]["tables"][0]["sets"]
        .as_array_mut()
        .unwrap()
    {
        if set["name"] == "boxes" {
            set["elems"].as_array_mut().unwrap().truncate(1);
        }
    }
    let second = view_of(&changed);
    let want = decompile(&second.view()).unwrap();
    assert_ne!(want, fresh);
    assert_eq!(decompile_cached(&second.view(), &mut cache).unwrap(), want);
}

/// The matches of the one rule of base chain `chain` of the fixture.
fn matches_of(state: &serde_json::Value, chain: &str) -> Vec<SymMatch> {
    let p = decompile(&only_chain(state, chain).view()).expect(chain);
    p.chains[0].rules[0].matches.clone()
}

fn residual_in(matches: &[SymMatch]) -> Vec<Insn> {
    matches
        .iter()
        .find_map(|m| match m {
            SymMatch::Ir(Match {
                test: Test::Residual(program),
                negated: false,
            }) => Some(program.insns.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no residual program: {matches:?}"))
}

#[test]
fn link_layer_loads_read_the_frame_where_tc_sees_the_kernel_s_mac_header() {
    let state = fixture("linklayer");
    let ether_or_lo = |output| SymMatch::IfType {
        output,
        types: vec![1, 772],
        negated: false,
    };
    // Netdev ingress: the accelerated tag put back; only on devices with a MAC header.
    let ing = matches_of(&state, "c_ing");
    assert!(ing.contains(&ether_or_lo(false)), "{ing:?}");
    assert!(residual_in(&ing).contains(&Insn::Payload {
        base: PayloadBase::LinkLayer,
        offset: 6,
        len: 6,
        dreg: 0
    }));
    // Netdev egress: `vlan id` depends on `meta iiftype ether`, skb->dev being the
    // output device there.
    let egr = matches_of(&state, "c_egr");
    assert!(egr.contains(&ether_or_lo(true)), "{egr:?}");
    assert!(
        egr.contains(&SymMatch::IfType {
            output: true,
            types: vec![1],
            negated: false
        }),
        "{egr:?}"
    );
    // The IP hooks before routing: the frame's bytes (no accelerated tag there).
    let pre = matches_of(&state, "c_pre");
    assert!(residual_in(&pre).contains(&Insn::Payload {
        base: PayloadBase::LinkLayerUntagged,
        offset: 12,
        len: 2,
        dreg: 0
    }));
    // iiftype at postrouting is the output device's type.
    assert_eq!(
        matches_of(&state, "c_post_iiftype"),
        [SymMatch::IfType {
            output: true,
            types: vec![772],
            negated: false
        }]
    );
    // Bridge hooks: skb->dev is Ethernet, the dependency a constant.
    // (`iiftype ether vlan id 10`: bridge rules have no implicit one.)
    let br = matches_of(&state, "c_br_out");
    assert!(!br.iter().any(|m| matches!(m, SymMatch::IfType { .. })));
    assert!(residual_in(&br).contains(&Insn::Immediate {
        dreg: 0,
        data: vec![1, 0]
    }));
    // Where TC does not see the kernel's MAC header, refused.
    for (chain, why) in [
        ("c_fwd", "link-layer"),
        ("c_out", "link-layer"),
        ("c_post", "link-layer"),
        ("c_out_iiftype", "iiftype"),
    ] {
        let err = decompile(&only_chain(&state, chain).view()).expect_err(chain);
        assert_eq!(err.errno, libc::EOPNOTSUPP, "{chain}");
        assert!(err.reason.contains(why), "{chain}: {}", err.reason);
    }
}

#[test]
fn link_layer_rules_hold_only_on_devices_with_a_mac_header() {
    use nftshim_ebpf::residual::{Headers, NetdevFrame};
    let state = fixture("linklayer");
    // `@ll,0,8 0x02` in an input chain (a raw load: no iiftype dependency).
    let p = decompile(&only_chain(&state, "c_in").view()).unwrap();
    let mut f = facts();
    f.links.insert(9, "tun0".into());
    f.link_types = [(1, 772), (7, 1), (9, 65534)].into();
    let plan = instantiate(&p, &f).unwrap();
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    frame.extend_from_slice(&[0x45; 20]);
    let counted = |iif: u32, frame: &[u8]| {
        let packet = PacketFields {
            headers: Some(Headers {
                netdev: Some(NetdevFrame {
                    frame: frame.to_vec(),
                    skb_protocol: 0x0800,
                    egress: false,
                    accel: None,
                }),
                ..Headers::default()
            }),
            ..tcp4([192, 0, 2, 1], [10, 1, 0, 1], 22, iif)
        };
        evaluate(&plan.chains[&(iif, Direction::Ingress)], &packet)
            .unwrap()
            .counted
            .contains(&0)
    };
    assert!(counted(7, &frame));
    assert!(counted(1, &frame));
    // Another first byte.
    let mut other = frame.clone();
    other[0] = 3;
    assert!(!counted(7, &other));
    // A device without a MAC header (skb_mac_header_len() 0): the kernel's load breaks.
    assert!(!counted(9, &frame));
}

#[test]
fn a_renamed_chain_s_jumps_are_decompiled_again() {
    use nftshim_dataplane::compile::{decompile_cached, RuleCache};
    let mut cache = RuleCache::default();
    let state = fixture("jumps");
    let before = netns(state.clone());
    decompile_cached(&before.view(), &mut cache).unwrap();
    // `rename chain inet t blocked blocker`: the chain and the jump naming it (same
    // handles, same expressions but for the name).
    let text = serde_json::to_string(&state)
        .unwrap()
        .replace("\"blocked\"", "\"blocker\"")
        .replace("626c6f636b6564", "626c6f636b6572");
    let renamed = netns(serde_json::from_str(&text).unwrap());
    let want = decompile(&renamed.view()).unwrap();
    assert!(want.regular.contains_key("inet t blocker"), "{want:#?}");
    assert_eq!(decompile_cached(&renamed.view(), &mut cache).unwrap(), want);
}

#[test]
fn forward_rejects_route_their_answers_back_with_the_kernels_defaults() {
    let p = program("reject-forward");
    let plan = instantiate(&p, &facts()).unwrap();
    // Every device's egress program routes the answers of forwarded packets and takes
    // the mark off the answers that come through; no ingress program is needed.
    for dev in [1, 7] {
        let prog = &plan.chains[&(dev, Direction::Egress)];
        assert!(prog.forward_answers && prog.mark_answers, "{dev}");
        assert!(!plan.chains.contains_key(&(dev, Direction::Ingress)));
    }
    // What the answers assume, and the refusals when the namespace says otherwise.
    let mut f = facts();
    f.answer_sysctls = vec![("net/ipv4/ip_default_ttl".into(), "63".into())];
    let err = instantiate(&p, &f).expect_err("another default TTL");
    assert!(err.to_string().contains("ip_default_ttl is 63"), "{err}");
    let mut f = facts();
    f.layered_links = [(7, "vlan".to_string())].into();
    let err = instantiate(&p, &f).expect_err("a stacked device");
    assert!(err.to_string().contains("veth0 is a vlan device"), "{err}");
    let mut f = facts();
    f.link_types = [(1, 772), (7, 65534)].into(); // ARPHRD_LOOPBACK, ARPHRD_NONE
    let err = instantiate(&p, &f).expect_err("a link without Ethernet headers");
    assert!(
        err.to_string().contains("veth0 is not an Ethernet device"),
        "{err}"
    );
    // Without a reject in forward, the egress programs leave forwarded packets alone.
    let plan = instantiate(&program("basic"), &facts()).unwrap();
    assert!(plan.chains.values().all(|c| !c.forward_answers));
}

/// A residual test written before a limit or quota runs before it (checks run in rule
/// order), so the limit charges only the packets the kernel's would.
#[test]
fn residual_tests_before_a_limit_run_before_it() {
    let p = program("limit-order");
    let rules = &p.chains[0].rules;
    assert_eq!(rules.len(), 2);
    for r in rules {
        let kinds: Vec<&str> = r
            .matches
            .iter()
            .filter_map(|m| match m {
                SymMatch::Ir(Match {
                    test: Test::Residual(_),
                    ..
                }) => Some("residual"),
                SymMatch::Ir(Match {
                    test: Test::Limit(_),
                    ..
                }) => Some("limit"),
                SymMatch::Ir(Match {
                    test: Test::Quota(_),
                    ..
                }) => Some("quota"),
                _ => None,
            })
            .collect();
        assert!(
            kinds == ["residual", "limit"] || kinds == ["residual", "quota"],
            "{kinds:?}"
        );
    }
}

/// A warm rule cache gives what a cold pass gives, through a sequence of appends,
/// inserts, deletes, replaces and refused rules in base and regular chains (each view
/// is a fresh engine state: rules are found again by handle and expressions); and the
/// rules a commit did not touch are the same allocations as before.
#[test]
fn a_warm_cache_decompiles_and_instantiates_as_a_cold_pass() {
    use nftshim_dataplane::compile::{decompile_cached, RuleCache};
    use std::sync::Arc;
    let mut state = fixture("jumps");
    let chains = |s: &serde_json::Value| s["ruleset"]["tables"][0]["chains"].clone();
    // `goto` (handle 7) is refused in a base chain.
    let all: Vec<serde_json::Value> = chains(&state)
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["rules"].as_array().unwrap().clone())
        .filter(|r| r["handle"] != 7)
        .collect();
    // Rules without jumps may go anywhere; the jumps (handles 10, 11) only to input.
    let plain: Vec<serde_json::Value> = all
        .iter()
        .filter(|r| ![7, 10, 11].contains(&r["handle"].as_u64().unwrap()))
        .cloned()
        .collect();
    let chain_index = |s: &serde_json::Value, name: &str| {
        chains(s)
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["name"] == name)
            .unwrap()
    };
    let mut next_handle = 100u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n.max(1)
    };
    let mut cache = RuleCache::default();
    let mut previous: Option<Program> = None;
    let mut bogus: Option<(usize, u64)> = None;
    let mut refused = 0;
    for step in 0..80 {
        if let Some((ci, handle)) = bogus.take() {
            let rules = state["ruleset"]["tables"][0]["chains"][ci]["rules"]
                .as_array_mut()
                .unwrap();
            rules.retain(|r| r["handle"] != handle);
        } else {
            let name = ["input", "input", "web", "ssh", "blocked"][rand(5)];
            let ci = chain_index(&state, name);
            let pool = if name == "input" { &all } else { &plain };
            let mut rule = pool[rand(pool.len())].clone();
            let rules = state["ruleset"]["tables"][0]["chains"][ci]["rules"]
                .as_array_mut()
                .unwrap();
            let op = rand(6);
            match op {
                0 | 1 => {
                    rule["handle"] = next_handle.into();
                    rules.push(rule);
                }
                2 => {
                    rule["handle"] = next_handle.into();
                    let at = rand(rules.len() + 1);
                    rules.insert(at, rule);
                }
                3 if !rules.is_empty() => {
                    let at = rand(rules.len());
                    rules.remove(at);
                }
                4 if !rules.is_empty() => {
                    // `replace rule`: same handle, other expressions.
                    let at = rand(rules.len());
                    rules[at]["exprs"] = rule["exprs"].clone();
                }
                _ => {
                    // A rule the data plane refuses; taken out again by the next step.
                    rule["handle"] = next_handle.into();
                    rule["exprs"] = serde_json::json!([{"name": "bogus", "data": ""}]);
                    let at = rand(rules.len() + 1);
                    rules.insert(at, rule);
                    bogus = Some((ci, next_handle));
                }
            }
            next_handle += 1;
        }
        state["counters"]["hgen"]["1"] = next_handle.into();
        let ns = netns(state.clone());
        let warm = decompile_cached(&ns.view(), &mut cache).map_err(|e| e.reason);
        let cold = decompile(&ns.view()).map_err(|e| e.reason);
        assert_eq!(warm, cold, "step {step}");
        // A bogus rule in a chain no base chain reaches is not read.
        assert!(bogus.is_some() || warm.is_ok(), "step {step}: {warm:?}");
        let Ok(warm) = warm else {
            refused += 1;
            continue;
        };
        let cold = cold.unwrap();
        assert_eq!(
            instantiate(&warm, &facts()).map_err(|e| e.reason),
            instantiate(&cold, &facts()).map_err(|e| e.reason),
            "step {step}"
        );
        // Rules of the last successful pass that are still there are shared.
        if let Some(prev) = &previous {
            let before: Vec<&Arc<SymRule>> = prev.chains[0].rules.iter().collect();
            let shared = warm.chains[0]
                .rules
                .iter()
                .filter(|r| before.iter().any(|b| Arc::ptr_eq(b, r)))
                .count();
            let kept = warm.chains[0]
                .rules
                .iter()
                .filter(|r| before.iter().any(|b| b.handle == r.handle))
                .count();
            assert!(shared + 1 >= kept, "step {step}: {shared} of {kept} shared");
        }
        previous = Some(warm);
    }
    assert!(refused > 0, "no refusal in the sequence");
}

/// A flattened rule whose first match reads one IP version's header is left out behind
/// the other version's guard: the planned programs decide and count as those with
/// every copy (made by a first match that reads no header: no interface of an empty
/// list) for IPv4 and IPv6 packets, local or not.
#[test]
fn copies_for_the_other_ip_version_change_no_verdict() {
    let mut state = fixture("jumps");
    let chains = state["ruleset"]["tables"][0]["chains"].clone();
    let rule = |ci: usize, ri: usize| chains[ci]["rules"][ri].clone();
    // ip saddr 192.0.2.1 drop; tcp dport 22 accept; return; jump blocked;
    // meta l4proto tcp jump web; tcp dport 80 accept
    state["ruleset"]["tables"][0]["chains"][3]["rules"] = serde_json::json!([
        rule(2, 0),
        rule(0, 0),
        rule(0, 1),
        rule(3, 0),
        rule(3, 1),
        rule(3, 2)
    ]);
    let ns = netns(state);
    let pruned = decompile(&ns.view()).unwrap();
    let mut every_copy = pruned.clone();
    for r in &mut every_copy.chains[0].rules {
        let r = std::sync::Arc::make_mut(r);
        r.matches.insert(
            0,
            SymMatch::IfName {
                output: false,
                patterns: Vec::new(),
                negated: true,
            },
        );
    }
    let f = facts();
    let (a, b) = (
        instantiate(&pruned, &f).unwrap(),
        instantiate(&every_copy, &f).unwrap(),
    );
    let at =
        |plan: &nftshim_dataplane::compile::Plan| plan.chains[&(7, Direction::Ingress)].clone();
    let rules = |plan| at(plan).base_chains[0].rules.len();
    assert_eq!(
        rules(&a) + 1,
        rules(&b),
        "one copy fewer (the IPv4-only rule's)"
    );
    let counted = |plan: &nftshim_dataplane::compile::Plan, e: &Evaluation| {
        let slots = &plan.counters[&(7, Direction::Ingress)];
        e.counted
            .iter()
            .flat_map(|&i| slots.get(i).cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let mut packets = Vec::new();
    for saddr in [[192, 0, 2, 1], [10, 1, 2, 3]] {
        for daddr in [[10, 1, 0, 1], [8, 8, 8, 8]] {
            for dport in [22, 80, 443] {
                packets.push(tcp4(saddr, daddr, dport, 7));
            }
        }
    }
    for daddr in [Ipv6Addr::LOCALHOST, "2001:db8::9".parse().unwrap()] {
        for dport in [22, 80, 443] {
            let mut p = tcp4([0; 4], [0; 4], dport, 7);
            p.l3 = L3Fields::V6 {
                saddr: "2001:db8::1".parse().unwrap(),
                daddr,
            };
            packets.push(p);
        }
    }
    let mut verdicts = std::collections::BTreeSet::new();
    for p in &packets {
        let (x, y) = (evaluate(&at(&a), p).unwrap(), evaluate(&at(&b), p).unwrap());
        assert_eq!(x.verdict, y.verdict, "{p:?}");
        assert_eq!(x.effects, y.effects, "{p:?}");
        assert_eq!(counted(&a, &x), counted(&b, &y), "{p:?}");
        verdicts.insert(format!("{:?}", x.verdict));
    }
    assert_eq!(verdicts.len(), 2, "both verdicts are exercised");
}

#[test]
fn rules_flattened_before_follow_the_interfaces_of_the_facts_at_hand() {
    use nftshim_dataplane::compile::{decompile_cached, RuleCache};
    // basic.nft has `iifname "veth*" drop`: which ifindexes it means depends on the facts.
    let ns = netns(fixture("basic"));
    let mut cache = RuleCache::default();
    let warm = decompile_cached(&ns.view(), &mut cache).unwrap();
    let mut renamed = facts();
    renamed.links.insert(7, "eth0".to_string());
    let mut added = facts();
    added.links.insert(9, "veth9".to_string());
    // The same decompiled rules, flattened under each facts in turn (their copies kept
    // from the previous pass), give what a fresh decompile gives.
    for (step, f) in [facts(), renamed, facts(), added.clone(), added, facts()]
        .iter()
        .enumerate()
    {
        let cold = decompile(&ns.view()).unwrap();
        let again = decompile_cached(&ns.view(), &mut cache).unwrap();
        for p in [&warm, &again] {
            assert_eq!(
                instantiate(p, f).map_err(|e| e.reason),
                instantiate(&cold, f).map_err(|e| e.reason),
                "step {step}"
            );
        }
    }
}
