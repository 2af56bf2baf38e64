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
