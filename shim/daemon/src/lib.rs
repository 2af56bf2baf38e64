//! nftshimd: the kernel's side of nf_tables netlink, served to interposed applications
//! over a control socket (see `nftshim_ipc`), one ruleset per network namespace.

pub mod appsock;
pub mod caller;
pub mod config;
pub mod engine;
pub mod namespace;
pub mod netns;
pub mod outqueue;
pub mod persist;
pub mod portid;
pub mod seqpacket;
pub mod server;
pub mod session;
pub mod sockstate;
pub mod status;
pub mod sys;

pub use config::{Cli, DataplaneKind};
pub use engine::NamespaceState;
pub use server::{Options, Server};

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex even if a panicking thread poisoned it: every critical section here
/// leaves its data consistent between statements, and one failed session must not take
/// the namespace down for everyone.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
