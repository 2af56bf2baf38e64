//! The per-rule extras of the map builder: residual checks (ct status, set lookups,
//! limit, quota), statements (mark set, ct mark set, log), reject answers, the limit
//! and quota tables and the log prefixes (bpf/lib/stmts.h, reject.h).

use std::collections::BTreeMap;

use super::{sets, BuildError};
use crate::ir::{
    Limit, Nth, PayloadWrite, Quota, Reject, Rule, SetField, StateId, Statement, Test, WriteBase,
};
use crate::residual::{
    self, AddrDev, AddrTypeOut, CmpOp, Insn, MetaKey, PayloadBase, ResidualProgram, SctpChunkMatch,
};

/// Checks and statements per rule (`NS_MAX_CHECKS`, `NS_MAX_STMTS`).
pub const MAX_CHECKS: usize = 4;
pub const MAX_STMTS: usize = 4;

pub const CHECK_CTSTATUS: u8 = 1;
pub const CHECK_SET: u8 = 2;
pub const CHECK_LIMIT: u8 = 3;
pub const CHECK_QUOTA: u8 = 4;
/// `field` of a [`CHECK_QUOTA`]: the slot is an xt_statistic nth counter.
pub const QUOTA_NTH: u8 = 1;
/// A residual program: `field` operations from `arg` in `residual_insns`.
pub const CHECK_RESIDUAL: u8 = 5;
/// `NS_CHECK_ARP`: [`Test::ArpHook`].
pub const CHECK_ARP: u8 = 6;
/// `NS_CHECK_BRIDGE`: [`Test::BridgeHook`], the classes in `arg`.
pub const CHECK_BRIDGE: u8 = 7;
/// `NS_CHECK_CTLABEL`: [`Test::CtLabel`], the bit in `arg`, `field` 1 to set it.
pub const CHECK_CTLABEL: u8 = 8;

/// Residual operations (`enum ns_res_op`).
pub const RES_PAYLOAD: u8 = 1;
pub const RES_META: u8 = 2;
pub const RES_IMMEDIATE: u8 = 3;
pub const RES_BITWISE: u8 = 4;
pub const RES_SHIFT: u8 = 5;
pub const RES_BYTEORDER: u8 = 6;
pub const RES_CMP: u8 = 7;
pub const RES_RANGE: u8 = 8;
pub const RES_LOOKUP: u8 = 9;
/// [`Insn::LookupEither`]: a lookup of `sreg` or of `dreg` (the second key).
pub const RES_LOOKUP_EITHER: u8 = 60;
/// [`Insn::XtString`]: len the pattern's length, offset `from`, data[0..2] `to`
/// (host order), flags 1 invert, 2 icase; in the 8 elements from `first` (32 bytes
/// each, `from` then `to`) the pattern and its KMP prefix table, 128 bytes each.
pub const RES_XT_STRING: u8 = 61;
/// 145..149: xt_u32 (bpf/lib/xt_u32.h).
pub const RES_XT_U32: u8 = 145;
pub const RES_EXTHDR6: u8 = 10;
pub const RES_TCPOPT: u8 = 11;
pub const RES_NETDEV: u8 = 12;
pub const RES_CT: u8 = 13;
pub const RES_SCTP_CHUNK: u8 = 14;
/// ebtables' reads (bpf/lib/ebt.h); 28-33 are this family's opcodes.
pub const RES_PAYLOAD_INDEXED: u8 = 28;
pub const RES_IP6_SKIP_EXTHDR: u8 = 29;
pub const RES_PKTTYPE: u8 = 30;
pub const RES_LINK_CHOICE: u8 = 31;
/// 34..39: iptables-nft compat matches.
pub const RES_XT_PKTTYPE: u8 = 34;
/// 45..49: xt_cpu, xt_statistic (bpf/lib/residual.h).
pub const RES_XT_CPU: u8 = 45;
pub const RES_XT_RANDOM: u8 = 46;
/// 55..59: socket matches (bpf/lib/sockx.h).
pub const RES_XT_FULL_SOCKET: u8 = 55;
pub const RES_XT_CGROUP_CLASSID: u8 = 56;
/// 100..104: xt_socket (bpf/lib/xt_socket.h); flags: 1 nowildcard.
pub const RES_XT_SOCKET: u8 = 100;
/// 110..114: the socket file's credentials (bpf/lib/xt_owner.h).
pub const RES_XT_OWNER: u8 = 110;
pub const RES_SOCK_UGID: u8 = 111;
/// xtables matches' own walks (operations 20-27), which may drop the packet.
pub const RES_XT_HEADER: u8 = 20;
pub const RES_XT_SCTP: u8 = 21;
pub const RES_XT_DCCP_OPTION: u8 = 22;
pub const RES_XT_DROP_UNLESS: u8 = 23;
pub const RES_XT_IPV6_HEADER: u8 = 24;
/// Small xtables walks and tests (operations 80-84).
pub const RES_XT_IPV6_OPTIONS: u8 = 80;
pub const RES_XT_SRH_SEGMENT: u8 = 81;
pub const RES_HALVES_EQ: u8 = 82;
/// 105..109: ip6t_ipv6header, ipt_ECN (bpf/lib/xt_ip6hdr.h).
pub const RES_XT_IPV6_HEADER_TYPES: u8 = 105;
/// 85..89: xt_rateest (bpf/lib/rateest.h).
pub const RES_XT_RATEEST: u8 = 85;
pub const RES_XT_RECENT: u8 = 120;
pub const RES_XT_ADDRTYPE: u8 = 135;
/// 50..54: connection-count matches (bpf/lib/connlimit.h).
pub const RES_XT_CONNLIMIT_TUPLE: u8 = 50;
/// Not an operation: the spec of a `payload set` statement (`struct ns_res_insn` read
/// as `struct ns_write_spec`, bpf/lib/rewrite.h): flags 1 network / 2 transport base,
/// offset, len, data the mask, data2 the xor, arg the checksum offset, sreg
/// `WRITE_CSUM_*` bits.
pub const RES_WRITE: u8 = 14;
pub const WRITE_CSUM_INET: u8 = 1 << 0;
pub const WRITE_CSUM_PSEUDO: u8 = 1 << 1;
pub const WRITE_CSUM_KEEP_ZERO: u8 = 1 << 2;
/// The write's byte `dreg` gets a saturating add of `first` ([`crate::ir::SaturatingAdd`]),
/// or with `WRITE_SAT_DOWN` a saturating subtraction.
pub const WRITE_SAT_ADD: u8 = 1 << 3;
pub const WRITE_SAT_DOWN: u8 = 1 << 4;

/// Not an operation: the spec of an xt_TCPOPTSTRIP statement (bpf/lib/tcpoptstrip.h):
/// data and data2 the 256-bit map of stripped kinds ([`crate::ir::TcpOptStrip::kinds`]).
/// In xt_TCPOPTSTRIP's range (90-94).
pub const RES_TCPOPTSTRIP: u8 = 90;
/// Not an operation: the spec of an ipt_ECN TCP statement (bpf/lib/xt_ecn.h): flags
/// bit 0 sets ECE, bit 1 sets CWR; arg bits 0 and 1 their values. In xt_u32/ECN's
/// range (145-149).
pub const RES_XT_ECN_TCP: u8 = 146;
/// Not an operation: the spec of an xt_HMARK statement (bpf/lib/hmark.h): data the
/// source mask, the port mask, the port set (4 bytes each, network order) and the
/// offset (host order), data2 the destination mask, first the random seed, count the
/// modulus, arg the protocol mask, flags 1: `--hmark-method l3`. In xt_HMARK's range
/// (125-129).
pub const RES_HMARK: u8 = 125;

/// `struct ns_res_insn`: one residual operation. `flags` holds the payload base, the
/// cmp operator, the negation of a range or lookup, or the shift direction; `arg` the
/// meta key, the byte-order word size or the shift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfResidualInsn {
    pub op: u8,
    pub flags: u8,
    pub sreg: u8,
    pub dreg: u8,
    pub len: u8,
    pub arg: u8,
    pub offset: u16,
    /// Lookups: the elements `[first, first + count)` of `residual_elems`.
    pub first: u32,
    pub count: u32,
    pub data: [u8; 16],
    pub data2: [u8; 16],
}

/// `struct ns_res_elem`: an inclusive key range of a lookup (memcmp order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfResidualElem {
    pub from: [u8; 16],
    pub to: [u8; 16],
}

pub const STMT_SET_MARK: u32 = 1;
pub const STMT_SET_CTMARK: u32 = 2;
pub const STMT_SET_MARK_FROM_CT: u32 = 3;
pub const STMT_SET_CTMARK_FROM_MARK: u32 = 4;
pub const STMT_LOG: u32 = 5;
/// `NS_STMT_NFLOG` (lib/stmts.h).
pub const STMT_NFLOG: u32 = 115;
/// a: the write's spec in `residual_insns`.
pub const STMT_PAYLOAD_SET: u32 = 6;
/// a, b: and, xor before the shift; c: xor after it; shift: [`BpfStmt::shift`].
pub const STMT_MARK_SHIFT: u32 = 7;
/// [`crate::ir::MarkMerge`]: a = and, b = keep, shift as [`STMT_MARK_SHIFT`]'s (the
/// `SHIFT_TO_CT` bit says the direction). Numbered in xt_CONNMARK's range (70-79) so
/// that statement kinds added elsewhere do not collide.
pub const STMT_MARK_MERGE: u32 = 70;
/// [`crate::ir::Statement::SetPriority`]: a = the priority.
pub const STMT_SET_PRIORITY: u32 = 71;
/// [`crate::ir::Statement::TcpOptStrip`]: a = its spec in `residual_insns`.
pub const STMT_TCPOPTSTRIP: u32 = 90;
/// [`crate::ir::Statement::EcnTcp`]: a = its spec in `residual_insns`.
pub const STMT_XT_ECN_TCP: u32 = 146;
/// [`crate::ir::Statement::Hmark`]: a = its spec in `residual_insns`.
pub const STMT_HMARK: u32 = 125;

/// `struct ns_check`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfCheck {
    pub kind: u8,
    pub negated: u8,
    /// Set lookups: the [`SetField`] as `enum ns_set_field`.
    pub field: u8,
    pub pad: u8,
    /// ct status: the mask; set: the set id; limit/quota: the table index.
    pub arg: u32,
}

/// `struct ns_stmt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfStmt {
    pub kind: u32,
    pub a: u32,
    pub b: u32,
    /// [`STMT_MARK_SHIFT`]: the xor after the shift.
    pub c: u32,
    /// [`STMT_MARK_SHIFT`]: the shift, and `SHIFT_*` bits.
    pub shift: u32,
}

/// [`BpfStmt::shift`] bits of [`STMT_MARK_SHIFT`].
pub const SHIFT_LEFT: u32 = 1 << 8;
pub const SHIFT_FROM_CT: u32 = 1 << 9;
pub const SHIFT_TO_CT: u32 = 1 << 10;

/// `struct ns_rule_ext`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfRuleExt {
    pub checks: [BpfCheck; MAX_CHECKS],
    pub stmts: [BpfStmt; MAX_STMTS],
}

/// `struct ns_limit`: the bucket as nft_limit_init() sets it up. `last` is filled in by
/// the loader (the time the bucket starts full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfLimit {
    /// `struct bpf_spin_lock`, owned by the kernel.
    pub lock: u32,
    pub bytes: u32,
    pub tokens: u64,
    pub last: u64,
    pub tokens_max: u64,
    pub cost: u64,
    pub rate: u64,
    pub nsecs: u64,
}

/// `struct ns_quota`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BpfQuota {
    pub consumed: u64,
    pub quota: u64,
}

/// The kernel's default packet burst (NFT_LIMIT_PKT_BURST_DEFAULT).
pub const DEFAULT_PACKET_BURST: u32 = 5;

/// The bucket of a limit, computed as nft_limit_init() does (and refused where it
/// refuses: zero rate, overflows).
pub fn limit_bucket(limit: &Limit, rule: usize) -> Result<BpfLimit, BuildError> {
    let overflow = || BuildError::BadLimit { rule };
    if limit.rate == 0 {
        return Err(overflow());
    }
    let nsecs = limit
        .unit_secs
        .checked_mul(1_000_000_000)
        .ok_or_else(overflow)?;
    let burst = if !limit.bytes && limit.burst == 0 {
        DEFAULT_PACKET_BURST
    } else {
        limit.burst
    } as u64;
    let rate_with_burst = limit.rate.checked_add(burst).ok_or_else(overflow)?;
    let (tokens_max, cost) = if limit.bytes {
        let t = nsecs.checked_mul(rate_with_burst).ok_or_else(overflow)?;
        (t / limit.rate, 0)
    } else {
        let cost = nsecs / limit.rate;
        (cost.checked_mul(burst).ok_or_else(overflow)?, cost)
    };
    Ok(BpfLimit {
        lock: 0,
        bytes: limit.bytes as u32,
        tokens: tokens_max,
        last: 0,
        tokens_max,
        cost,
        rate: limit.rate,
        nsecs,
    })
}

/// The `arg` of a reject rule: kind, ICMP code, ICMPv6 code (`NS_REJECT_*`).
pub fn reject_arg(reject: &Reject) -> u32 {
    let (kind, v4, v6) = match reject {
        Reject::TcpReset => (1, 0, 0),
        Reject::Icmp(code) => (0, *code, *code),
        Reject::Icmpx(code) => (0, code.icmp_code(), code.icmpv6_code()),
    };
    kind | (v4 as u32) << 8 | (v6 as u32) << 16
}

/// Whether the match is one of the rule's checks (not an LBVS field).
fn is_check(t: &Test) -> bool {
    matches!(
        t,
        Test::Residual(_)
            | Test::ArpHook
            | Test::BridgeHook(_)
            | Test::CtStatus(_)
            | Test::CtLabel { .. }
            | Test::InSet { .. }
            | Test::Limit(_)
            | Test::Quota(_)
            | Test::Nth(_)
    )
}

/// Collects the extras of all rules.
#[derive(Default)]
pub(super) struct Extras {
    pub ext: Vec<BpfRuleExt>,
    pub limits: Vec<BpfLimit>,
    pub quotas: Vec<BpfQuota>,
    /// Whose state each entry of `limits` / `quotas` is.
    pub limit_states: Vec<Option<StateId>>,
    pub quota_states: Vec<Option<StateId>>,
    pub log_prefixes: Vec<String>,
    prefix_ids: BTreeMap<String, u32>,
    pub residual_insns: Vec<BpfResidualInsn>,
    pub residual_elems: Vec<BpfResidualElem>,
}

/// The table index of a limit or quota: a new entry, unless one of the same state is
/// there (a rule copied into several guard alternatives shares its bucket).
fn state_index<T>(
    values: &mut Vec<T>,
    states: &mut Vec<Option<StateId>>,
    state: Option<StateId>,
    value: impl FnOnce() -> Result<T, BuildError>,
) -> Result<u32, BuildError> {
    if let Some(i) = state.and_then(|id| states.iter().position(|s| *s == Some(id))) {
        return Ok(i as u32);
    }
    values.push(value()?);
    states.push(state);
    Ok(values.len() as u32 - 1)
}

impl Extras {
    /// The rule's extension entry, if it needs one (and whether it has checks and
    /// statements).
    pub fn add(
        &mut self,
        rule: usize,
        r: &Rule,
        sets: &sets::SetIds,
    ) -> Result<Option<(u32, bool, bool)>, BuildError> {
        let mut x = BpfRuleExt::default();
        // Stateless residuals first, then what consumes (limit, quota), each in rule
        // order: a bucket is only charged for packets that match everything else.
        let mut checks = Vec::new();
        for m in &r.matches {
            let negated = m.negated as u8;
            match &m.test {
                Test::Residual(program) => {
                    if m.negated {
                        return Err(BuildError::BadResidual {
                            rule,
                            what: "a negated residual program".into(),
                        });
                    }
                    let first = self.residual_insns.len() as u32;
                    self.add_residual(rule, program)?;
                    checks.push(BpfCheck {
                        kind: CHECK_RESIDUAL,
                        field: program.insns.len() as u8,
                        arg: first,
                        ..BpfCheck::default()
                    })
                }
                Test::ArpHook => checks.push(BpfCheck {
                    kind: CHECK_ARP,
                    negated,
                    ..BpfCheck::default()
                }),
                Test::BridgeHook(classes) => checks.push(BpfCheck {
                    kind: CHECK_BRIDGE,
                    negated,
                    arg: *classes,
                    ..BpfCheck::default()
                }),
                Test::CtLabel { bit, set } => checks.push(BpfCheck {
                    kind: CHECK_CTLABEL,
                    negated,
                    arg: *bit as u32,
                    field: *set as u8,
                    ..BpfCheck::default()
                }),
                Test::CtStatus(mask) => checks.push(BpfCheck {
                    kind: CHECK_CTSTATUS,
                    negated,
                    arg: *mask,
                    ..BpfCheck::default()
                }),
                Test::InSet { field, set } => {
                    let id = sets.lookup(rule, *field, set)?;
                    checks.push(BpfCheck {
                        kind: CHECK_SET,
                        negated,
                        field: set_field_number(*field),
                        arg: id,
                        ..BpfCheck::default()
                    })
                }
                _ => {}
            }
        }
        // A program that may drop the packet runs after every other stateless test,
        // as the reference has it (the rule's other matches all come before the
        // xtables match that drops).
        let dropping = r
            .matches
            .iter()
            .filter(|m| matches!(&m.test, Test::Residual(p) if p.can_drop()))
            .count();
        let last_drops = r
            .matches
            .iter()
            .rev()
            .find(|m| {
                !matches!(m.test, Test::Limit(_) | Test::Quota(_) | Test::Nth(_))
                    && is_check(&m.test)
            })
            .is_some_and(|m| matches!(&m.test, Test::Residual(p) if p.can_drop()));
        if dropping > 1 || (dropping == 1 && !last_drops) {
            return Err(BuildError::BadResidual {
                rule,
                what: "a residual program that may drop the packet must be the rule's last \
                       check"
                    .into(),
            });
        }
        for m in &r.matches {
            let negated = m.negated as u8;
            match &m.test {
                Test::Limit(limit) => {
                    let arg = state_index(
                        &mut self.limits,
                        &mut self.limit_states,
                        limit.state,
                        || limit_bucket(limit, rule),
                    )?;
                    checks.push(BpfCheck {
                        kind: CHECK_LIMIT,
                        negated,
                        arg,
                        ..BpfCheck::default()
                    });
                }
                Test::Quota(Quota { bytes, used, state }) => {
                    let arg =
                        state_index(&mut self.quotas, &mut self.quota_states, *state, || {
                            Ok(BpfQuota {
                                consumed: *used,
                                quota: *bytes,
                            })
                        })?;
                    checks.push(BpfCheck {
                        kind: CHECK_QUOTA,
                        negated,
                        arg,
                        ..BpfCheck::default()
                    });
                }
                // A slot of the quota table: `consumed` counts the packets, `quota`
                // holds every (low half) and the starting count (high half).
                Test::Nth(Nth {
                    every,
                    count,
                    state,
                }) => {
                    let arg =
                        state_index(&mut self.quotas, &mut self.quota_states, *state, || {
                            Ok(BpfQuota {
                                consumed: 0,
                                quota: *every as u64 | (*count as u64) << 32,
                            })
                        })?;
                    checks.push(BpfCheck {
                        kind: CHECK_QUOTA,
                        negated,
                        field: QUOTA_NTH,
                        arg,
                        ..BpfCheck::default()
                    });
                }
                _ => {}
            }
        }
        if checks.len() > MAX_CHECKS {
            return Err(BuildError::TooManyChecks { rule });
        }
        if r.statements.len() > MAX_STMTS {
            return Err(BuildError::TooManyStatements { rule });
        }
        if checks.is_empty() && r.statements.is_empty() {
            return Ok(None);
        }
        x.checks[..checks.len()].copy_from_slice(&checks);
        for (slot, s) in x.stmts.iter_mut().zip(&r.statements) {
            *slot = match s {
                Statement::SetMark { and, xor } => stmt(STMT_SET_MARK, *and, *xor),
                Statement::SetCtMark { and, xor } => stmt(STMT_SET_CTMARK, *and, *xor),
                Statement::SetMarkFromCtMark { and, xor } => {
                    stmt(STMT_SET_MARK_FROM_CT, *and, *xor)
                }
                Statement::SetCtMarkFromMark { and, xor } => {
                    stmt(STMT_SET_CTMARK_FROM_MARK, *and, *xor)
                }
                Statement::MarkShift(m) => mark_shift(m),
                Statement::MarkMerge(m) => mark_merge(m),
                Statement::SetPriority(p) => stmt(STMT_SET_PRIORITY, *p, 0),
                Statement::Log { prefix } => {
                    let next = self.log_prefixes.len() as u32;
                    let id = *self.prefix_ids.entry(prefix.clone()).or_insert(next);
                    if id == next {
                        self.log_prefixes.push(prefix.clone());
                    }
                    stmt(STMT_LOG, id, 0)
                }
                Statement::Nflog { spec, snap } => {
                    let next = self.log_prefixes.len() as u32;
                    let id = *self.prefix_ids.entry(spec.clone()).or_insert(next);
                    if id == next {
                        self.log_prefixes.push(spec.clone());
                    }
                    stmt(STMT_NFLOG, id, *snap)
                }
                Statement::EcnTcp(e) => {
                    let bit = |v: Option<bool>, k: u8| {
                        (u8::from(v.is_some()) << k, u8::from(v == Some(true)) << k)
                    };
                    let (ece_set, ece_val) = bit(e.ece, 0);
                    let (cwr_set, cwr_val) = bit(e.cwr, 1);
                    self.residual_insns.push(BpfResidualInsn {
                        op: RES_XT_ECN_TCP,
                        flags: ece_set | cwr_set,
                        arg: ece_val | cwr_val,
                        ..BpfResidualInsn::default()
                    });
                    stmt(STMT_XT_ECN_TCP, self.residual_insns.len() as u32 - 1, 0)
                }
                Statement::TcpOptStrip(strip) => {
                    let mut spec = BpfResidualInsn {
                        op: RES_TCPOPTSTRIP,
                        ..BpfResidualInsn::default()
                    };
                    spec.data.copy_from_slice(&strip.kinds[..16]);
                    spec.data2.copy_from_slice(&strip.kinds[16..]);
                    self.residual_insns.push(spec);
                    stmt(STMT_TCPOPTSTRIP, self.residual_insns.len() as u32 - 1, 0)
                }
                Statement::Hmark(h) => {
                    let mut spec = BpfResidualInsn {
                        op: RES_HMARK,
                        flags: u8::from(h.l3),
                        arg: h.proto_mask,
                        first: h.rnd,
                        count: h.modulus,
                        ..BpfResidualInsn::default()
                    };
                    spec.data[..4].copy_from_slice(&h.src_mask);
                    spec.data[4..8].copy_from_slice(&h.port_mask);
                    spec.data[8..12].copy_from_slice(&h.port_set);
                    spec.data[12..16].copy_from_slice(&h.offset.to_ne_bytes());
                    spec.data2[..4].copy_from_slice(&h.dst_mask);
                    self.residual_insns.push(spec);
                    stmt(STMT_HMARK, self.residual_insns.len() as u32 - 1, 0)
                }
                Statement::PayloadSet(w) => {
                    self.residual_insns.push(write_spec(w));
                    stmt(STMT_PAYLOAD_SET, self.residual_insns.len() as u32 - 1, 0)
                }
            };
        }
        self.ext.push(x);
        Ok(Some((
            self.ext.len() as u32 - 1,
            !checks.is_empty(),
            !r.statements.is_empty(),
        )))
    }
}

/// A payload write as its `residual_insns` entry.
fn write_spec(w: &PayloadWrite) -> BpfResidualInsn {
    BpfResidualInsn {
        op: RES_WRITE,
        flags: match w.base {
            WriteBase::Network => 1,
            WriteBase::Transport => 2,
        },
        sreg: if w.csum_inet { WRITE_CSUM_INET } else { 0 }
            | if w.pseudo_header {
                WRITE_CSUM_PSEUDO
            } else {
                0
            }
            | if w.csum_keep_zero {
                WRITE_CSUM_KEEP_ZERO
            } else {
                0
            }
            | match w.saturating {
                Some(s) if s.down => WRITE_SAT_ADD | WRITE_SAT_DOWN,
                Some(_) => WRITE_SAT_ADD,
                None => 0,
            },
        dreg: w.saturating.map_or(0, |s| s.at),
        first: w.saturating.map_or(0, |s| u32::from(s.by)),
        len: w.len,
        arg: w.csum_offset,
        offset: w.offset as u16,
        data: w.mask,
        data2: w.xor,
        ..BpfResidualInsn::default()
    }
}

impl Extras {
    /// A lookup's elements, appended to `residual_elems` for `b`.
    fn add_elements(&mut self, b: &mut BpfResidualInsn, elements: &[(Vec<u8>, Vec<u8>)]) {
        b.first = self.residual_elems.len() as u32;
        b.count = elements.len() as u32;
        for (lo, hi) in elements {
            let mut e = BpfResidualElem::default();
            e.from[..lo.len()].copy_from_slice(lo);
            e.to[..hi.len()].copy_from_slice(hi);
            self.residual_elems.push(e);
        }
    }

    /// Appends a residual program's operations (and its lookups' elements).
    fn add_residual(&mut self, rule: usize, program: &ResidualProgram) -> Result<(), BuildError> {
        program
            .check()
            .map_err(|what| BuildError::BadResidual { rule, what })?;
        for insn in &program.insns {
            let mut b = BpfResidualInsn::default();
            match insn {
                Insn::Payload {
                    base,
                    offset,
                    len,
                    dreg,
                } => {
                    b.op = RES_PAYLOAD;
                    b.flags = match base {
                        PayloadBase::Network => 1,
                        PayloadBase::Transport => 2,
                        PayloadBase::LinkLayer => 3,
                        PayloadBase::LinkLayerUntagged => 4,
                    };
                    (b.offset, b.len, b.dreg) = (*offset, *len, *dreg);
                }
                Insn::Meta { key, dreg } => {
                    b.op = RES_META;
                    b.arg = match key {
                        MetaKey::Len => 1,
                        MetaKey::Protocol => 2,
                        MetaKey::NfProto => 3,
                        MetaKey::L4Proto => 4,
                        MetaKey::Mark => 5,
                    };
                    b.dreg = *dreg;
                }
                Insn::Ipv6Exthdr {
                    header: kind,
                    offset,
                    len,
                    dreg,
                    present,
                }
                | Insn::TcpOption {
                    kind,
                    offset,
                    len,
                    dreg,
                    present,
                }
                | Insn::SctpChunk {
                    kind,
                    offset,
                    len,
                    dreg,
                    present,
                } => {
                    b.op = match insn {
                        Insn::Ipv6Exthdr { .. } => RES_EXTHDR6,
                        Insn::TcpOption { .. } => RES_TCPOPT,
                        _ => RES_SCTP_CHUNK,
                    };
                    (b.arg, b.offset, b.len, b.dreg) = (*kind, *offset as u16, *len, *dreg);
                    b.flags = *present as u8;
                }
                Insn::Ct {
                    key,
                    reply,
                    len,
                    dreg,
                } => {
                    b.op = RES_CT;
                    // flags: bit 0 the reply tuple, bit 1 counters of both directions.
                    let flags = *reply as u8 | (key.both() as u8) << 1;
                    (b.arg, b.flags, b.len, b.dreg) = (key.nft_key(), flags, *len, *dreg);
                }
                Insn::XtPktType { dreg } => {
                    b.op = RES_XT_PKTTYPE;
                    b.dreg = *dreg;
                }
                // data: the CPU or probability (host order); flags: the inversion.
                Insn::XtCpu { cpu: v, invert }
                | Insn::XtRandom {
                    probability: v,
                    invert,
                } => {
                    b.op = if matches!(insn, Insn::XtCpu { .. }) {
                        RES_XT_CPU
                    } else {
                        RES_XT_RANDOM
                    };
                    b.data[..4].copy_from_slice(&v.to_ne_bytes());
                    b.flags = *invert as u8;
                }
                Insn::XtFullSocket => b.op = RES_XT_FULL_SOCKET,
                Insn::XtCgroupClassid { classid, invert } => {
                    b.op = RES_XT_CGROUP_CLASSID;
                    b.data[..4].copy_from_slice(&classid.to_ne_bytes());
                    b.flags = *invert as u8;
                }
                Insn::XtSocket { nowildcard } => {
                    b.op = RES_XT_SOCKET;
                    b.flags = *nowildcard as u8;
                }
                Insn::XtOwner {
                    uid_min,
                    uid_max,
                    gid_min,
                    gid_max,
                    match_flags,
                    invert,
                } => {
                    b.op = RES_XT_OWNER;
                    for (k, v) in [uid_min, uid_max, gid_min, gid_max].into_iter().enumerate() {
                        b.data[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
                    }
                    (b.flags, b.arg) = (*match_flags, *invert);
                }
                Insn::SockUgid { gid, dreg } => {
                    b.op = RES_SOCK_UGID;
                    (b.arg, b.dreg) = (*gid as u8, *dreg);
                }
                Insn::Immediate { dreg, data } => {
                    b.op = RES_IMMEDIATE;
                    (b.dreg, b.len) = (*dreg, data.len() as u8);
                    b.data[..data.len()].copy_from_slice(data);
                }
                Insn::Bitwise {
                    sreg,
                    dreg,
                    len,
                    mask,
                    xor,
                } => {
                    b.op = RES_BITWISE;
                    (b.sreg, b.dreg, b.len) = (*sreg, *dreg, *len);
                    b.data[..mask.len()].copy_from_slice(mask);
                    b.data2[..xor.len()].copy_from_slice(xor);
                }
                Insn::Shift {
                    sreg,
                    dreg,
                    len,
                    left,
                    by,
                } => {
                    b.op = RES_SHIFT;
                    (b.sreg, b.dreg, b.len, b.flags, b.arg) =
                        (*sreg, *dreg, *len, *left as u8, *by);
                }
                Insn::Byteorder {
                    sreg,
                    dreg,
                    len,
                    size,
                } => {
                    b.op = RES_BYTEORDER;
                    (b.sreg, b.dreg, b.len, b.arg) = (*sreg, *dreg, *len, *size);
                }
                Insn::NetdevView => b.op = RES_NETDEV,
                Insn::PayloadIndexed {
                    index,
                    mask,
                    scale,
                    offset,
                    len,
                    dreg,
                } => {
                    b.op = RES_PAYLOAD_INDEXED;
                    (b.arg, b.offset, b.len, b.dreg) = (*index, *offset, *len, *dreg);
                    (b.data[0], b.data[1]) = (*mask, *scale);
                }
                Insn::Ip6SkipExthdr {
                    offset,
                    len,
                    dreg,
                    nexthdr,
                } => {
                    b.op = RES_IP6_SKIP_EXTHDR;
                    (b.offset, b.len, b.dreg, b.flags) =
                        (*offset as u16, *len, *dreg, *nexthdr as u8);
                }
                Insn::PktType { dreg } => {
                    b.op = RES_PKTTYPE;
                    (b.len, b.dreg) = (1, *dreg);
                }
                Insn::LinkChoice {
                    index,
                    mask,
                    offset_set,
                    offset_clear,
                    len,
                    dreg,
                } => {
                    b.op = RES_LINK_CHOICE;
                    (b.arg, b.len, b.dreg) = (*index, *len, *dreg);
                    b.data[..3].copy_from_slice(&[*mask, *offset_set, *offset_clear]);
                }
                Insn::XtTransportHeader { len } => {
                    b.op = RES_XT_HEADER;
                    b.len = *len;
                }
                Insn::XtConnlimitTuple => b.op = RES_XT_CONNLIMIT_TUPLE,
                Insn::XtSctpChunks(c) => {
                    b.op = RES_XT_SCTP;
                    // arg: SCTP_CHUNK_MATCH_* (0: another value); flags: bit 0 the
                    // inversion, bit 1 map bits past type 255; data, data2: the map;
                    // one element: the flag tests, 3 bytes each, `count` of them.
                    b.arg = match c.kind {
                        SctpChunkMatch::Any => 1,
                        SctpChunkMatch::All => 2,
                        SctpChunkMatch::Only => 4,
                        SctpChunkMatch::Other => 0,
                    };
                    b.flags = c.invert as u8 | (c.map_beyond as u8) << 1;
                    b.data.copy_from_slice(&c.map[..16]);
                    b.data2.copy_from_slice(&c.map[16..]);
                    b.first = self.residual_elems.len() as u32;
                    b.count = c.flags.len() as u32;
                    let mut e = BpfResidualElem::default();
                    for (i, (t, f, m)) in c.flags.iter().enumerate() {
                        e.from[3 * i..3 * i + 3].copy_from_slice(&[*t, *f, *m]);
                    }
                    self.residual_elems.push(e);
                }
                Insn::XtDropUnless { sreg, data } => {
                    b.op = RES_XT_DROP_UNLESS;
                    (b.sreg, b.len) = (*sreg, data.len() as u8);
                    b.data[..data.len()].copy_from_slice(data);
                }
                Insn::XtIpv6Header {
                    header,
                    len,
                    dreg,
                    whole,
                    offset,
                    drops,
                } => {
                    b.op = RES_XT_IPV6_HEADER;
                    // flags: bit 0 the whole header, bit 1 malformed breaks (no drop).
                    (b.arg, b.len, b.dreg, b.offset) = (*header, *len, *dreg, *offset as u16);
                    b.flags = *whole as u8 | (!*drops as u8) << 1;
                }
                Insn::XtIpv6Options { header, opts } => {
                    b.op = RES_XT_IPV6_OPTIONS;
                    // arg: the header type; len: the options; data then data2: their
                    // (type, length) pairs.
                    (b.arg, b.len) = (*header, opts.len() as u8);
                    for (i, (t, l)) in opts.iter().enumerate() {
                        let to = if i < 8 { &mut b.data } else { &mut b.data2 };
                        to[2 * (i % 8)..2 * (i % 8) + 2].copy_from_slice(&[*t, *l]);
                    }
                }
                Insn::XtSrhSegment { next, dreg } => {
                    // flags: 1 the next segment (else the previous one).
                    b.op = RES_XT_SRH_SEGMENT;
                    (b.flags, b.dreg, b.len) = (*next as u8, *dreg, 16);
                }
                Insn::XtIpv6HeaderTypes { dreg } => {
                    b.op = RES_XT_IPV6_HEADER_TYPES;
                    (b.dreg, b.len) = (*dreg, 1);
                }
                Insn::HalvesEq { sreg, len, negated } => {
                    b.op = RES_HALVES_EQ;
                    (b.sreg, b.len, b.flags) = (*sreg, *len, *negated as u8);
                }
                // `check` keeps flags and mode within a byte.
                Insn::XtRateest {
                    sreg,
                    name1,
                    name2,
                    flags,
                    mode,
                } => {
                    b.op = RES_XT_RATEEST;
                    (b.sreg, b.len) = (*sreg, 16);
                    (b.flags, b.arg) = (*flags as u8, *mode as u8);
                    (b.data, b.data2) = (*name1, *name2);
                }
                Insn::XtRecent {
                    list,
                    check_set,
                    seconds,
                    hit_count,
                    invert,
                    dest,
                } => {
                    b.op = RES_XT_RECENT;
                    b.data[..8].copy_from_slice(&list.to_ne_bytes());
                    (b.flags, b.arg, b.len) =
                        (*check_set, if *dest { 2 } else { 1 }, *invert as u8);
                    (b.first, b.count) = (*seconds, *hit_count);
                }
                Insn::AddrType { sreg, dev, out } => {
                    // NS_ADDRTYPE_* (bpf/lib/addrtype.h).
                    b.op = RES_XT_ADDRTYPE;
                    b.sreg = *sreg;
                    b.flags = match dev {
                        AddrDev::None => 0,
                        AddrDev::In => 2,
                        AddrDev::Out => 4,
                    };
                    match out {
                        AddrTypeOut::Test { mask, invert } => {
                            b.flags |= *invert as u8;
                            b.data[..2].copy_from_slice(&mask.to_le_bytes());
                        }
                        AddrTypeOut::Store { dreg } => {
                            b.flags |= 8;
                            b.dreg = *dreg;
                        }
                    }
                }
                Insn::XtDccpOption { option, invert } => {
                    b.op = RES_XT_DCCP_OPTION;
                    (b.arg, b.flags) = (*option, *invert as u8);
                }
                Insn::Cmp { sreg, op, data } => {
                    b.op = RES_CMP;
                    b.flags = match op {
                        CmpOp::Eq => 0,
                        CmpOp::Neq => 1,
                        CmpOp::Lt => 2,
                        CmpOp::Lte => 3,
                        CmpOp::Gt => 4,
                        CmpOp::Gte => 5,
                    };
                    (b.sreg, b.len) = (*sreg, data.len() as u8);
                    b.data[..data.len()].copy_from_slice(data);
                }
                Insn::Range {
                    sreg,
                    negated,
                    from,
                    to,
                } => {
                    b.op = RES_RANGE;
                    (b.sreg, b.len, b.flags) = (*sreg, from.len() as u8, *negated as u8);
                    b.data[..from.len()].copy_from_slice(from);
                    b.data2[..to.len()].copy_from_slice(to);
                }
                Insn::Lookup {
                    sreg,
                    len,
                    negated,
                    elements,
                } => {
                    b.op = RES_LOOKUP;
                    (b.sreg, b.len, b.flags) = (*sreg, *len, *negated as u8);
                    self.add_elements(&mut b, elements);
                }
                Insn::XtString(s) => {
                    b.op = RES_XT_STRING;
                    b.len = s.pattern.len() as u8;
                    b.offset = s.from;
                    b.data[..2].copy_from_slice(&s.to.to_ne_bytes());
                    b.flags = u8::from(s.invert) | u8::from(s.icase) << 1;
                    // The pattern and ts_kmp's prefix table, 128 bytes each.
                    let mut bytes = [0u8; 256];
                    bytes[..s.pattern.len()].copy_from_slice(&s.pattern);
                    for (k, v) in s.kmp_prefix_table().into_iter().enumerate() {
                        bytes[128 + k] = v;
                    }
                    b.first = self.residual_elems.len() as u32;
                    b.count = 8;
                    for chunk in bytes.chunks(32) {
                        let mut e = BpfResidualElem::default();
                        e.from.copy_from_slice(&chunk[..16]);
                        e.to.copy_from_slice(&chunk[16..]);
                        self.residual_elems.push(e);
                    }
                }
                Insn::XtU32(u) => {
                    // flags: invert; the tests as elements (XtU32::elements).
                    b.op = RES_XT_U32;
                    b.flags = u8::from(u.invert);
                    let elems = u.elements();
                    b.first = self.residual_elems.len() as u32;
                    b.count = elems.len() as u32;
                    for chunk in elems {
                        let mut e = BpfResidualElem::default();
                        e.from.copy_from_slice(&chunk[..16]);
                        e.to.copy_from_slice(&chunk[16..]);
                        self.residual_elems.push(e);
                    }
                }
                Insn::LookupEither {
                    sreg,
                    sreg2,
                    len,
                    negated,
                    elements,
                } => {
                    b.op = RES_LOOKUP_EITHER;
                    (b.sreg, b.dreg, b.len, b.flags) = (*sreg, *sreg2, *len, *negated as u8);
                    self.add_elements(&mut b, elements);
                }
            }
            self.residual_insns.push(b);
        }
        debug_assert!(program.insns.len() <= residual::MAX_INSNS);
        Ok(())
    }
}

fn stmt(kind: u32, a: u32, b: u32) -> BpfStmt {
    BpfStmt {
        kind,
        a,
        b,
        ..BpfStmt::default()
    }
}

fn mark_shift(m: &crate::ir::MarkShift) -> BpfStmt {
    let bit = |on: bool, b: u32| if on { b } else { 0 };
    BpfStmt {
        kind: STMT_MARK_SHIFT,
        a: m.and,
        b: m.xor,
        c: m.post,
        shift: u32::from(m.by & 31)
            | bit(m.left, SHIFT_LEFT)
            | bit(m.from_ct, SHIFT_FROM_CT)
            | bit(m.to_ct, SHIFT_TO_CT),
    }
}

fn mark_merge(m: &crate::ir::MarkMerge) -> BpfStmt {
    let bit = |on: bool, b: u32| if on { b } else { 0 };
    BpfStmt {
        kind: STMT_MARK_MERGE,
        a: m.and,
        b: m.keep,
        c: 0,
        shift: u32::from(m.by & 31) | bit(m.left, SHIFT_LEFT) | bit(m.to_ct, SHIFT_TO_CT),
    }
}

/// `enum ns_set_field`.
pub fn set_field_number(field: SetField) -> u8 {
    match field {
        SetField::IpSaddr => 0,
        SetField::IpDaddr => 1,
        SetField::Ip6Saddr => 2,
        SetField::Ip6Daddr => 3,
        SetField::L4Proto => 4,
        SetField::Sport => 5,
        SetField::Dport => 6,
        SetField::Iif => 7,
        SetField::Oif => 8,
        SetField::Mark => 9,
        SetField::CtMark => 10,
    }
}
