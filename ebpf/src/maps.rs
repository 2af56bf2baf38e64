//! Compiles a [`Chain`] into the contents of the LBVS maps of `bpf/lib/classify.h`.
//! Pure Rust; [`crate::simulate`] runs the result the way the BPF program does, and
//! [`crate::loader`] writes it into the kernel.
//!
//! Map design. Rule `i` is bit `i` of every bit-vector. Each dimension (a field or a
//! pair of fields looked up together, see [`Dim`]) splits the packets into classes that
//! no predicate on it can tell apart, and gives every class the vector of the rules
//! whose predicates on that dimension all hold there. The classifier ANDs one vector per
//! dimension; the lowest set bit is the first matching rule.
//! - Wildcards: a rule without a predicate on a dimension has its bit in every vector
//!   of it, including the "field absent" one. A rule with one has its bit in a class
//!   only if the field is present there and `(value in set) != negated`; so `!=` is just
//!   "the other present classes", and absent fields never match (nft's dependencies).
//! - Prefixes (addresses): one LPM trie per family; a class is a prefix some predicate
//!   uses, holding the addresses whose longest listed prefix it is. A predicate contains
//!   the class iff it lists that prefix or an enclosing one, so enclosing prefixes'
//!   rules are OR-ed in at build time. A /0 entry per family is the class of addresses
//!   no prefix covers, so lookups of IP packets never miss.
//! - Ranges (ports, protocol, ICMP type): the domain is cut into elementary intervals at
//!   every range boundary; an array indexed by the value (65536 + 1 "absent" entries
//!   for a port) holds the vector id of the interval.
//! - Exact values (ifindex, mark & mask): a hash from value to vector id, and a "miss"
//!   vector for every other value.
//! - Identical vectors are stored once: maps hold vector ids into one table.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::ir::{Action, Chain, L3Scope, PortRange, Test, Verdict};

/// 64-bit words in one map entry of the vector table (4096 rules).
pub const BLOCK_WORDS: usize = 64;
pub const BLOCK_RULES: usize = BLOCK_WORDS * 64;
/// Index of the "not IP" entry of the l4proto array.
pub const L4PROTO_ABSENT: usize = 256;
/// Index of the "no ports" entry of the port arrays.
pub const PORT_ABSENT: usize = 65536;
/// ICMPv6 type t is entry ICMP6_BASE + t of the ICMP array.
pub const ICMP6_BASE: usize = 256;
/// Index of the "neither ICMP nor ICMPv6" entry of the ICMP array.
pub const ICMP_ABSENT: usize = 512;
/// More rules than this are refused (the table's keys are u32; this keeps far below).
pub const MAX_RULES: usize = 1 << 20;

/// The LBVS dimensions, numbered as `enum ns_dim` in bpf/lib/common.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Dim {
    Saddr = 0,
    Daddr = 1,
    L4Proto = 2,
    Sport = 3,
    Dport = 4,
    Icmp = 5,
    Iif = 6,
    Oif = 7,
    Mark0 = 8,
    Mark1 = 9,
}

pub const NDIMS: usize = 10;

impl Dim {
    pub const ALL: [Dim; NDIMS] = [
        Dim::Saddr,
        Dim::Daddr,
        Dim::L4Proto,
        Dim::Sport,
        Dim::Dport,
        Dim::Icmp,
        Dim::Iif,
        Dim::Oif,
        Dim::Mark0,
        Dim::Mark1,
    ];

    pub fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// Rule actions as stored in `rule_actions` (`enum ns_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ActionKind {
    Accept = 0,
    Drop = 1,
    Continue = 2,
}

impl From<Verdict> for ActionKind {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Accept => ActionKind::Accept,
            Verdict::Drop => ActionKind::Drop,
        }
    }
}

/// Bits of [`BpfConfig::l3_scope`].
pub const SCOPE_IPV4: u32 = 1 << 0;
pub const SCOPE_IPV6: u32 = 1 << 1;
pub const SCOPE_OTHER: u32 = 1 << 2;

/// The program's read-only configuration, `struct ns_config` in bpf/lib/common.h.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfConfig {
    /// [`Dim::bit`]s of the dimensions some rule tests.
    pub dims: u32,
    pub nrules: u32,
    /// 4096-rule blocks per vector.
    pub nblocks: u32,
    /// bpf_loop bound: one step per block plus one per continue rule, plus one.
    pub max_steps: u32,
    /// [`ActionKind`] of the policy.
    pub policy: u32,
    pub l3_scope: u32,
    /// Set by the loader: the TC program is attached at egress.
    pub egress: u32,
    pub mark_mask: [u32; 2],
    /// Hash dimensions: vector id for values not in the map.
    pub miss: [u32; NDIMS],
    /// Address dimensions: vector id for packets that are not IP.
    pub absent: [u32; NDIMS],
}

/// Entries of one address dimension's two LPM tries: prefix -> vector id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LpmEntries {
    pub v4: Vec<(Ipv4Net, u32)>,
    pub v6: Vec<(Ipv6Net, u32)>,
}

/// Everything the loader writes into the maps for one chain. Dimensions no rule tests
/// have empty contents and are not looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledChain {
    pub config: BpfConfig,
    /// The vector table: `nblocks * 64` words per vector, vector after vector, so map
    /// entry `k` of `vectors` is words `64k .. 64k + 64`.
    pub vectors: Vec<u64>,
    pub saddr: LpmEntries,
    pub daddr: LpmEntries,
    /// Array contents, indexed by value (last entry: field absent).
    pub l4proto: Vec<u32>,
    pub sport: Vec<u32>,
    pub dport: Vec<u32>,
    pub icmp: Vec<u32>,
    /// Hash contents; other keys use `config.miss`.
    pub iif: Vec<(u32, u32)>,
    pub oif: Vec<(u32, u32)>,
    pub mark: [Vec<(u32, u32)>; 2],
    /// [`ActionKind`] per rule.
    pub actions: Vec<u32>,
}

impl CompiledChain {
    pub fn nrules(&self) -> usize {
        self.config.nrules as usize
    }

    /// Entries of the vector table map (vectors × blocks).
    pub fn vector_entries(&self) -> usize {
        self.vectors.len() / BLOCK_WORDS
    }

    /// Distinct bit-vectors after deduplication.
    pub fn distinct_vectors(&self) -> usize {
        self.vector_entries() / self.config.nblocks as usize
    }

    pub fn uses(&self, dim: Dim) -> bool {
        self.config.dims & dim.bit() != 0
    }

    /// The words of vector `id`.
    pub fn vector(&self, id: u32) -> &[u64] {
        let words = self.config.nblocks as usize * BLOCK_WORDS;
        &self.vectors[id as usize * words..(id as usize + 1) * words]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("rule {rule}: {action:?} is not supported by the data plane yet")]
    UnsupportedAction { rule: usize, action: Action },
    #[error("rule {rule}: {what} is not supported by the data plane yet")]
    Unsupported { rule: usize, what: String },
    #[error("rule {rule}: empty port range {}-{}", range.first, range.last)]
    BadPortRange { rule: usize, range: PortRange },
    #[error("at most two distinct meta mark masks per chain, got {masks:x?}")]
    TooManyMarkMasks { masks: Vec<u32> },
    #[error("{rules} rules: at most {MAX_RULES} per chain")]
    TooManyRules { rules: usize },
}

/// Compiles one chain. Fails on what the data plane cannot enforce, so that nothing is
/// accepted and left unenforced.
pub fn compile(chain: &Chain) -> Result<CompiledChain, BuildError> {
    let nrules = chain.rules.len();
    if nrules > MAX_RULES {
        return Err(BuildError::TooManyRules { rules: nrules });
    }
    let nblocks = nrules.div_ceil(BLOCK_RULES).max(1);
    let mut table = VectorTable::new(nblocks * BLOCK_WORDS);

    let mut actions = Vec::with_capacity(nrules);
    let mut continues = 0;
    for (rule, r) in chain.rules.iter().enumerate() {
        if let Some(statement) = r.statements.first() {
            return Err(BuildError::Unsupported {
                rule,
                what: format!("{statement:?}"),
            });
        }
        let kind = match &r.action {
            Action::Accept => ActionKind::Accept,
            Action::Drop => ActionKind::Drop,
            Action::Continue => {
                continues += 1;
                ActionKind::Continue
            }
            other => {
                return Err(BuildError::UnsupportedAction {
                    rule,
                    action: other.clone(),
                })
            }
        };
        actions.push(kind as u32);
    }

    let preds = Predicates::collect(chain)?;
    let mut config = BpfConfig {
        nrules: nrules as u32,
        nblocks: nblocks as u32,
        max_steps: (nblocks + continues + 1) as u32,
        policy: ActionKind::from(chain.policy) as u32,
        l3_scope: match chain.scope {
            L3Scope::Ipv4 => SCOPE_IPV4,
            L3Scope::Ipv6 => SCOPE_IPV6,
            L3Scope::Inet => SCOPE_IPV4 | SCOPE_IPV6,
            L3Scope::Netdev => SCOPE_IPV4 | SCOPE_IPV6 | SCOPE_OTHER,
        },
        mark_mask: preds.mark_masks,
        ..BpfConfig::default()
    };

    let mut lpm = |dim: Dim, p: &DimPreds<AddrSet>, config: &mut BpfConfig| {
        if !p.is_used() {
            return LpmEntries::default();
        }
        config.dims |= dim.bit();
        let (entries, absent) = build_lpm(p, &mut table);
        config.absent[dim as usize] = absent;
        entries
    };
    let saddr = lpm(Dim::Saddr, &preds.saddr, &mut config);
    let daddr = lpm(Dim::Daddr, &preds.daddr, &mut config);

    let mut array =
        |dim: Dim, p: &DimPreds<Vec<(u32, u32)>>, segments: &[Segment], config: &mut BpfConfig| {
            if !p.is_used() {
                return Vec::new();
            }
            config.dims |= dim.bit();
            build_array(p, segments, &mut table)
        };
    let l4proto = array(
        Dim::L4Proto,
        &preds.l4proto,
        &[Segment {
            kind: 0,
            start: 0,
            end: 256,
        }],
        &mut config,
    );
    let port_segments = [Segment {
        kind: 0,
        start: 0,
        end: 65536,
    }];
    let sport = array(Dim::Sport, &preds.sport, &port_segments, &mut config);
    let dport = array(Dim::Dport, &preds.dport, &port_segments, &mut config);
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
    let icmp = array(Dim::Icmp, &preds.icmp, &icmp_segments, &mut config);

    let mut hash = |dim: Dim, p: &DimPreds<Vec<u32>>, config: &mut BpfConfig| {
        if !p.is_used() {
            return Vec::new();
        }
        config.dims |= dim.bit();
        let (entries, miss) = build_hash(p, &mut table);
        config.miss[dim as usize] = miss;
        entries
    };
    let iif = hash(Dim::Iif, &preds.iif, &mut config);
    let oif = hash(Dim::Oif, &preds.oif, &mut config);
    let mark0 = hash(Dim::Mark0, &preds.mark[0], &mut config);
    let mark1 = hash(Dim::Mark1, &preds.mark[1], &mut config);

    Ok(CompiledChain {
        config,
        vectors: table.into_words(),
        saddr,
        daddr,
        l4proto,
        sport,
        dport,
        icmp,
        iif,
        oif,
        mark: [mark0, mark1],
        actions,
    })
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

enum AddrSet {
    V4(Vec<Ipv4Net>),
    V6(Vec<Ipv6Net>),
}

/// The IR's matches, sorted into dimensions.
struct Predicates {
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
}

impl Predicates {
    fn collect(chain: &Chain) -> Result<Self, BuildError> {
        let n = chain.rules.len();
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
        };
        let mut masks: Vec<u32> = Vec::new();
        for (rule, r) in chain.rules.iter().enumerate() {
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
                        p.sport.add(rule, KIND_V4, neg, port_ranges(rule, ranges)?)
                    }
                    Test::Dport(ranges) => {
                        p.dport.add(rule, KIND_V4, neg, port_ranges(rule, ranges)?)
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
                    other => {
                        return Err(BuildError::Unsupported {
                            rule,
                            what: format!("{other:?}"),
                        })
                    }
                }
            }
        }
        for (slot, mask) in masks.iter().enumerate() {
            p.mark_masks[slot] = *mask;
        }
        Ok(p)
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

/// Computes class vectors of one dimension: a class is given by its kind and the
/// predicates whose value set contains it.
struct ClassVectors<'a, V> {
    dim: &'a DimPreds<V>,
    words: usize,
    /// Rules without a predicate on the dimension: the "field absent" vector.
    wild: Vec<u64>,
    /// Per kind: the vector of a present class no predicate contains.
    uncontained: [Vec<u64>; 2],
    pred_stamp: Vec<u64>,
    rule_stamp: Vec<u64>,
    generation: u64,
}

impl<'a, V> ClassVectors<'a, V> {
    fn new(dim: &'a DimPreds<V>, words: usize) -> Self {
        let mut wild = vec![0u64; words];
        let mut uncontained = [vec![0u64; words], vec![0u64; words]];
        for (rule, preds) in dim.per_rule.iter().enumerate() {
            if preds.is_empty() {
                set_bit(&mut wild, rule, true);
            }
            for (kind, v) in uncontained.iter_mut().enumerate() {
                let holds = preds
                    .iter()
                    .all(|&p| dim.preds[p].kind == kind as u8 && dim.preds[p].negated);
                set_bit(v, rule, holds);
            }
        }
        ClassVectors {
            dim,
            words,
            wild,
            uncontained,
            pred_stamp: vec![0; dim.preds.len()],
            rule_stamp: vec![0; dim.per_rule.len()],
            generation: 0,
        }
    }

    /// The vector of a present class of `kind` that exactly the predicates in
    /// `containing` contain (duplicates allowed).
    fn present(&mut self, kind: u8, containing: &[usize]) -> Vec<u64> {
        debug_assert_eq!(self.uncontained[kind as usize].len(), self.words);
        self.generation += 1;
        let generation = self.generation;
        for &p in containing {
            self.pred_stamp[p] = generation;
        }
        let mut v = self.uncontained[kind as usize].clone();
        for &p in containing {
            let rule = self.dim.preds[p].rule;
            if self.rule_stamp[rule] == generation {
                continue;
            }
            self.rule_stamp[rule] = generation;
            let holds = self.dim.per_rule[rule].iter().all(|&q| {
                let pred = &self.dim.preds[q];
                pred.kind == kind && ((self.pred_stamp[q] == generation) != pred.negated)
            });
            set_bit(&mut v, rule, holds);
        }
        v
    }
}

fn set_bit(v: &mut [u64], bit: usize, on: bool) {
    if on {
        v[bit / 64] |= 1 << (bit % 64);
    } else {
        v[bit / 64] &= !(1 << (bit % 64));
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
    // Interval i is [cuts[i], cuts[i + 1]).
    let mut containing: Vec<Vec<usize>> = vec![Vec::new(); cuts.len() - 1];
    for (p, pred) in dim.preds.iter().enumerate() {
        for &(lo, hi) in &pred.values {
            let first = cuts.binary_search(&lo).expect("lo is a cut");
            let end = cuts.binary_search(&(hi + 1)).expect("hi + 1 is a cut");
            for c in &mut containing[first..end] {
                c.push(p);
            }
        }
    }
    let mut classes = ClassVectors::new(dim, table.words);
    let mut array = vec![0u32; domain as usize + 1];
    for (i, pair) in cuts.windows(2).enumerate() {
        let kind = segments
            .iter()
            .find(|s| s.start <= pair[0] && pair[0] < s.end)
            .map_or(KIND_V4, |s| s.kind);
        let id = table.intern(classes.present(kind, &containing[i]));
        array[pair[0] as usize..pair[1] as usize].fill(id);
    }
    array[domain as usize] = table.intern(classes.wild.clone());
    array
}

/// Fills an address dimension's tries; returns them and the "not IP" vector id.
fn build_lpm(dim: &DimPreds<AddrSet>, table: &mut VectorTable) -> (LpmEntries, u32) {
    let mut by_net4: HashMap<Ipv4Net, Vec<usize>> = HashMap::new();
    let mut by_net6: HashMap<Ipv6Net, Vec<usize>> = HashMap::new();
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
    let mut classes = ClassVectors::new(dim, table.words);
    let mut entries = LpmEntries::default();
    let mut nets4: Vec<Ipv4Net> = by_net4.keys().copied().collect();
    nets4.sort();
    for net in nets4 {
        // Predicates listing this prefix or one enclosing it contain the whole class.
        let containing: Vec<usize> = (0..=net.prefix_len())
            .filter_map(|len| {
                by_net4.get(&Ipv4Net::new(net.addr(), len).expect("len <= 32").trunc())
            })
            .flatten()
            .copied()
            .collect();
        entries
            .v4
            .push((net, table.intern(classes.present(KIND_V4, &containing))));
    }
    let mut nets6: Vec<Ipv6Net> = by_net6.keys().copied().collect();
    nets6.sort();
    for net in nets6 {
        let containing: Vec<usize> = (0..=net.prefix_len())
            .filter_map(|len| {
                by_net6.get(&Ipv6Net::new(net.addr(), len).expect("len <= 128").trunc())
            })
            .flatten()
            .copied()
            .collect();
        entries
            .v6
            .push((net, table.intern(classes.present(KIND_V6, &containing))));
    }
    let absent = table.intern(classes.wild.clone());
    (entries, absent)
}

/// Fills an exact-value dimension; returns its entries and the "miss" vector id.
/// Entries whose vector is the miss vector are left out: the lookup misses to it.
fn build_hash(dim: &DimPreds<Vec<u32>>, table: &mut VectorTable) -> (Vec<(u32, u32)>, u32) {
    let mut by_value: HashMap<u32, Vec<usize>> = HashMap::new();
    for (p, pred) in dim.preds.iter().enumerate() {
        for v in &pred.values {
            by_value.entry(*v).or_default().push(p);
        }
    }
    let mut classes = ClassVectors::new(dim, table.words);
    let miss = table.intern(classes.present(KIND_V4, &[]));
    let mut values: Vec<u32> = by_value.keys().copied().collect();
    values.sort_unstable();
    let entries = values
        .into_iter()
        .map(|value| {
            (
                value,
                table.intern(classes.present(KIND_V4, &by_value[&value])),
            )
        })
        .filter(|&(_, id)| id != miss)
        .collect();
    (entries, miss)
}

/// Deduplicated vectors, all `words` long, stored one after the other.
struct VectorTable {
    words: usize,
    table: Vec<u64>,
    by_hash: HashMap<u64, Vec<u32>>,
}

impl VectorTable {
    fn new(words: usize) -> Self {
        VectorTable {
            words,
            table: Vec::new(),
            by_hash: HashMap::new(),
        }
    }

    fn intern(&mut self, v: Vec<u64>) -> u32 {
        debug_assert_eq!(v.len(), self.words);
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        let ids = self.by_hash.entry(h.finish()).or_default();
        for &id in ids.iter() {
            let at = id as usize * self.words;
            if self.table[at..at + self.words] == v[..] {
                return id;
            }
        }
        let id = (self.table.len() / self.words) as u32;
        self.table.extend_from_slice(&v);
        ids.push(id);
        id
    }

    fn into_words(self) -> Vec<u64> {
        self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Match, Rule};

    fn chain(rules: Vec<(Vec<Match>, Action)>) -> Chain {
        Chain {
            scope: L3Scope::Netdev,
            policy: Verdict::Accept,
            rules: rules
                .into_iter()
                .map(|(matches, action)| Rule::new(matches, action))
                .collect(),
        }
    }

    /// The rule indexes set in vector `id`.
    fn rules_in(c: &CompiledChain, id: u32) -> Vec<usize> {
        (0..c.nrules())
            .filter(|&r| c.vector(id)[r / 64] & (1 << (r % 64)) != 0)
            .collect()
    }

    fn v4(c: &CompiledChain, net: &str) -> Vec<usize> {
        let net: Ipv4Net = net.parse().unwrap();
        let id = c
            .saddr
            .v4
            .iter()
            .find(|(n, _)| *n == net)
            .expect("prefix has an entry")
            .1;
        rules_in(c, id)
    }

    fn dport(ports: &[(u16, u16)]) -> Test {
        Test::Dport(ports.iter().map(|&(a, b)| PortRange::new(a, b)).collect())
    }

    #[test]
    fn enclosing_prefixes_are_ored_into_nested_ones() {
        let c = compile(&chain(vec![
            (
                vec![Match::is(Test::IpSaddr(vec!["10.0.0.0/8"
                    .parse()
                    .unwrap()]))],
                Action::Drop,
            ),
            (
                vec![Match::is(Test::IpSaddr(vec!["10.1.0.0/16"
                    .parse()
                    .unwrap()]))],
                Action::Drop,
            ),
            (
                vec![Match::not(Test::IpSaddr(vec!["10.1.2.0/24"
                    .parse()
                    .unwrap()]))],
                Action::Drop,
            ),
            (vec![], Action::Drop),
        ]))
        .unwrap();
        assert_eq!(v4(&c, "10.0.0.0/8"), [0, 2, 3]);
        assert_eq!(v4(&c, "10.1.0.0/16"), [0, 1, 2, 3]);
        assert_eq!(v4(&c, "10.1.2.0/24"), [0, 1, 3]);
        assert_eq!(v4(&c, "0.0.0.0/0"), [2, 3], "addresses no prefix covers");
        // Not IPv4: only the rule that does not test the address.
        assert_eq!(rules_in(&c, c.config.absent[Dim::Saddr as usize]), [3]);
        // An IPv6 packet is "present" for the dimension but no IPv4 predicate holds on it.
        let v6_default = c
            .saddr
            .v6
            .iter()
            .find(|(n, _)| n.prefix_len() == 0)
            .unwrap()
            .1;
        assert_eq!(rules_in(&c, v6_default), [3]);
        assert!(c.uses(Dim::Saddr) && !c.uses(Dim::Daddr) && !c.uses(Dim::Dport));
    }

    #[test]
    fn negation_holds_on_other_present_values_only() {
        let c = compile(&chain(vec![(
            vec![Match::not(dport(&[(22, 22)]))],
            Action::Drop,
        )]))
        .unwrap();
        assert_eq!(rules_in(&c, c.dport[22]), Vec::<usize>::new());
        assert_eq!(rules_in(&c, c.dport[80]), [0]);
        assert_eq!(
            rules_in(&c, c.dport[PORT_ABSENT]),
            Vec::<usize>::new(),
            "no ports: no match"
        );
    }

    #[test]
    fn ranges_are_cut_into_elementary_intervals() {
        let c = compile(&chain(vec![
            (vec![Match::is(dport(&[(10, 20)]))], Action::Drop),
            (vec![Match::is(dport(&[(15, 30)]))], Action::Drop),
            (vec![], Action::Drop),
        ]))
        .unwrap();
        let at = |p: usize| rules_in(&c, c.dport[p]);
        assert_eq!(at(9), [2]);
        assert_eq!(at(10), [0, 2]);
        assert_eq!(at(14), [0, 2]);
        assert_eq!(at(15), [0, 1, 2]);
        assert_eq!(at(20), [0, 1, 2]);
        assert_eq!(at(21), [1, 2]);
        assert_eq!(at(30), [1, 2]);
        assert_eq!(at(31), [2]);
        assert_eq!(at(65535), [2]);
        assert_eq!(
            at(PORT_ABSENT),
            [2],
            "wildcard rules match packets without ports"
        );
        // [0,10), [31,65536) and "absent" share the wildcard-only vector.
        assert_eq!(c.distinct_vectors(), 4);
    }

    #[test]
    fn identical_vectors_are_stored_once() {
        let rules = (0..300)
            .map(|_| (vec![Match::is(dport(&[(1, 100)]))], Action::Accept))
            .collect();
        let c = compile(&chain(rules)).unwrap();
        // In range: all rules; outside or absent: none.
        assert_eq!(c.distinct_vectors(), 2);
        assert_eq!(c.vectors.len(), 2 * BLOCK_WORDS);
    }

    #[test]
    fn icmp_and_icmpv6_types_share_a_dimension_by_kind() {
        let c = compile(&chain(vec![
            (vec![Match::is(Test::IcmpType(vec![8]))], Action::Drop),
            (vec![Match::is(Test::Icmpv6Type(vec![128]))], Action::Drop),
            (vec![Match::not(Test::IcmpType(vec![8]))], Action::Drop),
            (
                vec![
                    Match::is(Test::IcmpType(vec![8])),
                    Match::is(Test::Icmpv6Type(vec![8])),
                ],
                Action::Drop,
            ),
        ]))
        .unwrap();
        assert_eq!(rules_in(&c, c.icmp[8]), [0]);
        assert_eq!(rules_in(&c, c.icmp[0]), [2]);
        assert_eq!(rules_in(&c, c.icmp[ICMP6_BASE + 128]), [1]);
        assert_eq!(
            rules_in(&c, c.icmp[ICMP6_BASE + 8]),
            Vec::<usize>::new(),
            "ICMPv6 is not ICMP"
        );
        assert_eq!(rules_in(&c, c.icmp[ICMP_ABSENT]), Vec::<usize>::new());
    }

    #[test]
    fn hash_dimensions_miss_to_the_vector_of_unlisted_values() {
        let c = compile(&chain(vec![
            (vec![Match::is(Test::Iif(vec![2, 3]))], Action::Drop),
            (vec![Match::not(Test::Iif(vec![3]))], Action::Drop),
        ]))
        .unwrap();
        let id = |v: u32| {
            c.iif
                .iter()
                .find(|(k, _)| *k == v)
                .map_or(c.config.miss[Dim::Iif as usize], |e| e.1)
        };
        assert_eq!(rules_in(&c, id(2)), [0, 1]);
        assert_eq!(rules_in(&c, id(3)), [0]);
        assert_eq!(rules_in(&c, id(9)), [1]);
    }

    #[test]
    fn marks_use_one_dimension_per_mask() {
        let c = compile(&chain(vec![
            (
                vec![Match::is(Test::Mark {
                    mask: 0xff,
                    values: vec![1, 0x101],
                })],
                Action::Drop,
            ),
            (
                vec![Match::is(Test::Mark {
                    mask: u32::MAX,
                    values: vec![0x201],
                })],
                Action::Drop,
            ),
        ]))
        .unwrap();
        assert_eq!(c.config.mark_mask, [0xff, u32::MAX]);
        // 0x101 has bits outside 0xff: `mark & 0xff` never equals it.
        assert_eq!(c.mark[0].iter().map(|e| e.0).collect::<Vec<_>>(), [1]);
        assert!(c.uses(Dim::Mark0) && c.uses(Dim::Mark1));

        let three = chain(
            [u32::MAX, 0xff, 0xff00]
                .into_iter()
                .map(|mask| {
                    (
                        vec![Match::is(Test::Mark {
                            mask,
                            values: vec![0],
                        })],
                        Action::Drop,
                    )
                })
                .collect(),
        );
        assert!(matches!(
            compile(&three),
            Err(BuildError::TooManyMarkMasks { .. })
        ));
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let jump = chain(vec![
            (vec![], Action::Accept),
            (vec![], Action::Jump("other".into())),
        ]);
        assert_eq!(
            compile(&jump),
            Err(BuildError::UnsupportedAction {
                rule: 1,
                action: Action::Jump("other".into())
            })
        );
        let bad = chain(vec![(vec![Match::is(dport(&[(20, 10)]))], Action::Drop)]);
        assert!(matches!(
            compile(&bad),
            Err(BuildError::BadPortRange { rule: 0, .. })
        ));
    }

    #[test]
    fn vectors_span_blocks_of_4096_rules() {
        let n = 2 * BLOCK_RULES + 10;
        let rules = (0..n)
            .map(|i| {
                (
                    vec![Match::is(dport(&[(i as u16 % 1000, i as u16 % 1000)]))],
                    Action::Drop,
                )
            })
            .collect();
        let c = compile(&chain(rules)).unwrap();
        assert_eq!(c.config.nblocks, 3);
        assert_eq!(c.config.max_steps, 4);
        let expected: Vec<usize> = (0..n).filter(|i| i % 1000 == 7).collect();
        assert_eq!(rules_in(&c, c.dport[7]), expected);
        assert!(expected.contains(&8007), "a rule in the third block");
    }

    #[test]
    fn config_reflects_the_chain() {
        let mut c = chain(vec![
            (vec![], Action::Continue),
            (vec![], Action::Continue),
            (vec![], Action::Drop),
        ]);
        c.scope = L3Scope::Ipv6;
        c.policy = Verdict::Drop;
        let compiled = compile(&c).unwrap();
        assert_eq!(compiled.config.dims, 0);
        assert_eq!(compiled.config.nrules, 3);
        assert_eq!(compiled.config.max_steps, 1 + 2 + 1);
        assert_eq!(compiled.config.policy, ActionKind::Drop as u32);
        assert_eq!(compiled.config.l3_scope, SCOPE_IPV6);
        assert_eq!(compiled.actions, [2, 2, 1]);
    }
}
