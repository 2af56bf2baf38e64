//! The answer to `Op::Status`: what `nftshim status` shows.

use serde::{Deserialize, Serialize};

use crate::engine::NamespaceState;
use crate::server::Daemon;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStatus {
    pub cookie: u64,
    pub inode: u64,
    pub genid: u32,
    pub sessions: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub dataplane: String,
    /// False means rules are stored and listed but no packet is filtered.
    pub enforcing: bool,
    pub namespaces: Vec<NamespaceStatus>,
    pub pid: u32,
    pub version: String,
}

/// Collects the status. Blocking: waits for running batches to read generation ids.
pub fn collect<S: NamespaceState>(daemon: &Daemon<S>) -> Status {
    Status {
        dataplane: daemon.dataplane.name.to_string(),
        enforcing: daemon.dataplane.enforcing,
        namespaces: daemon
            .registry
            .snapshot()
            .iter()
            .map(|ns| NamespaceStatus {
                cookie: ns.id.cookie,
                inode: ns.id.inode,
                genid: ns.genid(),
                sessions: ns.session_count(),
            })
            .collect(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}
