//! End-to-end throughput: trafgen as fast as one CPU sends, and the packets per second
//! that the receiver's filter let through, counted after a warm-up.

use std::time::{Duration, Instant};

use super::sender::Sender;
use super::stats::rate;
use super::topology::Topology;

/// Packets per second delivered over `window`, after `warmup`.
pub fn measure(topo: &mut Topology, warmup: Duration, window: Duration) -> anyhow::Result<f64> {
    let mut sender = Sender::start(topo, None)?;
    std::thread::sleep(warmup);
    sender.check_running()?;
    let (c0, t0) = (topo.delivered()?, Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (topo.delivered()?, Instant::now());
    sender.check_running()?;
    drop(sender);
    Ok(rate(c1.saturating_sub(c0), t1 - t0))
}
