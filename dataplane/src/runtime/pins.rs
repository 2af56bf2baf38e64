//! Where a namespace's pinned eBPF objects live: `/sys/fs/bpf/nftshim/<netns cookie>/`
//! (shared maps, and the TCX links by interface and direction), on a bpffs mounted
//! there if it is not yet.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// The bpffs mount point.
pub const BPFFS: &str = "/sys/fs/bpf";

/// `BPF_FS_MAGIC` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The pin directory of the namespace with this cookie (not created).
pub fn netns_dir(cookie: u64) -> PathBuf {
    Path::new(BPFFS).join("nftshim").join(cookie.to_string())
}

/// Mounts a bpffs at [`BPFFS`] unless one is there.
pub fn ensure_bpffs() -> io::Result<()> {
    if is_bpffs(Path::new(BPFFS))? {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS)?;
    let c = |s: &str| CString::new(s).map_err(io::Error::other);
    let (src, target, fstype, data) = (c("bpf")?, c(BPFFS)?, c("bpf")?, c("mode=0700")?);
    // SAFETY: valid NUL-terminated strings for mount(2).
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: statfs(2) fills a zeroed struct from a valid path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(p.as_ptr(), &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::NotFound {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Namespaces (by cookie) whose worker runs in this process: their pin directories are
/// in use even when no link is attached yet.
static LIVE: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// Marks the namespace's pins as used by this process until the guard drops.
pub struct InUse(u64);

pub fn in_use(cookie: u64) -> InUse {
    if let Ok(mut l) = LIVE.lock() {
        l.push(cookie);
    }
    InUse(cookie)
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Ok(mut l) = LIVE.lock() {
            if let Some(i) = l.iter().position(|&c| c == self.0) {
                l.swap_remove(i);
            }
        }
    }
}

/// Removes the pin directories of namespaces that are gone: a directory no worker of
/// this process uses, whose pinned links are all detached (the kernel detaches a TCX
/// link when its device goes, and a namespace's devices go with it). A daemon stopped
/// while its namespaces lived kept their pins so that they stay enforced; when those
/// namespaces are deleted meanwhile, this frees what was pinned for them.
pub fn remove_stale() {
    let Ok(dirs) = std::fs::read_dir(Path::new(BPFFS).join("nftshim")) else {
        return;
    };
    let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for d in dirs.flatten() {
        let Some(cookie) = d.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if live.contains(&cookie) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(d.path()) else {
            continue;
        };
        let links: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("link-"))
            })
            .collect();
        if links.is_empty() || links.iter().any(|l| tcx_link_ifindex(l) != Some(0)) {
            continue;
        }
        tracing::info!(
            netns_cookie = cookie,
            "removing the pins of a namespace that is gone"
        );
        let _ = std::fs::remove_dir_all(d.path());
    }
}

/// The device a pinned TCX link is attached to (0: detached, its device is gone), or
/// None if the pin is not a TCX link.
fn tcx_link_ifindex(path: &Path) -> Option<u32> {
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_TYPE_TCX: u32 = 11;
    let p = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // union bpf_attr for BPF_OBJ_GET: pathname, bpf_fd, file_flags.
    let mut get = [0u8; 16];
    get[0..8].copy_from_slice(&(p.as_ptr() as u64).to_ne_bytes());
    // SAFETY: bpf(2) with an attr of the size passed; the path outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, get.as_mut_ptr(), 16u32) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    // struct bpf_link_info: type, id, prog_id, pad, then the union (tcx: ifindex).
    let mut info = [0u8; 64];
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(std::os::fd::AsRawFd::as_raw_fd(&fd) as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: as above; info is a live buffer of the length given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            16u32,
        )
    };
    if rc < 0 {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().unwrap_or([0; 4]));
    (u32_at(0) == BPF_LINK_TYPE_TCX).then(|| u32_at(16))
}
