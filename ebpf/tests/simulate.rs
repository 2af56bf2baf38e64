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
