//! The namespace's rate estimators (xt_RATEEST), run by its worker as the kernel's
//! gen_estimator timer runs them: each estimator's counters are the deltas of the
//! rule counters its RATEEST targets stand for (compile/xt/rateest.rs); every period,
//! est_timer()'s arithmetic ([`nftshim_ebpf::rateest::Estimator`]) turns them into
//! rates, which go to the shared `rateest_rates` map that `-m rateest` reads.
//!
//! An estimator is made when a rule first names it (counters and rates 0, its first
//! period starting then, as gen_new_estimator() does) and lives while some RATEEST
//! target or rateest match of the live programs names it; a name that comes back
//! later starts afresh, as in the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use nftshim_ebpf::rateest::{Estimator, Sample};
use nftshim_engine::CounterRef;

use crate::compile::xt::rateest::RateestUse;
use crate::compile::Program;

/// One jiffy at the kernel's HZ: how soon a late timer fires again.
const JIFFY: Duration = Duration::from_nanos(1_000_000_000 / nftshim_ebpf::rateest::KERNEL_HZ);

/// The map the match reads, by its name in the BPF object.
pub const RATES_MAP: &str = "rateest_rates";
/// Its `max_entries` (NS_RATEEST_MAX, bpf/lib/rateest.h).
const RATES_MAX: usize = 1024;

/// Counts per counter of the ruleset (the worker's tally).
pub type Tally = BTreeMap<CounterRef, (u64, u64)>;

struct Live {
    est: Estimator,
    /// The estimator's counters (`bstats`): what its targets counted since it was made.
    bytes: u64,
    packets: u64,
    next: Instant,
    /// The rates last written to the map.
    written: Option<Sample>,
}

/// The namespace's estimators by name (NUL-padded), and which rule counters feed
/// each.
#[derive(Default)]
pub struct Estimators {
    by_name: BTreeMap<[u8; 16], Live>,
    feeds: BTreeMap<CounterRef, [u8; 16]>,
}

impl Estimators {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Why `program` cannot run on these estimators, if it cannot: a RATEEST target
    /// whose estimator lives on (a rateest match kept it after its last target went)
    /// with other parameters, which the kernel refuses (EINVAL) where the control
    /// plane, which forgets it with its last target, does not; or more estimators than
    /// the rates map holds.
    pub fn conflict(&self, program: &Program) -> Option<String> {
        let mut names = BTreeSet::new();
        for u in uses(program) {
            let (RateestUse::Counts { name, .. } | RateestUse::Reads { name }) = u;
            names.insert(*name);
            if let RateestUse::Counts {
                name,
                interval,
                ewma_log,
                ..
            } = u
            {
                let Some(live) = self.by_name.get(name) else {
                    continue;
                };
                if Estimator::new(*interval, *ewma_log, 0, 0).map(|e| e.same_parameters(&live.est))
                    != Some(true)
                {
                    return Some(format!(
                        "xt target RATEEST --rateest-name {}: the estimator lives on with \
                         other parameters; not supported by the eBPF data plane",
                        String::from_utf8_lossy(name).trim_end_matches('\0')
                    ));
                }
            }
        }
        (names.len() > RATES_MAX).then(|| {
            format!(
                "more than {RATES_MAX} rate estimators (xt RATEEST, rateest) are not \
                 supported by the eBPF data plane"
            )
        })
    }

    /// Follows the estimators `program` names: makes the new ones, forgets those no
    /// rule names any more (and their rates in `map_pin`, when given).
    pub fn adopt(&mut self, program: &Program, now: Instant, map_pin: Option<&Path>) {
        let mut named = BTreeSet::new();
        for u in uses(program) {
            match u {
                RateestUse::Counts {
                    name,
                    interval,
                    ewma_log,
                    counter,
                } => {
                    named.insert(*name);
                    self.feeds.insert(*counter, *name);
                    if self.by_name.contains_key(name) {
                        continue;
                    }
                    // Control plane checks took the parameters (gen_new_estimator's).
                    let Some(est) = Estimator::new(*interval, *ewma_log, 0, 0) else {
                        continue;
                    };
                    let next = now + est.period();
                    self.by_name.insert(
                        *name,
                        Live {
                            est,
                            bytes: 0,
                            packets: 0,
                            next,
                            written: None,
                        },
                    );
                }
                RateestUse::Reads { name } => {
                    named.insert(*name);
                }
            }
        }
        let gone: Vec<[u8; 16]> = self
            .by_name
            .keys()
            .filter(|n| !named.contains(*n))
            .copied()
            .collect();
        // A replaced target's counter still feeds its estimator: its last counts
        // reach it after this switch (the kernel counted them while the rule lived).
        self.feeds.retain(|_, n| named.contains(n));
        for name in gone {
            self.by_name.remove(&name);
            if let Some(pin) = map_pin {
                if let Err(e) =
                    open(pin).and_then(|mut m| m.remove(&name).map_err(|e| e.to_string()))
                {
                    tracing::debug!(error = %e, "rate estimator's entry not removed");
                }
            }
        }
    }

    /// Takes the counts of the estimators' rule counters out of `tally` into their
    /// estimators (the engine has no use for them: they are no `counter` expression).
    pub fn absorb(&mut self, tally: &mut Tally) {
        if self.feeds.is_empty() {
            return;
        }
        tally.retain(|counter, (packets, bytes)| {
            let Some(name) = self.feeds.get(counter) else {
                return true;
            };
            if let Some(live) = self.by_name.get_mut(name) {
                live.packets = live.packets.wrapping_add(*packets);
                live.bytes = live.bytes.wrapping_add(*bytes);
            }
            false
        });
    }

    /// When the next period ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_name.values().map(|l| l.next).min()
    }

    /// Ends every period that ended by `now` (est_timer()), the counts absorbed so
    /// far being the counters then; the rates that changed, to write.
    pub fn tick(&mut self, now: Instant) -> Vec<([u8; 16], Sample)> {
        let mut changed = Vec::new();
        for (name, live) in &mut self.by_name {
            if live.next > now {
                continue;
            }
            live.est.tick(live.bytes, live.packets);
            live.next += live.est.period();
            if now >= live.next {
                // The timer was late: the kernel's next run is a jiffy away.
                live.next = now + JIFFY;
            }
            let rates = live.est.read();
            if live.written != Some(rates) {
                changed.push((*name, rates));
            }
        }
        changed
    }

    /// Writes `rates` to the pinned map; the written ones are remembered.
    pub fn write(&mut self, map_pin: &Path, rates: &[([u8; 16], Sample)]) -> Result<(), String> {
        if rates.is_empty() {
            return Ok(());
        }
        let mut map = open(map_pin)?;
        for (name, s) in rates {
            map.insert(*name, [s.bps, s.pps], 0)
                .map_err(|e| e.to_string())?;
            if let Some(live) = self.by_name.get_mut(name) {
                live.written = Some(*s);
            }
        }
        Ok(())
    }
}

/// Every estimator use of the program's rules.
fn uses(program: &Program) -> impl Iterator<Item = &RateestUse> + '_ {
    program
        .chains
        .iter()
        .flat_map(|c| c.rules.iter())
        .chain(program.regular.values().flat_map(|c| c.rules.iter()))
        .flat_map(|r| r.rateest.iter())
}

fn open(pin: &Path) -> Result<BpfHashMap<MapData, [u8; 16], [u64; 2]>, String> {
    let data = MapData::from_pin(pin).map_err(|e| e.to_string())?;
    BpfHashMap::try_from(Map::HashMap(data)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..s.len()].copy_from_slice(s.as_bytes());
        n
    }

    fn counter(rule: u64) -> CounterRef {
        CounterRef::Rule {
            table: 1,
            rule,
            expr: 1,
        }
    }

    fn estimators(uses: Vec<RateestUse>) -> Estimators {
        let mut e = Estimators::default();
        let now = Instant::now();
        for u in uses {
            if let RateestUse::Counts {
                name,
                interval,
                ewma_log,
                counter,
            } = u
            {
                e.feeds.insert(counter, name);
                e.by_name.insert(
                    name,
                    Live {
                        est: Estimator::new(interval, ewma_log, 0, 0).unwrap(),
                        bytes: 0,
                        packets: 0,
                        next: now,
                        written: None,
                    },
                );
            }
        }
        e
    }

    fn program(uses: Vec<RateestUse>) -> Program {
        use crate::compile::{Family, Hook, HookChain, SymRule};
        use nftshim_ebpf::ir::{Action, Verdict};
        let rules = uses
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                std::sync::Arc::new(SymRule {
                    handle: i as u64 + 1,
                    matches: Vec::new(),
                    action: Action::Continue,
                    statements: Vec::new(),
                    counters: Vec::new(),
                    rateest: vec![u],
                    flat: Default::default(),
                })
            })
            .collect();
        Program {
            chains: vec![HookChain {
                table: "filter".into(),
                chain: "INPUT".into(),
                family: Family::Ip,
                hook: Hook::Input,
                priority: 0,
                devices: Vec::new(),
                policy: Verdict::Accept,
                rules,
                policy_counter: None,
            }],
            regular: Default::default(),
            kernel_conntrack: 0,
            ct_labels: false,
            recent: Default::default(),
        }
    }

    /// An estimator a match kept lives on with its parameters: a new target of its
    /// name with others is refused; one with the same joins it; the last use gone,
    /// the name is free again.
    #[test]
    fn estimators_live_while_named() {
        let counts = |interval, ewma_log| RateestUse::Counts {
            name: name("RE1"),
            interval,
            ewma_log,
            counter: counter(1),
        };
        let reads = RateestUse::Reads { name: name("RE1") };
        let mut e = Estimators::default();
        let now = Instant::now();
        let first = program(vec![counts(-2, 1), reads.clone()]);
        assert_eq!(e.conflict(&first), None);
        e.adopt(&first, now, None);
        e.absorb(&mut [(counter(1), (10, 1000))].into_iter().collect());
        // The target goes, the match stays: the estimator and its counts stay.
        e.adopt(&program(vec![reads.clone()]), now, None);
        assert_eq!(e.by_name[&name("RE1")].packets, 10);
        assert!(e
            .conflict(&program(vec![counts(-1, 1), reads.clone()]))
            .is_some());
        assert!(e.conflict(&program(vec![counts(-2, 2)])).is_some());
        assert_eq!(e.conflict(&program(vec![counts(-2, 1), reads])), None);
        // Nothing names it: gone, and a new one may have other parameters.
        e.adopt(&program(Vec::new()), now, None);
        assert!(e.is_empty());
        assert_eq!(e.conflict(&program(vec![counts(3, 30)])), None);
    }

    /// Two targets feed one estimator; other counters stay for the engine; a period
    /// turns the sum into the kernel's rates.
    #[test]
    fn counters_feed_their_estimator() {
        let count = |rule| RateestUse::Counts {
            name: name("RE1"),
            interval: -2,
            ewma_log: 1,
            counter: counter(rule),
        };
        let mut e = estimators(vec![count(1), count(2)]);
        let mut tally = Tally::new();
        tally.insert(counter(1), (4, 400));
        tally.insert(counter(2), (6, 600));
        tally.insert(counter(3), (1, 1));
        e.absorb(&mut tally);
        assert_eq!(tally.len(), 1);
        assert!(tally.contains_key(&counter(3)));
        let start = e.next_deadline().unwrap();
        let rates = e.tick(start);
        // 10 packets, 1000 bytes in 250 ms, ewma_log 1 (see rateest.rs's tests).
        assert_eq!(rates, vec![(name("RE1"), Sample { bps: 2000, pps: 20 })]);
        // The next period ends 248 ms after the first.
        assert_eq!(e.next_deadline(), Some(start + Duration::from_millis(248)));
        // Not due yet: nothing changes.
        assert!(e.tick(start + Duration::from_millis(100)).is_empty());
    }
}
