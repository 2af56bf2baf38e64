//! Incremental LBVS: the dimensions of a program whose rules are those of an earlier
//! compile with a few rules appended at the end of the numbering, or its last few
//! deleted (`nft add rule` / `nft delete rule` on the last chain of a program), built
//! from the earlier dimensions instead of from scratch.
//!
//! Only bits of the changed rules (numbers `lo..hi`) differ, and how a class's bit of a
//! changed rule is set depends only on the class: an appended rule holds on a class
//! iff its predicates on the dimension all contain the class (none: it holds on every
//! class, the "field absent" one too); a deleted rule's bit is cleared. Classes a new
//! rule splits off (a new port boundary, a new prefix, a new exact value) start with
//! the bits of the class they split from: the old rules cannot tell them apart (a new
//! prefix is contained by the old prefixes enclosing it, so by its longest enclosing
//! old prefix's predicates; a new value is in no old predicate, so it was a miss).
//! A class's vector is then its old vector with the changed rules' bits replaced by
//! the class's "pattern" of them; (old vector, pattern) pairs and the blocks they
//! produce are memoized. The new table starts as the old one, with the same ids and
//! the same (shared) blocks, and the old hash tables (`TableIndex`): a vector whose
//! bits are already its pattern (most, for an append: the rule's bit is clear
//! everywhere) stays as it is, and only the others' changed blocks are hashed and
//! interned. The vectors no key holds any more, and the blocks only they held, are
//! then dropped, the last ones moving into their places. So the update costs a pass
//! over the keys and work per changed vector, not a re-interning of every block.
//!
//! The result holds the same keys and, key for key, the same bit-vectors as
//! [`super::build`] over the same rules, deduplicated the same way (the same vector
//! and block counts); only the numbering of vectors and blocks may differ, which the
//! image ignores (`image.rs` places them by content, and finds the blocks an update
//! kept by pointer). Anything else (another
//! dimension or mark mask in use, a change of the block count, more than
//! [`MAX_CHANGED`] rules) returns None: the caller builds from scratch.

use ipnet::{Ipv4Net, Ipv6Net};

use super::{
    AddrSet, BuildError, DimPreds, Dimensions, FastMap, LpmEntries, Predicates, Rule, VectorTable,
    KIND_V4, KIND_V6,
};
use crate::ir::Test;
use crate::maps::{Dim, BLOCK_RULES, BLOCK_WORDS, CTSTATE_VALUES, ICMP6_BASE, ICMP_ABSENT, NDIMS};

type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The most rules one update may add or delete (a class's pattern is a u64).
pub const MAX_CHANGED: usize = 64;

/// The dimensions of the earlier compile, as its `CompiledProgram` holds them.
pub struct Prev<'a> {
    pub nrules: usize,
    pub nblocks: usize,
    pub dims: u32,
    pub mark_mask: [u32; 2],
    pub ctmark_mask: u32,
    pub miss: [u32; NDIMS],
    pub wild: [u32; NDIMS],
    pub index: &'a super::TableIndex,
    pub blocks: &'a [super::Block],
    pub vector_blocks: &'a [u32],
    pub saddr: &'a LpmEntries,
    pub daddr: &'a LpmEntries,
    /// l4proto, sport, dport, icmp, ctstate.
    pub arrays: [&'a [u32]; 5],
    /// iif, oif, mark0, mark1, ctmark.
    pub hashes: [&'a [(u32, u32)]; 5],
}

/// The dimensions of `rules` (the program's rules in their numbering, `nblocks`
/// blocks per vector), given that the first `min(prev.nrules, rules.len())` of them
/// are the earlier compile's rules with the same matches (the caller checks that).
/// None: not a case this handles.
pub fn update(
    prev: &Prev<'_>,
    rules: &[&Rule],
    removed: &[&Rule],
    nblocks: usize,
) -> Result<Option<Dimensions>, BuildError> {
    let n = rules.len();
    let (lo, hi) = (n.min(prev.nrules), n.max(prev.nrules));
    if nblocks != prev.nblocks || hi - lo > MAX_CHANGED {
        return Ok(None);
    }
    let used_before = |dim: Dim| prev.dims & dim.bit() != 0;
    // The mark masks in their slots, as the earlier rules left them.
    let masks: Vec<u32> = [Dim::Mark0, Dim::Mark1]
        .iter()
        .zip(prev.mark_mask)
        .filter(|(d, _)| used_before(**d))
        .map(|(_, m)| m)
        .collect();
    let ctmask = used_before(Dim::CtMark).then_some(prev.ctmark_mask);
    // The appended rules' predicates (none for a delete). An error, or a new
    // dimension or mask: the full build decides (and gives the error).
    let Ok(preds) = Predicates::collect_from(rules, lo.min(n), &masks, ctmask) else {
        return Ok(None);
    };
    let (dims, mark_masks, ctmark_mask) = if n >= prev.nrules {
        (
            prev.dims | preds.used(),
            preds.mark_masks,
            if preds.ctmark.is_used() {
                preds.ctmark_mask
            } else {
                prev.ctmark_mask
            },
        )
    } else {
        scan(rules)
    };
    if dims != prev.dims || mark_masks != prev.mark_mask || ctmark_mask != prev.ctmark_mask {
        return Ok(None);
    }
    // Prefixes only deleted rules listed (per address dimension): no longer keys.
    let mut gone: [(FastSet<Ipv4Net>, FastSet<Ipv6Net>); 2] = Default::default();
    /// An address test's dimension (0 saddr, 1 daddr) and its IPv4 or IPv6 prefixes.
    type Nets<'a> = Result<&'a Vec<Ipv4Net>, &'a Vec<Ipv6Net>>;
    fn addr(test: &Test) -> Option<(usize, Nets<'_>)> {
        match test {
            Test::IpSaddr(nets) => Some((0, Ok(nets))),
            Test::IpDaddr(nets) => Some((1, Ok(nets))),
            Test::Ip6Saddr(nets) => Some((0, Err(nets))),
            Test::Ip6Daddr(nets) => Some((1, Err(nets))),
            _ => None,
        }
    }
    for r in removed {
        for (dim, nets) in r.matches.iter().filter_map(|m| addr(&m.test)) {
            match nets {
                Ok(nets) => gone[dim].0.extend(nets.iter().map(Ipv4Net::trunc)),
                Err(nets) => gone[dim].1.extend(nets.iter().map(Ipv6Net::trunc)),
            }
        }
    }
    if gone.iter().any(|(g4, g6)| !g4.is_empty() || !g6.is_empty()) {
        for r in rules {
            for (dim, nets) in r.matches.iter().filter_map(|m| addr(&m.test)) {
                match nets {
                    Ok(nets) => nets.iter().for_each(|n| {
                        gone[dim].0.remove(&n.trunc());
                    }),
                    Err(nets) => nets.iter().for_each(|n| {
                        gone[dim].1.remove(&n.trunc());
                    }),
                }
            }
        }
    }
    let changed = Changed {
        lo,
        hi,
        appended: n > prev.nrules,
    };
    let mut remap = Remap {
        prev,
        lo,
        hi,
        table: VectorTable::resume(
            prev.blocks.to_vec(),
            prev.vector_blocks.to_vec(),
            nblocks,
            prev.index,
        ),
        vectors: FastMap::default(),
        blocks: FastMap::default(),
        words: Vec::with_capacity(BLOCK_WORDS),
        appended: n > prev.nrules,
        old_patterns: vec![None; prev.vector_blocks.len() / nblocks],
    };
    let mut d = Dimensions {
        dims,
        mark_mask: mark_masks,
        ctmark_mask,
        ..Dimensions::default()
    };
    let used = |dim: Dim| dims & dim.bit() != 0;

    for (dim, p, old, out, (gone4, gone6)) in [
        (Dim::Saddr, &preds.saddr, prev.saddr, &mut d.saddr, &gone[0]),
        (Dim::Daddr, &preds.daddr, prev.daddr, &mut d.daddr, &gone[1]),
    ] {
        if used(dim) {
            let wild = remap.map(prev.wild[dim as usize], changed.pattern(p, None, |_| false));
            d.wild[dim as usize] = wild;
            d.absent[dim as usize] = wild;
            *out = update_lpm(p, old, &changed, &mut remap, (gone4, gone6));
        }
    }

    let arrays = [
        (Dim::L4Proto, &preds.l4proto, 256u32, &mut d.l4proto),
        (Dim::Sport, &preds.sport, 65536, &mut d.sport),
        (Dim::Dport, &preds.dport, 65536, &mut d.dport),
        (Dim::Icmp, &preds.icmp, ICMP_ABSENT as u32, &mut d.icmp),
        (
            Dim::CtState,
            &preds.ctstate,
            CTSTATE_VALUES as u32,
            &mut d.ctstate,
        ),
    ];
    for (i, (dim, p, domain, out)) in arrays.into_iter().enumerate() {
        if !used(dim) {
            continue;
        }
        d.wild[dim as usize] =
            remap.map(prev.wild[dim as usize], changed.pattern(p, None, |_| false));
        let kind_of = |index: u32| {
            if index == domain {
                None
            } else if dim == Dim::Icmp && index >= ICMP6_BASE as u32 {
                Some(KIND_V6)
            } else {
                Some(KIND_V4)
            }
        };
        // The pattern changes only at the changed rules' range boundaries and where
        // the kind does: one pattern per segment, one lookup per run of indexes with
        // the same old vector.
        let old = prev.arrays[i];
        let len = old.len() as u32;
        let mut cuts: Vec<u32> = vec![0, len];
        if domain < len {
            cuts.push(domain);
        }
        if dim == Dim::Icmp {
            cuts.push(ICMP6_BASE as u32);
        }
        if changed.appended {
            for pred in &p.preds {
                for &(a, b) in &pred.values {
                    cuts.extend([a, b.saturating_add(1)]);
                }
            }
        }
        cuts.retain(|&c| c <= len);
        cuts.sort_unstable();
        cuts.dedup();
        let mut new = Vec::with_capacity(old.len());
        for seg in cuts.windows(2) {
            let first = seg[0];
            let pattern = changed.pattern(p, kind_of(first), |ranges| {
                ranges.iter().any(|&(a, b)| a <= first && first <= b)
            });
            let olds = &old[seg[0] as usize..seg[1] as usize];
            if changed.appended && pattern == 0 {
                // The appended rules' bits are clear in every old vector already.
                new.extend_from_slice(olds);
                continue;
            }
            let mut last: Option<(u32, u32)> = None;
            for &o in olds {
                let id = match last {
                    Some((lo, id)) if lo == o => id,
                    _ => remap.map(o, pattern),
                };
                last = Some((o, id));
                new.push(id);
            }
        }
        *out = new;
    }

    let [mark0, mark1] = &mut d.mark;
    let hashes = [
        (Dim::Iif, &preds.iif, &mut d.iif),
        (Dim::Oif, &preds.oif, &mut d.oif),
        (Dim::Mark0, &preds.mark[0], mark0),
        (Dim::Mark1, &preds.mark[1], mark1),
        (Dim::CtMark, &preds.ctmark, &mut d.ctmark),
    ];
    for (i, (dim, p, out)) in hashes.into_iter().enumerate() {
        if !used(dim) {
            continue;
        }
        let wild = remap.map(prev.wild[dim as usize], changed.pattern(p, None, |_| false));
        d.wild[dim as usize] = wild;
        if dim == Dim::CtMark {
            d.absent[dim as usize] = wild;
        }
        let miss = remap.map(
            prev.miss[dim as usize],
            changed.pattern(p, Some(KIND_V4), |_| false),
        );
        d.miss[dim as usize] = miss;
        let old = prev.hashes[i];
        let old_ids: FastMap<u32, u32> = old.iter().copied().collect();
        // The keys: the old ones (the others were misses, and stay so unless a new
        // rule lists them) and the new rules' values.
        let mut values: Vec<u32> = old.iter().map(|&(v, _)| v).collect();
        if changed.appended {
            for rule in lo..hi {
                for &q in &p.per_rule[rule - lo] {
                    values.extend_from_slice(&p.preds[q].values);
                }
            }
            values.sort_unstable();
            values.dedup();
        }
        *out = values
            .into_iter()
            .filter_map(|value| {
                let old = old_ids
                    .get(&value)
                    .copied()
                    .unwrap_or(prev.miss[dim as usize]);
                let pattern = changed.pattern(p, Some(KIND_V4), |vs| vs.contains(&value));
                let id = remap.map(old, pattern);
                (id != miss).then_some((value, id))
            })
            .collect();
    }
    // The vectors no key holds any more go, as a build from scratch would not have
    // them, and with them the blocks only they held.
    let mut live = vec![false; remap.table.vector_blocks.len() / nblocks];
    for_each_id(&mut d, |id| live[*id as usize] = true);
    if let Some(ids) = remap.table.collect(&live) {
        for_each_id(&mut d, |id| *id = ids[*id as usize]);
    }
    (d.blocks, d.vector_blocks, d.index) = remap.table.into_parts();
    Ok(Some(d))
}

/// Calls `f` on every vector id the used dimensions of `d` hold.
fn for_each_id(d: &mut Dimensions, mut f: impl FnMut(&mut u32)) {
    let used = |dim: Dim| d.dims & dim.bit() != 0;
    let (saddr, daddr) = (used(Dim::Saddr), used(Dim::Daddr));
    for dim in Dim::ALL {
        let i = dim as usize;
        if !used(dim) {
            continue;
        }
        f(&mut d.wild[i]);
        if matches!(dim, Dim::Saddr | Dim::Daddr | Dim::CtMark) {
            f(&mut d.absent[i]);
        }
        if matches!(
            dim,
            Dim::Iif | Dim::Oif | Dim::Mark0 | Dim::Mark1 | Dim::CtMark
        ) {
            f(&mut d.miss[i]);
        }
    }
    for (on, e) in [(saddr, &mut d.saddr), (daddr, &mut d.daddr)] {
        if on {
            e.v4.iter_mut().for_each(|(_, id)| f(id));
            e.v6.iter_mut().for_each(|(_, id)| f(id));
        }
    }
    // Unused dimensions have no entries.
    for a in [
        &mut d.l4proto,
        &mut d.sport,
        &mut d.dport,
        &mut d.icmp,
        &mut d.ctstate,
    ] {
        let mut last: Option<(u32, u32)> = None;
        for id in a.iter_mut() {
            match last {
                Some((o, n)) if o == *id => *id = n,
                _ => {
                    let o = *id;
                    f(id);
                    last = Some((o, *id));
                }
            }
        }
    }
    let [mark0, mark1] = &mut d.mark;
    for h in [&mut d.iif, &mut d.oif, mark0, mark1, &mut d.ctmark] {
        h.iter_mut().for_each(|(_, id)| f(id));
    }
}

/// The changed rule numbers.
struct Changed {
    lo: usize,
    hi: usize,
    /// Appended (their bits are computed) or deleted (cleared).
    appended: bool,
}

impl Changed {
    /// Bit `r - lo` for each changed rule `r` that holds on a class of `kind` (None:
    /// the field is absent) that the predicates' values contain iff `contains`.
    fn pattern<V>(
        &self,
        dim: &DimPreds<V>,
        kind: Option<u8>,
        contains: impl Fn(&V) -> bool,
    ) -> u64 {
        if !self.appended {
            return 0;
        }
        let mut pattern = 0;
        for rule in self.lo..self.hi {
            let holds = dim.per_rule[rule - self.lo].iter().all(|&q| {
                let pred = &dim.preds[q];
                kind == Some(pred.kind) && (contains(&pred.values) != pred.negated)
            });
            if holds {
                pattern |= 1 << (rule - self.lo);
            }
        }
        pattern
    }
}

/// The new keys of an address dimension: every prefix the rules list, and /0 per
/// family (sorted, as the full build gives them).
fn update_lpm(
    p: &DimPreds<AddrSet>,
    old: &LpmEntries,
    changed: &Changed,
    remap: &mut Remap<'_>,
    (gone4, gone6): (&FastSet<Ipv4Net>, &FastSet<Ipv6Net>),
) -> LpmEntries {
    let mut nets4: Vec<Ipv4Net> = old.v4.iter().map(|e| e.0).collect();
    let mut nets6: Vec<Ipv6Net> = old.v6.iter().map(|e| e.0).collect();
    let (n4, n6) = (nets4.len(), nets6.len());
    for pred in &p.preds {
        match &pred.values {
            AddrSet::V4(nets) => nets4.extend_from_slice(nets),
            AddrSet::V6(nets) => nets6.extend_from_slice(nets),
        }
    }
    if nets4.len() > n4 {
        nets4.sort_unstable();
        nets4.dedup();
    }
    if nets6.len() > n6 {
        nets6.sort_unstable();
        nets6.dedup();
    }
    let zero4 = Ipv4Net::default();
    let zero6 = Ipv6Net::default();
    nets4.retain(|n| *n == zero4 || !gone4.contains(n));
    nets6.retain(|n| *n == zero6 || !gone6.contains(n));
    // The old entries are sorted: a new prefix's enclosing ones are found by search.
    let old4 = |net: &Ipv4Net| {
        old.v4
            .binary_search_by(|e| e.0.cmp(net))
            .ok()
            .map(|i| old.v4[i].1)
    };
    let old6 = |net: &Ipv6Net| {
        old.v6
            .binary_search_by(|e| e.0.cmp(net))
            .ok()
            .map(|i| old.v6[i].1)
    };
    let mut i4 = 0;
    let v4 = nets4
        .into_iter()
        .map(|net| {
            // Most keys are old ones, in order: checked at the cursor first.
            let old_id = match old.v4.get(i4) {
                Some(&(k, id)) if k == net => {
                    i4 += 1;
                    id
                }
                _ => {
                    // A new prefix: its longest enclosing old prefix's class (/0 at least).
                    while old.v4.get(i4).is_some_and(|e| e.0 < net) {
                        i4 += 1;
                    }
                    std::iter::successors(Some(net), |n| n.supernet())
                        .find_map(|n| old4(&n))
                        .expect("the old entries hold 0.0.0.0/0")
                }
            };
            let pattern = changed.pattern(p, Some(KIND_V4), |v| match v {
                AddrSet::V4(nets) => nets.iter().any(|n| n.contains(&net)),
                AddrSet::V6(_) => false,
            });
            (net, remap.map(old_id, pattern))
        })
        .collect();
    let mut i6 = 0;
    let v6 = nets6
        .into_iter()
        .map(|net| {
            let old_id = match old.v6.get(i6) {
                Some(&(k, id)) if k == net => {
                    i6 += 1;
                    id
                }
                _ => {
                    while old.v6.get(i6).is_some_and(|e| e.0 < net) {
                        i6 += 1;
                    }
                    std::iter::successors(Some(net), |n| n.supernet())
                        .find_map(|n| old6(&n))
                        .expect("the old entries hold ::/0")
                }
            };
            let pattern = changed.pattern(p, Some(KIND_V6), |v| match v {
                AddrSet::V6(nets) => nets.iter().any(|n| n.contains(&net)),
                AddrSet::V4(_) => false,
            });
            (net, remap.map(old_id, pattern))
        })
        .collect();
    LpmEntries { v4, v6 }
}

/// The dimensions, mark masks (in their slots) and ct mark mask `rules` use, as
/// [`Predicates::collect`] finds them (without building the predicates).
fn scan(rules: &[&Rule]) -> (u32, [u32; 2], u32) {
    let mut dims = 0;
    let mut masks: Vec<u32> = Vec::new();
    let mut ctmask = None;
    for r in rules {
        for m in &r.matches {
            let dim = match &m.test {
                Test::IpSaddr(_) | Test::Ip6Saddr(_) => Dim::Saddr,
                Test::IpDaddr(_) | Test::Ip6Daddr(_) => Dim::Daddr,
                Test::L4Proto(_) => Dim::L4Proto,
                Test::Sport(_) => Dim::Sport,
                Test::Dport(_) => Dim::Dport,
                Test::IcmpType(_) | Test::Icmpv6Type(_) => Dim::Icmp,
                Test::Iif(_) => Dim::Iif,
                Test::Oif(_) => Dim::Oif,
                Test::Mark { mask, .. } => match masks.iter().position(|m| m == mask) {
                    Some(0) => Dim::Mark0,
                    Some(_) => Dim::Mark1,
                    None => {
                        masks.push(*mask);
                        if masks.len() == 1 {
                            Dim::Mark0
                        } else {
                            Dim::Mark1
                        }
                    }
                },
                Test::CtState(_) => Dim::CtState,
                Test::CtMark { mask, .. } => {
                    ctmask.get_or_insert(*mask);
                    Dim::CtMark
                }
                _ => continue,
            };
            dims |= dim.bit();
        }
    }
    let mut slots = [0; 2];
    for (slot, mask) in slots.iter_mut().zip(&masks) {
        *slot = *mask;
    }
    (dims, slots, ctmask.unwrap_or(0))
}

/// Old vector id and pattern -> the new table's vector id. The new table starts as
/// the old one (same ids): a vector whose changed rules' bits are already the
/// pattern stays as it is, and only the others are interned anew.
struct Remap<'a> {
    prev: &'a Prev<'a>,
    lo: usize,
    hi: usize,
    table: VectorTable,
    vectors: FastMap<(u32, u64), u32>,
    /// (old block id, block index, pattern) -> new block id.
    blocks: FastMap<(u32, u32, u64), u32>,
    words: Vec<u64>,
    /// Rules appended: their bits are clear in every old vector.
    appended: bool,
    /// Per old vector, [`Self::old_pattern`] once known.
    old_patterns: Vec<Option<u64>>,
}

impl Remap<'_> {
    /// The changed rules' bits in old vector `old`, as a pattern.
    fn old_pattern(&mut self, old: u32) -> u64 {
        if self.appended {
            return 0;
        }
        if let Some(p) = self.old_patterns[old as usize] {
            return p;
        }
        let nblocks = self.prev.nblocks;
        let mut pattern = 0;
        let mut rule = self.lo;
        while rule < self.hi {
            let b = rule / BLOCK_RULES;
            let block = self.prev.vector_blocks[old as usize * nblocks + b] as usize;
            let end = self.hi.min((b + 1) * BLOCK_RULES);
            if block != 0 {
                let words = &self.prev.blocks[block];
                for r in rule..end {
                    let bit = r - b * BLOCK_RULES;
                    if words[bit / 64] >> (bit % 64) & 1 != 0 {
                        pattern |= 1 << (r - self.lo);
                    }
                }
            }
            rule = end;
        }
        self.old_patterns[old as usize] = Some(pattern);
        pattern
    }

    fn map(&mut self, old: u32, pattern: u64) -> u32 {
        if self.old_pattern(old) == pattern {
            return old;
        }
        if let Some(&id) = self.vectors.get(&(old, pattern)) {
            return id;
        }
        let nblocks = self.prev.nblocks;
        let mut ids = std::mem::take(&mut self.table.scratch);
        ids.clear();
        for b in 0..nblocks {
            let old_block = self.prev.vector_blocks[old as usize * nblocks + b];
            let (first, end) = (b * BLOCK_RULES, (b + 1) * BLOCK_RULES);
            if !(self.lo < end && first < self.hi) {
                // Untouched: the same block, under the same id.
                ids.push(old_block);
                continue;
            }
            let key = (old_block, b as u32, pattern);
            let id = match self.blocks.get(&key) {
                Some(&id) => id,
                None => {
                    self.words.clear();
                    self.words
                        .extend_from_slice(&self.prev.blocks[old_block as usize][..]);
                    for rule in self.lo.max(first)..self.hi.min(end) {
                        let bit = rule - first;
                        let mask = 1u64 << (bit % 64);
                        if pattern >> (rule - self.lo) & 1 != 0 {
                            self.words[bit / 64] |= mask;
                        } else {
                            self.words[bit / 64] &= !mask;
                        }
                    }
                    let words = std::mem::take(&mut self.words);
                    let id = self.table.intern_block(&words);
                    self.words = words;
                    self.blocks.insert(key, id);
                    id
                }
            };
            ids.push(id);
        }
        let id = self.table.intern_ids(ids);
        self.vectors.insert((old, pattern), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use crate::ir::{Action, Chain, L3Scope, Match, PortRange, Program, Rule, Test, Verdict};
    use crate::maps::{compile_program, compile_program_after, CompiledProgram, Dim};

    /// Each vector id's bits, in full.
    fn contents(c: &CompiledProgram) -> Vec<Vec<u64>> {
        let nb = c.live.nblocks as usize;
        c.vector_blocks
            .chunks_exact(nb)
            .map(|ids| {
                ids.iter()
                    .flat_map(|&b| c.blocks[b as usize].iter().copied())
                    .collect()
            })
            .collect()
    }

    /// `a` and `b` hold the same maps, up to the numbering of vectors and blocks.
    fn assert_same(a: &CompiledProgram, b: &CompiledProgram) {
        let (ca, cb) = (contents(a), contents(b));
        let same = |x: u32, y: u32, what: &str| {
            assert_eq!(ca[x as usize], cb[y as usize], "vector of {what}");
        };
        // The same distinct vectors and blocks (the same deduplication).
        let sorted = |mut v: Vec<Vec<u64>>| {
            v.sort();
            v
        };
        assert_eq!(sorted(ca.clone()), sorted(cb.clone()), "vector sets");
        let blocks = |c: &CompiledProgram| {
            let mut v: Vec<Vec<u64>> = c.blocks.iter().map(|b| b.to_vec()).collect();
            v.sort();
            v
        };
        assert_eq!(blocks(a), blocks(b), "block sets");
        // Only exact-value dimensions have a miss vector, only addresses and the ct
        // mark an absent one: the others' entries are 0 in both.
        let hash = [Dim::Iif, Dim::Oif, Dim::Mark0, Dim::Mark1, Dim::CtMark];
        let absent = [Dim::Saddr, Dim::Daddr, Dim::CtMark];
        for d in Dim::ALL {
            let i = d as usize;
            if a.uses(d) && hash.contains(&d) {
                same(a.live.miss[i], b.live.miss[i], "miss");
            } else {
                assert_eq!(a.live.miss[i], b.live.miss[i], "miss of {d:?}");
            }
            if a.uses(d) && absent.contains(&d) {
                same(a.live.absent[i], b.live.absent[i], "absent");
            } else {
                assert_eq!(a.live.absent[i], b.live.absent[i], "absent of {d:?}");
            }
            if a.uses(d) {
                same(a.wild[i], b.wild[i], "wild");
            } else {
                assert_eq!(a.wild[i], b.wild[i], "wild of {d:?}");
            }
        }
        for (x, y) in [
            (&a.l4proto, &b.l4proto),
            (&a.sport, &b.sport),
            (&a.dport, &b.dport),
            (&a.icmp, &b.icmp),
            (&a.ctstate, &b.ctstate),
        ] {
            assert_eq!(x.len(), y.len());
            let mut checked = HashMap::new();
            for (&i, &j) in x.iter().zip(y) {
                if checked.insert(i, j) != Some(j) {
                    same(i, j, "array entry");
                }
            }
        }
        for (x, y) in [
            (&a.iif, &b.iif),
            (&a.oif, &b.oif),
            (&a.mark[0], &b.mark[0]),
            (&a.mark[1], &b.mark[1]),
            (&a.ctmark, &b.ctmark),
        ] {
            assert_eq!(
                x.iter().map(|e| e.0).collect::<Vec<_>>(),
                y.iter().map(|e| e.0).collect::<Vec<_>>(),
                "hash keys"
            );
            x.iter()
                .zip(y)
                .for_each(|(i, j)| same(i.1, j.1, "hash entry"));
        }
        for (x, y) in [(&a.saddr, &b.saddr), (&a.daddr, &b.daddr)] {
            assert_eq!(
                x.v4.iter().map(|e| e.0).collect::<Vec<_>>(),
                y.v4.iter().map(|e| e.0).collect::<Vec<_>>()
            );
            assert_eq!(
                x.v6.iter().map(|e| e.0).collect::<Vec<_>>(),
                y.v6.iter().map(|e| e.0).collect::<Vec<_>>()
            );
            x.v4.iter()
                .zip(&y.v4)
                .for_each(|(i, j)| same(i.1, j.1, "v4 prefix"));
            x.v6.iter()
                .zip(&y.v6)
                .for_each(|(i, j)| same(i.1, j.1, "v6 prefix"));
        }
        // Everything else is equal as it is.
        let strip = |c: &CompiledProgram| {
            let mut c = c.clone();
            c.blocks.clear();
            c.vector_blocks.clear();
            c.live.miss = Default::default();
            c.live.absent = Default::default();
            c.wild = Default::default();
            for v in [
                &mut c.l4proto,
                &mut c.sport,
                &mut c.dport,
                &mut c.icmp,
                &mut c.ctstate,
            ] {
                v.clear();
            }
            for v in [&mut c.iif, &mut c.oif, &mut c.ctmark] {
                v.clear();
            }
            c.mark = Default::default();
            c.saddr = Default::default();
            c.daddr = Default::default();
            c
        };
        assert_eq!(strip(a), strip(b));
    }

    fn program(rules: &[Rule]) -> Program {
        Program::single(Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: rules.to_vec(),
        })
    }

    fn test_strategy() -> impl Strategy<Value = Test> {
        let net4 =
            (0u32..4, prop::sample::select(vec![0u8, 8, 16, 24, 30, 32])).prop_map(|(a, len)| {
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 | a << 8 | a), len)
                    .unwrap()
                    .trunc()
            });
        let net6 = (0u16..4, prop::sample::select(vec![0u8, 32, 64, 128])).prop_map(|(a, len)| {
            ipnet::Ipv6Net::new(
                std::net::Ipv6Addr::new(0x2001, 0xdb8, a, 0, 0, 0, 0, a),
                len,
            )
            .unwrap()
            .trunc()
        });
        let port = prop::sample::select(vec![0u16, 22, 80, 443, 1024, 65535]);
        let range = (port.clone(), port).prop_map(|(a, b)| PortRange::new(a.min(b), a.max(b)));
        prop_oneof![
            prop::collection::vec(net4.clone(), 1..3).prop_map(Test::IpSaddr),
            prop::collection::vec(net4, 1..3).prop_map(Test::IpDaddr),
            prop::collection::vec(net6.clone(), 1..3).prop_map(Test::Ip6Saddr),
            prop::collection::vec(net6, 1..3).prop_map(Test::Ip6Daddr),
            prop::collection::vec(prop::sample::select(vec![1u8, 6, 17]), 1..3)
                .prop_map(Test::L4Proto),
            prop::collection::vec(range.clone(), 1..3).prop_map(Test::Sport),
            prop::collection::vec(range, 1..3).prop_map(Test::Dport),
            prop::collection::vec(prop::sample::select(vec![0u8, 3, 8]), 1..3)
                .prop_map(Test::IcmpType),
            prop::collection::vec(prop::sample::select(vec![1u8, 128, 135]), 1..3)
                .prop_map(Test::Icmpv6Type),
            prop::collection::vec(1u32..4, 1..3).prop_map(Test::Iif),
            prop::collection::vec(1u32..4, 1..3).prop_map(Test::Oif),
            (
                prop::sample::select(vec![0xffu32, u32::MAX]),
                prop::collection::vec(prop::sample::select(vec![0u32, 1, 0x100]), 1..3)
            )
                .prop_map(|(mask, values)| Test::Mark { mask, values }),
            (1u32..16).prop_map(Test::CtState),
            prop::collection::vec(0u32..3, 1..3)
                .prop_map(|values| Test::CtMark { mask: 0xff, values }),
        ]
    }

    fn rule_strategy() -> impl Strategy<Value = Rule> {
        (
            prop::collection::vec((test_strategy(), any::<bool>()), 0..3),
            any::<bool>(),
        )
            .prop_map(|(tests, drop)| {
                Rule::new(
                    tests
                        .into_iter()
                        .map(|(test, negated)| Match { test, negated })
                        .collect(),
                    if drop { Action::Drop } else { Action::Accept },
                )
            })
    }

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<Rule>),
        Delete(usize),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec(rule_strategy(), 1..4).prop_map(Op::Append),
            (1usize..4).prop_map(Op::Delete),
        ]
    }

    /// Runs `ops` from `rules`, each step compiled after the previous step's result,
    /// and checks it against a compile from scratch; returns how many steps were
    /// incremental.
    fn check(mut rules: Vec<Rule>, ops: Vec<Op>) -> usize {
        let mut prev_program = program(&rules);
        let Ok(mut prev) = compile_program(&prev_program) else {
            return 0;
        };
        let mut incremental = 0;
        for op in ops {
            match op {
                Op::Append(more) => rules.extend(more),
                Op::Delete(k) => rules.truncate(rules.len().saturating_sub(k)),
            }
            let next_program = program(&rules);
            let full = compile_program(&next_program);
            let after = compile_program_after(&next_program, Some((&prev_program, &prev)));
            match (full, after) {
                (Ok(full), Ok((after, updated))) => {
                    assert_same(&after, &full);
                    assert!(after.lbvs_index.matches(
                        &after.blocks,
                        &after.vector_blocks,
                        after.live.nblocks as usize
                    ));
                    incremental += usize::from(updated);
                    prev = after;
                    prev_program = next_program;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string());
                    // Start again from the last ruleset that compiled.
                    rules = prev_program.base_chains[0].rules.clone();
                }
                (full, after) => panic!("full {full:?} vs after {after:?}"),
            }
        }
        incremental
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Small rulesets: one block.
        #[test]
        fn incremental_equals_full(
            rules in prop::collection::vec(rule_strategy(), 0..30),
            ops in prop::collection::vec(op_strategy(), 1..8),
        ) {
            check(rules, ops);
        }

        /// Rulesets past 4096 rules: changes in the second block, the first untouched.
        #[test]
        fn incremental_equals_full_two_blocks(
            rules in prop::collection::vec(rule_strategy(), 1..20),
            ops in prop::collection::vec(op_strategy(), 1..5),
        ) {
            let rules: Vec<Rule> = rules.iter().cycle().take(4200).cloned().collect();
            check(rules, ops);
        }
    }

    /// The update is taken for appends and deletes at the end (the property above
    /// would also pass if it never were).
    #[test]
    fn appends_and_deletes_are_incremental() {
        let rule = |port: u16, net: &str| {
            Rule::new(
                vec![
                    Match::is(Test::IpSaddr(vec![net.parse().unwrap()])),
                    Match::is(Test::Dport(vec![PortRange::single(port)])),
                ],
                Action::Drop,
            )
        };
        let rules: Vec<Rule> = (0..5000u16)
            .map(|i| rule(1000 + i % 300, &format!("10.{}.{}.0/24", i / 256, i % 256)))
            .collect();
        let appended = vec![rule(99, "10.200.0.0/16"), rule(443, "0.0.0.0/0")];
        let n = check(
            rules,
            vec![
                Op::Append(appended.clone()),
                Op::Delete(2),
                Op::Append(appended),
                Op::Delete(1),
            ],
        );
        assert_eq!(n, 4);
    }

    /// A rule whose residual checks changed (not its dimensions' predicates) keeps the
    /// update, and it equals a build from scratch.
    #[test]
    fn a_residual_change_before_the_end_keeps_the_update() {
        let rule = |port: u16, status: u32| {
            Rule::new(
                vec![
                    Match::is(Test::Dport(vec![PortRange::single(port)])),
                    Match::is(Test::CtStatus(status)),
                ],
                Action::Drop,
            )
        };
        let rules: Vec<Rule> = (0..100).map(|i| rule(i, 1)).collect();
        let before = program(&rules);
        let old = compile_program(&before).unwrap();
        let mut next = rules.clone();
        next[50] = rule(50, 2);
        next.push(rule(7, 4));
        let next = program(&next);
        let (after, updated) = compile_program_after(&next, Some((&before, &old))).unwrap();
        assert!(updated);
        let full = compile_program(&next).unwrap();
        assert_same(&after, &full);
        assert_ne!(
            old.rule_ext, after.rule_ext,
            "the residual change is compiled"
        );
    }

    /// A rule changed or deleted before the end is not an update: built from scratch.
    #[test]
    fn changes_before_the_end_build_from_scratch() {
        let rule = |port: u16| {
            Rule::new(
                vec![Match::is(Test::Dport(vec![PortRange::single(port)]))],
                Action::Drop,
            )
        };
        let rules: Vec<Rule> = (0..100).map(rule).collect();
        let before = program(&rules);
        let old = compile_program(&before).unwrap();
        let mut changed = rules.clone();
        changed[50] = rule(1000);
        let mut removed = rules.clone();
        removed.remove(10);
        let mut inserted = rules.clone();
        inserted.insert(0, rule(7));
        for next in [changed, removed, inserted] {
            let next = program(&next);
            let (after, updated) = compile_program_after(&next, Some((&before, &old))).unwrap();
            assert!(!updated);
            assert_eq!(after, compile_program(&next).unwrap());
        }
    }
}
