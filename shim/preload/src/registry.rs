//! Which application fds are emulated netlink sockets.
//!
//! Every read, write and close in the process passes through our hooks, so the question
//! "is this fd ours?" must be cheap and must not take a lock: a bitmap of atomics answers
//! it for fds below [`FAST_LIMIT`] (a counter covers the rare higher ones). Only for fds
//! that are ours do we take the table's mutex. A signal handler that reads or closes an
//! ordinary fd therefore never touches a lock.
//!
//! An fd can be closed behind our back (raw `syscall(SYS_close)`, a `close_range` inside
//! another library); a later fd with the same number would then look emulated. So each
//! entry remembers the identity (device, inode) of its socket, and [`lookup`] drops an
//! entry whose fd now refers to something else.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use libc::c_int;

use crate::emulated::Emulated;

const FAST_LIMIT: usize = 1 << 16;
static FAST_BITS: [AtomicU64; FAST_LIMIT / 64] = [const { AtomicU64::new(0) }; FAST_LIMIT / 64];
/// Entries with fd >= FAST_LIMIT; while 0, such fds are known not to be ours.
static HIGH_ENTRIES: AtomicUsize = AtomicUsize::new(0);
static TABLE: Mutex<BTreeMap<c_int, Arc<Emulated>>> = Mutex::new(BTreeMap::new());

fn table() -> MutexGuard<'static, BTreeMap<c_int, Arc<Emulated>>> {
    // A panic while holding the lock cannot leave the map inconsistent (single calls).
    TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn mark(fd: c_int, on: bool) {
    let Ok(i) = usize::try_from(fd) else { return };
    if i < FAST_LIMIT {
        let bit = 1u64 << (i % 64);
        if on {
            FAST_BITS[i / 64].fetch_or(bit, Ordering::Release);
        } else {
            FAST_BITS[i / 64].fetch_and(!bit, Ordering::Release);
        }
    } else if on {
        HIGH_ENTRIES.fetch_add(1, Ordering::Release);
    } else {
        HIGH_ENTRIES.fetch_sub(1, Ordering::Release);
    }
}

/// Lock-free: false means `fd` is certainly not an emulated socket.
pub fn maybe_emulated(fd: c_int) -> bool {
    let Ok(i) = usize::try_from(fd) else {
        return false;
    };
    if i < FAST_LIMIT {
        FAST_BITS[i / 64].load(Ordering::Acquire) & (1u64 << (i % 64)) != 0
    } else {
        HIGH_ENTRIES.load(Ordering::Acquire) != 0
    }
}

/// The emulated socket behind `fd`, if it is one.
pub fn lookup(fd: c_int) -> Option<Arc<Emulated>> {
    if !maybe_emulated(fd) {
        return None;
    }
    let found = table().get(&fd).cloned()?;
    if found.is_behind(fd) {
        return Some(found);
    }
    // Closed behind our back and the number reused: forget it, if nobody beat us to it.
    let stale = {
        let mut t = table();
        match t.get(&fd) {
            Some(cur) if Arc::ptr_eq(cur, &found) => {
                mark(fd, false);
                t.remove(&fd)
            }
            _ => None,
        }
    };
    drop(stale);
    None
}

/// Registers `fd`; returns what was registered under that number before (to drop
/// outside any lock).
pub fn insert(fd: c_int, socket: Arc<Emulated>) -> Option<Arc<Emulated>> {
    let mut t = table();
    let old = t.insert(fd, socket);
    if old.is_none() {
        mark(fd, true);
    }
    old
}

/// Unregisters `fd`.
pub fn remove(fd: c_int) -> Option<Arc<Emulated>> {
    if !maybe_emulated(fd) {
        return None;
    }
    let mut t = table();
    let old = t.remove(&fd);
    if old.is_some() {
        mark(fd, false);
    }
    old
}

/// Unregisters every fd in `first..=last`.
pub fn remove_range(first: c_int, last: c_int) -> Vec<Arc<Emulated>> {
    let mut t = table();
    let fds: Vec<c_int> = t.range(first..=last).map(|(fd, _)| *fd).collect();
    fds.into_iter()
        .filter_map(|fd| {
            mark(fd, false);
            t.remove(&fd)
        })
        .collect()
}
