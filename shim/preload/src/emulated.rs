//! One emulated NETLINK_NETFILTER socket: the application's end of a socketpair, the
//! control connection that serves it, and the netlink state the kernel would keep.

use std::sync::{Arc, Mutex, MutexGuard};

use libc::c_int;
use nftshim_ipc::{Hello, Op, VERSION};

use crate::control::{Control, Identity};
use crate::real;

/// Socket state the kernel keeps per netlink socket and reports back (getsockname,
/// getsockopt). The daemon holds the authoritative copy; this mirrors what it accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetlinkState {
    /// Assigned by the daemon at Hello, confirmed by Bind.
    pub port_id: u32,
    /// Bound explicitly, or autobound by a send/connect (the kernel reports port id 0
    /// before that).
    pub bound: bool,
    /// Memberships of groups 1..=32, bit n-1 for group n.
    pub groups: u32,
    /// The kernel sizes the membership bitmap on first use; before that
    /// NETLINK_LIST_MEMBERSHIPS reports zero bytes.
    pub groups_sized: bool,
    /// Boolean SOL_NETLINK options, bit n for option number n.
    pub flags: u32,
    /// Default destination set by connect(): port id and group mask.
    pub dst_pid: u32,
    pub dst_groups: u32,
}

pub struct Emulated {
    /// SOCK_RAW or SOCK_DGRAM, as the application asked (SO_TYPE reports it).
    pub sock_type: c_int,
    identity: Identity,
    control: Mutex<Control>,
    state: Mutex<NetlinkState>,
}

/// Why socket() could not give an emulated socket.
pub enum OpenError {
    /// The daemon could not be reached (errno of connect); fallback may apply.
    Unreachable(i32),
    /// Any other failure, with the errno for the application.
    Failed(i32),
}

impl Emulated {
    /// Creates the socketpair, registers its far end with the daemon at `daemon_path`,
    /// and returns the application's end (with SOCK_NONBLOCK / SOCK_CLOEXEC as asked).
    pub fn open(
        daemon_path: &[u8],
        sock_type: c_int,
        nonblock: bool,
        cloexec: bool,
    ) -> Result<(c_int, Arc<Emulated>), OpenError> {
        let mut control = Control::connect(daemon_path).map_err(OpenError::Unreachable)?;
        let (app, far) = socketpair().map_err(OpenError::Failed)?;
        let close_all = |fds: &[c_int]| {
            fds.iter().for_each(|fd| unsafe {
                real::close(*fd);
            })
        };
        if let Err(e) = set_fd_flags(app, nonblock, cloexec) {
            close_all(&[app, far]);
            return Err(OpenError::Failed(e));
        }
        // SAFETY: opening a /proc file read-only.
        let netns = unsafe {
            libc::open(
                c"/proc/thread-self/ns/net".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if netns < 0 {
            let e = crate::errno::get();
            close_all(&[app, far]);
            return Err(OpenError::Failed(e));
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let hello = Hello {
            version: VERSION,
            tid,
        };
        let answer = control.call(Op::Hello, &hello.encode(), &[far, netns]);
        // The daemon has its own copies now (or failed); ours must not keep the pair open.
        close_all(&[far, netns]);
        let port_id = match answer {
            Ok(status) if status >= 0 => status as u32,
            Ok(status) => {
                close_all(&[app]);
                return Err(OpenError::Failed(errno_of_status(status)));
            }
            Err(e) => {
                close_all(&[app]);
                return Err(OpenError::Unreachable(e));
            }
        };
        let Some(identity) = Identity::of(app) else {
            let e = crate::errno::get();
            close_all(&[app]);
            return Err(OpenError::Failed(e));
        };
        let state = NetlinkState {
            port_id,
            ..NetlinkState::default()
        };
        let em = Emulated {
            sock_type,
            identity,
            control: Mutex::new(control),
            state: Mutex::new(state),
        };
        Ok((app, Arc::new(em)))
    }

    /// Whether `fd` still refers to this socket.
    pub fn is_behind(&self, fd: c_int) -> bool {
        Identity::of(fd) == Some(self.identity)
    }

    pub fn state(&self) -> MutexGuard<'_, NetlinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The control connection; holding the guard serializes a whole exchange.
    pub fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One control exchange; Ok(status >= 0) or Err(errno), whether the daemon refused
    /// (its -errno) or the connection broke.
    pub fn call(&self, op: Op, payload: &[u8]) -> Result<i64, i32> {
        let status = self.control().call(op, payload, &[])?;
        if status < 0 {
            Err(errno_of_status(status))
        } else {
            Ok(status)
        }
    }
}

/// A daemon status < 0 as an errno (anything out of range becomes EPROTO).
pub fn errno_of_status(status: i64) -> i32 {
    match i32::try_from(-status) {
        Ok(e) if e > 0 && e < 4096 => e,
        _ => libc::EPROTO,
    }
}

fn socketpair() -> Result<(c_int, c_int), i32> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: socketpair writes two fds into our array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(crate::errno::get());
    }
    Ok((fds[0], fds[1]))
}

/// O_NONBLOCK is set on the application's end only: the far end's open file description
/// goes to the daemon, which picks its own mode.
fn set_fd_flags(fd: c_int, nonblock: bool, cloexec: bool) -> Result<(), i32> {
    // SAFETY: fcntl on our own fd.
    unsafe {
        if nonblock {
            let fl = real::fcntl(fd, libc::F_GETFL, 0);
            if fl < 0
                || real::fcntl(fd, libc::F_SETFL, (fl | libc::O_NONBLOCK) as libc::c_ulong) < 0
            {
                return Err(crate::errno::get());
            }
        }
        if !cloexec && real::fcntl(fd, libc::F_SETFD, 0) < 0 {
            return Err(crate::errno::get());
        }
    }
    Ok(())
}
