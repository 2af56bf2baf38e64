//! Process-wide record of what the harness created outside itself (network namespaces,
//! daemon processes), so that a signal handler can remove them when the run is
//! interrupted. Normal and panicking exits are covered by the guards' `Drop`; a signal
//! is not (the default action kills the process without unwinding), hence this.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, Once};

#[derive(Default)]
struct Registry {
    netns: BTreeSet<String>,
    pids: BTreeSet<i32>,
    /// Set once a signal arrived: no new namespace may be created after the sweep.
    shutting_down: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    netns: BTreeSet::new(),
    pids: BTreeSet::new(),
    shutting_down: false,
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock must not stop the cleanup of everything else.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `create` under the registry lock and records `name` if it succeeds, so that a
/// concurrent signal sweep either sees the namespace or prevents its creation.
pub(crate) fn create_netns<E>(
    name: &str,
    create: impl FnOnce() -> Result<(), E>,
) -> Result<(), Option<E>> {
    let mut reg = registry();
    if reg.shutting_down {
        return Err(None);
    }
    create().map_err(Some)?;
    reg.netns.insert(name.to_string());
    Ok(())
}

pub(crate) fn forget_netns(name: &str) {
    registry().netns.remove(name);
}

pub(crate) fn register_pid(pid: i32) {
    registry().pids.insert(pid);
}

pub(crate) fn forget_pid(pid: i32) {
    registry().pids.remove(&pid);
}

/// Installs (once per process) a handler for SIGINT, SIGTERM and SIGHUP that kills the
/// registered processes, deletes the registered namespaces and exits with 128+signal.
pub fn install_signal_cleanup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warning: cannot install signal cleanup: {e}");
                return;
            }
        };
        std::thread::Builder::new()
            .name("signal-cleanup".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    sweep();
                    std::process::exit(128 + sig);
                }
            })
            .ok();
    });
}

/// Kills every registered process and deletes every registered namespace.
fn sweep() {
    let mut reg = registry();
    reg.shutting_down = true;
    for &pid in &reg.pids {
        // SAFETY: plain kill(2) on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for name in std::mem::take(&mut reg.netns) {
        crate::netns::delete_netns(&name);
    }
}
