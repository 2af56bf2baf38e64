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
    /// `*.nft` and `*.ipt` (iptables-nft-restore) rulesets: crafted packets through the
    /// kernel and nftshimd (always with the eBPF data plane), delivered or dropped
    /// alike (see `nft_tests::packets`).
    Packets,
    /// iptables' extensions/*.t files, run with the iptables-nft family.
    Iptables,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::NftPy => "nft-py",
            Suite::Packets => "packets",
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
    /// Exit 1 if more cases than this differ from the kernel (with a data plane, only
    /// deliberate refusals may stand between a case and agreement: use 0).
    #[arg(long)]
    max_failed: Option<usize>,
    /// The nft binary.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
    /// Time limit of one nft command, in seconds.
    #[arg(long, default_value_t = 15)]
    timeout: u64,
    /// Packets suite self-test: nftshimd's data plane (`none` must make drop rules fail).
    #[arg(long, value_enum, default_value = "ebpf", hide = true)]
    packets_dataplane: Dataplane,
    /// Development aid: run the "nftshim" side against the kernel too.
    #[arg(long, value_enum, default_value = "nftshimd", hide = true)]
    nftshim_side: ShimSide,
    /// `.t` files (`.nft` and `.ipt` rulesets for packets), or folders searched
    /// recursively for them.
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
    if let Suite::Packets = args.suite {
        return run_packets(args);
    }
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
        Suite::Packets => unreachable!("the packet suite is run by run_packets"),
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
                Suite::Packets => unreachable!("the packet suite is run by run_packets"),
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
    if let Some(max) = args.max_failed {
        if totals.failed > max {
            eprintln!(
                "nft-conformance: {} cases differ from the kernel (at most {max} allowed)",
                totals.failed
            );
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ruleset files (`.nft`, `.ipt`) under the given paths, sorted.
fn ruleset_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(p: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        if p.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), out)?;
            }
        } else if nft_tests::packets::ruleset::is_ruleset(p) {
            out.push(p.to_path_buf());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if !p.exists() {
            anyhow::bail!("{} does not exist", p.display());
        }
        walk(p, &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn run_packets(args: &Args) -> anyhow::Result<ExitCode> {
    use nft_tests::packets::{self, Outcome, Sides, Topology};
    let files = ruleset_files(&args.paths)?;
    let bins = Binaries::for_runner(args.nftshimd.clone(), args.preload.clone())?;
    let dataplane = match args.packets_dataplane {
        Dataplane::None => "none",
        Dataplane::Ebpf => "ebpf",
    };
    let mut daemon = Daemon::start(&bins.nftshimd, dataplane)?;
    let kernel = Topology::create("nftshim-pkt", "k")?;
    let shim = Topology::create("nftshim-pkt", "s")?;
    let limit = Duration::from_secs(args.timeout);
    let sides = Sides::new(
        &kernel,
        &shim,
        &bins.preload,
        daemon.socket(),
        &args.nft,
        limit,
    );
    let probes = packets::corpus();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let (mut agree, mut total) = (0usize, 0usize);
    let mut harness_error = false;
    for f in &files {
        let name = f.display();
        match packets::run_ruleset(&kernel, &shim, &sides, f, &probes) {
            Ok(Outcome::Passed { probes, answered }) => {
                passed += 1;
                agree += probes;
                total += probes;
                println!(
                    "PASS {name}: {probes} packets, same fate on both sides \
                     ({answered} answered to the sender alike)"
                );
            }
            Ok(Outcome::Failed {
                probes,
                differ,
                note,
            }) => {
                failed += 1;
                agree += probes - differ.len();
                total += probes;
                println!("FAIL {name}: {} of {probes} packets differ", differ.len());
                if let Some(n) = note {
                    println!("  {n}");
                }
                for (p, k, s) in differ.iter().take(20) {
                    let fate = |d: &bool| if *d { "delivered" } else { "dropped" };
                    println!("  {p}: kernel {}, nftshimd {}", fate(k), fate(s));
                }
            }
            Ok(Outcome::Skipped { why }) => {
                skipped += 1;
                println!("SKIP {name}: {why}");
            }
            Err(e) => {
                failed += 1;
                harness_error = true;
                println!("ERROR {name}: {e:#}");
            }
        }
        let _ = std::io::stdout().flush();
        if let Err(e) = daemon.check_alive() {
            println!("ERROR {e:#}");
            harness_error = true;
            break;
        }
    }
    packets::flush(&sides);
    drop(daemon);
    println!("packets: {agree} of {total} verdicts agree");
    println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
    if harness_error {
        return Ok(ExitCode::from(2));
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
