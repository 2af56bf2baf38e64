//! A private nftshimd for one run: its own socket and state directory in a temporary
//! directory, killed when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use wait_timeout::ChildExt;

pub struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `BIN --socket DIR/sock --state-dir DIR/state --dataplane MODE` and waits
    /// until its socket accepts connections.
    pub fn start(bin: &Path, dataplane: &str) -> anyhow::Result<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("nftshim-daemon-")
            .tempdir()?;
        // Unprivileged test clients must reach the socket: the daemon, not the file
        // mode, decides what they may do.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let socket = dir.path().join("sock");
        let log = dir.path().join("nftshimd.log");
        let child = spawn(bin, dataplane, dir.path(), &socket, &log)?;
        crate::cleanup::register_pid(child.id() as i32);
        let mut daemon = Daemon {
            child,
            socket,
            log,
            dir,
        };
        daemon.wait_ready(Duration::from_secs(15))?;
        Ok(daemon)
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "nftshimd exited at start ({status}); log:\n{}",
                    self.log_tail(40)
                );
            }
            if connectable(&self.socket) {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "nftshimd did not open {} within {limit:?}; log:\n{}",
                    self.socket.display(),
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon outright (SIGKILL: none of its code runs any more), as a
    /// crash would.
    pub fn kill(&mut self) {
        let pid = self.child.id() as i32;
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::cleanup::forget_pid(pid);
    }

    /// Starts another daemon on the same socket and state directory (after [`Daemon::kill`]).
    pub fn restart(&mut self, bin: &Path, dataplane: &str) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        self.child = spawn(bin, dataplane, self.dir.path(), &self.socket, &self.log)?;
        crate::cleanup::register_pid(self.child.id() as i32);
        self.wait_ready(Duration::from_secs(15))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// How a client reaches this daemon: through `preload`.
    pub fn target(&self, preload: &Path) -> crate::nft::Target {
        crate::nft::Target::Shim {
            preload: preload.to_path_buf(),
            socket: self.socket.clone(),
        }
    }

    /// `tool` (nft, iptables-nft, ...) through this daemon in `netns`.
    pub fn side(
        &self,
        preload: &Path,
        netns: &str,
        tool: &str,
        limit: Duration,
    ) -> crate::nft::NftSide {
        crate::nft::NftSide {
            netns: netns.to_string(),
            target: self.target(preload),
            nft: tool.into(),
            limit,
        }
    }

    /// `tool` on the kernel in `kernel_ns` and through this daemon in `shim_ns`: the
    /// two sides of a differential test.
    pub fn sides(
        &self,
        preload: &Path,
        (kernel_ns, shim_ns): (&str, &str),
        tool: &str,
        limit: Duration,
    ) -> [crate::nft::NftSide; 2] {
        let kernel = crate::nft::NftSide {
            netns: kernel_ns.to_string(),
            target: crate::nft::Target::Kernel,
            nft: tool.into(),
            limit,
        };
        [kernel, self.side(preload, shim_ns, tool, limit)]
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Err` with the exit status and the log's end if the daemon is no longer running.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(anyhow!(
                "nftshimd exited ({status}); log:\n{}",
                self.log_tail(40)
            )),
        }
    }

    /// The last `lines` lines of the daemon's stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SIGTERM first so that a well-behaved daemon can tidy up; then make sure.
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let exited = matches!(self.child.wait_timeout(Duration::from_secs(3)), Ok(Some(_)));
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        crate::cleanup::forget_pid(pid);
    }
}

/// `BIN --socket SOCKET --state-dir DIR/state --dataplane MODE`, logging (appending)
/// to `log`.
fn spawn(
    bin: &Path,
    dataplane: &str,
    dir: &Path,
    socket: &Path,
    log: &Path,
) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(bin);
    // For a closer look at a failing test: NFTSHIMD_LOG_LEVEL=info,nftshim_dataplane=debug.
    if let Ok(level) = std::env::var("NFTSHIMD_LOG_LEVEL") {
        cmd.arg("--log-level").arg(level);
    }
    cmd.arg("--socket")
        .arg(socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--dataplane")
        .arg(dataplane)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

fn connectable(path: &Path) -> bool {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    connect(fd.as_raw_fd(), &addr).is_ok()
}

/// Runs `PROGRAM ARGS...` in `ns` with `input` on stdin, against the kernel (`daemon` =
/// `None`) or through `preload` to `daemon`; a minute's hang guard.
pub fn run_client<S: AsRef<std::ffi::OsStr>>(
    ns: &crate::netns::Netns,
    daemon: Option<(&Daemon, &Path)>,
    program: &str,
    args: &[S],
    input: Option<&str>,
) -> crate::nft::CmdOutput {
    let target = daemon.map_or(crate::nft::Target::Kernel, |(d, preload)| d.target(preload));
    let cmd = crate::nft::command_in(ns.name(), &target, program.as_ref(), args);
    crate::nft::run(
        cmd,
        input.map(str::as_bytes),
        std::time::Duration::from_secs(60),
    )
}
