//! The control connection of one emulated socket: records to nftshimd, `Done` back.
//!
//! The exchange is strictly request/answer, and the caller holds the socket's control
//! mutex around it, so records of two threads never interleave. Signals never break an
//! exchange half-way: EINTR is retried, since the daemon is already acting on a request
//! once it was sent.

use std::mem::{size_of, zeroed};

use libc::{c_int, c_void};
use nftshim_ipc::{Frame, Op, MAX_RECORD};

use crate::real;

/// What identifies an open socket across fd renumbering: (device, inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub fn of(fd: c_int) -> Option<Identity> {
        // SAFETY: fstat writes into the zeroed struct we own.
        let mut st: libc::stat = unsafe { zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return None;
        }
        Some(Identity {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// Records larger than this are split (see the ipc doc, "Large datagrams"); smaller
/// records keep each kernel allocation modest.
const PREFERRED_CHUNK: usize = 1 << 20;
/// Below this we stop halving on ENOBUFS/EMSGSIZE and report the error.
const MIN_CHUNK: usize = 16 << 10;

pub struct Control {
    fd: c_int,
    identity: Option<Identity>,
    /// Largest payload of one record.
    chunk: usize,
}

impl Control {
    /// Connects to the daemon's SOCK_SEQPACKET socket at `path`. Err is an errno.
    pub fn connect(path: &[u8]) -> Result<Control, i32> {
        // SAFETY: plain socket calls on values we own.
        unsafe {
            let mut addr: libc::sockaddr_un = zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            if path.is_empty() || path.len() >= addr.sun_path.len() || path.contains(&0) {
                return Err(libc::ENAMETOOLONG);
            }
            for (dst, src) in addr.sun_path.iter_mut().zip(path) {
                *dst = *src as libc::c_char;
            }
            let fd = real::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(crate::errno::get());
            }
            let control = Control {
                fd,
                identity: Identity::of(fd),
                chunk: PREFERRED_CHUNK,
            };
            let len = (size_of::<libc::sa_family_t>() + path.len() + 1) as libc::socklen_t;
            loop {
                if real::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) == 0 {
                    break;
                }
                match crate::errno::get() {
                    libc::EINTR => continue,
                    libc::EISCONN => break,
                    e => return Err(e),
                }
            }
            Ok(control.with_buffer_sized())
        }
    }

    /// A Unix datagram cannot exceed the sender's SO_SNDBUF (less 32 bytes), so raise it
    /// where we may (root) and size our records to what we got.
    fn with_buffer_sized(mut self) -> Control {
        let want: c_int = (2 * PREFERRED_CHUNK) as c_int;
        // SAFETY: int-valued socket options on our own socket.
        unsafe {
            let p = (&want as *const c_int).cast::<c_void>();
            let l = size_of::<c_int>() as libc::socklen_t;
            if real::setsockopt(self.fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, p, l) != 0 {
                real::setsockopt(self.fd, libc::SOL_SOCKET, libc::SO_SNDBUF, p, l);
            }
            let mut got: c_int = 0;
            let mut gl = size_of::<c_int>() as libc::socklen_t;
            if real::getsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&mut got as *mut c_int).cast(),
                &mut gl,
            ) == 0
            {
                let usable = (got.max(0) as usize).saturating_sub(32 + Frame::LEN + 256);
                self.chunk = usable.clamp(MIN_CHUNK, PREFERRED_CHUNK);
            }
        }
        self
    }

    /// Sends one record (with `fds` attached) and waits for its `Done`. Ok is the
    /// daemon's status; Err is an errno for a broken connection.
    pub fn call(&mut self, op: Op, payload: &[u8], fds: &[c_int]) -> Result<i64, i32> {
        self.send_record(&Frame { op, status: 0 }.encode(payload), fds)?;
        self.recv_done()
    }

    /// Forwards one application datagram, in parts if it is larger than one record.
    /// Ok is the daemon's status for the whole datagram.
    pub fn request(&mut self, datagram: &[u8]) -> Result<i64, i32> {
        if datagram.len() > MAX_RECORD - Frame::LEN {
            return Ok(-(libc::EMSGSIZE as i64));
        }
        let mut rest = datagram;
        loop {
            let last = rest.len() <= self.chunk;
            let (op, part) = if last {
                (Op::Request, rest)
            } else {
                (Op::RequestPart, &rest[..self.chunk])
            };
            match self.call(op, part, &[]) {
                // The record was not sent (too large for the kernel): retry in smaller parts.
                Err(libc::EMSGSIZE | libc::ENOBUFS) if part.len() > MIN_CHUNK => {
                    self.chunk = (part.len() / 2).max(MIN_CHUNK);
                }
                Err(e) => return Err(e),
                Ok(status) if last => return Ok(status),
                Ok(0) => rest = &rest[part.len()..],
                Ok(refused) => return Ok(refused),
            }
        }
    }

    fn send_record(&self, record: &[u8], fds: &[c_int]) -> Result<(), i32> {
        // SAFETY: the msghdr points at `record` and at a control buffer we own, sized
        // with CMSG_SPACE for `fds`.
        unsafe {
            let mut iov = libc::iovec {
                iov_base: record.as_ptr() as *mut c_void,
                iov_len: record.len(),
            };
            let mut msg: libc::msghdr = zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            let fd_bytes = std::mem::size_of_val(fds) as u32;
            let mut cbuf = vec![0u8; libc::CMSG_SPACE(fd_bytes) as usize];
            if !fds.is_empty() {
                msg.msg_control = cbuf.as_mut_ptr().cast();
                msg.msg_controllen = cbuf.len();
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
                std::ptr::copy_nonoverlapping(
                    fds.as_ptr(),
                    libc::CMSG_DATA(cmsg).cast::<c_int>(),
                    fds.len(),
                );
            }
            loop {
                // MSG_NOSIGNAL: a dead daemon must give the application an error, not SIGPIPE.
                let n = real::sendmsg(self.fd, &msg, libc::MSG_NOSIGNAL);
                if n >= 0 {
                    return Ok(());
                }
                match crate::errno::get() {
                    libc::EINTR => continue,
                    libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN => return Err(lost_daemon()),
                    e => return Err(e),
                }
            }
        }
    }

    fn recv_done(&self) -> Result<i64, i32> {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into our own buffer.
            let n = unsafe { real::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                match crate::errno::get() {
                    libc::EINTR => continue,
                    _ => return Err(lost_daemon()),
                }
            }
            if n == 0 {
                return Err(lost_daemon());
            }
            return match Frame::decode(&buf[..(n as usize).min(buf.len())]) {
                Some((
                    Frame {
                        op: Op::Done,
                        status,
                    },
                    _,
                )) => Ok(status),
                _ => Err(libc::EPROTO),
            };
        }
    }
}

/// Reported once per process: later calls just fail with the errno.
fn lost_daemon() -> i32 {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        crate::diag::say("nftshim: lost the connection to nftshimd");
    }
    libc::ECONNRESET
}

impl Drop for Control {
    fn drop(&mut self) {
        // Close only if the number still names our socket: a close_range() behind our
        // back may have closed it and let something else take the number.
        if self.identity.is_some() && Identity::of(self.fd) == self.identity {
            // SAFETY: closing our own fd.
            unsafe { real::close(self.fd) };
        }
    }
}
