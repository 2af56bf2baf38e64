//! `nft-conformance`: replays a conformance suite against the kernel and nftshimd and
//! reports every disagreement. See `nft_tests::replay` for what is compared.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::nft::Target;
use nft_tests::replay::{self, ReplayConfig};
use nft_tests::report::{self, RunInfo, Totals};
use nft_tests::{cleanup, iptables, nftpy, suite};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Suite {
    /// nftables' tests/py `*.t` files.
    NftPy,
    /// iptables' extensions/*.t files, run with the iptables-nft family.
    Iptables,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::NftPy => "nft-py",
            Suite::Iptables => "iptables",
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Dataplane {
    None,
    Ebpf,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ShimSide {
    /// nftshimd under the preload library (the real test).
    Nftshimd,
    /// The kernel again: checks that the replay itself is deterministic.
    Kernel,
}

#[derive(Parser, Debug)]
#[command(about = "Replays nf_tables conformance suites against the kernel and nftshimd")]
struct Args {
    #[arg(long, value_enum)]
    suite: Suite,
    /// nftshimd's data plane.
    #[arg(long, value_enum, default_value = "none")]
    dataplane: Dataplane,
    /// Also write a markdown report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The daemon binary (default: $NFTSHIM_BIN_DIR or next to this executable).
    #[arg(long)]
    nftshimd: Option<PathBuf>,
    /// The interposer library (default: $NFTSHIM_BIN_DIR or next to this executable).
    #[arg(long)]
    preload: Option<PathBuf>,
    /// Files run in parallel.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Exit 1 if passed/(passed+failed+skipped) is below this percentage.
    #[arg(long)]
    min_pass_rate: Option<f64>,
    /// The nft binary.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
    /// Time limit of one nft command, in seconds.
    #[arg(long, default_value_t = 15)]
    timeout: u64,
    /// Development aid: run the "nftshim" side against the kernel too.
    #[arg(long, value_enum, default_value = "nftshimd", hide = true)]
    nftshim_side: ShimSide,
    /// `.t` files, or folders searched recursively for them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cleanup::install_signal_cleanup();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nft-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let files = suite::collect(&args.paths)?;
    let dataplane = match args.dataplane {
        Dataplane::None => "none",
        Dataplane::Ebpf => "ebpf",
    };
    // Kept alive until the end of the run; dropping it kills the daemon.
    let mut daemon = None;
    let (shim_target, shim_side) = match args.nftshim_side {
        ShimSide::Kernel => (Target::Kernel, "kernel (self-test)".to_string()),
        ShimSide::Nftshimd => {
            let bins = Binaries::for_runner(args.nftshimd.clone(), args.preload.clone())?;
            let d = Daemon::start(&bins.nftshimd, dataplane)?;
            let target = Target::Shim {
                preload: bins.preload.clone(),
                socket: d.socket().into(),
            };
            daemon = Some(d);
            (target, format!("nftshimd ({})", bins.nftshimd.display()))
        }
    };
    let cfg = ReplayConfig {
        shim_target,
        nft: args.nft.clone(),
        limit: Duration::from_secs(args.timeout),
        netns_prefix: "nftshim-conf".into(),
    };
    let replay: Box<suite::ReplayFn<'_>> = match args.suite {
        Suite::NftPy => Box::new(|name: &str, text: &str| {
            replay::replay_file(name, &nftpy::TestFile::parse(text), &cfg)
        }),
        Suite::Iptables => Box::new(|name: &str, text: &str| {
            iptables::replay_file(name, &iptables::testfile::TestFile::parse(text), &cfg)
        }),
    };
    let mut daemon_error = None;
    let results = suite::run(&files, &*replay, args.jobs, |r| {
        print!("{}", report::console(r));
        let _ = std::io::stdout().flush();
        if daemon_error.is_none() {
            if let Some(Err(e)) = daemon.as_mut().map(Daemon::check_alive) {
                println!("ERROR {e:#}");
                daemon_error = Some(e);
            }
        }
    });
    drop(daemon);
    let totals = Totals::of(&results);
    if let Some(path) = &args.report {
        let info = RunInfo {
            suite: args.suite.name().into(),
            method: match args.suite {
                Suite::NftPy => report::NFT_PY_METHOD,
                Suite::Iptables => report::IPTABLES_METHOD,
            },
            shim_side,
            dataplane: dataplane.into(),
            jobs: args.jobs,
            elapsed: start.elapsed(),
        };
        std::fs::write(path, report::markdown(&info, &results))?;
    }
    let harness_failed =
        daemon_error.is_some() || results.iter().any(|r| r.harness_error.is_some());
    println!("{}", totals.line());
    if harness_failed {
        return Ok(ExitCode::from(2));
    }
    if let Some(min) = args.min_pass_rate {
        if totals.pass_rate() < min {
            eprintln!(
                "nft-conformance: pass rate {:.2}% is below {min}%",
                totals.pass_rate()
            );
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
