//! What a loaded program's maps hold, in the program's own numbering of blocks and
//! vectors, and the map writes that turn one ruleset's maps into another's.
//!
//! A fresh load writes an image over an empty one. A later commit whose program
//! constants (`BpfConfig`) are unchanged rewrites a spare program's maps in place,
//! with only the entries that differ; the links then switch to it (the dataplane
//! worker does that), so no packet sees half of two rulesets.
//!
//! The compiler numbers blocks and vectors by first appearance, so one new rule can
//! renumber most of them. The image keeps its own numbering: a block keeps its slot
//! while the new ruleset still has that content, and a vector id goes to the new
//! vector that the keys which pointed at it point at first. One rule appended to a
//! long chain then rewrites the blocks that hold its bit, the index entries of the
//! vectors whose bits changed, and the keys of its own values; nothing else.
//!
//! Blocks are shared (`maps::Block`): an incremental compile keeps the blocks that did
//! not change, under the same numbers, so the image of a spare (two commits back)
//! finds most of them by number and pointer (`placed`, `slot_of`), and hashes only
//! the contents of the others.

use std::collections::{HashMap as StdHashMap, HashSet as StdHashSet};
use std::sync::Arc;

/// The image's tables are rebuilt on every commit: hashed with foldhash, not SipHash.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = StdHashSet<K, foldhash::fast::RandomState>;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use aya::{Ebpf, Pod};

use crate::maps::checks::{BpfResidualElem, BpfResidualInsn, BpfRuleExt};
use crate::maps::sets::SetEntry;
use crate::maps::{Block, BpfChain, BpfLive, BpfRule, CompiledProgram, LpmEntries, BLOCK_WORDS};

/// Room a loaded program keeps for its ruleset to grow in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Slots of `vectors` (blocks).
    pub blocks: u32,
    /// Vector ids.
    pub rows: u32,
    /// Entries per vector in `vector_blocks`: the most blocks a vector can have.
    pub stride: u32,
    pub rules: u32,
    /// `rule_counters`: rules, then the base chains' policies.
    pub counters: u32,
    pub chains: u32,
    pub rule_ext: u32,
    pub residual_insns: u32,
    pub residual_elems: u32,
    /// saddr4, saddr6, daddr4, daddr6.
    pub lpm: [u32; 4],
    /// iif, oif, mark0, mark1, ctmark.
    pub hash: [u32; 5],
}

/// `n` and a quarter more, at least 16 more.
fn room(n: usize) -> u32 {
    u32::try_from(n + n / 4 + 16).unwrap_or(u32::MAX)
}

impl Capacity {
    /// The room a fresh load of `c` gets.
    pub fn for_program(c: &CompiledProgram) -> Capacity {
        let lpm = |e: &LpmEntries| [room(e.v4.len()), room(e.v6.len())];
        let [s4, s6] = lpm(&c.saddr);
        let [d4, d6] = lpm(&c.daddr);
        Capacity {
            blocks: room(c.block_entries()),
            rows: room(c.distinct_vectors()),
            stride: c.live.nblocks + 1,
            rules: room(c.rules.len()),
            counters: room(c.rules.len()) + crate::maps::MAX_BASE_CHAINS as u32,
            chains: room(c.chains.len()),
            rule_ext: room(c.rule_ext.len()),
            residual_insns: room(c.residual_insns.len()),
            residual_elems: room(c.residual_elems.len()),
            lpm: [s4, s6, d4, d6],
            hash: [
                room(c.iif.len()),
                room(c.oif.len()),
                room(c.mark[0].len()),
                room(c.mark[1].len()),
                room(c.ctmark.len()),
            ],
        }
    }

    /// Entries of `vector_blocks`.
    pub fn vector_entries(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.stride)
    }
}

/// The new ruleset does not fit the program's maps (then it gets a fresh program).
#[derive(Debug, thiserror::Error)]
#[error("no room for the new ruleset in the loaded program's {0}")]
pub struct NoRoom(pub &'static str);

/// An LPM key: prefix length and address (an IPv4 address in the low 32 bits).
type Prefix = (u8, u128);

/// The maps' contents as written, in the program's numbering.
#[derive(Clone, Debug, Default)]
pub struct Image {
    live: BpfLive,
    /// Block slot -> its words (None: never written, all zeros; slot 0 stays so).
    /// The compiled program's own blocks: the next image starts as a copy of this
    /// one, which costs a reference per block instead of a copy of every block, and a
    /// compile updated from an earlier one keeps the blocks that did not change, so
    /// that most blocks are found by pointer (`slot_of`).
    blocks: Vec<Option<Block>>,
    /// The slot of each block of `blocks` by its address (each is in one slot).
    slot_of: HashMap<usize, u32>,
    /// Per block of the compiled program this image is of, its address and slot: an
    /// incremental compile keeps most blocks under the same numbers, even two commits
    /// on, so most are found here without a lookup. (The image holds every one of
    /// them, so no other block can have that address.)
    placed: Vec<(usize, u32)>,
    /// Vector id * the capacity's stride + block -> the block slot of that block of
    /// that vector.
    rows: Vec<u32>,
    /// saddr4, saddr6, daddr4, daddr6: prefix -> vector id.
    lpm: [HashMap<Prefix, u32>; 4],
    /// l4proto, sport, dport, icmp, ctstate: index -> vector id.
    arrays: [Vec<u32>; 5],
    /// iif, oif, mark0, mark1, ctmark: key -> vector id.
    hashes: [HashMap<u32, u32>; 5],
    rules: Vec<BpfRule>,
    chains: Vec<BpfChain>,
    rule_ext: Vec<BpfRuleExt>,
    residual_insns: Vec<BpfResidualInsn>,
    residual_elems: Vec<BpfResidualElem>,
    sets: HashSet<SetEntry>,
}

pub(crate) const LPM_MAPS: [&str; 4] = ["saddr4_lpm", "saddr6_lpm", "daddr4_lpm", "daddr6_lpm"];
const ARRAY_MAPS: [&str; 5] = [
    "l4proto_vec",
    "sport_vec",
    "dport_vec",
    "icmp_vec",
    "ctstate_vec",
];
pub(crate) const HASH_MAPS: [&str; 5] =
    ["iif_vec", "oif_vec", "mark0_vec", "mark1_vec", "ctmark_vec"];

fn lpm_keys(e: &LpmEntries) -> [Vec<(Prefix, u32)>; 2] {
    [
        e.v4.iter()
            .map(|(n, id)| ((n.prefix_len(), u128::from(u32::from(n.addr()))), *id))
            .collect(),
        e.v6.iter()
            .map(|(n, id)| ((n.prefix_len(), u128::from(n.addr())), *id))
            .collect(),
    ]
}

impl Image {
    /// The image of `c` (whose `rule_ext` is `rule_ext`: limit and quota slots
    /// resolved) that keeps as much of `self` as it can, within `cap`.
    pub fn successor(
        &self,
        c: &CompiledProgram,
        rule_ext: &[BpfRuleExt],
        cap: &Capacity,
    ) -> Result<Image, NoRoom> {
        let fits = |n: usize, max: u32, what| {
            if n <= max as usize {
                Ok(())
            } else {
                Err(NoRoom(what))
            }
        };
        fits(c.live.nblocks as usize, cap.stride, "vector index")?;
        fits(c.rules.len(), cap.rules, "rules")?;
        fits(c.ncounters(), cap.counters, "counters")?;
        fits(c.chains.len(), cap.chains, "chains")?;
        fits(rule_ext.len(), cap.rule_ext, "rule checks")?;
        fits(
            c.residual_insns.len(),
            cap.residual_insns,
            "residual programs",
        )?;
        fits(
            c.residual_elems.len(),
            cap.residual_elems,
            "residual elements",
        )?;
        let lpm_new = {
            let [s4, s6] = lpm_keys(&c.saddr);
            let [d4, d6] = lpm_keys(&c.daddr);
            [s4, s6, d4, d6]
        };
        for (i, e) in lpm_new.iter().enumerate() {
            fits(e.len(), cap.lpm[i], LPM_MAPS[i])?;
        }
        let hash_new: [&[(u32, u32)]; 5] = [&c.iif, &c.oif, &c.mark[0], &c.mark[1], &c.ctmark];
        for (i, e) in hash_new.iter().enumerate() {
            fits(e.len(), cap.hash[i], HASH_MAPS[i])?;
        }
        let array_new: [&[u32]; 5] = [&c.l4proto, &c.sport, &c.dport, &c.icmp, &c.ctstate];

        let vector_id = self.place_vectors(c, cap, &lpm_new, &array_new, &hash_new)?;
        let block_slot = self.place_blocks(c, cap, &vector_id)?;

        let mut next = Image {
            live: c.live,
            blocks: self.blocks.clone(),
            slot_of: self.slot_of.clone(),
            rows: self.rows.clone(),
            rules: c.rules.clone(),
            chains: c.chains.clone(),
            rule_ext: rule_ext.to_vec(),
            residual_insns: c.residual_insns.clone(),
            residual_elems: c.residual_elems.clone(),
            sets: c.set_entries.iter().copied().collect(),
            ..Image::default()
        };
        next.blocks
            .resize(next.blocks.len().max(cap.blocks as usize), None);
        for (logical, &slot) in block_slot.iter().enumerate().skip(1) {
            let block = &c.blocks[logical];
            let cell = &mut next.blocks[slot as usize];
            if !cell.as_ref().is_some_and(|old| Arc::ptr_eq(old, block)) {
                if let Some(old) = cell.take() {
                    next.slot_of.remove(&address(&old));
                }
                next.slot_of.insert(address(block), slot);
                *cell = Some(block.clone());
            }
        }
        next.placed = c
            .blocks
            .iter()
            .zip(&block_slot)
            .map(|(b, &slot)| (if slot == 0 { 0 } else { address(b) }, slot))
            .collect();
        let nblocks = c.live.nblocks as usize;
        let stride = cap.stride as usize;
        next.rows
            .resize(next.rows.len().max(cap.rows as usize * stride), 0);
        for (logical, &id) in vector_id.iter().enumerate() {
            let row = &mut next.rows[id as usize * stride..][..nblocks];
            for (slot, &b) in row
                .iter_mut()
                .zip(&c.vector_blocks[logical * nblocks..(logical + 1) * nblocks])
            {
                *slot = block_slot[b as usize];
            }
        }
        let to_id = |logical: u32| vector_id[logical as usize];
        for (d, s) in next.live.miss.iter_mut().zip(c.live.miss) {
            *d = if vector_id.is_empty() { 0 } else { to_id(s) };
        }
        for (d, s) in next.live.absent.iter_mut().zip(c.live.absent) {
            *d = if vector_id.is_empty() { 0 } else { to_id(s) };
        }
        for (i, e) in lpm_new.iter().enumerate() {
            next.lpm[i] = e.iter().map(|&(k, v)| (k, to_id(v))).collect();
        }
        for (i, e) in array_new.iter().enumerate() {
            next.arrays[i] = e.iter().map(|&v| to_id(v)).collect();
        }
        for (i, e) in hash_new.iter().enumerate() {
            next.hashes[i] = e.iter().map(|&(k, v)| (k, to_id(v))).collect();
        }
        Ok(next)
    }

    /// Block slot of each of `c`'s blocks: the slot that holds that content already,
    /// else one whose content the new ruleset no longer has, preferably the one the
    /// block replaces (`vector_id`: the image's id of each of `c`'s vectors).
    fn place_blocks(
        &self,
        c: &CompiledProgram,
        cap: &Capacity,
        vector_id: &[u32],
    ) -> Result<Vec<u32>, NoRoom> {
        let n = c.block_entries();
        let mut slot = vec![0u32; n];
        let mut used = vec![false; (cap.blocks as usize).max(self.blocks.len())];
        used[0] = true;
        let mut fresh = Vec::new();
        for (logical, s) in slot.iter_mut().enumerate().skip(1) {
            let at = address(&c.blocks[logical]);
            let found = match self.placed.get(logical) {
                Some(&(a, slot)) if a == at => Some(slot),
                _ => self.slot_of.get(&at).copied(),
            };
            match found {
                Some(old) => {
                    *s = old;
                    used[old as usize] = true;
                }
                None => fresh.push(logical),
            }
        }
        // Blocks not found by pointer (a compile from scratch has only new ones): by
        // content, among the slots no block took yet.
        if !fresh.is_empty() {
            let have: HashMap<&[u64], u32> = self
                .blocks
                .iter()
                .enumerate()
                .skip(1)
                .filter(|&(s, _)| !used[s])
                .filter_map(|(s, b)| Some((&b.as_deref()?[..], s as u32)))
                .collect();
            fresh.retain(|&logical| match have.get(&c.blocks[logical][..]) {
                Some(&old) if !used[old as usize] => {
                    slot[logical] = old;
                    used[old as usize] = true;
                    false
                }
                _ => true,
            });
        }
        // A new block takes the slot of the block it replaces where it can: the slot
        // its vector's id had at that position, if that block is gone. The rows then
        // stay as they were (one rule's bit in a block rewrites the block, not every
        // row holding it), whatever order the compiler numbered blocks in. (A block
        // found by content only, not by pointer, takes a slot too: the map holds its
        // content twice, which costs room, not correctness.)
        let nblocks = c.live.nblocks as usize;
        let stride = cap.stride as usize;
        for (logical, &id) in vector_id.iter().enumerate() {
            let Some(old_row) = self
                .rows
                .get(id as usize * stride..(id as usize + 1) * stride)
            else {
                continue;
            };
            let blocks = &c.vector_blocks[logical * nblocks..(logical + 1) * nblocks];
            for (&block, &old) in blocks.iter().zip(old_row) {
                let block = block as usize;
                if block != 0 && slot[block] == 0 && old != 0 && !used[old as usize] {
                    used[old as usize] = true;
                    slot[block] = old;
                }
            }
        }
        let mut free = (1..cap.blocks).filter(|&s| !used[s as usize]);
        for logical in fresh {
            if slot[logical] == 0 {
                slot[logical] = free.next().ok_or(NoRoom("vector blocks"))?;
            }
        }
        Ok(slot)
    }

    /// Vector id of each of `c`'s vectors: the id the first key pointing at it had
    /// (unless another vector took that id first), else a free one.
    fn place_vectors(
        &self,
        c: &CompiledProgram,
        cap: &Capacity,
        lpm_new: &[Vec<(Prefix, u32)>; 4],
        array_new: &[&[u32]; 5],
        hash_new: &[&[(u32, u32)]; 5],
    ) -> Result<Vec<u32>, NoRoom> {
        const NONE: u32 = u32::MAX;
        let n = c.distinct_vectors();
        let mut id = vec![NONE; n];
        let mut taken = vec![false; cap.rows as usize];
        let mut claim = |old: Option<u32>, logical: u32| {
            let (Some(old), Some(slot)) = (old, id.get_mut(logical as usize)) else {
                return;
            };
            if *slot == NONE && !taken[old as usize] {
                taken[old as usize] = true;
                *slot = old;
            }
        };
        for (i, e) in array_new.iter().enumerate() {
            for (k, &v) in e.iter().enumerate() {
                claim(self.arrays[i].get(k).copied(), v);
            }
        }
        for (i, e) in hash_new.iter().enumerate() {
            for &(k, v) in e.iter() {
                claim(self.hashes[i].get(&k).copied(), v);
            }
        }
        for (i, e) in lpm_new.iter().enumerate() {
            for (k, v) in e {
                claim(self.lpm[i].get(k).copied(), *v);
            }
        }
        for d in crate::maps::Dim::ALL {
            if c.uses(d) {
                let d = d as usize;
                claim(Some(self.live.miss[d]), c.live.miss[d]);
                claim(Some(self.live.absent[d]), c.live.absent[d]);
            }
        }
        let mut free = (0..cap.rows).filter(|&v| !taken[v as usize]);
        for v in id.iter_mut().filter(|v| **v == NONE) {
            *v = free.next().ok_or(NoRoom("vectors"))?;
        }
        Ok(id)
    }

    /// Writes into `ebpf`'s maps what differs between `self` (what they hold) and
    /// `next`; returns the number of map updates and deletions.
    pub fn write_diff(&self, next: &Image, ebpf: &mut Ebpf) -> Result<u64, aya::maps::MapError> {
        let mut writes = 0u64;
        if self.live != next.live {
            let mut bss: Array<&mut MapData, BpfLive> = Array::try_from(map(ebpf, ".bss")?)?;
            bss.set(0, next.live, 0)?;
            writes += 1;
        }
        {
            // `struct ns_vblock`: the words, then the mask of the words that are not zero.
            let mut vectors: Array<&mut MapData, [u64; BLOCK_WORDS + 1]> =
                Array::try_from(map(ebpf, "vectors")?)?;
            for (slot, words) in next.blocks.iter().enumerate() {
                let Some(words) = words else { continue };
                let old = self.blocks.get(slot).and_then(Option::as_ref);
                if old.is_some_and(|old| Arc::ptr_eq(old, words) || **old == **words) {
                    continue;
                }
                let mut value = [0u64; BLOCK_WORDS + 1];
                value[..BLOCK_WORDS].copy_from_slice(&words[..]);
                value[BLOCK_WORDS] = words
                    .iter()
                    .enumerate()
                    .filter(|(_, &w)| w != 0)
                    .fold(0, |acc, (i, _)| acc | 1 << i);
                vectors.set(slot as u32, value, 0)?;
                writes += 1;
            }
        }
        {
            let mut index: Array<&mut MapData, u32> = Array::try_from(map(ebpf, "vector_blocks")?)?;
            for (i, &slot) in next.rows.iter().enumerate() {
                if self.rows.get(i).copied().unwrap_or(0) != slot {
                    index.set(i as u32, slot, 0)?;
                    writes += 1;
                }
            }
        }
        for (i, name) in ARRAY_MAPS.iter().enumerate() {
            writes += write_array(ebpf, name, &self.arrays[i], &next.arrays[i])?;
        }
        for (i, name) in HASH_MAPS.iter().enumerate() {
            writes += write_hash(ebpf, name, &self.hashes[i], &next.hashes[i])?;
        }
        for (i, name) in LPM_MAPS.iter().enumerate() {
            writes += if i % 2 == 0 {
                write_lpm(ebpf, name, &self.lpm[i], &next.lpm[i], |a| {
                    (a as u32).to_be()
                })?
            } else {
                write_lpm(ebpf, name, &self.lpm[i], &next.lpm[i], |a| a.to_be_bytes())?
            };
        }
        writes += write_array(ebpf, "rules", &self.rules, &next.rules)?;
        writes += write_array(ebpf, "chains", &self.chains, &next.chains)?;
        writes += write_array(ebpf, "rule_ext", &self.rule_ext, &next.rule_ext)?;
        writes += write_array(
            ebpf,
            "residual_insns",
            &self.residual_insns,
            &next.residual_insns,
        )?;
        writes += write_array(
            ebpf,
            "residual_elems",
            &self.residual_elems,
            &next.residual_elems,
        )?;
        Ok(writes)
    }

    /// Set entries to remove and to add to go from `self` to `next`.
    pub fn set_changes<'a>(&'a self, next: &'a Image) -> (Vec<SetEntry>, Vec<SetEntry>) {
        (
            self.sets.difference(&next.sets).copied().collect(),
            next.sets.difference(&self.sets).copied().collect(),
        )
    }

    /// Keeps the image in step with a set element added or removed at run time.
    pub fn set_entry(&mut self, entry: SetEntry, present: bool) {
        if present {
            self.sets.insert(entry);
        } else {
            self.sets.remove(&entry);
        }
    }
}

/// A block's address, which tells it from every other block alive.
fn address(block: &Block) -> usize {
    Arc::as_ptr(block) as usize
}

fn map<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, aya::maps::MapError> {
    ebpf.map_mut(name).ok_or(aya::maps::MapError::InvalidName {
        name: name.to_string(),
    })
}

/// Array entries of `next` that differ from `old` (entries not written are zeros).
fn write_array<T: Pod + PartialEq + Default>(
    ebpf: &mut Ebpf,
    name: &'static str,
    old: &[T],
    next: &[T],
) -> Result<u64, aya::maps::MapError> {
    let zero = T::default();
    let changed: Vec<(u32, T)> = next
        .iter()
        .enumerate()
        .filter(|(i, v)| old.get(*i).unwrap_or(&zero) != *v)
        .map(|(i, v)| (i as u32, *v))
        .collect();
    if changed.is_empty() {
        return Ok(0);
    }
    let mut array: Array<&mut MapData, T> = Array::try_from(map(ebpf, name)?)?;
    for &(i, v) in &changed {
        array.set(i, v, 0)?;
    }
    Ok(changed.len() as u64)
}

fn write_hash(
    ebpf: &mut Ebpf,
    name: &'static str,
    old: &HashMap<u32, u32>,
    next: &HashMap<u32, u32>,
) -> Result<u64, aya::maps::MapError> {
    if old == next {
        return Ok(0);
    }
    let mut hash: BpfHashMap<&mut MapData, u32, u32> = BpfHashMap::try_from(map(ebpf, name)?)?;
    let mut writes = 0;
    for k in old.keys().filter(|k| !next.contains_key(k)) {
        hash.remove(k)?;
        writes += 1;
    }
    for (k, v) in next.iter().filter(|(k, v)| old.get(k) != Some(v)) {
        hash.insert(k, v, 0)?;
        writes += 1;
    }
    Ok(writes)
}

fn write_lpm<K: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    old: &HashMap<Prefix, u32>,
    next: &HashMap<Prefix, u32>,
    key: impl Fn(u128) -> K,
) -> Result<u64, aya::maps::MapError> {
    if old == next {
        return Ok(0);
    }
    let mut trie: LpmTrie<&mut MapData, K, u32> = LpmTrie::try_from(map(ebpf, name)?)?;
    let mut writes = 0;
    for &(len, addr) in old.keys().filter(|k| !next.contains_key(k)) {
        trie.remove(&Key::new(u32::from(len), key(addr)))?;
        writes += 1;
    }
    for (&(len, addr), v) in next.iter().filter(|(k, v)| old.get(k) != Some(v)) {
        trie.insert(&Key::new(u32::from(len), key(addr)), v, 0)?;
        writes += 1;
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as StdMap;

    use proptest::prelude::*;

    use super::*;
    use crate::ir::{Action, Chain, L3Scope, Match, PortRange, Program, Rule, Test, Verdict};
    use crate::maps::{compile_program_after, Dim};

    /// Checks that `a` (within `cap_a`) and `b` give every key the same bits and hold
    /// the same rules, chains and checks: the same maps up to the numbering of blocks
    /// and vectors.
    fn assert_same_maps(a: &Image, cap_a: &Capacity, b: &Image, cap_b: &Capacity, dims: u32) {
        assert_eq!(a.live.nblocks, b.live.nblocks);
        let nb = a.live.nblocks as usize;
        let bits = |img: &Image, cap: &Capacity, id: u32| -> Vec<u64> {
            (0..nb)
                .flat_map(|blk| {
                    let slot = img.rows[id as usize * cap.stride as usize + blk] as usize;
                    match img.blocks.get(slot).and_then(Option::as_ref) {
                        Some(block) => block.to_vec(),
                        None => vec![0; BLOCK_WORDS],
                    }
                })
                .collect()
        };
        let mut checked: StdMap<(u32, u32), ()> = StdMap::new();
        let mut same = |x: u32, y: u32, what: &str| {
            if checked.insert((x, y), ()).is_none() {
                assert_eq!(bits(a, cap_a, x), bits(b, cap_b, y), "{what}");
            }
        };
        for d in Dim::ALL {
            if dims & d.bit() != 0 {
                let i = d as usize;
                same(a.live.miss[i], b.live.miss[i], "miss");
                same(a.live.absent[i], b.live.absent[i], "absent");
            }
        }
        for i in 0..5 {
            assert_eq!(a.arrays[i].len(), b.arrays[i].len());
            for (&x, &y) in a.arrays[i].iter().zip(&b.arrays[i]) {
                same(x, y, "array entry");
            }
            let mut keys: Vec<&u32> = a.hashes[i].keys().collect();
            keys.sort();
            let mut other: Vec<&u32> = b.hashes[i].keys().collect();
            other.sort();
            assert_eq!(keys, other, "hash keys");
            for k in keys {
                same(a.hashes[i][k], b.hashes[i][k], "hash entry");
            }
        }
        for i in 0..4 {
            let mut keys: Vec<&Prefix> = a.lpm[i].keys().collect();
            keys.sort();
            let mut other: Vec<&Prefix> = b.lpm[i].keys().collect();
            other.sort();
            assert_eq!(keys, other, "prefixes");
            for k in keys {
                same(a.lpm[i][k], b.lpm[i][k], "prefix entry");
            }
        }
        let strip = |l: BpfLive| BpfLive {
            miss: Default::default(),
            absent: Default::default(),
            ..l
        };
        assert_eq!(strip(a.live), strip(b.live));
        assert_eq!(a.rules, b.rules);
        assert_eq!(a.chains, b.chains);
        assert_eq!(a.rule_ext, b.rule_ext);
        assert_eq!(a.sets, b.sets);
        // Every block is found at its slot by its address, and nothing else is.
        let held = a.blocks.iter().flatten().count();
        assert_eq!(a.slot_of.len(), held);
        for (slot, block) in a.blocks.iter().enumerate() {
            if let Some(block) = block {
                assert_eq!(a.slot_of.get(&address(block)), Some(&(slot as u32)));
            }
        }
    }

    fn rule(kind: u8, v: u16) -> Rule {
        let net = ipnet::Ipv4Net::new([10, (v >> 8) as u8, v as u8, 0].into(), 24).unwrap();
        let matches = match kind % 4 {
            0 => vec![
                Match::is(Test::IpSaddr(vec![net])),
                Match::is(Test::Dport(vec![PortRange::single(1000 + v)])),
            ],
            1 => vec![Match::is(Test::Dport(vec![PortRange::new(v, v + 10)]))],
            2 => vec![Match::not(Test::Iif(vec![u32::from(v % 5)]))],
            _ => vec![],
        };
        Rule::new(
            matches,
            if v % 2 == 0 {
                Action::Drop
            } else {
                Action::Accept
            },
        )
    }

    fn program(rules: &[Rule]) -> Program {
        Program::single(Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: rules.to_vec(),
        })
    }

    /// Commits `ops` (Some: append a rule; None: delete the last), each compiled after
    /// the previous one as the worker does, and rewrites two images in turn (the spare
    /// a commit takes holds the ruleset of two commits before): each must hold what a
    /// fresh load of that commit's ruleset holds. Returns the incremental compiles.
    fn check(mut rules: Vec<Rule>, ops: &[Option<(u8, u16)>]) -> usize {
        let mut prog = program(&rules);
        let (mut comp, _) = compile_program_after(&prog, None).unwrap();
        let cap = Capacity::for_program(&comp);
        let first = Image::default()
            .successor(&comp, &comp.rule_ext, &cap)
            .unwrap();
        let mut spares = [(first.clone(), cap), (first, cap)];
        let mut incremental = 0;
        for (step, op) in ops.iter().enumerate() {
            match op {
                Some((kind, v)) => rules.push(rule(*kind, *v)),
                None => {
                    rules.pop();
                }
            }
            let next = program(&rules);
            let (c, inc) = compile_program_after(&next, Some((&prog, &comp))).unwrap();
            incremental += usize::from(inc);
            let fresh_cap = Capacity::for_program(&c);
            let fresh = Image::default()
                .successor(&c, &c.rule_ext, &fresh_cap)
                .unwrap();
            let (img, cap) = &mut spares[step % 2];
            match img.successor(&c, &c.rule_ext, cap) {
                Ok(patched) => *img = patched,
                // A fresh program, as the worker loads when a spare has no room.
                Err(NoRoom(_)) => (*img, *cap) = (fresh.clone(), fresh_cap),
            }
            assert_same_maps(img, cap, &fresh, &fresh_cap, c.config.dims);
            (prog, comp) = (next, c);
        }
        incremental
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn a_spare_two_commits_back_patched_equals_a_fresh_load(
            rules in prop::collection::vec((0u8..4, 0u16..40), 0..40),
            ops in prop::collection::vec(prop::option::weighted(0.6, (0u8..4, 0u16..60)), 1..12),
        ) {
            let rules = rules.into_iter().map(|(k, v)| rule(k, v)).collect();
            check(rules, &ops);
        }
    }

    /// The same past the first block, with the pointer-shared blocks of incremental
    /// compiles (checked to be taken).
    #[test]
    fn spares_of_a_two_block_ruleset_equal_fresh_loads() {
        let rules: Vec<Rule> = (0..4200u16).map(|i| rule((i % 4) as u8, i % 300)).collect();
        let ops = [
            Some((0, 500)),
            None,
            Some((3, 0)),
            Some((1, 7)),
            None,
            None,
            Some((2, 3)),
            Some((0, 500)),
            None,
        ];
        assert_eq!(check(rules, &ops), ops.len());
    }
}
