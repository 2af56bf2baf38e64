//! Differential replay of one nft-py `.t` file: every command runs in a kernel
//! namespace and in an nftshim namespace, and the outcomes are compared.
//!
//! Semantics follow upstream's `nft-test.py`: `*` lines create a table and its chains
//! at once; `!`, `?` and `%` lines add sets, elements and objects to every table created
//! so far; each rule line is added to every chain of every table, listed, and removed
//! again (by handle) so the next line starts from the same state.
//!
//! Counting: one case per command the file implies, i.e. per (rule line, table, chain),
//! per (table line) plus one per chain it creates, and per (set/element/object line,
//! table).
//!
//! Per case the comparison covers the command's exit status, stderr and stdout
//! (trailing whitespace ignored), then `nft list ruleset`, and, when the command was
//! accepted, `nft -a list ruleset` (handles) and the removal of the rule.
//!
//! Divergence control: when a case does not pass, both namespaces are replaced by fresh
//! ones and the setup commands so far are replayed, so that one difference (e.g. a
//! handle consumed on one side only) does not spill into every later case. A setup
//! command that nftshimd refused as unsupported is left out of that replay on both
//! sides, and rules in a chain it could not create are skipped. Once a setup command
//! itself failed, the sides can no longer be brought together and no more resyncs
//! happen in that file.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::listing;
use crate::netns::{next_serial, Netns};
use crate::nft::{CmdOutput, Exit, NftSide, Target};
use crate::nftpy::{Directive, Line, TableDecl, TestFile};

/// The text nft prints for EOPNOTSUPP: nftshimd's answer to what its data plane cannot
/// enforce. A case that the kernel accepted and nftshimd refused with it is skipped.
pub const UNSUPPORTED: &str = "Operation not supported";

/// Consecutive timed-out commands after which a file is abandoned.
const MAX_STALLS: u32 = 3;

#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// How the "nftshim" side reaches nf_tables (the kernel too, for a self-test).
    pub shim_target: Target,
    pub nft: PathBuf,
    /// Time limit of one nft command.
    pub limit: Duration,
    /// Namespace names are `PREFIX-<pid>-<n>-k` and `-s`.
    pub netns_prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// What differed, rendered for people.
    Failed(String),
    /// Why the case was not compared.
    Skipped(String),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub lineno: usize,
    /// `family table chain` (or `family table` for table-wide commands).
    pub scope: String,
    /// The rule, or the setup command.
    pub text: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default)]
pub struct FileResult {
    pub name: String,
    pub cases: Vec<Case>,
    pub warnings: Vec<String>,
    /// Rule lines marked known-broken (`-`), not run.
    pub disabled: usize,
    pub resyncs: usize,
    pub elapsed: Duration,
    /// The harness itself could not go on (namespaces, I/O): later cases are missing.
    pub harness_error: Option<String>,
}

impl FileResult {
    pub fn count(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for c in &self.cases {
            match c.outcome {
                Outcome::Passed => n.0 += 1,
                Outcome::Failed(_) => n.1 += 1,
                Outcome::Skipped(_) => n.2 += 1,
            }
        }
        n
    }
}

/// Replays `file` (already parsed; `name` is how reports call it).
pub fn replay_file(name: &str, file: &TestFile, cfg: &ReplayConfig) -> FileResult {
    let start = Instant::now();
    let mut result = FileResult {
        name: name.to_string(),
        warnings: file.warnings.clone(),
        disabled: file.disabled,
        ..FileResult::default()
    };
    match Replayer::new(cfg) {
        Ok(mut r) => {
            for line in &file.lines {
                if let Err(e) = r.line(line) {
                    result.harness_error = Some(format!("line {}: {e:#}", line.lineno));
                    break;
                }
            }
            result.warnings.extend(r.warnings);
            result.cases = r.cases;
            result.resyncs = r.resyncs;
        }
        Err(e) => result.harness_error = Some(format!("{e:#}")),
    }
    result.elapsed = start.elapsed();
    result
}

/// The two namespaces and how to run nft in each.
struct Pair {
    kernel: NftSide,
    shim: NftSide,
    /// Commands in a row that hit the time limit: a hung daemon ends the file early
    /// instead of costing the limit on every remaining command.
    stalls: Cell<u32>,
    // Dropped (deleted) with the pair; declared after the sides that name them.
    _kernel_ns: Netns,
    _shim_ns: Netns,
}

impl Pair {
    fn new(cfg: &ReplayConfig) -> anyhow::Result<Pair> {
        let base = format!(
            "{}-{}-{}",
            cfg.netns_prefix,
            std::process::id(),
            next_serial()
        );
        let kernel_ns = Netns::create(format!("{base}-k"))?;
        let shim_ns = Netns::create(format!("{base}-s"))?;
        let side = |ns: &Netns, target: &Target| NftSide {
            netns: ns.name().to_string(),
            target: target.clone(),
            nft: cfg.nft.clone(),
            limit: cfg.limit,
        };
        Ok(Pair {
            kernel: side(&kernel_ns, &Target::Kernel),
            shim: side(&shim_ns, &cfg.shim_target),
            stalls: Cell::new(0),
            _kernel_ns: kernel_ns,
            _shim_ns: shim_ns,
        })
    }

    /// Runs `kernel_args` on the kernel side and `shim_args` on the nftshim side at the
    /// same time (each side's own commands still run one after another).
    fn each(&self, kernel_args: &[&str], shim_args: &[&str]) -> (CmdOutput, CmdOutput) {
        let (kernel, shim) = std::thread::scope(|s| {
            let shim_side = &self.shim;
            let shim = s.spawn(move || shim_side.run(shim_args));
            let kernel = self.kernel.run(kernel_args);
            (kernel, shim.join().expect("nft runner thread panicked"))
        });
        self.note_stall(&kernel, &shim);
        (kernel, shim)
    }

    fn note_stall(&self, kernel: &CmdOutput, shim: &CmdOutput) {
        if kernel.exit == Exit::TimedOut || shim.exit == Exit::TimedOut {
            self.stalls.set(self.stalls.get() + 1);
        } else {
            self.stalls.set(0);
        }
    }

    fn both(&self, args: &[&str]) -> (CmdOutput, CmdOutput) {
        self.each(args, args)
    }
}

/// How a step's stdout is compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// Exit status, stderr and stdout.
    Full,
    /// Exit status, stderr and the normalised listing on stdout.
    Listing,
    /// Exit status and stderr only (the command lines may differ, e.g. handles).
    Status,
}

struct Step {
    command: String,
    kernel: CmdOutput,
    shim: CmdOutput,
    compare: Compare,
}

impl Step {
    fn new(command: &str, (kernel, shim): (CmdOutput, CmdOutput), compare: Compare) -> Step {
        Step {
            command: command.to_string(),
            kernel,
            shim,
            compare,
        }
    }

    /// Why the two sides disagree, or `None`.
    fn difference(&self) -> Option<String> {
        use std::fmt::Write;
        let (k, s) = (&self.kernel, &self.shim);
        let mut out = String::new();
        if k.exit != s.exit {
            let _ = writeln!(out, "    status: kernel {}, nftshim {}", k.exit, s.exit);
        }
        if trim_lines(&k.stderr) != trim_lines(&s.stderr) {
            let _ = writeln!(out, "    stderr (kernel):\n{}", indent(&k.stderr));
            let _ = writeln!(out, "    stderr (nftshim):\n{}", indent(&s.stderr));
        }
        let (ko, so) = match self.compare {
            Compare::Full => (trim_lines(&k.stdout), trim_lines(&s.stdout)),
            Compare::Listing => (listing::normalise(&k.stdout), listing::normalise(&s.stdout)),
            Compare::Status => (String::new(), String::new()),
        };
        if ko != so {
            let diff = similar::TextDiff::from_lines(&ko, &so)
                .unified_diff()
                .context_radius(3)
                .header("kernel", "nftshim")
                .to_string();
            let _ = writeln!(out, "    stdout diff:\n{}", indent(&diff));
        }
        (!out.is_empty()).then(|| format!("  $ nft {}\n{out}", self.command))
    }
}

fn trim_lines(s: &str) -> String {
    let mut out: Vec<&str> = s.lines().map(str::trim_end).collect();
    while out.last() == Some(&"") {
        out.pop();
    }
    out.join("\n")
}

fn indent(s: &str) -> String {
    let body = trim_lines(s);
    if body.is_empty() {
        return "      (empty)".to_string();
    }
    body.lines()
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The skip rule: the kernel accepted, nftshimd refused as unsupported.
fn unsupported(kernel: &CmdOutput, shim: &CmdOutput) -> Option<String> {
    if kernel.success() && !shim.success() && shim.stderr.contains(UNSUPPORTED) {
        let line = shim
            .stderr
            .lines()
            .find(|l| l.contains(UNSUPPORTED))
            .unwrap_or(UNSUPPORTED);
        Some(format!("nftshimd: {}", line.trim()))
    } else {
        None
    }
}

/// One setup command as replayed after a resync.
struct SetupCommand {
    command: String,
}

struct Replayer<'a> {
    cfg: &'a ReplayConfig,
    pair: Pair,
    chains: BTreeMap<String, String>,
    tables: Vec<TableDecl>,
    setup: Vec<SetupCommand>,
    /// `family table chain` scopes nftshimd could not create, with the reason.
    refused: BTreeMap<String, String>,
    setup_diverged: bool,
    cases: Vec<Case>,
    warnings: Vec<String>,
    resyncs: usize,
}

impl<'a> Replayer<'a> {
    fn new(cfg: &'a ReplayConfig) -> anyhow::Result<Self> {
        Ok(Replayer {
            cfg,
            pair: Pair::new(cfg)?,
            chains: BTreeMap::new(),
            tables: Vec::new(),
            setup: Vec::new(),
            refused: BTreeMap::new(),
            setup_diverged: false,
            cases: Vec::new(),
            warnings: Vec::new(),
            resyncs: 0,
        })
    }

    fn line(&mut self, line: &Line) -> anyhow::Result<()> {
        if self.pair.stalls.get() >= MAX_STALLS {
            anyhow::bail!("{MAX_STALLS} nft commands in a row timed out; giving up on this file");
        }
        match &line.directive {
            Directive::Chain { name, spec } => {
                self.chains.insert(name.clone(), spec.clone());
            }
            Directive::Table(table) => self.table(line, table)?,
            Directive::Set {
                name,
                keyword,
                body,
                ..
            } => {
                for t in self.tables.clone() {
                    let cmd = format!("add {keyword} {} {} {name} {{ {body}}}", t.family, t.name);
                    self.setup_case(line, format!("{} {}", t.family, t.name), cmd)?;
                }
            }
            Directive::Elements { set, elements, .. } => {
                for t in self.tables.clone() {
                    let cmd = format!("add element {} {} {set} {{ {elements} }}", t.family, t.name);
                    self.setup_case(line, format!("{} {}", t.family, t.name), cmd)?;
                }
            }
            Directive::Object {
                name, kind, spec, ..
            } => {
                // Upstream's obj_add stops after the first table; the author's intent
                // (and the more useful test) is every table.
                for t in self.tables.clone() {
                    let cmd = format!("add {kind} {} {} {name} {spec}", t.family, t.name);
                    self.setup_case(line, format!("{} {}", t.family, t.name), cmd)?;
                }
            }
            Directive::Rule { rule, .. } => {
                for t in self.tables.clone() {
                    for chain in &t.chains {
                        if !self.chains.contains_key(chain) {
                            continue; // warned about when the table was declared
                        }
                        self.rule_case(line, &t, chain, rule)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn table(&mut self, line: &Line, table: &TableDecl) -> anyhow::Result<()> {
        let scope = format!("{} {}", table.family, table.name);
        let created = self.setup_case(line, scope.clone(), format!("add table {scope}"))?;
        if !created {
            for chain in &table.chains {
                self.refused
                    .insert(format!("{scope} {chain}"), "table was refused".into());
            }
        }
        for chain in &table.chains {
            let Some(spec) = self.chains.get(chain).cloned() else {
                self.warnings.push(format!(
                    "line {}: chain {chain} of table {scope} is not declared; its cases are not run",
                    line.lineno
                ));
                continue;
            };
            if !created {
                continue;
            }
            let cmd = if spec.is_empty() {
                format!("add chain {scope} {chain}")
            } else {
                format!("add chain {scope} {chain} {{ {spec}; }}")
            };
            let chain_scope = format!("{scope} {chain}");
            if !self.setup_case(line, chain_scope.clone(), cmd)? {
                self.refused
                    .insert(chain_scope, "its chain was refused as unsupported".into());
            }
        }
        self.tables.push(table.clone());
        Ok(())
    }

    /// Runs one setup command on both sides and records its case. Returns false if
    /// nftshimd refused it as unsupported (it is then left out on both sides).
    fn setup_case(&mut self, line: &Line, scope: String, command: String) -> anyhow::Result<bool> {
        let out = self.pair.both(&[&command]);
        if let Some(reason) = unsupported(&out.0, &out.1) {
            self.push(line, scope, command, Outcome::Skipped(reason));
            self.resync()?;
            return Ok(false);
        }
        let steps = vec![
            Step::new(&command, out, Compare::Full),
            Step::new(
                "list ruleset",
                self.pair.both(&["list ruleset"]),
                Compare::Listing,
            ),
        ];
        let outcome = judge(&steps);
        let passed = outcome == Outcome::Passed;
        self.setup.push(SetupCommand {
            command: command.clone(),
        });
        self.push(line, scope, command, outcome);
        if !passed {
            self.setup_diverged = true;
        }
        Ok(true)
    }

    fn rule_case(
        &mut self,
        line: &Line,
        table: &TableDecl,
        chain: &str,
        rule: &str,
    ) -> anyhow::Result<()> {
        let scope = format!("{} {} {chain}", table.family, table.name);
        if let Some(why) = self.refused.get(&scope) {
            let outcome = Outcome::Skipped(format!("not run: {why}"));
            self.push(line, scope, rule.to_string(), outcome);
            return Ok(());
        }
        let add = format!("add rule {scope} {rule}");
        let added = self.pair.both(&[&add]);
        if let Some(reason) = unsupported(&added.0, &added.1) {
            self.push(line, scope, rule.to_string(), Outcome::Skipped(reason));
            // The kernel holds the rule (and spent handles on it): start both afresh.
            return self.resync();
        }
        let (k_ok, s_ok) = (added.0.success(), added.1.success());
        let mut steps = vec![Step::new(&add, added, Compare::Full)];
        let listed = self.pair.both(&["list ruleset"]);
        // When the listings differ already, an `-a` diff would only repeat it.
        let same_listing =
            listing::normalise(&listed.0.stdout) == listing::normalise(&listed.1.stdout);
        steps.push(Step::new("list ruleset", listed, Compare::Listing));
        if k_ok || s_ok {
            let listed = self.pair.both(&["-a", "list ruleset"]);
            let remove = |ok: bool, listing: &str| ok.then(|| removal(listing, table, chain));
            let k_remove = remove(k_ok, &listed.0.stdout);
            let s_remove = remove(s_ok, &listed.1.stdout);
            if k_ok && s_ok {
                let compare = if same_listing {
                    Compare::Listing
                } else {
                    Compare::Status
                };
                steps.push(Step::new("-a list ruleset", listed, compare));
            }
            match (k_remove, s_remove) {
                (Some(k), Some(s)) => {
                    let out = self.pair.each(&[&k], &[&s]);
                    steps.push(Step::new(&k, out, Compare::Status));
                }
                (Some(k), None) => drop(self.pair.kernel.run(&[&k])),
                (None, Some(s)) => drop(self.pair.shim.run(&[&s])),
                (None, None) => {}
            }
        }
        let outcome = judge(&steps);
        let passed = outcome == Outcome::Passed;
        self.push(line, scope, rule.to_string(), outcome);
        if !passed {
            self.resync()?;
        }
        Ok(())
    }

    fn push(&mut self, line: &Line, scope: String, text: String, outcome: Outcome) {
        self.cases.push(Case {
            lineno: line.lineno,
            scope,
            text,
            outcome,
        });
    }

    /// Replaces both namespaces and replays the setup so far (see the module doc).
    fn resync(&mut self) -> anyhow::Result<()> {
        if self.setup_diverged {
            return Ok(());
        }
        self.resyncs += 1;
        let stalls = self.pair.stalls.get();
        self.pair = Pair::new(self.cfg)?;
        self.pair.stalls.set(stalls);
        for c in &self.setup {
            self.pair.both(&[&c.command]);
        }
        Ok(())
    }
}

/// The command that removes the one rule just added: by handle as listed, or, if the
/// listing does not show exactly one rule in the chain, by flushing the chain.
fn removal(listing_a: &str, table: &TableDecl, chain: &str) -> String {
    let scope = format!("{} {} {chain}", table.family, table.name);
    match listing::rule_handles(listing_a, &table.family, &table.name, chain)[..] {
        [handle] => format!("delete rule {scope} handle {handle}"),
        _ => format!("flush chain {scope}"),
    }
}

fn judge(steps: &[Step]) -> Outcome {
    let diffs: Vec<String> = steps.iter().filter_map(Step::difference).collect();
    if diffs.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(diffs.join(""))
    }
}
