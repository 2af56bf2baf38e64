//! State one network namespace's programs share: the connection table (and its
//! fragment table, accounting and labels switches), limit buckets and quota counters. nf_conntrack and the stateful
//! expressions exist once per namespace (per rule), not once per interface, so every
//! program of the namespace uses the same maps, pinned in one bpffs directory, and
//! each generation of programs finds them there (connections survive a commit; a
//! restarted daemon finds them too).
//!
//! Limits and quotas live in two shared arrays; [`SharedState`] hands out their slots
//! by [`StateId`], so all programs enforcing one rule use one slot, and a slot is
//! initialised only when its rule first appears.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use crate::ir::StateId;

/// The maps shared through the pin directory, by their names in the object.
pub const SHARED_MAPS: [&str; 9] = [
    "ct_table",
    "ct_frags",
    "ct_acct",
    "ct_labels",
    "limits",
    "quotas",
    "rateest_rates",
    "recent_lists",
    "addrtype_v4",
];

/// Slots of the shared limit and quota arrays (their `max_entries`).
pub const SHARED_SLOTS: u32 = 16384;

/// Entries of the shared connection table.
pub const SHARED_CT_MAX: u32 = 65536;

/// The namespace's shared maps: where they are pinned, and which slot each limit and
/// quota has.
#[derive(Debug)]
pub struct SharedState {
    dir: PathBuf,
    pub(crate) limits: Slots,
    pub(crate) quotas: Slots,
}

/// A slot allocator for one shared array.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    by_state: HashMap<StateId, u32>,
    free: Vec<u32>,
    next: u32,
}

impl Slots {
    /// The slot of `state`, and whether it is new (to be initialised).
    pub(crate) fn slot(&mut self, state: StateId) -> Option<(u32, bool)> {
        if let Some(&s) = self.by_state.get(&state) {
            return Some((s, false));
        }
        let s = match self.free.pop() {
            Some(s) => s,
            None if self.next < SHARED_SLOTS => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        self.by_state.insert(state, s);
        Some((s, true))
    }

    /// Every state that has a slot, with its slot.
    pub(crate) fn assigned(&self) -> impl Iterator<Item = (StateId, u32)> + '_ {
        self.by_state.iter().map(|(&state, &slot)| (state, slot))
    }

    /// Gives up the slot of `state` (it was never initialised).
    pub(crate) fn forget(&mut self, state: StateId) {
        if let Some(s) = self.by_state.remove(&state) {
            self.free.push(s);
        }
    }

    fn retain(&mut self, live: &BTreeSet<StateId>) {
        let free = &mut self.free;
        self.by_state.retain(|id, slot| {
            let keep = live.contains(id);
            if !keep {
                free.push(*slot);
            }
            keep
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_state.len()
    }
}

impl SharedState {
    /// The shared maps pinned in `dir` (created if missing; it must be on a bpffs).
    /// Maps already pinned there are used as they are: connections survive. Limit and
    /// quota slots start unassigned, so the first program of each rule initialises them.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<SharedState> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(SharedState {
            dir,
            limits: Slots::default(),
            quotas: Slots::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the shared map `name` is pinned.
    pub fn pin_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Frees the limit and quota slots of every state not in `live` (rules that are
    /// gone); a rule that comes back later starts afresh, as in the kernel.
    pub fn retain(&mut self, live: &BTreeSet<StateId>) {
        self.limits.retain(live);
        self.quotas.retain(live);
    }

    /// Unpins the shared maps (they go when the last program using them does) and
    /// removes the directory if nothing else is left in it.
    pub fn remove(self) -> io::Result<()> {
        for name in SHARED_MAPS {
            match std::fs::remove_file(self.pin_path(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(rule: u64) -> StateId {
        StateId {
            table: 1,
            rule,
            expr: 0,
        }
    }

    #[test]
    fn a_state_keeps_its_slot_and_a_freed_slot_is_fresh_again() {
        let mut s = Slots::default();
        assert_eq!(s.slot(id(1)), Some((0, true)));
        assert_eq!(s.slot(id(2)), Some((1, true)));
        assert_eq!(s.slot(id(1)), Some((0, false)));
        s.retain(&[id(2)].into_iter().collect());
        assert_eq!(s.len(), 1);
        assert_eq!(s.slot(id(2)), Some((1, false)));
        // Rule 1 went; rule 3 gets its slot, to be initialised again.
        assert_eq!(s.slot(id(3)), Some((0, true)));
    }
}
