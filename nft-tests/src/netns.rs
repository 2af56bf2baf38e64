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

/// Joins `a` and `b` with a veth pair (`a_dev` in `a` with `a_addr`, `b_dev` in `b`
/// with `b_addr`, both CIDR), and brings both ends and both loopbacks up.
pub fn veth_pair(
    (a, a_dev, a_addr): (&Netns, &str, &str),
    (b, b_dev, b_addr): (&Netns, &str, &str),
) -> anyhow::Result<()> {
    let ip = |args: &[&str]| -> anyhow::Result<()> {
        let ok = Command::new("ip").args(args).status()?.success();
        ok.then_some(())
            .ok_or_else(|| anyhow!("ip {args:?} failed"))
    };
    ip(&[
        "link",
        "add",
        a_dev,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ])?;
    ip(&["-n", a.name(), "addr", "add", a_addr, "dev", a_dev])?;
    ip(&["-n", b.name(), "addr", "add", b_addr, "dev", b_dev])?;
    for (ns, dev) in [(a, a_dev), (b, b_dev), (a, "lo"), (b, "lo")] {
        ip(&["-n", ns.name(), "link", "set", dev, "up"])?;
    }
    Ok(())
}
