//! The run as markdown: machine and command, the three targets, then one
//! table per measurement.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::Summary;
use super::{Report, SizeResult};

/// File names of the plots, next to the markdown.
pub const PLOTS: [(&str, &str); 3] = [
    ("benchmarks-per-packet.svg", "Per-packet cost (nftshim)"),
    ("benchmarks-throughput.svg", "Throughput"),
    ("benchmarks-add-rule.svg", "nft add rule latency"),
];

pub fn fmt_ns(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

pub fn fmt_time(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

/// Packets per second with thousands separators.
pub fn fmt_pps(pps: f64) -> String {
    let n = pps.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b < 1024.0 * 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

fn median_p99(s: Option<Summary>) -> String {
    opt(s, |s| {
        format!("{} / {}", fmt_time(s.median), fmt_time(s.p99))
    })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    opt(r, |r| {
        if r < 10.0 {
            format!("{r:.2}×")
        } else {
            format!("{r:.0}×")
        }
    })
}

/// One of the "done when" targets, judged on the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: &'static str,
    /// `None`: not measured.
    pub met: Option<bool>,
    pub measured: String,
}

fn at(report: &Report, n: usize) -> Option<&SizeResult> {
    report.sizes.iter().find(|s| s.rules == n)
}

pub fn targets(report: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    let c10 = at(report, 10).and_then(|s| s.classify).map(|c| c.miss);
    let c10k = at(report, 10_000).and_then(|s| s.classify).map(|c| c.miss);
    out.push(match (c10, c10k) {
        (Some(a), Some(b)) => {
            let r = b.as_secs_f64() / a.as_secs_f64().max(1e-12);
            Target {
                name: "per-packet cost at 10,000 rules ≤ 3 × at 10 rules",
                met: Some(r <= 3.0),
                measured: format!("{} vs {} (no rule matches): {r:.2}×", fmt_ns(b), fmt_ns(a)),
            }
        }
        _ => Target {
            name: "per-packet cost at 10,000 rules ≤ 3 × at 10 rules",
            met: None,
            measured: "not measured in this run (needs N = 10 and 10,000)".into(),
        },
    });
    let s10k = at(report, 10_000);
    let (k, s) = (
        s10k.and_then(|r| r.kernel.pps),
        s10k.and_then(|r| r.shim.pps),
    );
    out.push(match ratio(s, k) {
        Some(r) => Target {
            name: "throughput at 10,000 rules ≥ 10 × the kernel's",
            met: Some(r >= 10.0),
            measured: format!(
                "{} vs {} pps: {}",
                opt(s, fmt_pps),
                opt(k, fmt_pps),
                fmt_ratio(Some(r))
            ),
        },
        None => Target {
            name: "throughput at 10,000 rules ≥ 10 × the kernel's",
            met: None,
            measured: "not measured in this run".into(),
        },
    });
    let (k, s) = (
        s10k.and_then(|r| r.kernel.add),
        s10k.and_then(|r| r.shim.add),
    );
    out.push(match (k, s) {
        (Some(k), Some(s)) => Target {
            name: "`nft add rule` at 10,000 rules no slower than the kernel",
            met: Some(s.median <= k.median),
            measured: format!(
                "median {} vs {} (p99 {} vs {})",
                fmt_time(s.median),
                fmt_time(k.median),
                fmt_time(s.p99),
                fmt_time(k.p99)
            ),
        },
        _ => Target {
            name: "`nft add rule` at 10,000 rules no slower than the kernel",
            met: None,
            measured: "not measured in this run".into(),
        },
    });
    out
}

/// The whole document. `preamble` goes between the title and the results.
/// The report as markdown; `notes` (the analysis of the figures, written by hand and
/// kept in a file of its own so that a new run keeps it) goes after the targets.
pub fn render(report: &Report, date: &str, notes: Option<&str>) -> String {
    let mut s = String::new();
    let m = &report.machine;
    let _ = writeln!(s, "# Benchmarks: nftshim against the kernel's nftables\n");
    let _ = writeln!(
        s,
        "Generated by `nftshim-bench` ({} mode) on {date}; the run took {:.1} min.\n",
        if report.quick { "quick" } else { "full" },
        report.elapsed.as_secs_f64() / 60.0
    );
    let _ = writeln!(
        s,
        "- Machine: {} CPUs ({}), kernel {}.",
        m.cpus, m.cpu_model, m.kernel
    );
    let _ = writeln!(
        s,
        "- Load average (1, 5, 15 min) at the start: {}; at the end: {} (above the CPU \
         count, other work competed with the benchmark).",
        report.load_start, report.load_end
    );
    let _ = writeln!(
        s,
        "- Command: `{}` (as root, after `cargo build --release --workspace`; \
         trafgen from netsniff-ng, which scripts/setup.sh installs).",
        report.command
    );
    let _ = writeln!(
        s,
        "- Ruleset: `table inet bench`, one input chain, policy accept, N generated rules \
         taking turns among six kinds (IPv4 source /24 + TCP port, IPv4 destination + UDP \
         port, `iifname` + UDP port, IPv6 source /64 + TCP port, five IPv4 fields with a \
         port range, TCP source port + destination range), none of which matches the \
         measured traffic: its packets traverse all N rules and the policy accepts them."
    );
    match &report.conntrack {
        Ok(()) => {
            let _ = writeln!(
                s,
                "- Conntrack: nftshim's data plane takes `ct state`, so every ruleset (kernel \
                 and nftshim) starts with `ct state established,related accept` (N + 1 rules). \
                 The measured UDP flows are never answered: they stay new."
            );
        }
        Err(e) => {
            let _ = writeln!(
                s,
                "- Conntrack: nftshim's data plane refused `ct state` in this build ({}), so \
                 the rulesets have no conntrack rule and the established-flow cost is not \
                 measured: every packet, first of its flow or not, takes the same path.",
                e.replace('`', "'")
            );
        }
    }
    let _ = writeln!(s, "\n## Targets of issue 4\n");
    let _ = writeln!(s, "| target | measured | met |\n|---|---|---|");
    for t in targets(report) {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", t.name, t.measured);
    }
    if let Some(notes) = notes {
        let _ = write!(s, "\n{}\n", notes.trim_end());
    }

    let _ = writeln!(s, "\n## 1. Per-packet classification cost (nftshim)\n");
    let _ = writeln!(
        s,
        "BPF_PROG_TEST_RUN of the TC program nftshimd attached to the receiver's interface \
         (its own maps), one 60-byte frame repeated; the kernel's mean per run, best of the \
         rounds. Includes the test-run overhead (about 20 ns).\n"
    );
    let _ = writeln!(
        s,
        "| rules | no rule matches (policy) | first match at rule N/2 | established flow |\n|---:|---:|---:|---:|"
    );
    for r in &report.sizes {
        let c = r.classify;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            r.rules,
            opt(c.map(|c| c.miss), fmt_ns),
            opt(c.and_then(|c| c.hit_middle), fmt_ns),
            opt(c.and_then(|c| c.established), fmt_ns)
        );
    }

    let _ = writeln!(s, "\n## 2. End-to-end throughput\n");
    let _ = writeln!(
        s,
        "trafgen (one CPU) sends 60-byte UDP frames of 8 flows over a veth pair into the \
         receiving namespace; packets per second that reach UDP there (`Ip: InDelivers`, \
         counted after the kernel's input hook and after TC ingress alike), the best of \
         the counting windows (other work on the machine only lowers a window), and the \
         ratio to the unfiltered ceiling measured at the same size.\n"
    );
    let _ = writeln!(
        s,
        "| rules | no filter (pps) | kernel (pps) | kernel / ceiling | nftshim (pps) | nftshim / ceiling | nftshim / kernel |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &report.sizes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.rules,
            opt(r.ceiling_pps, fmt_pps),
            opt(r.kernel.pps, fmt_pps),
            fmt_ratio(ratio(r.kernel.pps, r.ceiling_pps)),
            opt(r.shim.pps, fmt_pps),
            fmt_ratio(ratio(r.shim.pps, r.ceiling_pps)),
            fmt_ratio(ratio(r.shim.pps, r.kernel.pps))
        );
    }

    let _ = writeln!(s, "\n## 3. Control plane\n");
    let _ = writeln!(
        s,
        "Wall-clock time of the real `nft` process, start to exit (nftshim: through the \
         interposer, until nftshimd answered). Add and delete: one rule appended to the \
         chain of N rules and deleted again, median / p99 over the runs given (p99 is the \
         maximum below 100 runs). Effect: a rule dropping the flowing traffic is added; \
         time from starting `nft` until the receiver counted its last packet.\n"
    );
    let _ = writeln!(
        s,
        "| rules | `nft -f` kernel | `nft -f` nftshim | add kernel | add nftshim | delete kernel | delete nftshim | runs | effect kernel | effect nftshim |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &report.sizes {
        let runs = r.kernel.add.or(r.shim.add).map_or(0, |s| s.runs);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.rules,
            opt(r.kernel.load, fmt_time),
            opt(r.shim.load, fmt_time),
            median_p99(r.kernel.add),
            median_p99(r.shim.add),
            median_p99(r.kernel.delete),
            median_p99(r.shim.delete),
            runs,
            opt(r.kernel.effect, |e| fmt_time(e.effect)),
            opt(r.shim.effect, |e| fmt_time(e.effect)),
        );
    }

    let _ = writeln!(s, "\n## 4. Memory (nftshim)\n");
    let _ = writeln!(
        s,
        "BPF maps of every program nftshimd attached in the receiving namespace: the sum of \
         max_entries × (key + value) over the distinct maps (per-CPU values once per CPU), \
         which is what they can hold, not what hash maps have allocated. nftshimd's VmRSS \
         with that ruleset loaded (one daemon for the whole run).\n"
    );
    let _ = writeln!(
        s,
        "| rules | BPF maps | maps | programs | nftshimd RSS |\n|---:|---:|---:|---:|---:|"
    );
    for r in &report.sizes {
        let m = r.memory;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.rules,
            opt(m.map(|m| m.map_bytes), fmt_bytes),
            opt(m.map(|m| m.maps), |v| v.to_string()),
            opt(m.map(|m| m.programs), |v| v.to_string()),
            opt(m.map(|m| m.rss_bytes), fmt_bytes)
        );
    }

    let _ = writeln!(s, "\n## Plots\n");
    for (file, title) in PLOTS {
        let _ = writeln!(s, "![{title}]({file})\n");
    }
    if !report.errors.is_empty() {
        let _ = writeln!(s, "## Measurements that failed\n");
        for e in &report.errors {
            let _ = writeln!(s, "- {}", e.replace('\n', " "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::classify::Classify;
    use crate::bench::{Machine, SideResult};

    fn summary(ms: u64) -> Summary {
        let d = Duration::from_millis(ms);
        Summary {
            runs: 10,
            min: d,
            median: d,
            p99: d * 2,
            max: d * 2,
        }
    }

    fn size(rules: usize, miss_ns: u64, kernel_pps: f64, shim_pps: f64) -> SizeResult {
        SizeResult {
            rules,
            ceiling_pps: Some(500_000.0),
            kernel: SideResult {
                pps: Some(kernel_pps),
                add: Some(summary(20)),
                ..SideResult::default()
            },
            shim: SideResult {
                pps: Some(shim_pps),
                add: Some(summary(30)),
                ..SideResult::default()
            },
            classify: Some(Classify {
                miss: Duration::from_nanos(miss_ns),
                hit_middle: None,
                established: None,
            }),
            memory: None,
        }
    }

    fn report(sizes: Vec<SizeResult>) -> Report {
        Report {
            machine: Machine {
                cpus: 2,
                kernel: "6.18".into(),
                cpu_model: "Test CPU".into(),
            },
            command: "nftshim-bench".into(),
            quick: false,
            conntrack: Err("refused".into()),
            sizes,
            errors: vec!["N=1 kernel flush: boom".into()],
            elapsed: Duration::from_secs(60),
            load_start: "0.10 0.20 0.30".into(),
            load_end: "1.00 2.00 3.00".into(),
        }
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_pps(1_234_567.4), "1,234,567");
        assert_eq!(fmt_pps(999.0), "999");
        assert_eq!(fmt_ns(Duration::from_nanos(250)), "250 ns");
        assert_eq!(fmt_ns(Duration::from_nanos(12_340)), "12.3 µs");
        assert_eq!(fmt_time(Duration::from_micros(2500)), "2.50 ms");
        assert_eq!(fmt_time(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(fmt_bytes(2048), "2 KiB");
        assert_eq!(fmt_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn targets_judged_from_the_numbers() {
        let r = report(vec![
            size(10, 100, 400_000.0, 450_000.0),
            size(10_000, 250, 10_000.0, 450_000.0),
        ]);
        let t = targets(&r);
        assert_eq!(t[0].met, Some(true), "{:?}", t[0]);
        assert!(t[0].measured.contains("2.50×"));
        assert_eq!(t[1].met, Some(true), "{:?}", t[1]);
        assert!(t[1].measured.contains("45×"));
        // nftshim's add (30 ms) is slower than the kernel's (20 ms).
        assert_eq!(t[2].met, Some(false));

        let r = report(vec![
            size(10, 100, 1.0, 1.0),
            size(10_000, 400, 100.0, 500.0),
        ]);
        let t = targets(&r);
        assert_eq!(t[0].met, Some(false));
        assert_eq!(t[1].met, Some(false));
    }

    #[test]
    fn targets_without_the_sizes_are_not_measured() {
        let r = report(vec![size(100, 100, 1.0, 1.0)]);
        assert!(targets(&r).iter().all(|t| t.met.is_none()));
    }

    #[test]
    fn document_has_every_table_row_and_the_failures() {
        let r = report(vec![size(10, 100, 400_000.0, 450_000.0)]);
        let doc = render(&r, "2026-11-26", Some("## Why\n\nBecause.\n"));
        assert!(doc.contains("- Machine: 2 CPUs (Test CPU), kernel 6.18."));
        // The notes come after the targets, before the first table of figures.
        let (targets, notes, first) = (
            doc.find("## Targets of issue 4").unwrap(),
            doc.find("## Why\n\nBecause.\n").unwrap(),
            doc.find("## 1. Per-packet").unwrap(),
        );
        assert!(targets < notes && notes < first);
        assert!(doc.contains("at the start: 0.10 0.20 0.30; at the end: 1.00 2.00 3.00"));
        assert!(doc.contains("| 10 | 100 ns | – | – |"));
        assert!(doc.contains("| 10 | 500,000 | 400,000 | 0.80× | 450,000 | 0.90× | 1.12× |"));
        assert!(doc.contains("| 20.0 ms / 40.0 ms |") || doc.contains("| 20 ms / 40 ms |"));
        assert!(doc.contains("- N=1 kernel flush: boom"));
        assert!(doc.contains("![Throughput](benchmarks-throughput.svg)"));
    }
}
