//! The compiler on ebtables-nft's own blobs (tests/fixtures/ebtables.rules, captured by
//! capture-ebtables.sh into ebtables.state.json): each rule of the FORWARD chain alone,
//! decompiled to the residual operations, marks and statements of ebt_* semantics, or
//! refused with a reason.

use nftshim_dataplane::compile::{decompile, SymMatch, SymRule};
use nftshim_ebpf::ir::{Action, Match, Statement, Test};
use nftshim_ebpf::residual::{Insn, PayloadBase};
use nftshim_engine::Netns;

fn state() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ebtables.state.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Rule `i` of FORWARD (in ebtables.rules order) as the only rule of the ruleset.
fn rule(i: usize) -> Result<SymRule, String> {
    let mut s = state();
    for t in s["ruleset"]["tables"].as_array_mut().unwrap() {
        for c in t["chains"].as_array_mut().unwrap() {
            let rules = c["rules"].as_array_mut().unwrap();
            let keep = rules[i].clone();
            *rules = vec![keep];
        }
    }
    let ns = Netns::from_persisted(s).expect("engine state");
    let p = decompile(&ns.view()).map_err(|e| e.reason)?;
    Ok((*p.chains[0].rules[0]).clone())
}

fn residual(r: &SymRule) -> Vec<Insn> {
    r.matches
        .iter()
        .filter_map(|m| match m {
            SymMatch::Ir(Match {
                test: Test::Residual(p),
                negated: false,
            }) => Some(p.insns.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn ebtables_blobs_decompile_to_their_reads() {
    let has = |i: usize, want: &dyn Fn(&Insn) -> bool| {
        let r = rule(i).unwrap_or_else(|e| panic!("rule {i}: {e}"));
        assert!(residual(&r).iter().any(want), "rule {i}: {r:?}");
    };
    // --ip-tos 0x10: the TOS byte.
    has(
        0,
        &|i| matches!(i, Insn::Cmp { data, .. } if data == &[0x10]),
    );
    // --ip-dport 53: at ihl * 4 + 2.
    has(1, &|i| {
        matches!(
            i,
            Insn::PayloadIndexed {
                index: 0,
                mask: 0x0f,
                scale: 4,
                offset: 2,
                ..
            }
        )
    });
    // ICMP (type, code) keys.
    has(2, &|i| matches!(i, Insn::Lookup { len: 2, .. }));
    // The upper-layer header of ipv6_skip_exthdr().
    has(3, &|i| {
        matches!(
            i,
            Insn::Ip6SkipExthdr {
                offset: 2,
                len: 2,
                ..
            }
        )
    });
    // --arp-ip-dst after 2 * ar_hln.
    has(4, &|i| {
        matches!(
            i,
            Insn::PayloadIndexed {
                index: 4,
                scale: 2,
                offset: 12,
                ..
            }
        )
    });
    // The TCI and encapsulated protocol, the accelerated tag put back.
    has(5, &|i| {
        matches!(
            i,
            Insn::Payload {
                base: PayloadBase::LinkLayer,
                offset: 14,
                len: 4,
                ..
            }
        )
    });
    has(6, &|i| matches!(i, Insn::PktType { .. }));
    has(8, &|i| {
        matches!(
            i,
            Insn::LinkChoice {
                index: 16,
                offset_set: 20,
                offset_clear: 22,
                ..
            }
        )
    });
    let mark = rule(7).unwrap();
    assert!(mark.matches.contains(&SymMatch::Ir(Match::is(Test::Mark {
        mask: 0xff,
        values: vec![5],
    }))));
    let target = rule(9).unwrap();
    assert_eq!(
        target.statements,
        vec![Statement::SetMark { and: 0, xor: 7 }]
    );
    assert_eq!(target.action, Action::Accept);
    // --arp-gratuitous: the two addresses compared with each other.
    has(10, &|i| {
        matches!(
            i,
            Insn::HalvesEq {
                len: 4,
                negated: false,
                ..
            }
        )
    });
}
