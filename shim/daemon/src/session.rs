//! One control connection: an emulated netlink socket (after Hello), or a Status query.
//!
//! Requests are handled in order and each is answered with one `Done`. Anything the
//! protocol does not allow closes this connection only; the daemon serves on.
//!
//! What the client sees in `Done.status`:
//! - `Hello`, `Bind`: the port id as a `u32` (so -4096 reads as 4294963200), or -errno.
//!   A refused Hello (-EPERM: the netns fd is not one the caller is in; -EINVAL: not a
//!   netns, wrong fds or socket kind; -EPROTONOSUPPORT: version) also closes the
//!   connection.
//! - `Request`: the datagram's length once every reply is in the application socket or
//!   queued behind it. Unprivileged callers are answered by the engine (EPERM per
//!   message), not refused here.
//! - `SetSockOpt`: 0 or -errno as `setsockopt` on a netlink socket would give
//!   (memberships need CAP_NET_ADMIN over the namespace).
//! - `Sync`: 1 if the application has something to read now (after writing what fits).
//! - `Status`: 0, with the JSON of [`nftshim_ipc::StatusReport`] as payload.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nftshim_engine::Caller;
use nftshim_ipc::{Bind, Frame, Hello, Op, SockOpt, MAX_RECORD, VERSION};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::appsock::AppSocket;
use crate::caller;
use crate::engine::NamespaceState;
use crate::namespace::{Namespace, SessionId, SessionLink};
use crate::seqpacket::{Received, Record, SeqPacketConn};
use crate::server::Daemon;
use crate::sockstate::{NetlinkSocket, SockOptEffect};
use crate::status;
use crate::sys;

/// An emulated netlink socket, from a successful Hello until the connection closes.
struct Session<S: NamespaceState> {
    daemon: Arc<Daemon<S>>,
    id: SessionId,
    ns: Arc<Namespace<S>>,
    link: Arc<SessionLink>,
    drainer: JoinHandle<()>,
    socket: NetlinkSocket,
    pid: u32,
    comm: String,
    net_admin: bool,
    private_cgroupns: bool,
    netns_private_userns: bool,
}

impl<S: NamespaceState> Drop for Session<S> {
    fn drop(&mut self) {
        self.drainer.abort();
        let (ns, store, portid) = (
            self.ns.clone(),
            self.daemon.store.clone(),
            self.socket.portid,
        );
        // Tables owned by this socket go with it; the engine may touch the data plane, so
        // off the async threads when a runtime is still there (not at shutdown).
        let release = move || ns.socket_closed(portid, &store);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(release)),
            Err(_) => release(),
        }
        self.daemon
            .registry
            .leave(&self.ns, self.id, self.socket.portid);
        tracing::debug!(portid = self.socket.portid, "session closed");
    }
}

impl<S: NamespaceState> Session<S> {
    fn caller(&self) -> Caller {
        Caller {
            portid: self.socket.portid,
            pid: self.pid,
            comm: self.comm.clone(),
            ext_ack: self.socket.ext_ack,
            cap_ack: self.socket.cap_ack,
            net_admin: self.net_admin,
            private_cgroupns: self.private_cgroupns,
            netns_private_userns: self.netns_private_userns,
        }
    }
}

/// Runs `f`, which may block (engine work, /proc reads), without stalling the other
/// connections. On the daemon's multi-threaded runtime the task's own thread runs it
/// (`block_in_place`: the runtime moves its other tasks away), which saves the two
/// thread hand-overs of `spawn_blocking` on every request; elsewhere (tests on a
/// current-thread runtime) it goes to the blocking pool.
async fn run_blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
            .map_err(|_| "panicked".to_string())
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What to do after a record.
enum Next {
    Reply(Vec<u8>),
    /// Answer, then close (a refused Hello).
    ReplyAndClose(Vec<u8>),
    /// Protocol violation or fatal error: close without answering.
    Close(String),
}

fn done(status: i64) -> Vec<u8> {
    Frame::done(status)
}

fn errno_reply(errno: i32) -> i64 {
    -(errno as i64)
}

struct Connection<S: NamespaceState> {
    daemon: Arc<Daemon<S>>,
    id: SessionId,
    session: Option<Session<S>>,
    /// Leading parts of a datagram too large for one control record (`Op::RequestPart`).
    request_parts: Vec<u8>,
}

/// Serves one control connection to its end.
pub async fn serve<S: NamespaceState>(daemon: Arc<Daemon<S>>, conn: SeqPacketConn) {
    let id = daemon.next_session_id();
    let span = tracing::info_span!("session", id);
    async move {
        let mut c = Connection {
            daemon,
            id,
            session: None,
            request_parts: Vec::new(),
        };
        c.run(&conn).await;
    }
    .instrument(span)
    .await
}

impl<S: NamespaceState> Connection<S> {
    async fn run(&mut self, conn: &SeqPacketConn) {
        loop {
            let record = match conn.recv(MAX_RECORD + Frame::LEN).await {
                Ok(Received::Record(r)) => r,
                Ok(Received::Eof) => return,
                Ok(Received::TooLong(len)) => {
                    tracing::info!(len, "control record too long, refused with EMSGSIZE");
                    if conn.send(&done(errno_reply(libc::EMSGSIZE))).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Received::FdsTruncated) => {
                    tracing::warn!("control record with too many descriptors; closing");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control connection failed");
                    return;
                }
            };
            let (reply, close) = match self.handle(conn, record).await {
                Next::Reply(r) => (r, false),
                Next::ReplyAndClose(r) => (r, true),
                Next::Close(why) => {
                    tracing::warn!(reason = %why, "closing misbehaving control connection");
                    return;
                }
            };
            if let Err(e) = conn.send(&reply).await {
                tracing::debug!(error = %e, "client went away before its answer");
                return;
            }
            if close {
                return;
            }
        }
    }

    async fn handle(&mut self, conn: &SeqPacketConn, record: Record) -> Next {
        let Some((frame, _)) = Frame::decode(&record.data) else {
            return Next::Close("malformed control record".into());
        };
        if frame.op != Op::Hello && !record.fds.is_empty() {
            return Next::Close(format!("descriptors passed with {:?}", frame.op));
        }
        let record = match frame.op {
            Op::RequestPart => return self.request_part(&record.data[Frame::LEN..]),
            Op::Request if !self.request_parts.is_empty() => {
                let mut whole = std::mem::take(&mut self.request_parts);
                whole.extend_from_slice(&record.data[Frame::LEN..]);
                if whole.len() > MAX_RECORD {
                    return Next::Reply(done(errno_reply(libc::EMSGSIZE)));
                }
                let mut data = record.data[..Frame::LEN].to_vec();
                data.extend_from_slice(&whole);
                Record {
                    data,
                    fds: record.fds,
                }
            }
            _ => {
                // Any other op between the parts of a datagram abandons them.
                self.request_parts.clear();
                record
            }
        };
        match (frame.op, self.session.is_some()) {
            (Op::Hello, false) => self.hello(conn, record).await,
            (Op::Status, _) => self.status().await,
            (Op::Request, true) => self.request(record).await,
            (Op::SetSockOpt, true) => self.setsockopt(&record.data[Frame::LEN..]),
            (Op::Bind, true) => self.bind(&record.data[Frame::LEN..]),
            (Op::Sync, true) => self.sync(),
            (op, _) => Next::Close(format!("{op:?} not allowed here")),
        }
    }

    async fn hello(&mut self, conn: &SeqPacketConn, record: Record) -> Next {
        let Some(hello) = Hello::decode(&record.data[Frame::LEN..]) else {
            return Next::Close("malformed Hello".into());
        };
        if hello.version != VERSION {
            tracing::warn!(
                version = hello.version,
                "client speaks another protocol version"
            );
            return Next::ReplyAndClose(done(errno_reply(libc::EPROTONOSUPPORT)));
        }
        let Ok::<[OwnedFd; 2], _>([app, netns]) = record.fds.try_into() else {
            return Next::ReplyAndClose(done(errno_reply(libc::EINVAL)));
        };
        let cred = match sys::peer_credentials(conn.as_fd()) {
            Ok(c) => c,
            Err(e) => return Next::Close(format!("SO_PEERCRED: {e}")),
        };
        let pidfd = sys::peer_pidfd(conn.as_fd()).ok();
        let home = self.daemon.home.clone();
        // The application's socket pair end goes along to tell its namespace, and back.
        let (verified, app) = match run_blocking(move || {
            let v = caller::verify(
                &home,
                cred.pid as u32,
                cred.uid,
                pidfd.as_ref().map(|f| f.as_fd()),
                netns.as_fd(),
                Some(app.as_fd()),
            );
            (v, app)
        })
        .await
        {
            Ok(done_verifying) => done_verifying,
            Err(e) => return Next::Close(format!("verification task failed: {e}")),
        };
        let v = match verified {
            Ok(v) => v,
            Err(refused) => {
                tracing::info!(pid = cred.pid, uid = cred.uid, tid = hello.tid, reason = %refused, "Hello refused");
                return Next::ReplyAndClose(done(errno_reply(refused.errno())));
            }
        };
        let socket = match AppSocket::new(app, self.daemon.limits) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::info!(error = %e, "Hello refused: bad application socket");
                return Next::ReplyAndClose(done(errno_reply(libc::EINVAL)));
            }
        };
        // The port id is known once the namespace has allocated it, just below.
        let link = Arc::new(SessionLink::new(socket.clone(), 0));
        let (ns, portid) =
            self.daemon
                .registry
                .join(v.netns, self.id, link.clone(), v.tgid_in_own_ns);
        link.portid
            .store(portid, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            pid = v.pid,
            uid = v.uid,
            comm = %v.comm,
            netns_cookie = v.netns.cookie,
            netns_inode = v.netns.inode,
            portid,
            net_admin = v.net_admin,
            "session opened"
        );
        self.session = Some(Session {
            daemon: self.daemon.clone(),
            id: self.id,
            ns,
            link,
            drainer: tokio::spawn(socket.drain_forever().in_current_span()),
            socket: NetlinkSocket::new(portid),
            pid: v.pid,
            comm: v.comm,
            net_admin: v.net_admin,
            private_cgroupns: v.private_cgroupns,
            netns_private_userns: v.netns_private_userns,
        });
        Next::Reply(done(portid as i64))
    }

    /// Buffers a leading part of a large datagram; the closing `Request` completes it.
    fn request_part(&mut self, part: &[u8]) -> Next {
        if self.session.is_none() {
            return Next::Close("RequestPart before Hello".into());
        }
        if self.request_parts.len() + part.len() > MAX_RECORD {
            self.request_parts = Vec::new();
            return Next::Reply(done(errno_reply(libc::EMSGSIZE)));
        }
        self.request_parts.extend_from_slice(part);
        Next::Reply(done(0))
    }

    async fn request(&mut self, record: Record) -> Next {
        let Some(s) = self.session.as_mut() else {
            return Next::Close("Request before Hello".into());
        };
        s.socket.mark_sent();
        let consumed = record.data.len() - Frame::LEN;
        let (ns, caller, store) = (s.ns.clone(), s.caller(), self.daemon.store.clone());
        let data = record.data;
        let unicast =
            match run_blocking(move || ns.handle_datagram(&caller, &data[Frame::LEN..], &store))
                .await
            {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(error = %e, "the engine failed on a datagram");
                    return Next::Close("engine failure".into());
                }
            };
        match s.link.socket.send_unicast(unicast) {
            Ok(_) => Next::Reply(done(consumed as i64)),
            Err(overflow) => {
                Next::Close(format!("application does not read its replies: {overflow}"))
            }
        }
    }

    fn setsockopt(&mut self, payload: &[u8]) -> Next {
        let Some(s) = self.session.as_mut() else {
            return Next::Close("SetSockOpt before Hello".into());
        };
        let Some(opt) = SockOpt::decode(payload) else {
            return Next::Close("malformed SetSockOpt".into());
        };
        let status = match s
            .socket
            .setsockopt(opt.level, opt.name, &opt.value, s.net_admin)
        {
            Ok(SockOptEffect::Recorded) => 0,
            Ok(SockOptEffect::ReceiveBuffer(bytes)) => {
                if let Err(e) = s.link.socket.set_send_buffer(bytes) {
                    tracing::warn!(bytes, error = %e, "could not grow the send buffer");
                }
                0
            }
            Err(errno) => errno_reply(errno),
        };
        s.link
            .groups
            .store(s.socket.groups, std::sync::atomic::Ordering::Relaxed);
        Next::Reply(done(status))
    }

    fn bind(&mut self, payload: &[u8]) -> Next {
        let Some(s) = self.session.as_mut() else {
            return Next::Close("Bind before Hello".into());
        };
        let Some(b) = Bind::decode(payload) else {
            return Next::Close("malformed Bind".into());
        };
        let ns = s.ns.clone();
        let status = match s
            .socket
            .bind(b.pid, b.groups, s.net_admin, |old, new| ns.rebind(old, new))
        {
            Ok(portid) => {
                s.link
                    .portid
                    .store(portid, std::sync::atomic::Ordering::Relaxed);
                portid as i64
            }
            Err(errno) => errno_reply(errno),
        };
        s.link
            .groups
            .store(s.socket.groups, std::sync::atomic::Ordering::Relaxed);
        Next::Reply(done(status))
    }

    /// Writes what fits; answers 1 if the application has something to read now.
    fn sync(&mut self) -> Next {
        let Some(s) = self.session.as_ref() else {
            return Next::Close("Sync before Hello".into());
        };
        let report = s.link.socket.flush();
        let readable = report.written > 0 || s.link.socket.unread_bytes() > 0;
        Next::Reply(done(readable as i64))
    }

    async fn status(&self) -> Next {
        let daemon = self.daemon.clone();
        match tokio::task::spawn_blocking(move || status::collect(&daemon)).await {
            Ok(st) => match serde_json::to_vec(&st) {
                Ok(json) => Next::Reply(
                    Frame {
                        op: Op::Done,
                        status: 0,
                    }
                    .encode(&json),
                ),
                Err(e) => Next::Close(format!("status encoding: {e}")),
            },
            Err(e) => Next::Close(format!("status task failed: {e}")),
        }
    }
}
