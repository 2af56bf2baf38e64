//! A stand-in for nftshimd that speaks the control protocol (shim/ipc) and answers
//! netlink just enough for `nft list ruleset` and `iptables-nft -L` on an empty ruleset:
//! GETGEN gets a NEWGEN, every dump gets NLMSG_DONE, a single GET gets ENOENT, anything
//! else an ACK when asked. It logs what it saw so tests can assert on it.

use std::collections::VecDeque;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netlink_proto::consts::*;
use netlink_proto::extra::*;
use netlink_proto::message::{done, split_datagram};
use netlink_proto::{Attr, AttrExt, NfGenMsg, NlMsg, NlmsgErr};
use nftshim_ipc::{Bind, Frame, Hello, Op, SockOpt};

/// A NEWTABLE with one of these names is refused with EPERM (`raw` for iptables-nft,
/// which knows only its built-in tables).
pub const REFUSED_TABLES: [&str; 2] = ["refuse_me", "raw"];

/// How the fake daemon behaves.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub genid: u32,
    /// Answer `Done` before writing replies, and deliver them only on `Sync`: the
    /// situation of a daemon whose client socket was full.
    pub lazy: bool,
    /// The JSON answer to `Status`.
    pub status_json: String,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            genid: 1,
            lazy: false,
            status_json: r#"{"dataplane":"fake","enforcing":false,"namespaces":[]}"#.into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Log {
    pub hellos: Vec<HelloSeen>,
    /// Every netlink datagram received, reassembled from parts.
    pub datagrams: Vec<Vec<u8>>,
    pub parts: usize,
    pub sockopts: Vec<SockOpt>,
    pub binds: Vec<Bind>,
    pub syncs: usize,
    pub statuses: usize,
    pub closed_sessions: usize,
}

impl Log {
    /// (type, flags) of every netlink message received.
    pub fn messages(&self) -> Vec<(u16, u16)> {
        self.datagrams
            .iter()
            .flat_map(|d| split_datagram(d).0)
            .map(|m| (m.msg_type(), m.flags()))
            .collect()
    }
}

/// How many messages of type `ty` a datagram holds.
pub fn count_type(datagram: &[u8], ty: u16) -> usize {
    split_datagram(datagram)
        .0
        .iter()
        .filter(|m| m.msg_type() == ty)
        .count()
}

#[derive(Clone, Debug)]
pub struct HelloSeen {
    pub hello: Hello,
    /// Inode of the namespace fd that came with Hello.
    pub netns_inode: u64,
    /// Whether the other fd was a SOCK_SEQPACKET socket.
    pub far_end_is_seqpacket: bool,
}

pub struct FakeDaemon {
    pub path: PathBuf,
    dir: PathBuf,
    pub log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    pub fn start(behaviour: Behaviour) -> FakeDaemon {
        let dir =
            std::env::temp_dir().join(format!("nftshim-fake-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nftshim.sock");
        let listener = listen(&path);
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, behaviour, log, stop))
        };
        FakeDaemon {
            path,
            dir,
            log,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn log(&self) -> Log {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the log (sessions end asynchronously).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Log) -> bool) -> Log {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if pred(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "fake daemon: timed out waiting for {what}; log: {log:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (u64::from(nanos) << 16) ^ N.fetch_add(1, Ordering::Relaxed)
}

fn check(r: libc::c_int, what: &str) -> libc::c_int {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
    r
}

fn listen(path: &std::path::Path) -> OwnedFd {
    use std::os::unix::ffi::OsStrExt;
    unsafe {
        let fd = check(
            libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0),
            "socket",
        );
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_un = zeroed();
        addr.sun_family = libc::AF_UNIX as u16;
        for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        check(
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                size_of::<libc::sockaddr_un>() as u32,
            ),
            "bind",
        );
        check(libc::listen(fd.as_raw_fd(), 64), "listen");
        fd
    }
}

fn accept_loop(
    listener: OwnedFd,
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
) {
    let mut sessions = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
            continue;
        }
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            continue;
        }
        let conn = unsafe { OwnedFd::from_raw_fd(fd) };
        let (b, l, s) = (behaviour.clone(), log.clone(), stop.clone());
        sessions.push(std::thread::spawn(move || Session::new(conn, b, l).run(&s)));
    }
    for s in sessions {
        let _ = s.join();
    }
}

struct Session {
    conn: OwnedFd,
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    far: Option<OwnedFd>,
    port: u32,
    parts: Vec<u8>,
    held: VecDeque<Vec<u8>>,
}

impl Session {
    fn new(conn: OwnedFd, behaviour: Behaviour, log: Arc<Mutex<Log>>) -> Session {
        Session {
            conn,
            behaviour,
            log,
            far: None,
            port: 0,
            parts: Vec::new(),
            held: VecDeque::new(),
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let mut pfd = libc::pollfd {
                fd: self.conn.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            if unsafe { libc::poll(&mut pfd, 1, 50) } == 0 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            let (n, fds) = recv_with_fds(self.conn.as_raw_fd(), &mut buf);
            if n <= 0 {
                if self.far.is_some() {
                    self.log.lock().unwrap().closed_sessions += 1;
                }
                return;
            }
            let Some((frame, payload)) = Frame::decode(&buf[..n as usize]) else {
                return;
            };
            let payload = payload.to_vec();
            let answer = self.handle(frame.op, &payload, fds);
            let rec = Frame {
                op: Op::Done,
                status: answer.0,
            }
            .encode(&answer.1);
            unsafe {
                libc::send(
                    self.conn.as_raw_fd(),
                    rec.as_ptr().cast(),
                    rec.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
        }
    }

    fn handle(&mut self, op: Op, payload: &[u8], fds: Vec<OwnedFd>) -> (i64, Vec<u8>) {
        match op {
            Op::Hello => {
                let hello = Hello::decode(payload).expect("hello payload");
                let mut fds = fds.into_iter();
                let (Some(far), Some(netns)) = (fds.next(), fds.next()) else {
                    return (-(libc::EINVAL as i64), vec![]);
                };
                let mut st: libc::stat = unsafe { zeroed() };
                unsafe { libc::fstat(netns.as_raw_fd(), &mut st) };
                let mut ty: libc::c_int = 0;
                let mut tl = 4u32;
                unsafe {
                    libc::getsockopt(
                        far.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_TYPE,
                        (&mut ty as *mut i32).cast(),
                        &mut tl,
                    )
                };
                self.far = Some(far);
                let mut log = self.log.lock().unwrap();
                self.port = 4000 + log.hellos.len() as u32;
                log.hellos.push(HelloSeen {
                    hello,
                    netns_inode: st.st_ino,
                    far_end_is_seqpacket: ty == libc::SOCK_SEQPACKET,
                });
                (i64::from(self.port), vec![])
            }
            Op::Status => {
                self.log.lock().unwrap().statuses += 1;
                (0, self.behaviour.status_json.clone().into_bytes())
            }
            Op::RequestPart => {
                self.parts.extend_from_slice(payload);
                self.log.lock().unwrap().parts += 1;
                (0, vec![])
            }
            Op::Request => {
                let mut datagram = std::mem::take(&mut self.parts);
                datagram.extend_from_slice(payload);
                let replies = self.answer(&datagram);
                let len = datagram.len() as i64;
                self.log.lock().unwrap().datagrams.push(datagram);
                if self.behaviour.lazy {
                    self.held.extend(replies);
                } else {
                    replies.iter().for_each(|r| self.deliver(r));
                }
                (len, vec![])
            }
            Op::SetSockOpt => {
                let opt = SockOpt::decode(payload).expect("sockopt payload");
                let val = opt
                    .value
                    .get(..4)
                    .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
                    .unwrap_or(0);
                self.log.lock().unwrap().sockopts.push(opt.clone());
                // As the kernel: NETLINK_NETFILTER has NFNLGRP_MAX (9) groups.
                let bad_group = opt.level == SOL_NETLINK
                    && (opt.name == 1 || opt.name == 2)
                    && (val == 0 || val > 9);
                let unknown =
                    opt.level == SOL_NETLINK && ![1, 2, 3, 4, 5, 8, 10, 11, 12].contains(&opt.name);
                match (bad_group, unknown) {
                    (true, _) => (-(libc::EINVAL as i64), vec![]),
                    (_, true) => (-(libc::ENOPROTOOPT as i64), vec![]),
                    _ => (0, vec![]),
                }
            }
            Op::Bind => {
                let b = Bind::decode(payload).expect("bind payload");
                self.log.lock().unwrap().binds.push(b);
                if b.pid != 0 {
                    self.port = b.pid;
                }
                (i64::from(self.port), vec![])
            }
            Op::Sync => {
                self.log.lock().unwrap().syncs += 1;
                let any = !self.held.is_empty();
                while let Some(r) = self.held.pop_front() {
                    self.deliver(&r);
                }
                (i64::from(any), vec![])
            }
            Op::Done => (-(libc::EINVAL as i64), vec![]),
        }
    }

    fn deliver(&self, record: &[u8]) {
        if let Some(far) = &self.far {
            unsafe {
                libc::send(
                    far.as_raw_fd(),
                    record.as_ptr().cast(),
                    record.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
        }
    }

    /// The records the fake "kernel" answers a datagram with, one message each.
    fn answer(&self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let genid = self.behaviour.genid;
        let mut out = Vec::new();
        for m in split_datagram(datagram).0 {
            let ack = m.flags() & NLM_F_ACK != 0;
            let ty = m.msg_type();
            if ty == NFNL_MSG_BATCH_BEGIN
                || ty == NFNL_MSG_BATCH_END
                || m.subsys() != NFNL_SUBSYS_NFTABLES
            {
                if ack {
                    out.push(NlmsgErr::reply(0, &m, false, false, None).to_bytes());
                }
                continue;
            }
            let sub = u16::from(m.subsys_msg());
            if sub == NFT_MSG_GETGEN {
                let attrs = [
                    Attr::u32_be(NFTA_GEN_ID, genid),
                    Attr::u32_be(NFTA_GEN_PROC_PID, 1),
                    Attr::strz(NFTA_GEN_PROC_NAME, "fake"),
                ];
                let gen = NlMsg::nf(
                    (u16::from(NFNL_SUBSYS_NFTABLES) << 8) | NFT_MSG_NEWGEN,
                    0,
                    m.seq(),
                    self.port,
                    NfGenMsg::new(0, genid as u16),
                    &attrs,
                );
                out.push(gen.to_bytes());
                if ack {
                    out.push(NlmsgErr::reply(0, &m, false, false, None).to_bytes());
                }
            } else if m.flags() & NLM_F_DUMP == NLM_F_DUMP {
                out.push(done(m.seq(), self.port, Some(NfGenMsg::new(0, genid as u16))).to_bytes());
            } else if [
                NFT_MSG_GETTABLE,
                NFT_MSG_GETCHAIN,
                NFT_MSG_GETRULE,
                NFT_MSG_GETSET,
                NFT_MSG_GETSETELEM,
                NFT_MSG_GETOBJ,
                NFT_MSG_GETFLOWTABLE,
            ]
            .contains(&sub)
            {
                out.push(NlmsgErr::reply(-libc::ENOENT, &m, false, false, None).to_bytes());
            } else if sub == NFT_MSG_NEWTABLE
                && m.nf_attrs()
                    .0
                    .get(NFTA_TABLE_NAME)
                    .and_then(|a| a.as_str())
                    .is_some_and(|t| REFUSED_TABLES.contains(&t))
            {
                // Errors are reported whether or not the sender asked for an ACK.
                out.push(NlmsgErr::reply(-libc::EPERM, &m, false, false, None).to_bytes());
            } else if ack {
                out.push(NlmsgErr::reply(0, &m, false, false, None).to_bytes());
            }
        }
        out
    }
}

/// recvmsg with room for passed fds. Returns (bytes, fds).
fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> (isize, Vec<OwnedFd>) {
    unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cbuf = [0u8; 128];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC);
        let mut fds = Vec::new();
        if n >= 0 {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                    let data = libc::CMSG_DATA(c).cast::<RawFd>();
                    for i in 0..count {
                        fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        (n, fds)
    }
}
