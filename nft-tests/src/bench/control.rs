//! Control-plane cost, measured as the user sees it: the wall-clock time of the real
//! `nft` process (start to exit) against the kernel or through the interposer.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::ruleset::{probe_rule, traffic_drop_rule, CHAIN, TABLE};
use super::sender::Sender;
use super::stats::{summarize, Summary};
use super::topology::Topology;
use crate::nft::{command_in, run, CmdOutput, Target};

/// Longest a single `nft` run may take (nftshimd took minutes for 50,000 rules).
const NFT_LIMIT: Duration = Duration::from_secs(1800);

/// Who enforces the receiver's ruleset.
#[derive(Clone, Debug)]
pub struct Backend {
    pub label: &'static str,
    pub target: Target,
    pub netns: String,
}

impl Backend {
    fn nft<S: AsRef<OsStr>>(&self, args: &[S]) -> (CmdOutput, Duration) {
        let cmd = command_in(&self.netns, &self.target, OsStr::new("nft"), args);
        let start = Instant::now();
        let out = run(cmd, None, NFT_LIMIT);
        (out, start.elapsed())
    }

    fn nft_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> anyhow::Result<(CmdOutput, Duration)> {
        let (out, took) = self.nft(args);
        if !out.success() {
            let shown: Vec<String> = args
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect();
            bail!(
                "{}: `nft {}` failed ({}): {}",
                self.label,
                shown.join(" "),
                out.exit,
                first_error(&out.stderr)
            );
        }
        Ok((out, took))
    }

    /// `nft -f FILE`: its wall-clock time.
    pub fn load(&self, file: &Path) -> anyhow::Result<Duration> {
        Ok(self.nft_ok(&[OsStr::new("-f"), file.as_os_str()])?.1)
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.nft_ok(&["flush", "ruleset"]).map(|_| ())
    }

    /// `nft add rule ... RULE` (appended, as a user types it: no echo, which would make
    /// nft fetch the whole ruleset first): the time taken.
    fn add(&self, rule: &str) -> anyhow::Result<Duration> {
        Ok(self.nft_ok(&["add", "rule", "inet", TABLE, CHAIN, rule])?.1)
    }

    /// The handle of the chain's last rule (untimed: `nft -a list chain`).
    fn last_handle(&self) -> anyhow::Result<u64> {
        let (out, _) = self.nft_ok(&["-a", "list", "chain", "inet", TABLE, CHAIN])?;
        last_listed_handle(&out.stdout)
            .ok_or_else(|| anyhow!("{}: no rule handle listed", self.label))
    }

    fn delete(&self, handle: u64) -> anyhow::Result<Duration> {
        let handle = handle.to_string();
        Ok(self
            .nft_ok(&["delete", "rule", "inet", TABLE, CHAIN, "handle", &handle])?
            .1)
    }

    /// `runs` times: add one rule at the end of the chain, then delete it again.
    pub fn add_delete(&self, runs: usize) -> anyhow::Result<(Summary, Summary)> {
        let rule = probe_rule();
        let (mut adds, mut deletes) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            adds.push(self.add(&rule)?);
            let handle = self.last_handle()?;
            deletes.push(self.delete(handle)?);
        }
        match (summarize(&adds), summarize(&deletes)) {
            (Some(a), Some(d)) => Ok((a, d)),
            _ => bail!("no runs"),
        }
    }
}

/// How long a rule took to act on traffic.
#[derive(Clone, Copy, Debug)]
pub struct Effect {
    /// From starting `nft add rule` until its process exited.
    pub command: Duration,
    /// From starting it until the last packet the filter let through was counted.
    pub effect: Duration,
}

/// Sends traffic at a steady rate, adds a rule that drops it, and watches the
/// receiver's counter until it stops. The rule is deleted again afterwards.
pub fn time_to_effect(backend: &Backend, topo: &mut Topology) -> anyhow::Result<Effect> {
    // 10,000 packets/s: 0.1 ms resolution without starving nftshimd's compiler.
    const GAP: Duration = Duration::from_micros(100);
    const POLL: Duration = Duration::from_millis(1);
    // The counter must stand still this long for the rule to count as in force.
    const QUIET: Duration = Duration::from_millis(300);
    const GIVE_UP: Duration = Duration::from_secs(1800);
    let mut sender = Sender::start(topo, Some(GAP))?;
    std::thread::sleep(Duration::from_millis(300));
    sender.check_running()?;
    let before = topo.delivered()?;
    std::thread::sleep(Duration::from_millis(100));
    if topo.delivered()? == before {
        bail!(
            "{}: no traffic arrives before the rule is added",
            backend.label
        );
    }
    let rule = traffic_drop_rule();
    let b = backend.clone();
    let start = Instant::now();
    let mut adder = Some(std::thread::spawn(move || {
        let r = b.add(&rule);
        (r, start.elapsed())
    }));
    let mut last = topo.delivered()?;
    let mut last_change = Duration::ZERO;
    let mut added: Option<(anyhow::Result<Duration>, Duration)> = None;
    loop {
        std::thread::sleep(POLL);
        let now = topo.delivered()?;
        let t = start.elapsed();
        if now != last {
            last = now;
            last_change = t;
        }
        if adder.as_ref().is_some_and(|a| a.is_finished()) {
            let joined = adder.take().map(|a| a.join());
            added = match joined {
                Some(Ok(result)) => Some(result),
                _ => bail!("{}: the nft thread panicked", backend.label),
            };
        }
        if added.is_some() && t.saturating_sub(last_change) >= QUIET || t > GIVE_UP {
            break;
        }
    }
    drop(sender);
    let Some((result, command)) = added else {
        bail!(
            "{}: `nft add rule` did not finish within {GIVE_UP:?}",
            backend.label
        );
    };
    result?;
    backend.delete(backend.last_handle()?)?;
    if start.elapsed() > GIVE_UP {
        bail!(
            "{}: the drop rule did not stop the traffic within {GIVE_UP:?}",
            backend.label
        );
    }
    Ok(Effect {
        command,
        effect: last_change,
    })
}

/// The last handle in `nft -a` output: `... # handle 42`.
pub fn last_listed_handle(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| l.rsplit_once("# handle "))
        .find_map(|(_, h)| h.trim().parse().ok())
}

/// The first line that says what went wrong.
fn first_error(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("Error"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_handle_of_a_listing() {
        let out = "table inet bench { # handle 3\n\tchain input { # handle 1\n\t\ttype filter hook input priority filter; policy accept;\n\t\tip saddr 10.128.0.0/24 tcp dport 20000 drop # handle 2\n\t\tip saddr 203.0.113.7 tcp dport 4444 drop # handle 1234\n\t}\n}\n";
        assert_eq!(last_listed_handle(out), Some(1234));
        assert_eq!(last_listed_handle("nothing\n"), None);
    }
}
