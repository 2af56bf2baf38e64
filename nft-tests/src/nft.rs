//! Running `nft` (or any client) inside a namespace, against the kernel or under the
//! nftshim interposer, with a time limit.

use std::ffi::OsStr;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wait_timeout::ChildExt;

/// Who answers the client's nf_tables netlink messages.
#[derive(Clone, Debug)]
pub enum Target {
    /// The kernel of the namespace.
    Kernel,
    /// nftshimd, through `LD_PRELOAD=preload NFTSHIM_SOCKET=socket`.
    Shim { preload: PathBuf, socket: PathBuf },
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    SpawnFailed(String),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::TimedOut => write!(f, "timed out"),
            Exit::SpawnFailed(e) => write!(f, "could not start: {e}"),
        }
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdOutput {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

/// Environment every client run gets, on both sides: a fixed time zone (nft prints
/// times of day in local time; nftables' own test driver uses UTC-2) and the C locale
/// (strerror texts).
const FIXED_ENV: [(&str, &str); 2] = [("TZ", "UTC-2"), ("LC_ALL", "C")];

/// Builds `ip netns exec NETNS [env LD_PRELOAD=.. NFTSHIM_SOCKET=..] PROGRAM ARGS...`.
/// The preload goes through `env` so that it applies to the client only, not to `ip`.
pub fn command_in<I, S>(netns: &str, target: &Target, program: &OsStr, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]);
    if let Target::Shim { preload, socket } = target {
        cmd.arg("env");
        let mut preload_var = std::ffi::OsString::from("LD_PRELOAD=");
        preload_var.push(preload);
        let mut socket_var = std::ffi::OsString::from(format!("{}=", nftshim_ipc::ENV_SOCKET));
        socket_var.push(socket);
        cmd.arg(preload_var).arg(socket_var);
    }
    cmd.arg(program).args(args);
    cmd.envs(FIXED_ENV);
    cmd
}

/// Runs `cmd` to completion (stdin from `input`, or empty), killing it (and anything it
/// started) after `limit`.
pub fn run(mut cmd: Command, input: Option<&[u8]>, limit: Duration) -> CmdOutput {
    // Own process group, so that a timeout kills grandchildren too and none of them
    // keeps our pipes open.
    cmd.process_group(0)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return CmdOutput {
                exit: Exit::SpawnFailed(e.to_string()),
                stdout: String::new(),
                stderr: String::new(),
            }
        }
    };
    let stdin = child.stdin.take();
    let input = input.map(<[u8]>::to_vec);
    std::thread::spawn(move || {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            let _ = stdin.write_all(&input);
        }
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (exit, grace) = match child.wait_timeout(limit) {
        Ok(Some(status)) => (exit_of(status), limit),
        Ok(None) => {
            // SAFETY: kill(2) on the process group we made for this child.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            (Exit::TimedOut, Duration::from_secs(1))
        }
        Err(e) => (
            Exit::SpawnFailed(format!("wait: {e}")),
            Duration::from_secs(1),
        ),
    };
    CmdOutput {
        exit,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
    }
}

/// Reads a pipe to its end on a thread; the text arrives on the returned channel.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        _ => Exit::SpawnFailed(status.to_string()),
    }
}

/// One side of a differential run: a namespace, a target and the nft binary.
#[derive(Clone, Debug)]
pub struct NftSide {
    pub netns: String,
    pub target: Target,
    pub nft: PathBuf,
    pub limit: Duration,
}

impl NftSide {
    /// Runs `nft ARGS...` on this side.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> CmdOutput {
        self.run_program(self.nft.as_os_str(), args, None)
    }

    /// Runs any client, `PROGRAM ARGS...` with `input` on stdin, on this side.
    pub fn run_program<S: AsRef<OsStr>>(
        &self,
        program: &OsStr,
        args: &[S],
        input: Option<&[u8]>,
    ) -> CmdOutput {
        run(
            command_in(&self.netns, &self.target, program, args),
            input,
            self.limit,
        )
    }
}
