//! Enforcement of committed rulesets.
//!
//! The engine calls [`Dataplane::check`] with the ruleset a batch would produce before it
//! commits, and [`Dataplane::apply`] after. A data plane refuses what it cannot enforce
//! (EOPNOTSUPP): the whole batch is then aborted, so nothing is ever accepted and left
//! unenforced. As with the kernel's commit errors, the error is reported on the first
//! message of the batch.

use crate::view::RulesetView;

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
