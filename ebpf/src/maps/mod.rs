//! Compiles a [`Program`] (or one [`Chain`]) into the contents of the maps of `bpf/`.
//! Pure Rust; [`crate::simulate`] runs the result the way the BPF program does, and
//! [`crate::loader`] writes it into the kernel.
//!
//! LBVS map design (`lbvs.rs`). Rule `i` is bit `i` of every bit-vector; the rules of all
//! chains share one numbering (see [`Program`]), so a chain is a range of bits and one
//! lookup per dimension serves every chain a packet goes through. Each dimension (a
//! field or a pair of fields looked up together, see [`Dim`]) splits the packets into
//! classes that no predicate on it can tell apart, and gives every class the vector of
//! the rules whose predicates on that dimension all hold there. The classifier ANDs one
//! vector per dimension; the lowest set bit at or after a position is the next matching
//! rule.
//! - Wildcards: a rule without a predicate on a dimension has its bit in every vector
//!   of it, including the "field absent" one. A rule with one has its bit in a class
//!   only if the field is present there and `(value in set) != negated`; so `!=` is just
//!   "the other present classes", and absent fields never match (nft's dependencies).
//! - Prefixes (addresses): one LPM trie per family; a class is a prefix some predicate
//!   uses, holding the addresses whose longest listed prefix it is. A predicate contains
//!   the class iff it lists that prefix or an enclosing one, so enclosing prefixes'
//!   rules are OR-ed in at build time. A /0 entry per family is the class of addresses
//!   no prefix covers, so lookups of IP packets never miss.
//! - Ranges (ports, protocol, ICMP type, ct state bit): the domain is cut into
//!   elementary intervals at every range boundary; an array indexed by the value (65536
//!   + 1 "absent" entries for a port) holds the vector id of the interval.
//! - Exact values (ifindex, mark & mask, ct mark & mask): a hash from value to vector
//!   id, and a "miss" vector for every other value.
//! - Identical vectors are stored once: maps hold vector ids into one table.
//!
//! Chains (`chains.rs`): a table of chain ranges and policies, a table of rule actions
//! (jump targets resolved to chain ids), and a bound on the evaluation's steps.

mod chains;
pub mod checks;
mod lbvs;
pub use lbvs::TableIndex;
pub mod sets;
mod write_queue;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::ir::{Chain, PortRange, Program, Rule, Statement, Verdict};

/// 64-bit words in one map entry of the vector table (4096 rules).
pub const BLOCK_WORDS: usize = 64;
pub const BLOCK_RULES: usize = BLOCK_WORDS * 64;
/// One 4096-rule block of a bit-vector. Shared: a compile updated from an earlier one
/// keeps the blocks that did not change, and a loaded program's image holds the same
/// ones, so that telling what changed compares pointers, not 512 bytes.
pub type Block = std::sync::Arc<[u64; BLOCK_WORDS]>;
/// Index of the "not IP" entry of the l4proto array.
pub const L4PROTO_ABSENT: usize = 256;
/// Index of the "no ports" entry of the port arrays.
pub const PORT_ABSENT: usize = 65536;
/// ICMPv6 type t is entry ICMP6_BASE + t of the ICMP array.
pub const ICMP6_BASE: usize = 256;
/// Index of the "neither ICMP nor ICMPv6" entry of the ICMP array.
pub const ICMP_ABSENT: usize = 512;
/// Entries of the ct state array: the state's bit number (`NF_CT_STATE_*` = 1 << n).
pub const CTSTATE_VALUES: usize = 8;
/// More rules than this are refused (the table's keys are u32; this keeps far below).
pub const MAX_RULES: usize = 1 << 20;
/// Base chains per program (a bit mask per packet kind in the config).
pub const MAX_BASE_CHAINS: usize = 32;
/// bpf_loop's own limit on iterations (BPF_MAX_LOOPS).
pub const MAX_STEPS: u64 = 1 << 23;

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
    CtState = 10,
    CtMark = 11,
}

pub const NDIMS: usize = 12;

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
        Dim::CtState,
        Dim::CtMark,
    ];

    pub fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// Rule actions as stored in `rules` (`enum ns_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ActionKind {
    Accept = 0,
    Drop = 1,
    Continue = 2,
    Jump = 3,
    Goto = 4,
    Return = 5,
    Reject = 6,
}

impl From<Verdict> for ActionKind {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Accept => ActionKind::Accept,
            Verdict::Drop => ActionKind::Drop,
        }
    }
}

/// Packet kinds, indexes of [`BpfConfig::base_scope`].
pub const KIND_IPV4: usize = 0;
pub const KIND_IPV6: usize = 1;
pub const KIND_OTHER: usize = 2;

/// Bits of [`BpfConfig::features`] (`NS_F_*`).
pub const FEATURE_CONNTRACK: u32 = 1 << 0;
pub const FEATURE_CHECKS: u32 = 1 << 1;
pub const FEATURE_STMTS: u32 = 1 << 2;
pub const FEATURE_REJECT: u32 = 1 << 3;
pub const FEATURE_JUMPS: u32 = 1 << 4;
pub const FEATURE_ROUTE_ANSWERS: u32 = 1 << 5;
pub const FEATURE_RESIDUAL: u32 = 1 << 6;
/// Some residual program reads the packet as netdev chains see it
/// ([`crate::residual::Insn::NetdevView`]); off, the verifier prunes that code.
pub const FEATURE_NETDEV_VIEW: u32 = 1 << 7;
/// Answers redirected at TC ingress are marked for the egress programs
/// ([`crate::ir::Program::mark_answers`]).
pub const FEATURE_MARK_ANSWERS: u32 = 1 << 8;
/// Some rule writes packet headers ([`crate::ir::Statement::PayloadSet`]).
pub const FEATURE_WRITES: u32 = 1 << 9;
/// Bridge family chains ([`crate::ir::Program::bridge_frames`]).
pub const FEATURE_BRIDGE: u32 = 1 << 10;
/// [`crate::ir::Program::bridge_tx_mark`].
pub const FEATURE_BRIDGE_TX: u32 = 1 << 11;
/// [`crate::ir::Program::bridge_clear_mark`].
pub const FEATURE_BRIDGE_CLEAR: u32 = 1 << 12;
/// Some rule strips TCP options ([`crate::ir::Statement::TcpOptStrip`]); off, the
/// verifier prunes that statement, which other header-writing programs cannot afford.
pub const FEATURE_TCPOPTSTRIP: u32 = 1 << 13;
/// Some residual program uses xt_socket, ipv6header or rateest; off, the verifier
/// prunes their code, which programs with header writes cannot afford.
pub const FEATURE_XT_LATE_OPS: u32 = 1 << 14;
/// Some rule tests or sets connection labels ([`crate::ir::Test::CtLabel`]).
pub const FEATURE_CT_LABELS: u32 = 1 << 21;
/// Some residual program reads the socket file's credentials (xt_owner, `meta
/// skuid/skgid`; bpf/lib/sockcred.h); off, the verifier prunes those reads.
pub const FEATURE_SOCKCRED: u32 = 1 << 15;
/// Some rule has an xt_HMARK statement ([`crate::ir::Statement::Hmark`]); off, the
/// verifier prunes its code.
pub const FEATURE_HMARK: u32 = 1 << 18;
/// Some residual program uses xt_recent's lists ([`crate::residual::Insn::XtRecent`]).
pub const FEATURE_RECENT: u32 = 1 << 17;
pub const FEATURE_ADDRTYPE_RT: u32 = 1 << 20;
/// Some residual program runs xt_u32's tests ([`crate::residual::Insn::XtU32`],
/// bpf/lib/xt_u32.h); off, the verifier prunes them.
pub const FEATURE_XT_U32: u32 = 1 << 23;
/// Some rule has ipt_ECN's TCP operations ([`crate::ir::Statement::EcnTcp`],
/// bpf/lib/xt_ecn.h); off, the verifier prunes that statement.
pub const FEATURE_XT_ECN: u32 = 1 << 24;
/// [`crate::ir::Program::forward_answers`] and some rule rejects.
pub const FEATURE_FWD_REJECT: u32 = 1 << 19;
/// Some rule logs to an nfnetlink_log group ([`crate::ir::Statement::Nflog`]).
pub const FEATURE_NFLOG: u32 = 1 << 16;
/// Some of those run at input (the spec key's hook is NF_INET_LOCAL_IN): TC ingress
/// looks up the socket early demux attaches, for NFULA_UID/GID (bpf/lib/nflog_demux.h).
pub const FEATURE_NFLOG_INPUT: u32 = 1 << 22;

/// Conntrack timeouts, indexes of [`BpfConfig::ct_timeout`] (`enum ns_ct_timeout`);
/// see [`crate::conntrack::Timeouts::to_config`].
pub const CT_TIMEOUTS: usize = 16;

/// The program's read-only configuration, `struct ns_config` in bpf/lib/common.h:
/// what the verifier sees as constants. Programs whose configurations are equal can
/// take each other's rulesets by rewriting maps (`crate::patch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfConfig {
    /// [`Dim::bit`]s of the dimensions some rule tests.
    pub dims: u32,
    /// `FEATURE_*` bits.
    pub features: u32,
    /// Set by the loader: the TC program is attached at egress.
    pub egress: u32,
    pub mark_mask: [u32; 2],
    pub ctmark_mask: u32,
    /// Set by the loader: conntrack timeouts in seconds.
    pub ct_timeout: [u32; CT_TIMEOUTS],
    /// Set by the loader: TC ingress of the loopback device, whose packets conntrack
    /// saw at its egress already.
    pub loopback_ingress: u32,
    /// Set by the loader: entries per vector in `vector_blocks` (at least `nblocks`).
    pub block_stride: u32,
    /// Set by the loader: the cookie of the namespace the program serves, which the
    /// socket matches compare skb->sk's namespace with (net_eq()).
    pub netns_cookie: u64,
}

/// The ruleset's values the program reads from its .bss (`struct ns_live`): a commit
/// may rewrite them in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfLive {
    /// Rules of all chains.
    pub nrules: u32,
    /// 4096-rule blocks per vector.
    pub nblocks: u32,
    /// bpf_loop bound: the most steps any packet's path through the chains can take.
    pub max_steps: u32,
    pub nbase: u32,
    /// Per packet kind ([`KIND_IPV4`], ...): bit b set when base chain b sees it.
    pub base_scope: [u32; 3],
    /// Hash dimensions: vector id for values not in the map.
    pub miss: [u32; NDIMS],
    /// Address dimensions: vector id for packets that are not IP.
    pub absent: [u32; NDIMS],
    /// By packet kind and ct state bit: `(rule + 1) << 1 | drop` of a rule that decides
    /// for all such packets before any other can match (see `chains::fast_rules`).
    pub fast_rule: [[u32; 8]; 3],
}

/// One chain's rule range and policy (`struct ns_chain`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfChain {
    pub start: u32,
    pub end: u32,
    /// [`ActionKind`] of a base chain's policy (accept for regular chains).
    pub policy: u32,
    /// `NS_CHAIN_*` bits.
    pub flags: u32,
}

/// One rule's action (`struct ns_rule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfRule {
    /// [`ActionKind`].
    pub kind: u8,
    /// `RULE_*` bits.
    pub flags: u8,
    pub pad: u16,
    /// Jump/goto: the target chain id.
    pub arg: u32,
    /// With [`RULE_CHECKS`]/[`RULE_STMTS`]: index into the rule extension table.
    pub ext: u32,
}

pub const RULE_CHECKS: u8 = 1 << 0;
pub const RULE_STMTS: u8 = 1 << 1;
/// `NS_CHAIN_NETDEV`: a netdev base chain (at egress it charges the link-layer header).
pub const CHAIN_NETDEV: u32 = 1;

/// Entries of one address dimension's two LPM tries: prefix -> vector id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LpmEntries {
    pub v4: Vec<(Ipv4Net, u32)>,
    pub v6: Vec<(Ipv6Net, u32)>,
}

/// Everything the loader writes into the maps for one program. Dimensions no rule tests
/// have empty contents and are not looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledProgram {
    pub config: BpfConfig,
    pub live: BpfLive,
    /// The vector table, as distinct 4096-rule blocks of 64 words (map `vectors`;
    /// block 0 is all zeros) and, for entry `vector id * nblocks + block` (map
    /// `vector_blocks`), the id of that block of that vector.
    pub blocks: Vec<Block>,
    pub vector_blocks: Vec<u32>,
    pub saddr: LpmEntries,
    pub daddr: LpmEntries,
    /// Array contents, indexed by value (last entry: field absent).
    pub l4proto: Vec<u32>,
    pub sport: Vec<u32>,
    pub dport: Vec<u32>,
    pub icmp: Vec<u32>,
    /// Indexed by the ct state's bit number (no absent entry).
    pub ctstate: Vec<u32>,
    /// Hash contents; other keys use `config.miss`.
    pub iif: Vec<(u32, u32)>,
    pub oif: Vec<(u32, u32)>,
    pub mark: [Vec<(u32, u32)>; 2],
    pub ctmark: Vec<(u32, u32)>,
    /// By chain id: base chains first, in order, then regular chains by name.
    pub chains: Vec<BpfChain>,
    /// By rule number.
    pub rules: Vec<BpfRule>,
    /// Residual checks and statements of the rules that have them (`BpfRule::ext`).
    pub rule_ext: Vec<checks::BpfRuleExt>,
    /// Token buckets of `limit` matches, full.
    pub limits: Vec<checks::BpfLimit>,
    pub quotas: Vec<checks::BpfQuota>,
    /// Whose state each entry of `limits` / `quotas` is (shared tables key by it).
    pub limit_states: Vec<Option<crate::ir::StateId>>,
    pub quota_states: Vec<Option<crate::ir::StateId>>,
    /// `log` prefixes by id (the id in log events).
    pub log_prefixes: Vec<String>,
    /// Named sets: id and key type.
    pub sets: sets::SetIds,
    /// The set maps' initial entries.
    pub set_entries: Vec<sets::SetEntry>,
    /// Residual programs' operations and their lookups' elements ([`checks::CHECK_RESIDUAL`]).
    pub residual_insns: Vec<checks::BpfResidualInsn>,
    pub residual_elems: Vec<checks::BpfResidualElem>,
    /// [`crate::ir::Program::ct_labels`]: the namespace's shared `ct_labels` switch.
    pub ct_labels: bool,
    /// Per dimension, the id of its "field absent" vector (also where no key holds it):
    /// what [`compile_program_after`] needs besides the maps' contents.
    pub wild: [u32; NDIMS],
    /// The hash tables that deduplicated `blocks` and `vector_blocks`, for the next
    /// [`compile_program_after`] (a cache: any two compare equal).
    pub lbvs_index: lbvs::TableIndex,
}

/// The compiled form of a lone chain (a program with one base chain).
pub type CompiledChain = CompiledProgram;

impl CompiledProgram {
    /// Some rule reads a connection's packets, bytes or avgpkt: loading the program
    /// turns accounting on in its namespace (nft_ct_get_init() sets nf_conntrack_acct).
    pub fn enables_ct_acct(&self) -> bool {
        self.residual_insns
            .iter()
            .any(|i| i.op == checks::RES_CT && (14..=16).contains(&i.arg))
    }

    pub fn nrules(&self) -> usize {
        self.live.nrules as usize
    }

    /// Counter slots: one per rule, then one per base chain's policy.
    pub fn ncounters(&self) -> usize {
        self.nrules() + self.live.nbase as usize
    }

    /// Entries of the vector index (vectors × blocks).
    pub fn vector_entries(&self) -> usize {
        self.vector_blocks.len()
    }

    /// Distinct blocks stored.
    pub fn block_entries(&self) -> usize {
        self.blocks.len()
    }

    /// Distinct bit-vectors after deduplication.
    pub fn distinct_vectors(&self) -> usize {
        self.vector_entries() / self.live.nblocks as usize
    }

    pub fn uses(&self, dim: Dim) -> bool {
        self.config.dims & dim.bit() != 0
    }

    /// Whether vector `id` has the bit of `rule`.
    pub fn vector_bit(&self, id: u32, rule: usize) -> bool {
        let nblocks = self.live.nblocks as usize;
        let block = self.vector_blocks[id as usize * nblocks + rule / 4096] as usize;
        self.blocks[block][(rule % 4096) / 64] & (1 << (rule % 64)) != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("rule {rule}: empty port range {}-{}", range.first, range.last)]
    BadPortRange { rule: usize, range: PortRange },
    #[error("at most two distinct meta mark masks per program, got {masks:x?}")]
    TooManyMarkMasks { masks: Vec<u32> },
    #[error("at most one ct mark mask per program, got {masks:x?}")]
    TooManyCtMarkMasks { masks: Vec<u32> },
    #[error("{rules} rules: at most {MAX_RULES} per program")]
    TooManyRules { rules: usize },
    #[error("{chains} base chains: at most {MAX_BASE_CHAINS} per program")]
    TooManyBaseChains { chains: usize },
    #[error("rule {rule}: no regular chain named {chain:?}")]
    UnknownChain { rule: usize, chain: String },
    #[error("chain {chain:?} reaches itself through jumps/gotos")]
    ChainLoop { chain: String },
    #[error(
        "rule {rule}: more than {} residual checks (ct status, sets, limit, quota)",
        checks::MAX_CHECKS
    )]
    TooManyChecks { rule: usize },
    #[error("rule {rule}: residual program: {what}")]
    BadResidual { rule: usize, what: String },
    #[error("rule {rule}: more than {} statements", checks::MAX_STMTS)]
    TooManyStatements { rule: usize },
    #[error("rule {rule}: limit with a zero rate or out of range")]
    BadLimit { rule: usize },
    #[error("rule {rule}: no set named {set:?}")]
    UnknownSet { rule: usize, set: String },
    #[error("rule {rule}: set {set:?} has another key type than the field")]
    SetKeyMismatch { rule: usize, set: String },
    #[error("set {set:?}: an element of another key type")]
    SetElementMismatch { set: String },
    #[error("log statements in a program that writes packet headers")]
    LogWithWrites,
    #[error(
        "a packet may queue {most} header writes (TCP option strips count 3), more than {}",
        write_queue::MAX_QUEUED_WRITES
    )]
    TooManyWrites { most: usize },
}

/// Compiles one chain, as a program with that base chain. Fails on what the data plane
/// cannot enforce, so that nothing is accepted and left unenforced.
pub fn compile(chain: &Chain) -> Result<CompiledChain, BuildError> {
    compile_program(&Program::single(chain.clone()))
}

/// Compiles a program. Fails on what the data plane cannot enforce.
pub fn compile_program(program: &Program) -> Result<CompiledProgram, BuildError> {
    compile_program_after(program, None).map(|(c, _)| c)
}

/// Compiles `program`, given `prev`: an earlier program and its compiled form. When
/// `program`'s rules are `prev`'s with a few appended at the end of the rule numbering
/// or its last few deleted, the LBVS maps are updated from `prev`'s instead of built
/// from scratch (`lbvs/update.rs`); the result has the same map contents up to the
/// numbering of vectors and blocks. Also returns whether that update was made.
pub fn compile_program_after(
    program: &Program,
    prev: Option<(&Program, &CompiledProgram)>,
) -> Result<(CompiledProgram, bool), BuildError> {
    let set_ids = sets::SetIds::new(program);
    let set_entries = sets::initial_entries(program, &set_ids)?;
    let layout = chains::layout(program, &set_ids)?;
    let nrules = layout.rules.len();
    if nrules > MAX_RULES {
        return Err(BuildError::TooManyRules { rules: nrules });
    }
    let nblocks = nrules.div_ceil(BLOCK_RULES).max(1);
    let updated = match prev {
        Some((old_program, old)) => lbvs_after(old_program, old, &layout.rule_refs, nblocks)?,
        None => None,
    };
    let incremental = updated.is_some();
    let dims = match updated {
        Some(dims) => dims,
        None => lbvs::build(&layout.rule_refs, nblocks)?,
    };
    let mut features = layout.features;
    if layout.extras.residual_insns.iter().any(|i| {
        matches!(
            i.op,
            checks::RES_WRITE | checks::RES_TCPOPTSTRIP | checks::RES_XT_ECN_TCP
        )
    }) {
        features |= FEATURE_WRITES;
        // Log events carry the packet as it leaves the program, not as it was when
        // the statement ran.
        if program.chains_in_order().any(|(_, c)| {
            c.rules.iter().any(|r| {
                r.statements
                    .iter()
                    .any(|s| matches!(s, Statement::Log { .. } | Statement::Nflog { .. }))
            })
        }) {
            return Err(BuildError::LogWithWrites);
        }
        if layout
            .extras
            .residual_insns
            .iter()
            .any(|i| i.op == checks::RES_XT_ECN_TCP)
        {
            features |= FEATURE_XT_ECN;
        }
        let strips = write_queue::strips_tcp_options(program);
        if strips {
            features |= FEATURE_TCPOPTSTRIP;
        }
        if strips || features & FEATURE_XT_ECN != 0 {
            let most = write_queue::most_queued_writes(program);
            if most > write_queue::MAX_QUEUED_WRITES {
                return Err(BuildError::TooManyWrites { most });
            }
        }
    }
    if !layout.extras.residual_insns.is_empty() {
        features |= FEATURE_RESIDUAL;
    }
    if program.chains_in_order().any(|(_, c)| {
        c.rules.iter().any(|r| {
            r.statements
                .iter()
                .any(|s| matches!(s, Statement::Nflog { .. }))
        })
    }) {
        features |= FEATURE_NFLOG;
    }
    // The dataplane's nflog keys are `nflog/<hook>/...`; 1 is NF_INET_LOCAL_IN.
    if program.chains_in_order().any(|(_, c)| {
        c.rules.iter().any(|r| {
            r.statements.iter().any(|s| {
                matches!(s, Statement::Nflog { spec, .. } if spec.split('/').nth(1) == Some("1"))
            })
        })
    }) {
        features |= FEATURE_NFLOG_INPUT;
    }
    if layout
        .extras
        .ext
        .iter()
        .any(|x| x.checks.iter().any(|c| c.kind == checks::CHECK_CTLABEL))
    {
        features |= FEATURE_CT_LABELS;
    }
    if layout
        .extras
        .residual_insns
        .iter()
        .any(|i| i.op == checks::RES_HMARK)
    {
        features |= FEATURE_HMARK;
    }
    if layout
        .extras
        .residual_insns
        .iter()
        .any(|i| i.op == checks::RES_NETDEV)
    {
        features |= FEATURE_NETDEV_VIEW;
    }
    if layout.extras.residual_insns.iter().any(|i| {
        matches!(
            i.op,
            checks::RES_XT_SOCKET | checks::RES_XT_IPV6_HEADER_TYPES | checks::RES_XT_RATEEST
        )
    }) {
        features |= FEATURE_XT_LATE_OPS;
    }
    // Log prefixes are the data plane's `level/flags/prefix` keys; NF_LOG_UID (8)
    // asks for the socket's credentials.
    let log_uid = |key: &String| {
        key.split('/')
            .nth(1)
            .and_then(|f| f.parse::<u32>().ok())
            .is_some_and(|f| f & 8 != 0)
    };
    if layout
        .extras
        .residual_insns
        .iter()
        .any(|i| matches!(i.op, checks::RES_XT_OWNER | checks::RES_SOCK_UGID))
        || layout.extras.log_prefixes.iter().any(log_uid)
    {
        features |= FEATURE_SOCKCRED;
    }
    if layout
        .extras
        .residual_insns
        .iter()
        .any(|i| i.op == checks::RES_XT_RECENT)
    {
        features |= FEATURE_RECENT;
    }
    if layout
        .extras
        .residual_insns
        .iter()
        .any(|i| i.op == checks::RES_XT_ADDRTYPE)
    {
        features |= FEATURE_ADDRTYPE_RT;
    }
    if layout
        .extras
        .residual_insns
        .iter()
        .any(|i| i.op == checks::RES_XT_U32)
    {
        features |= FEATURE_XT_U32;
    }
    let config = BpfConfig {
        dims: dims.dims,
        features,
        mark_mask: dims.mark_mask,
        ctmark_mask: dims.ctmark_mask,
        ..BpfConfig::default()
    };
    let live = BpfLive {
        nrules: nrules as u32,
        nblocks: nblocks as u32,
        max_steps: layout.max_steps,
        nbase: program.base_chains.len() as u32,
        base_scope: layout.base_scope,
        fast_rule: layout.fast_rule,
        miss: dims.miss,
        absent: dims.absent,
    };
    Ok((
        CompiledProgram {
            config,
            live,
            blocks: dims.blocks,
            vector_blocks: dims.vector_blocks,
            saddr: dims.saddr,
            daddr: dims.daddr,
            l4proto: dims.l4proto,
            sport: dims.sport,
            dport: dims.dport,
            icmp: dims.icmp,
            ctstate: dims.ctstate,
            iif: dims.iif,
            oif: dims.oif,
            mark: dims.mark,
            ctmark: dims.ctmark,
            chains: layout.chains,
            rules: layout.rules,
            rule_ext: layout.extras.ext,
            limits: layout.extras.limits,
            quotas: layout.extras.quotas,
            limit_states: layout.extras.limit_states,
            quota_states: layout.extras.quota_states,
            log_prefixes: layout.extras.log_prefixes,
            sets: set_ids,
            set_entries,
            residual_insns: layout.extras.residual_insns,
            residual_elems: layout.extras.residual_elems,
            ct_labels: program.ct_labels,
            wild: dims.wild,
            lbvs_index: dims.index,
        },
        incremental,
    ))
}

/// The LBVS dimensions of `rules` updated from `old`'s (compiled from `old_program`),
/// if the rules both have in common are the same (their matches: all the LBVS reads).
fn lbvs_after(
    old_program: &Program,
    old: &CompiledProgram,
    rules: &[&Rule],
    nblocks: usize,
) -> Result<Option<lbvs::Dimensions>, BuildError> {
    let old_rules: Vec<&Rule> = old_program
        .chains_in_order()
        .flat_map(|(_, c)| c.rules.iter())
        .collect();
    if old_rules.len() != old.live.nrules as usize {
        return Ok(None);
    }
    let common = old_rules.len().min(rules.len());
    // The vectors depend on the LBVS matches only (`lbvs::Predicates`): residual
    // checks (sets, limits, residual programs, often the larger part of a rule) need
    // no comparing; the layout is built anew anyway.
    let lbvs_test = |m: &&crate::ir::Match| lbvs::is_dimension_test(&m.test);
    let same = old_rules[..common]
        .iter()
        .zip(&rules[..common])
        .all(|(a, b)| {
            a.ptr_eq(b)
                || a.matches
                    .iter()
                    .filter(lbvs_test)
                    .eq(b.matches.iter().filter(lbvs_test))
        });
    if !same {
        return Ok(None);
    }
    let prev = lbvs::Prev {
        nrules: old_rules.len(),
        nblocks: old.live.nblocks as usize,
        dims: old.config.dims,
        mark_mask: old.config.mark_mask,
        ctmark_mask: old.config.ctmark_mask,
        miss: old.live.miss,
        wild: old.wild,
        index: &old.lbvs_index,
        blocks: &old.blocks,
        vector_blocks: &old.vector_blocks,
        saddr: &old.saddr,
        daddr: &old.daddr,
        arrays: [
            &old.l4proto,
            &old.sport,
            &old.dport,
            &old.icmp,
            &old.ctstate,
        ],
        hashes: [&old.iif, &old.oif, &old.mark[0], &old.mark[1], &old.ctmark],
    };
    lbvs::update(&prev, rules, &old_rules[common..], nblocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{ct_state, Action, L3Scope, Match, Rule, Test};
    use std::collections::BTreeMap;

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
        (0..c.nrules()).filter(|&r| c.vector_bit(id, r)).collect()
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
        assert_eq!(rules_in(&c, c.live.absent[Dim::Saddr as usize]), [3]);
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
        assert_eq!(c.vector_entries(), 2);
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
                .map_or(c.live.miss[Dim::Iif as usize], |e| e.1)
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
            Err(BuildError::UnknownChain {
                rule: 1,
                chain: "other".into()
            })
        );
        let bad = chain(vec![(vec![Match::is(dport(&[(20, 10)]))], Action::Drop)]);
        assert!(matches!(
            compile(&bad),
            Err(BuildError::BadPortRange { rule: 0, .. })
        ));
        let loops = Program {
            base_chains: vec![chain(vec![(vec![], Action::Jump("a".into()))])],
            chains: BTreeMap::from([
                (
                    "a".to_string(),
                    chain(vec![(vec![], Action::Goto("b".into()))]),
                ),
                (
                    "b".to_string(),
                    chain(vec![(vec![], Action::Jump("a".into()))]),
                ),
            ]),
            ..Program::default()
        };
        assert!(matches!(
            compile_program(&loops),
            Err(BuildError::ChainLoop { .. })
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
        assert_eq!(c.live.nblocks, 3);
        // Three blocks, the end, and every rule able to match once.
        assert_eq!(c.live.max_steps as usize, 3 + 1 + n);
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
        assert_eq!(compiled.live.nrules, 3);
        assert_eq!(compiled.live.max_steps, 1 + 1 + 3);
        assert_eq!(compiled.live.nbase, 1);
        assert_eq!(compiled.live.base_scope, [0, 1, 0]);
        assert_eq!(
            compiled.chains,
            [BpfChain {
                start: 0,
                end: 3,
                policy: ActionKind::Drop as u32,
                flags: 0
            }]
        );
        let kinds: Vec<u8> = compiled.rules.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [2, 2, 1]);
    }

    #[test]
    fn chains_are_ranges_of_one_numbering_and_jumps_resolve_to_chain_ids() {
        let program = Program {
            base_chains: vec![
                chain(vec![
                    (vec![], Action::Jump("z".into())),
                    (vec![], Action::Accept),
                ]),
                Chain {
                    scope: L3Scope::Ipv4,
                    policy: Verdict::Drop,
                    rules: vec![Rule::new(vec![], Action::Goto("a".into()))],
                },
            ],
            chains: BTreeMap::from([
                ("z".to_string(), chain(vec![(vec![], Action::Return)])),
                (
                    "a".to_string(),
                    chain(vec![
                        (vec![Match::is(Test::CtState(ct_state::NEW))], Action::Drop),
                        (vec![], Action::Jump("z".into())),
                    ]),
                ),
            ]),
            ..Program::default()
        };
        let c = compile_program(&program).unwrap();
        // Base chains in order, then regular chains by name: a (id 2), z (id 3).
        let ranges: Vec<(u32, u32)> = c.chains.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(ranges, [(0, 2), (2, 3), (3, 5), (5, 6)]);
        let actions: Vec<(u8, u32)> = c.rules.iter().map(|r| (r.kind, r.arg)).collect();
        assert_eq!(
            actions,
            [
                (ActionKind::Jump as u8, 3),
                (ActionKind::Accept as u8, 0),
                (ActionKind::Goto as u8, 2),
                (ActionKind::Drop as u8, 0),
                (ActionKind::Jump as u8, 3),
                (ActionKind::Return as u8, 0),
            ]
        );
        assert_eq!(c.live.base_scope, [0b11, 0b01, 0b01]);
        assert_eq!(c.ncounters(), 6 + 2);
        // ct state new is bit 3: only that class holds rule 3; the rest are wildcards.
        assert!(c.uses(Dim::CtState));
        assert_eq!(rules_in(&c, c.ctstate[3]), [0, 1, 2, 3, 4, 5]);
        assert_eq!(rules_in(&c, c.ctstate[1]), [0, 1, 2, 4, 5]);
        // Steps: base 0 = 1 block + end + 2 rules + z (1 + 1 + 1); base 1 = 1 + 1 + 1 + a,
        // a = 1 + 1 + 2 + z.
        let z = 3;
        let a = 4 + z;
        assert_eq!(c.live.max_steps, (4 + z) + (3 + a));
    }
}
