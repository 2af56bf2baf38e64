//! Network namespace identity.
//!
//! Rulesets are keyed by the namespace COOKIE: nsfs inode numbers are reused as soon as a
//! namespace dies, so keying by inode would hand a dead namespace's ruleset to a new one.
//! The cookie is only readable from a socket inside the namespace, hence the setns dance.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// How a namespace is known: the cookie is the key, the inode is for display
/// (it is what `ip netns identify` and `/proc/PID/ns/net` show).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub cookie: u64,
    pub inode: u64,
}

/// The daemon's own network namespace, kept open to return to after visiting another.
#[derive(Debug)]
pub struct HomeNetns {
    fd: OwnedFd,
}

impl HomeNetns {
    pub fn open() -> io::Result<Self> {
        let fd = std::fs::File::open("/proc/thread-self/ns/net")?;
        Ok(HomeNetns { fd: fd.into() })
    }

    /// Reads the cookie of the namespace `netns` refers to. The setns happens on a thread
    /// of its own, so no other work ever runs in the visited namespace; it returns home
    /// anyway before reporting.
    pub fn cookie_of(&self, netns: BorrowedFd<'_>) -> io::Result<u64> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    sys::setns(netns, libc::CLONE_NEWNET)?;
                    let cookie = sys::current_netns_cookie();
                    sys::setns(self.fd.as_fd(), libc::CLONE_NEWNET)?;
                    cookie
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netns cookie thread panicked")))
        })
    }

    pub fn cookie(&self) -> io::Result<u64> {
        self.cookie_of(self.fd.as_fd())
    }
}

/// Whether `fd` refers to a network namespace.
pub fn is_netns(fd: BorrowedFd<'_>) -> bool {
    sys::ns_type(fd)
        .map(|t| t == libc::CLONE_NEWNET)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_cookie_matches_a_socket_made_here() {
        let home = HomeNetns::open().unwrap();
        assert!(is_netns(home.fd.as_fd()));
        assert_eq!(home.cookie().unwrap(), sys::current_netns_cookie().unwrap());
    }

    #[test]
    fn other_files_are_not_namespaces() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(!is_netns(f.as_fd()));
        let user = std::fs::File::open("/proc/self/ns/user").unwrap();
        assert!(
            !is_netns(user.as_fd()),
            "a user namespace is not a network namespace"
        );
    }
}
