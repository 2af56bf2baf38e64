//! [`EbpfDataplane`]: the engine's data plane for one network namespace.
//!
//! `check` decompiles the proposed ruleset (refusing what cannot be enforced) and has
//! the namespace's worker load and fill its programs; `apply` switches the worker to
//! them. Everything that can fail happens in `check`, so a refusal aborts the batch
//! and nothing of it applies.
//!
//! Namespace lifetime: the worker thread sits inside the namespace while the ruleset
//! has something to enforce, which keeps the namespace alive as long as that ruleset
//! does (so `ip netns del` of a namespace with a non-empty nftshim ruleset leaves it,
//! and its interfaces, in place until the ruleset is flushed or nftshimd stops). With
//! no ruleset the data plane holds nothing of the namespace. The alternative, holding
//! nothing and re-finding the namespace on every link event, cannot attach to a new
//! interface of a namespace only a file descriptor elsewhere keeps alive: an
//! unenforced interface. Enforcement wins.

pub mod addrtype;
pub mod links;
pub mod logline;
pub mod netns;
pub mod nflog;
pub mod pins;
pub mod rateest;
pub mod recent;
pub mod rtnl;
pub mod worker;

use std::sync::{Arc, Mutex};

use nftshim_engine::view::{Chain, Rule, Table};
use nftshim_engine::{
    CountDelta, Dataplane, DataplaneError, DataplaneStats, NflogSink, RulesetView,
};

use crate::compile::{check_rule, decompile_cached, refuse, Program, RuleCache};
pub use netns::NetnsKey;
use worker::{Worker, WorkerStatus};

pub struct EbpfDataplane {
    key: NetnsKey,
    /// Started by the first ruleset with something to enforce, stopped when there is
    /// none; a mutex because `check` takes `&self`.
    worker: Mutex<Option<Worker>>,
    /// Counts of a worker that stopped, not yet handed to the engine.
    carry: Vec<CountDelta>,
    /// What the last `check` decompiled (None: it refused), for the `apply_checked`
    /// that follows: a commit decompiles its ruleset once.
    checked: Mutex<Option<Arc<Program>>>,
    /// Rules decompiled by earlier commits: a commit decompiles what it changed.
    rule_cache: Mutex<RuleCache>,
    /// Where the worker hands NFLOG packets.
    nflog_sink: Option<NflogSink>,
}

impl EbpfDataplane {
    pub fn new(key: NetnsKey) -> Self {
        EbpfDataplane {
            key,
            worker: Mutex::new(None),
            carry: Vec::new(),
            checked: Mutex::new(None),
            rule_cache: Mutex::new(RuleCache::default()),
            nflog_sink: None,
        }
    }

    /// Programs attached now, or None when nothing is enforced.
    pub fn status(&self) -> Option<WorkerStatus> {
        self.lock().as_ref().map(Worker::status)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Worker>> {
        self.worker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_worker<'a>(
        &self,
        guard: &'a mut Option<Worker>,
    ) -> Result<&'a Worker, DataplaneError> {
        if guard.is_none() {
            let w = Worker::start(self.key, self.nflog_sink.clone()).map_err(|e| {
                refuse(format!(
                    "the eBPF data plane cannot enter this network namespace: {e}"
                ))
            })?;
            tracing::info!(netns_cookie = self.key.cookie, "eBPF data plane started");
            *guard = Some(w);
        }
        guard
            .as_ref()
            .ok_or_else(|| refuse("the eBPF data plane worker is missing"))
    }
}

impl Dataplane for EbpfDataplane {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn set_nflog_sink(&mut self, sink: NflogSink) {
        self.nflog_sink = Some(sink);
    }

    fn enforces(&self) -> bool {
        true
    }

    fn check(&self, proposed: &RulesetView<'_>) -> Result<(), DataplaneError> {
        let result = self.check_inner(proposed);
        if let Err(e) = &result {
            // The client sees only the errno; the reason goes to the log.
            tracing::info!(netns_cookie = self.key.cookie, reason = %e.reason, "batch refused by the eBPF data plane");
        }
        result
    }

    fn check_rule(
        &self,
        proposed: &RulesetView<'_>,
        table: &Table,
        chain: &Chain,
        rule: &Rule,
        adder: &nftshim_engine::Caller,
    ) -> Result<(), DataplaneError> {
        let result = check_rule(proposed, table, chain, rule, adder);
        if let Err(e) = &result {
            tracing::info!(netns_cookie = self.key.cookie, reason = %e.reason, "rule refused by the eBPF data plane");
        }
        result
    }

    fn apply(&mut self, committed: &RulesetView<'_>) {
        self.checked_program().take();
        match self.decompile(committed) {
            Ok(program) => self.enforce(Arc::new(program)),
            Err(e) => {
                // `check` accepted this very ruleset; only a restored one gets here.
                tracing::error!(netns_cookie = self.key.cookie, error = %e, "ruleset NOT enforced: the eBPF data plane refuses it");
                self.enforce(Arc::new(Program::default()))
            }
        }
    }

    fn apply_checked(&mut self, committed: &RulesetView<'_>) {
        let checked = self.checked_program().take();
        match checked {
            Some(program) => self.enforce(program),
            None => self.apply(committed),
        }
    }

    fn stats(&self) -> Option<DataplaneStats> {
        let st = self.status()?;
        Some(DataplaneStats {
            programs: st.programs as u64,
            loads: st.loads,
            patches: st.patches,
            map_writes: st.map_writes,
        })
    }

    fn take_counts(&mut self) -> Vec<CountDelta> {
        let t = std::time::Instant::now();
        let mut deltas = std::mem::take(&mut self.carry);
        if let Some(w) = self.lock().as_ref() {
            deltas.extend(w.take_counts());
        }
        tracing::debug!(netns_cookie = self.key.cookie, elapsed = ?t.elapsed(), "counters taken");
        deltas
    }
}

impl EbpfDataplane {
    fn decompile(&self, view: &RulesetView<'_>) -> Result<Program, DataplaneError> {
        let mut cache = self.rule_cache.lock().unwrap_or_else(|p| p.into_inner());
        decompile_cached(view, &mut cache)
    }

    fn checked_program(&self) -> std::sync::MutexGuard<'_, Option<Arc<Program>>> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_inner(&self, proposed: &RulesetView<'_>) -> Result<(), DataplaneError> {
        self.checked_program().take();
        let t = std::time::Instant::now();
        let program = Arc::new(self.decompile(proposed)?);
        tracing::debug!(netns_cookie = self.key.cookie, elapsed = ?t.elapsed(), "ruleset decompiled");
        if program.is_empty() {
            *self.checked_program() = Some(program);
            return Ok(());
        }
        let mut guard = self.lock();
        let started_here = guard.is_none();
        let t = std::time::Instant::now();
        let result = self
            .ensure_worker(&mut guard)
            .and_then(|w| w.prepare(program.clone()));
        tracing::debug!(netns_cookie = self.key.cookie, elapsed = ?t.elapsed(), "programs prepared");
        match &result {
            Ok(()) => *self.checked_program() = Some(program),
            Err(_) if started_here => {
                // Nothing was enforced before: hold nothing of the namespace.
                *guard = None;
            }
            Err(_) => {}
        }
        result
    }

    /// Switches the worker to `program` (started if need be), or stops it when the
    /// program enforces nothing.
    fn enforce(&mut self, program: Arc<Program>) {
        let mut guard = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if program.is_empty() {
            if let Some(w) = guard.take() {
                // Rules of dormant tables keep what they counted.
                self.carry.extend(w.take_counts());
                w.retire();
                tracing::info!(
                    netns_cookie = self.key.cookie,
                    "eBPF data plane stopped: nothing to enforce"
                );
            }
            return;
        }
        let t = std::time::Instant::now();
        match self.ensure_worker(&mut guard) {
            Ok(w) => {
                w.commit(program);
                tracing::debug!(netns_cookie = self.key.cookie, elapsed = ?t.elapsed(), "programs switched");
            }
            Err(e) => {
                tracing::error!(netns_cookie = self.key.cookie, error = %e, "ruleset NOT enforced")
            }
        }
    }
}

/// Whether this process can load the data plane's programs at all (root or CAP_BPF
/// and CAP_NET_ADMIN, a kernel with BPF, bpf_loop and TCX). nftshimd checks it at
/// start rather than refusing every commit later.
pub fn probe() -> Result<(), String> {
    use nftshim_ebpf::ir::{Chain, L3Scope, Verdict};
    use nftshim_ebpf::loader::{LoadOptions, LoadedChain};
    let empty = Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: Vec::new(),
    };
    let compiled = nftshim_ebpf::maps::compile(&empty).map_err(|e| e.to_string())?;
    LoadedChain::load(
        &compiled,
        LoadOptions {
            tc_egress: true,
            xdp: false,
            ..LoadOptions::default()
        },
    )
    .map(drop)
    .map_err(|e| {
        format!(
            "{e}: {}",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        )
    })
}
