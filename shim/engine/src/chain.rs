//! Chains: NEWCHAIN / DELCHAIN / DESTROYCHAIN (`nf_tables_newchain`, `_addchain`,
//! `_updchain`, `_delchain`), with base chain hooks checked per family and chain type.

use netlink_proto::consts::*;
use netlink_proto::extra::*;
use netlink_proto::extra::{
    NFPROTO_ARP, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV,
};

use crate::dump;
use crate::errno::*;
use crate::msg::*;
use crate::nla::{self, Nla, Pol, Tb};
use crate::state::{BaseChain, Chain};
use crate::table;
use crate::txn::{Meta, Msg, MsgErr, MsgResult, TransKind, Txn};

pub const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NAME_MAX),              // TABLE
    Pol::U64,                        // HANDLE
    Pol::Str(NAME_MAX),              // NAME
    Pol::Nested,                     // HOOK
    Pol::U32,                        // POLICY
    Pol::Any,                        // USE
    Pol::Str(MODULE_AUTOLOAD_LIMIT), // TYPE
    Pol::Nested,                     // COUNTERS
    Pol::Any,                        // PAD
    Pol::U32,                        // FLAGS
    Pol::U32,                        // ID
    Pol::Bin(USERDATA_MAXLEN),       // USERDATA
];

const HOOK_POLICY: &[Pol] = &[
    Pol::Any,
    Pol::U32,
    Pol::U32,
    Pol::Str(IFNAMSIZ - 1),
    Pol::Nested,
];
const COUNTER_POLICY: &[Pol] = &[Pol::Any, Pol::U64, Pol::U64, Pol::Any];

/// `NF_IP_PRI_CONNTRACK`: nat chains must hook after conntrack.
const NF_IP_PRI_CONNTRACK: i32 = -200;
/// `NFT_NETDEVICE_MAX`.
const NFT_NETDEVICE_MAX: usize = 256;

/// The chain types registered for a family, with the hooks each accepts
/// (`struct nft_chain_type`: name and hook_mask).
pub fn chain_types(family: u8) -> &'static [(&'static str, u32)] {
    const INET_HOOKS: u32 = 0b11111;
    match family {
        NFPROTO_IPV4 | NFPROTO_IPV6 => &[
            ("filter", INET_HOOKS),
            ("route", 1 << 3),
            ("nat", (1 << 0) | (1 << 4) | (1 << 3) | (1 << 1)),
        ],
        NFPROTO_INET => &[
            ("filter", INET_HOOKS | (1 << NF_INET_INGRESS)),
            ("route", 1 << 3),
            ("nat", (1 << 0) | (1 << 4) | (1 << 3) | (1 << 1)),
        ],
        // NF_ARP_IN, NF_ARP_OUT.
        NFPROTO_ARP => &[("filter", 0b11)],
        NFPROTO_BRIDGE => &[("filter", INET_HOOKS)],
        // NF_NETDEV_INGRESS, NF_NETDEV_EGRESS.
        NFPROTO_NETDEV => &[("filter", 0b11)],
        _ => &[],
    }
}

/// `nft_chain_lookup`: by name (as `nla_strscpy` copies it) among the table's chains.
pub fn lookup(t: &crate::state::Table, nla: Option<Nla<'_>>) -> Result<usize, i32> {
    let nla = nla.ok_or(EINVAL)?;
    let name = nla.cstr();
    let name = &name[..name.len().min(NAME_MAX + 1)];
    t.chain_idx(name).ok_or(ENOENT)
}

/// A parsed hook specification (`struct nft_chain_hook`).
struct Hook {
    num: u32,
    priority: i32,
    chain_type: &'static str,
    devices: Vec<String>,
}

/// `nft_chain_parse_hook`. `existing` is the base chain being updated, if any.
fn parse_hook(
    m: &Msg<'_>,
    family: u8,
    existing: Option<&BaseChain>,
    flags: u32,
) -> Result<Hook, MsgErr> {
    let Some(hook) = m.tb.get(NFTA_CHAIN_HOOK) else {
        return Err(EINVAL.into());
    };
    let ha = nla::parse_nested(&hook, HOOK_POLICY).map_err(|e| MsgErr::from(e.errno))?;
    let type_attr = m.tb.get(NFTA_CHAIN_TYPE);
    let mut h = Hook {
        num: 0,
        priority: 0,
        chain_type: "filter",
        devices: Vec::new(),
    };
    match existing {
        None => {
            let (Some(num), Some(prio)) = (ha.be32(NFTA_HOOK_HOOKNUM), ha.be32(NFTA_HOOK_PRIORITY))
            else {
                return Err(MsgErr::at(ENOENT, m.tb.off(NFTA_CHAIN_NAME)));
            };
            h.num = num;
            h.priority = prio as i32;
            let types = chain_types(family);
            let mut ty = *types.first().ok_or(MsgErr::from(EOPNOTSUPP))?;
            if let Some(ta) = type_attr {
                ty = *types
                    .iter()
                    .find(|(n, _)| n.as_bytes() == ta.strcmp_bytes())
                    .ok_or(MsgErr::at(ENOENT, Some(ta.off)))?;
            }
            // NFT_MAX_HOOKS is NF_INET_NUMHOOKS + 1.
            if h.num >= 6 || ty.1 & (1 << h.num) == 0 {
                return Err(EOPNOTSUPP.into());
            }
            if ty.0 == "nat" && h.priority <= NF_IP_PRI_CONNTRACK {
                return Err(EOPNOTSUPP.into());
            }
            h.chain_type = ty.0;
        }
        Some(b) => {
            if let Some(num) = ha.be32(NFTA_HOOK_HOOKNUM) {
                h.num = num;
                if num != b.hooknum {
                    return Err(EOPNOTSUPP.into());
                }
            }
            if let Some(prio) = ha.be32(NFTA_HOOK_PRIORITY) {
                h.priority = prio as i32;
                if h.priority != b.priority {
                    return Err(EOPNOTSUPP.into());
                }
            }
            h.chain_type = match type_attr {
                Some(ta) => chain_types(family)
                    .iter()
                    .find(|(n, _)| n.as_bytes() == ta.strcmp_bytes())
                    .map(|t| t.0)
                    .ok_or(MsgErr::at(ENOENT, Some(ta.off)))?,
                None => chain_types(family)
                    .iter()
                    .find(|(n, _)| *n == b.chain_type)
                    .map(|t| t.0)
                    .unwrap_or("filter"),
            };
        }
    }
    if dump::hook_is_netdev(family, h.num) {
        h.devices = parse_devices(&ha)?;
        if flags & NFT_CHAIN_HW_OFFLOAD != 0 && h.devices.is_empty() {
            return Err(EINVAL.into());
        }
    } else if ha.has(NFTA_HOOK_DEV) || ha.has(NFTA_HOOK_DEVS) {
        return Err(EOPNOTSUPP.into());
    }
    Ok(h)
}

/// NFTA_HOOK_DEV, or the NFTA_HOOK_DEVS list (`nf_tables_parse_netdev_hooks`). Devices
/// need not exist (kernel 6.16+ keeps hooks for absent devices by name).
pub fn parse_devices(ha: &Tb<'_>) -> Result<Vec<String>, MsgErr> {
    if let Some(dev) = ha.get(NFTA_HOOK_DEV) {
        return Ok(vec![ifname(&dev)]);
    }
    let mut devs: Vec<String> = Vec::new();
    if let Some(list) = ha.get(NFTA_HOOK_DEVS) {
        for a in list.nested() {
            if a.id() != NFTA_DEVICE_NAME {
                return Err(EINVAL.into());
            }
            let name = ifname(&a);
            if devs.contains(&name) {
                return Err(MsgErr::at(EEXIST, Some(a.off)));
            }
            devs.push(name);
            if devs.len() == NFT_NETDEVICE_MAX {
                return Err(EFBIG.into());
            }
        }
    }
    Ok(devs)
}

/// A device name as `nla_strscpy(ifname, attr, IFNAMSIZ)` copies it.
pub fn ifname(a: &Nla<'_>) -> String {
    let n = a.cstr();
    String::from_utf8_lossy(&n[..n.len().min(IFNAMSIZ - 1)]).into_owned()
}

fn parse_counters(a: &Nla<'_>) -> Result<(u64, u64), MsgErr> {
    let tb = nla::parse_nested(a, COUNTER_POLICY).map_err(|e| MsgErr::from(e.errno))?;
    match (tb.be64(NFTA_COUNTER_PACKETS), tb.be64(NFTA_COUNTER_BYTES)) {
        (Some(p), Some(b)) => Ok((p, b)),
        _ => Err(EINVAL.into()),
    }
}

pub fn new(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    let ti = table::lookup_at(&tx.rs, m.tb.get(NFTA_CHAIN_TABLE), family, m.meta.portid)?;
    let t = &tx.rs.tables[ti];
    let mut attr = m.tb.get(NFTA_CHAIN_NAME);
    let mut ci = None;
    if let Some(h) = m.tb.get(NFTA_CHAIN_HANDLE) {
        ci = Some(
            t.chain_idx_by_handle(h.be64())
                .ok_or(MsgErr::at(ENOENT, Some(h.off)))?,
        );
        attr = Some(h);
    } else if attr.is_some() {
        ci = lookup(t, attr).ok();
    } else if !m.tb.has(NFTA_CHAIN_ID) {
        return Err(EINVAL.into());
    }
    let mut policy = NF_ACCEPT;
    if let Some(p) = m.tb.get(NFTA_CHAIN_POLICY) {
        if ci.is_some_and(|c| !t.chains[c].is_base())
            || (ci.is_none() && !m.tb.has(NFTA_CHAIN_HOOK))
        {
            return Err(MsgErr::at(EOPNOTSUPP, Some(p.off)));
        }
        policy = p.be32();
        if policy != NF_DROP && policy != NF_ACCEPT {
            return Err(EINVAL.into());
        }
    }
    let mut flags = match (m.tb.be32(NFTA_CHAIN_FLAGS), ci) {
        (Some(f), _) => f,
        (None, Some(c)) => t.chains[c].flags,
        (None, None) => 0,
    };
    if flags & !NFT_CHAIN_FLAGS != 0 {
        return Err(EOPNOTSUPP.into());
    }
    match ci {
        Some(c) => {
            let chain = &t.chains[c];
            if chain.is_binding() {
                return Err(EINVAL.into());
            }
            if m.meta.flags & NLM_F_EXCL != 0 {
                return Err(MsgErr::at(EEXIST, attr.map(|a| a.off)));
            }
            if m.meta.flags & NLM_F_REPLACE != 0 {
                return Err(EOPNOTSUPP.into());
            }
            flags |= chain.flags & NFT_CHAIN_BASE;
            update(tx, m, ti, c, policy, flags, attr)
        }
        None => add(tx, m, ti, policy, flags),
    }
}

/// `nf_tables_addchain`.
fn add(tx: &mut Txn<'_>, m: &Msg<'_>, ti: usize, policy: u32, mut flags: u32) -> MsgResult {
    let family = m.meta.family;
    let table = tx.rs.tables[ti].handle;
    let base = if m.tb.has(NFTA_CHAIN_HOOK) {
        if table::pending_update(tx, table)
            && tx
                .log
                .iter()
                .any(|t| t.table == table && matches!(t.kind, TransKind::NewTable { update: true }))
        {
            return Err(EINVAL.into());
        }
        if flags & NFT_CHAIN_BINDING != 0 {
            return Err(EOPNOTSUPP.into());
        }
        let h = parse_hook(m, family, None, flags)?;
        let counters = match m.tb.get(NFTA_CHAIN_COUNTERS) {
            Some(a) => Some(parse_counters(&a)?),
            None => None,
        };
        flags |= NFT_CHAIN_BASE;
        // No device here can offload (no ndo_setup_tc).
        if flags & NFT_CHAIN_HW_OFFLOAD != 0 {
            return Err(EOPNOTSUPP.into());
        }
        Some(BaseChain {
            hooknum: h.num,
            priority: h.priority,
            chain_type: h.chain_type.to_string(),
            devices: h.devices,
            policy,
            counters,
        })
    } else {
        if flags & NFT_CHAIN_BASE != 0 {
            return Err(EINVAL.into());
        }
        if flags & NFT_CHAIN_HW_OFFLOAD != 0 {
            return Err(EOPNOTSUPP.into());
        }
        None
    };
    let handle = tx.alloc_handle(table);
    let name = match m.tb.get(NFTA_CHAIN_NAME) {
        Some(n) => table::name_of(&n),
        None if flags & NFT_CHAIN_BINDING != 0 => {
            tx.counters.chain_id += 1;
            format!("__chain{}", tx.counters.chain_id)
        }
        None => return Err(EINVAL.into()),
    };
    let chain = Chain {
        name,
        handle,
        flags,
        base,
        udata: m.tb.get(NFTA_CHAIN_USERDATA).map(|a| a.value.to_vec()),
        rules: Vec::new(),
        bound: false,
    };
    let snapshot = Box::new(chain.clone());
    tx.rs.tables[ti].chains.push(chain);
    let id = m.tb.be32(NFTA_CHAIN_ID);
    tx.push(
        m.meta,
        table,
        TransKind::NewChain {
            handle,
            id,
            snapshot,
            update: false,
            hook_devs: None,
        },
    );
    Ok(())
}

/// `nf_tables_updchain`: policy, counters, devices and name of an existing chain.
#[allow(clippy::too_many_arguments)]
fn update(
    tx: &mut Txn<'_>,
    m: &Msg<'_>,
    ti: usize,
    ci: usize,
    policy: u32,
    flags: u32,
    attr: Option<Nla<'_>>,
) -> MsgResult {
    let family = m.meta.family;
    let t = &tx.rs.tables[ti];
    let table = t.handle;
    let chain = &t.chains[ci];
    if chain.flags ^ flags != 0 {
        return Err(EOPNOTSUPP.into());
    }
    let bad = || MsgErr::at(EEXIST, attr.map(|a| a.off));
    let netdev = chain
        .base
        .as_ref()
        .is_some_and(|b| dump::hook_is_netdev(family, b.hooknum));
    let is_base = chain.is_base();
    let mut new_devs: Vec<String> = Vec::new();
    if m.tb.has(NFTA_CHAIN_HOOK) {
        let Some(b) = &chain.base else {
            return Err(bad());
        };
        let h = parse_hook(m, family, Some(b), flags)?;
        if h.chain_type != b.chain_type {
            return Err(bad());
        }
        if dump::hook_is_netdev(family, b.hooknum) {
            for d in h.devices {
                if b.devices.contains(&d) {
                    continue;
                }
                let pending = tx.log.iter().any(|tr| {
                    tr.table == table
                        && matches!(&tr.kind, TransKind::NewChain { update: true, hook_devs: Some(devs), .. } if devs.contains(&d))
                });
                if pending {
                    return Err(EEXIST.into());
                }
                new_devs.push(d);
            }
        } else if b.hooknum != h.num || b.priority != h.priority {
            return Err(bad());
        }
    }
    let rename = match (m.tb.get(NFTA_CHAIN_HANDLE), m.tb.get(NFTA_CHAIN_NAME)) {
        (Some(_), Some(n)) => {
            if lookup(t, Some(n)).is_ok() {
                return Err(MsgErr::at(EEXIST, Some(n.off)));
            }
            Some(n)
        }
        _ => None,
    };
    if table::pending_update(tx, table)
        && tx
            .log
            .iter()
            .any(|tr| tr.table == table && matches!(tr.kind, TransKind::NewTable { update: true }))
        && !new_devs.is_empty()
    {
        return Err(MsgErr::at(EOPNOTSUPP, attr.map(|a| a.off)));
    }
    let counters = match m.tb.get(NFTA_CHAIN_COUNTERS) {
        Some(a) => {
            if !is_base {
                return Err(EOPNOTSUPP.into());
            }
            Some(parse_counters(&a)?)
        }
        None => None,
    };
    if let Some(n) = rename {
        let new_name = table::name_of(&n);
        let clash = tx.log.iter().any(|tr| {
            tr.table == table && matches!(&tr.kind, TransKind::NewChain { update: true, snapshot, .. } if snapshot.name == new_name && tr.meta.msg_type == NFT_MSG_NEWCHAIN)
        });
        if clash {
            return Err(MsgErr::at(EEXIST, Some(n.off)));
        }
        rename_chain(&mut tx.rs.tables[ti], ci, new_name);
    }
    let c = &mut tx.rs.tables[ti].chains[ci];
    if let Some(b) = &mut c.base {
        if m.tb.has(NFTA_CHAIN_POLICY) {
            b.policy = policy;
        }
        if let Some(cn) = counters {
            b.counters = Some(cn);
        }
        b.devices.extend(new_devs.iter().cloned());
    }
    let snapshot = Box::new(c.clone());
    let handle = c.handle;
    let hook_devs = netdev.then_some(new_devs);
    tx.push(
        m.meta,
        table,
        TransKind::NewChain {
            handle,
            id: None,
            snapshot,
            update: true,
            hook_devs,
        },
    );
    Ok(())
}

/// Renames a chain and every jump, goto and verdict-map element naming it (the kernel
/// keeps pointers, so its dumps show the new name).
fn rename_chain(t: &mut crate::state::Table, ci: usize, new_name: String) {
    let old = std::mem::replace(&mut t.chains[ci].name, new_name.clone());
    for c in &mut t.chains {
        for r in &mut c.rules {
            // Only rules that jump to it are copied (from the previous generation).
            if r.jumps()
                && r.exprs
                    .iter()
                    .any(|e| crate::expr::verdict_chain(e) == Some(old.as_str()))
            {
                for e in crate::state::Rule::exprs_mut(r) {
                    crate::expr::rename_verdict_chain(e, &old, &new_name);
                }
            }
        }
    }
    for s in &mut t.sets {
        for e in &mut s.elems {
            if let Some(crate::state::ElemData::Verdict { chain: Some(c), .. }) = &mut e.data {
                if *c == old {
                    *c = new_name.clone();
                }
            }
        }
    }
}

pub fn del(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    let ti = table::lookup_at(&tx.rs, m.tb.get(NFTA_CHAIN_TABLE), family, m.meta.portid)?;
    let t = &tx.rs.tables[ti];
    let (attr, found) = match m.tb.get(NFTA_CHAIN_HANDLE) {
        Some(h) => (Some(h), t.chain_idx_by_handle(h.be64()).ok_or(ENOENT)),
        None => (
            m.tb.get(NFTA_CHAIN_NAME),
            lookup(t, m.tb.get(NFTA_CHAIN_NAME)),
        ),
    };
    let ci = match found {
        Ok(ci) => ci,
        Err(ENOENT) if is_destroy(m.meta.msg_type) => return Ok(()),
        Err(e) => return Err(MsgErr::at(e, attr.map(|a| a.off))),
    };
    let chain = &t.chains[ci];
    if chain.is_binding() {
        return Err(EOPNOTSUPP.into());
    }
    let table = t.handle;
    let handle = chain.handle;
    if m.tb.has(NFTA_CHAIN_HOOK) {
        if is_destroy(m.meta.msg_type) || chain.flags & NFT_CHAIN_HW_OFFLOAD != 0 {
            return Err(EOPNOTSUPP.into());
        }
        if let Some(b) = &chain.base {
            if dump::hook_is_netdev(family, b.hooknum) {
                return del_hook(tx, m, ti, ci);
            }
        }
    }
    if m.meta.flags & NLM_F_NONREC != 0 && dump::chain_use(t, chain) > 0 {
        return Err(EBUSY.into());
    }
    crate::rule::delete_all(tx, m.meta, table, handle)?;
    let ti = tx
        .rs
        .table_idx_by_handle(table)
        .ok_or(MsgErr::from(ENOENT))?;
    let t = &tx.rs.tables[ti];
    let ci = t.chain_idx_by_handle(handle).ok_or(MsgErr::from(ENOENT))?;
    if dump::chain_use(t, &t.chains[ci]) > 0 {
        return Err(MsgErr::at(EBUSY, attr.map(|a| a.off)));
    }
    delete(tx, m.meta, table, handle);
    Ok(())
}

/// `nft_delchain_hook`: removes devices from a netdev base chain.
fn del_hook(tx: &mut Txn<'_>, m: &Msg<'_>, ti: usize, ci: usize) -> MsgResult {
    let family = m.meta.family;
    let table = tx.rs.tables[ti].handle;
    if table::pending_update(tx, table)
        && tx
            .log
            .iter()
            .any(|t| t.table == table && matches!(t.kind, TransKind::NewTable { update: true }))
    {
        return Err(EOPNOTSUPP.into());
    }
    let chain = &tx.rs.tables[ti].chains[ci];
    let Some(b) = chain.base.clone() else {
        return Err(EINVAL.into());
    };
    let h = parse_hook(m, family, Some(&b), chain.flags)?;
    for d in &h.devices {
        if !b.devices.contains(d) {
            return Err(ENOENT.into());
        }
    }
    let c = &mut tx.rs.tables[ti].chains[ci];
    if let Some(base) = &mut c.base {
        base.devices.retain(|d| !h.devices.contains(d));
    }
    let snapshot = Box::new(c.clone());
    tx.push(
        m.meta,
        table,
        TransKind::DelChain {
            snapshot,
            hook_devs: Some(h.devices),
        },
    );
    Ok(())
}

/// `nft_delchain`: removes the chain (its rules are gone already).
pub fn delete(tx: &mut Txn<'_>, meta: Meta, table: u64, handle: u64) {
    let Some(ti) = tx.rs.table_idx_by_handle(table) else {
        return;
    };
    let Some(ci) = tx.rs.tables[ti].chain_idx_by_handle(handle) else {
        return;
    };
    let c = tx.rs.tables[ti].chains.remove(ci);
    tx.push(
        meta,
        table,
        TransKind::DelChain {
            snapshot: Box::new(c),
            hook_devs: None,
        },
    );
}
