//! Per-packet classification cost of the program nftshimd attached to the receiver's
//! interface, as the kernel measures it with BPF_PROG_TEST_RUN (mean of `repeat` runs
//! of one frame, best of a few rounds). The program is the daemon's own, with its
//! maps: what the measured traffic goes through.

use std::time::Duration;

use anyhow::{anyhow, Context};

use super::bpf::{self, Prog, BPF_TCX_INGRESS};
use super::ruleset::{Packet, Rule};
use super::topology::{Topology, RX_MAC, TX_MAC};
use crate::packets::in_netns;

/// TC verdicts.
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

#[derive(Clone, Copy, Debug)]
pub struct Classify {
    /// A packet of the measured traffic: no rule matches, the policy accepts it.
    pub miss: Duration,
    /// A packet that the rule in the middle of the chain matches.
    pub hit_middle: Option<Duration>,
    /// `miss` for a flow that conntrack has seen both ways, when the ruleset starts
    /// with `ct state established,related accept`.
    pub established: Option<Duration>,
}

/// What a test run measured and the verdict it gave.
fn best_of(
    prog: &Prog,
    frame: &[u8],
    ctx: &[u8],
    repeat: u32,
    rounds: usize,
) -> std::io::Result<(Duration, u32)> {
    let mut best: Option<(Duration, u32)> = None;
    for _ in 0..rounds.max(1) {
        let run = prog.test_run(frame, Some(ctx), repeat)?;
        if best.is_none_or(|(d, _)| run.duration < d) {
            best = Some((run.duration, run.retval));
        }
    }
    Ok(best.expect("at least one round"))
}

/// The program at the end of `brx0`'s TCX ingress (nftshimd's, the only one there).
pub fn ingress_program(topo: &Topology) -> anyhow::Result<u32> {
    let ifindex = topo.rx_ifindex;
    let ids = in_netns(&topo.rx, || bpf::tcx_programs(ifindex, BPF_TCX_INGRESS))
        .context("querying the TCX ingress programs")?;
    ids.last()
        .copied()
        .ok_or_else(|| anyhow!("nftshimd attached no program at brx0 ingress"))
}

/// Measures the miss and middle-hit packets (N = `rules`) on the attached program.
pub fn measure(
    topo: &Topology,
    rules: usize,
    established_frame: Option<&[u8]>,
    repeat: u32,
    rounds: usize,
) -> anyhow::Result<Classify> {
    let id = ingress_program(topo)?;
    let ifindex = topo.rx_ifindex;
    let miss_frame = Packet::traffic(0).frame(TX_MAC, RX_MAC);
    // The middle rule, or the next one that has an IPv4 packet.
    let hit_frame = (rules / 2..rules)
        .find_map(|i| Rule::nth(i).matching_packet())
        .map(|p| p.frame(TX_MAC, RX_MAC));
    let established_frame = established_frame.map(<[u8]>::to_vec);
    let (miss, hit, est) = in_netns(&topo.rx, move || {
        let prog = Prog::open(id)?;
        let ctx = bpf::skb_ctx(ifindex);
        let miss = best_of(&prog, &miss_frame, &ctx, repeat, rounds)?;
        let hit = match &hit_frame {
            Some(f) => Some(best_of(&prog, f, &ctx, repeat, rounds)?),
            None => None,
        };
        let est = match &established_frame {
            Some(f) => Some(best_of(&prog, f, &ctx, repeat, rounds)?),
            None => None,
        };
        Ok((miss, hit, est))
    })
    .context("BPF_PROG_TEST_RUN on nftshimd's program")?;
    // The traffic must pass (policy accept) and the middle rule decide: otherwise the
    // program is not classifying what the ruleset says, and the timing means nothing.
    if miss.1 != TC_ACT_OK {
        anyhow::bail!(
            "the measured traffic got TC verdict {} instead of pass",
            miss.1
        );
    }
    if let Some((_, v)) = hit {
        if v != TC_ACT_OK && v != TC_ACT_SHOT {
            anyhow::bail!("the middle rule's packet got TC verdict {v}");
        }
    }
    Ok(Classify {
        miss: miss.0,
        hit_middle: hit.map(|h| h.0),
        established: est.map(|e| e.0),
    })
}
