//! The namespace's xt_recent lists (net/netfilter/xt_recent.c's `recent_table`s),
//! kept by its worker in the shared `recent_lists` map as the kernel keeps them:
//!
//! - recent_mt_check() runs for a batch's new rules while the batch is checked: a
//!   list no committed rule names is made then (empty, with the mask of the rule that
//!   creates it and the stamp mask its rules need), and an existing list whose new
//!   rules need more stamps is flushed then ([`Lists::prepare`]), even if the batch
//!   goes no further, as in the kernel.
//! - recent_mt_destroy() runs for the old rules after the commit: a list no rule of
//!   the committed ruleset names is gone ([`Lists::commit`]); one named again later
//!   starts empty. A list named before and after a batch (iptables-restore of the same
//!   rules) keeps its entries: the kernel's reference count never drops to 0.
//!
//! A list's key in the map is a hash of its name ([`nftshim_ebpf::recent::list_key`]);
//! two live names with one key are refused. A list deleted and made again (another
//! commit) is a fresh entry, written only after the programs of the commit that
//! deleted it have stopped running (the worker settles retired programs before it
//! builds).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use nftshim_ebpf::recent::{list_key, BpfRecentList, Params, MAX_LISTS};

use crate::compile::Program;

pub use nftshim_ebpf::recent::MAP as LISTS_MAP;

/// BPF_F_LOCK: the value is written under its spin lock, which it leaves alone.
const BPF_F_LOCK: u64 = 4;

/// A list as the kernel's table has it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Live {
    key: u64,
    mask: [u8; 16],
    nstamps_max_mask: u16,
}

/// The namespace's lists.
#[derive(Debug, Default)]
pub struct Lists {
    /// The lists of the committed ruleset, by name.
    committed: BTreeMap<Vec<u8>, Live>,
    /// The lists of the batch being checked, made or flushed by [`Lists::prepare`].
    prepared: BTreeMap<Vec<u8>, Live>,
    /// Keys written to the map and not deleted since.
    written: BTreeSet<u64>,
}

impl Lists {
    /// Why `program`'s lists cannot be kept, if so (nothing is written).
    pub fn conflict(&self, program: &Program) -> Option<String> {
        if program.recent.is_empty() {
            return None;
        }
        if program.recent.len() > MAX_LISTS {
            return Some(format!(
                "more than {MAX_LISTS} xt_recent lists are not supported by the eBPF data plane"
            ));
        }
        let mut keys = BTreeMap::new();
        for (name, need) in &program.recent {
            let shown = String::from_utf8_lossy(name);
            if let Some(other) = keys.insert(list_key(name), name) {
                return Some(format!(
                    "xt_recent lists {} and {shown} share a key in the eBPF data plane; \
                     not supported",
                    String::from_utf8_lossy(other)
                ));
            }
            if need.mask.is_none() && !self.committed.contains_key(name) {
                return Some(format!(
                    "xt match recent: a new list {shown} named with different --mask by \
                     rules of several tables (which created it?) is not supported by the \
                     eBPF data plane"
                ));
            }
        }
        None
    }

    /// recent_mt_check() for the batch's ruleset `program`: new lists made empty,
    /// existing ones flushed when its rules need more stamps, in the map pinned at
    /// `pin` (absent while no program of the namespace was ever loaded: nothing can
    /// have used a list yet, and the next preparation writes them).
    pub fn prepare(
        &mut self,
        program: &Program,
        pin: &Path,
        params: Option<Params>,
    ) -> Result<(), String> {
        self.prepared.clear();
        if program.recent.is_empty() {
            return Ok(());
        }
        let params = params.ok_or("xt_recent's module parameters are unknown")?;
        let mut map = if pin.exists() { Some(open(pin)?) } else { None };
        for (name, need) in &program.recent {
            let key = list_key(name);
            let (live, fresh) = match self.committed.get_mut(name) {
                Some(live) => {
                    let grow = need.nstamps_max_mask > live.nstamps_max_mask;
                    if grow {
                        // The kernel flushes at checkentry, whatever the batch's fate.
                        live.nstamps_max_mask = need.nstamps_max_mask;
                    }
                    (live.clone(), grow)
                }
                None => (
                    Live {
                        key,
                        mask: need.mask.ok_or("checked")?,
                        nstamps_max_mask: need.nstamps_max_mask,
                    },
                    true,
                ),
            };
            if let Some(map) = map.as_mut() {
                let missing = !self.written.contains(&key) || map.get(&key, 0).is_err();
                if fresh || missing {
                    let value =
                        BpfRecentList::empty(live.mask, live.nstamps_max_mask, params.ip_list_tot);
                    map.insert(key, *value, BPF_F_LOCK).map_err(|e| {
                        format!("xt_recent list {}: {e}", String::from_utf8_lossy(name))
                    })?;
                    self.written.insert(key);
                }
            }
            self.prepared.insert(name.clone(), live);
        }
        Ok(())
    }

    /// recent_mt_destroy() after the commit of `program` (prepared before): the lists
    /// it does not name are deleted.
    pub fn commit(&mut self, program: &Program, pin: &Path) {
        let mut next = BTreeMap::new();
        for name in program.recent.keys() {
            if let Some(live) = self.prepared.get(name).or_else(|| self.committed.get(name)) {
                next.insert(name.clone(), live.clone());
            }
        }
        self.committed = next;
        self.prepared.clear();
        let keep: BTreeSet<u64> = self.committed.values().map(|l| l.key).collect();
        let gone: Vec<u64> = self.written.difference(&keep).copied().collect();
        if gone.is_empty() {
            return;
        }
        match open(pin) {
            Ok(mut map) => {
                for key in gone {
                    // Absent already is fine: the map may be new.
                    let _ = map.remove(&key);
                    self.written.remove(&key);
                }
            }
            Err(e) => tracing::warn!(error = %e, "xt_recent lists not deleted"),
        }
    }
}

fn open(pin: &Path) -> Result<BpfHashMap<MapData, u64, BpfRecentList>, String> {
    let data = MapData::from_pin(pin).map_err(|e| format!("{}: {e}", pin.display()))?;
    BpfHashMap::try_from(Map::HashMap(data)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::xt::recent::ListNeed;

    fn program(lists: &[(&str, Option<[u8; 16]>, u16)]) -> Program {
        let mut p = Program::default();
        for (name, mask, nmask) in lists {
            p.recent.insert(
                name.as_bytes().to_vec(),
                ListNeed {
                    mask: *mask,
                    nstamps_max_mask: *nmask,
                },
            );
        }
        p
    }

    const PARAMS: Option<Params> = Some(Params {
        ip_list_tot: 100,
        ip_pkt_list_tot: 0,
    });

    /// Without a pinned map (no program loaded) the bookkeeping still follows the
    /// kernel's reference counts: kept across a batch naming it again, the creator's
    /// mask kept, the stamp mask only growing, gone with its last rule.
    #[test]
    fn lists_follow_the_transactions() {
        let pin = Path::new("/nonexistent/nftshim-recent-test");
        let mut l = Lists::default();
        let p1 = program(&[("a", Some([0xff; 16]), 7)]);
        assert_eq!(l.conflict(&p1), None);
        l.prepare(&p1, pin, PARAMS).unwrap();
        l.commit(&p1, pin);
        assert_eq!(l.committed[&b"a".to_vec()].nstamps_max_mask, 7);
        // Another rule of a with another mask and a larger hitcount: the creator's
        // mask stays, the stamp mask grows.
        let p2 = program(&[("a", Some([0; 16]), 15), ("b", Some([1; 16]), 31)]);
        l.prepare(&p2, pin, PARAMS).unwrap();
        l.commit(&p2, pin);
        assert_eq!(
            l.committed[&b"a".to_vec()],
            Live {
                key: list_key(b"a"),
                mask: [0xff; 16],
                nstamps_max_mask: 15
            }
        );
        // Its big-hitcount rule deleted: the mask does not shrink.
        let p3 = program(&[("a", Some([0; 16]), 7)]);
        l.prepare(&p3, pin, PARAMS).unwrap();
        l.commit(&p3, pin);
        assert_eq!(l.committed[&b"a".to_vec()].nstamps_max_mask, 15);
        assert!(!l.committed.contains_key(b"b".as_slice()));
        // Gone, then named again: made anew with the new creator's mask.
        let empty = Program::default();
        l.prepare(&empty, pin, PARAMS).unwrap();
        l.commit(&empty, pin);
        l.prepare(&p2, pin, PARAMS).unwrap();
        l.commit(&p2, pin);
        assert_eq!(l.committed[&b"a".to_vec()].mask, [0; 16]);
        assert_eq!(l.committed[&b"a".to_vec()].nstamps_max_mask, 15);
    }

    #[test]
    fn an_ambiguous_creator_is_refused_only_for_a_new_list() {
        let pin = Path::new("/nonexistent/nftshim-recent-test");
        let mut l = Lists::default();
        let ambiguous = program(&[("a", None, 31)]);
        assert!(l.conflict(&ambiguous).unwrap().contains("list a"));
        let p1 = program(&[("a", Some([0xff; 16]), 31)]);
        l.prepare(&p1, pin, PARAMS).unwrap();
        l.commit(&p1, pin);
        assert_eq!(l.conflict(&ambiguous), None);
    }
}
