//! Holds the BPF programs to the reference evaluator: runs packets at XDP and TC
//! ingress, compares verdicts, and adds up the counters and stats the programs should
//! have.

use nftshim_ebpf::fields::PacketFields;
use nftshim_ebpf::ir::{Chain, Program, Verdict};
use nftshim_ebpf::loader::{monotonic_ns, Counter, LoadedProgram, Run, SkbMeta, Stats};
use nftshim_ebpf::reference::{Evaluation, Reference};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::PacketSpec;

/// What an XDP test run sees as its input device.
pub const LOOPBACK: u32 = 1;

/// Runs packets through both programs, comparing each verdict with the reference and
/// adding up the counters and stats the programs should have.
pub struct Checker<'a> {
    loaded: &'a LoadedProgram,
    reference: Reference<'a>,
    pub counters: Vec<Counter>,
    pub stats: Stats,
}

impl<'a> Checker<'a> {
    pub fn new(loaded: &'a LoadedProgram, chain: &'a Chain) -> Self {
        // A lone chain is a one-base-chain program; leak it to share the lifetime.
        let program: &'a Program = Box::leak(Box::new(Program::single(chain.clone())));
        Checker::for_program(loaded, program)
    }

    pub fn for_program(loaded: &'a LoadedProgram, program: &'a Program) -> Self {
        // Limit buckets start full when the program was loaded, just before.
        let reference = Reference::starting_at(program, monotonic_ns()).unwrap();
        let ncounters = reference.nrules() + program.base_chains.len();
        Checker {
            loaded,
            reference,
            counters: vec![Counter::default(); ncounters],
            stats: Stats::default(),
        }
    }

    pub fn expect(&mut self, fields: &PacketFields, len: usize) -> Evaluation {
        let want = self.reference.evaluate(fields).unwrap();
        for &i in &want.counted {
            self.counters[i].packets += 1;
            self.counters[i].bytes += len as u64;
        }
        if want.counted.is_empty() {
            self.stats.unscoped += 1;
        } else {
            self.stats.classified += 1;
        }
        self.stats.jump_overflows += want.jump_overflow as u64;
        self.stats.evaluated += 1;
        want
    }

    /// Checks one packet at XDP and at TC ingress; returns the reference's verdict.
    pub fn packet(&mut self, spec: &PacketSpec) -> Result<Verdict, TestCaseError> {
        let frame = spec.frame();
        let want = self.expect(&spec.fields(LOOPBACK, 0, 0), spec.l3_len());
        let got = self.loaded.run_xdp(&frame, 1).unwrap();
        self.compare("XDP", spec, &got, &want, None)?;

        let tc_want = self.expect(&spec.fields(spec.iif, 0, spec.mark), spec.l3_len());
        let meta = SkbMeta {
            mark: spec.mark,
            ingress_ifindex: spec.iif,
            ifindex: 0,
        };
        let got = self.loaded.run_tc(&frame, meta, 1).unwrap();
        self.compare("TC", spec, &got, &tc_want, Some(spec.mark))?;
        Ok(want.verdict)
    }

    /// The program's run agrees with the reference's evaluation: verdict, the mark (TC),
    /// log events, and an answer only for rejected packets.
    fn compare(
        &self,
        hook: &str,
        spec: &PacketSpec,
        got: &Run,
        want: &Evaluation,
        mark_in: Option<u32>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            got.verdict,
            want.verdict,
            "{} verdict for {:?} (reference counted {:?})",
            hook,
            spec,
            &want.counted
        );
        if let Some(mark) = mark_in {
            prop_assert_eq!(
                got.mark,
                Some(want.effects.mark.unwrap_or(mark)),
                "{} mark",
                hook
            );
        }
        if got.reply.is_some() {
            prop_assert!(
                want.effects.reject.is_some(),
                "{} answered a packet it did not reject",
                hook
            );
        }
        let logs: Vec<(usize, String, u32)> = self
            .loaded
            .read_logs()
            .unwrap()
            .into_iter()
            .map(|ev| {
                let prefix = self.loaded.log_prefix(ev.prefix).unwrap_or("?").to_string();
                (ev.rule as usize, prefix, ev.mark)
            })
            .collect();
        prop_assert_eq!(logs, want.effects.logs.clone(), "{} log events", hook);
        Ok(())
    }

    /// Counters and stats equal what the reference implies for all packets so far.
    pub fn finish(self) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.loaded.counters().unwrap(),
            self.counters,
            "per-rule counters (last: policies)"
        );
        prop_assert_eq!(self.loaded.stats().unwrap(), self.stats);
        Ok(())
    }
}
