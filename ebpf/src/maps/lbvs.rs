//! The LBVS part of the map builder: the rules' stateless predicates sorted into
//! dimensions, and each dimension's classes turned into deduplicated bit-vectors (see
//! the [`super`] doc for the design).

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;

use hashbrown::HashTable;

use ipnet::{Ipv4Net, Ipv6Net};

use super::{
    Block, BuildError, Dim, LpmEntries, BLOCK_WORDS, CTSTATE_VALUES, ICMP6_BASE, ICMP_ABSENT, NDIMS,
};
use crate::ir::{PortRange, Rule, Test};

mod update;
pub(super) use update::{update, Prev};

/// Every dimension's maps, for the rules of one program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Dimensions {
    /// [`Dim::bit`]s of the dimensions some rule tests.
    pub dims: u32,
    pub miss: [u32; NDIMS],
    pub absent: [u32; NDIMS],
    pub mark_mask: [u32; 2],
    pub ctmark_mask: u32,
    /// Distinct 4096-rule blocks (block 0 is all zeros) and, per vector and block,
    /// the block's id: see [`super::CompiledProgram::blocks`].
    pub blocks: Vec<Block>,
    pub vector_blocks: Vec<u32>,
    /// The hash tables that found `blocks` and `vector_blocks` by content: kept so that
    /// an incremental update (`update.rs`) interns into them instead of hashing every
    /// block again.
    pub index: TableIndex,
    pub saddr: LpmEntries,
    pub daddr: LpmEntries,
    pub l4proto: Vec<u32>,
    pub sport: Vec<u32>,
    pub dport: Vec<u32>,
    pub icmp: Vec<u32>,
    pub iif: Vec<(u32, u32)>,
    pub oif: Vec<(u32, u32)>,
    pub mark: [Vec<(u32, u32)>; 2],
    pub ctstate: Vec<u32>,
    pub ctmark: Vec<(u32, u32)>,
    /// Per used dimension, the id of its "field absent" vector (the rules without a
    /// predicate on it): interned for every dimension, also where no key holds it, so
    /// an incremental update (`update.rs`) must keep it too.
    pub wild: [u32; NDIMS],
}

/// Builds the dimensions of `rules` (the program's rules in their numbering), with
/// vectors of `nblocks` 4096-rule blocks.
pub(super) fn build(rules: &[&Rule], nblocks: usize) -> Result<Dimensions, BuildError> {
    let preds = Predicates::collect(rules)?;
    let mut table = VectorTable::new(nblocks * BLOCK_WORDS);
    let mut d = Dimensions {
        mark_mask: preds.mark_masks,
        ctmark_mask: preds.ctmark_mask,
        ..Dimensions::default()
    };

    for (dim, p, out) in [
        (Dim::Saddr, &preds.saddr, &mut d.saddr),
        (Dim::Daddr, &preds.daddr, &mut d.daddr),
    ] {
        if p.is_used() {
            d.dims |= dim.bit();
            let (entries, absent) = build_lpm(p, &mut table);
            d.absent[dim as usize] = absent;
            d.wild[dim as usize] = absent;
            *out = entries;
        }
    }

    let one = |end: u32| {
        [Segment {
            kind: KIND_V4,
            start: 0,
            end,
        }]
    };
    let icmp_segments = [
        Segment {
            kind: KIND_V4,
            start: 0,
            end: ICMP6_BASE as u32,
        },
        Segment {
            kind: KIND_V6,
            start: ICMP6_BASE as u32,
            end: ICMP_ABSENT as u32,
        },
    ];
    for (dim, p, segments, out) in [
        (Dim::L4Proto, &preds.l4proto, &one(256)[..], &mut d.l4proto),
        (Dim::Sport, &preds.sport, &one(65536)[..], &mut d.sport),
        (Dim::Dport, &preds.dport, &one(65536)[..], &mut d.dport),
        (Dim::Icmp, &preds.icmp, &icmp_segments[..], &mut d.icmp),
        (
            Dim::CtState,
            &preds.ctstate,
            &one(CTSTATE_VALUES as u32)[..],
            &mut d.ctstate,
        ),
    ] {
        if p.is_used() {
            d.dims |= dim.bit();
            *out = build_array(p, segments, &mut table);
            d.wild[dim as usize] = *out.last().expect("the absent entry");
        }
    }
    // The ct state is always known: no "absent" entry.
    d.ctstate.truncate(CTSTATE_VALUES);

    let [mark0, mark1] = &mut d.mark;
    for (dim, p, out) in [
        (Dim::Iif, &preds.iif, &mut d.iif),
        (Dim::Oif, &preds.oif, &mut d.oif),
        (Dim::Mark0, &preds.mark[0], mark0),
        (Dim::Mark1, &preds.mark[1], mark1),
        (Dim::CtMark, &preds.ctmark, &mut d.ctmark),
    ] {
        if p.is_used() {
            d.dims |= dim.bit();
            let (entries, miss, absent) = build_hash(p, &mut table);
            d.miss[dim as usize] = miss;
            d.wild[dim as usize] = absent;
            // Only the ct mark can be absent (no connection).
            if dim == Dim::CtMark {
                d.absent[dim as usize] = absent;
            }
            *out = entries;
        }
    }
    (d.blocks, d.vector_blocks, d.index) = table.into_parts();
    Ok(d)
}

/// A compiled program's LBVS hash tables (see [`Dimensions::index`]): a cache of what
/// its `blocks` and `vector_blocks` hold, so equal whatever it holds.
#[derive(Clone, Default)]
pub struct TableIndex(Option<std::sync::Arc<Index>>);

impl PartialEq for TableIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TableIndex {}

impl TableIndex {
    /// Whether the index finds each of the blocks and vectors at its own id, and
    /// nothing else (what an incremental update relies on).
    #[cfg(test)]
    pub(crate) fn matches(&self, blocks: &[Block], vector_blocks: &[u32], nblocks: usize) -> bool {
        let Some(i) = &self.0 else { return true };
        let hasher = foldhash::fast::FixedState::default();
        let nvectors = vector_blocks.len() / nblocks;
        i.blocks == blocks.len()
            && i.vectors == nvectors
            && i.block_ids.len() == i.blocks
            && i.vector_ids.len() == nvectors
            && blocks.iter().enumerate().all(|(id, b)| {
                i.block_ids
                    .find(hasher.hash_one(&b[..]), |&x| x == id as u32)
                    .is_some()
            })
            && vector_blocks
                .chunks_exact(nblocks)
                .enumerate()
                .all(|(id, v)| {
                    i.vector_ids
                        .find(hasher.hash_one(v), |&x| x == id as u32)
                        .is_some()
                })
    }
}

impl std::fmt::Debug for TableIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableIndex")
    }
}

/// Presence kinds: which flavour of a dimension's field a class or predicate is about.
/// A predicate holds only on classes of its own kind (ip vs ip6 addresses, ICMP vs
/// ICMPv6 types); single-kind dimensions use KIND_V4.
const KIND_V4: u8 = 0;
const KIND_V6: u8 = 1;

/// One rule's predicate on one dimension.
struct Pred<V> {
    rule: usize,
    kind: u8,
    negated: bool,
    values: V,
}

/// All predicates on one dimension, and which belong to each rule.
struct DimPreds<V> {
    preds: Vec<Pred<V>>,
    per_rule: Vec<Vec<usize>>,
}

impl<V> DimPreds<V> {
    fn new(nrules: usize) -> Self {
        DimPreds {
            preds: Vec::new(),
            per_rule: vec![Vec::new(); nrules],
        }
    }

    fn add(&mut self, rule: usize, kind: u8, negated: bool, values: V) {
        self.per_rule[rule].push(self.preds.len());
        self.preds.push(Pred {
            rule,
            kind,
            negated,
            values,
        });
    }

    fn is_used(&self) -> bool {
        !self.preds.is_empty()
    }
}

impl Predicates {
    /// [`Dim::bit`]s of the dimensions some predicate is on.
    fn used(&self) -> u32 {
        let dims: [(Dim, bool); NDIMS] = [
            (Dim::Saddr, self.saddr.is_used()),
            (Dim::Daddr, self.daddr.is_used()),
            (Dim::L4Proto, self.l4proto.is_used()),
            (Dim::Sport, self.sport.is_used()),
            (Dim::Dport, self.dport.is_used()),
            (Dim::Icmp, self.icmp.is_used()),
            (Dim::Iif, self.iif.is_used()),
            (Dim::Oif, self.oif.is_used()),
            (Dim::Mark0, self.mark[0].is_used()),
            (Dim::Mark1, self.mark[1].is_used()),
            (Dim::CtState, self.ctstate.is_used()),
            (Dim::CtMark, self.ctmark.is_used()),
        ];
        dims.iter()
            .filter(|(_, used)| *used)
            .fold(0, |acc, (d, _)| acc | d.bit())
    }
}

enum AddrSet {
    V4(Vec<Ipv4Net>),
    V6(Vec<Ipv6Net>),
}

/// The IR's stateless matches, sorted into dimensions (the others are residual checks).
pub(super) struct Predicates {
    saddr: DimPreds<AddrSet>,
    daddr: DimPreds<AddrSet>,
    /// Arrays: inclusive ranges of array indexes.
    l4proto: DimPreds<Vec<(u32, u32)>>,
    sport: DimPreds<Vec<(u32, u32)>>,
    dport: DimPreds<Vec<(u32, u32)>>,
    icmp: DimPreds<Vec<(u32, u32)>>,
    iif: DimPreds<Vec<u32>>,
    oif: DimPreds<Vec<u32>>,
    mark: [DimPreds<Vec<u32>>; 2],
    mark_masks: [u32; 2],
    /// Array over ct state bit numbers.
    ctstate: DimPreds<Vec<(u32, u32)>>,
    ctmark: DimPreds<Vec<u32>>,
    ctmark_mask: u32,
}

impl Predicates {
    /// Sorts the matches of `rules` (the program's rules in their numbering).
    pub(super) fn collect(rules: &[&Rule]) -> Result<Self, BuildError> {
        Self::collect_from(rules, 0, &[], None)
    }

    /// Sorts the matches of `rules[first..]`, numbered from 0 (errors give their
    /// numbers in `rules`), with the mark masks `masks` and the ct mark mask `ctmask`
    /// already in use (in their slots), as the rules before `first` left them.
    fn collect_from(
        rules: &[&Rule],
        first: usize,
        masks: &[u32],
        ctmask: Option<u32>,
    ) -> Result<Self, BuildError> {
        let n = rules.len() - first;
        let mut p = Predicates {
            saddr: DimPreds::new(n),
            daddr: DimPreds::new(n),
            l4proto: DimPreds::new(n),
            sport: DimPreds::new(n),
            dport: DimPreds::new(n),
            icmp: DimPreds::new(n),
            iif: DimPreds::new(n),
            oif: DimPreds::new(n),
            mark: [DimPreds::new(n), DimPreds::new(n)],
            mark_masks: [0; 2],
            ctstate: DimPreds::new(n),
            ctmark: DimPreds::new(n),
            ctmark_mask: 0,
        };
        let mut ctmask: Option<u32> = ctmask;
        let mut masks: Vec<u32> = masks.to_vec();
        for (rule, r) in rules[first..].iter().enumerate() {
            let number = first + rule;
            for m in &r.matches {
                let neg = m.negated;
                match &m.test {
                    Test::IpSaddr(nets) => {
                        p.saddr.add(rule, KIND_V4, neg, AddrSet::V4(trunc4(nets)))
                    }
                    Test::IpDaddr(nets) => {
                        p.daddr.add(rule, KIND_V4, neg, AddrSet::V4(trunc4(nets)))
                    }
                    Test::Ip6Saddr(nets) => {
                        p.saddr.add(rule, KIND_V6, neg, AddrSet::V6(trunc6(nets)))
                    }
                    Test::Ip6Daddr(nets) => {
                        p.daddr.add(rule, KIND_V6, neg, AddrSet::V6(trunc6(nets)))
                    }
                    Test::L4Proto(protos) => p.l4proto.add(rule, KIND_V4, neg, points(protos, 0)),
                    Test::Sport(ranges) => {
                        p.sport
                            .add(rule, KIND_V4, neg, port_ranges(number, ranges)?)
                    }
                    Test::Dport(ranges) => {
                        p.dport
                            .add(rule, KIND_V4, neg, port_ranges(number, ranges)?)
                    }
                    Test::IcmpType(types) => p.icmp.add(rule, KIND_V4, neg, points(types, 0)),
                    Test::Icmpv6Type(types) => {
                        p.icmp
                            .add(rule, KIND_V6, neg, points(types, ICMP6_BASE as u32))
                    }
                    Test::Iif(indexes) => p.iif.add(rule, KIND_V4, neg, indexes.clone()),
                    Test::Oif(indexes) => p.oif.add(rule, KIND_V4, neg, indexes.clone()),
                    Test::Mark { mask, values } => {
                        let slot = match masks.iter().position(|m| m == mask) {
                            Some(slot) => slot,
                            None => {
                                masks.push(*mask);
                                masks.len() - 1
                            }
                        };
                        if slot >= 2 {
                            return Err(BuildError::TooManyMarkMasks { masks });
                        }
                        // A value with bits outside the mask never equals `mark & mask`.
                        let values = values.iter().copied().filter(|v| v & !mask == 0).collect();
                        p.mark[slot].add(rule, KIND_V4, neg, values);
                    }
                    Test::CtState(mask) => {
                        let bits: Vec<(u32, u32)> = (0..CTSTATE_VALUES as u32)
                            .filter(|b| mask & (1 << b) != 0)
                            .map(|b| (b, b))
                            .collect();
                        p.ctstate.add(rule, KIND_V4, neg, bits)
                    }
                    Test::CtMark { mask, values } => {
                        if *ctmask.get_or_insert(*mask) != *mask {
                            return Err(BuildError::TooManyCtMarkMasks {
                                masks: vec![ctmask.unwrap_or(0), *mask],
                            });
                        }
                        let values = values.iter().copied().filter(|v| v & !mask == 0).collect();
                        p.ctmark.add(rule, KIND_V4, neg, values);
                    }
                    // Residual checks, evaluated after the LBVS match (see checks.rs).
                    Test::CtStatus(_)
                    | Test::CtLabel { .. }
                    | Test::ArpHook
                    | Test::BridgeHook(_)
                    | Test::InSet { .. }
                    | Test::Limit(_)
                    | Test::Quota(_)
                    | Test::Nth(_)
                    | Test::Residual(_) => {}
                }
            }
        }
        for (slot, mask) in masks.iter().enumerate() {
            p.mark_masks[slot] = *mask;
        }
        p.ctmark_mask = ctmask.unwrap_or(0);
        Ok(p)
    }
}

/// Whether `test` is one of the dimensions' predicates (what [`Predicates::collect`]
/// reads), not a residual check.
pub(super) fn is_dimension_test(test: &Test) -> bool {
    match test {
        Test::IpSaddr(_)
        | Test::IpDaddr(_)
        | Test::Ip6Saddr(_)
        | Test::Ip6Daddr(_)
        | Test::L4Proto(_)
        | Test::Sport(_)
        | Test::Dport(_)
        | Test::IcmpType(_)
        | Test::Icmpv6Type(_)
        | Test::Iif(_)
        | Test::Oif(_)
        | Test::Mark { .. }
        | Test::CtState(_)
        | Test::CtMark { .. } => true,
        Test::CtStatus(_)
        | Test::CtLabel { .. }
        | Test::ArpHook
        | Test::BridgeHook(_)
        | Test::InSet { .. }
        | Test::Limit(_)
        | Test::Quota(_)
        | Test::Nth(_)
        | Test::Residual(_) => false,
    }
}

fn trunc4(nets: &[Ipv4Net]) -> Vec<Ipv4Net> {
    nets.iter().map(Ipv4Net::trunc).collect()
}

fn trunc6(nets: &[Ipv6Net]) -> Vec<Ipv6Net> {
    nets.iter().map(Ipv6Net::trunc).collect()
}

fn points(values: &[u8], base: u32) -> Vec<(u32, u32)> {
    values
        .iter()
        .map(|&v| (base + v as u32, base + v as u32))
        .collect()
}

fn port_ranges(rule: usize, ranges: &[PortRange]) -> Result<Vec<(u32, u32)>, BuildError> {
    ranges
        .iter()
        .map(|r| {
            if r.first > r.last {
                Err(BuildError::BadPortRange { rule, range: *r })
            } else {
                Ok((r.first as u32, r.last as u32))
            }
        })
        .collect()
}

/// Computes class vectors of one dimension. A class is given by its kind and the
/// predicates whose value set contains it; classes are visited so that consecutive
/// ones differ in few predicates (a port range's run of intervals, a prefix and the
/// prefixes inside it), and each vector is the previous one with the bits of the rules
/// of the predicates that came in or went out recomputed. A class then costs the
/// predicates that set it apart, not every predicate containing it: with thousands of
/// rules sharing `udp sport 1024-65535` or `ip saddr 10.128.0.0/16`, the classes inside
/// would otherwise each walk all of them (quadratic in the ruleset).
///
/// Predicates that contain every class of their kind (`ip saddr 0.0.0.0/0`, the guard
/// an inet rule gets for its family) are "universal", folded into one base vector per
/// kind.
struct ClassVectors<'a, V> {
    dim: &'a DimPreds<V>,
    /// Per kind: the vector of a class that only the universal predicates contain.
    base: [Vector; 2],
    /// Per predicate: the kind it is universal for.
    universal: Vec<Option<u8>>,
    /// Rules without a predicate on the dimension: the "field absent" vector.
    wild: Vector,
    /// Per predicate: how many of its values entered contain the current class.
    inside: Vec<u32>,
    rule_stamp: Vec<u64>,
    generation: u64,
}

impl<'a, V> ClassVectors<'a, V> {
    /// `universal[kind]`: the predicates that contain every class of that kind.
    fn new(dim: &'a DimPreds<V>, words: usize, universal: [&[usize]; 2]) -> Self {
        let mut marks = vec![None; dim.preds.len()];
        for (kind, preds) in universal.iter().enumerate() {
            for &p in preds.iter() {
                marks[p] = Some(kind as u8);
            }
        }
        let mut wild = Vector::zeros(words);
        let mut base = [Vector::zeros(words), Vector::zeros(words)];
        for (rule, preds) in dim.per_rule.iter().enumerate() {
            if preds.is_empty() {
                wild.set(rule, true);
            }
            for (kind, v) in base.iter_mut().enumerate() {
                let holds = preds.iter().all(|&p| {
                    let pred = &dim.preds[p];
                    pred.kind == kind as u8 && ((marks[p] == Some(kind as u8)) != pred.negated)
                });
                v.set(rule, holds);
            }
        }
        ClassVectors {
            dim,
            base,
            universal: marks,
            wild,
            inside: vec![0; dim.preds.len()],
            rule_stamp: vec![0; dim.per_rule.len()],
            generation: 0,
        }
    }

    /// Whether `rule` holds on the current class, of `kind`.
    fn holds(&self, rule: usize, kind: u8) -> bool {
        self.dim.per_rule[rule].iter().all(|&q| {
            let pred = &self.dim.preds[q];
            let contained = self.inside[q] > 0 || self.universal[q] == Some(kind);
            pred.kind == kind && (contained != pred.negated)
        })
    }

    /// One value of each of `preds` starts (`enter`) or stops containing the class;
    /// `v`, the vector of a class of `kind`, gets the bits of their rules recomputed
    /// (None: the counts only, the vector is dropped).
    fn shift(&mut self, preds: &[usize], enter: bool, kind: u8, v: Option<&mut Vector>) {
        for &p in preds {
            if enter {
                self.inside[p] += 1;
            } else {
                self.inside[p] -= 1;
            }
        }
        let Some(v) = v else { return };
        self.generation += 1;
        for &p in preds {
            let rule = self.dim.preds[p].rule;
            if self.rule_stamp[rule] != self.generation {
                self.rule_stamp[rule] = self.generation;
                v.set(rule, self.holds(rule, kind));
            }
        }
    }

    /// The vector of a class of `kind` contained by the predicates entered so far.
    fn current(&mut self, kind: u8) -> Vector {
        let mut v = self.base[kind as usize].clone();
        let entered: Vec<usize> = (0..self.inside.len())
            .filter(|&p| self.inside[p] > 0)
            .collect();
        self.generation += 1;
        for p in entered {
            let rule = self.dim.preds[p].rule;
            if self.rule_stamp[rule] != self.generation {
                self.rule_stamp[rule] = self.generation;
                v.set(rule, self.holds(rule, kind));
            }
        }
        v
    }
}

/// A class vector as it is built: its words, and for each 4096-rule block the id
/// [`VectorTable`] gave it, as long as none of its bits changed since. Consecutive
/// classes differ in few rules: their unchanged blocks are not hashed and compared
/// again.
#[derive(Clone)]
struct Vector {
    words: Vec<u64>,
    blocks: Vec<Option<u32>>,
}

impl Vector {
    fn zeros(words: usize) -> Self {
        Vector {
            words: vec![0; words],
            blocks: vec![None; words / BLOCK_WORDS],
        }
    }

    fn set(&mut self, bit: usize, on: bool) {
        let word = &mut self.words[bit / 64];
        let new = if on {
            *word | 1 << (bit % 64)
        } else {
            *word & !(1 << (bit % 64))
        };
        if new != *word {
            *word = new;
            self.blocks[bit / (BLOCK_WORDS * 64)] = None;
        }
    }
}

/// A part of an array dimension's index space holding one kind of value.
struct Segment {
    kind: u8,
    start: u32,
    end: u32,
}

/// Fills an array dimension: one vector id per index, then the "absent" entry.
fn build_array(
    dim: &DimPreds<Vec<(u32, u32)>>,
    segments: &[Segment],
    table: &mut VectorTable,
) -> Vec<u32> {
    let domain = segments.last().map_or(0, |s| s.end);
    let mut cuts: BTreeSet<u32> = segments.iter().flat_map(|s| [s.start, s.end]).collect();
    for pred in &dim.preds {
        for &(lo, hi) in &pred.values {
            cuts.insert(lo);
            cuts.insert(hi + 1);
        }
    }
    let cuts: Vec<u32> = cuts.into_iter().collect();
    // Interval i is [cuts[i], cuts[i + 1]): the predicates whose ranges start and end
    // there, swept in order.
    let mut starts: Vec<Vec<usize>> = vec![Vec::new(); cuts.len()];
    let mut ends: Vec<Vec<usize>> = vec![Vec::new(); cuts.len()];
    for (p, pred) in dim.preds.iter().enumerate() {
        for &(lo, hi) in &pred.values {
            starts[cuts.binary_search(&lo).expect("lo is a cut")].push(p);
            ends[cuts.binary_search(&(hi + 1)).expect("hi + 1 is a cut")].push(p);
        }
    }
    let mut classes = ClassVectors::new(dim, table.words(), [&[], &[]]);
    let mut array = vec![0u32; domain as usize + 1];
    let mut v: Option<(u8, Vector)> = None;
    for (i, pair) in cuts.windows(2).enumerate() {
        let kind = segments
            .iter()
            .find(|s| s.start <= pair[0] && pair[0] < s.end)
            .map_or(KIND_V4, |s| s.kind);
        match &mut v {
            Some((k, vec)) if *k == kind => {
                classes.shift(&ends[i], false, kind, Some(vec));
                classes.shift(&starts[i], true, kind, Some(vec));
            }
            _ => {
                // A new kind: every bit depends on it.
                classes.shift(&ends[i], false, kind, None);
                classes.shift(&starts[i], true, kind, None);
                v = Some((kind, classes.current(kind)));
            }
        }
        let id = match &mut v {
            Some((_, vec)) => table.intern(vec),
            None => table.intern_zeros(),
        };
        array[pair[0] as usize..pair[1] as usize].fill(id);
    }
    array[domain as usize] = table.intern(&mut classes.wild);
    array
}

/// Fills an address dimension's tries; returns them and the "not IP" vector id.
fn build_lpm(dim: &DimPreds<AddrSet>, table: &mut VectorTable) -> (LpmEntries, u32) {
    let mut by_net4: FastMap<Ipv4Net, Vec<usize>> = FastMap::default();
    let mut by_net6: FastMap<Ipv6Net, Vec<usize>> = FastMap::default();
    by_net4.insert(Ipv4Net::default(), Vec::new());
    by_net6.insert(Ipv6Net::default(), Vec::new());
    for (p, pred) in dim.preds.iter().enumerate() {
        match &pred.values {
            AddrSet::V4(nets) => nets
                .iter()
                .for_each(|n| by_net4.entry(*n).or_default().push(p)),
            AddrSet::V6(nets) => nets
                .iter()
                .for_each(|n| by_net6.entry(*n).or_default().push(p)),
        }
    }
    let universal = [
        &by_net4[&Ipv4Net::default()][..],
        &by_net6[&Ipv6Net::default()][..],
    ];
    let mut classes = ClassVectors::new(dim, table.words(), universal);
    let mut entries = LpmEntries::default();
    let mut nets4: Vec<Ipv4Net> = by_net4.keys().copied().collect();
    nets4.sort();
    entries.v4 = lpm_classes(
        &mut classes,
        table,
        KIND_V4,
        &nets4,
        |n| &by_net4[n],
        |a, b| a.contains(b),
    );
    let mut nets6: Vec<Ipv6Net> = by_net6.keys().copied().collect();
    nets6.sort();
    entries.v6 = lpm_classes(
        &mut classes,
        table,
        KIND_V6,
        &nets6,
        |n| &by_net6[n],
        |a, b| a.contains(b),
    );
    let absent = table.intern(&mut classes.wild);
    (entries, absent)
}

/// The vector id of each prefix of `nets` (sorted: a prefix comes before the prefixes
/// inside it, so this is a walk down the prefix tree): a prefix's class is contained
/// by its own predicates and by those of every prefix enclosing it (those of the
/// zero-length prefix are universal).
fn lpm_classes<'n, N: Copy + PartialEq + Default, V>(
    classes: &mut ClassVectors<'_, V>,
    table: &mut VectorTable,
    kind: u8,
    nets: &'n [N],
    preds_of: impl Fn(&N) -> &'n Vec<usize>,
    contains: impl Fn(&N, &N) -> bool,
) -> Vec<(N, u32)> {
    let mut out = Vec::with_capacity(nets.len());
    // The vector of the current prefix: the base, with the predicates of the prefixes
    // on the stack (the current one and those enclosing it) entered. Leaving a prefix
    // recomputes its rules' bits, so it is the enclosing prefix's vector again.
    let mut v = classes.base[kind as usize].clone();
    table.intern(&mut v);
    let base_blocks = v.blocks.clone();
    // With each prefix, its vector's block ids: what leaving the prefixes inside it
    // gives back.
    let mut stack: Vec<(N, Vec<Option<u32>>)> = Vec::new();
    for net in nets {
        if *net == N::default() {
            out.push((*net, table.intern(&mut classes.base[kind as usize])));
            continue;
        }
        let mut left = false;
        while let Some((top, _)) = stack.last() {
            if contains(top, net) {
                break;
            }
            let top = *top;
            stack.pop();
            classes.shift(preds_of(&top), false, kind, Some(&mut v));
            left = true;
        }
        if left {
            v.blocks
                .clone_from(stack.last().map_or(&base_blocks, |(_, blocks)| blocks));
        }
        classes.shift(preds_of(net), true, kind, Some(&mut v));
        out.push((*net, table.intern(&mut v)));
        stack.push((*net, v.blocks.clone()));
    }
    for (net, _) in stack.into_iter().rev() {
        classes.shift(preds_of(&net), false, kind, None);
    }
    out
}

/// Fills an exact-value dimension; returns its entries, the "miss" vector id and the
/// "field absent" one. Entries whose vector is the miss vector are left out: the lookup
/// misses to it.
fn build_hash(dim: &DimPreds<Vec<u32>>, table: &mut VectorTable) -> (Vec<(u32, u32)>, u32, u32) {
    let mut by_value: FastMap<u32, Vec<usize>> = FastMap::default();
    for (p, pred) in dim.preds.iter().enumerate() {
        for v in &pred.values {
            by_value.entry(*v).or_default().push(p);
        }
    }
    let mut classes = ClassVectors::new(dim, table.words(), [&[], &[]]);
    // One working vector: each value's predicates entered, then left again (which
    // gives the base back), so no value's class costs a copy of a whole vector.
    let mut v = classes.base[KIND_V4 as usize].clone();
    let miss = table.intern(&mut v);
    let base_blocks = v.blocks.clone();
    let mut values: Vec<u32> = by_value.keys().copied().collect();
    values.sort_unstable();
    let entries = values
        .into_iter()
        .map(|value| {
            let preds = &by_value[&value];
            classes.shift(preds, true, KIND_V4, Some(&mut v));
            let id = table.intern(&mut v);
            classes.shift(preds, false, KIND_V4, Some(&mut v));
            v.blocks.clone_from(&base_blocks);
            (value, id)
        })
        .filter(|&(_, id)| id != miss)
        .collect();
    let absent = table.intern(&mut classes.wild);
    (entries, miss, absent)
}

/// Bit-vectors stored as 4096-rule blocks, each distinct block once: a rule set's
/// vectors differ from each other in few blocks (a class's own rules), so storing whole
/// vectors would cost classes x rules bits where this costs about classes x one block.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct VectorTable {
    nblocks: usize,
    /// Distinct blocks; block 0 is all zeros.
    blocks: Vec<Block>,
    /// Block ids by their content's hash (the content is in `blocks`): no allocation
    /// per block, to build or to drop.
    block_ids: HashTable<u32>,
    /// Per vector, its blocks' ids.
    vector_blocks: Vec<u32>,
    /// Vector ids by the hash of their block ids (in `vector_blocks`).
    vector_ids: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    /// The block ids of the vector being interned (reused).
    scratch: Vec<u32>,
}

impl VectorTable {
    fn new(words: usize) -> Self {
        let mut t = VectorTable {
            nblocks: words / BLOCK_WORDS,
            blocks: Vec::new(),
            block_ids: HashTable::new(),
            vector_blocks: Vec::new(),
            vector_ids: HashTable::new(),
            hasher: foldhash::fast::FixedState::default(),
            scratch: Vec::new(),
        };
        t.intern_block(&[0; BLOCK_WORDS]);
        t
    }

    /// Words of one whole vector.
    fn words(&self) -> usize {
        self.nblocks * BLOCK_WORDS
    }

    fn intern_block(&mut self, block: &[u64]) -> u32 {
        // Most blocks of a large ruleset's vectors are empty.
        if !self.blocks.is_empty() && block.iter().all(|&w| w == 0) {
            return 0;
        }
        let VectorTable {
            blocks,
            block_ids,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(block);
        if let Some(&id) = block_ids.find(hash, |&id| blocks[id as usize][..] == *block) {
            return id;
        }
        let id = blocks.len() as u32;
        blocks.push(Block::new(block.try_into().expect("one block")));
        let blocks = &*blocks;
        block_ids.insert_unique(hash, id, |&id| hasher.hash_one(&blocks[id as usize][..]));
        id
    }

    /// The id of vector `v`, whose changed blocks get their ids here. Called once per
    /// class, so it allocates only for a vector not seen before.
    fn intern(&mut self, v: &mut Vector) -> u32 {
        debug_assert_eq!(v.words.len(), self.nblocks * BLOCK_WORDS);
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        for (block, known) in v.words.chunks_exact(BLOCK_WORDS).zip(&mut v.blocks) {
            let id = match *known {
                Some(id) => id,
                None => *known.insert(self.intern_block(block)),
            };
            ids.push(id);
        }
        self.intern_ids(ids)
    }

    /// The id of the all-zero vector.
    fn intern_zeros(&mut self) -> u32 {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.resize(self.nblocks, 0);
        self.intern_ids(ids)
    }

    /// The id of the vector of blocks `ids` (a reused buffer, kept for the next call).
    fn intern_ids(&mut self, ids: Vec<u32>) -> u32 {
        let VectorTable {
            nblocks,
            vector_blocks,
            vector_ids,
            hasher,
            ..
        } = self;
        let n = (*nblocks).max(1);
        let hash = hasher.hash_one(&ids[..]);
        let id = match vector_ids.find(hash, |&id| {
            vector_blocks[id as usize * n..(id as usize + 1) * n] == ids[..]
        }) {
            Some(&id) => id,
            None => {
                let id = (vector_blocks.len() / n) as u32;
                vector_blocks.extend_from_slice(&ids);
                let vector_blocks = &*vector_blocks;
                vector_ids.insert_unique(hash, id, |&id| {
                    hasher.hash_one(&vector_blocks[id as usize * n..(id as usize + 1) * n])
                });
                id
            }
        };
        self.scratch = ids;
        id
    }

    /// The table holding `blocks` and `vector_blocks` (deduplicated, as built here),
    /// with their ids as they are; `index`, if it is theirs, spares hashing them all.
    fn resume(
        blocks: Vec<Block>,
        vector_blocks: Vec<u32>,
        nblocks: usize,
        index: &TableIndex,
    ) -> Self {
        let hasher = foldhash::fast::FixedState::default();
        let nvectors = vector_blocks.len() / nblocks.max(1);
        let (block_ids, vector_ids) = match index.0.as_deref() {
            Some(i) if i.blocks == blocks.len() && i.vectors == nvectors => {
                (i.block_ids.clone(), i.vector_ids.clone())
            }
            _ => {
                let mut block_ids = HashTable::new();
                for (id, b) in blocks.iter().enumerate() {
                    block_ids.insert_unique(hasher.hash_one(&b[..]), id as u32, |&id| {
                        hasher.hash_one(&blocks[id as usize][..])
                    });
                }
                let n = nblocks.max(1);
                let mut vector_ids = HashTable::new();
                for (id, v) in vector_blocks.chunks_exact(n).enumerate() {
                    vector_ids.insert_unique(hasher.hash_one(v), id as u32, |&id| {
                        hasher.hash_one(&vector_blocks[id as usize * n..][..n])
                    });
                }
                (block_ids, vector_ids)
            }
        };
        VectorTable {
            nblocks,
            blocks,
            block_ids,
            vector_blocks,
            vector_ids,
            hasher,
            scratch: Vec::new(),
        }
    }

    /// Drops the vectors not in `live` and then the blocks no vector holds any more
    /// (block 0, all zeros, stays), as a build from scratch would not have them: the
    /// last entries move into the holes, so that little moves. Returns the new id of
    /// each old vector id (dropped ones: u32::MAX), or None if none moved.
    fn collect(&mut self, live: &[bool]) -> Option<Vec<u32>> {
        const DEAD: u32 = u32::MAX;
        let nb = self.nblocks;
        let moved_vectors = compact(live, |from, to| {
            self.vector_blocks
                .copy_within(from * nb..(from + 1) * nb, to * nb)
        });
        if let Some(ids) = &moved_vectors {
            self.vector_blocks.truncate(ids.1 * nb);
            // A moved vector keeps its blocks, so its hash: only its id changes.
            self.vector_ids.retain(|id| match ids.0[*id as usize] {
                DEAD => false,
                new => {
                    *id = new;
                    true
                }
            });
        }
        let mut live_blocks = vec![false; self.blocks.len()];
        live_blocks[0] = true;
        for &b in &self.vector_blocks {
            live_blocks[b as usize] = true;
        }
        let moved_blocks = compact(&live_blocks, |from, to| self.blocks.swap(from, to));
        if let Some((ids, len)) = moved_blocks {
            self.blocks.truncate(len);
            self.block_ids.retain(|id| match ids[*id as usize] {
                DEAD => false,
                new => {
                    *id = new;
                    true
                }
            });
            // The vectors holding a moved block: their rows change, so their hashes.
            let VectorTable {
                vector_blocks,
                vector_ids,
                hasher,
                ..
            } = self;
            for v in 0..vector_blocks.len() / nb {
                let row = &vector_blocks[v * nb..(v + 1) * nb];
                if row.iter().all(|&b| ids[b as usize] == b) {
                    continue;
                }
                let old_hash = hasher.hash_one(row);
                if let Ok(entry) = vector_ids.find_entry(old_hash, |&id| id == v as u32) {
                    entry.remove();
                }
                for b in &mut vector_blocks[v * nb..(v + 1) * nb] {
                    *b = ids[*b as usize];
                }
                let vector_blocks = &*vector_blocks;
                let hash = hasher.hash_one(&vector_blocks[v * nb..(v + 1) * nb]);
                vector_ids.insert_unique(hash, v as u32, |&id| {
                    hasher.hash_one(&vector_blocks[id as usize * nb..(id as usize + 1) * nb])
                });
            }
        }
        moved_vectors.map(|(ids, _)| ids)
    }

    fn into_parts(self) -> (Vec<Block>, Vec<u32>, TableIndex) {
        let index = Index {
            blocks: self.blocks.len(),
            vectors: self.vector_blocks.len() / self.nblocks.max(1),
            block_ids: self.block_ids,
            vector_ids: self.vector_ids,
        };
        (
            self.blocks,
            self.vector_blocks,
            TableIndex(Some(std::sync::Arc::new(index))),
        )
    }
}

/// Renumbers entries `0..live.len()` so that the live ones are `0..n`: each dead one
/// below `n` gets the last live one (`moved(from, to)` moves its contents). Returns
/// the new number of each entry (dead ones: u32::MAX) and `n`, or None if all live.
fn compact(live: &[bool], mut moved: impl FnMut(usize, usize)) -> Option<(Vec<u32>, usize)> {
    if live.iter().all(|&l| l) {
        return None;
    }
    let mut ids: Vec<u32> = (0..live.len() as u32)
        .map(|i| if live[i as usize] { i } else { u32::MAX })
        .collect();
    let (mut i, mut j) = (0, live.len());
    loop {
        while i < j && live[i] {
            i += 1;
        }
        while j > i && !live[j - 1] {
            j -= 1;
        }
        if i >= j {
            break;
        }
        moved(j - 1, i);
        ids[j - 1] = i as u32;
        i += 1;
        j -= 1;
    }
    Some((ids, i))
}

/// A [`VectorTable`]'s hash tables, for the `blocks` blocks and `vectors` vectors it
/// was left with.
pub(super) struct Index {
    blocks: usize,
    vectors: usize,
    block_ids: HashTable<u32>,
    vector_ids: HashTable<u32>,
}
