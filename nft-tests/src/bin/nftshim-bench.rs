//! `nftshim-bench`: nftshim against the kernel's nftables as the ruleset grows. Needs
//! root, trafgen (netsniff-ng) and the release build of nftshimd and the preload.
//!
//!     nftshim-bench            # full: N = 1 .. 50,000, writes docs/benchmarks.md
//!     nftshim-bench --quick    # N <= 1,000, a few seconds; CI smoke test

use std::path::PathBuf;

use clap::Parser;
use nft_tests::bench::{self, Config};
use nft_tests::bins::Binaries;

#[derive(Parser, Debug)]
#[command(about = "Benchmarks nftshim against the kernel's nftables (issue 4)")]
struct Args {
    /// N <= 1,000 and short windows: a smoke test (asserts nothing about timings).
    #[arg(long)]
    quick: bool,
    /// Rule counts to measure, instead of the mode's.
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Directory for benchmarks.md and the SVG plots (default: docs/ in full mode,
    /// target/bench/ with --quick).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Markdown inserted after the targets (the analysis of the figures); default:
    /// docs/benchmarks-notes.md in full mode, when it exists.
    #[arg(long)]
    notes: Option<PathBuf>,
    #[arg(long)]
    nftshimd: Option<PathBuf>,
    #[arg(long)]
    preload: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut config = if args.quick {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(sizes) = args.sizes {
        config.sizes = sizes;
    }
    let bins = Binaries::for_runner(args.nftshimd, args.preload)?;
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| PathBuf::from(if args.quick { "target/bench" } else { "docs" }));
    std::fs::create_dir_all(&out_dir)?;
    let date = || {
        std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let notes_path = args.notes.or_else(|| {
        let default = PathBuf::from("docs/benchmarks-notes.md");
        (!args.quick && default.exists()).then_some(default)
    });
    let notes = match &notes_path {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("--notes {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let md = out_dir.join("benchmarks.md");
    let write = |report: &bench::Report| -> anyhow::Result<String> {
        let doc = bench::table::render(report, &date(), notes.as_deref());
        std::fs::write(&md, &doc)?;
        bench::plot::write_all(report, &out_dir)?;
        Ok(doc)
    };
    let report = bench::run(&config, &bins, command, |partial| {
        if let Err(e) = write(partial) {
            eprintln!("warning: writing the partial report: {e:#}");
        }
    })?;
    let doc = write(&report)?;
    println!("{doc}");
    eprintln!("wrote {} and its plots", md.display());
    if !report.errors.is_empty() {
        eprintln!(
            "{} measurement(s) failed (listed in the report)",
            report.errors.len()
        );
    }
    Ok(())
}
