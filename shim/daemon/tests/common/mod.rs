//! Test helpers: a raw client of the control protocol, throw-away network namespaces,
//! and the daemon as a child process.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nftshim_ipc::{Bind, Frame, Hello, Op, SockOpt, VERSION};
use nix::sys::socket::{self, ControlMessage, MsgFlags};

/// A control connection, speaking the protocol byte by byte as the interposer will.
pub struct Client {
    pub ctl: OwnedFd,
    /// Our end of the emulated netlink socket (after Hello).
    pub app: Option<OwnedFd>,
}

pub fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair")
}

impl Client {
    pub fn connect(path: &Path) -> io::Result<Client> {
        let ctl = nftshimd::seqpacket::connect_blocking(path)?;
        // A dead daemon must fail a test, not hang it.
        let tv = nix::sys::time::TimeVal::new(20, 0);
        socket::setsockopt(&ctl, socket::sockopt::ReceiveTimeout, &tv)?;
        Ok(Client { ctl, app: None })
    }

    pub fn send_record(&self, op: Op, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let rec = Frame { op, status: 0 }.encode(payload);
        self.send_raw(&rec, fds)
    }

    pub fn send_raw(&self, rec: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let iov = [IoSlice::new(rec)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        socket::sendmsg::<()>(self.ctl.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
        Ok(())
    }

    /// The next Done: `(status, payload)`, or None if the daemon closed the connection.
    pub fn recv_done(&self) -> io::Result<Option<(i64, Vec<u8>)>> {
        let mut buf = vec![0u8; 1 << 20];
        let n = socket::recv(self.ctl.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Ok(None);
        }
        let (frame, payload) = Frame::decode(&buf[..n]).expect("daemon sent a malformed record");
        assert_eq!(frame.op, Op::Done);
        Ok(Some((frame.status, payload.to_vec())))
    }

    pub fn call(&self, op: Op, payload: &[u8]) -> i64 {
        self.send_record(op, payload, &[]).expect("send");
        self.recv_done()
            .expect("recv")
            .expect("daemon closed the connection")
            .0
    }

    /// Hello with a fresh socketpair and the given namespace fd; keeps our end.
    pub fn hello_with(&mut self, netns: BorrowedFd<'_>) -> i64 {
        let (ours, theirs) = seqpacket_pair();
        let hello = Hello {
            version: VERSION,
            tid: nix::unistd::gettid().as_raw() as u32,
        };
        self.send_record(
            Op::Hello,
            &hello.encode(),
            &[theirs.as_raw_fd(), netns.as_raw_fd()],
        )
        .expect("send Hello");
        drop(theirs);
        self.app = Some(ours);
        self.recv_done()
            .expect("recv")
            .map(|d| d.0)
            .unwrap_or(i64::MIN)
    }

    /// Hello from the calling thread's own network namespace.
    pub fn hello(&mut self) -> i64 {
        let ns = File::open("/proc/thread-self/ns/net").unwrap();
        self.hello_with(ns.as_fd())
    }

    pub fn request(&self, datagram: &[u8]) -> i64 {
        self.call(Op::Request, datagram)
    }

    pub fn setsockopt(&self, level: i32, name: i32, value: i32) -> i64 {
        let opt = SockOpt {
            level,
            name,
            value: value.to_ne_bytes().to_vec(),
        };
        self.call(Op::SetSockOpt, &opt.encode())
    }

    pub fn bind(&self, pid: u32, groups: u32) -> i64 {
        self.call(Op::Bind, &Bind { pid, groups }.encode())
    }

    pub fn sync(&self) -> i64 {
        self.call(Op::Sync, &[])
    }

    /// One record from the application socket, waiting at most `timeout`.
    pub fn read_app(&self, timeout: Duration) -> Option<Vec<u8>> {
        let app = self.app.as_ref().expect("no Hello yet");
        let mut pfd = libc::pollfd {
            fd: app.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) } <= 0 {
            return None;
        }
        let mut buf = vec![0u8; 1 << 17];
        let n = socket::recv(app.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Reads without waiting.
    pub fn try_read_app(&self) -> Option<Vec<u8>> {
        self.read_app(Duration::ZERO)
    }
}

/// Asks for the daemon's status on a connection of its own.
pub fn status(socket: &Path) -> serde_json::Value {
    let c = Client::connect(socket).expect("connect for status");
    c.send_record(Op::Status, &[], &[]).unwrap();
    let (st, json) = c.recv_done().unwrap().expect("status answer");
    assert_eq!(st, 0);
    serde_json::from_slice(&json).expect("status is JSON")
}

pub fn namespaces_in(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["namespaces"]
        .as_array()
        .expect("namespaces array")
        .clone()
}

pub fn find_namespace(status: &serde_json::Value, cookie: u64) -> Option<serde_json::Value> {
    namespaces_in(status)
        .into_iter()
        .find(|n| n["cookie"].as_u64() == Some(cookie))
}

static NETNS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace made for one test, removed even when the test fails.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new() -> TestNetns {
        let name = format!(
            "nftshim-test-srv-{}-{}",
            std::process::id(),
            NETNS_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {name}");
        TestNetns { name }
    }

    pub fn open(&self) -> File {
        File::open(format!("/run/netns/{}", self.name)).expect("open netns")
    }

    /// Runs `f` on a thread that lives in this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.open();
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// The kernel's cookie for this namespace.
    pub fn cookie(&self) -> u64 {
        self.run(|| nftshimd::sys::current_netns_cookie().unwrap())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// nftshimd as a child process, with its own socket and state directory.
pub struct DaemonProcess {
    pub child: Child,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub stderr_path: PathBuf,
}

impl DaemonProcess {
    pub fn start(dir: &Path) -> DaemonProcess {
        Self::start_with(dir, &["--dataplane", "none"]).expect("daemon did not come up")
    }

    /// Starts and waits until the socket answers; Err(stderr) if the daemon exits.
    pub fn start_with(dir: &Path, args: &[&str]) -> Result<DaemonProcess, String> {
        let socket = dir.join("run/nftshim.sock");
        let state_dir = dir.join("state");
        let stderr_path = dir.join(format!(
            "daemon-{}.log",
            NETNS_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_nftshimd"))
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(args)
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn nftshimd");
        let mut d = DaemonProcess {
            child,
            socket,
            state_dir,
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = d.child.try_wait() {
                return Err(d.stderr());
            }
            if Client::connect(&d.socket).is_ok() {
                return Ok(d);
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not listen in time: {}",
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a daemon that is expected to exit by itself; returns its status and stderr.
    pub fn run_to_exit(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_nftshimd"))
            .arg("--socket")
            .arg(dir.join("run/nftshim.sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn nftshimd");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, then wait; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
