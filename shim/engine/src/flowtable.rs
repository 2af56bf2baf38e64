//! Flowtables: NEWFLOWTABLE / DELFLOWTABLE / DESTROYFLOWTABLE
//! (`nf_tables_newflowtable`, `_delflowtable`).
//!
//! This kernel is built without the flowtable infrastructure (CONFIG_NF_FLOW_TABLE), so
//! `nft_flowtable_type_get` finds no type and creating a flowtable fails with ENOENT
//! after the checks that come before it; lookups and deletions behave as on a kernel
//! with no flowtables.

use netlink_proto::consts::*;
use netlink_proto::extra::*;

use crate::chain;
use crate::errno::*;
use crate::msg::*;
use crate::nla::{self, Pol};
use crate::state::Flowtable;
use crate::table;
use crate::txn::{Meta, Msg, MsgErr, MsgResult, TransKind, Txn};

pub const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NAME_MAX), // TABLE
    Pol::Str(NAME_MAX), // NAME
    Pol::Nested,        // HOOK
    Pol::Any,           // USE
    Pol::U64,           // HANDLE
    Pol::Any,           // PAD
    Pol::U32,           // FLAGS
];

const HOOK_POLICY: &[Pol] = &[Pol::Any, Pol::U32, Pol::U32, Pol::Nested];

/// Whether `nf_flowtable_type` is registered for a family (CONFIG_NF_FLOW_TABLE).
const FLOWTABLE_TYPES: &[u8] = &[];
/// `NFT_FLOWTABLE_MASK`.
const FLOWTABLE_MASK: u32 = NFT_FLOWTABLE_HW_OFFLOAD | NFT_FLOWTABLE_COUNTER;

pub fn new(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let (Some(_), Some(name), Some(hook)) = (
        m.tb.get(NFTA_FLOWTABLE_TABLE),
        m.tb.get(NFTA_FLOWTABLE_NAME),
        m.tb.get(NFTA_FLOWTABLE_HOOK),
    ) else {
        return Err(EINVAL.into());
    };
    let family = m.meta.family;
    let ti = table::lookup_at(
        &tx.rs,
        m.tb.get(NFTA_FLOWTABLE_TABLE),
        family,
        m.meta.portid,
    )?;
    let table = tx.rs.tables[ti].handle;
    if let Some(fi) = tx.rs.tables[ti].flowtable_idx(name.strcmp_bytes()) {
        if m.meta.flags & NLM_F_EXCL != 0 {
            return Err(MsgErr::at(EEXIST, Some(name.off)));
        }
        return update(tx, m, ti, fi);
    }
    let handle = tx.alloc_handle(table);
    if !FLOWTABLE_TYPES.contains(&family) {
        return Err(ENOENT.into());
    }
    let flags = m.tb.be32(NFTA_FLOWTABLE_FLAGS).unwrap_or(0);
    if flags & !FLOWTABLE_MASK != 0 {
        return Err(EOPNOTSUPP.into());
    }
    let ht = nla::parse_nested(&hook, HOOK_POLICY).map_err(|e| MsgErr::from(e.errno))?;
    let (Some(num), Some(prio)) = (
        ht.be32(NFTA_FLOWTABLE_HOOK_NUM),
        ht.be32(NFTA_FLOWTABLE_HOOK_PRIORITY),
    ) else {
        return Err(MsgErr::at(ENOENT, Some(name.off)));
    };
    if num != NF_NETDEV_INGRESS {
        return Err(EOPNOTSUPP.into());
    }
    let devices = devices(&ht)?;
    let ft = Flowtable {
        name: table::name_of(&name),
        handle,
        hooknum: num,
        priority: prio as i32,
        devices,
        flags,
    };
    let snapshot = Box::new(ft.clone());
    tx.rs.tables[ti].flowtables.push(ft);
    tx.push(
        m.meta,
        table,
        TransKind::NewFlowtable {
            handle,
            snapshot,
            hook_devs: None,
        },
    );
    Ok(())
}

fn devices(ht: &nla::Tb<'_>) -> Result<Vec<String>, MsgErr> {
    let mut devs: Vec<String> = Vec::new();
    if let Some(list) = ht.get(NFTA_FLOWTABLE_HOOK_DEVS) {
        for a in list.nested() {
            if a.id() != NFTA_DEVICE_NAME {
                return Err(EINVAL.into());
            }
            let n = chain::ifname(&a);
            if devs.contains(&n) {
                return Err(MsgErr::at(EEXIST, Some(a.off)));
            }
            devs.push(n);
        }
    }
    Ok(devs)
}

/// `nft_flowtable_update`: adds devices.
fn update(tx: &mut Txn<'_>, m: &Msg<'_>, ti: usize, fi: usize) -> MsgResult {
    let table = tx.rs.tables[ti].handle;
    let ft = &tx.rs.tables[ti].flowtables[fi];
    let hook = m.tb.get(NFTA_FLOWTABLE_HOOK).ok_or(MsgErr::from(EINVAL))?;
    let ht = nla::parse_nested(&hook, HOOK_POLICY).map_err(|e| MsgErr::from(e.errno))?;
    if ht
        .be32(NFTA_FLOWTABLE_HOOK_NUM)
        .is_some_and(|n| n != ft.hooknum)
        || ht
            .be32(NFTA_FLOWTABLE_HOOK_PRIORITY)
            .is_some_and(|p| p as i32 != ft.priority)
    {
        return Err(EOPNOTSUPP.into());
    }
    let new: Vec<String> = devices(&ht)?
        .into_iter()
        .filter(|d| !ft.devices.contains(d))
        .collect();
    let flags = match m.tb.be32(NFTA_FLOWTABLE_FLAGS) {
        Some(f) if f & !FLOWTABLE_MASK != 0 => return Err(EOPNOTSUPP.into()),
        Some(f) if (f ^ ft.flags) & NFT_FLOWTABLE_HW_OFFLOAD != 0 => return Err(EOPNOTSUPP.into()),
        Some(f) => f,
        None => ft.flags,
    };
    let ft = &mut tx.rs.tables[ti].flowtables[fi];
    ft.flags = flags;
    ft.devices.extend(new.iter().cloned());
    let snapshot = Box::new(ft.clone());
    let handle = ft.handle;
    tx.push(
        m.meta,
        table,
        TransKind::NewFlowtable {
            handle,
            snapshot,
            hook_devs: Some(new),
        },
    );
    Ok(())
}

pub fn del(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    if !m.tb.has(NFTA_FLOWTABLE_TABLE)
        || (!m.tb.has(NFTA_FLOWTABLE_NAME) && !m.tb.has(NFTA_FLOWTABLE_HANDLE))
    {
        return Err(EINVAL.into());
    }
    let family = m.meta.family;
    let ti = table::lookup_at(
        &tx.rs,
        m.tb.get(NFTA_FLOWTABLE_TABLE),
        family,
        m.meta.portid,
    )?;
    let t = &tx.rs.tables[ti];
    let (attr, found) = match m.tb.get(NFTA_FLOWTABLE_HANDLE) {
        Some(h) => (h, t.flowtables.iter().position(|f| f.handle == h.be64())),
        None => {
            let n = m.tb.get(NFTA_FLOWTABLE_NAME).ok_or(MsgErr::from(EINVAL))?;
            (n, t.flowtable_idx(n.strcmp_bytes()))
        }
    };
    let Some(fi) = found else {
        if is_destroy(m.meta.msg_type) {
            return Ok(());
        }
        return Err(MsgErr::at(ENOENT, Some(attr.off)));
    };
    if crate::dump::flowtable_use(t, &t.flowtables[fi]) > 0 {
        return Err(MsgErr::at(EBUSY, Some(attr.off)));
    }
    let (table, handle) = (t.handle, t.flowtables[fi].handle);
    delete(tx, m.meta, table, handle);
    Ok(())
}

/// `nft_delflowtable`.
pub fn delete(tx: &mut Txn<'_>, meta: Meta, table: u64, handle: u64) {
    let Some(ti) = tx.rs.table_idx_by_handle(table) else {
        return;
    };
    let Some(fi) = tx.rs.tables[ti]
        .flowtables
        .iter()
        .position(|f| f.handle == handle)
    else {
        return;
    };
    let f = tx.rs.tables[ti].flowtables.remove(fi);
    tx.push(
        meta,
        table,
        TransKind::DelFlowtable {
            snapshot: Box::new(f),
            hook_devs: None,
        },
    );
}
