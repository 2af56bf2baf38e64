//! Named sets as BPF maps, in the kernel with BPF_PROG_TEST_RUN: lookups of every key
//! type (prefixes, port ranges, exact values), negation and absent fields, and elements
//! added and removed while the program runs, against the reference evaluator.

mod common;

use std::collections::BTreeMap;

use common::{gen, load_or_skip, L4Spec, PacketSpec};
use nftshim_ebpf::ir::{
    Action, Chain, L3Scope, Match, PortRange, Program, Rule, Set, SetElement, SetField, SetKey,
    Test, Verdict,
};
use nftshim_ebpf::loader::{Counter, LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::{compile_program, BuildError};
use nftshim_ebpf::reference::Reference;
use proptest::prelude::*;
use proptest::sample::select;

fn lookup(field: SetField, set: &str) -> Test {
    Test::InSet {
        field,
        set: set.to_string(),
    }
}

fn v4(s: &str) -> SetElement {
    SetElement::Ipv4(s.parse().unwrap())
}

fn v6(s: &str) -> SetElement {
    SetElement::Ipv6(s.parse().unwrap())
}

fn ports(a: u16, b: u16) -> SetElement {
    SetElement::Port(PortRange::new(a, b))
}

/// One rule per set type, each counting (continue), and a drop for `ip saddr @block`.
fn set_program() -> Program {
    let set = |key, elements| Set { key, elements };
    Program {
        base_chains: vec![Chain {
            scope: L3Scope::Netdev,
            policy: Verdict::Accept,
            rules: vec![
                Rule::new(
                    vec![Match::is(lookup(SetField::IpSaddr, "block"))],
                    Action::Drop,
                ),
                Rule::new(
                    vec![Match::is(lookup(SetField::IpDaddr, "block"))],
                    Action::Continue,
                ),
                Rule::new(
                    vec![Match::not(lookup(SetField::Ip6Saddr, "nets6"))],
                    Action::Continue,
                ),
                Rule::new(
                    vec![Match::is(lookup(SetField::Ip6Daddr, "nets6"))],
                    Action::Continue,
                ),
                Rule::new(
                    vec![Match::is(lookup(SetField::Dport, "ports"))],
                    Action::Continue,
                ),
                Rule::new(
                    vec![Match::not(lookup(SetField::Sport, "ports"))],
                    Action::Continue,
                ),
                Rule::new(
                    vec![Match::is(lookup(SetField::L4Proto, "protos"))],
                    Action::Continue,
                ),
                Rule::new(
                    vec![
                        Match::is(lookup(SetField::Iif, "ifs")),
                        Match::is(lookup(SetField::Mark, "marks")),
                    ],
                    Action::Continue,
                ),
            ],
        }],
        sets: BTreeMap::from([
            (
                "block".into(),
                set(SetKey::Ipv4, vec![v4("10.0.0.0/24"), v4("8.8.8.8/32")]),
            ),
            ("nets6".into(), set(SetKey::Ipv6, vec![v6("2001:db8::/48")])),
            (
                "ports".into(),
                set(SetKey::Port, vec![ports(20, 60), ports(8080, 8080)]),
            ),
            (
                "protos".into(),
                set(SetKey::Proto, vec![SetElement::Proto(17)]),
            ),
            ("ifs".into(), set(SetKey::U32, vec![SetElement::U32(2)])),
            (
                "marks".into(),
                set(SetKey::U32, vec![SetElement::U32(0x100)]),
            ),
        ]),
        ..Program::default()
    }
}

/// Runs a packet at TC through both and compares verdict and counters.
fn check(
    loaded: &LoadedProgram,
    reference: &mut Reference,
    counters: &mut [Counter],
    spec: &PacketSpec,
) -> Result<Verdict, TestCaseError> {
    let fields = spec.fields(spec.iif, 0, spec.mark);
    let want = reference.evaluate(&fields).unwrap();
    for &i in &want.counted {
        counters[i].packets += 1;
        counters[i].bytes += spec.l3_len() as u64;
    }
    let meta = SkbMeta {
        mark: spec.mark,
        ingress_ifindex: spec.iif,
        ifindex: 0,
    };
    let got = loaded.run_tc(&spec.frame(), meta, 1).unwrap();
    prop_assert_eq!(got.verdict, want.verdict, "verdict for {:?}", spec);
    prop_assert_eq!(
        loaded.counters().unwrap(),
        counters.to_vec(),
        "counters after {:?}",
        spec
    );
    Ok(want.verdict)
}

#[test]
fn ranges_prefixes_and_values_match_and_change_at_run_time() {
    let program = set_program();
    let compiled = compile_program(&program).unwrap();
    let Some(mut loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
        return;
    };
    let mut reference = Reference::new(&program).unwrap();
    let mut counters = vec![Counter::default(); compiled.ncounters()];
    let udp =
        |s: [u8; 4], sport, dport| PacketSpec::v4(s, [10, 9, 9, 9], L4Spec::Udp { sport, dport });
    let mut run = |loaded: &LoadedProgram, reference: &mut Reference, spec: &PacketSpec| {
        check(loaded, reference, &mut counters, spec).unwrap()
    };

    assert_eq!(
        run(&loaded, &mut reference, &udp([10, 0, 0, 7], 1, 2)),
        Verdict::Drop
    );
    assert_eq!(
        run(&loaded, &mut reference, &udp([10, 0, 1, 7], 1, 2)),
        Verdict::Accept
    );
    for dport in [19, 20, 45, 60, 61, 8079, 8080, 8081] {
        run(&loaded, &mut reference, &udp([1, 1, 1, 1], 9999, dport));
    }
    // Grow the block list and the port set, shrink them again, without reloading.
    let changes = [
        ("block", v4("10.0.1.0/24"), true),
        ("ports", ports(1000, 2000), true),
        ("block", v4("10.0.0.0/24"), false),
        ("ports", ports(20, 60), false),
    ];
    for (set, element, add) in changes {
        if add {
            loaded.set_insert(set, &element).unwrap();
            reference.set_insert(set, element);
        } else {
            loaded.set_remove(set, &element).unwrap();
            reference.set_remove(set, &element);
        }
    }
    assert_eq!(
        run(&loaded, &mut reference, &udp([10, 0, 0, 7], 1, 2)),
        Verdict::Accept
    );
    assert_eq!(
        run(&loaded, &mut reference, &udp([10, 0, 1, 7], 1, 2)),
        Verdict::Drop
    );
    for dport in [45, 999, 1000, 1500, 2000, 2001] {
        run(&loaded, &mut reference, &udp([1, 1, 1, 1], 9999, dport));
    }
    // `ip6 saddr != @nets6` never holds for IPv4 packets (absent field) and holds for
    // other IPv6 sources.
    let v6 = |s: &str| {
        PacketSpec::v6(
            s,
            "2001:db8::2",
            L4Spec::Tcp {
                sport: 1,
                dport: 80,
            },
        )
    };
    run(&loaded, &mut reference, &v6("2001:db8::1"));
    run(&loaded, &mut reference, &v6("2001:db9::1"));
    let c = loaded.counters().unwrap();
    assert_eq!(c[2].packets, 1, "only the IPv6 packet from outside the set");
    assert!(c[4].packets >= 6, "port set hits: {:?}", c[4]);

    // Wrong key types and unknown sets are refused.
    assert!(loaded.set_insert("ports", &v4("1.2.3.4/32")).is_err());
    assert!(loaded.set_insert("nope", &SetElement::U32(1)).is_err());
    let mut bad = program.clone();
    bad.base_chains[0].rules[0].matches[0] = Match::is(lookup(SetField::Dport, "block"));
    assert!(matches!(
        compile_program(&bad),
        Err(BuildError::SetKeyMismatch { .. })
    ));
}

/// A change to one of the program's sets, from pools that do not overlap within a set
/// (nft refuses overlapping intervals; see `LoadedProgram::set_remove`).
fn change() -> impl Strategy<Value = (&'static str, SetElement, bool)> {
    let element = prop_oneof![
        select(
            &[
                "10.0.0.0/24",
                "10.0.0.0/8",
                "192.168.1.0/24",
                "8.8.8.8/32",
                "0.0.0.0/0"
            ][..]
        )
        .prop_map(|s| ("block", v4(s))),
        select(&["2001:db8::/48", "2001:db8:1::/48", "fe80::/10"][..])
            .prop_map(|s| ("nets6", v6(s))),
        select(
            &[
                (20u16, 60u16),
                (80, 80),
                (443, 443),
                (1000, 2000),
                (8080, 8090)
            ][..]
        )
        .prop_map(|(a, b)| ("ports", ports(a, b))),
        select(&[6u8, 17, 1, 58][..]).prop_map(|p| ("protos", SetElement::Proto(p))),
        select(&[1u32, 2, 3, 7][..]).prop_map(|v| ("ifs", SetElement::U32(v))),
        select(&[0u32, 1, 0x100, 0x101][..]).prop_map(|v| ("marks", SetElement::U32(v))),
    ];
    (element, any::<bool>()).prop_map(|((set, e), add)| (set, e, add))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn set_lookups_agree_with_the_reference_as_sets_change(
        steps in prop::collection::vec(
            prop_oneof![3 => gen::packet().prop_map(Ok), 1 => change().prop_map(Err)],
            1..40,
        ),
    ) {
        let program = set_program();
        let compiled = compile_program(&program).unwrap();
        let Some(mut loaded) = load_or_skip(&compiled, LoadOptions::default()) else { return Ok(()) };
        let mut reference = Reference::new(&program).unwrap();
        let mut counters = vec![Counter::default(); compiled.ncounters()];
        for step in &steps {
            match step {
                Ok(spec) => {
                    check(&loaded, &mut reference, &mut counters, spec)?;
                }
                Err((set, element, true)) => {
                    loaded.set_insert(set, element).unwrap();
                    reference.set_insert(set, *element);
                }
                Err((set, element, false)) => {
                    loaded.set_remove(set, element).unwrap();
                    reference.set_remove(set, element);
                }
            }
        }
    }
}
