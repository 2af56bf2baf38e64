//! Expressions: the types this kernel knows (`nft_expr_type_get`), the checks of their
//! `->init`, the references they hold (chains, sets, objects, flowtables), and the form
//! in which the kernel dumps them (`->dump`).
//!
//! Expressions are stored in their dump form: nests without `NLA_F_NESTED`, registers
//! renumbered as `nft_dump_register` does, in-batch ids (NFTA_*_SET_ID,
//! NFTA_VERDICT_CHAIN_ID) replaced by the names the kernel dumps, and the attribute
//! order and defaults of the kernel's dump functions for the common types.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use netlink_proto::extra::{NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV};

use crate::errno::*;
pub use crate::expr_init::Regs;
use crate::msg::*;
use crate::nla::{self, iter_attrs, Nla, Pol, Tb};
use crate::state::{Expr, Set, Table};
use crate::txn::Txn;
use crate::wire::{be32, nest, strz};

/// What an expression type declares (`struct nft_expr_type` + ops flags).
pub struct ExprType {
    pub name: &'static str,
    /// Families it is registered for; empty: all (NFPROTO_UNSPEC).
    pub families: &'static [u8],
    pub policy: &'static [Pol],
    /// Usable in sets and elements (`NFT_EXPR_STATEFUL`).
    pub stateful: bool,
    /// Has a `->validate` op: the table is validated at commit.
    pub validate: bool,
    /// Attribute numbers holding registers (renumbered on dump).
    pub regs: &'static [u16],
}

const fn t(name: &'static str, policy: &'static [Pol], regs: &'static [u16]) -> ExprType {
    ExprType {
        name,
        families: &[],
        policy,
        stateful: false,
        validate: false,
        regs,
    }
}
const fn tv(name: &'static str, policy: &'static [Pol], regs: &'static [u16]) -> ExprType {
    ExprType {
        name,
        families: &[],
        policy,
        stateful: false,
        validate: true,
        regs,
    }
}
const fn ts(name: &'static str, policy: &'static [Pol]) -> ExprType {
    ExprType {
        name,
        families: &[],
        policy,
        stateful: true,
        validate: false,
        regs: &[],
    }
}
const fn tf(
    name: &'static str,
    families: &'static [u8],
    policy: &'static [Pol],
    regs: &'static [u16],
) -> ExprType {
    ExprType {
        name,
        families,
        policy,
        stateful: false,
        validate: true,
        regs,
    }
}

use Pol::{Any as A, Nested as N, U32, U64, U8};
const S: Pol = Pol::Str(NAME_MAX);
/// NLA_POLICY_MAX(NLA_BE32, 255).
const B255: Pol = Pol::Be32Max(255);

const IP: u8 = NFPROTO_IPV4;
const IP6: u8 = NFPROTO_IPV6;
const INET: u8 = NFPROTO_INET;
const NETDEV: u8 = NFPROTO_NETDEV;

/// The expression types built into this kernel (CONFIG_NFT_QUEUE, the flowtable
/// infrastructure and the bridge meta/reject modules are not).
pub static TYPES: &[ExprType] = &[
    tv("immediate", &[A, U32, N], &[1]),
    t("cmp", &[A, U32, U32, N], &[1]),
    tv("lookup", &[A, S, U32, U32, U32, U32], &[2, 3]),
    t(
        "bitwise",
        &[A, U32, U32, U32, N, N, B255, N, U32],
        &[1, 2, 8],
    ),
    t("byteorder", &[A, U32, U32, U32, U32, U32], &[1, 2]),
    t(
        "payload",
        &[A, U32, U32, U32, U32, U32, U32, U32, U32],
        &[1, 5],
    ),
    t(
        "dynset",
        &[A, S, U32, U32, U32, U32, U64, N, A, U32, N],
        &[4, 5],
    ),
    t("range", &[A, U32, U32, N, N], &[1]),
    tv("meta", &[A, U32, U32, U32], &[1, 3]),
    tv("rt", &[A, U32, U32], &[1]),
    t("exthdr", &[A, U32, U8, U32, B255, U32, B255, U32], &[1, 7]),
    ts("last", &[A, U32, U64]),
    ts("counter", &[A, U64, U64]),
    tv("objref", &[A, U32, S, U32, S, U32], &[3]),
    t("inner", &[A, U32, U32, U32, N], &[]),
    tv("ct", &[A, U32, U32, U8, U32], &[1, 4]),
    t("notrack", &[A], &[]),
    ExprType {
        name: "connlimit",
        families: &[],
        policy: &[A, U32, U32],
        stateful: true,
        validate: false,
        regs: &[],
    },
    t(
        "log",
        &[A, Pol::Any, Pol::Str(127), Pol::Any, Pol::Any, U32, U32],
        &[],
    ),
    ExprType {
        name: "limit",
        families: &[],
        policy: &[A, U64, U64, U32, U32, U32],
        stateful: true,
        validate: false,
        regs: &[],
    },
    tf("masq", &[IP, IP6, INET], &[A, U32, U32, U32], &[2, 3]),
    tf("redir", &[IP, IP6, INET], &[A, U32, U32, U32], &[1, 2]),
    tv(
        "nat",
        &[A, U32, U32, U32, U32, U32, U32, U32],
        &[3, 4, 5, 6],
    ),
    t("tunnel", &[A, U32, U32, U32], &[2]),
    ExprType {
        name: "quota",
        families: &[],
        policy: &[A, U64, U32, A, U64],
        stateful: true,
        validate: false,
        regs: &[],
    },
    tf("reject", &[IP, IP6, INET, NETDEV], &[A, B255, U8], &[]),
    tv("match", &[A, Pol::NulStr(29), B255, Pol::Any], &[]),
    tv("target", &[A, Pol::NulStr(29), B255, Pol::Any], &[]),
    t(
        "hash",
        &[A, U32, U32, U32, U32, U32, U32, U32, S, U32],
        &[1, 2],
    ),
    tf("fib", &[IP, IP6, INET, NETDEV], &[A, U32, U32, U32], &[1]),
    tv("xfrm", &[A, U32, U32, U8, U32], &[1]),
    tv("socket", &[A, U32, U32, U32], &[2]),
    tv("osf", &[A, U32, U8, U32], &[1]),
    tv("tproxy", &[A, U32, U32, U32], &[2, 3]),
    tv("synproxy", &[A, U16, U8, U32], &[]),
    tf("dup", &[IP, IP6, NETDEV], &[A, U32, U32], &[1, 2]),
    tf("fwd", &[NETDEV], &[A, U32, U32, U32], &[1, 2]),
    t("numgen", &[A, U32, U32, U32, U32], &[1]),
];

use Pol::U16;

/// `__nft_expr_type_get`: the family's own type, else the generic one.
pub fn find_type(family: u8, name: &[u8]) -> Option<&'static ExprType> {
    TYPES.iter().find(|t| {
        t.name.as_bytes() == name && (t.families.is_empty() || t.families.contains(&family))
    })
}

/// Whether the type has a `->dump` op (NFTA_EXPR_DATA is sent).
pub fn has_dump(name: &str) -> bool {
    // `nft_notrack_ops` has no `->dump`.
    name != "notrack"
}

pub const EXPR_POLICY: &[Pol] = &[A, Pol::Str(MODULE_AUTOLOAD_LIMIT), N];

/// The rule (or set) an expression is initialised for.
pub struct Ctx<'a, 'b> {
    pub tx: &'a Txn<'b>,
    pub ti: usize,
    pub family: u8,
    /// Name of the rule's chain; None for set and element expressions.
    pub chain: Option<&'a str>,
    /// The rule's NFTA_RULE_COMPAT (`ctx->nla[NFTA_RULE_COMPAT]`), for xtables checks.
    pub rule_compat: Option<Nla<'a>>,
}

impl<'a, 'b> Ctx<'a, 'b> {
    fn table(&self) -> &'a Table {
        &self.tx.rs.tables[self.ti]
    }
}

/// An initialised expression and what it asks of the transaction.
#[derive(Debug)]
pub struct Inited {
    pub expr: Expr,
    pub validate: bool,
    /// Anonymous set this expression binds (only one rule may hold it).
    pub binds_set: Option<String>,
    /// Binding chain this expression takes.
    pub binds_chain: Option<String>,
}

/// An expression after `nf_tables_expr_parse`: its type and parsed data.
pub struct Parsed<'a> {
    ty: &'static ExprType,
    tb: Tb<'a>,
    data: Option<Nla<'a>>,
}

/// `nf_tables_expr_parse` for one NFTA_LIST_ELEM / NFTA_*_EXPR attribute: the type,
/// its data against the type's policy, and `->select_ops`. A rule parses all its
/// expressions before it initialises any.
pub fn parse<'a>(cx: &Ctx<'_, '_>, nla: &Nla<'a>) -> Result<Parsed<'a>, i32> {
    let tb = nla::parse_nested(nla, EXPR_POLICY).map_err(|e| e.errno)?;
    let name = tb.get(NFTA_EXPR_NAME).ok_or(EINVAL)?;
    let ty = find_type(cx.family, name.strcmp_bytes()).ok_or(ENOENT)?;
    let data = tb.get(NFTA_EXPR_DATA);
    let dtb = match &data {
        Some(d) => nla::parse_nested(d, ty.policy).map_err(|e| e.errno)?,
        None => Tb::default(),
    };
    crate::expr_init::select(cx.family, ty.name, &dtb)?;
    if matches!(ty.name, "match" | "target") {
        select_compat(cx, ty.name == "target", &dtb)?;
    }
    Ok(Parsed { ty, tb: dtb, data })
}

/// `nf_tables_expr_parse` + `->init` of one expression on its own (set and element
/// expressions, which must be stateful).
pub fn init(cx: &Ctx<'_, '_>, nla: &Nla<'_>, stateful_only: bool) -> Result<Inited, i32> {
    let p = parse(cx, nla)?;
    if stateful_only && !p.ty.stateful {
        return Err(EOPNOTSUPP);
    }
    init_parsed(cx, &p, &mut Regs::default())
}

/// `nf_tables_newexpr`: `->init` of a parsed expression; `regs` tracks the registers
/// the rule's earlier expressions stored.
pub fn init_parsed(cx: &Ctx<'_, '_>, p: &Parsed<'_>, regs: &mut Regs) -> Result<Inited, i32> {
    let ty = p.ty;
    let dtb = &p.tb;
    let raw: Vec<Nla<'_>> = p.data.map(|d| d.nested()).unwrap_or_default();
    let mut out = Inited {
        expr: Expr {
            name: ty.name.to_string(),
            data: Vec::new(),
        },
        validate: ty.validate,
        binds_set: None,
        binds_chain: None,
    };
    let mut attrs = canon_list(&raw, ty.regs, ty.policy)?;
    crate::expr_init::init(cx.family, ty.name, dtb, regs)?;
    match ty.name {
        "immediate" => init_immediate(cx, dtb, &mut attrs, &mut out, regs)?,
        "lookup" => init_lookup(cx, dtb, &mut attrs, &mut out, regs)?,
        "dynset" => init_dynset(cx, dtb, &mut attrs, &mut out, regs)?,
        "objref" => init_objref(cx, dtb, &mut attrs, &mut out, regs)?,
        "payload" => init_payload(dtb, &mut attrs, regs)?,
        "counter" => {
            set_default(
                &mut attrs,
                NFTA_COUNTER_BYTES,
                Attr::u64_be(NFTA_COUNTER_BYTES, 0),
            );
            set_default(
                &mut attrs,
                NFTA_COUNTER_PACKETS,
                Attr::u64_be(NFTA_COUNTER_PACKETS, 0),
            );
            reorder(&mut attrs, &[NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS]);
        }
        "meta" => init_meta(dtb, &mut attrs, regs)?,
        "match" | "target" => init_compat(cx, ty.name == "target", dtb, &mut attrs)?,
        _ => {}
    }
    crate::expr_dump::kernel_form(ty.name, &mut attrs)?;
    out.expr.data = attrs;
    Ok(out)
}

/// The stored form of a list of attributes: flags dropped from type words, nests
/// rebuilt the same way, registers renumbered.
fn canon_list(raw: &[Nla<'_>], regs: &[u16], policy: &[Pol]) -> Result<Vec<Attr>, i32> {
    raw.iter()
        .map(|a| {
            // (A bad register fails later, where `->init` parses it.)
            if regs.contains(&a.id()) && a.value.len() >= 4 {
                if let Ok(r) = parse_reg(a.be32()) {
                    return Ok(be32(a.id(), dump_reg(r)));
                }
            }
            Ok(canon_with(a, policy))
        })
        .collect()
}

/// One attribute in dump form, strings (per the policy) as `nla_put_string` writes
/// them: up to the first NUL, NUL-terminated.
pub fn canon_with(a: &Nla<'_>, policy: &[Pol]) -> Attr {
    match policy.get(usize::from(a.id())) {
        Some(Pol::Str(_) | Pol::NulStr(_)) => strz(a.id(), a.cstr()),
        _ => canon(a),
    }
}

/// One attribute in dump form: nests (flagged NLA_F_NESTED) rebuilt recursively.
pub fn canon(a: &Nla<'_>) -> Attr {
    canon_depth(a, 0)
}

/// Nests deeper than any expression uses are kept as they came (and the recursion is
/// bounded whatever a client sends).
const CANON_MAX_DEPTH: u32 = 8;

fn canon_depth(a: &Nla<'_>, depth: u32) -> Attr {
    if a.kind & netlink_packet_core_nested() != 0 && depth < CANON_MAX_DEPTH {
        let children: Vec<Attr> = iter_attrs(a.value, 0)
            .iter()
            .map(|c| canon_depth(c, depth + 1))
            .collect();
        nest(a.id(), &children)
    } else {
        Attr::new(a.id(), a.value.to_vec())
    }
}

const fn netlink_packet_core_nested() -> u16 {
    0x8000
}

/// `nft_parse_register`: 128-bit registers 0-4 and 32-bit registers 8-23, in 32-bit units.
pub fn parse_reg(reg: u32) -> Result<u32, i32> {
    match reg {
        0..=4 => Ok(reg * 4),
        8..=23 => Ok(reg - 8 + 4),
        _ => Err(ERANGE),
    }
}

/// `nft_dump_register`.
pub fn dump_reg(reg: u32) -> u32 {
    if reg.is_multiple_of(4) {
        reg / 4
    } else {
        reg - 4 + 8
    }
}

fn set_default(attrs: &mut Vec<Attr>, id: u16, a: Attr) {
    if !attrs.iter().any(|x| x.id() == id) {
        attrs.push(a);
    }
}

/// Puts attributes in the kernel's dump order; attributes the dump does not emit are
/// dropped, duplicates keep the last (the one the kernel parsed).
fn reorder(attrs: &mut Vec<Attr>, order: &[u16]) {
    let mut out = Vec::new();
    for id in order {
        if let Some(a) = attrs.iter().rev().find(|a| a.id() == *id) {
            out.push(a.clone());
        }
    }
    *attrs = out;
}

fn replace(attrs: &mut Vec<Attr>, a: Attr) {
    let id = a.id();
    match attrs.iter().position(|x| x.id() == id) {
        Some(i) => attrs[i] = a,
        None => attrs.push(a),
    }
}

/// `nft_data_init` for a value: NFTA_DATA_VALUE of 1..=size bytes.
fn value_data<'a>(a: &Nla<'a>, size: usize) -> Result<&'a [u8], i32> {
    let tb = nla::parse_nested(a, &[A, Pol::Bin(0), N]).map_err(|e| e.errno)?;
    let v = tb.get(NFTA_DATA_VALUE).ok_or(EINVAL)?;
    if v.value.is_empty() {
        return Err(EINVAL);
    }
    if v.value.len() > size {
        return Err(EOVERFLOW);
    }
    Ok(v.value)
}

/// A verdict as `nft_verdict_init` resolves it: code, and the chain name of jumps.
pub struct Verdict {
    pub code: u32,
    pub chain: Option<String>,
}

/// `nft_data_init` + `nft_verdict_init` for verdict data (NFTA_DATA_VERDICT).
pub fn verdict_data(tx: &Txn<'_>, ti: usize, a: &Nla<'_>, setelem: bool) -> Result<Verdict, i32> {
    let tb = nla::parse_nested(a, &[A, Pol::Bin(0), N]).map_err(|e| e.errno)?;
    if tb.has(NFTA_DATA_VALUE) {
        return Err(EINVAL);
    }
    let v = tb.get(NFTA_DATA_VERDICT).ok_or(EINVAL)?;
    let vt = nla::parse_nested(&v, &[A, U32, S, U32]).map_err(|e| e.errno)?;
    let code = vt.be32(NFTA_VERDICT_CODE).ok_or(EINVAL)?;
    let t = &tx.rs.tables[ti];
    match code as i32 {
        c if c == NF_ACCEPT as i32 || c == NF_DROP as i32 || c == NF_QUEUE as i32 => {
            Ok(Verdict { code, chain: None })
        }
        NFT_CONTINUE | NFT_BREAK | NFT_RETURN => Ok(Verdict { code, chain: None }),
        NFT_JUMP | NFT_GOTO => {
            let ci = if let Some(name) = vt.get(NFTA_VERDICT_CHAIN) {
                crate::chain::lookup(t, Some(name))?
            } else if let Some(id) = vt.be32(NFTA_VERDICT_CHAIN_ID) {
                let h = tx.chain_by_id(t.handle, id).ok_or(ENOENT)?;
                t.chain_idx_by_handle(h).ok_or(ENOENT)?
            } else {
                return Err(EINVAL);
            };
            let c = &t.chains[ci];
            if c.is_base() {
                return Err(EOPNOTSUPP);
            }
            if c.bound {
                return Err(EINVAL);
            }
            if setelem && c.is_binding() {
                return Err(EINVAL);
            }
            Ok(Verdict {
                code,
                chain: Some(c.name.clone()),
            })
        }
        _ => Err(EINVAL),
    }
}

fn init_immediate(
    cx: &Ctx<'_, '_>,
    tb: &Tb<'_>,
    attrs: &mut Vec<Attr>,
    out: &mut Inited,
    regs: &mut Regs,
) -> Result<(), i32> {
    let (Some(dreg), Some(data)) = (tb.be32(NFTA_IMMEDIATE_DREG), tb.get(NFTA_IMMEDIATE_DATA))
    else {
        return Err(EINVAL);
    };
    // `nft_reg_to_type`: the data must be a verdict for NFT_REG_VERDICT, a value else;
    // the register is parsed after the data.
    let dump = if dreg == NFT_REG_VERDICT {
        let v = verdict_data(cx.tx, cx.ti, &data, false)?;
        if let Some(c) = &v.chain {
            let t = cx.table();
            if let Some(ch) = t.chain(c.as_bytes()) {
                if ch.is_binding() {
                    if cx
                        .chain
                        .and_then(|n| t.chain(n.as_bytes()))
                        .is_some_and(|own| own.is_binding())
                    {
                        return Err(EOPNOTSUPP);
                    }
                    out.binds_chain = Some(c.clone());
                }
            }
        }
        crate::dump::data_verdict(NFTA_IMMEDIATE_DATA, v.code, v.chain.as_deref())
    } else {
        let tb2 = nla::parse_nested(&data, &[A, Pol::Bin(0), N]).map_err(|e| e.errno)?;
        if tb2.has(NFTA_DATA_VERDICT) && !tb2.has(NFTA_DATA_VALUE) {
            return Err(EINVAL);
        }
        let v = value_data(&data, 16)?;
        regs.store(tb.get(NFTA_IMMEDIATE_DREG), v.len() as u32)?;
        crate::dump::data_value(NFTA_IMMEDIATE_DATA, v)
    };
    replace(attrs, dump);
    reorder(attrs, &[NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA]);
    Ok(())
}

/// `nft_set_lookup_global`: by name, else by NFTA_*_SET_ID within the batch.
fn find_set<'a>(cx: &Ctx<'a, '_>, name: Option<Nla<'_>>, id: Option<u32>) -> Result<&'a Set, i32> {
    let t = cx.table();
    let name = name.ok_or(EINVAL)?;
    if let Some(s) = t
        .sets
        .iter()
        .find(|s| s.name.as_bytes() == name.strcmp_bytes())
    {
        return Ok(s);
    }
    let id = id.ok_or(ENOENT)?;
    let h = cx.tx.set_by_id(t.handle, id).ok_or(ENOENT)?;
    t.sets.iter().find(|s| s.handle == h).ok_or(ENOENT)
}

/// `nf_tables_bind_set`: an anonymous set takes one binding only.
fn bind_set(cx: &Ctx<'_, '_>, s: &Set, out: &mut Inited) -> Result<(), i32> {
    if s.is_anonymous() {
        if cx.tx.set_bound(cx.table(), s) {
            return Err(EBUSY);
        }
        out.binds_set = Some(s.name.clone());
    }
    Ok(())
}

fn init_lookup(
    cx: &Ctx<'_, '_>,
    tb: &Tb<'_>,
    attrs: &mut Vec<Attr>,
    out: &mut Inited,
    regs: &mut Regs,
) -> Result<(), i32> {
    if !tb.has(NFTA_LOOKUP_SET) || !tb.has(NFTA_LOOKUP_SREG) {
        return Err(EINVAL);
    }
    let s = find_set(cx, tb.get(NFTA_LOOKUP_SET), tb.be32(NFTA_LOOKUP_SET_ID))?;
    regs.load(tb.get(NFTA_LOOKUP_SREG), s.key_len)?;
    let flags = tb.be32(NFTA_LOOKUP_FLAGS).unwrap_or(0);
    if flags & !NFT_LOOKUP_F_INV != 0 {
        return Err(EINVAL);
    }
    let invert = flags & NFT_LOOKUP_F_INV != 0;
    if let Some(d) = tb.be32(NFTA_LOOKUP_DREG) {
        if invert || s.flags & NFT_SET_MAP == 0 {
            return Err(EINVAL);
        }
        if s.data_type == NFT_DATA_VERDICT {
            if parse_reg(d)? != 0 {
                return Err(EINVAL);
            }
        } else {
            regs.store(tb.get(NFTA_LOOKUP_DREG), s.data_len)?;
        }
    } else if invert && s.flags & NFT_SET_MAP != 0 {
        return Err(EINVAL);
    }
    bind_set(cx, s, out)?;
    replace(attrs, strz(NFTA_LOOKUP_SET, s.name.as_bytes()));
    replace(attrs, be32(NFTA_LOOKUP_FLAGS, flags));
    reorder(
        attrs,
        &[
            NFTA_LOOKUP_SET,
            NFTA_LOOKUP_SREG,
            NFTA_LOOKUP_DREG,
            NFTA_LOOKUP_FLAGS,
        ],
    );
    Ok(())
}

fn init_dynset(
    cx: &Ctx<'_, '_>,
    tb: &Tb<'_>,
    attrs: &mut Vec<Attr>,
    out: &mut Inited,
    regs: &mut Regs,
) -> Result<(), i32> {
    if !tb.has(NFTA_DYNSET_SET_NAME) || !tb.has(NFTA_DYNSET_OP) || !tb.has(NFTA_DYNSET_SREG_KEY) {
        return Err(EINVAL);
    }
    let flags = tb.be32(NFTA_DYNSET_FLAGS).unwrap_or(0);
    if flags & !(NFT_DYNSET_F_INV | NFT_DYNSET_F_EXPR) != 0 {
        return Err(EOPNOTSUPP);
    }
    let s = find_set(
        cx,
        tb.get(NFTA_DYNSET_SET_NAME),
        tb.be32(NFTA_DYNSET_SET_ID),
    )?;
    if !crate::set::backend_updates(s) {
        return Err(EOPNOTSUPP);
    }
    if s.flags & NFT_SET_CONSTANT != 0 {
        return Err(EBUSY);
    }
    match tb.be32(NFTA_DYNSET_OP).unwrap_or(0) {
        NFT_DYNSET_OP_ADD | NFT_DYNSET_OP_UPDATE | NFT_DYNSET_OP_DELETE => {}
        _ => return Err(EOPNOTSUPP),
    }
    if tb.has(NFTA_DYNSET_TIMEOUT) && s.flags & NFT_SET_TIMEOUT == 0 {
        return Err(EOPNOTSUPP);
    }
    regs.load(tb.get(NFTA_DYNSET_SREG_KEY), s.key_len)?;
    if tb.has(NFTA_DYNSET_SREG_DATA) {
        if s.flags & NFT_SET_MAP == 0 || s.data_type == NFT_DATA_VERDICT {
            return Err(EOPNOTSUPP);
        }
        regs.load(tb.get(NFTA_DYNSET_SREG_DATA), s.data_len)?;
    } else if s.flags & NFT_SET_MAP != 0 {
        return Err(EINVAL);
    }
    // Expressions for the elements the rule adds.
    let mut exprs = Vec::new();
    if let Some(e) = tb.get(NFTA_DYNSET_EXPR) {
        exprs.push(init(cx, &e, true)?.expr);
    } else if let Some(list) = tb.get(NFTA_DYNSET_EXPRESSIONS) {
        if flags & NFT_DYNSET_F_EXPR == 0 {
            return Err(EINVAL);
        }
        for e in list.nested() {
            if e.id() != NFTA_LIST_ELEM {
                return Err(EINVAL);
            }
            exprs.push(init(cx, &e, true)?.expr);
        }
    }
    bind_set(cx, s, out)?;
    replace(attrs, strz(NFTA_DYNSET_SET_NAME, s.name.as_bytes()));
    attrs.retain(|a| a.id() != NFTA_DYNSET_EXPR && a.id() != NFTA_DYNSET_EXPRESSIONS);
    match exprs.len() {
        0 => {}
        1 => attrs.push(crate::dump::expr_attr(NFTA_DYNSET_EXPR, &exprs[0])),
        _ => attrs.push(crate::dump::exprs_attr(NFTA_DYNSET_EXPRESSIONS, &exprs)),
    }
    let timeout = tb.be64(NFTA_DYNSET_TIMEOUT).unwrap_or(0);
    replace(attrs, Attr::u64_be(NFTA_DYNSET_TIMEOUT, timeout));
    replace(attrs, be32(NFTA_DYNSET_FLAGS, flags));
    reorder(
        attrs,
        &[
            NFTA_DYNSET_SREG_KEY,
            NFTA_DYNSET_SREG_DATA,
            NFTA_DYNSET_OP,
            NFTA_DYNSET_SET_NAME,
            NFTA_DYNSET_TIMEOUT,
            NFTA_DYNSET_EXPR,
            NFTA_DYNSET_EXPRESSIONS,
            NFTA_DYNSET_FLAGS,
        ],
    );
    Ok(())
}

fn init_objref(
    cx: &Ctx<'_, '_>,
    tb: &Tb<'_>,
    attrs: &mut Vec<Attr>,
    out: &mut Inited,
    regs: &mut Regs,
) -> Result<(), i32> {
    if let (Some(ty), Some(name)) = (tb.be32(NFTA_OBJREF_IMM_TYPE), tb.get(NFTA_OBJREF_IMM_NAME)) {
        let t = cx.table();
        let n = name.cstr();
        if !t
            .objects
            .iter()
            .any(|o| o.obj_type == ty && o.name.as_bytes() == n)
        {
            return Err(ENOENT);
        }
        reorder(attrs, &[NFTA_OBJREF_IMM_NAME, NFTA_OBJREF_IMM_TYPE]);
        return Ok(());
    }
    if tb.has(NFTA_OBJREF_SET_SREG) && (tb.has(NFTA_OBJREF_SET_NAME) || tb.has(NFTA_OBJREF_SET_ID))
    {
        let s = find_set(
            cx,
            tb.get(NFTA_OBJREF_SET_NAME),
            tb.be32(NFTA_OBJREF_SET_ID),
        )?;
        if s.flags & NFT_SET_OBJECT == 0 {
            return Err(EINVAL);
        }
        regs.load(tb.get(NFTA_OBJREF_SET_SREG), s.key_len)?;
        bind_set(cx, s, out)?;
        replace(attrs, strz(NFTA_OBJREF_SET_NAME, s.name.as_bytes()));
        reorder(attrs, &[NFTA_OBJREF_SET_SREG, NFTA_OBJREF_SET_NAME]);
        return Ok(());
    }
    Err(EINVAL)
}

fn init_payload(tb: &Tb<'_>, attrs: &mut Vec<Attr>, regs: &mut Regs) -> Result<(), i32> {
    let (Some(base), Some(off), Some(len)) = (
        tb.be32(NFTA_PAYLOAD_BASE),
        tb.be32(NFTA_PAYLOAD_OFFSET),
        tb.be32(NFTA_PAYLOAD_LEN),
    ) else {
        return Err(EINVAL);
    };
    if base > NFT_PAYLOAD_INNER_HEADER {
        return Err(EOPNOTSUPP);
    }
    if off > 255 || len > 255 {
        return Err(ERANGE);
    }
    match (tb.has(NFTA_PAYLOAD_SREG), tb.has(NFTA_PAYLOAD_DREG)) {
        (true, true) | (false, false) => Err(EINVAL),
        (false, true) => {
            regs.store(tb.get(NFTA_PAYLOAD_DREG), len)?;
            reorder(
                attrs,
                &[
                    NFTA_PAYLOAD_DREG,
                    NFTA_PAYLOAD_BASE,
                    NFTA_PAYLOAD_OFFSET,
                    NFTA_PAYLOAD_LEN,
                ],
            );
            Ok(())
        }
        (true, false) => {
            payload_set_csum(tb)?;
            regs.load(tb.get(NFTA_PAYLOAD_SREG), len)?;
            for id in [
                NFTA_PAYLOAD_CSUM_TYPE,
                NFTA_PAYLOAD_CSUM_OFFSET,
                NFTA_PAYLOAD_CSUM_FLAGS,
            ] {
                set_default(attrs, id, be32(id, 0));
            }
            reorder(
                attrs,
                &[
                    NFTA_PAYLOAD_SREG,
                    NFTA_PAYLOAD_BASE,
                    NFTA_PAYLOAD_OFFSET,
                    NFTA_PAYLOAD_LEN,
                    NFTA_PAYLOAD_CSUM_TYPE,
                    NFTA_PAYLOAD_CSUM_OFFSET,
                    NFTA_PAYLOAD_CSUM_FLAGS,
                ],
            );
            Ok(())
        }
    }
}

/// `nft_payload_set_init`'s checksum options.
fn payload_set_csum(tb: &Tb<'_>) -> Result<(), i32> {
    let csum_offset = tb.be32(NFTA_PAYLOAD_CSUM_OFFSET).unwrap_or(0);
    if csum_offset > 255 {
        return Err(ERANGE);
    }
    if tb.be32(NFTA_PAYLOAD_CSUM_FLAGS).unwrap_or(0) & !NFT_PAYLOAD_L4CSUM_PSEUDOHDR != 0 {
        return Err(EINVAL);
    }
    match tb
        .be32(NFTA_PAYLOAD_CSUM_TYPE)
        .unwrap_or(NFT_PAYLOAD_CSUM_NONE)
    {
        NFT_PAYLOAD_CSUM_NONE | NFT_PAYLOAD_CSUM_INET => Ok(()),
        NFT_PAYLOAD_CSUM_SCTP => {
            let base = tb.be32(NFTA_PAYLOAD_BASE).unwrap_or(0);
            if base != NFT_PAYLOAD_TRANSPORT_HEADER || csum_offset != 8 {
                return Err(EINVAL);
            }
            Ok(())
        }
        _ => Err(EOPNOTSUPP),
    }
}

fn init_meta(tb: &Tb<'_>, attrs: &mut Vec<Attr>, regs: &mut Regs) -> Result<(), i32> {
    let Some(key) = tb.be32(NFTA_META_KEY) else {
        return Err(EINVAL);
    };
    match (tb.be32(NFTA_META_DREG), tb.be32(NFTA_META_SREG)) {
        (Some(dreg), None) => {
            // `nft_meta_get_init`: the keys this kernel reads, and their sizes.
            let len = match key {
                NFT_META_PROTOCOL | NFT_META_IFTYPE | NFT_META_OIFTYPE => 2,
                NFT_META_IIFNAME | NFT_META_OIFNAME | NFT_META_IIFKIND | NFT_META_OIFKIND
                | NFT_META_SDIFNAME => 16,
                NFT_META_SECPATH | NFT_META_TIME_DAY => 1,
                NFT_META_TIME_NS => 8,
                NFT_META_LEN | NFT_META_PRIORITY | NFT_META_MARK | NFT_META_IIF | NFT_META_OIF
                | NFT_META_SKUID | NFT_META_SKGID | NFT_META_RTCLASSID | NFT_META_SECMARK
                | NFT_META_NFPROTO | NFT_META_L4PROTO | NFT_META_PKTTYPE | NFT_META_CPU
                | NFT_META_IIFGROUP | NFT_META_OIFGROUP | NFT_META_CGROUP | NFT_META_PRANDOM
                | NFT_META_TIME_HOUR | NFT_META_SDIF => 4,
                _ => return Err(EOPNOTSUPP),
            };
            let _ = dreg;
            regs.store(tb.get(NFTA_META_DREG), len)?;
            reorder(attrs, &[NFTA_META_KEY, NFTA_META_DREG]);
        }
        (None, Some(sreg)) => {
            // `nft_meta_set_init`.
            let len = match key {
                NFT_META_MARK | NFT_META_PRIORITY | NFT_META_SECMARK => 4,
                NFT_META_NFTRACE | NFT_META_PKTTYPE => 1,
                _ => return Err(EOPNOTSUPP),
            };
            let _ = sreg;
            regs.load(tb.get(NFTA_META_SREG), len)?;
            reorder(attrs, &[NFTA_META_KEY, NFTA_META_SREG]);
        }
        _ => return Err(EINVAL),
    }
    Ok(())
}

/// `nft_match_select_ops`/`nft_target_select_ops`: the extension must exist.
fn select_compat(cx: &Ctx<'_, '_>, target: bool, tb: &Tb<'_>) -> Result<(), i32> {
    let (Some(name), Some(rev), Some(_)) = (
        tb.get(NFTA_MATCH_NAME),
        tb.be32(NFTA_MATCH_REV),
        tb.get(NFTA_MATCH_INFO),
    ) else {
        return Err(EINVAL);
    };
    // NLA_POLICY_MAX(NLA_BE32, 255).
    if rev > 255 {
        return Err(ERANGE);
    }
    let name = name.cstr();
    if target && matches!(name, b"ERROR" | b"" | b"standard") {
        return Err(EINVAL);
    }
    crate::xt::find(cx.family, name, rev, target).ok_or(ENOENT)?;
    Ok(())
}

/// `nft_match_init`/`nft_target_init`: the xtables checks, which may rewrite the info.
fn init_compat(cx: &Ctx<'_, '_>, target: bool, tb: &Tb<'_>, attrs: &mut [Attr]) -> Result<(), i32> {
    let (Some(name), Some(rev), Some(info)) = (
        tb.get(NFTA_MATCH_NAME),
        tb.be32(NFTA_MATCH_REV),
        tb.get(NFTA_MATCH_INFO),
    ) else {
        return Err(EINVAL);
    };
    let ext = crate::xt::find(cx.family, name.cstr(), rev, target).ok_or(ENOENT)?;
    let (mut proto, mut inv) = (0u16, false);
    if let Some(c) = &cx.rule_compat {
        let ctb = nla::parse_nested(c, &[Pol::Any, Pol::U32, Pol::U32]).map_err(|e| e.errno)?;
        let (Some(p), Some(f)) = (
            ctb.be32(NFTA_RULE_COMPAT_PROTO),
            ctb.be32(NFTA_RULE_COMPAT_FLAGS),
        ) else {
            return Err(EINVAL);
        };
        if f & !NFT_RULE_COMPAT_F_INV != 0 || p > u32::from(u16::MAX) {
            return Err(EINVAL);
        }
        inv = f & NFT_RULE_COMPAT_F_INV != 0;
        proto = p as u16;
    }
    let t = cx.table();
    let hook_mask = cx
        .chain
        .and_then(|c| t.chains.iter().find(|ch| ch.name == c))
        .and_then(|c| c.base.as_ref())
        .map_or(0, |b| 1u32 << b.hooknum);
    let rateest = |n: &[u8]| rateest_params(cx.tx, n);
    let xcx = crate::xt::CheckCx {
        family: cx.family,
        table: &t.name,
        hook_mask,
        proto,
        inv,
        rateest: &rateest,
    };
    let stored = crate::xt::check(ext, &xcx, info.value)?;
    let info_id = if target {
        NFTA_TARGET_INFO
    } else {
        NFTA_MATCH_INFO
    };
    for a in attrs.iter_mut() {
        if a.kind & 0x3fff == info_id {
            *a = Attr::new(info_id, stored.clone());
        }
    }
    Ok(())
}

/// `xt_rateest_lookup`: the estimator of that name, made by some RATEEST target of the
/// namespace (in any table, committed or earlier in this batch): its interval and
/// ewma_log (every target sharing it has the same, xt_rateest_tg_checkentry()).
/// (The kernel also keeps an estimator while only `-m rateest` rules hold it; here it
/// goes with its last RATEEST rule.)
fn rateest_params(tx: &Txn<'_>, name: &[u8]) -> Option<(i8, u8)> {
    tx.rs.tables.iter().find_map(|t| {
        t.chains.iter().find_map(|c| {
            c.rules.iter().find_map(|r| {
                r.exprs.iter().find_map(|e| {
                    let is_rateest = e.name == "target"
                        && e.attr(NFTA_TARGET_NAME)
                            .is_some_and(|a| cstr_bytes(&a.value) == b"RATEEST");
                    if !is_rateest {
                        return None;
                    }
                    let info = &e.attr(NFTA_TARGET_INFO)?.value;
                    (cstr_bytes(&info[..info.len().min(16)]) == name && info.len() >= 18)
                        .then(|| (info[16] as i8, info[17]))
                })
            })
        })
    })
}

fn cstr_bytes(v: &[u8]) -> &[u8] {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    &v[..end]
}

fn find_nested(buf: &[u8], id: u16) -> Option<&[u8]> {
    iter_attrs(buf, 0)
        .into_iter()
        .rev()
        .find(|a| a.id() == id)
        .map(|a| a.value)
}

fn cstr_utf8(v: &[u8]) -> Option<&str> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    std::str::from_utf8(&v[..end]).ok()
}

/// The chain a jump/goto of an immediate expression names.
pub fn verdict_chain(e: &Expr) -> Option<&str> {
    if e.name != "immediate" {
        return None;
    }
    let data = &e.attr(NFTA_IMMEDIATE_DATA)?.value;
    let verdict = find_nested(data, NFTA_DATA_VERDICT)?;
    cstr_utf8(find_nested(verdict, NFTA_VERDICT_CHAIN)?)
}

/// The verdict code of an immediate expression writing the verdict register.
pub fn verdict_code(e: &Expr) -> Option<u32> {
    if e.name != "immediate" {
        return None;
    }
    let data = &e.attr(NFTA_IMMEDIATE_DATA)?.value;
    let verdict = find_nested(data, NFTA_DATA_VERDICT)?;
    let code = find_nested(verdict, NFTA_VERDICT_CODE)?;
    Some(u32::from_be_bytes(code.get(..4)?.try_into().ok()?))
}

/// Renames the target of an immediate jump/goto.
pub fn rename_verdict_chain(e: &mut Expr, old: &str, new: &str) {
    if verdict_chain(e) != Some(old) {
        return;
    }
    if let Some(code) = verdict_code(e) {
        let d = crate::dump::data_verdict(NFTA_IMMEDIATE_DATA, code, Some(new));
        replace(&mut e.data, d);
    }
}

fn attr_str(a: &Attr) -> Option<&str> {
    cstr_utf8(&a.value)
}

/// The set a lookup, dynset or objref (map) expression names.
pub fn set_ref(e: &Expr) -> Option<&str> {
    let id = match e.name.as_str() {
        "lookup" => NFTA_LOOKUP_SET,
        "dynset" => NFTA_DYNSET_SET_NAME,
        "objref" => NFTA_OBJREF_SET_NAME,
        _ => return None,
    };
    attr_str(e.attr(id)?)
}

/// The object (name, type) an objref expression names directly.
pub fn obj_ref(e: &Expr) -> Option<(&str, u32)> {
    if e.name != "objref" {
        return None;
    }
    let ty = e.attr(NFTA_OBJREF_IMM_TYPE)?.as_u32_be()?;
    Some((attr_str(e.attr(NFTA_OBJREF_IMM_NAME)?)?, ty))
}

/// The flowtable a flow_offload expression names.
pub fn flowtable_ref(e: &Expr) -> Option<&str> {
    if e.name != "flow_offload" {
        return None;
    }
    attr_str(e.attr(NFTA_FLOW_TABLE_NAME)?)
}

/// A u32 attribute of an expression.
pub fn attr_u32(e: &Expr, id: u16) -> Option<u32> {
    e.attr(id)?.as_u32_be()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_proto::extra::NFPROTO_BRIDGE;

    #[test]
    fn registers_renumber_like_the_kernel() {
        assert_eq!(dump_reg(parse_reg(NFT_REG_1).unwrap()), NFT_REG_1);
        assert_eq!(dump_reg(parse_reg(NFT_REG32_00).unwrap()), NFT_REG_1);
        assert_eq!(dump_reg(parse_reg(NFT_REG32_01).unwrap()), NFT_REG32_01);
        assert_eq!(dump_reg(parse_reg(NFT_REG32_04).unwrap()), NFT_REG_2);
        assert_eq!(parse_reg(5), Err(ERANGE));
        assert_eq!(parse_reg(24), Err(ERANGE));
    }

    #[test]
    fn family_specific_types() {
        assert!(find_type(NFPROTO_IPV4, b"reject").is_some());
        assert!(find_type(NFPROTO_BRIDGE, b"reject").is_none());
        assert!(find_type(NFPROTO_IPV4, b"queue").is_none());
        assert!(find_type(NFPROTO_NETDEV, b"fwd").is_some());
        assert!(find_type(NFPROTO_IPV4, b"fwd").is_none());
    }
}
