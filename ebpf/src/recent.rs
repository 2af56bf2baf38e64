//! xt_recent's lists as the data plane keeps them (bpf/lib/xt_recent.h): one entry of
//! the namespace's shared `recent_lists` map per list, keyed by [`list_key`] of its
//! name, with the kernel's per-list state (the creator's mask, `nstamps_max_mask`,
//! `ip_list_tot`) and up to [`MAX_ENTRIES`] entries. The daemon creates, flushes and
//! deletes lists (dataplane/src/runtime/recent.rs); the programs do recent_mt().

use std::time::{Duration, Instant};

/// The most `ip_list_tot` the map's lists hold (NS_RECENT_ENTRIES).
pub const MAX_ENTRIES: usize = 128;
/// Stamps per entry (NS_RECENT_STAMPS): hitcounts up to 32.
pub const MAX_STAMPS: usize = 32;
/// Lists per namespace (NS_RECENT_LISTS).
pub const MAX_LISTS: usize = 1024;
/// The map, by its name in the object.
pub const MAP: &str = "recent_lists";
/// The HZ the programs' `--seconds` arithmetic assumes (NS_RECENT_HZ).
pub const HZ: u64 = 250;

/// check_set bits (uapi xt_recent.h).
pub const CHECK: u8 = 1;
pub const SET: u8 = 2;
pub const UPDATE: u8 = 4;
pub const REMOVE: u8 = 8;
pub const TTL: u8 = 16;
pub const REAP: u8 = 32;
/// The bits the programs act on (`--rttl` is refused by the compiler).
pub const CHECK_SET_BITS: u8 = CHECK | SET | UPDATE | REMOVE | REAP;

/// `struct ns_recent_entry`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BpfRecentEntry {
    pub stamps: [u64; MAX_STAMPS],
    pub seq: u64,
    pub addr: [u32; 4],
    pub family: u8,
    pub ttl: u8,
    pub index: u16,
    pub nstamps: u16,
    pub pad: u16,
}

/// `struct ns_recent_list` (the first 4 bytes are the spin lock, which
/// BPF_F_LOCK updates leave alone).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BpfRecentList {
    pub lock: u32,
    pub entries: u32,
    pub seq: u64,
    pub mask: [u32; 4],
    pub max: u32,
    pub nstamps_max_mask: u16,
    pub pad: u16,
    /// The programs' scratch (under the lock).
    pub scratch: [u32; 4],
    pub scratch_seq: u64,
    pub e: [BpfRecentEntry; MAX_ENTRIES],
}

// SAFETY: plain old data of integers, no padding bytes the kernel would leak (every
// gap is an explicit field).
unsafe impl aya::Pod for BpfRecentList {}

impl BpfRecentList {
    /// An empty list (recent_mt_check()'s new table, or one just flushed).
    pub fn empty(mask: [u8; 16], nstamps_max_mask: u16, ip_list_tot: u32) -> Box<Self> {
        let mut mask_words = [0u32; 4];
        for (i, w) in mask_words.iter_mut().enumerate() {
            *w = u32::from_ne_bytes(mask[4 * i..4 * i + 4].try_into().unwrap());
        }
        Box::new(BpfRecentList {
            lock: 0,
            entries: 0,
            seq: 0,
            mask: mask_words,
            max: ip_list_tot,
            nstamps_max_mask,
            pad: 0,
            scratch: [0; 4],
            scratch_seq: 0,
            e: [BpfRecentEntry {
                stamps: [0; MAX_STAMPS],
                seq: 0,
                addr: [0; 4],
                family: 0,
                ttl: 0,
                index: 0,
                nstamps: 0,
                pad: 0,
            }; MAX_ENTRIES],
        })
    }
}

/// The map key of the list `name` (FNV-1a, 64 bits); the daemon refuses two live
/// names with one key.
pub fn list_key(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// recent_mt_check()'s stamp mask for a rule's `hit_count` (`ip_pkt_list_tot` 0).
pub fn nstamp_mask(hit_count: u32) -> u16 {
    if hit_count == 0 {
        31
    } else {
        (hit_count.next_power_of_two() - 1) as u16
    }
}

/// xt_recent's module parameters that shape the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub ip_list_tot: u32,
    pub ip_pkt_list_tot: u32,
}

impl Params {
    /// Reads `/sys/module/xt_recent/parameters` (the kernel's own xt_recent, which
    /// nftshim's lists must behave like).
    pub fn read() -> Result<Params, String> {
        let read = |name: &str| -> Result<u32, String> {
            let path = format!("/sys/module/xt_recent/parameters/{name}");
            std::fs::read_to_string(&path)
                .map_err(|e| format!("{path}: {e}"))?
                .trim()
                .parse()
                .map_err(|e| format!("{path}: {e}"))
        };
        Ok(Params {
            ip_list_tot: read("ip_list_tot")?,
            ip_pkt_list_tot: read("ip_pkt_list_tot")?,
        })
    }

    /// Why the programs cannot keep lists as these parameters make them, if so.
    pub fn unsupported(&self) -> Option<String> {
        if self.ip_pkt_list_tot != 0 {
            return Some(format!(
                "xt_recent's ip_pkt_list_tot {} (only 0, the default)",
                self.ip_pkt_list_tot
            ));
        }
        if self.ip_list_tot == 0 || self.ip_list_tot as usize > MAX_ENTRIES {
            return Some(format!(
                "xt_recent's ip_list_tot {} (1 to {MAX_ENTRIES})",
                self.ip_list_tot
            ));
        }
        None
    }
}

/// The kernel's HZ, measured from the jiffies /proc/timer_list shows (root only)
/// over a short sleep, rounded to the nearest usual value.
pub fn measure_hz() -> Result<u64, String> {
    fn jiffies() -> Result<u64, String> {
        let text = std::fs::read_to_string("/proc/timer_list")
            .map_err(|e| format!("/proc/timer_list: {e}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("jiffies: "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| "/proc/timer_list: no jiffies".to_string())
    }
    let (t0, j0) = (Instant::now(), jiffies()?);
    std::thread::sleep(Duration::from_millis(200));
    let (t1, j1) = (Instant::now(), jiffies()?);
    let rate = j1.wrapping_sub(j0) as f64 / (t1 - t0).as_secs_f64();
    [100u64, 250, 300, 1000]
        .into_iter()
        .min_by(|a, b| {
            (*a as f64 - rate)
                .abs()
                .partial_cmp(&(*b as f64 - rate).abs())
                .unwrap()
        })
        .ok_or_else(|| "no HZ".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_c_struct() {
        // 32 stamps + seq + addr + 8 bytes of small fields.
        assert_eq!(std::mem::size_of::<BpfRecentEntry>(), 8 * 33 + 16 + 8);
        assert_eq!(
            std::mem::size_of::<BpfRecentList>(),
            64 + MAX_ENTRIES * std::mem::size_of::<BpfRecentEntry>()
        );
    }

    #[test]
    fn stamp_masks_follow_recent_mt_check() {
        assert_eq!(nstamp_mask(0), 31);
        assert_eq!(nstamp_mask(1), 0);
        assert_eq!(nstamp_mask(3), 3);
        assert_eq!(nstamp_mask(8), 7);
        assert_eq!(nstamp_mask(12), 15);
        assert_eq!(nstamp_mask(32), 31);
    }

    #[test]
    fn keys_differ_by_name() {
        assert_ne!(list_key(b"DEFAULT"), list_key(b"foo"));
        assert_eq!(list_key(b""), 0xcbf2_9ce4_8422_2325);
    }
}
