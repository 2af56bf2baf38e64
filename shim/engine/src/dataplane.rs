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
    /// Whether one rule, just added by a batch message to `chain` of `table` in the
    /// ruleset `proposed` (the batch so far), can be enforced, as far as the rule alone
    /// tells.
    fn check_rule(
        &self,
        proposed: &RulesetView<'_>,
        table: &Table,
        chain: &Chain,
        rule: &Rule,
    ) -> Result<(), DataplaneError> {
        let _ = (proposed, table, chain, rule);
        Ok(())
    }
    /// Enforces a committed ruleset.
    fn apply(&mut self, committed: &RulesetView<'_>) {
        let _ = committed;
    }
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
