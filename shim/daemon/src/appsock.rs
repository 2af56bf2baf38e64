//! The daemon's end of an application's emulated netlink socket.
//!
//! Every record goes in as one datagram, without blocking. Records that do not fit wait
//! in an [`OutQueue`]; [`AppSocket::drain_forever`] writes them as the application reads,
//! woken by writable readiness. All writers (the session's replies, other sessions'
//! multicast events) go through the queue, so records keep their order.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::lock;
use crate::outqueue::{FlushReport, Limits, OutQueue, Overflow, WriteOutcome};
use crate::sys;

/// Bounds for the daemon's send buffer on an application socket, as set through
/// SO_RCVBUF(FORCE) (the kernel doubles the value).
pub const MAX_SEND_BUFFER: usize = 32 << 20;

#[derive(Debug)]
pub struct AppSocket {
    fd: AsyncFd<OwnedFd>,
    queue: Mutex<OutQueue>,
    /// Wakes the drainer when records were queued.
    queued: Notify,
    initial_send_buffer: usize,
    /// Events dropped for this socket so far (for logs).
    dropped_events: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
pub enum AppSocketError {
    #[error("the application socket is not an AF_UNIX SOCK_SEQPACKET socket")]
    WrongKind,
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl AppSocket {
    /// Takes the far end of the application's socketpair. Must run inside the runtime.
    pub fn new(fd: OwnedFd, limits: Limits) -> Result<Self, AppSocketError> {
        match sys::socket_kind(fd.as_fd()) {
            Ok((libc::AF_UNIX, libc::SOCK_SEQPACKET)) => {}
            Ok(_) => return Err(AppSocketError::WrongKind),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                return Err(AppSocketError::WrongKind)
            }
            Err(e) => return Err(e.into()),
        }
        sys::set_nonblocking(fd.as_fd())?;
        let initial_send_buffer = sys::send_buffer_size(fd.as_fd())?;
        Ok(AppSocket {
            fd: crate::seqpacket::register(fd, tokio::io::Interest::WRITABLE)?,
            queue: Mutex::new(OutQueue::new(limits)),
            queued: Notify::new(),
            initial_send_buffer,
            dropped_events: AtomicUsize::new(0),
        })
    }

    fn write_one(&self, record: &[u8]) -> WriteOutcome {
        match sys::send_nonblocking(self.fd.get_ref().as_fd(), record) {
            Ok(_) => WriteOutcome::Written,
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => WriteOutcome::WouldBlock,
                Some(libc::EMSGSIZE) | Some(libc::ENOBUFS) => {
                    tracing::warn!(
                        len = record.len(),
                        "record larger than the socket buffer, dropped"
                    );
                    WriteOutcome::TooBig
                }
                _ => WriteOutcome::PeerGone,
            },
        }
    }

    fn flush_locked(&self, q: &mut OutQueue) -> FlushReport {
        let report = q.flush(|rec| self.write_one(rec));
        if !q.is_empty() {
            self.queued.notify_one();
        }
        report
    }

    /// Queues replies for the application and writes what fits now.
    pub fn send_unicast(&self, records: Vec<Vec<u8>>) -> Result<FlushReport, Overflow> {
        let mut q = lock(&self.queue);
        for rec in records {
            q.push_unicast(rec)?;
        }
        Ok(self.flush_locked(&mut q))
    }

    /// Queues an event; dropped (and counted) if the application is too far behind.
    pub fn send_multicast(&self, record: Vec<u8>) {
        let mut q = lock(&self.queue);
        if !q.push_multicast(record) {
            let n = self.dropped_events.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "listener too slow, multicast events dropped (ENOBUFS)"
                );
            }
        }
        self.flush_locked(&mut q);
    }

    /// Writes whatever queued records fit now.
    pub fn flush(&self) -> FlushReport {
        self.flush_locked(&mut lock(&self.queue))
    }

    /// Bytes queued in the daemon, not yet in the socket.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.queue).bytes()
    }

    /// Bytes in the socket the application has not read yet.
    pub fn unread_bytes(&self) -> usize {
        sys::unread_output(self.fd.get_ref().as_fd()).unwrap_or(0)
    }

    pub fn peer_gone(&self) -> bool {
        lock(&self.queue).peer_gone()
    }

    /// Mirrors the application's SO_RCVBUF as our send buffer, so a big reply fits in
    /// one go, as it would fit the kernel socket's receive buffer. Never shrinks below
    /// the initial size.
    pub fn set_send_buffer(&self, requested: usize) -> io::Result<()> {
        let bytes = requested.clamp(self.initial_send_buffer / 2, MAX_SEND_BUFFER);
        sys::force_send_buffer(self.fd.get_ref().as_fd(), bytes)
    }

    pub fn send_buffer(&self) -> usize {
        sys::send_buffer_size(self.fd.get_ref().as_fd()).unwrap_or(0)
    }

    /// Writes queued records as the application makes room. Runs until the application
    /// closes its end (or the task is aborted with its session).
    pub async fn drain_forever(self: Arc<Self>) {
        loop {
            let (pending, gone) = {
                let q = lock(&self.queue);
                (!q.is_empty(), q.peer_gone())
            };
            if gone {
                return;
            }
            if !pending {
                self.queued.notified().await;
                continue;
            }
            let mut ready = match self.fd.writable().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "application socket readiness failed");
                    return;
                }
            };
            let report = self.flush();
            if report.blocked {
                // Only clears if no new readiness arrived since `writable()` returned.
                ready.clear_ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::time::Duration;

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn read_one(fd: &OwnedFd) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n >= 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    #[tokio::test]
    async fn a_big_reply_is_delivered_completely_as_the_reader_reads() {
        let (app, daemon_end) = seqpacket_pair();
        let sock = Arc::new(AppSocket::new(daemon_end, Limits::default()).unwrap());
        let drainer = tokio::spawn(sock.clone().drain_forever());
        // ~4 MiB: far more than the default socket buffer holds.
        let records: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| {
                let mut r = vec![0u8; 4096];
                r[..4].copy_from_slice(&i.to_ne_bytes());
                r
            })
            .collect();
        let report = sock.send_unicast(records).unwrap();
        assert!(
            report.blocked && report.written > 0 && report.written < 1000,
            "{report:?}"
        );

        let reader = tokio::task::spawn_blocking(move || {
            let mut next = 0u32;
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while next < 1000 && std::time::Instant::now() < deadline {
                match read_one(&app) {
                    Some(r) => {
                        assert_eq!(r.len(), 4096);
                        assert_eq!(
                            u32::from_ne_bytes(r[..4].try_into().unwrap()),
                            next,
                            "in order"
                        );
                        next += 1;
                    }
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            next
        });
        assert_eq!(reader.await.unwrap(), 1000);
        assert_eq!(sock.queued_bytes(), 0);
        drainer.abort();
    }

    #[tokio::test]
    async fn wrong_kinds_of_fd_are_refused() {
        let f: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert!(matches!(
            AppSocket::new(f, Limits::default()),
            Err(AppSocketError::WrongKind)
        ));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(matches!(
            AppSocket::new(a.into(), Limits::default()),
            Err(AppSocketError::WrongKind)
        ));
    }

    #[tokio::test]
    async fn a_closed_application_end_stops_the_drainer() {
        let (app, daemon_end) = seqpacket_pair();
        let sock = Arc::new(AppSocket::new(daemon_end, Limits::default()).unwrap());
        let drainer = tokio::spawn(sock.clone().drain_forever());
        let big: Vec<Vec<u8>> = (0..200).map(|_| vec![0u8; 8192]).collect();
        assert!(sock.send_unicast(big).unwrap().blocked);
        drop(app);
        tokio::time::timeout(Duration::from_secs(5), drainer)
            .await
            .unwrap()
            .unwrap();
        assert!(sock.peer_gone());
        assert_eq!(sock.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn send_buffer_follows_rcvbuf_but_never_shrinks() {
        let (_app, daemon_end) = seqpacket_pair();
        let sock = AppSocket::new(daemon_end, Limits::default()).unwrap();
        let initial = sock.send_buffer();
        sock.set_send_buffer(1024).unwrap();
        assert_eq!(sock.send_buffer(), initial);
        sock.set_send_buffer(4 << 20).unwrap();
        assert_eq!(sock.send_buffer(), 8 << 20, "kernel doubles the value");
    }
}
