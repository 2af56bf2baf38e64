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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::differential::UNSUPPORTED;
use crate::differential::{judge, unsupported, Compare, Pair, Step};
use crate::listing;
use crate::nft::{CmdOutput, Target};
use crate::nftpy::{Directive, Line, TableDecl, TestFile};

/// How often, and how far apart, listings that differ while set elements expire are
/// taken again (see `Replayer::listing_settled`).
const EXPIRY_RETRIES: usize = 3;
const EXPIRY_WAIT: Duration = Duration::from_millis(700);

/// Consecutive timed-out commands after which a file is abandoned.
pub const MAX_STALLS: u32 = 3;

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
            Step::nft(&command, out, Compare::Full),
            Step::nft(
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
        let mut steps = vec![Step::nft(&add, added, Compare::Full)];
        let listed = self.listing_settled();
        // When the listings differ already, an `-a` diff would only repeat it.
        let same_listing =
            listing::normalise(&listed.0.stdout) == listing::normalise(&listed.1.stdout);
        steps.push(Step::nft("list ruleset", listed, Compare::Listing));
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
                steps.push(Step::nft("-a list ruleset", listed, compare));
            }
            match (k_remove, s_remove) {
                (Some(k), Some(s)) => {
                    let out = self.pair.each(&[&k], &[&s]);
                    steps.push(Step::nft(&k, out, Compare::Status));
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

    /// `nft list ruleset` on both sides; listed again, a few times, while they differ
    /// and show set elements with a timeout. Each side added them at its own moment,
    /// so one side may have let an element expire that the other lists for a few
    /// more milliseconds; once both have, the listings say whether they agree.
    fn listing_settled(&self) -> (CmdOutput, CmdOutput) {
        let mut listed = self.pair.both(&["list ruleset"]);
        for _ in 0..EXPIRY_RETRIES {
            let (k, s) = (&listed.0.stdout, &listed.1.stdout);
            let expiring = k.contains("expires ") || s.contains("expires ");
            if !expiring || listing::normalise(k) == listing::normalise(s) {
                break;
            }
            std::thread::sleep(EXPIRY_WAIT);
            listed = self.pair.both(&["list ruleset"]);
        }
        listed
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
