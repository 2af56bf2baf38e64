//! The few bpf(2) commands the benchmark needs to look at the programs nftshimd
//! attached, from outside the daemon: which programs sit on an interface's TCX hooks,
//! their maps, and BPF_PROG_TEST_RUN on them. Raw syscalls, because these programs
//! belong to another process: only their ids are known.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;

pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;

/// `union bpf_attr` is at most this big for the commands used here; the kernel
/// accepts a larger buffer whose tail is zero.
const ATTR_SIZE: usize = 128;

/// Map types whose values exist once per possible CPU.
const PERCPU_MAP_TYPES: [u32; 3] = [
    5,  /* PERCPU_HASH */
    6,  /* PERCPU_ARRAY */
    10, /* LRU_PERCPU_HASH */
];

struct Attr([u8; ATTR_SIZE]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR_SIZE])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: bpf(2) with a buffer of ATTR_SIZE bytes; every pointer stored in it
    // points to memory that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), ATTR_SIZE as u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned_fd(rc: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

/// Ids of the programs attached to `ifindex` (of the calling thread's namespace) at a
/// TCX hook, in order.
pub fn tcx_programs(ifindex: u32, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = Attr::new();
    attr.u32(0, ifindex)
        .u32(4, attach_type)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.get_u32(24) as usize);
    Ok(ids)
}

/// A program of another process, opened by id.
pub struct Prog {
    fd: OwnedFd,
}

/// What `bpf_prog_info` says about a program.
#[derive(Clone, Debug)]
pub struct ProgInfo {
    pub name: String,
    pub map_ids: Vec<u32>,
}

/// What `bpf_map_info` says about a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapInfo {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl MapInfo {
    /// max_entries × (key + value), values counted once per CPU for per-CPU maps: what
    /// the map can hold, not what the kernel allocated (hash maps allocate lazily).
    pub fn capacity_bytes(&self, ncpus: u64) -> u64 {
        let value = if PERCPU_MAP_TYPES.contains(&self.map_type) {
            self.value_size as u64 * ncpus
        } else {
            self.value_size as u64
        };
        self.max_entries as u64 * (self.key_size as u64 + value)
    }
}

/// One BPF_PROG_TEST_RUN.
#[derive(Clone, Copy, Debug)]
pub struct TestRun {
    pub retval: u32,
    /// Mean time of one repetition, as the kernel measured it.
    pub duration: Duration,
}

impl Prog {
    pub fn open(id: u32) -> io::Result<Prog> {
        let mut attr = Attr::new();
        attr.u32(0, id);
        let fd = owned_fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?);
        Ok(Prog { fd })
    }

    pub fn info(&self) -> io::Result<ProgInfo> {
        // struct bpf_prog_info: nr_map_ids at 52, map_ids at 56, name[16] at 64.
        let mut info = [0u8; 256];
        let mut attr = Attr::new();
        attr.u32(0, self.fd.as_raw_fd() as u32)
            .u32(4, info.len() as u32)
            .u64(8, info.as_mut_ptr() as u64);
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        let nr_maps = u32::from_ne_bytes(info[52..56].try_into().expect("4 bytes"));
        let name = cstr(&info[64..80]);
        // Second call with room for the map ids.
        let mut map_ids = vec![0u32; nr_maps as usize];
        let mut info2 = [0u8; 256];
        info2[52..56].copy_from_slice(&nr_maps.to_ne_bytes());
        info2[56..64].copy_from_slice(&(map_ids.as_mut_ptr() as u64).to_ne_bytes());
        let mut attr = Attr::new();
        attr.u32(0, self.fd.as_raw_fd() as u32)
            .u32(4, info2.len() as u32)
            .u64(8, info2.as_mut_ptr() as u64);
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        Ok(ProgInfo { name, map_ids })
    }

    /// Runs the program `repeat` times on `data` with `ctx` (`struct __sk_buff` for TC).
    pub fn test_run(&self, data: &[u8], ctx: Option<&[u8]>, repeat: u32) -> io::Result<TestRun> {
        let mut out = vec![0u8; 4096];
        let mut attr = Attr::new();
        attr.u32(0, self.fd.as_raw_fd() as u32)
            .u32(8, data.len() as u32)
            .u32(12, out.len() as u32)
            .u64(16, data.as_ptr() as u64)
            .u64(24, out.as_mut_ptr() as u64)
            .u32(32, repeat);
        if let Some(ctx) = ctx {
            attr.u32(40, ctx.len() as u32).u64(48, ctx.as_ptr() as u64);
        }
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(TestRun {
            retval: attr.get_u32(4),
            duration: Duration::from_nanos(attr.get_u32(36) as u64),
        })
    }
}

/// `bpf_map_info` of map `id`.
pub fn map_info(id: u32) -> io::Result<MapInfo> {
    let mut attr = Attr::new();
    attr.u32(0, id);
    let fd = owned_fd(bpf(BPF_MAP_GET_FD_BY_ID, &mut attr)?);
    // struct bpf_map_info: type, id, key_size, value_size, max_entries (u32 each).
    let mut info = [0u8; 128];
    let mut attr = Attr::new();
    attr.u32(0, fd.as_raw_fd() as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let field = |i: usize| u32::from_ne_bytes(info[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    Ok(MapInfo {
        map_type: field(0),
        key_size: field(2),
        value_size: field(3),
        max_entries: field(4),
    })
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A `struct __sk_buff` (192 bytes) for a TC test run: the ingress and current
/// interface set (the kernel looks `ifindex` up in the caller's namespace).
pub fn skb_ctx(ifindex: u32) -> [u8; 192] {
    const INGRESS_IFINDEX: usize = 36;
    const IFINDEX: usize = 40;
    let mut ctx = [0u8; 192];
    ctx[INGRESS_IFINDEX..INGRESS_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[IFINDEX..IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_counts_per_cpu_values_per_cpu() {
        let array = MapInfo {
            map_type: 2,
            key_size: 4,
            value_size: 8,
            max_entries: 10,
        };
        assert_eq!(array.capacity_bytes(4), 120);
        let percpu = MapInfo {
            map_type: 6,
            ..array
        };
        assert_eq!(percpu.capacity_bytes(4), 10 * (4 + 32));
    }
}
