//! iptables-nft's compat expressions (`match`, `target`: nft_compat running an xtables
//! extension on its `struct xt_*_info`) back to the IR, one function per extension,
//! each with the kernel's semantics (net/netfilter/xt_*.c, ipt_REJECT.c,
//! ip6t_REJECT.c). What no IR form reproduces exactly is refused, naming the
//! extension and the option.
//!
//! Blobs are read at the x86_64 offsets of their C structs (host byte order unless
//! noted); the control plane already checked their sizes and ran each `checkentry`,
//! so the protocol an extension requires (`-p tcp` for `-m tcp`...) is the rule's
//! `meta l4proto` that iptables-nft puts before it.
//!
//! Known difference: a match that reads the transport header drops the packet outright
//! ("hotdrop") when that header is cut short (tcp under 20 bytes, udp and icmp/icmp6
//! under 8, multiport under 4) or, for tcp, when it is a fragment at offset 1; here
//! such a packet only fails the match, as it fails nft's own payload loads, and the
//! later rules judge it. (The kernel's conntrack calls these packets INVALID; they
//! never reach a socket. Drop rules ahead of the rule, as residual tests, were tried:
//! next to connection tracking they overflow the XDP program's 512-byte stack.)
//!
//! The extensions in the submodules (sctp, dccp, ah, mh, frag, hbh/dst, srh) do
//! reproduce their hotdrops: their residual operations (xt walks, ebpf
//! src/residual/xt.rs) end the program with a drop that the BPF program and the
//! reference turn into the packet's NF_DROP, uncounted. That drop runs as the rule's
//! last test, so the rule decompiler refuses any match after such an extension.

use std::collections::BTreeSet;

use netlink_proto::expr::compat::{Match as XtMatch, Target as XtTarget};
use netlink_proto::xt::{strnlen, Blob};
use nftshim_ebpf::fields::{IPPROTO_ICMP, IPPROTO_ICMPV6, PORT_PROTOCOLS};
use nftshim_ebpf::ir::{
    ct_state, Action, MarkMerge, MarkShift, Match, PortRange, Reject, Statement, Test,
};
use nftshim_ebpf::residual::{CmpOp, Insn, PayloadBase};

use super::residual::SCRATCH;
use super::rule::{
    ct_status_where, has_connection, log_spec_of, mark_set_allowed, mark_set_allowed_in, V4, V6,
};
use super::sets::{self, ByteRange};
use super::{Family, Hook};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_UDPLITE: u8 = 136;

/// What the rule established before the compat expression.
pub struct XtCx<'a> {
    pub family: Family,
    pub hook: Hook,
    /// IP versions the rule can still match (`V4 | V6` bits of the rule decompiler).
    pub families: u8,
    /// Transport protocols the rule can still match, once a predicate said.
    pub l4protos: Option<&'a BTreeSet<u8>>,
    /// The whole ruleset, for what depends on more than the rule (HMARK's `ct` tuple:
    /// whether the kernel tracks connections at all); `None` in unit tests.
    pub view: Option<&'a nftshim_engine::RulesetView<'a>>,
}

/// What one compat expression stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decompiled {
    /// Holds for every packet (`-m comment`).
    Always,
    /// Holds for no packet.
    Never,
    /// Holds when all these IR matches hold.
    Matches(Vec<Match>),
    /// Holds when all these IR matches hold and these residual operations, which use
    /// only the [`super::residual::SCRATCH`] registers, run to their end.
    Residual(Vec<Match>, Vec<Insn>),
    /// Holds when skb->dev is an Ethernet device and these residual operations (on the
    /// SCRATCH registers only) run to their end.
    EthernetResidual(Vec<Insn>),
    /// A target that acts and lets the packet go on (`XT_CONTINUE`).
    Statement(Statement),
    /// A target that decides.
    Verdict(Action),
    /// A target that acts, then decides (ebtables' targets).
    StatementVerdict(Statement, Action),
    /// A target that rewrites header bytes and lets the packet go on, when the rule
    /// decompiler's checks of header writes allow it there.
    Write(nftshim_ebpf::ir::PayloadWrite),
    /// A header write as [`Decompiled::Write`], then a statement (ipt_ECN's IP then
    /// TCP operations).
    WriteThenStatement(nftshim_ebpf::ir::PayloadWrite, Statement),
    /// Holds while the bytes of the packets the rule's quota saw (this one included)
    /// stay within `bytes` (`negated`: once they exceed it); the rule decompiler gives
    /// it the rule's identity, whose counter it is.
    Quota { bytes: u64, negated: bool },
    /// xt_statistic's `--mode nth` ([`nftshim_ebpf::ir::Nth`]), `!= negated`; the rule
    /// decompiler gives it the rule's identity, whose counter it is.
    Nth {
        every: u32,
        count: u32,
        negated: bool,
    },
    /// A match with a side effect (xt_connlabel `--set`): it must be the rule's last
    /// match, as limits and quotas are.
    Stateful(Match),
    /// xt_RATEEST: the rule counts into the estimator `name` (see [`rateest`]) and
    /// lets the packet go on.
    RateestCount {
        name: [u8; 16],
        interval: i8,
        ewma_log: u8,
    },
}

fn one(test: Test, negated: bool) -> Decompiled {
    Decompiled::Matches(vec![Match { test, negated }])
}

/// `-m NAME` of revision `rev`.
pub fn decompile_match(cx: &XtCx<'_>, m: &XtMatch) -> Result<Decompiled, String> {
    let name = m.ext_name().ok_or("match without a name")?;
    let rev = m.rev().unwrap_or(0);
    let b = Blob(m.info().ok_or("match without info")?);
    if cx.family == Family::Bridge {
        return ebt::decompile_match(cx, name, rev, b);
    }
    if cx.family == Family::Netdev {
        return Err("xt matches in netdev chains are not supported".into());
    }
    match (name, rev) {
        ("comment", 0) => Ok(Decompiled::Always),
        ("conntrack", 1..=3) => conntrack(rev, b),
        ("state", 0) => state(b),
        ("multiport", 1) => multiport(cx, b),
        ("tcp", 0) => tcp(cx, b),
        ("udp", 0) => udp(cx, b, IPPROTO_UDP),
        ("udplite", 0) => udp(cx, b, IPPROTO_UDPLITE),
        ("icmp", 0) => icmp(cx, b, V4, IPPROTO_ICMP),
        ("icmp6", 0) => icmp(cx, b, V6, IPPROTO_ICMPV6),
        ("mark", 1) => mark(b),
        ("connmark", 1) => connmark(b),
        ("iprange", 1) => iprange(cx, b),
        ("length", 0) => length(cx, b),
        ("mac", 0) => mac(cx, b),
        ("dscp", 0) => dscp(cx, b),
        ("tos", 1) => tos(cx, b),
        ("ttl", 0) => hop_limit(cx, b, V4),
        ("hl", 0) => hop_limit(cx, b, V6),
        ("helper", 0) => helper(b),
        ("quota", 0) => quota::quota(b),
        ("rateest", 0) => rateest::rateest_match(cx, b),
        ("connbytes", 0) => connbytes::connbytes(b),
        ("connlabel", 0) => connlabel::connlabel(b),
        ("connlimit", 1) => connlimit::connlimit(b),
        ("pkttype", 0) => pkttype::pkttype(b),
        ("cpu", 0) => cpu::cpu(cx, b),
        ("statistic", 0) => statistic::statistic(b),
        ("addrtype", 0 | 1) => addrtype::addrtype(cx, rev, b),
        ("cgroup", 0..=2) => cgroup::cgroup(cx, rev, b),
        ("socket", 0..=3) => socket::socket(cx, rev, b),
        ("owner", 1) => owner::owner(cx, b),
        ("sctp", 0) => sctp::sctp(cx, b),
        ("dccp", 0) => dccp::dccp(cx, b),
        ("ah", 0) => ipsec_mh::ah(cx, b),
        ("ipcomp", 0) => ipsec_mh::ipcomp(cx, b),
        ("mh", 0) => ipsec_mh::mh(cx, b),
        ("frag", 0) => frag6::frag(cx, b),
        ("hbh", 0) => hbh6::options_header(cx, b, "hbh", 0),
        ("dst", 0) => hbh6::options_header(cx, b, "dst", 60),
        ("srh", 0 | 1) => srh6::srh(cx, rev, b),
        ("ipv6header", 0) => ipv6header::ipv6header(cx, b),
        ("u32", 0) => u32match::u32_match(b),
        ("string", 1) => string::string(b),
        ("recent", 0 | 1) => recent::recent(cx, rev, b),
        ("limit", _) => Err(
            "xt match limit is not supported by the eBPF data plane (xt_limit counts credits \
             in jiffies, not nft_limit's nanosecond tokens)"
                .into(),
        ),
        _ => Err(format!(
            "xt match {name} (revision {rev}) is not supported by the eBPF data plane"
        )),
    }
}

/// `-j NAME` of revision `rev`.
pub fn decompile_target(cx: &XtCx<'_>, t: &XtTarget) -> Result<Decompiled, String> {
    let name = t.ext_name().ok_or("target without a name")?;
    let rev = t.rev().unwrap_or(0);
    let b = Blob(t.info().ok_or("target without info")?);
    if cx.family == Family::Bridge {
        return ebt::decompile_target(cx, name, rev, b);
    }
    match (name, rev) {
        ("REJECT", 0) => reject(cx, b),
        ("LOG", 0) => log(cx, b),
        ("NFLOG", 0) => nflog::nflog(cx, b),
        ("MARK", 2) => mark_target(cx, b),
        ("CONNMARK", 1 | 2) => connmark_target(cx, rev, b),
        ("DSCP", 0) => header_targets::dscp(cx, b),
        ("TOS", 1) => header_targets::tos(cx, b),
        ("ECN", 0) => ecn::ecn(cx, b),
        ("TTL", 0) => header_targets::hop_limit(cx, b, V4),
        ("HL", 0) => header_targets::hop_limit(cx, b, V6),
        ("CLASSIFY", 0) => classify::classify(cx, b),
        ("TCPOPTSTRIP", 0) => tcpoptstrip::tcpoptstrip(cx, b),
        ("RATEEST", 0) => rateest::rateest_target(cx, b),
        ("HMARK", 0) => hmark::hmark(cx, b),
        ("CONNSECMARK", 0) => connsecmark::connsecmark(b),
        ("CT", 0..=2) => ct_target::ct_target(rev, b),
        ("MASQUERADE" | "SNAT" | "DNAT" | "REDIRECT" | "NETMAP", _) => Err(format!(
            "xt target {name} (NAT) is not supported by the eBPF data plane"
        )),
        _ => Err(format!(
            "xt target {name} (revision {rev}) is not supported by the eBPF data plane"
        )),
    }
}

// --- connection tracking -----------------------------------------------------------

/// The states a packet has here: the IR's bit, xt_conntrack's (`XT_CONNTRACK_STATE_*`)
/// and xt_state's (`XT_STATE_*`) bit, and whether the packet has a connection.
/// (xt_conntrack's SNAT/DNAT "states" are status bits no connection here has: the data
/// plane refuses NAT.)
const STATES: [(u32, u32, u32, bool); 5] = [
    (ct_state::INVALID, 1 << 0, 1 << 0, false),
    (ct_state::ESTABLISHED, 1 << 1, 1 << 1, true),
    (ct_state::RELATED, 1 << 2, 1 << 2, true),
    (ct_state::NEW, 1 << 3, 1 << 3, true),
    (ct_state::UNTRACKED, 1 << 8, 1 << 6, false),
];

const XT_CONNTRACK_STATE: u16 = 1 << 0;
const XT_CONNTRACK_STATUS: u16 = 1 << 6;

/// `--ctproto` ... `--ctdir`: what the data plane's tracker does not keep. (Bit 13,
/// XT_CONNTRACK_STATE_ALIAS, is `-m state` through conntrack: the same state test.)
const CONNTRACK_OPTIONS: [(u16, &str); 12] = [
    (1 << 1, "--ctproto"),
    (1 << 2, "--ctorigsrc"),
    (1 << 3, "--ctorigdst"),
    (1 << 4, "--ctreplsrc"),
    (1 << 5, "--ctrepldst"),
    (1 << 7, "--ctexpire"),
    (1 << 8, "--ctorigsrcport"),
    (1 << 9, "--ctorigdstport"),
    (1 << 10, "--ctreplsrcport"),
    (1 << 11, "--ctrepldstport"),
    (1 << 12, "--ctdir"),
    (!0x207f, "unknown flags"),
];

/// `struct xt_conntrack_mtinfo1/2/3`: match_flags @146, invert_flags @148, then the
/// state and status masks (u8 @150/@151 in revision 1, u16 @150/@152 after).
fn conntrack(rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    let (flags, inv) = (b.u16(146), b.u16(148));
    let (state_mask, status_mask) = if rev == 1 {
        (u32::from(b.u8(150)), u32::from(b.u8(151)))
    } else {
        (u32::from(b.u16(150)), u32::from(b.u16(152)))
    };
    let unknown: Vec<&str> = CONNTRACK_OPTIONS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "xt match conntrack {} is not supported by the eBPF data plane (its tracker \
             keeps state and status only)",
            unknown.join(" ")
        ));
    }
    let has_state = flags & XT_CONNTRACK_STATE != 0;
    let state_passes =
        |xt_bit: u32| !has_state || ((state_mask & xt_bit != 0) != (inv & XT_CONNTRACK_STATE != 0));
    // conntrack_mt(): the state test, then `ct == NULL` returns whether a state test
    // was asked for; the status is tested only on packets with a connection.
    let mut without_ct = 0;
    let mut with_ct = 0;
    for (ir, xt_bit, _, has_ct) in STATES {
        if !state_passes(xt_bit) {
            continue;
        }
        if has_ct {
            with_ct |= ir;
        } else if has_state {
            without_ct |= ir;
        }
    }
    if flags & XT_CONNTRACK_STATUS == 0 {
        return Ok(ct_states(without_ct | with_ct));
    }
    let inv_status = inv & XT_CONNTRACK_STATUS != 0;
    let status = ct_status_where(|s| (status_mask & s != 0) != inv_status)?;
    match status {
        None => Ok(ct_states(without_ct)),
        Some(_) if with_ct == 0 => Ok(ct_states(without_ct)),
        Some(ms) if ms == vec![has_connection()] => Ok(ct_states(without_ct | with_ct)),
        Some(ms) if without_ct == 0 => {
            // Status matches hold only on packets with a connection: every state
            // with one, unless a state test narrowed them.
            let mut all = Vec::new();
            if has_state {
                all.push(Match::is(Test::CtState(with_ct)));
            }
            all.extend(ms);
            Ok(Decompiled::Matches(all))
        }
        Some(_) => Err(
            "xt match conntrack with --ctstatus and states without a connection (INVALID, \
             UNTRACKED) is not supported by the eBPF data plane"
                .into(),
        ),
    }
}

fn ct_states(bits: u32) -> Decompiled {
    if bits == 0 {
        Decompiled::Never
    } else {
        one(Test::CtState(bits), false)
    }
}

/// `struct xt_state_info`: statemask u32 @0 (no inversion).
fn state(b: Blob<'_>) -> Result<Decompiled, String> {
    let mask = b.u32(0);
    let bits = STATES
        .iter()
        .filter(|(_, _, xt_bit, _)| mask & xt_bit != 0)
        .fold(0, |acc, (ir, ..)| acc | ir);
    Ok(ct_states(bits))
}

/// `struct xt_connmark_mtinfo1`: mark @0, mask @4, invert u8 @8. No connection: false.
fn connmark(b: Blob<'_>) -> Result<Decompiled, String> {
    let (mark, mask, invert) = (b.u32(0), b.u32(4), b.u8(8) != 0);
    if mark & !mask != 0 {
        // Never equal: false, or (inverted) true on every connection.
        return Ok(if invert {
            Decompiled::Matches(vec![has_connection()])
        } else {
            Decompiled::Never
        });
    }
    Ok(one(
        Test::CtMark {
            mask,
            values: vec![mark],
        },
        invert,
    ))
}

// --- ports and transport headers -------------------------------------------------------

/// The rule's protocol dependency must say the ports the IR tests are the ones the
/// extension reads (`protocols`: the extension's own, or any port protocol).
fn need_protocol(cx: &XtCx<'_>, name: &str, protocols: &[u8]) -> Result<(), String> {
    match cx.l4protos {
        Some(p) if !p.is_empty() && p.iter().all(|x| protocols.contains(x)) => Ok(()),
        _ => Err(format!(
            "xt match {name} without a matching protocol dependency is not supported"
        )),
    }
}

/// `min <= port <= max`, `!= inv`, on packets with ports (port_match() of xt_tcpudp).
fn port_range(sport: bool, min: u16, max: u16, inv: bool) -> Match {
    let ranges = if min <= max {
        vec![PortRange::new(min, max)]
    } else {
        vec![]
    };
    Match {
        test: if sport {
            Test::Sport(ranges)
        } else {
            Test::Dport(ranges)
        },
        negated: inv,
    }
}

/// `struct xt_multiport_v1`: flags u8 @0 (source 0, destination 1, either 2), count
/// @1, ports u16[15] @2, pflags u8[15] @32 (port i starts a range to port i + 1),
/// invert @47. ports_match_v1(): true on the first hit, `!= invert`; no transport
/// header (later fragments): false.
fn multiport(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    need_protocol(cx, "multiport", &PORT_PROTOCOLS)?;
    let (flags, count, invert) = (b.u8(0), usize::from(b.u8(1)), b.u8(47) != 0);
    // As the kernel's loop reads them; port 15 (the end of a range starting at 14) is
    // the bytes after the array.
    let port = |i: usize| b.u16(2 + 2 * i);
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < count {
        let start = port(i);
        let end = if b.u8(32 + i) != 0 {
            i += 1;
            port(i)
        } else {
            start
        };
        if start <= end {
            ranges.push(PortRange::new(start, end));
        }
        i += 1;
    }
    let test = match flags {
        0 => Test::Sport(ranges),
        1 => Test::Dport(ranges),
        // XT_MULTIPORT_EITHER: the source or the destination port in a range.
        2 => return Ok(multiport_either(&ranges, invert)),
        _ => {
            return Err(format!(
                "xt match multiport with flags {flags} is not supported by the eBPF data plane"
            ))
        }
    };
    Ok(one(test, invert))
}

/// `--ports`: both ports loaded (registers are 4-byte aligned), a lookup of either (a packet without them fails
/// the match, as `--sports` and `--dports` do; see the module doc's hotdrop).
fn multiport_either(ranges: &[PortRange], invert: bool) -> Decompiled {
    let elements = ranges
        .iter()
        .map(|r| {
            (
                r.first.to_be_bytes().to_vec(),
                r.last.to_be_bytes().to_vec(),
            )
        })
        .collect();
    Decompiled::Residual(
        vec![],
        vec![
            Insn::Payload {
                base: PayloadBase::Transport,
                offset: 0,
                len: 2,
                dreg: SCRATCH,
            },
            Insn::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                dreg: SCRATCH + 4,
            },
            Insn::LookupEither {
                sreg: SCRATCH,
                sreg2: SCRATCH + 4,
                len: 2,
                negated: invert,
                elements,
            },
        ],
    )
}

/// `struct xt_tcp`: spts u16[2] @0, dpts @4, option u8 @8, flg_mask @9, flg_cmp @10,
/// invflags @11 (source 1, destination 2, flags 4, option 8).
fn tcp(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    need_protocol(cx, "tcp", &[IPPROTO_TCP])?;
    let (option, flg_mask, flg_cmp, inv) = (b.u8(8), b.u8(9), b.u8(10), b.u8(11));
    if option != 0 {
        return Err(
            "xt match tcp --tcp-option is not supported by the eBPF data plane (xt_tcp walks \
             the options differently from nft's exthdr)"
                .into(),
        );
    }
    let mut matches = vec![
        port_range(true, b.u16(0), b.u16(2), inv & 1 != 0),
        port_range(false, b.u16(4), b.u16(6), inv & 2 != 0),
    ];
    let inv_flags = inv & 4 != 0;
    // (th[13] & mask) == cmp, != inverted.
    if flg_cmp & !flg_mask != 0 || flg_mask == 0 {
        let equal = flg_cmp & !flg_mask == 0;
        return Ok(if equal != inv_flags {
            Decompiled::Matches(matches)
        } else {
            Decompiled::Never
        });
    }
    let flags = vec![
        Insn::Payload {
            base: PayloadBase::Transport,
            offset: 13,
            len: 1,
            dreg: SCRATCH,
        },
        Insn::Bitwise {
            sreg: SCRATCH,
            dreg: SCRATCH,
            len: 1,
            mask: vec![flg_mask],
            xor: vec![0],
        },
        Insn::Cmp {
            sreg: SCRATCH,
            op: if inv_flags { CmpOp::Neq } else { CmpOp::Eq },
            data: vec![flg_cmp],
        },
    ];
    // The flags' load needs the header, which the default `0:65535` port matches
    // stood for.
    matches.retain(|m| m.negated || !is_full(&m.test));
    Ok(Decompiled::Residual(matches, flags))
}

/// `min <= port <= max`, `!= inv`, on the port at `offset` in a transport header
/// whose bytes an [`Insn::XtTransportHeader`] before it checked (sctp, dccp).
fn port_test(offset: u16, min: u16, max: u16, inv: bool) -> [Insn; 2] {
    [
        Insn::Payload {
            base: PayloadBase::Transport,
            offset,
            len: 2,
            dreg: SCRATCH,
        },
        // min > max: no port is inside.
        Insn::Range {
            sreg: SCRATCH,
            negated: inv,
            from: min.to_be_bytes().to_vec(),
            to: max.to_be_bytes().to_vec(),
        },
    ]
}

/// A port match that every packet with ports passes (the default `0:65535`).
fn is_full(t: &Test) -> bool {
    matches!(t, Test::Sport(r) | Test::Dport(r) if r == &[PortRange::new(0, u16::MAX)])
}

/// `struct xt_udp`: spts u16[2] @0, dpts @4, invflags u8 @8 (source 1, destination 2).
fn udp(cx: &XtCx<'_>, b: Blob<'_>, protocol: u8) -> Result<Decompiled, String> {
    need_protocol(cx, "udp", &[protocol])?;
    let inv = b.u8(8);
    Ok(Decompiled::Matches(vec![
        port_range(true, b.u16(0), b.u16(2), inv & 1 != 0),
        port_range(false, b.u16(4), b.u16(6), inv & 2 != 0),
    ]))
}

/// `struct ipt_icmp` / `ip6t_icmp`: type u8 @0, code[2] @1, invflags @3 (1).
/// icmp_type_code_match(): type 0xff is any; `!= invert`; no header: false.
fn icmp(cx: &XtCx<'_>, b: Blob<'_>, version: u8, protocol: u8) -> Result<Decompiled, String> {
    let name = if version == V4 { "icmp" } else { "icmp6" };
    if cx.families != version {
        return Err(format!(
            "xt match {name} without an IP version dependency is not supported"
        ));
    }
    need_protocol(cx, name, &[protocol])?;
    let (typ, min, max, invert) = (b.u8(0), b.u8(1), b.u8(2), b.u8(3) & 1 != 0);
    // Any code (what `--icmp-type NAME` of a whole type sends): the IR's indexed type.
    let types = |t: Vec<u8>| {
        if version == V4 {
            Test::IcmpType(t)
        } else {
            Test::Icmpv6Type(t)
        }
    };
    match (typ, min, max, invert) {
        (0xff, _, _, false) => return Ok(one(types((0..=255).collect()), false)),
        (0xff, _, _, true) => return Ok(Decompiled::Never),
        (_, 0, 0xff, _) => return Ok(one(types(vec![typ]), invert)),
        _ => {}
    }
    // The (type, code) pairs it holds for, as one range of the two bytes.
    let pairs: Option<ByteRange> = if min <= max {
        Some((vec![typ, min], vec![typ, max]))
    } else {
        None
    };
    let (elements, negated) = match (pairs, invert) {
        (Some(p), false) => (vec![p], false),
        (None, true) => (vec![(vec![0, 0], vec![0xff, 0xff])], false),
        (Some(p), true) => (vec![p], true),
        (None, false) => return Ok(Decompiled::Never),
    };
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::Payload {
                base: PayloadBase::Transport,
                offset: 0,
                len: 2,
                dreg: SCRATCH,
            },
            Insn::Lookup {
                sreg: SCRATCH,
                len: 2,
                negated,
                elements,
            },
        ],
    ))
}

// --- marks ---------------------------------------------------------------------------

/// `struct xt_mark_mtinfo1`: mark @0, mask @4, invert u8 @8.
fn mark(b: Blob<'_>) -> Result<Decompiled, String> {
    let (mark, mask, invert) = (b.u32(0), b.u32(4), b.u8(8) != 0);
    if mark & !mask != 0 {
        return Ok(if invert {
            Decompiled::Always
        } else {
            Decompiled::Never
        });
    }
    Ok(one(
        Test::Mark {
            mask,
            values: vec![mark],
        },
        invert,
    ))
}

// --- network header ------------------------------------------------------------------

/// The IP version of the table (compat extensions are registered per family).
fn version(cx: &XtCx<'_>, name: &str) -> Result<u8, String> {
    match cx.family {
        Family::Ip => Ok(V4),
        Family::Ip6 => Ok(V6),
        _ => Err(format!(
            "xt match {name} outside ip and ip6 tables is not supported"
        )),
    }
}

/// `struct xt_iprange_mtinfo`: src_min @0, src_max @16, dst_min @32, dst_max @48
/// (network order; IPv4 in the first 4 bytes), flags u8 @64 (src 1, dst 2, src
/// inverted 0x10, dst inverted 0x20).
fn iprange(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let v = version(cx, "iprange")?;
    let flags = b.u8(64);
    let len = if v == V4 { 4 } else { 16 };
    let mut matches = Vec::new();
    for (bit, inv_bit, off, source) in [(1u8, 0x10u8, 0usize, true), (2, 0x20, 32, false)] {
        if flags & bit == 0 {
            continue;
        }
        let (min, max) = (b.bytes(off, len), b.bytes(off + 16, len));
        let negated = flags & inv_bit != 0;
        // Out of [min, max] is "min > addr || addr > max"; with min > max every address is.
        if min > max {
            if negated {
                continue;
            }
            return Ok(Decompiled::Never);
        }
        let range = [(min, max)];
        let test = match (v == V4, source) {
            (true, true) => Test::IpSaddr(sets::v4_prefixes(&range)),
            (true, false) => Test::IpDaddr(sets::v4_prefixes(&range)),
            (false, true) => Test::Ip6Saddr(sets::v6_prefixes(&range)),
            (false, false) => Test::Ip6Daddr(sets::v6_prefixes(&range)),
        };
        matches.push(Match { test, negated });
    }
    Ok(if matches.is_empty() {
        Decompiled::Always
    } else {
        Decompiled::Matches(matches)
    })
}

/// `struct xt_length_info`: min u16 @0, max @2, invert u8 @4. The length is IPv4's
/// total length, IPv6's payload length + 40 (in a u16, as length_mt6 computes it).
fn length(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let v = version(cx, "length")?;
    let (min, max, invert) = (b.u16(0), b.u16(2), b.u8(4) != 0);
    let (offset, shift) = if v == V4 { (2, 0u16) } else { (4, 40u16) };
    // Header values h with (h + shift) mod 2^16 in [min, max].
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    if min <= max {
        let (lo, hi) = (min.wrapping_sub(shift), max.wrapping_sub(shift));
        if lo <= hi {
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, u16::MAX));
            ranges.push((0, hi));
        }
    }
    let (elements, negated) = match (ranges.is_empty(), invert) {
        (true, false) => return Ok(Decompiled::Never),
        (true, true) => (vec![(0, u16::MAX)], false),
        (false, inv) => (ranges, inv),
    };
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::Payload {
                base: PayloadBase::Network,
                offset,
                len: 2,
                dreg: SCRATCH,
            },
            Insn::Lookup {
                sreg: SCRATCH,
                len: 2,
                negated,
                elements: elements
                    .into_iter()
                    .map(|(lo, hi)| (lo.to_be_bytes().to_vec(), hi.to_be_bytes().to_vec()))
                    .collect(),
            },
        ],
    ))
}

/// xt_mac (`struct xt_mac_info`: srcaddr[6], int invert at 8): skb->dev is Ethernet
/// (else no match, inverted or not) and the MAC header's source address is (not) the
/// one given. Its hooks are prerouting, input and forward; at forward TC egress sees
/// the new header, not the received one the kernel reads.
fn mac(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if !matches!(cx.hook, Hook::Prerouting | Hook::Input) {
        return Err(format!(
            "xt match mac in {:?} chains is not supported by the eBPF data plane (TC does \
             not see the link-layer header the kernel reads there)",
            cx.hook
        ));
    }
    let addr: Vec<u8> = (0..6).map(|i| b.u8(i)).collect();
    let invert = b.u32(8) != 0;
    Ok(Decompiled::EthernetResidual(vec![
        Insn::Payload {
            base: PayloadBase::LinkLayerUntagged,
            offset: 6,
            len: 6,
            dreg: SCRATCH,
        },
        Insn::Cmp {
            sreg: SCRATCH,
            op: if invert { CmpOp::Neq } else { CmpOp::Eq },
            data: addr,
        },
    ]))
}

/// `(DS field & mask) == value`, `!= invert`: IPv4's TOS byte, IPv6's traffic class
/// (bits 4..12 of the first two bytes).
fn ds_field(v: u8, mask: u8, value: u8, invert: bool) -> Decompiled {
    if value & !mask != 0 {
        return if invert {
            Decompiled::Always
        } else {
            Decompiled::Never
        };
    }
    let op = if invert { CmpOp::Neq } else { CmpOp::Eq };
    let (offset, mask, value) = if v == V4 {
        (1, vec![mask], vec![value])
    } else {
        let (m, x) = (u16::from(mask) << 4, u16::from(value) << 4);
        (0, m.to_be_bytes().to_vec(), x.to_be_bytes().to_vec())
    };
    let len = mask.len() as u8;
    Decompiled::Residual(
        vec![],
        vec![
            Insn::Payload {
                base: PayloadBase::Network,
                offset,
                len,
                dreg: SCRATCH,
            },
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len,
                xor: vec![0; mask.len()],
                mask,
            },
            Insn::Cmp {
                sreg: SCRATCH,
                op,
                data: value,
            },
        ],
    )
}

/// `struct xt_dscp_info`: dscp u8 @0, invert @1; the DS field's upper six bits.
fn dscp(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let v = version(cx, "dscp")?;
    Ok(ds_field(v, 0xfc, b.u8(0) << 2, b.u8(1) != 0))
}

/// `struct xt_tos_match_info`: tos_mask u8 @0, tos_value @1, invert @2.
fn tos(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let v = version(cx, "tos")?;
    Ok(ds_field(v, b.u8(0), b.u8(1), b.u8(2) != 0))
}

/// `struct ipt_ttl_info` / `ip6t_hl_info`: mode u8 @0 (eq, ne, lt, gt), value @1;
/// IPv4's TTL (byte 8), IPv6's hop limit (byte 7).
fn hop_limit(cx: &XtCx<'_>, b: Blob<'_>, v: u8) -> Result<Decompiled, String> {
    let name = if v == V4 { "ttl" } else { "hl" };
    if version(cx, name)? != v {
        return Err(format!(
            "xt match {name} in a table of the other IP version"
        ));
    }
    let op = match b.u8(0) {
        0 => CmpOp::Eq,
        1 => CmpOp::Neq,
        2 => CmpOp::Lt,
        3 => CmpOp::Gt,
        // ttl_mt()/hl_mt(): no other mode matches.
        _ => return Ok(Decompiled::Never),
    };
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::Payload {
                base: PayloadBase::Network,
                offset: if v == V4 { 8 } else { 7 },
                len: 1,
                dreg: SCRATCH,
            },
            Insn::Cmp {
                sreg: SCRATCH,
                op,
                data: vec![b.u8(1)],
            },
        ],
    ))
}

/// `struct xt_helper_info`: invert u32 @0, name @4. helper_mt() looks at the helper of
/// the connection's master: only expected connections have one, and this data plane
/// has no helpers, so none does: the match is its inversion.
fn helper(b: Blob<'_>) -> Result<Decompiled, String> {
    Ok(if b.u32(0) != 0 {
        Decompiled::Always
    } else {
        Decompiled::Never
    })
}

// --- targets ---------------------------------------------------------------------------

/// `struct ipt_reject_info` / `ip6t_reject_info`: with u32 @0, numbered per family.
/// reject_tg()/reject_tg6() send nf_send_unreach(6)/nf_send_reset(6) as nft's reject
/// does, then drop; a value with no answer only drops.
fn reject(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let with = b.u32(0);
    let answer = match (cx.family, with) {
        // IPT_ICMP_NET/HOST/PROT/PORT_UNREACHABLE: ICMP codes 0..3.
        (Family::Ip, 0..=3) => Some(Reject::Icmp(with as u8)),
        (Family::Ip, 5) => Some(Reject::Icmp(9)), // net-prohibited: ICMP_NET_ANO
        (Family::Ip, 6) => Some(Reject::Icmp(10)), // host-prohibited: ICMP_HOST_ANO
        (Family::Ip, 7) => Some(Reject::TcpReset),
        (Family::Ip, 8) => Some(Reject::Icmp(13)), // admin-prohibited: ICMP_PKT_FILTERED
        // IP6T_ICMP6_NO_ROUTE .. PORT_UNREACH: ICMPv6 codes 0..4.
        (Family::Ip6, 0..=4) => Some(Reject::Icmp(with as u8)),
        (Family::Ip6, 6) => Some(Reject::TcpReset),
        (Family::Ip6, 7) => Some(Reject::Icmp(5)), // policy-fail
        (Family::Ip6, 8) => Some(Reject::Icmp(6)), // reject-route
        (Family::Ip | Family::Ip6, _) => None,
        _ => return Err("xt target REJECT outside ip and ip6 tables is not supported".into()),
    };
    Ok(Decompiled::Verdict(match answer {
        Some(r) => super::reject::at_hook(cx.hook, r)?,
        None => Action::Drop,
    }))
}

/// `struct xt_log_info`: level u8 @0, logflags @1, prefix char[30] @2. log_tg() prints
/// through nf_log_packet as nft's log does.
fn log(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let raw = b.bytes(2, 30);
    let prefix = std::str::from_utf8(&raw[..strnlen(&raw)])
        .map_err(|_| "xt target LOG with a prefix that is not UTF-8 is not supported")?;
    let spec = log_spec_of(
        cx.family,
        cx.hook,
        prefix,
        u32::from(b.u8(0)),
        u32::from(b.u8(1)),
    )?;
    Ok(Decompiled::Statement(Statement::Log { prefix: spec.key() }))
}

/// `struct xt_mark_tginfo2`: mark @0, mask @4; mark_tg(): `(mark & ~mask) ^ value`.
fn mark_target(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    mark_set_allowed_in(cx.family, cx.hook)?;
    Ok(Decompiled::Statement(Statement::SetMark {
        and: !b.u32(4),
        xor: b.u32(0),
    }))
}

/// `struct xt_connmark_tginfo1/2`: ctmark @0, ctmask @4, nfmask @8, then mode u8 @12
/// (revision 2: shift_dir @12 (right 1), shift_bits @13, mode @14). connmark_tg_shift()
/// (revision 1: no shift): set `ct = ((ct & ~ctmask) ^ ctmark) >> or << shift`; save
/// `ct = (ct & ~ctmask) ^ ((mark & nfmask) >> or << shift)`; restore `mark = (mark &
/// ~nfmask) ^ ((ct & ctmask) >> or << shift)`; nothing without a connection.
fn connmark_target(cx: &XtCx<'_>, rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    let (ctmark, ctmask, nfmask) = (b.u32(0), b.u32(4), b.u32(8));
    let (left, shift, mode) = if rev == 1 {
        (true, 0, b.u8(12))
    } else {
        (b.u8(12) != 1, b.u8(13), b.u8(14))
    };
    if shift > 31 {
        // checkentry refuses it; a u32 shift that far is undefined.
        return Err(format!("xt target CONNMARK shift of {shift} bits"));
    }
    let statement = match mode {
        0 if shift == 0 => Statement::SetCtMark {
            and: !ctmask,
            xor: ctmark,
        },
        0 => Statement::MarkShift(MarkShift {
            from_ct: true,
            to_ct: true,
            and: !ctmask,
            xor: ctmark,
            left,
            by: shift,
            post: 0,
        }),
        // Nothing of the old mark kept: the plain copies.
        1 if shift == 0 && ctmask == u32::MAX => Statement::SetCtMarkFromMark {
            and: nfmask,
            xor: 0,
        },
        1 => Statement::MarkMerge(MarkMerge {
            to_ct: true,
            keep: !ctmask,
            and: nfmask,
            left,
            by: shift,
        }),
        2 if shift == 0 && nfmask == u32::MAX => {
            mark_set_allowed(cx.hook)?;
            // Breaks the rule without a connection, where the target only goes on:
            // the same, as nothing follows the target.
            Statement::SetMarkFromCtMark {
                and: ctmask,
                xor: 0,
            }
        }
        2 => {
            mark_set_allowed(cx.hook)?;
            Statement::MarkMerge(MarkMerge {
                to_ct: false,
                keep: !nfmask,
                and: ctmask,
                left,
                by: shift,
            })
        }
        m => return Err(format!("xt target CONNMARK mode {m}")),
    };
    Ok(Decompiled::Statement(statement))
}

mod addrtype;
pub(crate) mod cgroup;
mod classify;
mod connbytes;
mod connlabel;
mod connlimit;
mod connsecmark;
mod cpu;
mod ct_target;
mod ebt;
mod ecn;
mod header_targets;
mod hmark;
mod nflog;
pub(crate) mod owner;
mod pkttype;
mod quota;
pub mod rateest;
pub mod recent;
mod socket;
mod statistic;

mod dccp;
mod frag6;
mod hbh6;
mod ipsec_mh;
mod ipv6header;
mod sctp;
mod srh6;
mod string;
mod tcpoptstrip;
#[cfg(test)]
mod tests;
mod u32match;
