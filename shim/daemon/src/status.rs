//! The answer to `Op::Status`: what `nftshim status` shows.

use nftshim_ipc::{DataplaneStatus, NamespaceStatus, StatusReport};

use crate::engine::NamespaceState;
use crate::server::Daemon;

/// Collects the status. Blocking: waits for running batches to read generation ids.
pub fn collect<S: NamespaceState>(daemon: &Daemon<S>) -> StatusReport {
    StatusReport {
        dataplane: daemon.dataplane.name.to_string(),
        enforcing: daemon.dataplane.enforcing,
        namespaces: daemon
            .registry
            .snapshot()
            .iter()
            .map(|ns| NamespaceStatus {
                inode: ns.id.inode,
                cookie: Some(ns.id.cookie),
                name: None,
                generation: ns.genid(),
                tables: None,
                sockets: u32::try_from(ns.session_count()).ok(),
                dataplane: ns.dataplane_stats().map(|s| DataplaneStatus {
                    programs: s.programs,
                    loads: s.loads,
                    patches: s.patches,
                    map_writes: s.map_writes,
                }),
            })
            .collect(),
        pid: Some(std::process::id()),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
    }
}
