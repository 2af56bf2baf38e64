//! `nftshim-bench`: nftshim against the kernel's nftables, side by side, as the ruleset
//! grows (issue 4). One module per measurement:
//!
//! - [`ruleset`]: the generated rulesets and the packets that match them or not;
//! - [`classify`]: per-packet cost of nftshimd's program (BPF_PROG_TEST_RUN);
//! - [`throughput`]: packets per second through a veth pair, no filter / kernel /
//!   nftshim ([`topology`], [`sender`]);
//! - [`control`]: `nft -f`, `nft add rule`, `nft delete rule`, time until a rule acts;
//! - [`memory`]: BPF map capacity and nftshimd's RSS ([`bpf`] for the syscalls);
//! - [`stats`], [`table`] and [`plot`]: summaries, the markdown and the SVG.

pub mod bpf;
pub mod classify;
pub mod control;
pub mod memory;
pub mod plot;
pub mod ruleset;
pub mod sender;
pub mod stats;
pub mod table;
pub mod throughput;
pub mod topology;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bins::Binaries;
use crate::daemon::Daemon;
use crate::nft::Target;
use classify::Classify;
use control::{Backend, Effect};
use memory::Memory;
use ruleset::Spec;
use stats::Summary;
use topology::Topology;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub sizes: Vec<usize>,
    pub quick: bool,
    /// Throughput: time before counting, the counting window, and how many windows
    /// (the best counts).
    pub warmup: Duration,
    pub window: Duration,
    pub windows: usize,
    /// Test runs: repetitions per BPF_PROG_TEST_RUN, and rounds (the best is kept).
    pub repeat: u32,
    pub rounds: usize,
}

impl Config {
    pub fn quick() -> Config {
        Config {
            sizes: vec![1, 100, 1_000],
            quick: true,
            warmup: Duration::from_millis(200),
            window: Duration::from_millis(300),
            windows: 1,
            repeat: 10_000,
            rounds: 3,
        }
    }

    pub fn full() -> Config {
        Config {
            // 10 as well: the per-packet target compares 10,000 rules with 10.
            sizes: vec![1, 10, 100, 1_000, 10_000, 50_000],
            quick: false,
            warmup: Duration::from_millis(500),
            window: Duration::from_secs(1),
            windows: 3,
            repeat: 100_000,
            rounds: 5,
        }
    }

    /// Runs of `nft add rule` + `nft delete rule` at size `n`: fewer at big sizes,
    /// where nftshimd recompiles the whole program for each, so that a full run stays
    /// within bounds (nftshimd took 5–9 s
    /// per change at 10,000 rules and minutes at 50,000 when this was written).
    pub fn add_delete_runs(&self, n: usize) -> usize {
        match (self.quick, n) {
            (true, _) => 3,
            (false, 0..=1_000) => 30,
            (false, 1_001..=10_000) => 10,
            _ => 1,
        }
    }
}

/// One backend's results at one size.
#[derive(Clone, Debug, Default)]
pub struct SideResult {
    pub load: Option<Duration>,
    pub pps: Option<f64>,
    pub add: Option<Summary>,
    pub delete: Option<Summary>,
    pub effect: Option<Effect>,
}

#[derive(Clone, Debug)]
pub struct SizeResult {
    pub rules: usize,
    pub ceiling_pps: Option<f64>,
    pub kernel: SideResult,
    pub shim: SideResult,
    pub classify: Option<Classify>,
    pub memory: Option<Memory>,
}

/// The machine, for the report.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub cpu_model: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel,
            cpu_model,
        }
    }
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub quick: bool,
    /// Whether nftshim's data plane took `ct state`, so the rulesets start with
    /// `ct state established,related accept`; the daemon's answer when it did not.
    pub conntrack: Result<(), String>,
    pub sizes: Vec<SizeResult>,
    /// Measurements that failed, with why.
    pub errors: Vec<String>,
    pub elapsed: Duration,
    /// /proc/loadavg (1, 5, 15 min) at the start and at the end: how busy the machine
    /// was with other work.
    pub load_start: String,
    pub load_end: String,
}

/// The three load averages from /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Records a failed measurement and goes on.
fn keep<T>(errors: &mut Vec<String>, what: String, r: anyhow::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("  {what}: FAILED: {e:#}");
            errors.push(format!("{what}: {e:#}"));
            None
        }
    }
}

/// Does nftshim's data plane take `ct state` yet? (Another issue enables it.)
fn probe_conntrack(shim: &Backend, dir: &Path) -> anyhow::Result<Result<(), String>> {
    let file = dir.join("conntrack-probe.nft");
    std::fs::write(
        &file,
        ruleset::render(Spec {
            rules: 1,
            conntrack: true,
        }),
    )?;
    let result = shim.load(&file).map(|_| ()).map_err(|e| format!("{e:#}"));
    shim.flush()?;
    Ok(result)
}

/// Runs every measurement at every size. Progress goes to stderr; `after_each` gets
/// the report so far after each size (so that a long run interrupted late still
/// leaves its results).
pub fn run(
    config: &Config,
    bins: &Binaries,
    command: String,
    mut after_each: impl FnMut(&Report),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let load_start = load_average();
    crate::cleanup::install_signal_cleanup();
    let mut topo = Topology::create().context("creating the namespaces")?;
    let daemon = Daemon::start(&bins.nftshimd, "ebpf")?;
    let workdir = tempfile::Builder::new()
        .prefix("nftshim-bench-")
        .tempdir()?;
    let kernel = Backend {
        label: "kernel",
        target: Target::Kernel,
        netns: topo.rx.name().to_string(),
    };
    let shim = Backend {
        label: "nftshim",
        target: Target::Shim {
            preload: bins.preload.clone(),
            socket: daemon.socket().to_path_buf(),
        },
        netns: topo.rx.name().to_string(),
    };
    let conntrack = probe_conntrack(&shim, workdir.path())?;
    match &conntrack {
        Ok(()) => eprintln!("conntrack: nftshim takes `ct state`; rulesets start with it"),
        Err(e) => eprintln!("conntrack: nftshim refuses `ct state` ({e}); rulesets without it"),
    }
    let mut errors = Vec::new();
    let mut sizes = Vec::new();
    for &n in &config.sizes {
        eprintln!("== N = {n}");
        let file = workdir.path().join(format!("rules-{n}.nft"));
        std::fs::write(
            &file,
            ruleset::render(Spec {
                rules: n,
                conntrack: conntrack.is_ok(),
            }),
        )?;
        let runs = config.add_delete_runs(n);
        let mut result = SizeResult {
            rules: n,
            ceiling_pps: None,
            kernel: SideResult::default(),
            shim: SideResult::default(),
            classify: None,
            memory: None,
        };
        for backend in [&kernel, &shim] {
            let label = backend.label;
            let side = if label == "kernel" {
                &mut result.kernel
            } else {
                &mut result.shim
            };
            let what = |m: &str| format!("N={n} {label} {m}");
            side.load = keep(&mut errors, what("nft -f"), backend.load(&file));
            eprintln!("  {label}: nft -f {:?}", side.load);
            if side.load.is_none() {
                let _ = backend.flush();
                continue;
            }
            side.pps = keep(
                &mut errors,
                what("throughput"),
                throughput::measure(&mut topo, config.warmup, config.window, config.windows),
            );
            eprintln!("  {label}: {:?} pps", side.pps.map(|p| p.round()));
            if label == "nftshim" {
                let established = match conntrack {
                    Ok(()) => keep(
                        &mut errors,
                        what("establishing a flow"),
                        topo.establish_flow(),
                    )
                    .map(|()| {
                        let (sport, dport) = topology::ESTABLISHED_PORTS;
                        ruleset::Packet::udp(
                            ruleset::TRAFFIC_SRC,
                            ruleset::TRAFFIC_DST,
                            sport,
                            dport,
                        )
                        .frame(topology::TX_MAC, topology::RX_MAC)
                    }),
                    Err(_) => None,
                };
                result.classify = keep(
                    &mut errors,
                    what("per-packet cost"),
                    classify::measure(
                        &topo,
                        n,
                        established.as_deref(),
                        config.repeat,
                        config.rounds,
                    ),
                );
                eprintln!("  {label}: per packet {:?}", result.classify);
                result.memory = keep(
                    &mut errors,
                    what("memory"),
                    memory::measure(&topo, daemon.pid()),
                );
                eprintln!("  {label}: memory {:?}", result.memory);
            }
            if let Some((add, delete)) = keep(
                &mut errors,
                what("add/delete rule"),
                backend.add_delete(runs),
            ) {
                side.add = Some(add);
                side.delete = Some(delete);
            }
            eprintln!(
                "  {label}: add {:?} delete {:?} ({runs} runs)",
                side.add.map(|s| s.median),
                side.delete.map(|s| s.median)
            );
            side.effect = keep(
                &mut errors,
                what("time to effect"),
                control::time_to_effect(backend, &mut topo),
            );
            eprintln!("  {label}: effect {:?}", side.effect);
            keep(&mut errors, what("flush"), backend.flush());
        }
        result.ceiling_pps = keep(
            &mut errors,
            format!("N={n} ceiling throughput"),
            throughput::measure(&mut topo, config.warmup, config.window, config.windows),
        );
        eprintln!("  ceiling: {:?} pps", result.ceiling_pps.map(|p| p.round()));
        sizes.push(result);
        after_each(&Report {
            machine: Machine::probe(),
            command: command.clone(),
            quick: config.quick,
            conntrack: conntrack.clone(),
            sizes: sizes.clone(),
            errors: errors.clone(),
            elapsed: started.elapsed(),
            load_start: load_start.clone(),
            load_end: load_average(),
        });
    }
    drop(daemon);
    drop(topo);
    Ok(Report {
        machine: Machine::probe(),
        command,
        quick: config.quick,
        conntrack,
        sizes,
        errors,
        elapsed: started.elapsed(),
        load_start,
        load_end: load_average(),
    })
}
