//! Human output of a conformance run: the console stream and the markdown report.

use std::fmt::Write as _;
use std::time::Duration;

use crate::replay::{FileResult, Outcome};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Totals {
    pub fn of(results: &[FileResult]) -> Totals {
        let mut t = Totals::default();
        for r in results {
            let (p, f, s) = r.count();
            t.passed += p;
            t.failed += f;
            t.skipped += s;
        }
        t
    }

    pub fn cases(&self) -> usize {
        self.passed + self.failed + self.skipped
    }

    /// passed / all cases, in percent (0 when there are no cases).
    pub fn pass_rate(&self) -> f64 {
        if self.cases() == 0 {
            0.0
        } else {
            100.0 * self.passed as f64 / self.cases() as f64
        }
    }

    /// The run's closing line.
    pub fn line(&self) -> String {
        format!(
            "conformance: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// What the console shows for one file: every failure with its details, warnings,
/// harness errors, then the file's summary line.
pub fn console(r: &FileResult) -> String {
    let mut out = String::new();
    for w in &r.warnings {
        let _ = writeln!(out, "WARN {}: {w}", r.name);
    }
    for c in &r.cases {
        if let Outcome::Failed(details) = &c.outcome {
            let _ = writeln!(out, "FAIL {}:{} [{}] {}", r.name, c.lineno, c.scope, c.text);
            out.push_str(details);
        }
    }
    if let Some(e) = &r.harness_error {
        let _ = writeln!(out, "ERROR {}: {e}", r.name);
    }
    let (p, f, s) = r.count();
    let _ = writeln!(
        out,
        "{}: {p} passed, {f} failed, {s} skipped ({:.1}s)",
        r.name,
        r.elapsed.as_secs_f64()
    );
    out
}

/// How the nft-py suite counts and compares, for the report.
pub const NFT_PY_METHOD: &[&str] = &[
    "a case is one command a `.t` line implies: a rule line counts once per (table, chain) \
     it is tried in; a table line once plus once per chain; a set, element or object line \
     once per table",
    "compared: exit status, stderr, stdout, then `nft list ruleset` (element expiry times \
     masked) and, for accepted rules, `nft -a list ruleset` and the rule's removal by handle",
    "skipped: the kernel accepted and nftshimd answered `Operation not supported` (or the \
     case's chain was refused that way)",
];

/// How the iptables suite counts and compares, for the report.
pub const IPTABLES_METHOD: &[&str] = &[
    "a case is one command a `.t` line implies: a rule line counts once per (binary, chain) \
     (`libxt_*` files run with iptables-nft and ip6tables-nft); an `@`/`%` line once per \
     binary",
    "compared: exit status, stderr and stdout of `-A`, then `iptables-nft-save` / \
     `ip6tables-nft-save` without `#` lines (`ebtables-nft -L` / `arptables-nft -L` of the \
     table), and for accepted rules the exit status and stderr of `-D`",
    "skipped: the kernel accepted and nftshimd answered `Operation not supported`",
];

/// Facts about the run that the report states.
pub struct RunInfo {
    pub suite: String,
    /// What a case is and what is compared, one bullet each.
    pub method: &'static [&'static str],
    pub shim_side: String,
    pub dataplane: String,
    pub jobs: usize,
    pub elapsed: Duration,
}

pub fn markdown(info: &RunInfo, results: &[FileResult]) -> String {
    let t = Totals::of(results);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Conformance: {} — kernel vs {}\n",
        info.suite, info.shim_side
    );
    let _ = writeln!(
        md,
        "- **{} passed, {} failed, {} skipped** of {} cases ({:.1}% passed)",
        t.passed,
        t.failed,
        t.skipped,
        t.cases(),
        t.pass_rate()
    );
    let _ = writeln!(
        md,
        "- data plane: `{}`; {} files; {} jobs; {:.1}s",
        info.dataplane,
        results.len(),
        info.jobs,
        info.elapsed.as_secs_f64()
    );
    for line in info.method {
        let _ = writeln!(md, "- {line}");
    }
    md.push('\n');
    let errors: Vec<&FileResult> = results
        .iter()
        .filter(|r| r.harness_error.is_some())
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(md, "## Harness errors\n");
        for r in errors {
            let _ = writeln!(
                md,
                "- `{}`: {}",
                r.name,
                r.harness_error.as_deref().unwrap_or("")
            );
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Files\n");
    let _ = writeln!(md, "| file | passed | failed | skipped | resyncs | time |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for r in results {
        let (p, f, s) = r.count();
        let _ = writeln!(
            md,
            "| `{}` | {p} | {f} | {s} | {} | {:.1}s |",
            r.name,
            r.resyncs,
            r.elapsed.as_secs_f64()
        );
    }
    let failures: Vec<_> = cases_with(results, |o| matches!(o, Outcome::Failed(_)));
    let _ = writeln!(md, "\n## Failures ({})\n", failures.len());
    for (r, c) in failures {
        if let Outcome::Failed(details) = &c.outcome {
            let _ = writeln!(
                md,
                "### `{}:{}` [{}] `{}`\n",
                r.name,
                c.lineno,
                c.scope,
                c.text.replace('`', "'")
            );
            let _ = writeln!(md, "```text\n{}```\n", details);
        }
    }
    let skips: Vec<_> = cases_with(results, |o| matches!(o, Outcome::Skipped(_)));
    let _ = writeln!(md, "## Skips ({})\n", skips.len());
    if !skips.is_empty() {
        let _ = writeln!(md, "| case | scope | command | reason |");
        let _ = writeln!(md, "|---|---|---|---|");
        for (r, c) in skips {
            if let Outcome::Skipped(reason) = &c.outcome {
                let _ = writeln!(
                    md,
                    "| `{}:{}` | {} | `{}` | {} |",
                    r.name,
                    c.lineno,
                    c.scope,
                    cell(&c.text),
                    cell(reason)
                );
            }
        }
    }
    let warned: Vec<&FileResult> = results.iter().filter(|r| !r.warnings.is_empty()).collect();
    if !warned.is_empty() {
        let _ = writeln!(md, "\n## Lines not run\n");
        for r in warned {
            for w in &r.warnings {
                let _ = writeln!(md, "- `{}`: {}", r.name, cell(w));
            }
        }
    }
    md
}

fn cases_with(
    results: &[FileResult],
    pick: impl Fn(&Outcome) -> bool,
) -> Vec<(&FileResult, &crate::replay::Case)> {
    results
        .iter()
        .flat_map(|r| {
            r.cases
                .iter()
                .filter(|c| pick(&c.outcome))
                .map(move |c| (r, c))
        })
        .collect()
}

/// Text safe inside a markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('`', "'").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Case;

    fn result() -> FileResult {
        let case = |lineno, outcome| Case {
            lineno,
            scope: "ip t input".into(),
            text: "tcp dport 22".into(),
            outcome,
        };
        FileResult {
            name: "ip/x.t".into(),
            cases: vec![
                case(3, Outcome::Passed),
                case(
                    4,
                    Outcome::Failed(
                        "  $ nft add rule\n    status: kernel exit 0, nftshim exit 1\n".into(),
                    ),
                ),
                case(
                    5,
                    Outcome::Skipped("nftshimd: Error: Operation not supported".into()),
                ),
                case(6, Outcome::Passed),
            ],
            ..FileResult::default()
        }
    }

    #[test]
    fn totals_and_closing_line() {
        let t = Totals::of(&[result(), result()]);
        assert_eq!(
            t,
            Totals {
                passed: 4,
                failed: 2,
                skipped: 2
            }
        );
        assert_eq!(t.line(), "conformance: 4 passed, 2 failed, 2 skipped");
        assert!((t.pass_rate() - 50.0).abs() < 1e-9);
        assert_eq!(Totals::default().pass_rate(), 0.0);
    }

    #[test]
    fn console_lists_failures_then_summary() {
        let text = console(&result());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FAIL ip/x.t:4 [ip t input] tcp dport 22");
        assert!(lines
            .last()
            .unwrap()
            .starts_with("ip/x.t: 2 passed, 1 failed, 1 skipped"));
        assert!(
            !text.contains("Operation not supported"),
            "skips are for the report"
        );
    }

    #[test]
    fn markdown_has_every_failure_and_skip() {
        let info = RunInfo {
            suite: "nft-py".into(),
            method: NFT_PY_METHOD,
            shim_side: "nftshimd".into(),
            dataplane: "none".into(),
            jobs: 1,
            elapsed: Duration::from_secs(1),
        };
        let md = markdown(&info, &[result()]);
        assert!(md.contains("**2 passed, 1 failed, 1 skipped** of 4 cases (50.0% passed)"));
        assert!(md.contains("| `ip/x.t` | 2 | 1 | 1 | 0 |"));
        assert!(md.contains("### `ip/x.t:4` [ip t input] `tcp dport 22`"));
        assert!(md.contains("| `ip/x.t:5` | ip t input | `tcp dport 22` | nftshimd: Error: Operation not supported |"));
    }
}
