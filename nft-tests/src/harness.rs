//! Building blocks for the integration tests in `nft-tests/tests/`: namespaces, a
//! private nftshimd, and running the real `nft` against the kernel or under the preload.
//!
//! ```no_run
//! use nft_tests::harness::*;
//! let shim = ShimDaemon::start();
//! let ns = test_netns("demo");
//! let out = nft(&ns, Some(&shim), &["list", "ruleset"]);
//! assert!(out.success(), "{}", out.stderr);
//! ```

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub use crate::bins::Binaries;
pub use crate::daemon::Daemon;
pub use crate::listing::{mask_process_ids, normalise, rule_handles};
pub use crate::netns::Netns;
pub use crate::nft::{CmdOutput, Exit, Target};

/// Time limit of one client run in tests.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A namespace `nftshim-test-<pid>-<n>-TAG`, deleted on drop. Panics if it cannot be made.
pub fn test_netns(tag: &str) -> Netns {
    crate::cleanup::install_signal_cleanup();
    Netns::create_unique("nftshim-test", tag).expect("creating a test network namespace")
}

/// nftshimd (data plane `none`) from [`Binaries::for_tests`], plus the preload library
/// that clients need to reach it.
pub struct ShimDaemon {
    pub daemon: Daemon,
    pub preload: PathBuf,
}

impl ShimDaemon {
    pub fn start() -> ShimDaemon {
        ShimDaemon::start_with("none")
    }

    pub fn start_with(dataplane: &str) -> ShimDaemon {
        crate::cleanup::install_signal_cleanup();
        let bins = Binaries::for_tests();
        let daemon = Daemon::start(&bins.nftshimd, dataplane)
            .unwrap_or_else(|e| panic!("starting {}: {e:#}", bins.nftshimd.display()));
        ShimDaemon {
            daemon,
            preload: bins.preload,
        }
    }

    pub fn target(&self) -> Target {
        Target::Shim {
            preload: self.preload.clone(),
            socket: self.daemon.socket().to_path_buf(),
        }
    }
}

fn target_of(shim: Option<&ShimDaemon>) -> Target {
    shim.map_or(Target::Kernel, ShimDaemon::target)
}

/// `ip netns exec NS [env LD_PRELOAD=.. NFTSHIM_SOCKET=..] PROGRAM ARGS...`: the kernel
/// answers when `shim` is `None`, nftshimd otherwise.
pub fn command<S: AsRef<OsStr>>(
    ns: &Netns,
    shim: Option<&ShimDaemon>,
    program: impl AsRef<OsStr>,
    args: &[S],
) -> Command {
    crate::nft::command_in(ns.name(), &target_of(shim), program.as_ref(), args)
}

/// Runs the real `nft ARGS...` in `ns`, against the kernel (`shim` = `None`) or nftshimd.
pub fn nft<S: AsRef<OsStr>>(ns: &Netns, shim: Option<&ShimDaemon>, args: &[S]) -> CmdOutput {
    crate::nft::run(command(ns, shim, "nft", args), None, LIMIT)
}

/// Like [`nft`], with `input` on stdin (for `nft -f -`).
pub fn nft_stdin<S: AsRef<OsStr>>(
    ns: &Netns,
    shim: Option<&ShimDaemon>,
    args: &[S],
    input: &str,
) -> CmdOutput {
    crate::nft::run(
        command(ns, shim, "nft", args),
        Some(input.as_bytes()),
        LIMIT,
    )
}

/// Runs any prepared command with the test time limit.
pub fn run(cmd: Command) -> CmdOutput {
    crate::nft::run(cmd, None, LIMIT)
}

/// A kernel namespace and an nftshim namespace that receive the same commands.
pub struct Differential {
    pub kernel: Netns,
    pub shim_ns: Netns,
    pub shim: ShimDaemon,
}

impl Differential {
    pub fn new(tag: &str) -> Differential {
        let shim = ShimDaemon::start();
        Differential::with(tag, shim)
    }

    pub fn with(tag: &str, shim: ShimDaemon) -> Differential {
        Differential {
            kernel: test_netns(&format!("{tag}-k")),
            shim_ns: test_netns(&format!("{tag}-s")),
            shim,
        }
    }

    /// `nft ARGS...` on both sides: (kernel, nftshim).
    pub fn nft<S: AsRef<OsStr>>(&self, args: &[S]) -> (CmdOutput, CmdOutput) {
        (
            nft(&self.kernel, None, args),
            nft(&self.shim_ns, Some(&self.shim), args),
        )
    }

    /// Runs `nft ARGS...` on both sides and asserts the same exit status, stderr and
    /// (listing-normalised) stdout; returns the kernel's output.
    pub fn same<S: AsRef<OsStr>>(&self, args: &[S]) -> CmdOutput {
        let (k, s) = self.nft(args);
        assert_same(&display_args(args), &k, &s);
        k
    }

    /// [`Differential::same`], and the kernel must have accepted the command.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> CmdOutput {
        let k = self.same(args);
        assert!(
            k.success(),
            "kernel refused `{}`: {}",
            display_args(args),
            k.stderr
        );
        k
    }

    /// [`Differential::same_stdin`], and the kernel must have accepted the input.
    pub fn ok_stdin<S: AsRef<OsStr>>(&self, args: &[S], input: &str) -> CmdOutput {
        let k = self.same_stdin(args, input);
        assert!(
            k.success(),
            "kernel refused `{}`: {}",
            display_args(args),
            k.stderr
        );
        k
    }

    /// Like [`Differential::same`], with `input` on stdin.
    pub fn same_stdin<S: AsRef<OsStr>>(&self, args: &[S], input: &str) -> CmdOutput {
        let k = nft_stdin(&self.kernel, None, args, input);
        let s = nft_stdin(&self.shim_ns, Some(&self.shim), args, input);
        assert_same(&display_args(args), &k, &s);
        k
    }

    /// Asserts that `nft -a list ruleset` agrees (rules and handles) and returns it.
    pub fn same_ruleset(&self) -> String {
        self.same(&["-a", "list", "ruleset"]).stdout
    }
}

fn display_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Panics with both outputs unless exit status, stderr and stdout agree (trailing
/// whitespace, element expiry times and `by process PID` ignored).
pub fn assert_same(what: &str, kernel: &CmdOutput, shim: &CmdOutput) {
    let same = kernel.exit == shim.exit
        && kernel.stderr.trim_end() == shim.stderr.trim_end()
        && normalise(&mask_process_ids(&kernel.stdout))
            == normalise(&mask_process_ids(&shim.stdout));
    assert!(
        same,
        "`{what}` differs\n--- kernel: {}\nstdout:\n{}\nstderr:\n{}\n--- nftshim: {}\nstdout:\n{}\nstderr:\n{}",
        kernel.exit, kernel.stdout, kernel.stderr, shim.exit, shim.stdout, shim.stderr
    );
}
