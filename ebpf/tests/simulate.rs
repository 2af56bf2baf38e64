//! The map builder, checked without a kernel: the compiled maps, evaluated the way the
//! BPF program evaluates them (`simulate`), give the reference evaluator's verdict and
//! counters on random chains and packets.

mod common;

use common::gen;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::{maps, reference, simulate};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_maps_agree_with_the_reference(
        chain in gen::chain(24),
        packets in prop::collection::vec(gen::packet(), 32),
    ) {
        let compiled = maps::compile(&chain).expect("generated chains use what the data plane supports");
        for spec in &packets {
            for fields in [spec.fields(1, 0, 0), spec.fields(spec.iif, 2, spec.mark)] {
                let expected = reference::evaluate(&chain, &fields).unwrap();
                prop_assert_eq!(simulate::classify(&compiled, &fields), expected, "packet {:?}", fields);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_programs_agree_with_the_reference(
        program in gen::program(8),
        packets in prop::collection::vec(gen::packet(), 32),
    ) {
        let compiled = maps::compile_program(&program).expect("generated programs compile");
        let mut reference = Reference::new(&program).unwrap();
        for spec in &packets {
            for fields in [spec.fields(1, 0, 0), spec.fields(spec.iif, 2, spec.mark)] {
                let expected = reference.evaluate(&fields).unwrap();
                prop_assert_eq!(simulate::classify(&compiled, &fields), expected, "packet {:?}", fields);
            }
        }
    }
}

/// A rule that never holds (no packet comes in on that interface) but cuts the port,
/// address and mark dimensions: many classes, whose vectors span every block. (Mask
/// 0xff is one of the generator's two: no third mark mask.)
fn filler(k: usize) -> nftshim_ebpf::ir::Rule {
    use nftshim_ebpf::ir::{Action, Match, PortRange, Rule, Test};
    let net = format!("10.{}.{}.0/24", (k >> 8) & 0xff, k & 0xff);
    Rule::new(
        vec![
            Match::is(Test::Iif(vec![4242])),
            Match::is(Test::Dport(vec![PortRange::single(k as u16)])),
            Match::is(Test::IpSaddr(vec![net.parse().unwrap()])),
            Match::is(Test::Mark {
                mask: 0xff,
                values: vec![k as u32 & 0xff],
            }),
        ],
        Action::Drop,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// The generated rules spread over three 4096-rule blocks between fillers: the
    /// vectors' blocks are built and deduplicated separately (maps/lbvs.rs).
    #[test]
    fn vectors_over_several_blocks_agree_with_the_reference(
        chain in gen::chain(24),
        packets in prop::collection::vec(gen::packet(), 32),
    ) {
        let mut spread = chain.clone();
        spread.rules.clear();
        for (i, r) in chain.rules.iter().enumerate() {
            spread.rules.extend((0..400).map(|k| filler(i * 400 + k)));
            spread.rules.push(r.clone());
        }
        let compiled = maps::compile(&spread).expect("generated chains use what the data plane supports");
        for spec in &packets {
            for fields in [spec.fields(1, 0, 0), spec.fields(spec.iif, 2, spec.mark)] {
                let expected = reference::evaluate(&spread, &fields).unwrap();
                prop_assert_eq!(simulate::classify(&compiled, &fields), expected, "packet {:?}", fields);
            }
        }
    }
}
