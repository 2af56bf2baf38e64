//! End-to-end throughput: trafgen as fast as one CPU sends, and the packets per second
//! that the receiver's filter let through, counted after a warm-up.

use std::time::{Duration, Instant};

use super::sender::Sender;
use super::stats::rate;
use super::topology::Topology;

/// The best packets-per-second of `windows` consecutive counting windows after
/// `warmup`. The best, because on a shared machine other work can only take CPU time
/// away from the sender and the receiver, never add packets.
pub fn measure(
    topo: &mut Topology,
    warmup: Duration,
    window: Duration,
    windows: usize,
) -> anyhow::Result<f64> {
    let mut sender = Sender::start(topo, None)?;
    std::thread::sleep(warmup);
    sender.check_running()?;
    let mut best: f64 = 0.0;
    let (mut c0, mut t0) = (topo.delivered()?, Instant::now());
    for _ in 0..windows.max(1) {
        std::thread::sleep(window);
        let (c1, t1) = (topo.delivered()?, Instant::now());
        best = best.max(rate(c1.saturating_sub(c0), t1 - t0));
        (c0, t0) = (c1, t1);
    }
    sender.check_running()?;
    Ok(best)
}
