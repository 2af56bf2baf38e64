//! The kernel's `nf_tables_fill_*_info` functions: one netlink message per object, used
//! for dumps, single gets and notifications alike. Use counts are computed from the
//! ruleset, as the kernel's `->use` fields would hold them.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use netlink_proto::extra::NFPROTO_INET;

use crate::expr;
use crate::msg::*;
use crate::state::{Chain, Elem, ElemData, Flowtable, Obj, Rule, Set, Table};
use crate::wire::{be32, be64, nest, nft_msg, strz};

/// `nft_base_chain_netdev`: chains whose hook is bound to devices.
pub fn hook_is_netdev(family: u8, hooknum: u32) -> bool {
    family == NFPROTO_NETDEV as u8
        || (family == NFPROTO_INET && hooknum == netlink_proto::extra::NF_INET_INGRESS)
}

/// `table->use`: chains, named sets, objects and flowtables.
pub fn table_use(t: &Table) -> u32 {
    (t.chains.len()
        + t.sets.iter().filter(|s| !s.is_anonymous()).count()
        + t.objects.len()
        + t.flowtables.len()) as u32
}

/// `chain->use`: its rules, plus every jump/goto to it from rules and map elements.
pub fn chain_use(t: &Table, c: &Chain) -> u32 {
    c.rules.len() as u32
        + jump_refs(t).get(c.name.as_str()).copied().unwrap_or(0)
        + u32::from(c.bound)
}

/// Jumps and gotos to each chain of a table, from rules and verdict-map elements.
pub fn jump_refs(t: &Table) -> std::collections::HashMap<&str, u32> {
    let mut refs = std::collections::HashMap::new();
    for ch in &t.chains {
        for r in ch.rules.iter().filter(|r| r.jumps()) {
            for e in &r.exprs {
                if let Some(target) = expr::verdict_chain(e) {
                    *refs.entry(target).or_insert(0) += 1;
                }
            }
        }
    }
    for s in &t.sets {
        for e in &s.elems {
            if let Some(ElemData::Verdict {
                chain: Some(name), ..
            }) = &e.data
            {
                *refs.entry(name.as_str()).or_insert(0) += 1;
            }
        }
    }
    refs
}

/// `obj->use`: objref expressions and object-map elements naming it.
pub fn obj_use(t: &Table, o: &Obj) -> u32 {
    let mut n = 0;
    for c in &t.chains {
        for r in &c.rules {
            n += r
                .exprs
                .iter()
                .filter(|e| expr::obj_ref(e) == Some((o.name.as_str(), o.obj_type)))
                .count() as u32;
        }
    }
    for s in &t.sets {
        if s.flags & NFT_SET_OBJECT != 0 && s.obj_type == o.obj_type {
            n += s
                .elems
                .iter()
                .filter(|e| e.objref.as_deref() == Some(o.name.as_str()))
                .count() as u32;
        }
    }
    n
}

/// `flowtable->use`: flow_offload expressions naming it.
pub fn flowtable_use(t: &Table, f: &Flowtable) -> u32 {
    t.chains
        .iter()
        .flat_map(|c| c.rules.iter())
        .flat_map(|r| r.exprs.iter())
        .filter(|e| expr::flowtable_ref(e) == Some(f.name.as_str()))
        .count() as u32
}

pub fn table_msg(t: &Table, event: u16, flags: u16, seq: u32, portid: u32, res_id: u16) -> Vec<u8> {
    table_msg_with_use(t, event, flags, seq, portid, res_id, table_use(t))
}

pub fn table_msg_with_use(
    t: &Table,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
    use_count: u32,
) -> Vec<u8> {
    let mut a = vec![
        strz(NFTA_TABLE_NAME, t.name.as_bytes()),
        be32(NFTA_TABLE_USE, use_count),
        be64(NFTA_TABLE_HANDLE, t.handle),
    ];
    // Deletion notifications name the object only (6.17+).
    if event == NFT_MSG_DELTABLE {
        return nft_msg(event, flags, seq, portid, t.family, res_id, &a);
    }
    a.push(be32(NFTA_TABLE_FLAGS, t.flags & NFT_TABLE_F_MASK));
    if t.has_owner() {
        a.push(be32(NFTA_TABLE_OWNER, t.owner));
    }
    if let Some(u) = &t.udata {
        a.push(Attr::new(NFTA_TABLE_USERDATA, u.clone()));
    }
    nft_msg(event, flags, seq, portid, t.family, res_id, &a)
}

/// `hook_devs` replaces the chain's devices (notifications of hook updates list only
/// the devices added or removed).
#[allow(clippy::too_many_arguments)]
pub fn chain_msg(
    t: &Table,
    c: &Chain,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
    hook_devs: Option<&[String]>,
) -> Vec<u8> {
    chain_msg_with_use(
        t,
        c,
        event,
        flags,
        seq,
        portid,
        res_id,
        hook_devs,
        chain_use(t, c),
    )
}

#[allow(clippy::too_many_arguments)]
pub fn chain_msg_with_use(
    t: &Table,
    c: &Chain,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
    hook_devs: Option<&[String]>,
    use_count: u32,
) -> Vec<u8> {
    let mut a = vec![
        strz(NFTA_CHAIN_TABLE, t.name.as_bytes()),
        strz(NFTA_CHAIN_NAME, c.name.as_bytes()),
        be64(NFTA_CHAIN_HANDLE, c.handle),
    ];
    if hook_devs.is_none() && event == NFT_MSG_DELCHAIN {
        return nft_msg(event, flags, seq, portid, t.family, res_id, &a);
    }
    if let Some(b) = &c.base {
        let mut hook = vec![
            be32(NFTA_HOOK_HOOKNUM, b.hooknum),
            be32(NFTA_HOOK_PRIORITY, b.priority as u32),
        ];
        if hook_is_netdev(t.family, b.hooknum) {
            let devs = hook_devs.unwrap_or(&b.devices);
            hook.push(nest(
                NFTA_HOOK_DEVS,
                &devs
                    .iter()
                    .map(|d| strz(NFTA_DEVICE_NAME, d.as_bytes()))
                    .collect::<Vec<_>>(),
            ));
            if devs.len() == 1 {
                hook.push(strz(NFTA_HOOK_DEV, devs[0].as_bytes()));
            }
        }
        a.push(nest(NFTA_CHAIN_HOOK, &hook));
        a.push(be32(NFTA_CHAIN_POLICY, b.policy));
        a.push(strz(NFTA_CHAIN_TYPE, b.chain_type.as_bytes()));
        if let Some((pkts, bytes)) = b.counters {
            a.push(nest(
                NFTA_CHAIN_COUNTERS,
                &[
                    be64(NFTA_COUNTER_PACKETS, pkts),
                    be64(NFTA_COUNTER_BYTES, bytes),
                ],
            ));
        }
    }
    if c.flags != 0 {
        a.push(be32(NFTA_CHAIN_FLAGS, c.flags));
    }
    a.push(be32(NFTA_CHAIN_USE, use_count));
    if let Some(u) = &c.udata {
        a.push(Attr::new(NFTA_CHAIN_USERDATA, u.clone()));
    }
    nft_msg(event, flags, seq, portid, t.family, res_id, &a)
}

/// An expression list as the kernel dumps it (`nft_expr_dump` for each).
pub fn exprs_attr(kind: u16, exprs: &[crate::state::Expr]) -> Attr {
    nest(
        kind,
        &exprs
            .iter()
            .map(|e| expr_attr(NFTA_LIST_ELEM, e))
            .collect::<Vec<_>>(),
    )
}

/// One expression nest: NFTA_EXPR_NAME and, if the type dumps anything, NFTA_EXPR_DATA.
pub fn expr_attr(kind: u16, e: &crate::state::Expr) -> Attr {
    let mut inner = vec![strz(NFTA_EXPR_NAME, e.name.as_bytes())];
    if expr::has_dump(&e.name) {
        inner.push(nest(NFTA_EXPR_DATA, &e.data));
    }
    nest(kind, &inner)
}

#[allow(clippy::too_many_arguments)]
pub fn rule_msg(
    t: &Table,
    chain: &str,
    r: &Rule,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
    position: u64,
) -> Vec<u8> {
    let mut a = vec![
        strz(NFTA_RULE_TABLE, t.name.as_bytes()),
        strz(NFTA_RULE_CHAIN, chain.as_bytes()),
        be64(NFTA_RULE_HANDLE, r.handle),
    ];
    if event != NFT_MSG_DELRULE && position != 0 {
        a.push(be64(NFTA_RULE_POSITION, position));
    }
    a.push(exprs_attr(NFTA_RULE_EXPRESSIONS, &r.exprs));
    if let Some(u) = &r.udata {
        a.push(Attr::new(NFTA_RULE_USERDATA, u.clone()));
    }
    nft_msg(event, flags, seq, portid, t.family, res_id, &a)
}

/// NFTA_SET_COUNT: `nft_set_userspace_size` of the element count; the rbtree backend
/// stores two elements per interval.
pub fn set_count(s: &Set) -> u32 {
    let n = s.nelems() as u32;
    if s.flags & NFT_SET_INTERVAL != 0 && s.field_len.len() <= 1 {
        n / 2
    } else {
        n
    }
}

/// The backend the kernel would pick (`nft_select_set_ops`), named as `%ps` prints it.
fn set_backend_name(s: &Set) -> &'static str {
    let interval = s.flags & NFT_SET_INTERVAL != 0;
    let concat = s.field_len.len() > 1;
    if concat {
        "nft_set_pipapo_avx2_type"
    } else if interval {
        "nft_set_rbtree_type"
    } else if s.key_len <= 2
        && s.flags & (NFT_SET_MAP | NFT_SET_OBJECT | NFT_SET_TIMEOUT | NFT_SET_EVAL) == 0
    {
        "nft_set_bitmap_type"
    } else if s.flags & (NFT_SET_TIMEOUT | NFT_SET_EVAL) != 0 || s.size == 0 {
        "nft_set_rhash_type"
    } else if s.key_len == 4 {
        "nft_set_hash_fast_type"
    } else {
        "nft_set_hash_type"
    }
}

pub fn set_msg(
    t: &Table,
    s: &Set,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
) -> Vec<u8> {
    set_msg_counted(t, s, set_count(s), event, flags, seq, portid, res_id)
}

/// A set message with NFTA_SET_COUNT given.
#[allow(clippy::too_many_arguments)]
pub fn set_msg_counted(
    t: &Table,
    s: &Set,
    count: u32,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
) -> Vec<u8> {
    let mut a = vec![
        strz(NFTA_SET_TABLE, t.name.as_bytes()),
        strz(NFTA_SET_NAME, s.name.as_bytes()),
        be64(NFTA_SET_HANDLE, s.handle),
    ];
    if event == NFT_MSG_DELSET {
        return nft_msg(event, flags, seq, portid, t.family, res_id, &a);
    }
    if s.flags != 0 {
        a.push(be32(NFTA_SET_FLAGS, s.flags));
    }
    a.push(be32(NFTA_SET_KEY_TYPE, s.key_type));
    a.push(be32(NFTA_SET_KEY_LEN, s.key_len));
    if s.flags & NFT_SET_MAP != 0 {
        a.push(be32(NFTA_SET_DATA_TYPE, s.data_type));
        a.push(be32(NFTA_SET_DATA_LEN, s.data_len));
    }
    if s.flags & NFT_SET_OBJECT != 0 {
        a.push(be32(NFTA_SET_OBJ_TYPE, s.obj_type));
    }
    if s.timeout_ms != 0 {
        a.push(be64(NFTA_SET_TIMEOUT, s.timeout_ms));
    }
    if s.gc_interval != 0 {
        a.push(be32(NFTA_SET_GC_INTERVAL, s.gc_interval));
    }
    if s.policy != NFT_SET_POL_PERFORMANCE {
        a.push(be32(NFTA_SET_POLICY, s.policy));
    }
    if let Some(u) = &s.udata {
        a.push(Attr::new(NFTA_SET_USERDATA, u.clone()));
    }
    let mut desc = Vec::new();
    if s.size != 0 {
        desc.push(be32(NFTA_SET_DESC_SIZE, s.size));
    }
    if s.field_len.len() > 1 {
        let fields: Vec<Attr> = s
            .field_len
            .iter()
            .map(|l| nest(NFTA_LIST_ELEM, &[be32(NFTA_SET_FIELD_LEN, *l)]))
            .collect();
        desc.push(nest(NFTA_SET_DESC_CONCAT, &fields));
    }
    a.push(nest(NFTA_SET_DESC, &desc));
    a.push(strz(NFTA_SET_TYPE, set_backend_name(s).as_bytes()));
    a.push(be32(NFTA_SET_COUNT, count));
    match s.exprs.len() {
        0 => {}
        1 => a.push(expr_attr(NFTA_SET_EXPR, &s.exprs[0])),
        _ => a.push(exprs_attr(NFTA_SET_EXPRESSIONS, &s.exprs)),
    }
    nft_msg(event, flags, seq, portid, t.family, res_id, &a)
}

/// `nft_data_dump` of a value.
pub fn data_value(kind: u16, v: &[u8]) -> Attr {
    nest(kind, &[Attr::new(NFTA_DATA_VALUE, v.to_vec())])
}

/// `nft_data_dump` of a verdict.
pub fn data_verdict(kind: u16, code: u32, chain: Option<&str>) -> Attr {
    let mut v = vec![be32(NFTA_VERDICT_CODE, code)];
    if let Some(c) = chain {
        v.push(strz(NFTA_VERDICT_CHAIN, c.as_bytes()));
    }
    nest(kind, &[nest(NFTA_DATA_VERDICT, &v)])
}

/// `nf_tables_fill_setelem`: one NFTA_LIST_ELEM.
pub fn setelem_attr(s: &Set, e: &Elem, now_ms: u64) -> Attr {
    let mut a = Vec::new();
    if let Some(k) = &e.key {
        a.push(data_value(NFTA_SET_ELEM_KEY, k));
    }
    if let Some(k) = &e.key_end {
        a.push(data_value(NFTA_SET_ELEM_KEY_END, k));
    }
    match &e.data {
        Some(ElemData::Value(v)) => a.push(data_value(NFTA_SET_ELEM_DATA, v)),
        Some(ElemData::Verdict { code, chain }) => {
            a.push(data_verdict(NFTA_SET_ELEM_DATA, *code, chain.as_deref()))
        }
        None => {}
    }
    match e.exprs.len() {
        0 => {}
        1 => a.push(expr_attr(NFTA_SET_ELEM_EXPR, &e.exprs[0])),
        _ => a.push(exprs_attr(NFTA_SET_ELEM_EXPRESSIONS, &e.exprs)),
    }
    if let Some(o) = &e.objref {
        a.push(strz(NFTA_SET_ELEM_OBJREF, o.as_bytes()));
    }
    if e.flags != 0 {
        a.push(be32(NFTA_SET_ELEM_FLAGS, e.flags));
    }
    if s.flags & NFT_SET_TIMEOUT != 0 && e.flags & NFT_SET_ELEM_INTERVAL_END == 0 {
        if e.timeout_ms != s.timeout_ms {
            a.push(be64(NFTA_SET_ELEM_TIMEOUT, e.timeout_ms));
        }
        if e.timeout_ms > 0 {
            let left = e
                .expires_at_ms
                .map(|x| x.saturating_sub(now_ms))
                .unwrap_or(0);
            a.push(be64(NFTA_SET_ELEM_EXPIRATION, left));
        }
    }
    if let Some(u) = &e.udata {
        a.push(Attr::new(NFTA_SET_ELEM_USERDATA, u.clone()));
    }
    nest(NFTA_LIST_ELEM, &a)
}

/// A NEWSETELEM/DELSETELEM message carrying the given elements.
#[allow(clippy::too_many_arguments)]
pub fn setelem_msg(
    t: &Table,
    s: &Set,
    elems: &[Attr],
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
) -> Vec<u8> {
    let a = vec![
        strz(NFTA_SET_ELEM_LIST_TABLE, t.name.as_bytes()),
        strz(NFTA_SET_ELEM_LIST_SET, s.name.as_bytes()),
        nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems),
    ];
    nft_msg(event, flags, seq, portid, t.family, res_id, &a)
}

/// `nf_tables_setelem_notify`: one element per message, sequence number 0.
pub fn setelem_notify_msg(
    t: &Table,
    s: &Set,
    e: &Elem,
    event: u16,
    flags: u16,
    portid: u32,
    res_id: u16,
) -> Vec<u8> {
    // Notifications show the timeout as set; the expiration is computed at send time,
    // which for a fresh element is its whole timeout.
    let now = e
        .expires_at_ms
        .map(|x| x.saturating_sub(e.timeout_ms))
        .unwrap_or(0);
    setelem_msg(
        t,
        s,
        &[setelem_attr(s, e, now)],
        event,
        flags,
        0,
        portid,
        res_id,
    )
}

pub fn obj_msg(
    t: &Table,
    o: &Obj,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
) -> Vec<u8> {
    let mut a = vec![
        strz(NFTA_OBJ_TABLE, t.name.as_bytes()),
        strz(NFTA_OBJ_NAME, o.name.as_bytes()),
        be32(NFTA_OBJ_TYPE, o.obj_type),
        be64(NFTA_OBJ_HANDLE, o.handle),
    ];
    if event == NFT_MSG_DELOBJ {
        return nft_msg(event, flags, seq, portid, t.family, res_id, &a);
    }
    a.push(be32(NFTA_OBJ_USE, obj_use(t, o)));
    a.push(nest(NFTA_OBJ_DATA, &o.data));
    if let Some(u) = &o.udata {
        a.push(Attr::new(NFTA_OBJ_USERDATA, u.clone()));
    }
    nft_msg(event, flags, seq, portid, t.family, res_id, &a)
}

#[allow(clippy::too_many_arguments)]
pub fn flowtable_msg(
    t: &Table,
    f: &Flowtable,
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    res_id: u16,
    hook_devs: Option<&[String]>,
) -> Vec<u8> {
    let devs = hook_devs.unwrap_or(&f.devices);
    let mut a = vec![
        strz(NFTA_FLOWTABLE_TABLE, t.name.as_bytes()),
        strz(NFTA_FLOWTABLE_NAME, f.name.as_bytes()),
        be64(NFTA_FLOWTABLE_HANDLE, f.handle),
    ];
    if hook_devs.is_none() && event == NFT_MSG_DELFLOWTABLE {
        return nft_msg(event, flags, seq, portid, t.family, res_id, &a);
    }
    a.extend([
        be32(NFTA_FLOWTABLE_USE, flowtable_use(t, f)),
        be32(NFTA_FLOWTABLE_FLAGS, f.flags),
        nest(
            NFTA_FLOWTABLE_HOOK,
            &[
                be32(NFTA_FLOWTABLE_HOOK_NUM, f.hooknum),
                be32(NFTA_FLOWTABLE_HOOK_PRIORITY, f.priority as u32),
                nest(
                    NFTA_FLOWTABLE_HOOK_DEVS,
                    &devs
                        .iter()
                        .map(|d| strz(NFTA_DEVICE_NAME, d.as_bytes()))
                        .collect::<Vec<_>>(),
                ),
            ],
        ),
    ]);
    nft_msg(event, flags, seq, portid, t.family, res_id, &a)
}

/// `nf_tables_fill_gen_info`.
pub fn gen_msg(genid: u32, pid: u32, comm: &str, seq: u32, portid: u32) -> Vec<u8> {
    // `get_task_comm`: at most TASK_COMM_LEN - 1 = 15 bytes.
    let comm = &comm.as_bytes()[..comm.len().min(15)];
    let a = vec![
        be32(NFTA_GEN_ID, genid),
        be32(NFTA_GEN_PROC_PID, pid),
        strz(NFTA_GEN_PROC_NAME, comm),
    ];
    nft_msg(
        NFT_MSG_NEWGEN,
        0,
        seq,
        portid,
        0,
        (genid & 0xffff) as u16,
        &a,
    )
}
