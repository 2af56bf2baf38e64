//! Memory: what the BPF maps of nftshimd's programs in the receiver namespace can
//! hold, and the daemon's resident set.

use std::collections::BTreeSet;

use anyhow::Context;

use super::bpf::{self, Prog, BPF_TCX_EGRESS, BPF_TCX_INGRESS};
use super::topology::Topology;
use crate::packets::in_netns;

#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Sum over the distinct maps of max_entries × (key + value).
    pub map_bytes: u64,
    pub maps: usize,
    pub programs: usize,
    /// nftshimd's VmRSS.
    pub rss_bytes: u64,
}

pub fn measure(topo: &Topology, daemon_pid: u32) -> anyhow::Result<Memory> {
    let ncpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let (programs, map_bytes, maps) = in_netns(&topo.rx, move || {
        let mut progs = BTreeSet::new();
        // SAFETY: if_nameindex returns an array ending in a zero entry, freed below.
        let list = unsafe { libc::if_nameindex() };
        if list.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifindexes = Vec::new();
        let mut p = list;
        // SAFETY: walking the array up to its terminating entry.
        unsafe {
            while (*p).if_index != 0 {
                ifindexes.push((*p).if_index);
                p = p.add(1);
            }
            libc::if_freenameindex(list);
        }
        for ifindex in ifindexes {
            for hook in [BPF_TCX_INGRESS, BPF_TCX_EGRESS] {
                progs.extend(bpf::tcx_programs(ifindex, hook)?);
            }
        }
        let mut maps = BTreeSet::new();
        for id in &progs {
            maps.extend(Prog::open(*id)?.info()?.map_ids);
        }
        let mut bytes = 0;
        for id in &maps {
            bytes += bpf::map_info(*id)?.capacity_bytes(ncpus);
        }
        Ok((progs.len(), bytes, maps.len()))
    })
    .context("reading the programs' maps")?;
    let status = std::fs::read_to_string(format!("/proc/{daemon_pid}/status"))
        .context("reading nftshimd's /proc status")?;
    Ok(Memory {
        map_bytes,
        maps,
        programs,
        rss_bytes: vm_rss(&status).unwrap_or(0),
    })
}

/// VmRSS from /proc/PID/status, in bytes.
pub fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_from_status() {
        let s = "Name:\tnftshimd\nVmPeak:\t 1000 kB\nVmRSS:\t   20480 kB\nThreads: 3\n";
        assert_eq!(vm_rss(s), Some(20480 * 1024));
        assert_eq!(vm_rss("Name: x\n"), None);
    }
}
