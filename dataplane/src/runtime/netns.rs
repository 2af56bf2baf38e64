//! Finding and entering the network namespace a data plane serves.
//!
//! The data plane is told a namespace's cookie (the key, never reused) and nsfs inode.
//! It opens the namespace only while it enforces a ruleset there: it looks for a task
//! inside it (the committing client is one) or a bind mount of it (`ip netns add`),
//! checks the cookie from inside, and keeps no handle once the ruleset is empty.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `SO_NETNS_COOKIE` (include/uapi/asm-generic/socket.h).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// How a namespace is known to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetnsKey {
    pub cookie: u64,
    pub inode: u64,
}

/// Candidate paths of the namespace with this inode: tasks' `ns/net`, then nsfs
/// bind mounts.
fn candidates(inode: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(procs) = fs::read_dir("/proc") {
        for p in procs.flatten() {
            let name = p.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(tasks) = fs::read_dir(p.path().join("task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let path = t.path().join("ns/net");
                if fs::metadata(&path).is_ok_and(|m| m.ino() == inode) {
                    out.push(path);
                    break;
                }
            }
        }
    }
    if let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") {
        let wanted = format!("net:[{inode}]");
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            // mount ID, parent, major:minor, root, mount point, ...
            if fields.len() > 4 && fields[3] == wanted {
                out.push(PathBuf::from(fields[4].replace("\\040", " ")));
            }
        }
    }
    out
}

/// Opens the namespace `key` names, checking its cookie. NotFound if it is gone (or
/// nothing this process can see holds it).
pub fn open(key: NetnsKey) -> io::Result<OwnedFd> {
    for path in candidates(key.inode) {
        let Ok(f) = fs::File::open(&path) else {
            continue;
        };
        let fd: OwnedFd = f.into();
        if cookie_of(fd.as_fd()).ok() == Some(key.cookie) {
            return Ok(fd);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "network namespace (cookie {}, inode {}) not found",
            key.cookie, key.inode
        ),
    ))
}

/// Whether something besides this process keeps the namespace alive (another
/// process inside it, or a bind mount such as `ip netns add`'s). When nothing does,
/// it goes away once this process lets go of it. An fd held by a process outside
/// it is not seen.
pub fn held_elsewhere(inode: u64) -> bool {
    let own = PathBuf::from(format!("/proc/{}/", std::process::id()));
    candidates(inode).iter().any(|p| !p.starts_with(&own))
}

/// Moves the calling thread into the namespace.
pub fn enter(netns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns(2) on a valid fd; affects only the calling thread.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The cookie of the calling thread's namespace (from a socket made there).
pub fn current_cookie() -> io::Result<u64> {
    // SAFETY: plain socket(2), owned at once.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie/len describe a valid u64 buffer.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The cookie of the namespace `netns`, read on a short-lived thread so that the
/// caller's own namespace never changes.
pub fn cookie_of(netns: BorrowedFd<'_>) -> io::Result<u64> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(netns)?;
            current_cookie()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("cookie thread panicked")))
    })
}

/// The nsfs inode of the calling thread's namespace.
pub fn current_inode() -> io::Result<u64> {
    Ok(fs::metadata(Path::new("/proc/thread-self/ns/net"))?.ino())
}
