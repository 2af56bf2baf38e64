//! One rule's register bytecode back to predicates.
//!
//! The rule is run symbolically: loads (`payload`, `meta`, masked by `bitwise`) put a
//! known field into a register; `cmp`, `range` and `lookup` on that register become
//! IR matches. What the rule establishes on the way (`meta nfproto`, `meta l4proto`,
//! `ip protocol`) is remembered, because a transport-header load only means "port" or
//! "ICMP type" under such a dependency, exactly as nft emits it. Anything else is an
//! error naming the expression, and the whole ruleset is refused.

use std::collections::{BTreeSet, HashMap};

use ipnet::{Ipv4Net, Ipv6Net};
use netlink_proto::consts::{
    NFT_EXTHDR_F_PRESENT, NFT_LIMIT_F_INV, NFT_LOOKUP_F_INV, NFT_OBJECT_COUNTER, NFT_QUOTA_F_INV,
};
use netlink_proto::data::{ObjType, Register, VerdictCode};
use netlink_proto::expr::bitwise::BitwiseOp;
use netlink_proto::expr::cmp::CmpOp;
use netlink_proto::expr::ct::CtKey;
use netlink_proto::expr::limit::LimitType;
use netlink_proto::expr::meta::MetaKey;
use netlink_proto::expr::payload::PayloadBase;
use netlink_proto::expr::range::RangeOp;
use netlink_proto::expr::Expr as TypedExpr;
use nftshim_ebpf::fields::{IPPROTO_ICMP, IPPROTO_ICMPV6, PORT_PROTOCOLS};
use nftshim_ebpf::ir::{
    ct_state, ct_status, Action, Limit, MarkShift, Match, Nth, PayloadWrite, PortRange, Quota,
    StateId, Statement, Test, WriteBase,
};
use nftshim_ebpf::residual::{self, Insn, PayloadBase as ResBase};
use nftshim_engine::view::{Expr, Rule, Table};
use nftshim_engine::{CounterRef, RulesetView};

mod write;

use super::residual::Trace;
use super::sets::{self, ByteRange};
use super::{Family, Hook, IfNamePattern, SymMatch, SymRule};

pub struct ChainContext<'v> {
    pub view: &'v RulesetView<'v>,
    pub table: &'v Table,
    pub family: Family,
    pub hook: Hook,
    /// A base chain (else a regular chain reached by a jump or goto).
    pub base: bool,
    /// The priority of the base chain (the one jumping here, for a regular chain);
    /// `None` when not known (a regular chain checked on its own).
    pub priority: Option<i32>,
}

/// What a register holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Loaded {
    source: Source,
    len: u32,
    /// `bitwise` mask (XOR 0) applied after the load.
    mask: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Network {
        offset: u32,
    },
    Transport {
        offset: u32,
    },
    Meta(MetaKey),
    /// `ct state`, `ct status`, `ct mark` (no direction).
    CtState,
    CtStatus,
    CtMark,
    /// A 4-byte constant (`immediate`), the value of a `meta mark set`.
    Const(u32),
    /// `(mark & and) ^ xor` of the meta mark or (`ct`) the ct mark, after a `bitwise`
    /// with a non-zero xor: only `meta mark set` and `ct mark set` take it.
    MarkExpr {
        ct: bool,
        and: u32,
        xor: u32,
    },
    /// A mark expression shifted (`from_ct`: of the ct mark; `to_ct` is not known
    /// yet): only mark statements take it.
    MarkShift(MarkShift),
}

/// The value a `meta mark set` or `ct mark set` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MarkOperand {
    Const(u32),
    /// `(meta mark & and) ^ xor`
    Meta {
        and: u32,
        xor: u32,
    },
    /// `(ct mark & and) ^ xor`
    Ct {
        and: u32,
        xor: u32,
    },
    /// A mark expression shifted.
    Shift(MarkShift),
}

/// The fields the IR can test, with how the loaded bytes relate to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// The first `len` bytes of an address (a prefix of `len * 8` bits, or the mask's).
    Saddr4,
    Daddr4,
    Saddr6,
    Daddr6,
    L4Proto,
    NfProto,
    Sport,
    Dport,
    IcmpType,
    Icmpv6Type,
    Iif,
    Oif,
    Mark,
    IifName,
    OifName,
    /// `meta iiftype` (NFT_META_IFTYPE): skb->dev's ARPHRD_* type, 2 bytes host order.
    IifType,
    /// `ct state`: a 4-byte host-order word with exactly one `NF_CT_STATE_*` bit.
    CtState,
    /// `ct status`, `ct mark`: 4-byte host-order words.
    CtStatus,
    CtMark,
}

pub(super) const V4: u8 = 1;
pub(super) const V6: u8 = 2;
const NFPROTO_IPV4: u128 = 2;
const NFPROTO_IPV6: u128 = 10;

/// A predicate's values before they are typed: inclusive ranges of key bytes.
struct Values {
    ranges: Vec<ByteRange>,
    negated: bool,
}

struct RuleState<'a, 'v> {
    ctx: &'a ChainContext<'v>,
    regs: HashMap<u32, Loaded>,
    /// IP versions the rule can still match (V4 | V6).
    families: u8,
    /// Transport protocols the rule can still match, once some predicate said.
    l4protos: Option<BTreeSet<u8>>,
    matches: Vec<SymMatch>,
    /// The rule can never match (e.g. `meta nfproto ipv6` in an ip table).
    never: bool,
    statements: bool,
    counter: bool,
    /// The counters this rule's `counter` and `counter name` expressions stand for.
    counters: Vec<CounterRef>,
    /// The rate estimators the rule counts into or reads.
    rateest: Vec<super::xt::rateest::RateestUse>,
    /// The handle of the rule and the index of the expression being read.
    handle: u64,
    expr_index: u32,
    /// Side effects, in rule order (counters are implicit in the IR).
    effects: Vec<Statement>,
    verdict: Option<Action>,
    /// A limit or quota (or a recent match that changes its list) was met: they
    /// consume, so a later match would make them charge packets the IR (which tests
    /// stateless matches first) would not.
    stateful: bool,
    /// A match whose effect outlives the rule was met (a quota lists what it used,
    /// connlabel --set leaves its bit): a later match that never holds must not make
    /// the rule vanish.
    lasting: bool,
    /// Where the first limit, quota, nth or connlabel --set went in `matches`, and how
    /// many residual tests came before it: the residual program (pushed last) must run
    /// before it when they all did, as the kernel tests them first.
    first_stateful: Option<(usize, usize)>,
    /// Identity of the rule's limits and quotas: table and rule handle (and
    /// `expr_index`).
    table_handle: u64,
    rule_handle: u64,
    /// The rule's loads and the tests LBVS cannot index, as a residual program.
    trace: Trace,
    /// The register operations so far, for the operand of a payload write.
    recent: Vec<Recent>,
    /// A compat match that may drop the packet (xt_sctp, xt_dccp) was met: what the
    /// rule held then. Its drop must come after every other test of the rule, so
    /// nothing may follow it.
    drops_after: Option<DropMark>,
}

/// What a rule held when a compat match that may drop the packet was met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DropMark {
    matches: usize,
    tests: usize,
    never: bool,
}

/// A register operation, as a payload write's operand is built from them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Recent {
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Load {
        base: WriteBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Bitwise {
        sreg: u32,
        dreg: u32,
        len: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Other,
}

/// Decompiles one rule. `Ok(None)`: the rule can never match or does nothing, so it
/// can be left out without changing any verdict or counter.
pub fn decompile_rule(ctx: &ChainContext<'_>, rule: &Rule) -> Result<Option<SymRule>, String> {
    decompile_rule_indexed(ctx, rule, &Some)
}

/// Decompiles `rule` with each expression under the index `original` gives it (the
/// index in the ruleset's rule, which names its counters and stateful objects), and
/// without the expressions it gives none.
pub fn decompile_rule_indexed(
    ctx: &ChainContext<'_>,
    rule: &Rule,
    original: &dyn Fn(usize) -> Option<usize>,
) -> Result<Option<SymRule>, String> {
    let families = match ctx.family {
        Family::Ip => V4,
        Family::Ip6 => V6,
        Family::Inet | Family::Netdev | Family::Bridge => V4 | V6,
        // ARP frames: no IP header (network payload goes to residual programs).
        Family::Arp => 0,
    };
    let mut st = RuleState {
        ctx,
        regs: HashMap::new(),
        families,
        l4protos: None,
        matches: Vec::new(),
        never: false,
        statements: false,
        counter: false,
        counters: Vec::new(),
        rateest: Vec::new(),
        handle: rule.handle,
        expr_index: 0,
        effects: Vec::new(),
        verdict: None,
        stateful: false,
        lasting: false,
        first_stateful: None,
        table_handle: ctx.table.handle,
        rule_handle: rule.handle,
        trace: Trace::new(matches!(ctx.family, Family::Netdev | Family::Bridge)),
        recent: Vec::new(),
        drops_after: None,
    };
    for (i, e) in rule.exprs.iter().enumerate() {
        let Some(index) = original(i) else {
            continue;
        };
        if st.verdict.is_some() {
            return Err(format!("expression {} after the verdict", e.name));
        }
        st.expr_index = index as u32;
        st.step(e)?;
        st.remember(e);
    }
    if let Some(mark) = st.drops_after {
        // The kernel runs the dropping match before what follows it; the data plane
        // runs it last.
        if st.matches.len() != mark.matches
            || st.trace.tests() != mark.tests
            || st.never != mark.never
        {
            return Err(
                "a match after an xt match that may drop the packet (sctp, dccp) is not \
                 supported by the eBPF data plane"
                    .into(),
            );
        }
    }
    if st.never {
        if st.lasting {
            return Err(
                "a match that never holds after a quota or connlabel --set is not \
                        supported by the eBPF data plane"
                    .into(),
            );
        }
        return Ok(None);
    }
    if let Some(program) = st.trace.program()? {
        let rejects = matches!(st.verdict, Some(Action::Reject(_)));
        if matches!(ctx.family, Family::Netdev | Family::Bridge)
            && (rejects || !st.effects.is_empty())
        {
            // Every header test of a netdev rule is residual: with statements or a
            // reject the BPF program exceeds the 512-byte stack, and the kernel
            // refuses it (after seconds of verification).
            return Err(
                "statements and reject in netdev rules that test packet headers \
                        are not supported by the eBPF data plane (BPF stack limit)"
                    .into(),
            );
        }
        let residual = SymMatch::Ir(Match::is(Test::Residual(program)));
        match st.first_stateful {
            // Checks run in rule order: tests written before a limit or quota must
            // not let it charge packets they reject.
            Some((at, before)) if before == st.trace.tests() => st.matches.insert(at, residual),
            Some((_, 0)) | None => st.matches.push(residual),
            Some(_) => {
                return Err("residual tests both before and after a limit, quota or \
                            connlabel --set are not supported by the eBPF data plane"
                    .into())
            }
        }
    }
    let action = match st.verdict {
        Some(a) => a,
        // A quota consumes (and lists what it used) even in a rule that does nothing.
        // A match that may drop the packet acts even in a rule that does nothing else.
        None if st.counter || st.stateful || !st.effects.is_empty() || st.drops_after.is_some() => {
            Action::Continue
        }
        None => return Ok(None),
    };
    Ok(Some(SymRule {
        handle: rule.handle,
        matches: st.matches,
        action,
        statements: st.effects,
        counters: st.counters,
        rateest: st.rateest,
        flat: Default::default(),
    }))
}

/// `log group N`: nft_log_init's NF_LOG_TYPE_ULOG loginfo (a snaplen sets
/// NF_LOG_F_COPY_LEN) for nfnetlink_log.
fn nflog_statement(
    ctx: &ChainContext<'_>,
    l: &netlink_proto::expr::log::Log,
) -> Result<Statement, String> {
    super::nflog::statement(
        ctx.family,
        ctx.hook,
        l.group().unwrap_or(0),
        l.prefix().unwrap_or("").as_bytes(),
        l.snaplen(),
        l.qthreshold().unwrap_or(0),
    )
}

/// A `log` statement the daemon can print as nf_log_syslog would, or why not.
fn log_spec(
    ctx: &ChainContext<'_>,
    l: &netlink_proto::expr::log::Log,
) -> Result<crate::runtime::logline::LogSpec, String> {
    if l.group().is_some() {
        return Err("log group (nflog) is not supported by the eBPF data plane".into());
    }
    // nft_log_init: NFT_LOGLEVEL_WARNING by default; 8 is audit.
    log_spec_of(
        ctx.family,
        ctx.hook,
        l.prefix().unwrap_or(""),
        l.level().unwrap_or(4),
        l.flags().unwrap_or(0),
    )
}

/// A syslog line (nf_log_syslog's, which nft `log` and iptables `LOG` both print)
/// with this prefix, level and `NF_LOG_*` flags, from a chain of `family` at `hook`.
pub(super) fn log_spec_of(
    family: Family,
    hook: Hook,
    prefix: &str,
    level: u32,
    flags: u32,
) -> Result<crate::runtime::logline::LogSpec, String> {
    use crate::runtime::logline::{LogSpec, SUPPORTED_FLAGS};
    if level > 7 {
        return Err("log level audit is not supported by the eBPF data plane".into());
    }
    if flags & !SUPPORTED_FLAGS != 0 {
        return Err(format!(
            "log flags 0x{:x} are not supported by the eBPF data plane",
            flags & !SUPPORTED_FLAGS
        ));
    }
    match (family, hook) {
        (Family::Netdev | Family::Arp | Family::Bridge, _) => Err(
            "log in netdev, arp and bridge chains is not supported by the eBPF data plane".into(),
        ),
        // Seen at TC egress, where the link-layer header the kernel prints (the one
        // the packet came in with) is already replaced.
        (_, Hook::Forward) => {
            Err("log in forward chains is not supported by the eBPF data plane".into())
        }
        // skb->sk there is the socket early demux found after TC ingress ran. (At
        // prerouting ip_rcv_core() has orphaned the skb: no UID, as here; at output
        // and postrouting TC egress reads the socket the hooks saw.)
        (_, Hook::Input) if flags & crate::runtime::logline::NF_LOG_UID != 0 => Err(
            "log flags skuid (--log-uid) in input chains is not supported by the eBPF data \
             plane (the socket early demux finds is not known at TC ingress)"
                .into(),
        ),
        _ => Ok(LogSpec {
            prefix: prefix.to_string(),
            level,
            flags,
        }),
    }
}

fn reg_offset(r: Option<Register>, what: &str) -> Result<u32, String> {
    r.and_then(Register::byte_offset)
        .ok_or_else(|| format!("{what}: missing or invalid register"))
}

impl RuleState<'_, '_> {
    fn step(&mut self, e: &Expr) -> Result<(), String> {
        let typed = TypedExpr::from_data(&e.name, &e.data);
        if !typed.untyped_attrs().is_empty() {
            return Err(format!(
                "expression {} has attributes the data plane does not know",
                e.name
            ));
        }
        if self.ctx.family == Family::Bridge {
            bridge_allows(&typed, self.ctx.hook)?;
        }
        // A statement's operands (`immediate` into a data register) may follow one.
        if self.statements
            && !matches!(
                typed,
                TypedExpr::Counter(_)
                    | TypedExpr::Payload(_)
                    | TypedExpr::Objref(_)
                    | TypedExpr::Reject(_)
                    | TypedExpr::Target(_)
                    | TypedExpr::Log(_)
                    | TypedExpr::Immediate(_)
                    | TypedExpr::Meta(_)
                    | TypedExpr::Ct(_)
            )
        {
            // A match after a statement: the statement would act on packets the
            // rule's later matches reject.
            return Err(format!(
                "expression {} after a statement is not supported",
                e.name
            ));
        }
        match &typed {
            TypedExpr::Payload(p) => {
                if p.sreg().is_some() {
                    return self.payload_write(p);
                }
                if self.statements {
                    return Err("expression payload after a statement is not supported".into());
                }
                let dreg = reg_offset(p.dreg(), "payload")?;
                let (offset, len) = (p.offset().unwrap_or(0), p.len().unwrap_or(0));
                let source = match p.base() {
                    Some(PayloadBase::Network) => Source::Network { offset },
                    Some(PayloadBase::Transport) => Source::Transport { offset },
                    Some(PayloadBase::LinkLayer) => {
                        // Only residual programs test link-layer bytes.
                        let base = self.link_base()?;
                        self.require_link_header()?;
                        self.trace
                            .load(dreg, len, payload_insn(base, offset, len, dreg));
                        self.forget(dreg, len);
                        return Ok(());
                    }
                    _ => return Err("payload of inner/tunnel headers is not supported".into()),
                };
                let base = match source {
                    Source::Transport { .. } => ResBase::Transport,
                    _ => ResBase::Network,
                };
                self.trace
                    .load(dreg, len, payload_insn(base, offset, len, dreg));
                if self.netdev_view() {
                    // Header fields as the IP hooks parse them are not what netdev
                    // chains see: only the residual program (netdev view) tests them.
                    self.forget(dreg, len);
                } else {
                    self.load(
                        dreg,
                        Loaded {
                            source,
                            len,
                            mask: None,
                        },
                    );
                }
            }
            TypedExpr::Meta(m) => {
                if let Some(sreg) = m.sreg() {
                    let sreg = reg_offset(Some(sreg), "meta set")?;
                    return self.meta_set(m.key(), sreg);
                }
                if self.statements {
                    return Err("expression meta after a statement is not supported".into());
                }
                let dreg = reg_offset(m.dreg(), "meta")?;
                let key = m.key().ok_or("meta without key")?;
                let len = match key {
                    MetaKey::L4proto | MetaKey::Nfproto => 1,
                    MetaKey::Protocol | MetaKey::Iiftype => 2,
                    MetaKey::Iif | MetaKey::Oif | MetaKey::Mark | MetaKey::Len => 4,
                    MetaKey::Iifname | MetaKey::Oifname => 16,
                    MetaKey::Skuid | MetaKey::Skgid => {
                        return self.meta_sock_ugid(key == MetaKey::Skgid, dreg);
                    }
                    other => {
                        return Err(format!(
                            "meta {} is not supported by the eBPF data plane",
                            meta_name(other)
                        ))
                    }
                };
                let res_key = match key {
                    MetaKey::Len => Some(residual::MetaKey::Len),
                    MetaKey::Protocol => Some(residual::MetaKey::Protocol),
                    MetaKey::Nfproto => Some(residual::MetaKey::NfProto),
                    MetaKey::L4proto => Some(residual::MetaKey::L4Proto),
                    MetaKey::Mark => Some(residual::MetaKey::Mark),
                    _ => None,
                };
                let insn = res_key.and_then(|key| {
                    Some(Insn::Meta {
                        key,
                        dreg: res_reg(dreg)?,
                    })
                });
                if key == MetaKey::Iiftype {
                    // NFT_META_IIFTYPE is NFT_META_IFTYPE since Linux 5.16: the type of
                    // skb->dev, which breaks when there is none.
                    if self.ctx.family == Family::Bridge {
                        // The bridge hooks' skb->dev is a port or the bridge device,
                        // both ARPHRD_ETHER (br_add_if takes Ethernet devices only).
                        let ether = Insn::Immediate {
                            dreg: res_reg(dreg).ok_or("meta iiftype: invalid register")?,
                            data: ARPHRD_ETHER.to_ne_bytes().to_vec(),
                        };
                        self.trace.load(dreg, len, Some(ether));
                        self.forget(dreg, len);
                        return Ok(());
                    }
                    if self.ctx.hook == Hook::Output {
                        // Locally generated packets have no skb->dev before routing
                        // output sets it, except those that do (answers, tunnels).
                        return Err(
                            "meta iiftype in output chains is not supported by the eBPF \
                             data plane"
                                .into(),
                        );
                    }
                }
                self.trace.load(dreg, len, insn);
                let parsed = matches!(
                    key,
                    MetaKey::Len | MetaKey::Protocol | MetaKey::L4proto | MetaKey::Nfproto
                );
                if matches!(key, MetaKey::Len | MetaKey::Protocol) || (parsed && self.netdev_view())
                {
                    // Only residual programs test these.
                    self.forget(dreg, len);
                } else {
                    self.load(
                        dreg,
                        Loaded {
                            source: Source::Meta(key),
                            len,
                            mask: None,
                        },
                    );
                }
            }
            TypedExpr::Ct(c) => {
                if matches!(self.ctx.family, Family::Netdev | Family::Arp) {
                    return Err(
                        "ct in netdev and arp chains (no conntrack there) is not supported".into(),
                    );
                }
                if let Some(sreg) = c.sreg() {
                    let sreg = reg_offset(Some(sreg), "ct set")?;
                    return self.ct_set(c.key(), c.direction().is_some(), sreg);
                }
                if self.statements {
                    return Err("expression ct after a statement is not supported".into());
                }
                let dreg = reg_offset(c.dreg(), "ct")?;
                let key = c.key().ok_or("ct without key")?;
                let res_dreg = res_reg(dreg).ok_or("ct: invalid register")?;
                let ct = super::ct::load(
                    key,
                    c.direction(),
                    self.ctx.family,
                    self.families == V6,
                    res_dreg,
                )?;
                let len = ct.len;
                self.trace.load(dreg, ct.written, Some(ct.insn));
                if ct.written < len {
                    // Bytes no residual test may read (the kernel leaves them as they were).
                    self.trace.load(dreg + ct.written, len - ct.written, None);
                }
                // State, status and mark are LBVS fields too; the other keys only
                // residual programs test.
                let source = match key {
                    CtKey::State => Source::CtState,
                    CtKey::Status => Source::CtStatus,
                    CtKey::Mark => Source::CtMark,
                    _ => {
                        self.forget(dreg, len);
                        return Ok(());
                    }
                };
                self.load(
                    dreg,
                    Loaded {
                        source,
                        len: 4,
                        mask: None,
                    },
                );
            }
            TypedExpr::Fib(f) => {
                if self.statements {
                    return Err("expression fib after a statement is not supported".into());
                }
                let dreg = reg_offset(f.dreg(), "fib")?;
                let res_dreg = res_reg(dreg).ok_or("fib: invalid register")?;
                let (sreg, dev) =
                    super::fib::addr_type(self.ctx.family, self.ctx.hook, self.families, f)?;
                // The address into the result register, then its type over it.
                self.trace
                    .load(dreg, 4, payload_insn(ResBase::Network, sreg, 4, dreg));
                self.trace.transform(
                    dreg,
                    dreg,
                    4,
                    Some(Insn::AddrType {
                        sreg: res_dreg,
                        dev,
                        out: residual::AddrTypeOut::Store { dreg: res_dreg },
                    }),
                );
                self.forget(dreg, 4);
            }
            TypedExpr::Limit(l) => {
                let flags = l.flags().unwrap_or(0);
                if flags & !NFT_LIMIT_F_INV != 0 {
                    return Err("limit flags the data plane does not know".into());
                }
                let limit = Limit {
                    rate: l.rate().ok_or("limit without rate")?,
                    unit_secs: l.unit().ok_or("limit without unit")?,
                    burst: l.burst().unwrap_or(0),
                    bytes: match l.limit_type() {
                        None | Some(LimitType::Pkts) => false,
                        Some(LimitType::PktBytes) => true,
                        Some(LimitType::Unknown(_)) => {
                            return Err("limit of an unknown type".into())
                        }
                    },
                    state: Some(self.state_id()),
                };
                if limit.rate == 0 || limit.unit_secs == 0 {
                    return Err("limit with a zero rate or unit".into());
                }
                self.stateful_match(Match {
                    test: Test::Limit(limit),
                    negated: flags & NFT_LIMIT_F_INV != 0,
                })?;
            }
            TypedExpr::Quota(q) => {
                let flags = q.flags().unwrap_or(0);
                if flags & !NFT_QUOTA_F_INV != 0 {
                    return Err("quota flags the data plane does not know".into());
                }
                let quota = Quota {
                    bytes: q.bytes().ok_or("quota without bytes")?,
                    used: q.consumed().unwrap_or(0),
                    state: Some(self.state_id()),
                };
                self.lasting = true;
                self.stateful_match(Match {
                    test: Test::Quota(quota),
                    negated: flags & NFT_QUOTA_F_INV != 0,
                })?;
            }
            TypedExpr::Bitwise(b) => {
                let sreg = reg_offset(b.sreg(), "bitwise")?;
                let dreg = reg_offset(b.dreg(), "bitwise")?;
                let len = b.len().unwrap_or(0);
                self.trace
                    .transform(sreg, dreg, len, bitwise_insn(b, sreg, dreg, len));
                // LBVS takes masked fields, mark statements marks with and/xor;
                // anything else is left to residual tests.
                match self.masked(b, sreg, len) {
                    Ok(loaded) => self.load(dreg, loaded),
                    Err(_) => match self
                        .mark_expr(b, sreg, len)
                        .or_else(|| self.mark_shift(b, sreg, len))
                    {
                        Some(loaded) => self.load(dreg, loaded),
                        None => self.forget(dreg, len),
                    },
                }
            }
            TypedExpr::Exthdr(x) => {
                if x.sreg().is_some() {
                    return Err(
                        "exthdr writes (option mangling) are not supported by the eBPF data plane"
                            .into(),
                    );
                }
                let dreg = reg_offset(x.dreg(), "exthdr")?;
                let insn = self.exthdr_insn(x, dreg)?;
                let len = match &insn {
                    Insn::Ipv6Exthdr { present: true, .. }
                    | Insn::TcpOption { present: true, .. }
                    | Insn::SctpChunk { present: true, .. } => 4,
                    _ => x.len().unwrap_or(0),
                };
                self.trace.load(dreg, len, Some(insn));
                self.forget(dreg, len);
            }
            TypedExpr::Byteorder(b) => {
                let sreg = reg_offset(b.sreg(), "byteorder")?;
                let dreg = reg_offset(b.dreg(), "byteorder")?;
                let len = b.len().unwrap_or(0);
                let insn = (|| {
                    b.op()?;
                    Some(Insn::Byteorder {
                        sreg: res_reg(sreg)?,
                        dreg: res_reg(dreg)?,
                        len: u8::try_from(len).ok()?,
                        size: u8::try_from(b.size()?).ok()?,
                    })
                })();
                self.trace.transform(sreg, dreg, len, insn);
                self.forget(dreg, len);
            }
            TypedExpr::Cmp(c) => {
                let sreg = reg_offset(c.sreg(), "cmp")?;
                let data = c
                    .data()
                    .and_then(|d| d.value_bytes())
                    .ok_or("cmp without data")?;
                let op = c.op().ok_or("cmp without operator")?;
                let indexed = (|| {
                    let loaded = self
                        .regs
                        .get(&sreg)
                        .cloned()
                        .ok_or("cmp on an empty register")?;
                    let field = self.field(&loaded)?;
                    let values = self.cmp_values(field, &loaded, op, data)?;
                    Ok::<_, String>((field, loaded, values))
                })();
                if let Err(why) = indexed
                    .and_then(|(field, loaded, values)| self.try_predicate(field, &loaded, values))
                {
                    let insn = (|| {
                        Some(Insn::Cmp {
                            sreg: res_reg(sreg)?,
                            op: res_cmp(op)?,
                            data: data.to_vec(),
                        })
                    })();
                    self.residual_test(sreg, data.len() as u32, insn, why)?;
                }
            }
            TypedExpr::Range(r) => {
                let sreg = reg_offset(r.sreg(), "range")?;
                let from = r
                    .from_data()
                    .and_then(|d| d.value_bytes())
                    .ok_or("range without start")?;
                let to = r
                    .to_data()
                    .and_then(|d| d.value_bytes())
                    .ok_or("range without end")?;
                let negated = matches!(r.op(), Some(RangeOp::Neq));
                if !matches!(r.op(), Some(RangeOp::Eq) | Some(RangeOp::Neq)) {
                    return Err("range with an unknown operator".into());
                }
                let indexed = (|| {
                    let loaded = self
                        .regs
                        .get(&sreg)
                        .cloned()
                        .ok_or("range on an empty register")?;
                    let field = self.field(&loaded)?;
                    if loaded.mask.is_some() || !big_endian(field) {
                        return Err(format!("range on {field:?} is not supported"));
                    }
                    if from.len() != loaded.len as usize || to.len() != loaded.len as usize {
                        return Err("range data length differs from the loaded field".into());
                    }
                    Ok((field, loaded))
                })();
                let ranges = if from <= to {
                    vec![(from.to_vec(), to.to_vec())]
                } else {
                    vec![]
                };
                if let Err(why) = indexed.and_then(|(field, loaded)| {
                    self.try_predicate(field, &loaded, Values { ranges, negated })
                }) {
                    let insn = (|| {
                        (from.len() == to.len()).then_some(())?;
                        Some(Insn::Range {
                            sreg: res_reg(sreg)?,
                            negated,
                            from: from.to_vec(),
                            to: to.to_vec(),
                        })
                    })();
                    self.residual_test(sreg, from.len() as u32, insn, why)?;
                }
            }
            TypedExpr::Lookup(l) => {
                if l.dreg().is_some() {
                    return Err(
                        "maps and verdict maps are not supported by the eBPF data plane".into(),
                    );
                }
                let sreg = reg_offset(l.sreg(), "lookup")?;
                let set = self
                    .ctx
                    .view
                    .set_of(self.ctx.table, e)
                    .ok_or("lookup of a set that does not exist")?;
                let ranges = sets::key_ranges(set, None)?;
                let negated = l.flags().unwrap_or(0) & NFT_LOOKUP_F_INV != 0;
                let indexed = (|| {
                    let loaded = self
                        .regs
                        .get(&sreg)
                        .cloned()
                        .ok_or("lookup on an empty register")?;
                    let field = self.field(&loaded)?;
                    if set.key_len != loaded.len {
                        return Err(format!(
                            "set {}: key length differs from the loaded field",
                            set.name
                        ));
                    }
                    if loaded.mask.is_some() {
                        return Err("set lookups on masked fields are not supported".into());
                    }
                    if !big_endian(field) && ranges.iter().any(|(lo, hi)| lo != hi) {
                        return Err(format!("interval sets on {field:?} are not supported"));
                    }
                    Ok((field, loaded))
                })();
                if let Err(why) = indexed.and_then(|(field, loaded)| {
                    let values = Values {
                        ranges: ranges.clone(),
                        negated,
                    };
                    self.try_predicate(field, &loaded, values)
                }) {
                    let insn = (|| {
                        Some(Insn::Lookup {
                            sreg: res_reg(sreg)?,
                            len: u8::try_from(set.key_len).ok()?,
                            negated,
                            elements: ranges.clone(),
                        })
                    })();
                    self.residual_test(sreg, set.key_len, insn, why)?;
                }
            }
            TypedExpr::Counter(_) => {
                // Counters are the last thing before statements and the verdict: the
                // IR rule's own counter (when all matches hold) is exactly this one.
                self.statements = true;
                self.counter = true;
                self.counters.push(CounterRef::Rule {
                    table: self.ctx.table.handle,
                    rule: self.handle,
                    expr: self.expr_index,
                });
            }
            TypedExpr::Objref(o) => {
                // `counter name NAME`: the named object counts what the rule's counter
                // would. Maps of objects and other object types are not supported.
                let name = match (o.imm_type(), o.imm_name()) {
                    (Some(ObjType::Counter), Some(name)) if o.set_sreg().is_none() => name,
                    _ => return Err(
                        "objref other than a named counter is not supported by the eBPF data plane"
                            .into(),
                    ),
                };
                let object = self
                    .ctx
                    .table
                    .objects
                    .iter()
                    .find(|ob| ob.name == name && ob.obj_type == NFT_OBJECT_COUNTER)
                    .ok_or("counter name of an object that does not exist")?;
                self.statements = true;
                self.counter = true;
                self.counters.push(CounterRef::Object {
                    table: self.ctx.table.handle,
                    object: object.handle,
                });
            }
            TypedExpr::Immediate(i) => {
                let dreg = i.dreg().ok_or("immediate without register")?;
                if dreg != Register::Verdict {
                    let value = i.data().and_then(|d| d.value_bytes());
                    if let Some(bytes) = value.filter(|b| b.len() != 4 && b.len() <= 16) {
                        // An address for a payload write (`ip6 daddr set`), which takes
                        // it from [`Self::remember`]; no test may read it.
                        let dreg = reg_offset(Some(dreg), "immediate")?;
                        let len = bytes.len() as u32;
                        self.trace.load(dreg, len, None);
                        self.forget(dreg, len);
                        return Ok(());
                    }
                    let Some(bytes) = value.filter(|b| b.len() == 4) else {
                        return Err(
                            "immediate into a data register (other than a 32-bit value) is not supported"
                                .into(),
                        );
                    };
                    let dreg = reg_offset(Some(dreg), "immediate")?;
                    let insn = res_reg(dreg).map(|d| Insn::Immediate {
                        dreg: d,
                        data: bytes.to_vec(),
                    });
                    self.trace.load(dreg, 4, insn);
                    self.load(
                        dreg,
                        Loaded {
                            source: Source::Const(host_u32(bytes)),
                            len: 4,
                            mask: None,
                        },
                    );
                    return Ok(());
                }
                let code = i
                    .data()
                    .and_then(|d| d.verdict_code())
                    .ok_or("immediate without verdict")?;
                let target = || -> Result<String, String> {
                    let name = i
                        .data()
                        .and_then(|d| d.verdict_attrs())
                        .and_then(|v| v.chain())
                        .ok_or("jump or goto without a chain name")?;
                    Ok(super::regular_chain_key(
                        self.ctx.family,
                        &self.ctx.table.name,
                        name,
                    ))
                };
                self.verdict = Some(match code {
                    VerdictCode::Accept => Action::Accept,
                    VerdictCode::Drop => Action::Drop,
                    VerdictCode::Jump => Action::Jump(target()?),
                    // In a regular chain the IR does what nft_do_chain() does. In a base
                    // chain a goto would end the flattened chain of every hook at once
                    // (its policy), skipping this chain's policy and the later chains;
                    // `return` there is this chain's policy (attach::flatten).
                    VerdictCode::Goto if !self.ctx.base => Action::Goto(target()?),
                    VerdictCode::Return => Action::Return,
                    VerdictCode::Goto => {
                        return Err(format!(
                        "verdict {} in a base chain is not supported by the eBPF data plane yet",
                        verdict_name(code)
                    ))
                    }
                    other => {
                        return Err(format!("verdict {} is not supported", verdict_name(other)))
                    }
                });
            }
            TypedExpr::Log(l) if l.group().is_some() => {
                self.effects.push(nflog_statement(self.ctx, l)?);
                self.statements = true;
            }
            TypedExpr::Log(l) => {
                let spec = log_spec(self.ctx, l)?;
                self.effects.push(Statement::Log { prefix: spec.key() });
                self.statements = true;
            }
            TypedExpr::Reject(r) => {
                self.verdict = Some(super::reject::action(self.ctx.family, self.ctx.hook, r)?);
            }
            TypedExpr::Match(m) => {
                let d = super::xt::decompile_match(&self.xt_cx(), m)?;
                self.apply_xt(d)?;
            }
            TypedExpr::Target(t) => {
                let d = super::xt::decompile_target(&self.xt_cx(), t)?;
                self.apply_xt(d)?;
            }
            other => {
                return Err(format!(
                    "expression {} is not supported by the eBPF data plane",
                    other.name()
                ))
            }
        }
        Ok(())
    }

    /// What a compat expression's decompiler needs to know of the rule so far.
    fn xt_cx(&self) -> super::xt::XtCx<'_> {
        super::xt::XtCx {
            family: self.ctx.family,
            hook: self.ctx.hook,
            families: self.families,
            l4protos: self.l4protos.as_ref(),
            view: Some(self.ctx.view),
        }
    }

    /// Records what a compat `match` or `target` stands for.
    fn apply_xt(&mut self, d: super::xt::Decompiled) -> Result<(), String> {
        use super::xt::Decompiled;
        if self.stateful
            && matches!(
                d,
                Decompiled::Matches(_) | Decompiled::Residual(..) | Decompiled::EthernetResidual(_)
            )
        {
            return Err(
                "a match after limit, quota or a list-changing recent is not supported by the eBPF data plane".into(),
            );
        }
        match d {
            Decompiled::Always => {}
            Decompiled::Never => self.never = true,
            Decompiled::Matches(ms) => self.matches.extend(ms.into_iter().map(SymMatch::Ir)),
            Decompiled::EthernetResidual(insns) => {
                self.matches.push(SymMatch::IfType {
                    output: false,
                    types: vec![ARPHRD_ETHER],
                    negated: false,
                });
                self.forget(
                    super::residual::SCRATCH_NETLINK,
                    super::residual::SCRATCH_LEN,
                );
                self.trace.scratch_test(insns);
            }
            Decompiled::Residual(ms, insns) => {
                let drops = insns.iter().any(Insn::can_drop);
                self.matches.extend(ms.into_iter().map(SymMatch::Ir));
                // The scratch registers are the extension's own: forget what nft had
                // there (a later read of them is refused, not misread).
                self.forget(
                    super::residual::SCRATCH_NETLINK,
                    super::residual::SCRATCH_LEN,
                );
                self.rateest.extend(super::xt::rateest::reads(&insns));
                // A recent match that changes its list must be the rule's last test,
                // as a limit is: the IR tests the rule's other matches first.
                let changes_list = super::xt::recent::has_side_effects(&insns);
                self.trace.scratch_test(insns);
                if changes_list {
                    self.stateful = true;
                }
                if drops {
                    self.drops_after = Some(DropMark {
                        matches: self.matches.len(),
                        tests: self.trace.tests(),
                        never: self.never,
                    });
                }
            }
            Decompiled::Statement(st) => {
                self.effects.push(st);
                self.statements = true;
            }
            Decompiled::Verdict(a) => self.verdict = Some(a),
            Decompiled::StatementVerdict(st, a) => {
                self.effects.push(st);
                self.statements = true;
                self.verdict = Some(a);
            }
            Decompiled::Write(w) => self.header_write(w)?,
            Decompiled::WriteThenStatement(w, st) => {
                self.header_write(w)?;
                self.effects.push(st);
                self.statements = true;
            }
            Decompiled::Stateful(m) => {
                self.lasting = true;
                self.stateful_match(m)?
            }
            Decompiled::Quota { bytes, negated } => {
                self.lasting = true;
                let quota = Quota {
                    bytes,
                    used: 0,
                    state: Some(self.state_id()),
                };
                self.stateful_match(Match {
                    test: Test::Quota(quota),
                    negated,
                })?;
            }
            Decompiled::RateestCount {
                name,
                interval,
                ewma_log,
            } => {
                // What the rule's counter counts here, as a `counter` would.
                self.statements = true;
                self.counter = true;
                let counter = CounterRef::Rule {
                    table: self.ctx.table.handle,
                    rule: self.handle,
                    expr: self.expr_index,
                };
                self.counters.push(counter);
                self.rateest.push(super::xt::rateest::RateestUse::Counts {
                    name,
                    interval,
                    ewma_log,
                    counter,
                });
            }
            Decompiled::Nth {
                every,
                count,
                negated,
            } => {
                let nth = Nth {
                    every,
                    count,
                    state: Some(self.state_id()),
                };
                self.stateful_match(Match {
                    test: Test::Nth(nth),
                    negated,
                })?;
            }
        }
        Ok(())
    }

    /// The identity of the expression being decompiled (a limit's or quota's state).
    fn state_id(&self) -> StateId {
        StateId {
            table: self.table_handle,
            rule: self.rule_handle,
            expr: self.expr_index,
        }
    }

    /// A limit or quota: after every stateless match (see `stateful`), before any
    /// statement (a counter before it would count packets it then stops).
    fn stateful_match(&mut self, m: Match) -> Result<(), String> {
        self.stateful = true;
        if self.first_stateful.is_none() {
            self.first_stateful = Some((self.matches.len(), self.trace.tests()));
        }
        self.matches.push(SymMatch::Ir(m));
        Ok(())
    }

    /// `ct KEY set` from the register at `sreg`: `ct mark set` a constant, or the
    /// meta mark or ct mark with and/xor.
    fn ct_set(&mut self, key: Option<CtKey>, direction: bool, sreg: u32) -> Result<(), String> {
        if key != Some(CtKey::Mark) || direction {
            return Err(format!(
                "ct {key:?} set is not supported by the eBPF data plane"
            ));
        }
        let statement = match self.mark_operand(sreg) {
            Some(MarkOperand::Const(value)) => Statement::set_ct_mark(value),
            Some(MarkOperand::Meta { and, xor }) => Statement::SetCtMarkFromMark { and, xor },
            Some(MarkOperand::Ct { and, xor }) => {
                self.needs_connection()?;
                Statement::SetCtMark { and, xor }
            }
            Some(MarkOperand::Shift(m)) => {
                if m.from_ct {
                    self.needs_connection()?;
                }
                Statement::MarkShift(MarkShift { to_ct: true, ..m })
            }
            None => {
                return Err(
                    "ct mark set from anything but a constant or the meta or ct mark is not \
                     supported"
                        .into(),
                )
            }
        };
        self.effects.push(statement);
        self.statements = true;
        Ok(())
    }

    /// What a mark statement's register holds: a constant, or the meta or ct mark with
    /// and/xor (`None`: anything else).
    fn mark_operand(&self, sreg: u32) -> Option<MarkOperand> {
        let loaded = self.regs.get(&sreg)?;
        let and = loaded.mask.as_deref().map(host_u32).unwrap_or(u32::MAX);
        Some(match loaded.source {
            Source::Const(value) => MarkOperand::Const(value),
            Source::Meta(MetaKey::Mark) if loaded.len == 4 => MarkOperand::Meta { and, xor: 0 },
            Source::CtMark if loaded.len == 4 => MarkOperand::Ct { and, xor: 0 },
            Source::MarkExpr {
                ct: false,
                and,
                xor,
            } => MarkOperand::Meta { and, xor },
            Source::MarkExpr { ct: true, and, xor } => MarkOperand::Ct { and, xor },
            Source::MarkShift(m) => MarkOperand::Shift(m),
            _ => return None,
        })
    }

    /// `bitwise` (mask and xor) on the meta or ct mark, for a mark statement:
    /// `((x & a) ^ b) & m ^ y` is `(x & (a & m)) ^ ((b & m) ^ y)`.
    fn mark_expr(
        &self,
        b: &netlink_proto::expr::bitwise::Bitwise,
        sreg: u32,
        len: u32,
    ) -> Option<Loaded> {
        if !matches!(b.op(), None | Some(BitwiseOp::MaskXor)) || len != 4 {
            return None;
        }
        let mask = b
            .mask()
            .and_then(|d| d.value_bytes())
            .filter(|m| m.len() == 4)?;
        let xor = match b.xor().and_then(|d| d.value_bytes()) {
            Some(x) if x.len() == 4 => host_u32(x),
            Some(_) => return None,
            None => 0,
        };
        let (ct, and, old_xor) = match self.mark_operand(sreg)? {
            MarkOperand::Const(_) => return None,
            MarkOperand::Meta { and, xor } => (false, and, xor),
            MarkOperand::Ct { and, xor } => (true, and, xor),
            MarkOperand::Shift(s) => {
                // After the shift: `(v << n) & m` is `(v & (m >> n)) << n`, `(v >> n) & m`
                // is `(v & (m << n)) >> n` (the bits shifted out or in are 0 either way).
                let m = host_u32(mask);
                let n = u32::from(s.by);
                let before = if s.left { m >> n } else { m << n };
                let shifted = MarkShift {
                    and: s.and & before,
                    xor: s.xor & before,
                    post: (s.post & m) ^ xor,
                    ..s
                };
                return Some(Loaded {
                    source: Source::MarkShift(shifted),
                    len: 4,
                    mask: None,
                });
            }
        };
        let m = host_u32(mask);
        Some(Loaded {
            source: Source::MarkExpr {
                ct,
                and: and & m,
                xor: (old_xor & m) ^ xor,
            },
            len: 4,
            mask: None,
        })
    }

    /// `bitwise` shift of the meta or ct mark (with and/xor before it), for a mark
    /// statement; a second shift is not taken.
    fn mark_shift(
        &self,
        b: &netlink_proto::expr::bitwise::Bitwise,
        sreg: u32,
        len: u32,
    ) -> Option<Loaded> {
        let left = match b.op() {
            Some(BitwiseOp::Lshift) => true,
            Some(BitwiseOp::Rshift) => false,
            _ => return None,
        };
        let data = b.data()?.value_bytes()?;
        let by = u32::from_ne_bytes(data.try_into().ok()?);
        if len != 4 || !(1..32).contains(&by) {
            return None;
        }
        let (from_ct, and, xor) = match self.mark_operand(sreg)? {
            MarkOperand::Meta { and, xor } => (false, and, xor),
            MarkOperand::Ct { and, xor } => (true, and, xor),
            MarkOperand::Const(_) | MarkOperand::Shift(_) => return None,
        };
        Some(Loaded {
            source: Source::MarkShift(MarkShift {
                from_ct,
                to_ct: false,
                and,
                xor,
                left,
                by: by as u8,
                post: 0,
            }),
            len: 4,
            mask: None,
        })
    }

    /// A statement reads the ct mark: without a connection nft_ct_get_eval breaks the
    /// rule at the load, before any statement or counter (loads after statements are
    /// refused), which is the rule not matching.
    fn needs_connection(&mut self) -> Result<(), String> {
        if self.stateful {
            return Err(
                "ct mark read after limit or quota is not supported by the eBPF data plane".into(),
            );
        }
        self.matches.push(SymMatch::Ir(has_connection()));
        Ok(())
    }

    /// `meta KEY set` from the register at `sreg`: `meta mark set` a constant, or the
    /// meta mark or ct mark with and/xor.
    /// `meta skuid` / `meta skgid` (nft_meta_get_eval_skugid()): the fsuid/fsgid of the
    /// file of skb_to_full_sk()'s socket, of the namespace; the rule breaks without
    /// one. Read at TC egress by [`Insn::SockUgid`] (bpf/lib/sockcred.h), so only in
    /// ip, ip6 and inet output and postrouting chains (at input skb->sk is the socket
    /// early demux finds after TC ingress). The ids are the initial user namespace's;
    /// the kernel maps them through the namespace's (from_kuid_munged()), so a
    /// namespace of another user namespace is refused (xt::owner::check_netns_userns).
    fn meta_sock_ugid(&mut self, gid: bool, dreg: u32) -> Result<(), String> {
        let name = if gid { "skgid" } else { "skuid" };
        if !matches!(self.ctx.family, Family::Ip | Family::Ip6 | Family::Inet)
            || !matches!(self.ctx.hook, Hook::Output | Hook::Postrouting)
        {
            return Err(format!(
                "meta {name} is supported by the eBPF data plane only in ip, ip6 and inet \
                 output and postrouting chains (the socket is known at TC egress only)"
            ));
        }
        let insn = Insn::SockUgid {
            gid,
            dreg: res_reg(dreg).ok_or("meta: invalid register")?,
        };
        self.trace.load(dreg, 4, Some(insn));
        // Only residual programs test it.
        self.forget(dreg, 4);
        Ok(())
    }

    fn meta_set(&mut self, key: Option<MetaKey>, sreg: u32) -> Result<(), String> {
        if key != Some(MetaKey::Mark) {
            return Err(format!(
                "meta {} set is not supported by the eBPF data plane",
                key.map(meta_name).unwrap_or_default()
            ));
        }
        mark_set_allowed_in(self.ctx.family, self.ctx.hook)?;
        let statement = match self.mark_operand(sreg) {
            Some(MarkOperand::Const(value)) => Statement::set_mark(value),
            Some(MarkOperand::Meta { and, xor }) => Statement::SetMark { and, xor },
            Some(MarkOperand::Ct { and, xor }) => {
                self.needs_connection()?;
                Statement::SetMarkFromCtMark { and, xor }
            }
            Some(MarkOperand::Shift(m)) => {
                if m.from_ct {
                    self.needs_connection()?;
                }
                Statement::MarkShift(MarkShift { to_ct: false, ..m })
            }
            None => {
                return Err(
                    "meta mark set from anything but a constant or the meta or ct mark is not \
                     supported"
                        .into(),
                )
            }
        };
        self.effects.push(statement);
        self.statements = true;
        Ok(())
    }

    /// Puts `loaded` in the register at byte offset `dreg`, forgetting whatever it
    /// overwrites (registers overlap: the 16-byte ones hold four 4-byte ones).
    fn load(&mut self, dreg: u32, loaded: Loaded) {
        let end = dreg + loaded.len.max(1);
        self.regs
            .retain(|&off, l| off + l.len.max(1) <= dreg || off >= end);
        self.regs.insert(dreg, loaded);
    }

    /// The residual load of an `exthdr` expression: IPv6 extension headers (under an
    /// IPv6 dependency: the kernel reads byte 6 of any network header) and TCP options.
    fn exthdr_insn(
        &self,
        x: &netlink_proto::expr::exthdr::Exthdr,
        dreg: u32,
    ) -> Result<Insn, String> {
        use netlink_proto::expr::exthdr::ExthdrOp;
        let flags = x.flags().unwrap_or(0);
        if flags & !NFT_EXTHDR_F_PRESENT != 0 {
            return Err(format!("exthdr flags {flags:#x} are not supported"));
        }
        let present = flags & NFT_EXTHDR_F_PRESENT != 0;
        let kind = x.header_type().ok_or("exthdr without type")?;
        let offset = u8::try_from(x.offset().unwrap_or(0)).map_err(|_| "exthdr offset")?;
        let len = u8::try_from(x.len().unwrap_or(0)).map_err(|_| "exthdr length")?;
        let dreg = res_reg(dreg).ok_or("exthdr: invalid register")?;
        match x.op() {
            None | Some(ExthdrOp::Ipv6) => {
                // The netdev view walks any packet, as the kernel does.
                if self.families != V6 && !self.netdev_view() {
                    return Err("exthdr of IPv6 without an IPv6 dependency".into());
                }
                Ok(Insn::Ipv6Exthdr {
                    header: kind,
                    offset,
                    len,
                    dreg,
                    present,
                })
            }
            Some(ExthdrOp::Tcpopt) => Ok(Insn::TcpOption {
                kind,
                offset,
                len,
                dreg,
                present,
            }),
            // Walked over the whole packet (bpf/lib/residual.h, NS_RES_SCTP_CHUNK).
            Some(ExthdrOp::Sctp) => Ok(Insn::SctpChunk {
                kind,
                offset,
                len,
                dreg,
                present,
            }),
            Some(other) => Err(format!(
                "exthdr of {other:?} is not supported by the eBPF data plane"
            )),
        }
    }

    /// Packet fields are read as netdev chains see them (`Insn::NetdevView`), by the
    /// residual program only.
    fn netdev_view(&self) -> bool {
        matches!(self.ctx.family, Family::Netdev | Family::Bridge)
    }

    /// How link-layer loads (`@ll`) read the frame at this chain's hook: only where
    /// TC's frame, which starts at the MAC header, is the one the kernel's hook reads
    /// from skb_mac_header(). The netdev hooks and TC see the same skb; the bridge
    /// hooks run at the ports' TC hooks with the frame's VLAN tag as the bridge left it
    /// (br_handle_vlan before forward and output) and the MAC header where it was
    /// received or sent. The IP hooks' prerouting and input see the received frame,
    /// with any accelerated tag taken off before them (vlan_do_receive, or the
    /// priority tag cleared). Not at output (no MAC header yet: the kernel breaks, TC
    /// egress has one), forward and postrouting (TC egress sees the new header).
    fn link_base(&self) -> Result<ResBase, String> {
        match (self.ctx.family, self.ctx.hook) {
            (Family::Netdev | Family::Bridge, _) | (Family::Inet, Hook::Ingress) => {
                Ok(ResBase::LinkLayer)
            }
            (Family::Ip | Family::Ip6 | Family::Inet, Hook::Prerouting | Hook::Input) => {
                Ok(ResBase::LinkLayerUntagged)
            }
            (_, hook) => Err(format!(
                "link-layer payload matches in {hook:?} chains of this family are not \
                 supported by the eBPF data plane (TC does not see the link-layer header \
                 the kernel reads there)"
            )),
        }
    }

    /// TC's frame starts at the MAC header the kernel reads only on devices with one:
    /// where the kernel has none (skb_mac_header_len() 0: tun, ip tunnels, ...) its
    /// link-layer loads break. Rules with them hold only on Ethernet and loopback
    /// devices (TC's device: the input one at ingress, the output one at egress);
    /// bridge ports and bridges are Ethernet.
    fn require_link_header(&mut self) -> Result<(), String> {
        if self.ctx.family == Family::Bridge {
            return Ok(());
        }
        let guard = SymMatch::IfType {
            output: self.ctx.hook == Hook::Egress,
            types: vec![ARPHRD_ETHER, ARPHRD_LOOPBACK],
            negated: false,
        };
        if !self.matches.contains(&guard) {
            if self.stateful {
                return Err(
                    "a match after limit, quota or a list-changing recent is not supported by the eBPF data plane".into(),
                );
            }
            self.matches.push(guard);
        }
        Ok(())
    }

    /// Forgets what the registers at `dreg` hold (a value only residual tests use).
    fn forget(&mut self, dreg: u32, len: u32) {
        let end = dreg + len.max(1);
        self.regs
            .retain(|&off, l| off + l.len.max(1) <= dreg || off >= end);
    }

    /// A masked field for LBVS: `bitwise` with a mask and no xor on a known field.
    fn masked(
        &self,
        b: &netlink_proto::expr::bitwise::Bitwise,
        sreg: u32,
        len: u32,
    ) -> Result<Loaded, String> {
        if !matches!(b.op(), None | Some(BitwiseOp::MaskXor)) {
            return Err("bitwise shifts and boolean operations are not supported".into());
        }
        let mask = b
            .mask()
            .and_then(|d| d.value_bytes())
            .ok_or("bitwise without mask")?;
        let xor = b.xor().and_then(|d| d.value_bytes()).unwrap_or(&[]);
        if xor.iter().any(|&x| x != 0) {
            return Err("bitwise with a non-zero xor is not supported".into());
        }
        let mut loaded = self
            .regs
            .get(&sreg)
            .cloned()
            .ok_or("bitwise on an empty register")?;
        if matches!(
            loaded.source,
            Source::MarkExpr { .. } | Source::MarkShift(_)
        ) {
            return Err("bitwise on a mark expression is not a masked field".into());
        }
        if loaded.len != len || mask.len() != len as usize {
            return Err("bitwise length differs from the loaded field".into());
        }
        let combined = match &loaded.mask {
            Some(old) => old.iter().zip(mask).map(|(a, b)| a & b).collect(),
            None => mask.to_vec(),
        };
        loaded.mask = Some(combined);
        Ok(loaded)
    }

    /// [`Self::predicate`], leaving the rule's state as it was when it fails.
    fn try_predicate(&mut self, field: Field, l: &Loaded, v: Values) -> Result<(), String> {
        let saved = (
            self.families,
            self.l4protos.clone(),
            self.never,
            self.matches.len(),
        );
        let result = self.predicate(field, l, v);
        if result.is_err() {
            self.families = saved.0;
            self.l4protos = saved.1;
            self.never = saved.2;
            self.matches.truncate(saved.3);
        }
        result
    }

    /// A test LBVS cannot index, as a residual operation; `why` is the refusal if the
    /// residual program cannot do it either.
    fn residual_test(
        &mut self,
        sreg: u32,
        len: u32,
        insn: Option<Insn>,
        why: String,
    ) -> Result<(), String> {
        self.trace.test(sreg, len, insn, why)
    }

    /// Which field a loaded register holds, given what the rule established so far.
    fn field(&self, l: &Loaded) -> Result<Field, String> {
        let fam = self.families;
        let f = match l.source {
            Source::Meta(MetaKey::L4proto) => Field::L4Proto,
            Source::Meta(MetaKey::Nfproto) => Field::NfProto,
            Source::Meta(MetaKey::Iif) => Field::Iif,
            Source::Meta(MetaKey::Oif) => Field::Oif,
            Source::Meta(MetaKey::Mark) => Field::Mark,
            Source::Meta(MetaKey::Iifname) => Field::IifName,
            Source::Meta(MetaKey::Oifname) => Field::OifName,
            Source::Meta(MetaKey::Iiftype) => Field::IifType,
            Source::Meta(k) => return Err(format!("meta {} is not supported", meta_name(k))),
            Source::CtState => Field::CtState,
            Source::CtStatus => Field::CtStatus,
            Source::CtMark => Field::CtMark,
            Source::Const(_) => return Err("a match on a constant is not supported".into()),
            Source::MarkExpr { .. } | Source::MarkShift(_) => {
                return Err("a match on a mark with and/xor is not supported".into())
            }
            Source::Network { offset } if fam == V4 => match (offset, l.len) {
                (12, 1..=4) => Field::Saddr4,
                (16, 1..=4) => Field::Daddr4,
                (9, 1) => Field::L4Proto,
                _ => {
                    return Err(format!(
                        "ip header field at offset {offset} length {} is not supported by the eBPF data plane",
                        l.len
                    ))
                }
            },
            Source::Network { offset } if fam == V6 => match (offset, l.len) {
                (8, 1..=16) => Field::Saddr6,
                (24, 1..=16) => Field::Daddr6,
                _ => {
                    return Err(format!(
                        "ip6 header field at offset {offset} length {} is not supported by the eBPF data plane",
                        l.len
                    ))
                }
            },
            Source::Network { .. } => {
                return Err("network header match without an IP version dependency".into())
            }
            Source::Transport { offset } => {
                let protos = self
                    .l4protos
                    .as_ref()
                    .ok_or("transport header match without a protocol dependency")?;
                let ports = protos.iter().all(|p| PORT_PROTOCOLS.contains(p));
                match (offset, l.len) {
                    (0, 2) if ports => Field::Sport,
                    (2, 2) if ports => Field::Dport,
                    (0, 1) if fam == V4 && protos.iter().all(|&p| p == IPPROTO_ICMP) => {
                        Field::IcmpType
                    }
                    (0, 1) if fam == V6 && protos.iter().all(|&p| p == IPPROTO_ICMPV6) => {
                        Field::Icmpv6Type
                    }
                    (0, 1) if fam == V4 | V6 => {
                        return Err(
                            "icmp/icmpv6 type without an IP version dependency (the kernel reads \
                             the byte for both versions) is not supported by the eBPF data plane"
                                .into(),
                        )
                    }
                    _ => {
                        return Err(format!(
                            "transport header field at offset {offset} length {} is not supported by the eBPF data plane",
                            l.len
                        ))
                    }
                }
            }
        };
        let len_ok = match f {
            Field::Saddr4 | Field::Daddr4 | Field::Saddr6 | Field::Daddr6 => true,
            Field::L4Proto | Field::NfProto | Field::IcmpType | Field::Icmpv6Type => l.len == 1,
            Field::Sport | Field::Dport => l.len == 2,
            Field::Iif
            | Field::Oif
            | Field::Mark
            | Field::CtState
            | Field::CtStatus
            | Field::CtMark => l.len == 4,
            Field::IifName | Field::OifName => l.len <= 16,
            Field::IifType => l.len == 2,
        };
        if !len_ok {
            return Err(format!("{f:?} loaded with length {}", l.len));
        }
        if l.mask.is_some()
            && !matches!(
                f,
                Field::Saddr4
                    | Field::Daddr4
                    | Field::Saddr6
                    | Field::Daddr6
                    | Field::Mark
                    | Field::CtState
                    | Field::CtStatus
                    | Field::CtMark
            )
        {
            return Err(format!("masked {f:?} is not supported"));
        }
        let hook = self.ctx.hook;
        match f {
            Field::Iif | Field::IifName if !hook.has_iif() => {
                return Err(format!(
                    "{f:?} in a {hook:?} chain (no input device there) is not supported"
                ))
            }
            Field::Oif | Field::OifName if !hook.has_oif() => {
                return Err(format!(
                    "{f:?} in a {hook:?} chain (no output device there) is not supported"
                ))
            }
            Field::CtState | Field::CtStatus | Field::CtMark
                if self.ctx.family == Family::Netdev =>
            {
                return Err(
                    "ct state in netdev chains (no conntrack there) is not supported".into(),
                )
            }
            Field::L4Proto | Field::NfProto if self.ctx.family == Family::Netdev => {
                return Err(format!(
                    "{f:?} in netdev chains is not supported by the eBPF data plane"
                ))
            }
            // ARP packets have neither: left to a residual program, which knows that.
            Field::L4Proto | Field::NfProto if self.ctx.family == Family::Arp => {
                return Err(format!("{f:?} of an ARP packet"))
            }
            _ => {}
        }
        Ok(f)
    }

    /// Values of a `cmp` on `field` (data in register byte order).
    fn cmp_values(
        &self,
        field: Field,
        l: &Loaded,
        op: CmpOp,
        data: &[u8],
    ) -> Result<Values, String> {
        // Interface names compare a prefix for wildcards (`"eth*"`).
        let prefix_ok =
            matches!(field, Field::IifName | Field::OifName) && data.len() <= l.len as usize;
        if data.len() != l.len as usize && !prefix_ok {
            return Err("cmp data length differs from the loaded field".into());
        }
        let exact = |negated| Values {
            ranges: vec![(data.to_vec(), data.to_vec())],
            negated,
        };
        match op {
            CmpOp::Eq => Ok(exact(false)),
            CmpOp::Neq => Ok(exact(true)),
            CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte => {
                if !big_endian(field) || field == Field::NfProto || l.mask.is_some() {
                    return Err(format!("ordered comparison on {field:?} is not supported"));
                }
                let v = be(data);
                let max = (1u128 << (8 * data.len())) - 1;
                let (lo, hi) = match op {
                    CmpOp::Lt if v == 0 => {
                        return Ok(Values {
                            ranges: vec![],
                            negated: false,
                        })
                    }
                    CmpOp::Lt => (0, v - 1),
                    CmpOp::Lte => (0, v),
                    CmpOp::Gt if v == max => {
                        return Ok(Values {
                            ranges: vec![],
                            negated: false,
                        })
                    }
                    CmpOp::Gt => (v + 1, max),
                    _ => (v, max),
                };
                Ok(Values {
                    ranges: vec![(to_be(lo, data.len()), to_be(hi, data.len()))],
                    negated: false,
                })
            }
            CmpOp::Unknown(x) => Err(format!("cmp operator {x}")),
        }
    }

    /// Records a predicate; dependencies narrow what the rule can still match.
    fn predicate(&mut self, field: Field, l: &Loaded, v: Values) -> Result<(), String> {
        if self.stateful {
            return Err(
                "a match after limit, quota or a list-changing recent is not supported by the eBPF data plane".into(),
            );
        }
        let Values { ranges, negated } = v;
        let nums = || sets::numeric_ranges(&ranges);
        let small = |max: u128| -> BTreeSet<u8> {
            let mut s = BTreeSet::new();
            for (lo, hi) in nums() {
                for x in lo..=hi.min(max) {
                    s.insert(x as u8);
                }
            }
            s
        };
        let test = match field {
            Field::NfProto => {
                let listed = small(255);
                let mut fams = 0;
                if listed.contains(&(NFPROTO_IPV4 as u8)) != negated {
                    fams |= V4;
                }
                if listed.contains(&(NFPROTO_IPV6 as u8)) != negated {
                    fams |= V6;
                }
                self.families &= fams;
                if self.families == 0 {
                    self.never = true;
                } else if self.ctx.family == Family::Inet && self.families != (V4 | V6) {
                    self.matches.push(SymMatch::Ir(family_guard(self.families)));
                }
                return Ok(());
            }
            Field::L4Proto => {
                let listed = small(255);
                let allowed: BTreeSet<u8> = if negated {
                    (0..=255u8).filter(|p| !listed.contains(p)).collect()
                } else {
                    listed.clone()
                };
                self.l4protos = Some(match self.l4protos.take() {
                    Some(prev) => prev.intersection(&allowed).copied().collect(),
                    None => allowed,
                });
                if self.l4protos.as_ref().is_some_and(BTreeSet::is_empty) {
                    self.never = true;
                }
                // ip protocol is IPv4's l4proto; under an ip table the chain scope says v4.
                let t = Test::L4Proto(listed.into_iter().collect());
                if let Source::Network { .. } = l.source {
                    if self.ctx.family == Family::Inet && self.families != V4 {
                        return Err("ip protocol without an IPv4 dependency".into());
                    }
                }
                t
            }
            Field::Saddr4 | Field::Daddr4 => {
                let nets = self.v4_nets(l, &ranges)?;
                if field == Field::Saddr4 {
                    Test::IpSaddr(nets)
                } else {
                    Test::IpDaddr(nets)
                }
            }
            Field::Saddr6 | Field::Daddr6 => {
                let nets = self.v6_nets(l, &ranges)?;
                if field == Field::Saddr6 {
                    Test::Ip6Saddr(nets)
                } else {
                    Test::Ip6Daddr(nets)
                }
            }
            Field::Sport | Field::Dport => {
                let ports = nums()
                    .into_iter()
                    .map(|(lo, hi)| PortRange::new(lo as u16, hi as u16))
                    .collect();
                if field == Field::Sport {
                    Test::Sport(ports)
                } else {
                    Test::Dport(ports)
                }
            }
            Field::IcmpType => Test::IcmpType(small(255).into_iter().collect()),
            Field::Icmpv6Type => Test::Icmpv6Type(small(255).into_iter().collect()),
            Field::Iif | Field::Oif => {
                let idx: Vec<u32> = ranges.iter().map(|(k, _)| host_u32(k)).collect();
                if field == Field::Iif {
                    Test::Iif(idx)
                } else {
                    Test::Oif(idx)
                }
            }
            Field::Mark => {
                let mask = l.mask.as_deref().map(host_u32).unwrap_or(u32::MAX);
                let values: Vec<u32> = ranges.iter().map(|(k, _)| host_u32(k)).collect();
                if values.iter().any(|v| v & !mask != 0) {
                    return Err("meta mark compared with bits outside its mask".into());
                }
                Test::Mark { mask, values }
            }
            Field::CtMark => {
                if ranges.iter().any(|(lo, hi)| lo != hi) {
                    return Err("ct mark ranges are not supported by the eBPF data plane".into());
                }
                let mask = l.mask.as_deref().map(host_u32).unwrap_or(u32::MAX);
                // A value with bits outside the mask is never equal.
                let values: Vec<u32> = ranges
                    .iter()
                    .map(|(k, _)| host_u32(k))
                    .filter(|v| v & !mask == 0)
                    .collect();
                if values.is_empty() {
                    // Never equal: the match fails, or (negated) holds for every
                    // packet with a connection.
                    if negated {
                        self.matches.push(SymMatch::Ir(has_connection()));
                    } else {
                        self.never = true;
                    }
                    return Ok(());
                }
                Test::CtMark { mask, values }
            }
            Field::CtStatus => {
                match ct_status_matches(l, &ranges, negated)? {
                    Some(ms) => self.matches.extend(ms.into_iter().map(SymMatch::Ir)),
                    None => self.never = true,
                }
                return Ok(());
            }
            Field::CtState => {
                let bits = ct_state_bits(l, &ranges, negated)?;
                if bits == 0 {
                    self.never = true;
                } else {
                    // The negation is already in the bits.
                    self.matches
                        .push(SymMatch::Ir(Match::is(Test::CtState(bits))));
                }
                return Ok(());
            }
            Field::IifType => {
                let mut types = Vec::new();
                for (lo, hi) in &ranges {
                    let (Ok(a), Ok(b)) =
                        (<[u8; 2]>::try_from(&lo[..]), <[u8; 2]>::try_from(&hi[..]))
                    else {
                        return Err("meta iiftype: values of length 2 expected".into());
                    };
                    if a != b {
                        return Err("meta iiftype ranges are not supported".into());
                    }
                    types.push(u16::from_ne_bytes(a));
                }
                // skb->dev: the input device up to forward, the output device at
                // egress and postrouting (ip_output sets it), as TC sees them.
                let output = matches!(self.ctx.hook, Hook::Egress | Hook::Postrouting);
                self.matches.push(SymMatch::IfType {
                    output,
                    types,
                    negated,
                });
                return Ok(());
            }
            Field::IifName | Field::OifName => {
                let patterns = ranges
                    .iter()
                    .map(|(k, _)| IfNamePattern { bytes: k.clone() })
                    .collect();
                self.matches.push(SymMatch::IfName {
                    output: field == Field::OifName,
                    patterns,
                    negated,
                });
                return Ok(());
            }
        };
        self.matches.push(SymMatch::Ir(Match { test, negated }));
        Ok(())
    }

    fn v4_nets(&self, l: &Loaded, ranges: &[ByteRange]) -> Result<Vec<Ipv4Net>, String> {
        let plen = prefix_len(l)?;
        let mut nets = Vec::new();
        for (lo, hi) in ranges {
            if plen < l.len * 8 || lo == hi {
                // A (masked) prefix: the loaded bytes of the address, the rest zero.
                let mut addr = [0u8; 4];
                addr[..lo.len()].copy_from_slice(lo);
                if masked_out_bits(lo, l.mask.as_deref()) {
                    return Err("address compared with bits outside its mask".into());
                }
                if lo != hi {
                    return Err("address ranges on masked addresses are not supported".into());
                }
                nets.push(Ipv4Net::new(addr.into(), plen as u8).map_err(|e| e.to_string())?);
            } else {
                let pad = |b: &[u8], fill: u8| {
                    let mut a = [fill; 4];
                    a[..b.len()].copy_from_slice(b);
                    a.to_vec()
                };
                nets.extend(sets::v4_prefixes(&[(pad(lo, 0), pad(hi, 0xff))]));
            }
        }
        Ok(nets)
    }

    fn v6_nets(&self, l: &Loaded, ranges: &[ByteRange]) -> Result<Vec<Ipv6Net>, String> {
        let plen = prefix_len(l)?;
        let mut nets = Vec::new();
        for (lo, hi) in ranges {
            if plen < l.len * 8 || lo == hi {
                let mut addr = [0u8; 16];
                addr[..lo.len()].copy_from_slice(lo);
                if masked_out_bits(lo, l.mask.as_deref()) {
                    return Err("address compared with bits outside its mask".into());
                }
                if lo != hi {
                    return Err("address ranges on masked addresses are not supported".into());
                }
                nets.push(Ipv6Net::new(addr.into(), plen as u8).map_err(|e| e.to_string())?);
            } else {
                let pad = |b: &[u8], fill: u8| {
                    let mut a = [fill; 16];
                    a[..b.len()].copy_from_slice(b);
                    a.to_vec()
                };
                nets.extend(sets::v6_prefixes(&[(pad(lo, 0), pad(hi, 0xff))]));
            }
        }
        Ok(nets)
    }
}

/// What a bridge chain's rule may use: meta mark and devices, sets of them, counters,
/// limits, quotas, mark set and verdicts; at prerouting and input also header matches
/// (network and transport payload, IPv6 extension headers, TCP options, `meta
/// protocol`, `l4proto`, `length`), read as netdev ingress chains see the frame
/// (`bpf/lib/netdev.h`): nft_do_chain_bridge keys on the Ethernet header's type, which
/// is skb->protocol once VLAN tags are out of the frame, and the hook has skb->data at
/// the network header, as TC ingress has. At the ports' egress (forward, output,
/// postrouting) the kernel's skb->data is still at the network header, TC's at the
/// MAC header: header matches that depend on it (transport header, `meta
/// l4proto/length`, extension headers) stay refused there; network header loads and
/// `meta protocol`, which do not, are allowed. Link-layer loads are refused as in
/// netdev chains (hardware-accelerated VLAN tags are re-inserted into them), and so
/// are `meta nfproto` (NFPROTO_BRIDGE), conntrack (nf_conntrack_bridge), reject
/// (nft_reject_bridge) and log. ebtables' compat matches and targets read the packet
/// their own way: `xt/ebt.rs` decides which it can reproduce.
fn bridge_allows(typed: &TypedExpr, hook: Hook) -> Result<(), String> {
    let headers = matches!(hook, Hook::Prerouting | Hook::Input);
    let egress_headers = || {
        Err(
            "header matches in bridge forward, output and postrouting chains are not \
             supported by the eBPF data plane (the kernel reads them with skb->data at the \
             network header, TC egress at the MAC header)"
                .to_string(),
        )
    };
    match typed {
        // skb->protocol, which nothing changes between the hook and the port's TC.
        TypedExpr::Meta(m) if m.key() == Some(MetaKey::Protocol) && m.sreg().is_none() => Ok(()),
        TypedExpr::Meta(m)
            if matches!(m.key(), Some(MetaKey::L4proto | MetaKey::Len)) && m.sreg().is_none() =>
        {
            if headers {
                Ok(())
            } else {
                egress_headers()
            }
        }
        // Link-layer loads read the MAC header wherever the hook is (see link_base).
        TypedExpr::Payload(p) if p.base() == Some(PayloadBase::LinkLayer) && p.sreg().is_none() => {
            Ok(())
        }
        // Network header loads too: nft_payload reads them from skb_network_offset() to
        // skb->len whatever the hook's skb->data, the netdev view from the frame's
        // byte 14 to its end.
        TypedExpr::Payload(p) if p.base() == Some(PayloadBase::Network) && p.sreg().is_none() => {
            Ok(())
        }
        TypedExpr::Payload(_) | TypedExpr::Exthdr(_) if headers => Ok(()),
        TypedExpr::Meta(m) => match m.key() {
            Some(MetaKey::Iif | MetaKey::Iifname) if hook == Hook::Input && m.sreg().is_none() => {
                Err(
                    "meta iif/iifname in bridge input chains is not supported by the eBPF \
                     data plane (the bridge device's TC ingress does not know the port)"
                        .into(),
                )
            }
            Some(
                MetaKey::Mark | MetaKey::Iif | MetaKey::Iifname | MetaKey::Oif | MetaKey::Oifname,
            ) => Ok(()),
            Some(MetaKey::Iiftype) if m.sreg().is_none() => Ok(()),
            other => Err(format!(
                "meta {} in bridge chains is not supported by the eBPF data plane",
                other.map(meta_name).unwrap_or_default()
            )),
        },
        TypedExpr::Cmp(_)
        | TypedExpr::Range(_)
        | TypedExpr::Lookup(_)
        | TypedExpr::Bitwise(_)
        | TypedExpr::Byteorder(_)
        | TypedExpr::Immediate(_)
        | TypedExpr::Counter(_)
        | TypedExpr::Objref(_)
        | TypedExpr::Limit(_)
        | TypedExpr::Quota(_) => Ok(()),
        // ebtables' extensions: each decides what it can reproduce (xt/ebt.rs).
        TypedExpr::Match(_) | TypedExpr::Target(_) => Ok(()),
        TypedExpr::Payload(_) | TypedExpr::Exthdr(_) => egress_headers(),
        other => Err(format!(
            "expression {} in bridge chains is not supported by the eBPF data plane",
            other.name()
        )),
    }
}

/// Whether a statement may change the packet's mark at `hook`.
pub(super) fn mark_set_allowed(hook: Hook) -> Result<(), String> {
    if hook == Hook::Input {
        // TC sets it before routing, the kernel's input hook after: an `ip rule
        // fwmark` would route differently.
        return Err(
            "meta mark set in an input chain is not supported by the eBPF data plane".into(),
        );
    }
    Ok(())
}

/// Whether a statement may change the packet's mark in a chain of `family` at `hook`.
/// ARP input chains may: arp_rcv() runs their hook, as TC ingress comes, before the
/// mark's one reader there, arp_process()'s route lookup.
pub(super) fn mark_set_allowed_in(family: Family, hook: Hook) -> Result<(), String> {
    if family == Family::Arp {
        return Ok(());
    }
    mark_set_allowed(hook)
}

/// ARPHRD_ETHER, `meta iiftype ether`.
const ARPHRD_ETHER: u16 = 1;
/// ARPHRD_LOOPBACK: lo, which has an Ethernet header.
const ARPHRD_LOOPBACK: u16 = 772;

/// The IR match that holds exactly on packets of the given IP version(s).
pub fn family_guard(families: u8) -> Match {
    if families == V4 {
        Match::is(Test::IpSaddr(vec![Ipv4Net::default()]))
    } else {
        Match::is(Test::Ip6Saddr(vec![Ipv6Net::default()]))
    }
}

/// Prefix length of a (masked) address load: `len * 8` bits, or the mask's leading
/// ones when the mask is a prefix mask.
/// The states a `ct state` predicate holds for. The register holds exactly one of
/// these bits, so whatever nft emits (`& mask != 0`, `== value`, a set of values, any of
/// them negated) is evaluated on each possible state: the result is exact.
const CT_STATES: [u32; 5] = [
    ct_state::INVALID,
    ct_state::ESTABLISHED,
    ct_state::RELATED,
    ct_state::NEW,
    ct_state::UNTRACKED,
];

fn ct_state_bits(l: &Loaded, ranges: &[ByteRange], negated: bool) -> Result<u32, String> {
    if ranges.iter().any(|(lo, hi)| lo != hi || lo.len() != 4) {
        return Err("ct state compared with a range".into());
    }
    let mask = l.mask.as_deref().map(host_u32).unwrap_or(u32::MAX);
    let values: Vec<u32> = ranges.iter().map(|(k, _)| host_u32(k)).collect();
    Ok(CT_STATES
        .iter()
        .filter(|&&state| values.contains(&(state & mask)) != negated)
        .fold(0, |acc, &state| acc | state))
}

/// The match that holds for packets with a connection (new, established or related):
/// where `ct status` and `ct mark` are present.
pub(super) fn has_connection() -> Match {
    Match::is(Test::CtState(
        ct_state::NEW | ct_state::ESTABLISHED | ct_state::RELATED,
    ))
}

/// The status words a connection has here, by level: new (not confirmed yet),
/// confirmed, seen a reply, assured. Each level has the bits of the one before; no
/// other bit is ever set (they need NAT, helpers, expectations or offload, which the
/// data plane refuses).
const CT_STATUS_LEVELS: [u32; 4] = [
    0,
    ct_status::CONFIRMED,
    ct_status::CONFIRMED | ct_status::SEEN_REPLY,
    ct_status::CONFIRMED | ct_status::SEEN_REPLY | ct_status::ASSURED,
];

/// The bit level k adds to level k - 1.
const CT_STATUS_LEVEL_BITS: [u32; 4] = [
    0,
    ct_status::CONFIRMED,
    ct_status::SEEN_REPLY,
    ct_status::ASSURED,
];

/// A `ct status` predicate (any mask, values, negation) evaluated on each status a
/// connection can have. The levels it holds for must be contiguous: "at least level
/// i" is `ct status` bit i set, "at most level j" bit j + 1 clear. `None`: it never
/// holds.
fn ct_status_matches(
    l: &Loaded,
    ranges: &[ByteRange],
    negated: bool,
) -> Result<Option<Vec<Match>>, String> {
    if ranges.iter().any(|(lo, hi)| lo != hi || lo.len() != 4) {
        return Err("ct status compared with a range".into());
    }
    let mask = l.mask.as_deref().map(host_u32).unwrap_or(u32::MAX);
    let values: Vec<u32> = ranges.iter().map(|(k, _)| host_u32(k)).collect();
    ct_status_where(|status| values.contains(&(status & mask)) != negated)
}

/// The IR matches that hold exactly on the connections whose status word `holds`
/// (see [`CT_STATUS_LEVELS`]); `None`: no connection's.
pub(super) fn ct_status_where(holds: impl Fn(u32) -> bool) -> Result<Option<Vec<Match>>, String> {
    let levels: Vec<usize> = (0..CT_STATUS_LEVELS.len())
        .filter(|&k| holds(CT_STATUS_LEVELS[k]))
        .collect();
    let (Some(&lo), Some(&hi)) = (levels.first(), levels.last()) else {
        return Ok(None);
    };
    if hi - lo + 1 != levels.len() {
        return Err("ct status predicate that no conjunction of status bits expresses".into());
    }
    let mut out = Vec::new();
    if lo > 0 {
        out.push(Match::is(Test::CtStatus(CT_STATUS_LEVEL_BITS[lo])));
    }
    if hi + 1 < CT_STATUS_LEVELS.len() {
        out.push(Match::not(Test::CtStatus(CT_STATUS_LEVEL_BITS[hi + 1])));
    }
    if out.is_empty() {
        out.push(has_connection());
    }
    Ok(Some(out))
}

fn prefix_len(l: &Loaded) -> Result<u32, String> {
    match &l.mask {
        None => Ok(l.len * 8),
        Some(m) => {
            let ones: u32 = m.iter().map(|b| b.count_ones()).sum();
            let leading = m.iter().fold((0u32, true), |(n, going), &b| {
                if !going {
                    (n, false)
                } else if b == 0xff {
                    (n + 8, true)
                } else {
                    (n + b.leading_ones(), false)
                }
            });
            if leading.0 != ones {
                return Err("address masks that are not prefixes are not supported".into());
            }
            Ok(ones)
        }
    }
}

fn masked_out_bits(value: &[u8], mask: Option<&[u8]>) -> bool {
    match mask {
        None => false,
        Some(m) => value.iter().zip(m).any(|(v, m)| v & !m != 0),
    }
}

/// Fields compared as big-endian numbers (ranges make sense on them).
fn big_endian(f: Field) -> bool {
    matches!(
        f,
        Field::Saddr4
            | Field::Daddr4
            | Field::Saddr6
            | Field::Daddr6
            | Field::Sport
            | Field::Dport
            | Field::L4Proto
            | Field::NfProto
            | Field::IcmpType
            | Field::Icmpv6Type
    )
}

fn be(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |a, &x| (a << 8) | x as u128)
}

fn to_be(v: u128, len: usize) -> Vec<u8> {
    (0..len).rev().map(|i| (v >> (8 * i)) as u8).collect()
}

/// A meta u32 (ifindex, mark) as the kernel stores it: host byte order.
fn host_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    let n = b.len().min(4);
    a[..n].copy_from_slice(&b[..n]);
    u32::from_ne_bytes(a)
}

fn meta_name(k: MetaKey) -> String {
    format!("{k:?}").to_lowercase()
}

fn verdict_name(c: VerdictCode) -> String {
    match c {
        VerdictCode::Accept => "accept".into(),
        VerdictCode::Drop => "drop".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// A register's byte offset -> the residual register file's.
fn res_reg(byte_offset: u32) -> Option<u8> {
    super::residual::reg(byte_offset)
}

/// The residual load of a payload expression, if it is within what the BPF program
/// copies of the packet.
fn payload_insn(base: ResBase, offset: u32, len: u32, dreg: u32) -> Option<Insn> {
    if !(1..=residual::MAX_DATA as u32).contains(&len) || offset + len > residual::MAX_PAYLOAD_END {
        return None;
    }
    Some(Insn::Payload {
        base,
        offset: offset as u16,
        len: len as u8,
        dreg: res_reg(dreg)?,
    })
}

/// The residual form of a `bitwise` expression: mask/xor, or a shift by a constant.
fn bitwise_insn(
    b: &netlink_proto::expr::bitwise::Bitwise,
    sreg: u32,
    dreg: u32,
    len: u32,
) -> Option<Insn> {
    let (sreg, dreg, len8) = (res_reg(sreg)?, res_reg(dreg)?, u8::try_from(len).ok()?);
    match b.op() {
        None | Some(BitwiseOp::MaskXor) => {
            let mask = b.mask()?.value_bytes()?.to_vec();
            let xor = match b.xor().and_then(|d| d.value_bytes()) {
                Some(x) => x.to_vec(),
                None => vec![0; len as usize],
            };
            (mask.len() == len as usize && xor.len() == len as usize).then_some(Insn::Bitwise {
                sreg,
                dreg,
                len: len8,
                mask,
                xor,
            })
        }
        Some(op @ (BitwiseOp::Lshift | BitwiseOp::Rshift)) => {
            let data = b.data()?.value_bytes()?;
            let by = u32::from_ne_bytes(data.try_into().ok()?);
            Some(Insn::Shift {
                sreg,
                dreg,
                len: len8,
                left: op == BitwiseOp::Lshift,
                by: u8::try_from(by).ok()?,
            })
        }
        _ => None,
    }
}

fn res_cmp(op: CmpOp) -> Option<residual::CmpOp> {
    Some(match op {
        CmpOp::Eq => residual::CmpOp::Eq,
        CmpOp::Neq => residual::CmpOp::Neq,
        CmpOp::Lt => residual::CmpOp::Lt,
        CmpOp::Lte => residual::CmpOp::Lte,
        CmpOp::Gt => residual::CmpOp::Gt,
        CmpOp::Gte => residual::CmpOp::Gte,
        CmpOp::Unknown(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(mask: Option<u32>, values: &[u32], negated: bool) -> Option<Vec<Match>> {
        let l = Loaded {
            source: Source::CtStatus,
            len: 4,
            mask: mask.map(|m| m.to_ne_bytes().to_vec()),
        };
        let ranges: Vec<ByteRange> = values
            .iter()
            .map(|v| (v.to_ne_bytes().to_vec(), v.to_ne_bytes().to_vec()))
            .collect();
        ct_status_matches(&l, &ranges, negated).unwrap()
    }

    #[test]
    fn ct_status_forms_become_status_levels() {
        use ct_status::*;
        // ct status seen-reply: bitwise & 2, cmp neq 0.
        assert_eq!(
            status(Some(SEEN_REPLY), &[0], true),
            Some(vec![Match::is(Test::CtStatus(SEEN_REPLY))])
        );
        // ct status ! seen-reply: bitwise & 2, cmp eq 0.
        assert_eq!(
            status(Some(SEEN_REPLY), &[0], false),
            Some(vec![Match::not(Test::CtStatus(SEEN_REPLY))])
        );
        // ct status expected: never set here.
        assert_eq!(status(Some(EXPECTED), &[0], true), None);
        // ct status != expected (the whole word): every connection.
        assert_eq!(
            status(None, &[EXPECTED], true),
            Some(vec![has_connection()])
        );
        // ct status { expected, seen-reply, assured, confirmed, dying }: only a
        // confirmed connection without a reply has one of these words.
        assert_eq!(
            status(
                None,
                &[EXPECTED, SEEN_REPLY, ASSURED, CONFIRMED, 512],
                false
            ),
            Some(vec![
                Match::is(Test::CtStatus(CONFIRMED)),
                Match::not(Test::CtStatus(SEEN_REPLY))
            ])
        );
    }

    #[test]
    fn ct_status_predicates_no_conjunction_expresses_are_refused() {
        let l = Loaded {
            source: Source::CtStatus,
            len: 4,
            mask: None,
        };
        // Everything but "confirmed, no reply yet": new or replied.
        let v = ct_status::CONFIRMED.to_ne_bytes().to_vec();
        assert!(ct_status_matches(&l, &[(v.clone(), v)], true).is_err());
    }
}
