//! What every differential suite shares: a kernel namespace and an nftshim namespace
//! that receive the same commands, one compared step of a case, and the verdict over a
//! case's steps.

use std::cell::Cell;
use std::ffi::OsStr;

use crate::listing;
use crate::netns::{next_serial, Netns};
use crate::nft::{CmdOutput, Exit, NftSide, Target};
use crate::replay::{Outcome, ReplayConfig};

/// The text clients print for EOPNOTSUPP: nftshimd's answer to what its data plane
/// cannot enforce. A case that the kernel accepted and nftshimd refused with it is
/// skipped.
pub const UNSUPPORTED: &str = "Operation not supported";

/// The two namespaces and how to run clients in each.
pub struct Pair {
    pub kernel: NftSide,
    pub shim: NftSide,
    /// Commands in a row that hit the time limit: a hung daemon ends the file early
    /// instead of costing the limit on every remaining command.
    pub stalls: Cell<u32>,
    // Dropped (deleted) with the pair; declared after the sides that name them.
    _kernel_ns: Netns,
    _shim_ns: Netns,
}

impl Pair {
    pub fn new(cfg: &ReplayConfig) -> anyhow::Result<Pair> {
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

    /// Runs `nft kernel_args` on the kernel side and `nft shim_args` on the nftshim side
    /// at the same time (each side's own commands still run one after another).
    pub fn each(&self, kernel_args: &[&str], shim_args: &[&str]) -> (CmdOutput, CmdOutput) {
        self.each_program(self.kernel.nft.as_os_str(), kernel_args, shim_args, None)
    }

    /// `nft ARGS...` on both sides.
    pub fn both(&self, args: &[&str]) -> (CmdOutput, CmdOutput) {
        self.each(args, args)
    }

    /// `PROGRAM ARGS...` (with `input` on stdin) on both sides at the same time.
    pub fn both_program(
        &self,
        program: &OsStr,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> (CmdOutput, CmdOutput) {
        self.each_program(program, args, args, input)
    }

    fn each_program(
        &self,
        program: &OsStr,
        kernel_args: &[&str],
        shim_args: &[&str],
        input: Option<&[u8]>,
    ) -> (CmdOutput, CmdOutput) {
        let (kernel, shim) = std::thread::scope(|s| {
            let shim_side = &self.shim;
            let shim = s.spawn(move || shim_side.run_program(program, shim_args, input));
            let kernel = self.kernel.run_program(program, kernel_args, input);
            (kernel, shim.join().expect("client runner thread panicked"))
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
}

/// How a step's stdout is compared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Exit status, stderr and stdout.
    Full,
    /// Exit status, stderr and the normalised nft listing on stdout.
    Listing,
    /// Exit status and stderr only (the command lines may differ, e.g. handles).
    Status,
}

/// One command of a case as both sides ran it.
pub struct Step {
    /// The command line as shown in reports.
    shown: String,
    kernel: CmdOutput,
    shim: CmdOutput,
    compare: Compare,
}

impl Step {
    /// A step of `nft COMMAND`.
    pub fn nft(command: &str, outputs: (CmdOutput, CmdOutput), compare: Compare) -> Step {
        Step::new(format!("nft {command}"), outputs, compare)
    }

    /// A step of any command, `shown` as the reports print it.
    pub fn new(shown: String, (kernel, shim): (CmdOutput, CmdOutput), compare: Compare) -> Step {
        Step {
            shown,
            kernel,
            shim,
            compare,
        }
    }

    /// Why the two sides disagree, or `None`.
    pub fn difference(&self) -> Option<String> {
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
        (!out.is_empty()).then(|| format!("  $ {}\n{out}", self.shown))
    }
}

pub fn trim_lines(s: &str) -> String {
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
pub fn unsupported(kernel: &CmdOutput, shim: &CmdOutput) -> Option<String> {
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

/// Passed when no step differs, else every difference.
pub fn judge(steps: &[Step]) -> Outcome {
    let diffs: Vec<String> = steps.iter().filter_map(Step::difference).collect();
    if diffs.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(diffs.join(""))
    }
}
