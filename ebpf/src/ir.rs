//! The rule IR: one nftables chain as an ordered list of rules, each a conjunction of
//! field predicates and an action. This is what the engine will hand the data plane;
//! [`crate::maps`] compiles it to LBVS maps and [`crate::reference`] evaluates it
//! directly (the oracle the BPF program is tested against).
//!
//! Semantics, chosen to match nf_tables:
//! - A [`Match`] holds when its field is present in the packet and
//!   `(value in the set) != negated`. A field that is absent makes the match fail even
//!   when negated, as nft's implicit dependencies do (`tcp dport != 22` implies
//!   `meta l4proto tcp`; `ip saddr` in an inet chain implies `meta nfproto ipv4`).
//! - Presence: `ip saddr/daddr` on IPv4 packets, `ip6 saddr/daddr` on IPv6 packets,
//!   `l4proto` on IP packets (later fragments too) unless an IPv6 extension header
//!   chain cannot be walked (see [`crate::fields::PacketFields::l4proto`]), ports on TCP, UDP, UDP-Lite,
//!   SCTP and DCCP packets whose transport header is there (not on later fragments),
//!   `icmp type` on IPv4 ICMP and `icmpv6 type` on IPv6 ICMPv6 with a header, and
//!   `iif`, `oif` and `mark` always (0 when there is no such device or mark). What a
//!   hook knows: XDP has iif only (no mark); TC ingress iif and mark; TC egress also
//!   oif (the device it is attached to) and, for forwarded packets, iif.
//! - VLAN tags in the frame are looked through: a tagged frame is classified by the
//!   packet inside.
//! - Rules are tried in order; the first whose matches all hold and whose action is a
//!   verdict decides; [`Action::Continue`] rules (no verdict, e.g. a bare `counter`) are
//!   counted and evaluation goes on. No rule decides: the chain's policy.
//!
//! A hook runs a [`Program`]: its base chains in priority order and the regular chains
//! they jump to, with named sets and connection tracking; see its doc for verdicts across
//! chains. A lone [`Chain`] is a program with one base chain.
//!
//! Within a rule, stateless matches are tested first, then the stateful ones ([`Test::Limit`],
//! [`Test::Quota`]) in rule order, then [`Rule::statements`] run, then the action. nft runs a
//! rule's expressions strictly in order, so this differs only when a stateless match is
//! written after a `limit`/`quota`: nft consumes tokens/bytes for packets that then fail that
//! match, this data plane does not.

use std::collections::BTreeMap;

use ipnet::{Ipv4Net, Ipv6Net};

pub use crate::residual::ResidualProgram;

/// One chain, as the data plane enforces it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Which packets the chain sees; the others pass untouched.
    pub scope: L3Scope,
    /// The verdict when no rule decides.
    pub policy: Verdict,
    pub rules: Vec<Rule>,
}

/// The packets a chain sees, from its table's family: `ip` sees IPv4, `ip6` IPv6,
/// `inet` both, `netdev` every frame (non-IP ones have only iif/oif/mark).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L3Scope {
    Ipv4,
    Ipv6,
    Inet,
    Netdev,
}

/// A final verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
}

/// What a rule does when all its matches hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Drop,
    /// No verdict: count the rule and go on with the next one.
    #[default]
    Continue,
    /// Run the regular chain of that name ([`Program::chains`]), then, unless it decided,
    /// go on after this rule. Only in a [`Program`]; a lone [`Chain`] refuses it.
    Jump(String),
    /// Run that chain instead of the rest of this one (no return here).
    Goto(String),
    /// Back to the rule after the last jump; in a base chain: its policy.
    Return,
    /// Drop, and answer the sender (nft `reject`).
    Reject(Reject),
}

/// How `reject` answers. Never in answer to an ICMP error, a non-first fragment or
/// (TCP reset) a packet that is itself a reset; then the packet is only dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// `reject with icmp CODE` / `icmpv6 CODE`: destination unreachable (ICMP type 3,
    /// ICMPv6 type 1) with this code, in the packet's family. Plain `reject` in an ip table
    /// is `Icmp(3)` (port-unreachable), in an ip6 table `Icmp(4)`.
    Icmp(u8),
    /// `reject with icmpx CODE` (inet, netdev, bridge; plain `reject` there is port-unreachable):
    /// the `NFT_REJECT_ICMPX_*` code, mapped per family to an ICMP/ICMPv6 code.
    Icmpx(IcmpxCode),
    /// `reject with tcp reset`: a RST for TCP packets; others are only dropped.
    TcpReset,
}

/// `enum nft_reject_icmpx_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpxCode {
    NoRoute = 0,
    PortUnreachable = 1,
    HostUnreachable = 2,
    AdminProhibited = 3,
}

impl IcmpxCode {
    /// The ICMP (IPv4) destination-unreachable code (nft_reject_icmp_code()).
    pub fn icmp_code(self) -> u8 {
        match self {
            IcmpxCode::NoRoute => 0,          // net unreachable
            IcmpxCode::PortUnreachable => 3,  // port unreachable
            IcmpxCode::HostUnreachable => 1,  // host unreachable
            IcmpxCode::AdminProhibited => 13, // communication administratively filtered
        }
    }

    /// The ICMPv6 destination-unreachable code (nft_reject_icmpv6_code()).
    pub fn icmpv6_code(self) -> u8 {
        match self {
            IcmpxCode::NoRoute => 0,         // no route
            IcmpxCode::PortUnreachable => 4, // port unreachable
            IcmpxCode::HostUnreachable => 3, // address unreachable
            IcmpxCode::AdminProhibited => 1, // administratively prohibited
        }
    }
}

/// A rule: shared, so that the chains of several commits (and the several copies a
/// flattened chain makes of it) hold one allocation, copied as a pointer and compared
/// by pointer first. Its fields are [`RuleBody`]'s; writing one copies a shared body.
#[derive(Clone, Default, Eq)]
pub struct Rule(std::sync::Arc<RuleBody>);

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleBody {
    /// All must hold (an empty list matches every packet the chain sees).
    pub matches: Vec<Match>,
    pub action: Action,
    /// Side effects, in order, when the matches hold (before the action). The rule's
    /// packet/byte counter always counts; it needs no statement.
    pub statements: Vec<Statement>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, action: Action) -> Self {
        Rule::from(RuleBody {
            matches,
            action,
            statements: Vec::new(),
        })
    }

    /// Adds a statement (builder style).
    pub fn with(mut self, statement: Statement) -> Self {
        self.statements.push(statement);
        self
    }

    /// Whether `self` and `other` are one allocation (then they are equal).
    pub fn ptr_eq(&self, other: &Rule) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<RuleBody> for Rule {
    fn from(body: RuleBody) -> Self {
        Rule(std::sync::Arc::new(body))
    }
}

impl std::ops::Deref for Rule {
    type Target = RuleBody;
    fn deref(&self) -> &RuleBody {
        &self.0
    }
}

impl std::ops::DerefMut for Rule {
    fn deref_mut(&mut self) -> &mut RuleBody {
        std::sync::Arc::make_mut(&mut self.0)
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.ptr_eq(other) || *self.0 == *other.0
    }
}

impl std::hash::Hash for Rule {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A rule's side effects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Statement {
    /// `meta mark set ...`: `mark = (mark & and) ^ xor` (`set X` is `and 0, xor X`).
    /// Later matches on `meta mark`, in this and following chains, see the new mark.
    /// Only TC has a mark; at XDP the program sees and sets its own copy.
    SetMark { and: u32, xor: u32 },
    /// `ct mark set ...`: the same on the packet's connection (no effect without one).
    SetCtMark { and: u32, xor: u32 },
    /// `meta mark set ct mark [and/or ...]`: `mark = (ct mark & and) ^ xor`. Without a
    /// connection there is no ct mark: the rule stops here (nft_ct_get_eval breaks), as
    /// if it had not matched from this statement on.
    SetMarkFromCtMark { and: u32, xor: u32 },
    /// `ct mark set meta mark [and/or ...]`: `ct mark = (mark & and) ^ xor` (no effect
    /// without a connection).
    SetCtMarkFromMark { and: u32, xor: u32 },
    /// A mark statement whose value shifts a mark (`ct mark set (meta mark | 0x10) << 8`,
    /// `meta mark set ct mark >> 8`); without a connection it does what the four above
    /// do.
    MarkShift(MarkShift),
    /// xt_CONNMARK's `--save-mark` / `--restore-mark` ([`MarkMerge`]).
    MarkMerge(MarkMerge),
    /// xt_CLASSIFY: `skb->priority = value` (TC only; the eBPF programs write it when
    /// the chains are done, and nothing here reads it before).
    SetPriority(u32),
    /// `log`: an event to user space with the rule's number and the packet's headers
    /// ([`crate::loader::LogEvent`]). The prefix travels as an id: the index of the
    /// prefix in [`crate::maps::CompiledProgram::log_prefixes`].
    Log { prefix: String },
    /// xt_NFLOG / `log group`: a perf event to user space with the packet's frame up
    /// to `snap` bytes from the network header on (the most any listener's copy range
    /// can ask for: the rule's copy length, or NFULNL_COPY_RANGE_MAX). The spec (group,
    /// prefix, copy length, threshold) travels as an id into
    /// [`crate::maps::CompiledProgram::log_prefixes`], as `Log`'s prefix does.
    Nflog { spec: String, snap: u32 },
    /// `ip ttl set ...`, `tcp dport set ...`, ...: nft_payload_set_eval() on a header.
    /// Later rules and chains see the new bytes (and the fields parsed from them).
    /// Breaks the rule, as the kernel does, when the bytes are not in the packet.
    PayloadSet(PayloadWrite),
    /// xt_TCPOPTSTRIP ([`TcpOptStrip`]): TCP options become NOPs, the TCP checksum
    /// follows; later rules see the new bytes. Drops the packet when its TCP header is
    /// cut short.
    TcpOptStrip(TcpOptStrip),
    /// ipt_ECN's TCP operations ([`EcnTcp`]): the ECE and CWR bits of the TCP header
    /// after the IPv4 header (later fragments too), the TCP checksum following; later
    /// rules see the new bytes. Drops the packet when those 20 bytes are not there.
    EcnTcp(EcnTcp),
    /// xt_HMARK's packet tuple on an IPv4 packet ([`Hmark`]): skb->mark set outright.
    Hmark(Hmark),
}

/// xt_HMARK without `--hmark-tuple ct`, IPv4 (hmark_tg_v4(), hmark_pkt_set_htuple_ipv4(),
/// hmark_hash()): the masked addresses, ports and protocol of the packet (of the
/// packet an ICMP error quotes), hashed with jhash_3words() and scaled into
/// `modulus` (reciprocal_scale()), plus `offset`. Masks are in network byte order,
/// as `struct xt_hmark_info` holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hmark {
    pub src_mask: [u8; 4],
    pub dst_mask: [u8; 4],
    /// `port_mask`, `port_set`: the 4 bytes at the ports' place (source then
    /// destination, network order), or the SPI's.
    pub port_mask: [u8; 4],
    pub port_set: [u8; 4],
    /// `--hmark-method l3`: addresses only.
    pub l3: bool,
    /// The low byte of `proto_mask` (the protocol is one byte).
    pub proto_mask: u8,
    pub rnd: u32,
    /// Not 0 (hmark_tg_check()).
    pub modulus: u32,
    pub offset: u32,
}

/// include/linux/jhash.h's jhash_3words() (rewritten here, same arithmetic).
pub fn jhash_3words(a: u32, b: u32, c: u32, initval: u32) -> u32 {
    let init = initval.wrapping_add(0xdead_beef).wrapping_add(3 << 2);
    let (mut a, mut b, mut c) = (
        a.wrapping_add(init),
        b.wrapping_add(init),
        c.wrapping_add(init),
    );
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

impl Hmark {
    /// The mark of an IPv4 datagram (`ip`: from its network header to its end, the
    /// header itself valid), or `None` when the target leaves the mark alone (an ICMP
    /// error too short to hold the quoted header).
    pub fn mark_ipv4(&self, ip: &[u8]) -> Option<u32> {
        let ihl = usize::from(ip.first()? & 0xf) * 4;
        let mut nh = 0;
        // get_inner_hdr(): an ICMP error's quoted header (type <= NR_ICMP_TYPES).
        if ip.get(9) == Some(&1) {
            if let Some(icmp) = ip.get(ihl..ihl + 8) {
                if matches!(icmp[0], 3 | 4 | 5 | 11 | 12) {
                    nh = ihl + 8;
                    if ip.len() < nh + 20 {
                        return None;
                    }
                }
            }
        }
        let h = &ip[nh..];
        let word = |at: usize, mask: &[u8; 4]| {
            u32::from_be_bytes([
                h[at] & mask[0],
                h[at + 1] & mask[1],
                h[at + 2] & mask[2],
                h[at + 3] & mask[3],
            ])
        };
        let (src, dst) = (word(12, &self.src_mask), word(16, &self.dst_mask));
        let (mut proto, mut ports) = (0u8, 0u32);
        if !self.l3 {
            proto = h[9];
            let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
            // proto_ports_offset(): TCP, UDP, DCCP, ESP, SCTP, UDP-Lite at 0, AH at 4.
            let protoff = match proto {
                6 | 17 | 33 | 50 | 132 | 136 => Some(0),
                51 => Some(4),
                _ => None,
            };
            if let (false, false, Some(o)) = (proto == 1, fragment, protoff) {
                let at = nh + usize::from(h[0] & 0xf) * 4 + o;
                if let Some(b) = ip.get(at..at + 4) {
                    let m: Vec<u8> = (0..4)
                        .map(|k| (b[k] & self.port_mask[k]) | self.port_set[k])
                        .collect();
                    let s = u32::from(u16::from_be_bytes([m[0], m[1]]));
                    let d = u32::from(u16::from_be_bytes([m[2], m[3]]));
                    ports = if d > s { d << 16 | s } else { s << 16 | d };
                }
            }
        }
        let (a, b) = if dst < src { (dst, src) } else { (src, dst) };
        let hash = jhash_3words(a, b, ports, self.rnd) ^ u32::from(proto & self.proto_mask);
        let scaled = ((u64::from(hash) * u64::from(self.modulus)) >> 32) as u32;
        Some(scaled.wrapping_add(self.offset))
    }
}

/// xt_TCPOPTSTRIP's `--strip-options`: the option kinds whose bytes become NOPs, as
/// tcpoptstrip_mangle_packet() walks the options (a bit per kind, kind `k` at bit
/// `k % 8` of byte `k / 8`: `strip_bmap`'s u32 words in x86_64 byte order). Kinds 0
/// and 1 (end of options, NOP) are never in it (the compiler refuses them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpOptStrip {
    pub kinds: [u8; 32],
}

impl TcpOptStrip {
    /// Whether options of `kind` are stripped.
    pub fn strips(&self, kind: u8) -> bool {
        self.kinds[usize::from(kind / 8)] & (1 << (kind % 8)) != 0
    }
}

/// ipt_ECN's `--ecn-tcp-remove`, `--ecn-tcp-cwr`, `--ecn-tcp-ece`: the values the
/// ECE and CWR bits get (`None`: left alone); at least one is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EcnTcp {
    pub ece: Option<bool>,
    pub cwr: Option<bool>,
}

/// `to = ((((from & and) ^ xor) << or >> by) ^ post`, from and to the meta mark or
/// (`from_ct`, `to_ct`) the ct mark: nft's bitwise and/xor, one shift, and/xor after it
/// (folded into `and`, `xor` and `post`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MarkShift {
    pub from_ct: bool,
    pub to_ct: bool,
    pub and: u32,
    pub xor: u32,
    pub left: bool,
    /// 1..=31
    pub by: u8,
    pub post: u32,
}

impl MarkShift {
    /// The value written, from the mark read.
    pub fn apply(&self, from: u32) -> u32 {
        let v = (from & self.and) ^ self.xor;
        let by = u32::from(self.by & 31);
        let v = if self.left { v << by } else { v >> by };
        v ^ self.post
    }
}

/// xt_CONNMARK's `--save-mark` (`to_ct`: ct mark = (ct mark & keep) ^ ((mark & and)
/// shifted)) and `--restore-mark` (mark = (mark & keep) ^ ((ct mark & and) shifted)), as
/// connmark_tg_shift() computes them (a shift by 0 leaves the value). Without a
/// connection it does nothing and the rule goes on (the target's XT_CONTINUE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MarkMerge {
    pub to_ct: bool,
    /// The bits of the written mark kept (`~ctmask`, `~nfmask`).
    pub keep: u32,
    /// The bits of the other mark copied (`nfmask`, `ctmask`).
    pub and: u32,
    pub left: bool,
    /// 0..=31
    pub by: u8,
}

impl MarkMerge {
    /// The value written, from the mark written (`to`) and the other one (`from`).
    pub fn apply(&self, to: u32, from: u32) -> u32 {
        let v = from & self.and;
        let by = u32::from(self.by & 31);
        let v = if self.left { v << by } else { v >> by };
        (to & self.keep) ^ v
    }
}

/// One header write: `len` bytes at `offset` from the base become
/// `(old & mask) ^ xor` (an immediate value has a zero mask; nft's read-modify-write
/// of a field that is not byte-sized keeps the other bits with the mask), with the
/// kernel's checksum fix-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PayloadWrite {
    pub base: WriteBase,
    pub offset: u8,
    /// 1..=16
    pub len: u8,
    pub mask: [u8; 16],
    pub xor: [u8; 16],
    /// `NFT_PAYLOAD_CSUM_INET`: the 16-bit checksum at `csum_offset` from the base
    /// is updated for the new bytes (the IPv4 header checksum, or the TCP/UDP one,
    /// which the kernel leaves alone in CHECKSUM_PARTIAL packets).
    pub csum_inet: bool,
    pub csum_offset: u8,
    /// `NFT_PAYLOAD_L4CSUM_PSEUDOHDR`: the bytes are in the transport checksum's
    /// pseudo-header (addresses): TCP, UDP (unless its checksum is 0), UDP-Lite and
    /// ICMPv6 checksums are updated too.
    pub pseudo_header: bool,
    /// A fixed-up checksum of 0 stays 0 (csum_replace2(), ipv4_change_dsfield() of
    /// xtables targets); otherwise it is written as 0xffff, as nft_csum_replace() does.
    pub csum_keep_zero: bool,
    /// A saturating add to one of the bytes, after `mask` and `xor` (xt_TTL's and
    /// xt_HL's `--ttl-inc`/`--hl-dec`...); the checksums follow the result.
    pub saturating: Option<SaturatingAdd>,
}

/// Byte `at` of a write becomes `min(b + by, 255)`, or with `down` `max(b - by, 0)`
/// (ttl_tg()/hl_tg6()).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaturatingAdd {
    /// Index in the write's bytes (below `len`).
    pub at: u8,
    pub by: u8,
    pub down: bool,
}

impl SaturatingAdd {
    pub fn apply(&self, b: u8) -> u8 {
        if self.down {
            b.saturating_sub(self.by)
        } else {
            b.saturating_add(self.by)
        }
    }
}

/// Where a [`PayloadWrite`]'s offset counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteBase {
    Network,
    Transport,
}

impl PayloadWrite {
    /// The bytes written over `old` (`len` of them).
    pub fn new_bytes(&self, old: &[u8]) -> Vec<u8> {
        let mut new: Vec<u8> = old
            .iter()
            .zip(self.mask.iter().zip(&self.xor))
            .take(self.len as usize)
            .map(|(o, (m, x))| (o & m) ^ x)
            .collect();
        if let Some(s) = self.saturating {
            if let Some(b) = new.get_mut(s.at as usize) {
                *b = s.apply(*b);
            }
        }
        new
    }
}

impl Statement {
    /// `meta mark set VALUE`.
    pub fn set_mark(value: u32) -> Self {
        Statement::SetMark { and: 0, xor: value }
    }

    /// `ct mark set VALUE`.
    pub fn set_ct_mark(value: u32) -> Self {
        Statement::SetCtMark { and: 0, xor: value }
    }

    /// `base + offset` set to `value` (an immediate).
    pub fn payload_set(base: WriteBase, offset: u8, value: &[u8]) -> Self {
        let mut xor = [0; 16];
        xor[..value.len()].copy_from_slice(value);
        Statement::PayloadSet(PayloadWrite {
            base,
            offset,
            len: value.len() as u8,
            mask: [0; 16],
            xor,
            csum_inet: false,
            csum_offset: 0,
            pseudo_header: false,
            csum_keep_zero: false,
            saturating: None,
        })
    }
}

/// One predicate: `test`, or its negation (`!=`). See the module doc for absent fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Match {
    pub test: Test,
    pub negated: bool,
}

impl Match {
    /// `field == value` / `field { set }`.
    pub fn is(test: Test) -> Self {
        Match {
            test,
            negated: false,
        }
    }

    /// `field != value` / `field != { set }`.
    pub fn not(test: Test) -> Self {
        Match {
            test,
            negated: true,
        }
    }
}

/// A field and the set of values the predicate accepts (one value is a set of one; an
/// empty set accepts nothing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    IpSaddr(Vec<Ipv4Net>),
    IpDaddr(Vec<Ipv4Net>),
    Ip6Saddr(Vec<Ipv6Net>),
    Ip6Daddr(Vec<Ipv6Net>),
    /// `meta l4proto`: the transport protocol after IPv6 extension headers.
    L4Proto(Vec<u8>),
    Sport(Vec<PortRange>),
    Dport(Vec<PortRange>),
    IcmpType(Vec<u8>),
    Icmpv6Type(Vec<u8>),
    /// Interface indexes (`meta iif` / `meta oif`).
    Iif(Vec<u32>),
    Oif(Vec<u32>),
    /// `meta mark & mask == value` for some value (mask `u32::MAX` for a plain
    /// `meta mark`). A ruleset may use at most two distinct masks.
    Mark {
        mask: u32,
        values: Vec<u32>,
    },
    /// `ct state`: holds when the packet's state bit is in this mask
    /// ([`ct_state`] bits, as the kernel's `NF_CT_STATE_*`). Always present.
    CtState(u32),
    /// `ct status`: holds when the connection's status has a bit of this mask
    /// ([`ct_status`] bits, `IPS_*`). Like `ct mark`, absent (no match, even negated)
    /// for packets without a connection (invalid, untracked), as nft_ct_get_eval() breaks.
    CtStatus(u32),
    /// `ct mark & mask == value` for some value; absent without a connection. One mask
    /// per program.
    CtMark {
        mask: u32,
        values: Vec<u32>,
    },
    /// The field's value is an element of the named set ([`Program::sets`]), whose
    /// elements can change without recompiling. Absent field: no match, as above.
    InSet {
        field: SetField,
        set: String,
    },
    /// `limit rate N/unit [burst B]`: holds while the rule's token bucket has tokens
    /// (nft_limit's arithmetic); negated: `limit rate over`. Stateful, see the module doc.
    Limit(Limit),
    /// `quota N bytes`: holds while the bytes seen (this packet included) stay below
    /// `bytes`; negated: `quota over`. Every evaluated packet is added, as in nft_quota.
    Quota(Quota),
    /// xt_statistic's `--mode nth`: the rule's packet counter steps for each packet
    /// that reaches it. Stateful, like [`Test::Quota`].
    Nth(Nth),
    /// Everything else the rule tests, as a register program run only on the rules LBVS
    /// found ([`crate::residual`]); holds when the program runs to its end. Never negated
    /// (the program carries its own negations).
    Residual(ResidualProgram),
    /// The packet is an ARP frame the kernel's ARP hook of this direction sees here
    /// (`bpf/lib/arp.h`): what selects the packets of arp family chains.
    ArpHook,
    /// The frame is one a bridge hook sees here (`bpf/lib/bridge.h`): the classes it
    /// sees, as [`bridge_classes`] bits. Needs [`Program::bridge_frames`].
    BridgeHook(u32),
    /// xt_connlabel: the connection has the labels extension ([`Program::ct_labels`]
    /// when it was created) and label `bit` set; with `set`, a connection with the
    /// extension gets the bit set (nf_connlabel_set()) and the test holds. Negated, the
    /// answer is inverted after the bit is set. Stateful when `set`.
    CtLabel {
        bit: u8,
        set: bool,
    },
}

/// The frame classes of [`Test::BridgeHook`] (`NS_BR_*` in `bpf/lib/bridge.h`).
pub mod bridge_classes {
    /// Link-local frames to 01:80:c2:00:00:0X: bit X (0..16).
    pub const fn link_local(x: u8) -> u32 {
        1 << (x & 0xf)
    }
    /// Frames with a valid source MAC that are not link-local.
    pub const OTHER: u32 = 1 << 16;
    /// Every frame not looped back (at the bridge device, after the bridge's checks).
    pub const ALL: u32 = 1 << 17;
    /// At a port's egress: copies the bridge device sent (marked by its egress
    /// program, [`super::Program::bridge_tx_mark`]).
    pub const SENT: u32 = 1 << 18;
    /// At a port's egress: every other frame.
    pub const NOT_SENT: u32 = 1 << 19;
}

/// `ct state` bits (`NF_CT_STATE_*`).
pub mod ct_state {
    pub const INVALID: u32 = 1 << 0;
    pub const ESTABLISHED: u32 = 1 << 1;
    pub const RELATED: u32 = 1 << 2;
    pub const NEW: u32 = 1 << 3;
    pub const UNTRACKED: u32 = 1 << 6;
}

/// `ct status` bits (`enum ip_conntrack_status`) this data plane sets.
pub mod ct_status {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
}

/// `limit rate [over] RATE/UNIT [burst BURST]`, as nft sends it (NFTA_LIMIT_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Packets (or bytes) per `unit_secs`.
    pub rate: u64,
    pub unit_secs: u64,
    /// Packets (or bytes) above the rate; 0 in a packet limit means the kernel's 5.
    pub burst: u32,
    /// `bytes/second` rather than packets.
    pub bytes: bool,
    /// Whose bucket this is; `None`: its own (this rule of this program).
    pub state: Option<StateId>,
}

/// `quota [over] BYTES [used USED]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    pub bytes: u64,
    /// Already consumed when the rule is loaded.
    pub used: u64,
    /// Whose counter this is; `None`: its own (this rule of this program).
    pub state: Option<StateId>,
}

/// `-m statistic --mode nth` (statistic_mt()): a counter that starts at `count`; each
/// packet that reaches the match sets it to 0 if it is `every`, else adds 1 (u32
/// arithmetic, atomically across CPUs), and the match holds when it became 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nth {
    pub every: u32,
    pub count: u32,
    /// Whose counter this is (the match's private state); `None`: its own.
    pub state: Option<StateId>,
}

impl Nth {
    /// Whether the `k`-th packet (from 1) that reaches the match sets the counter to 0:
    /// from `count <= every` the counter cycles through `0..=every`; from a larger one
    /// it first climbs to the u32 wrap, which is 0 too.
    pub fn hits(&self, k: u64) -> bool {
        let (every, start) = (self.every as u64, self.count as u64);
        if start > every {
            let first = (1u64 << 32) - start;
            return k >= first && (k - first).is_multiple_of(every + 1);
        }
        (start + k).is_multiple_of(every + 1)
    }
}

/// The nf_tables expression a limit or quota belongs to. The kernel keeps their state
/// in the rule's expression, so every program enforcing that rule (each interface and
/// direction, each guard alternative the rule is copied into, each generation while
/// the rule exists) must share one bucket: the loader keys the namespace's shared
/// tables by this. Rule handles are never reused in a table, table handles never in a
/// namespace, and a replaced rule gets a new handle, so a changed rule starts afresh,
/// as in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateId {
    pub table: u64,
    pub rule: u64,
    /// The expression's index in the rule.
    pub expr: u32,
}

/// The packet field a set lookup reads; the set's [`SetKey`] must fit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetField {
    IpSaddr,
    IpDaddr,
    Ip6Saddr,
    Ip6Daddr,
    L4Proto,
    Sport,
    Dport,
    Iif,
    Oif,
    Mark,
    CtMark,
}

impl SetField {
    /// The key type a set needs to be looked up with this field.
    pub fn key(self) -> SetKey {
        match self {
            SetField::IpSaddr | SetField::IpDaddr => SetKey::Ipv4,
            SetField::Ip6Saddr | SetField::Ip6Daddr => SetKey::Ipv6,
            SetField::L4Proto => SetKey::Proto,
            SetField::Sport | SetField::Dport => SetKey::Port,
            SetField::Iif | SetField::Oif | SetField::Mark | SetField::CtMark => SetKey::U32,
        }
    }
}

/// A named set: a key type and its elements. Address and port sets may hold prefixes and
/// ranges (nft `flags interval`); the others hold single values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Set {
    pub key: SetKey,
    pub elements: Vec<SetElement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKey {
    /// `ipv4_addr`
    Ipv4,
    /// `ipv6_addr`
    Ipv6,
    /// `inet_service`
    Port,
    /// `inet_proto`
    Proto,
    /// `ifindex` (`iface_index`), `mark`
    U32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetElement {
    Ipv4(Ipv4Net),
    Ipv6(Ipv6Net),
    Port(PortRange),
    Proto(u8),
    U32(u32),
}

impl SetElement {
    pub fn key(&self) -> SetKey {
        match self {
            SetElement::Ipv4(_) => SetKey::Ipv4,
            SetElement::Ipv6(_) => SetKey::Ipv6,
            SetElement::Port(_) => SetKey::Port,
            SetElement::Proto(_) => SetKey::Proto,
            SetElement::U32(_) => SetKey::U32,
        }
    }
}

/// What one hook runs, as nf_tables does (nf_hook_slow over the base chains, nft_do_chain
/// in each):
/// - `base_chains` run in order (the compiler sorts them by priority). `accept`, or a
///   policy of accept, ends only the current base chain: the next one sees the packet.
///   `drop` and `reject` are final. A base chain whose scope does not cover the packet
///   is skipped.
/// - `jump` pushes the position after the rule and runs the target; `goto` runs the
///   target without pushing; `return`, or the end of a regular chain, pops back; with
///   nothing to pop, the base chain's policy applies. At most [`JUMP_STACK_SIZE`]
///   jumps can be pending: a packet that would push one more is dropped, as
///   nft_do_chain() does (nf_tables refuses, with EMLINK, rulesets 16 jumps/gotos deep,
///   so a ruleset the control plane accepted never gets there). The map builder
///   refuses cycles.
/// - Rule numbering (counters, log events): the rules of `base_chains` in order, then
///   those of `chains` in name order. Counter numbers after the last rule are the base
///   chains' policies, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    pub base_chains: Vec<Chain>,
    /// Regular chains by name (names are program-wide: qualify them with the table if
    /// several tables are compiled together). Their `policy` and `scope` are unused.
    pub chains: BTreeMap<String, Chain>,
    /// Named sets by name (program-wide, like chains).
    pub sets: BTreeMap<String, Set>,
    /// Track connections before the chains run (nf_tables does it for a netns as soon as
    /// a rule uses a `ct` expression). Without it every packet's `ct state` is invalid.
    pub conntrack: bool,
    /// `reject` answers at TC ingress leave as the kernel's answers from an IP hook do:
    /// by the route back to the sender (a FIB lookup, through the device the packet came
    /// in on; no route there: no answer). Otherwise (netdev ingress, as
    /// nft_reject_netdev) they go back out of that device to the MAC they came from.
    pub route_answers: bool,
    /// Answers redirected at TC ingress are marked (`skb->tc_index`, `bpf/lib/reject.h`)
    /// and this program, at egress, judges them as locally generated packets (output
    /// chains, no input device), as the kernel's ip_local_out. Set when every device
    /// has an egress program to take the mark off.
    pub mark_answers: bool,
    /// A forward chain rejects: at TC egress, the answer to a forwarded packet leaves
    /// as the kernel's does, by the route back to the sender (from the source address
    /// that route gives an ICMP error), marked as [`Program::mark_answers`] marks them.
    pub forward_answers: bool,
    /// The program runs bridge family chains: frames are classified for
    /// [`Test::BridgeHook`] and lengths are counted as the bridge hooks count them
    /// (from the network header, untrimmed).
    pub bridge_frames: bool,
    /// At the bridge device's egress: accepted frames are marked (`skb->cb`) so
    /// that the ports' programs see them as the bridge's output (`bpf/lib/bridge.h`).
    pub bridge_tx_mark: bool,
    /// At egress: that mark is taken off (every egress program, while any is set).
    pub bridge_clear_mark: bool,
    /// Some rule of the namespace uses connection labels (net->ct.labels_used): new
    /// connections get the labels extension ([`Test::CtLabel`]).
    pub ct_labels: bool,
}

/// NFT_JUMP_STACK_SIZE.
pub const JUMP_STACK_SIZE: usize = 16;

impl Program {
    /// A program running one base chain.
    pub fn single(chain: Chain) -> Self {
        Program {
            base_chains: vec![chain],
            ..Program::default()
        }
    }

    /// Every chain in rule-numbering order: base chains, then regular ones by name.
    pub fn chains_in_order(&self) -> impl Iterator<Item = (ChainRef<'_>, &Chain)> {
        self.base_chains
            .iter()
            .enumerate()
            .map(|(i, c)| (ChainRef::Base(i), c))
            .chain(
                self.chains
                    .iter()
                    .map(|(name, c)| (ChainRef::Regular(name.as_str()), c)),
            )
    }

    /// Total number of rules.
    pub fn nrules(&self) -> usize {
        self.chains_in_order().map(|(_, c)| c.rules.len()).sum()
    }

    /// Whether some rule tests a `ct` field or sets the ct mark.
    pub fn uses_ct(&self) -> bool {
        self.chains_in_order().any(|(_, c)| {
            c.rules.iter().any(|r| {
                r.matches.iter().any(|m| {
                    matches!(
                        m.test,
                        Test::CtState(_)
                            | Test::CtStatus(_)
                            | Test::CtMark { .. }
                            | Test::CtLabel { .. }
                            | Test::InSet {
                                field: SetField::CtMark,
                                ..
                            }
                    ) || matches!(&m.test, Test::Residual(p) if p.reads_ct())
                }) || r.statements.iter().any(|s| {
                    matches!(
                        s,
                        Statement::SetCtMark { .. }
                            | Statement::SetMarkFromCtMark { .. }
                            | Statement::SetCtMarkFromMark { .. }
                    ) || matches!(s, Statement::MarkShift(m) if m.from_ct || m.to_ct)
                        || matches!(s, Statement::MarkMerge(_))
                })
            })
        })
    }
}

/// A chain of a [`Program`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainRef<'a> {
    Base(usize),
    Regular(&'a str),
}

/// An inclusive port range; `first == last` is a single port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    pub fn new(first: u16, last: u16) -> Self {
        PortRange { first, last }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}
