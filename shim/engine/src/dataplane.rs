//! Enforcement of committed rulesets.
//!
//! The engine calls [`Dataplane::check`] with the ruleset a batch would produce before it
//! commits, and [`Dataplane::apply`] after. A data plane refuses what it cannot enforce
//! (EOPNOTSUPP): the whole batch is then aborted, so nothing is ever accepted and left
//! unenforced.

/// A refusal from the data plane.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DataplaneError {
    /// Negative errno for the failing message (normally -EOPNOTSUPP).
    pub errno: i32,
    pub reason: String,
}

/// Enforces a namespace's ruleset. The ruleset view type is filled in by the engine.
pub trait Dataplane: Send {
    /// A short name for logs and `nftshim status`.
    fn name(&self) -> &'static str;
    /// Whether packets are filtered at all.
    fn enforces(&self) -> bool;
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
