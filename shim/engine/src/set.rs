//! Sets, maps and their elements: NEWSET / DELSET / DESTROYSET, NEWSETELEM /
//! DELSETELEM / DESTROYSETELEM (`nf_tables_newset`, `_delset`, `nft_add_set_elem`,
//! `nft_del_setelem`, `nft_set_flush`).

use netlink_proto::consts::*;
use netlink_proto::extra::NFPROTO_UNSPEC;
use netlink_proto::extra::*;

use crate::errno::*;
use crate::expr;
use crate::msg::*;
use crate::nla::{self, Nla, Pol, Tb};
use crate::state::{Elem, ElemData, Set, Table};
use crate::table;
use crate::txn::{Meta, Msg, MsgErr, MsgResult, TransKind, Txn};
use crate::validate;

pub const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NAME_MAX),                  // TABLE
    Pol::Str(NAME_MAX),                  // NAME
    Pol::U32,                            // FLAGS
    Pol::U32,                            // KEY_TYPE
    Pol::U32,                            // KEY_LEN
    Pol::U32,                            // DATA_TYPE
    Pol::U32,                            // DATA_LEN
    Pol::U32,                            // POLICY
    Pol::Nested,                         // DESC
    Pol::U32,                            // ID
    Pol::U64,                            // TIMEOUT
    Pol::U32,                            // GC_INTERVAL
    Pol::Bin(USERDATA_MAXLEN),           // USERDATA
    Pol::Any,                            // PAD
    Pol::U32,                            // OBJ_TYPE
    Pol::U64,                            // HANDLE
    Pol::Nested,                         // EXPR
    Pol::NestedArray(expr::EXPR_POLICY), // EXPRESSIONS
    Pol::Reject,                         // TYPE
    Pol::Reject,                         // COUNT
];

const ELEM_POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Nested,                         // KEY
    Pol::Nested,                         // DATA
    Pol::U32,                            // FLAGS
    Pol::U64,                            // TIMEOUT
    Pol::U64,                            // EXPIRATION
    Pol::Bin(USERDATA_MAXLEN),           // USERDATA
    Pol::Nested,                         // EXPR
    Pol::Any,                            // PAD
    Pol::Str(NAME_MAX),                  // OBJREF
    Pol::Nested,                         // KEY_END
    Pol::NestedArray(expr::EXPR_POLICY), // EXPRESSIONS
];

pub const ELEM_LIST_POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NAME_MAX),            // TABLE
    Pol::Str(NAME_MAX),            // SET
    Pol::NestedArray(ELEM_POLICY), // ELEMENTS
    Pol::U32,                      // SET_ID
];

const DESC_POLICY: &[Pol] = &[Pol::Any, Pol::U32, Pol::Nested];

/// `NFT_DATA_RESERVED_MASK`.
const DATA_RESERVED_MASK: u32 = 0xffff_ff00;
/// `NFT_DATA_VALUE_MAXLEN`.
const DATA_VALUE_MAXLEN: u32 = 64;
/// `NFT_SET_EXPR_MAX`.
const SET_EXPR_MAX: usize = 2;
/// `NFT_REG32_COUNT`.
const REG32_COUNT: u32 = 16;
/// `NFT_SET_MAX_ANONLEN`.
const SET_MAX_ANONLEN: usize = 16;

/// The set backends (`nft_set_types`) and the flags each supports.
const BACKENDS: &[(&str, u32)] = &[
    ("hash_fast", NFT_SET_MAP | NFT_SET_OBJECT),
    ("hash", NFT_SET_MAP | NFT_SET_OBJECT),
    (
        "rhash",
        NFT_SET_MAP | NFT_SET_OBJECT | NFT_SET_TIMEOUT | NFT_SET_EVAL,
    ),
    ("bitmap", 0),
    (
        "rbtree",
        NFT_SET_INTERVAL | NFT_SET_MAP | NFT_SET_OBJECT | NFT_SET_TIMEOUT,
    ),
    (
        "pipapo",
        NFT_SET_INTERVAL | NFT_SET_MAP | NFT_SET_OBJECT | NFT_SET_TIMEOUT,
    ),
];
const SET_FEATURES: u32 =
    NFT_SET_INTERVAL | NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_OBJECT | NFT_SET_EVAL;

/// `nft_select_set_ops`: whether any backend takes these flags and this key.
fn backend_exists(flags: u32, klen: u32, fields: usize) -> bool {
    BACKENDS.iter().any(|(name, features)| {
        if flags & features != flags & SET_FEATURES {
            return false;
        }
        match *name {
            "rbtree" => fields <= 1,
            "pipapo" => flags & NFT_SET_INTERVAL != 0 && fields > 1,
            "bitmap" => klen <= 2 && fields <= 1,
            "hash_fast" => klen == 4,
            _ => true,
        }
    })
}

/// Whether the set's backend can add elements from the packet path (`ops->update`).
pub fn backend_updates(s: &Set) -> bool {
    s.flags & NFT_SET_INTERVAL == 0
        && !(s.key_len <= 2
            && s.flags & (NFT_SET_MAP | NFT_SET_OBJECT | NFT_SET_TIMEOUT | NFT_SET_EVAL) == 0)
}

/// Whether a rule expression holds the set (`set->bindings` not empty).
pub fn is_bound(t: &Table, name: &str) -> bool {
    t.chains.iter().any(|c| {
        c.rules
            .iter()
            .any(|r| r.exprs.iter().any(|e| expr::set_ref(e) == Some(name)))
    })
}

/// `set->use`: the number of bindings.
pub fn set_use(t: &Table, name: &str) -> u32 {
    t.chains
        .iter()
        .flat_map(|c| c.rules.iter())
        .flat_map(|r| r.exprs.iter())
        .filter(|e| expr::set_ref(e) == Some(name))
        .count() as u32
}

/// `nft_set_lookup`: by name (as `nla_strcmp` compares).
fn lookup(t: &Table, nla: Option<Nla<'_>>) -> Result<usize, i32> {
    let nla = nla.ok_or(EINVAL)?;
    t.sets
        .iter()
        .position(|s| s.name.as_bytes() == nla.strcmp_bytes())
        .ok_or(ENOENT)
}

/// `nf_msecs_to_jiffies64`: milliseconds that fit in nanoseconds.
fn msecs(a: &Nla<'_>) -> Result<u64, i32> {
    let ms = a.be64();
    if ms >= u64::MAX / 1_000_000 {
        return Err(ERANGE);
    }
    Ok(ms)
}

struct Desc {
    size: u32,
    fields: Vec<u32>,
}

/// `nf_tables_set_desc_parse` and `nft_set_desc_concat`.
fn parse_desc(a: &Nla<'_>, klen: u32) -> Result<Desc, i32> {
    let tb = nla::parse_nested(a, DESC_POLICY).map_err(|e| e.errno)?;
    let mut d = Desc {
        size: tb.be32(NFTA_SET_DESC_SIZE).unwrap_or(0),
        fields: Vec::new(),
    };
    if let Some(concat) = tb.get(NFTA_SET_DESC_CONCAT) {
        for f in concat.nested() {
            if f.id() != NFTA_LIST_ELEM {
                return Err(EINVAL);
            }
            if d.fields.len() >= 16 {
                return Err(E2BIG);
            }
            let ft = nla::parse_nested(&f, &[Pol::Any, Pol::U32]).map_err(|e| e.errno)?;
            let len = ft.be32(NFTA_SET_FIELD_LEN).ok_or(EINVAL)?;
            if len == 0 || len > 255 {
                return Err(EINVAL);
            }
            d.fields.push(len);
        }
        let total: u32 = d.fields.iter().map(|l| l.div_ceil(4) * 4).sum();
        if total != klen {
            return Err(EINVAL);
        }
        if klen.div_ceil(4) > REG32_COUNT {
            return Err(E2BIG);
        }
    }
    Ok(d)
}

pub fn new(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let tb = &m.tb;
    if !tb.has(NFTA_SET_TABLE)
        || !tb.has(NFTA_SET_NAME)
        || !tb.has(NFTA_SET_KEY_LEN)
        || !tb.has(NFTA_SET_ID)
    {
        return Err(EINVAL.into());
    }
    let key_type = tb.be32(NFTA_SET_KEY_TYPE).unwrap_or(NFT_DATA_VALUE);
    if key_type & DATA_RESERVED_MASK == DATA_RESERVED_MASK {
        return Err(EINVAL.into());
    }
    let key_len = tb.be32(NFTA_SET_KEY_LEN).unwrap_or(0);
    if key_len == 0 || key_len > DATA_VALUE_MAXLEN {
        return Err(EINVAL.into());
    }
    let flags = tb.be32(NFTA_SET_FLAGS).unwrap_or(0);
    let all = NFT_SET_ANONYMOUS
        | NFT_SET_CONSTANT
        | NFT_SET_INTERVAL
        | NFT_SET_TIMEOUT
        | NFT_SET_MAP
        | NFT_SET_EVAL
        | NFT_SET_OBJECT
        | NFT_SET_CONCAT
        | NFT_SET_EXPR;
    if flags & !all != 0
        || flags & (NFT_SET_MAP | NFT_SET_OBJECT) == NFT_SET_MAP | NFT_SET_OBJECT
        || flags & (NFT_SET_EVAL | NFT_SET_OBJECT) == NFT_SET_EVAL | NFT_SET_OBJECT
        || flags & (NFT_SET_ANONYMOUS | NFT_SET_TIMEOUT | NFT_SET_EVAL)
            == NFT_SET_ANONYMOUS | NFT_SET_TIMEOUT
        || flags & (NFT_SET_CONSTANT | NFT_SET_TIMEOUT) == NFT_SET_CONSTANT | NFT_SET_TIMEOUT
    {
        return Err(EOPNOTSUPP.into());
    }
    let mut data_type = 0;
    let mut data_len = 0;
    if let Some(dt) = tb.be32(NFTA_SET_DATA_TYPE) {
        if flags & NFT_SET_MAP == 0 {
            return Err(EINVAL.into());
        }
        data_type = dt;
        if dt & DATA_RESERVED_MASK == DATA_RESERVED_MASK && dt != NFT_DATA_VERDICT {
            return Err(EINVAL.into());
        }
        if dt != NFT_DATA_VERDICT {
            data_len = tb.be32(NFTA_SET_DATA_LEN).ok_or(MsgErr::from(EINVAL))?;
            if data_len == 0 || data_len > DATA_VALUE_MAXLEN {
                return Err(EINVAL.into());
            }
        } else {
            // sizeof(struct nft_verdict)
            data_len = 16;
        }
    } else if flags & NFT_SET_MAP != 0 {
        return Err(EINVAL.into());
    }
    let mut obj_type = NFT_OBJECT_UNSPEC;
    if let Some(ot) = tb.be32(NFTA_SET_OBJ_TYPE) {
        if flags & NFT_SET_OBJECT == 0 {
            return Err(EINVAL.into());
        }
        if ot == NFT_OBJECT_UNSPEC || ot > NFT_OBJECT_MAX {
            return Err(EOPNOTSUPP.into());
        }
        obj_type = ot;
    } else if flags & NFT_SET_OBJECT != 0 {
        return Err(EINVAL.into());
    }
    let mut timeout_ms = 0;
    if let Some(t) = tb.get(NFTA_SET_TIMEOUT) {
        if flags & NFT_SET_TIMEOUT == 0 {
            return Err(EINVAL.into());
        }
        if flags & NFT_SET_ANONYMOUS != 0 {
            return Err(EOPNOTSUPP.into());
        }
        timeout_ms = msecs(&t)?;
    }
    let mut gc_interval = 0;
    if let Some(g) = tb.be32(NFTA_SET_GC_INTERVAL) {
        if flags & NFT_SET_TIMEOUT == 0 {
            return Err(EINVAL.into());
        }
        if flags & NFT_SET_ANONYMOUS != 0 {
            return Err(EOPNOTSUPP.into());
        }
        gc_interval = g;
    }
    let policy = tb.be32(NFTA_SET_POLICY).unwrap_or(NFT_SET_POL_PERFORMANCE);
    if policy != NFT_SET_POL_PERFORMANCE && policy != NFT_SET_POL_MEMORY {
        return Err(EOPNOTSUPP.into());
    }
    let desc = match tb.get(NFTA_SET_DESC) {
        Some(d) => {
            let desc = parse_desc(&d, key_len)?;
            if (desc.fields.len() > 1) != (flags & NFT_SET_CONCAT != 0) {
                return Err(EINVAL.into());
            }
            desc
        }
        None if flags & NFT_SET_CONCAT != 0 => return Err(EINVAL.into()),
        None => Desc {
            size: 0,
            fields: Vec::new(),
        },
    };
    let family = m.meta.family;
    let ti = table::lookup_at(&tx.rs, tb.get(NFTA_SET_TABLE), family, m.meta.portid)?;
    let name_attr = tb.get(NFTA_SET_NAME);
    let name_off = name_attr.map(|a| a.off);
    let table = tx.rs.tables[ti].handle;
    let exprs = set_exprs(tx, ti, family, tb, flags)?;
    if let Ok(si) = lookup(&tx.rs.tables[ti], name_attr) {
        let s = &tx.rs.tables[ti].sets[si];
        if m.meta.flags & NLM_F_EXCL != 0 {
            return Err(MsgErr::at(EEXIST, name_off));
        }
        if m.meta.flags & NLM_F_REPLACE != 0 || s.is_anonymous() {
            return Err(EOPNOTSUPP.into());
        }
        let same = s.key_type == key_type
            && s.data_type == data_type
            && s.flags == flags
            && s.key_len == key_len
            && s.data_len == data_len
            && s.field_len.len() == desc.fields.len()
            && s.field_len == desc.fields
            && s.exprs.len() == exprs.len()
            && s.exprs.iter().zip(&exprs).all(|(a, b)| a.name == b.name);
        if !same {
            return Err(MsgErr::at(EEXIST, name_off));
        }
        // An update: timeout, gc interval and size take the new values at commit.
        let s = &mut tx.rs.tables[ti].sets[si];
        s.timeout_ms = timeout_ms;
        s.gc_interval = gc_interval;
        if desc.size != 0 {
            s.size = desc.size;
        }
        let snapshot = Box::new(s.clone());
        let handle = s.handle;
        tx.push(
            m.meta,
            table,
            TransKind::NewSet {
                handle,
                id: None,
                snapshot,
                update: true,
            },
        );
        return Ok(());
    }
    if m.meta.flags & NLM_F_CREATE == 0 {
        return Err(ENOENT.into());
    }
    if !backend_exists(flags, key_len, desc.fields.len()) {
        return Err(EOPNOTSUPP.into());
    }
    let name = alloc_name(
        &tx.rs.tables[ti],
        name_attr.map(|a| table::name_of(&a)).unwrap_or_default(),
    )?;
    let handle = tx.alloc_handle(table);
    let set = Set {
        name,
        handle,
        flags,
        key_type,
        key_len,
        data_type,
        data_len,
        obj_type,
        policy,
        size: desc.size,
        field_len: if desc.fields.len() > 1 {
            desc.fields
        } else {
            Vec::new()
        },
        timeout_ms,
        gc_interval,
        udata: tb
            .get(NFTA_SET_USERDATA)
            .filter(|u| !u.value.is_empty())
            .map(|u| u.value.to_vec()),
        exprs,
        elems: Vec::new(),
    };
    let snapshot = Box::new(set.clone());
    tx.rs.tables[ti].sets.push(set);
    tx.new_sets.insert((table, handle));
    let id = tb.be32(NFTA_SET_ID);
    tx.push(
        m.meta,
        table,
        TransKind::NewSet {
            handle,
            id,
            snapshot,
            update: false,
        },
    );
    Ok(())
}

/// `nft_set_expr_alloc`: stateful expressions for every element of the set.
fn set_exprs(
    tx: &Txn<'_>,
    ti: usize,
    family: u8,
    tb: &Tb<'_>,
    flags: u32,
) -> Result<Vec<crate::state::Expr>, MsgErr> {
    let cx = expr::Ctx {
        tx,
        ti,
        family,
        chain: None,
        rule_compat: None,
    };
    let mut out = Vec::new();
    if let Some(e) = tb.get(NFTA_SET_EXPR) {
        out.push(stateful(&cx, &e, flags)?);
    } else if let Some(list) = tb.get(NFTA_SET_EXPRESSIONS) {
        if flags & NFT_SET_EXPR == 0 {
            return Err(EINVAL.into());
        }
        for e in list.nested() {
            if out.len() == SET_EXPR_MAX {
                return Err(E2BIG.into());
            }
            if e.id() != NFTA_LIST_ELEM {
                return Err(EINVAL.into());
            }
            out.push(stateful(&cx, &e, flags)?);
        }
    }
    Ok(out)
}

/// `nft_set_elem_expr_alloc`: stateful only; connlimit (GC) not with timeouts.
fn stateful(
    cx: &expr::Ctx<'_, '_>,
    e: &Nla<'_>,
    set_flags: u32,
) -> Result<crate::state::Expr, MsgErr> {
    let x = expr::init(cx, e, true)?;
    if x.expr.name == "connlimit" && set_flags & NFT_SET_TIMEOUT != 0 {
        return Err(EOPNOTSUPP.into());
    }
    Ok(x.expr)
}

/// `nf_tables_set_alloc_name`: `__set%d` takes the lowest free number.
fn alloc_name(t: &Table, name: String) -> Result<String, MsgErr> {
    let Some(p) = name.find('%') else {
        return Ok(name);
    };
    let (prefix, rest) = (&name[..p], &name[p..]);
    if !rest.starts_with("%d") || rest[2..].contains('%') {
        return Err(EINVAL.into());
    }
    if name.len() >= SET_MAX_ANONLEN {
        return Err(EINVAL.into());
    }
    let suffix = &rest[2..];
    let used: std::collections::BTreeSet<i64> = t
        .sets
        .iter()
        .filter_map(|s| {
            let r = s.name.strip_prefix(prefix)?;
            // sscanf("%d") reads an optional sign and digits.
            let digits: String = r
                .chars()
                .enumerate()
                .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
                .map(|(_, c)| c)
                .collect();
            digits.parse::<i64>().ok()
        })
        .collect();
    let n = (0i64..).find(|n| !used.contains(n)).unwrap_or(0);
    let full = format!("{prefix}{n}{suffix}");
    if t.sets.iter().any(|s| s.name == full) {
        return Err(ENFILE.into());
    }
    Ok(full)
}

pub fn del(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    if family == NFPROTO_UNSPEC {
        return Err(EAFNOSUPPORT.into());
    }
    let ti = table::lookup_at(&tx.rs, m.tb.get(NFTA_SET_TABLE), family, m.meta.portid)?;
    let t = &tx.rs.tables[ti];
    let (attr, found) = match m.tb.get(NFTA_SET_HANDLE) {
        Some(h) => (
            Some(h),
            t.sets
                .iter()
                .position(|s| s.handle == h.be64())
                .ok_or(ENOENT),
        ),
        None => (m.tb.get(NFTA_SET_NAME), lookup(t, m.tb.get(NFTA_SET_NAME))),
    };
    let si = match found {
        Ok(si) => si,
        Err(ENOENT) if is_destroy(m.meta.msg_type) => return Ok(()),
        Err(e) => return Err(MsgErr::at(e, attr.map(|a| a.off))),
    };
    let s = &t.sets[si];
    if set_use(t, &s.name) > 0 || (m.meta.flags & NLM_F_NONREC != 0 && s.nelems() > 0) {
        return Err(MsgErr::at(EBUSY, attr.map(|a| a.off)));
    }
    let (table, handle) = (t.handle, s.handle);
    delete(tx, m.meta, table, handle);
    Ok(())
}

/// `nft_delset`.
pub fn delete(tx: &mut Txn<'_>, meta: Meta, table: u64, handle: u64) {
    let Some(ti) = tx.rs.table_idx_by_handle(table) else {
        return;
    };
    let Some(si) = tx.rs.tables[ti]
        .sets
        .iter()
        .position(|s| s.handle == handle)
    else {
        return;
    };
    let s = tx.rs.tables[ti].sets.remove(si);
    tx.push(
        meta,
        table,
        TransKind::DelSet {
            snapshot: Box::new(s),
        },
    );
}

/// The set a NEWSETELEM names: by name, else by NFTA_SET_ELEM_LIST_SET_ID.
fn elem_set(tx: &Txn<'_>, ti: usize, m: &Msg<'_>, by_id: bool) -> Result<usize, MsgErr> {
    let t = &tx.rs.tables[ti];
    let name = m.tb.get(NFTA_SET_ELEM_LIST_SET);
    let off = name.map(|a| a.off);
    match lookup(t, name) {
        Ok(si) => Ok(si),
        Err(e) => {
            let id = if by_id {
                m.tb.be32(NFTA_SET_ELEM_LIST_SET_ID)
            } else {
                None
            };
            let Some(id) = id else {
                return Err(MsgErr::at(e, off));
            };
            let h = tx.set_by_id(t.handle, id).ok_or(MsgErr::at(ENOENT, off))?;
            t.sets
                .iter()
                .position(|s| s.handle == h)
                .ok_or(MsgErr::at(ENOENT, off))
        }
    }
}

pub fn new_elems(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let Some(list) = m.tb.get(NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return Err(EINVAL.into());
    };
    let family = m.meta.family;
    let ti = table::lookup_at(
        &tx.rs,
        m.tb.get(NFTA_SET_ELEM_LIST_TABLE),
        family,
        m.meta.portid,
    )?;
    let si = elem_set(tx, ti, m, true)?;
    let t = &tx.rs.tables[ti];
    let s = &t.sets[si];
    let bound = tx.set_bound(t, s);
    if bound && s.flags & (NFT_SET_CONSTANT | NFT_SET_ANONYMOUS) != 0 {
        return Err(EBUSY.into());
    }
    let table = t.handle;
    let set_handle = s.handle;
    for e in list.nested() {
        add_elem(tx, m, ti, set_handle, bound, &e).map_err(|err| MsgErr::at(err, Some(e.off)))?;
    }
    if tx.validates_each(table) {
        if let Some(t) = tx.rs.table_by_handle(table) {
            validate::table(t)?;
        }
    }
    Ok(())
}

/// `nft_setelem_parse_flags`.
fn elem_flags(s: &Set, tb: &Tb<'_>) -> Result<u32, i32> {
    let Some(f) = tb.be32(NFTA_SET_ELEM_FLAGS) else {
        return Ok(0);
    };
    if f & !(NFT_SET_ELEM_INTERVAL_END | NFT_SET_ELEM_CATCHALL) != 0 {
        return Err(EOPNOTSUPP);
    }
    if s.flags & NFT_SET_INTERVAL == 0 && f & NFT_SET_ELEM_INTERVAL_END != 0 {
        return Err(EINVAL);
    }
    if f & (NFT_SET_ELEM_INTERVAL_END | NFT_SET_ELEM_CATCHALL)
        == NFT_SET_ELEM_INTERVAL_END | NFT_SET_ELEM_CATCHALL
    {
        return Err(EINVAL);
    }
    Ok(f)
}

/// `nft_setelem_valid_key_end`.
fn valid_key_end(s: &Set, tb: &Tb<'_>, flags: u32) -> bool {
    if s.flags & (NFT_SET_CONCAT | NFT_SET_INTERVAL) == NFT_SET_CONCAT | NFT_SET_INTERVAL {
        !(flags & NFT_SET_ELEM_INTERVAL_END != 0
            || (tb.has(NFTA_SET_ELEM_KEY_END) && flags & NFT_SET_ELEM_CATCHALL != 0))
    } else {
        !tb.has(NFTA_SET_ELEM_KEY_END)
    }
}

/// `nft_setelem_parse_key`: a value of exactly the key length.
fn parse_key(s: &Set, a: &Nla<'_>) -> Result<Vec<u8>, i32> {
    let tb = nla::parse_nested(a, &[Pol::Any, Pol::Bin(0), Pol::Nested]).map_err(|e| e.errno)?;
    let v = tb.get(NFTA_DATA_VALUE).ok_or(EINVAL)?;
    if v.value.is_empty() {
        return Err(EINVAL);
    }
    if v.value.len() > DATA_VALUE_MAXLEN as usize {
        return Err(EOVERFLOW);
    }
    if v.value.len() != s.key_len as usize {
        return Err(EINVAL);
    }
    Ok(v.value.to_vec())
}

fn add_elem(
    tx: &mut Txn<'_>,
    m: &Msg<'_>,
    ti: usize,
    set_handle: u64,
    bound: bool,
    attr: &Nla<'_>,
) -> Result<(), i32> {
    let tb = nla::parse_nested(attr, ELEM_POLICY).map_err(|e| e.errno)?;
    let t = &tx.rs.tables[ti];
    let table = t.handle;
    let si = t
        .sets
        .iter()
        .position(|s| s.handle == set_handle)
        .ok_or(ENOENT)?;
    let s = &t.sets[si];
    let flags = elem_flags(s, &tb)?;
    let catchall = flags & NFT_SET_ELEM_CATCHALL != 0;
    let end = flags & NFT_SET_ELEM_INTERVAL_END != 0;
    if catchall == tb.has(NFTA_SET_ELEM_KEY) {
        return Err(EINVAL);
    }
    if s.flags & NFT_SET_MAP != 0 {
        if !tb.has(NFTA_SET_ELEM_DATA) && !end {
            return Err(EINVAL);
        }
    } else if tb.has(NFTA_SET_ELEM_DATA) {
        return Err(EINVAL);
    }
    if s.flags & NFT_SET_OBJECT != 0 {
        if !tb.has(NFTA_SET_ELEM_OBJREF) && !end {
            return Err(EINVAL);
        }
    } else if tb.has(NFTA_SET_ELEM_OBJREF) {
        return Err(EINVAL);
    }
    if !valid_key_end(s, &tb, flags) {
        return Err(EINVAL);
    }
    if end
        && [
            NFTA_SET_ELEM_DATA,
            NFTA_SET_ELEM_OBJREF,
            NFTA_SET_ELEM_TIMEOUT,
            NFTA_SET_ELEM_EXPIRATION,
            NFTA_SET_ELEM_USERDATA,
            NFTA_SET_ELEM_EXPR,
            NFTA_SET_ELEM_KEY_END,
            NFTA_SET_ELEM_EXPRESSIONS,
        ]
        .iter()
        .any(|id| tb.has(*id))
    {
        return Err(EINVAL);
    }
    let mut timeout = 0;
    if let Some(a) = tb.get(NFTA_SET_ELEM_TIMEOUT) {
        if s.flags & NFT_SET_TIMEOUT == 0 {
            return Err(EINVAL);
        }
        timeout = msecs(&a)?;
    } else if s.flags & NFT_SET_TIMEOUT != 0 && !end {
        timeout = s.timeout_ms;
    }
    let mut expiration = 0;
    if let Some(a) = tb.get(NFTA_SET_ELEM_EXPIRATION) {
        if s.flags & NFT_SET_TIMEOUT == 0 {
            return Err(EINVAL);
        }
        if timeout == 0 {
            return Err(EOPNOTSUPP);
        }
        expiration = msecs(&a)?;
        if expiration > timeout {
            return Err(ERANGE);
        }
    }
    let family = m.meta.family;
    let cx = expr::Ctx {
        tx,
        ti,
        family,
        chain: None,
        rule_compat: None,
    };
    let mut exprs = Vec::new();
    if let Some(e) = tb.get(NFTA_SET_ELEM_EXPR) {
        if s.exprs.len() > 1 {
            return Err(EOPNOTSUPP);
        }
        let x = stateful(&cx, &e, s.flags).map_err(|e| e.errno)?;
        if s.exprs.first().is_some_and(|se| se.name != x.name) {
            return Err(EOPNOTSUPP);
        }
        exprs.push(x);
    } else if let Some(list) = tb.get(NFTA_SET_ELEM_EXPRESSIONS) {
        for (i, e) in list.nested().iter().enumerate() {
            if i == SET_EXPR_MAX || (!s.exprs.is_empty() && s.exprs.len() == i) {
                return Err(E2BIG);
            }
            if e.id() != NFTA_LIST_ELEM {
                return Err(EINVAL);
            }
            let x = stateful(&cx, e, s.flags).map_err(|e| e.errno)?;
            if s.exprs.get(i).is_some_and(|se| se.name != x.name) {
                return Err(EOPNOTSUPP);
            }
            exprs.push(x);
        }
        if !s.exprs.is_empty() && s.exprs.len() != exprs.len() {
            return Err(EOPNOTSUPP);
        }
    } else if !s.exprs.is_empty() && !end {
        exprs = s.exprs.clone();
    }
    let key = match tb.get(NFTA_SET_ELEM_KEY) {
        Some(a) => Some(parse_key(s, &a)?),
        None => None,
    };
    let key_end = match tb.get(NFTA_SET_ELEM_KEY_END) {
        Some(a) => Some(parse_key(s, &a)?),
        None => None,
    };
    let objref = match tb.get(NFTA_SET_ELEM_OBJREF) {
        Some(a) => {
            let n = a.cstr();
            let o = t
                .objects
                .iter()
                .find(|o| o.obj_type == s.obj_type && o.name.as_bytes() == n)
                .ok_or(ENOENT)?;
            Some(o.name.clone())
        }
        None => None,
    };
    let mut jumps = false;
    let data = match tb.get(NFTA_SET_ELEM_DATA) {
        Some(a) if s.data_type == NFT_DATA_VERDICT => {
            let v = expr::verdict_data(tx, ti, &a, true)?;
            jumps = v.chain.is_some();
            Some(ElemData::Verdict {
                code: v.code,
                chain: v.chain,
            })
        }
        Some(a) => {
            let tbd = nla::parse_nested(&a, &[Pol::Any, Pol::Bin(0), Pol::Nested])
                .map_err(|e| e.errno)?;
            let v = tbd.get(NFTA_DATA_VALUE).ok_or(EINVAL)?;
            if v.value.is_empty() || v.value.len() != s.data_len as usize {
                return Err(if v.value.len() > DATA_VALUE_MAXLEN as usize {
                    EOVERFLOW
                } else {
                    EINVAL
                });
            }
            Some(ElemData::Value(v.value.to_vec()))
        }
        None => None,
    };
    let elem = Elem {
        key,
        key_end,
        data,
        flags,
        timeout_ms: timeout,
        expires_at_ms: (timeout > 0)
            .then(|| tx.now_ms + if expiration > 0 { expiration } else { timeout }),
        udata: tb
            .get(NFTA_SET_ELEM_USERDATA)
            .filter(|u| !u.value.is_empty())
            .map(|u| u.value.to_vec()),
        exprs,
        objref,
    };
    // Insertion: an existing element with the same key is fine unless it differs or
    // NLM_F_EXCL was given; overlapping intervals clash.
    if let Some(existing) = s.elems.iter().find(|x| same_elem(s, x, &elem)) {
        let clash = existing.data.is_some() != elem.data.is_some()
            || existing.objref.is_some() != elem.objref.is_some()
            || existing.data != elem.data
            || existing.objref != elem.objref;
        if clash || m.meta.flags & NLM_F_EXCL != 0 {
            return Err(EEXIST);
        }
        return Ok(());
    }
    if overlaps(s, &elem) {
        return Err(EEXIST);
    }
    if !catchall && s.size != 0 && s.nelems() as u32 >= s.size {
        return Err(ENFILE);
    }
    if jumps && bound {
        tx.validate_need.insert(table);
    }
    let set_name = s.name.clone();
    let pos = insert_pos(s, &elem);
    tx.rs.tables[ti].sets[si].elems.insert(pos, elem.clone());
    tx.push(
        m.meta,
        table,
        TransKind::NewSetElem {
            set: set_name,
            elem: Box::new(elem),
        },
    );
    Ok(())
}

/// The element identity of the set's backend: the key (and key end, or the interval
/// end flag), or the catch-all.
fn same_elem(s: &Set, a: &Elem, b: &Elem) -> bool {
    let ca = a.flags & NFT_SET_ELEM_CATCHALL != 0;
    let cb = b.flags & NFT_SET_ELEM_CATCHALL != 0;
    if ca || cb {
        return ca && cb;
    }
    if s.flags & NFT_SET_INTERVAL != 0 && s.field_len.len() <= 1 {
        return a.key == b.key
            && (a.flags & NFT_SET_ELEM_INTERVAL_END) == (b.flags & NFT_SET_ELEM_INTERVAL_END);
    }
    a.key == b.key && a.key_end == b.key_end
}

/// Overlap of a new interval with existing ones (the backends' `-ENOTEMPTY`).
fn overlaps(s: &Set, e: &Elem) -> bool {
    if s.flags & NFT_SET_INTERVAL == 0 || e.flags & NFT_SET_ELEM_CATCHALL != 0 {
        return false;
    }
    let Some(k) = &e.key else { return false };
    if s.field_len.len() > 1 {
        // Concatenated ranges (nft_pipapo_insert): the new element's start or end
        // inside an existing element, field by field. One that only surrounds an
        // existing element is taken.
        let ke = e.key_end.as_ref().unwrap_or(k);
        return s.elems.iter().any(|x| match (&x.key, &x.key_end) {
            (Some(xs), xe) => {
                let xe = xe.as_ref().unwrap_or(xs);
                let inside = |point: &[u8]| {
                    s.field_len
                        .iter()
                        .try_fold(0usize, |at, &len| {
                            let end = at + len as usize;
                            let field = |v: &[u8]| v.get(at..end).map(<[u8]>::to_vec);
                            let within = field(point)? >= field(xs)? && field(point)? <= field(xe)?;
                            within.then_some(at + (len as usize).div_ceil(4) * 4)
                        })
                        .is_some()
                };
                inside(k) || inside(ke)
            }
            _ => false,
        });
    }
    if e.flags & NFT_SET_ELEM_INTERVAL_END != 0 {
        return false;
    }
    // A start strictly inside an existing [start, end) interval.
    let mut starts: Vec<&Vec<u8>> = Vec::new();
    let mut ends: Vec<&Vec<u8>> = Vec::new();
    for x in &s.elems {
        if let Some(xk) = &x.key {
            if x.flags & NFT_SET_ELEM_INTERVAL_END != 0 {
                ends.push(xk);
            } else {
                starts.push(xk);
            }
        }
    }
    starts.iter().any(|st| {
        *st < k
            && ends
                .iter()
                .filter(|en| *en > st)
                .min()
                .is_some_and(|en| k < *en)
    })
}

/// Where the backend's walk shows a new element: bitmap ascending, rbtree descending,
/// hashes (whose order follows a per-set random hash seed) and pipapo in insertion
/// order.
fn insert_pos(s: &Set, e: &Elem) -> usize {
    if e.flags & NFT_SET_ELEM_CATCHALL != 0 {
        return s.elems.len();
    }
    let interval = s.flags & NFT_SET_INTERVAL != 0;
    if interval && s.field_len.len() > 1 {
        return s
            .elems
            .iter()
            .position(|x| x.flags & NFT_SET_ELEM_CATCHALL != 0)
            .unwrap_or(s.elems.len());
    }
    if interval {
        return s
            .elems
            .iter()
            .position(|x| {
                x.flags & NFT_SET_ELEM_CATCHALL != 0
                    || x.key < e.key
                    || (x.key == e.key && x.flags < e.flags)
            })
            .unwrap_or(s.elems.len());
    }
    if s.key_len <= 2
        && s.flags & (NFT_SET_MAP | NFT_SET_OBJECT | NFT_SET_TIMEOUT | NFT_SET_EVAL) == 0
    {
        return s
            .elems
            .iter()
            .position(|x| x.flags & NFT_SET_ELEM_CATCHALL != 0 || x.key > e.key)
            .unwrap_or(s.elems.len());
    }
    s.elems
        .iter()
        .position(|x| x.flags & NFT_SET_ELEM_CATCHALL != 0)
        .unwrap_or(s.elems.len())
}

pub fn del_elems(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    let ti = table::lookup_at(
        &tx.rs,
        m.tb.get(NFTA_SET_ELEM_LIST_TABLE),
        family,
        m.meta.portid,
    )?;
    let si = elem_set(tx, ti, m, false)?;
    let t = &tx.rs.tables[ti];
    let s = &t.sets[si];
    if s.is_anonymous() {
        return Err(EOPNOTSUPP.into());
    }
    if is_bound(t, &s.name) && s.flags & NFT_SET_CONSTANT != 0 {
        return Err(EBUSY.into());
    }
    let table = t.handle;
    let set_handle = s.handle;
    let Some(list) = m.tb.get(NFTA_SET_ELEM_LIST_ELEMENTS) else {
        // Flush: every element, the catch-all included.
        let s = &mut tx.rs.tables[ti].sets[si];
        let name = s.name.clone();
        let elems = std::mem::take(&mut s.elems);
        for e in elems {
            tx.push(
                m.meta,
                table,
                TransKind::DelSetElem {
                    set: name.clone(),
                    elem: Box::new(e),
                },
            );
        }
        return Ok(());
    };
    for e in list.nested() {
        match del_elem(tx, m.meta, ti, set_handle, &e) {
            Ok(()) => {}
            Err(ENOENT) if is_destroy(m.meta.msg_type) => {}
            Err(err) => return Err(MsgErr::at(err, Some(e.off))),
        }
    }
    Ok(())
}

fn del_elem(
    tx: &mut Txn<'_>,
    meta: Meta,
    ti: usize,
    set_handle: u64,
    attr: &Nla<'_>,
) -> Result<(), i32> {
    let tb = nla::parse_nested(attr, ELEM_POLICY).map_err(|e| e.errno)?;
    let t = &tx.rs.tables[ti];
    let table = t.handle;
    let si = t
        .sets
        .iter()
        .position(|s| s.handle == set_handle)
        .ok_or(ENOENT)?;
    let s = &t.sets[si];
    let flags = elem_flags(s, &tb)?;
    if !tb.has(NFTA_SET_ELEM_KEY) && flags & NFT_SET_ELEM_CATCHALL == 0 {
        return Err(EINVAL);
    }
    if !valid_key_end(s, &tb, flags) {
        return Err(EINVAL);
    }
    let probe = Elem {
        key: match tb.get(NFTA_SET_ELEM_KEY) {
            Some(a) => Some(parse_key(s, &a)?),
            None => None,
        },
        key_end: match tb.get(NFTA_SET_ELEM_KEY_END) {
            Some(a) => Some(parse_key(s, &a)?),
            None => None,
        },
        data: None,
        flags,
        timeout_ms: 0,
        expires_at_ms: None,
        udata: None,
        exprs: Vec::new(),
        objref: None,
    };
    let now = tx.now_ms;
    let pos = s
        .elems
        .iter()
        .position(|x| same_elem(s, x, &probe) && !expired(x, now))
        .ok_or(ENOENT)?;
    let s = &mut tx.rs.tables[ti].sets[si];
    let name = s.name.clone();
    let e = s.elems.remove(pos);
    tx.push(
        meta,
        table,
        TransKind::DelSetElem {
            set: name,
            elem: Box::new(e),
        },
    );
    Ok(())
}

/// `nft_setelem_get`: the element an NFTA_LIST_ELEM of a GETSETELEM names.
pub fn find_elem(s: &Set, attr: &Nla<'_>, now: u64) -> Result<usize, i32> {
    let tb = nla::parse_nested(attr, ELEM_POLICY).map_err(|e| e.errno)?;
    let flags = elem_flags(s, &tb)?;
    if !tb.has(NFTA_SET_ELEM_KEY) && flags & NFT_SET_ELEM_CATCHALL == 0 {
        return Err(EINVAL);
    }
    let key = match tb.get(NFTA_SET_ELEM_KEY) {
        Some(a) => Some(parse_key(s, &a)?),
        None => None,
    };
    let key_end = match tb.get(NFTA_SET_ELEM_KEY_END) {
        Some(a) => Some(parse_key(s, &a)?),
        None => None,
    };
    if flags & NFT_SET_ELEM_CATCHALL != 0 {
        return s
            .elems
            .iter()
            .position(|e| e.flags & NFT_SET_ELEM_CATCHALL != 0 && !expired(e, now))
            .ok_or(ENOENT);
    }
    let Some(k) = key else { return Err(EINVAL) };
    let live = |e: &&Elem| e.flags & NFT_SET_ELEM_CATCHALL == 0 && !expired(e, now);
    if s.flags & NFT_SET_INTERVAL != 0 {
        // The interval holding the key (and key end, for concatenations).
        let hi = key_end.clone().unwrap_or_else(|| k.clone());
        if s.field_len.len() > 1 {
            return s
                .elems
                .iter()
                .position(|e| {
                    live(&e)
                        && e.key.as_ref().is_some_and(|ek| *ek <= k)
                        && e.key_end
                            .as_ref()
                            .or(e.key.as_ref())
                            .is_some_and(|ee| hi <= *ee)
                })
                .ok_or(ENOENT);
        }
        let start = s
            .elems
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                live(e)
                    && e.flags & NFT_SET_ELEM_INTERVAL_END == 0
                    && e.key.as_ref().is_some_and(|ek| *ek <= k)
            })
            .max_by(|a, b| a.1.key.cmp(&b.1.key));
        let Some((i, st)) = start else {
            return Err(ENOENT);
        };
        let end = s
            .elems
            .iter()
            .filter(|e| live(e) && e.flags & NFT_SET_ELEM_INTERVAL_END != 0 && e.key > st.key)
            .map(|e| e.key.clone())
            .min();
        return match end.flatten() {
            Some(en) if hi >= en => Err(ENOENT),
            _ => Ok(i),
        };
    }
    s.elems
        .iter()
        .position(|e| live(&e) && e.key.as_deref() == Some(k.as_slice()))
        .ok_or(ENOENT)
}

/// Whether an element's timeout has passed.
pub fn expired(e: &Elem, now_ms: u64) -> bool {
    e.expires_at_ms.is_some_and(|x| x <= now_ms)
}

/// Drops expired elements (the set backends' garbage collection).
pub fn gc(rs: &mut crate::state::Ruleset, now_ms: u64) -> bool {
    let mut removed = false;
    for t in &mut rs.tables {
        for s in t.sets.iter_mut().filter(|s| s.flags & NFT_SET_TIMEOUT != 0) {
            let n = s.elems.len();
            s.elems.retain(|e| !expired(e, now_ms));
            removed |= s.elems.len() != n;
        }
    }
    removed
}
