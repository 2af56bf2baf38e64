//! The traffic: netsniff-ng's trafgen in the sender namespace, small UDP packets of
//! several flows (source ports [`TRAFFIC_SPORTS`]) to the receiver.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::ruleset::{TRAFFIC_DPORT, TRAFFIC_DST, TRAFFIC_SPORTS, TRAFFIC_SRC};
use super::topology::{mac, Topology, RX_MAC, TX_IF, TX_MAC};

/// trafgen's packet description: one 60-byte UDP frame whose source port counts
/// through the flows.
pub fn trafgen_config() -> String {
    format!(
        "{{\n  eth(da={}, sa={}),\n  ipv4(saddr={TRAFFIC_SRC}, daddr={TRAFFIC_DST}, ttl=64),\n  \
         udp(sport=dinc({}, {}), dport={TRAFFIC_DPORT}),\n  fill(0x00, 18)\n}}\n",
        mac(RX_MAC),
        mac(TX_MAC),
        TRAFFIC_SPORTS.start(),
        TRAFFIC_SPORTS.end()
    )
}

/// A running trafgen, stopped when dropped.
pub struct Sender {
    child: Child,
    _config: tempfile::NamedTempFile,
}

impl Sender {
    /// Sends as fast as one CPU can (`gap` = None) or one packet per `gap`.
    pub fn start(topo: &Topology, gap: Option<Duration>) -> anyhow::Result<Sender> {
        let mut config = tempfile::Builder::new()
            .prefix("nftshim-bench-")
            .suffix(".trafgen")
            .tempfile()?;
        config.write_all(trafgen_config().as_bytes())?;
        config.flush()?;
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            topo.tx.name(),
            "trafgen",
            "--dev",
            TX_IF,
            "--conf",
        ])
        .arg(config.path())
        .args(["--cpus", "1", "--no-sock-mem"]);
        if let Some(gap) = gap {
            cmd.args(["--gap", &format!("{}us", gap.as_micros().max(1))]);
        }
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting trafgen (scripts/setup.sh installs netsniff-ng)")?;
        crate::cleanup::register_pid(child.id() as i32);
        Ok(Sender {
            child,
            _config: config,
        })
    }

    /// `Err` if trafgen has exited already (it only stops when told to).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!("trafgen exited early ({status})"),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group made for this child (ip and trafgen).
        unsafe { libc::kill(-pid, libc::SIGINT) };
        let _ = self.child.wait();
        crate::cleanup::forget_pid(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_both_ends_and_every_flow() {
        let c = trafgen_config();
        assert!(c.contains("eth(da=02:00:00:00:09:02, sa=02:00:00:00:09:01)"));
        assert!(c.contains("ipv4(saddr=10.9.0.1, daddr=10.9.0.2"));
        assert!(c.contains("udp(sport=dinc(10000, 10007), dport=9000)"));
        assert!(c.contains("fill(0x00, 18)"));
    }
}
