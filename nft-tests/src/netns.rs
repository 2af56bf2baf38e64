//! Network namespaces created with `ip netns add` and always deleted again.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Context};

/// A named network namespace (`/run/netns/NAME`), deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name`; fails if it exists already.
    pub fn create(name: impl Into<String>) -> anyhow::Result<Netns> {
        let name = name.into();
        let result = crate::cleanup::create_netns(&name, || -> anyhow::Result<()> {
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .context("running `ip netns add`")?;
            if !out.status.success() {
                return Err(anyhow!(
                    "`ip netns add {name}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim_end()
                ));
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(Netns { name }),
            Err(Some(e)) => Err(e),
            Err(None) => Err(anyhow!("shutting down: not creating namespace {name}")),
        }
    }

    /// Creates `PREFIX-<pid>-<n>-SUFFIX` with a per-process counter `n`.
    pub fn create_unique(prefix: &str, suffix: &str) -> anyhow::Result<Netns> {
        let n = next_serial();
        Netns::create(format!("{prefix}-{}-{n}-{suffix}", std::process::id()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, for `setns`/`nsenter`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.name);
        crate::cleanup::forget_netns(&self.name);
    }
}

/// A fresh number for namespace names, unique within this process.
pub fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn delete_netns(name: &str) {
    match Command::new("ip").args(["netns", "del", name]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "warning: `ip netns del {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
        Err(e) => eprintln!("warning: cannot run `ip netns del {name}`: {e}"),
    }
}
