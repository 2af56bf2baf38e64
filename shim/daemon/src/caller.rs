//! Who is on the other end of a control connection, checked against /proc.
//!
//! A Hello carries a network namespace fd. The daemon accepts it only if one of the
//! caller's threads is in that namespace (else anyone could open `/run/netns/x` and act
//! on a namespace they are not in), and works out CAP_NET_ADMIN over it as the kernel's
//! `ns_capable(net->user_ns, CAP_NET_ADMIN)` would, for the common cases.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use crate::netns::{self, HomeNetns, NetnsId};
use crate::sys::{self, InodeId};

const CAP_NET_ADMIN: u32 = 12;
/// The inode of the initial cgroup namespace (PROC_CGROUP_INIT_INO): fixed, so that a
/// namespace is known as the initial one from its inode alone.
const PROC_CGROUP_INIT_INO: u64 = 0xEFFF_FFFB;

/// What /proc/PID/status says that matters here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusFields {
    pub cap_eff: u64,
    /// The tgid as the process sees it in its own pid namespace (last NStgid field):
    /// what the kernel's autobind uses as the first port id.
    pub tgid_in_own_ns: u32,
}

pub fn parse_status(text: &str) -> Option<StatusFields> {
    let mut cap_eff = None;
    let mut tgid = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("CapEff:") {
            cap_eff = u64::from_str_radix(v.trim(), 16).ok();
        } else if let Some(v) = line.strip_prefix("NStgid:") {
            tgid = v.split_whitespace().last().and_then(|s| s.parse().ok());
        } else if tgid.is_none() {
            if let Some(v) = line.strip_prefix("Tgid:") {
                tgid = v.trim().parse().ok();
            }
        }
    }
    Some(StatusFields {
        cap_eff: cap_eff?,
        tgid_in_own_ns: tgid?,
    })
}

/// A verified caller, ready to open a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCaller {
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    pub tgid_in_own_ns: u32,
    pub net_admin: bool,
    /// Not in the initial cgroup namespace (or not known to be in it).
    pub private_cgroupns: bool,
    /// The network namespace is owned by a user namespace other than the daemon's.
    pub netns_private_userns: bool,
    pub netns: NetnsId,
}

/// Why a Hello is refused; each maps to the errno the client sees.
#[derive(Debug, thiserror::Error)]
pub enum HelloRefused {
    #[error("the namespace fd is not a network namespace")]
    NotANetns,
    #[error("no thread of pid {0} is in the network namespace it passed")]
    NotCallersNetns(u32),
    #[error("the calling process went away during verification")]
    CallerGone,
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl HelloRefused {
    pub fn errno(&self) -> i32 {
        match self {
            HelloRefused::NotANetns => libc::EINVAL,
            HelloRefused::NotCallersNetns(_) => libc::EPERM,
            HelloRefused::CallerGone => libc::ESRCH,
            HelloRefused::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// The daemon's own namespaces, the reference for "initial user namespace".
#[derive(Debug)]
pub struct Home {
    pub netns: HomeNetns,
    pub userns: InodeId,
}

impl Home {
    pub fn open() -> io::Result<Self> {
        Ok(Home {
            netns: HomeNetns::open()?,
            userns: sys::stat_id("/proc/self/ns/user".as_ref())?,
        })
    }
}

fn proc_path(pid: u32, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}

/// Whether any thread of `pid` is in the namespace with this inode.
fn has_thread_in(pid: u32, netns: InodeId) -> io::Result<bool> {
    for task in fs::read_dir(proc_path(pid, "task"))? {
        let Ok(task) = task else { continue };
        // Threads may exit while we look; a vanished one simply does not count.
        if let Ok(id) = sys::stat_id(&task.path().join("ns/net")) {
            if id == netns {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Verifies a Hello from the process `pid` (from SO_PEERCRED) that passed `netns_fd`.
/// `pidfd`, when the kernel offers one, proves at the end that `pid` was not reused
/// while /proc was read.
/// The cookie of `app`'s namespace when it is the namespace `netns` (the client creates
/// its socket pair where it creates the netlink socket): two syscalls, where reading
/// the cookie of a namespace fd takes a thread that enters it.
fn same_netns_cookie(app: BorrowedFd<'_>, netns: InodeId) -> Option<u64> {
    let ns = sys::socket_netns(app).ok()?;
    if sys::fstat_id(ns.as_fd()).ok()? != netns {
        return None;
    }
    sys::socket_netns_cookie(app).ok()
}

pub fn verify(
    home: &Home,
    pid: u32,
    uid: u32,
    pidfd: Option<BorrowedFd<'_>>,
    netns_fd: BorrowedFd<'_>,
    app_socket: Option<BorrowedFd<'_>>,
) -> Result<VerifiedCaller, HelloRefused> {
    if !netns::is_netns(netns_fd) {
        return Err(HelloRefused::NotANetns);
    }
    let netns_inode = sys::fstat_id(netns_fd)?;
    if !has_thread_in(pid, netns_inode).map_err(|_| HelloRefused::CallerGone)? {
        return Err(HelloRefused::NotCallersNetns(pid));
    }
    let status =
        fs::read_to_string(proc_path(pid, "status")).map_err(|_| HelloRefused::CallerGone)?;
    let fields = parse_status(&status).ok_or(HelloRefused::CallerGone)?;
    let comm = fs::read_to_string(proc_path(pid, "comm"))
        .map_err(|_| HelloRefused::CallerGone)?
        .trim_end_matches('\n')
        .to_string();
    let caller_userns =
        sys::stat_id(&proc_path(pid, "ns/user")).map_err(|_| HelloRefused::CallerGone)?;
    // Unreadable counts as private: that only makes the data plane refuse more.
    let private_cgroupns = sys::stat_id(&proc_path(pid, "ns/cgroup"))
        .map_or(true, |id| id.ino != PROC_CGROUP_INIT_INO);
    if let Some(pidfd) = pidfd {
        if !sys::pidfd_alive(pidfd) {
            return Err(HelloRefused::CallerGone);
        }
    }
    let owner = sys::fstat_id(sys::ns_owner_userns(netns_fd)?.as_fd())?;
    let has_cap = fields.cap_eff & (1 << CAP_NET_ADMIN) != 0;
    // A capability counts in the caller's own user namespace and every namespace below
    // it; we recognise the two cases that matter: the initial one, and the owner itself.
    let net_admin = has_cap && (caller_userns == home.userns || caller_userns == owner);
    let cookie = match app_socket.and_then(|app| same_netns_cookie(app, netns_inode)) {
        Some(cookie) => cookie,
        None => home.netns.cookie_of(netns_fd)?,
    };
    Ok(VerifiedCaller {
        pid,
        uid,
        comm,
        tgid_in_own_ns: fields.tgid_in_own_ns,
        net_admin,
        private_cgroupns,
        netns_private_userns: owner != home.userns,
        netns: NetnsId {
            cookie,
            inode: netns_inode.ino,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_prefer_the_innermost_tgid() {
        let text = "Name:\tnft\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nNStgid:\t4242\t7\nCapEff:\t000001ffffffffff\n";
        assert_eq!(
            parse_status(text),
            Some(StatusFields {
                cap_eff: 0x1ff_ffff_ffff,
                tgid_in_own_ns: 7
            })
        );
        let old = "Tgid:\t10\nCapEff:\t0000000000001000\n";
        assert_eq!(parse_status(old).unwrap().tgid_in_own_ns, 10);
        assert_eq!(parse_status("Tgid:\t1\n"), None);
    }

    #[test]
    fn our_own_process_verifies_with_our_own_namespace() {
        let home = Home::open().unwrap();
        let ns = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        let me = std::process::id();
        let v = verify(&home, me, 0, None, ns.as_fd(), None).unwrap();
        assert_eq!(v.netns.cookie, sys::current_netns_cookie().unwrap());
        assert_eq!(
            v.netns.inode,
            sys::stat_id("/proc/self/ns/net".as_ref()).unwrap().ino
        );
        let caps = parse_status(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
        assert_eq!(v.net_admin, caps.cap_eff & (1 << CAP_NET_ADMIN) != 0);
        assert_eq!(v.tgid_in_own_ns, me);
    }

    #[test]
    fn a_non_namespace_fd_is_refused() {
        let home = Home::open().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = verify(&home, std::process::id(), 0, None, f.as_fd(), None).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
    }

    #[test]
    fn the_socket_tells_the_cookie_only_of_the_namespace_it_was_made_in() {
        // A thread of its own enters a new namespace and makes a socket pair there.
        let (sock, ns, cookie) = std::thread::spawn(|| {
            // SAFETY: unshare(2) of this thread's network namespace only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let (sock, _other) = std::os::unix::net::UnixDatagram::pair().unwrap();
            let ns = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
            (sock, ns, sys::current_netns_cookie().unwrap())
        })
        .join()
        .unwrap();
        assert_ne!(cookie, sys::current_netns_cookie().unwrap());
        let there = sys::fstat_id(ns.as_fd()).unwrap();
        assert_eq!(same_netns_cookie(sock.as_fd(), there), Some(cookie));
        let here = sys::stat_id("/proc/self/ns/net".as_ref()).unwrap();
        assert_eq!(same_netns_cookie(sock.as_fd(), here), None);
    }
}
