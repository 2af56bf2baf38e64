//! Enforcement of committed rulesets.
//!
//! The engine calls [`Dataplane::check`] with the ruleset a batch would produce before it
//! commits, and [`Dataplane::apply`] after. A data plane refuses what it cannot enforce
//! (EOPNOTSUPP): the whole batch is then aborted, so nothing is ever accepted and left
//! unenforced. [`Dataplane::check_rule`] runs as each rule is added, so that most
//! refusals land on the rule's own message, where the kernel reports an expression it
//! cannot initialise; what only the whole ruleset shows is reported, as the kernel's
//! commit errors are, on the first message of the batch.

use crate::view::{Chain, Rule, RulesetView, Table};

/// A refusal from the data plane.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DataplaneError {
    /// Errno for the batch (normally EOPNOTSUPP; the sign is ignored).
    pub errno: i32,
    pub reason: String,
}

/// Where a data plane hands the packets its rules logged to nfnetlink_log groups
/// (xt_NFLOG, `log group`); the daemon builds and sends the listeners' messages.
pub type NflogSink = std::sync::Arc<dyn Fn(Vec<crate::ulog::packet::LogPacket>) + Send + Sync>;

/// Enforces a namespace's ruleset.
pub trait Dataplane: Send {
    /// A short name for logs and `nftshim status`.
    fn name(&self) -> &'static str;
    /// Whether packets are filtered at all.
    fn enforces(&self) -> bool;
    /// Whether the ruleset a batch would commit can be enforced.
    fn check(&self, proposed: &RulesetView<'_>) -> Result<(), DataplaneError> {
        let _ = proposed;
        Ok(())
    }
    /// Whether one rule, just added by `adder`'s batch message to `chain` of `table` in
    /// the ruleset `proposed` (the batch so far), can be enforced, as far as the rule
    /// alone tells. The adder matters where the kernel resolves a name in the adding
    /// process's context once, when the rule is added.
    fn check_rule(
        &self,
        proposed: &RulesetView<'_>,
        table: &Table,
        chain: &Chain,
        rule: &Rule,
        adder: &crate::Caller,
    ) -> Result<(), DataplaneError> {
        let _ = (proposed, table, chain, rule, adder);
        Ok(())
    }
    /// Enforces a committed ruleset.
    fn apply(&mut self, committed: &RulesetView<'_>) {
        let _ = committed;
    }
    /// Enforces a committed ruleset that the last [`Dataplane::check`] accepted as it
    /// is (a batch's commit): a data plane may use what that check built.
    fn apply_checked(&mut self, committed: &RulesetView<'_>) {
        self.apply(committed)
    }
    /// What the data plane counted since the last call, per counter. The engine adds it
    /// to the values it stores before it answers a GET, so that listings, resets and
    /// persistence see the packets the data plane counted (the kernel's counters live
    /// with the rules; here they live in the engine's ruleset).
    fn take_counts(&mut self) -> Vec<CountDelta> {
        Vec::new()
    }
    /// What the data plane did so far, for `nftshim status` (None: nothing to say).
    fn stats(&self) -> Option<DataplaneStats> {
        None
    }
    /// Where logged packets go (set once, before the first ruleset).
    fn set_nflog_sink(&mut self, sink: NflogSink) {
        let _ = sink;
    }
}

/// How a data plane has been keeping up with commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneStats {
    /// Programs attached now.
    pub programs: u64,
    /// Programs loaded (and verified) afresh.
    pub loads: u64,
    /// Programs that took a new ruleset by rewriting their maps in place.
    pub patches: u64,
    /// Map entries written (updated or deleted) so far.
    pub map_writes: u64,
}

/// A counter of the ruleset, by handles (stable across generations, unlike positions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CounterRef {
    /// The `counter` expression at index `expr` of rule `rule` (handles are per table),
    /// or its `quota` expression (the delta's bytes are what the quota consumed).
    Rule { table: u64, rule: u64, expr: u32 },
    /// A named counter object (`counter name ...`).
    Object { table: u64, object: u64 },
    /// A base chain's own counters (NFTA_CHAIN_COUNTERS, as iptables-nft creates them):
    /// the packets that met the chain's policy, as `nft_update_chain_stats` counts.
    Chain { table: u64, chain: u64 },
}

/// Packets and bytes to add to one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountDelta {
    pub counter: CounterRef,
    pub packets: u64,
    pub bytes: u64,
}

/// `--dataplane none`: stores and lists, enforces nothing. For protocol testing only.
#[derive(Debug, Default)]
pub struct NoDataplane;

impl Dataplane for NoDataplane {
    fn name(&self) -> &'static str {
        "none"
    }
    fn enforces(&self) -> bool {
        false
    }
}
