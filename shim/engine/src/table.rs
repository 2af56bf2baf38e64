//! Tables: NEWTABLE / DELTABLE / DESTROYTABLE (`nf_tables_newtable`, `_updtable`,
//! `_deltable`, `nft_flush`), and the table lookup every other handler starts with.

use netlink_proto::consts::*;
use netlink_proto::extra::*;
use netlink_proto::extra::{
    NFPROTO_ARP, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV,
    NFPROTO_UNSPEC,
};

use crate::errno::*;
use crate::msg::*;
use crate::nla::{Nla, Pol};
use crate::state::{Ruleset, Table};
use crate::txn::{Meta, Msg, MsgErr, MsgResult, TransKind, Txn};
use crate::{chain, flowtable, obj, rule, set};

pub const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NAME_MAX),        // NAME
    Pol::U32,                  // FLAGS
    Pol::Any,                  // USE
    Pol::U64,                  // HANDLE
    Pol::Any,                  // PAD
    Pol::Bin(USERDATA_MAXLEN), // USERDATA
    Pol::Any,                  // OWNER
];

/// `nft_supported_family` for this kernel's configuration.
pub fn supported_family(family: u8) -> bool {
    matches!(
        family,
        NFPROTO_INET | NFPROTO_IPV4 | NFPROTO_ARP | NFPROTO_NETDEV | NFPROTO_BRIDGE | NFPROTO_IPV6
    )
}

/// `nft_table_lookup`: by name and family. `nlpid` is the caller's port id for
/// requests that modify (an owned table refuses other sockets with EPERM), 0 for reads.
pub fn lookup(rs: &Ruleset, nla: Option<Nla<'_>>, family: u8, nlpid: u32) -> Result<usize, i32> {
    let nla = nla.ok_or(EINVAL)?;
    let idx = rs
        .tables
        .iter()
        .position(|t| t.family == family && t.name.as_bytes() == nla.strcmp_bytes())
        .ok_or(ENOENT)?;
    check_owner(&rs.tables[idx], nlpid)?;
    Ok(idx)
}

fn check_owner(t: &Table, nlpid: u32) -> Result<(), i32> {
    if t.has_owner() && nlpid != 0 && t.owner != nlpid {
        return Err(EPERM);
    }
    Ok(())
}

/// `nft_table_lookup` with the error pointing at the attribute, as handlers report it.
pub fn lookup_at(
    rs: &Ruleset,
    nla: Option<Nla<'_>>,
    family: u8,
    nlpid: u32,
) -> Result<usize, MsgErr> {
    lookup(rs, nla, family, nlpid).map_err(|e| MsgErr::at(e, nla.map(|a| a.off)))
}

fn lookup_by_handle(rs: &Ruleset, handle: u64, family: u8, nlpid: u32) -> Result<usize, i32> {
    let idx = rs
        .tables
        .iter()
        .position(|t| t.handle == handle && t.family == family)
        .ok_or(ENOENT)?;
    check_owner(&rs.tables[idx], nlpid)?;
    Ok(idx)
}

/// The table's name as `nla_strdup` keeps it.
pub fn name_of(nla: &Nla<'_>) -> String {
    String::from_utf8_lossy(nla.cstr()).into_owned()
}

/// Whether a table already changed its dormant/owner state, or a base chain of it was
/// updated or deleted, in this batch (`nft_table_pending_update`).
pub fn pending_update(tx: &Txn<'_>, table: u64) -> bool {
    tx.log.iter().any(|t| {
        t.table == table
            && match &t.kind {
                TransKind::NewTable { update } => *update,
                TransKind::NewChain { update, .. } => *update,
                TransKind::DelChain { snapshot, .. } => snapshot.is_base(),
                _ => false,
            }
    })
}

pub fn new(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    if !supported_family(family) {
        return Err(EOPNOTSUPP.into());
    }
    let name = m.tb.get(NFTA_TABLE_NAME);
    match lookup(&tx.rs, name, family, m.meta.portid) {
        Ok(ti) => {
            if m.meta.flags & NLM_F_EXCL != 0 {
                return Err(MsgErr::at(EEXIST, name.map(|a| a.off)));
            }
            if m.meta.flags & NLM_F_REPLACE != 0 {
                return Err(EOPNOTSUPP.into());
            }
            update(tx, m, ti)
        }
        Err(ENOENT) => {
            let name = name.ok_or(MsgErr::from(EINVAL))?;
            let flags = m.tb.be32(NFTA_TABLE_FLAGS).unwrap_or(0);
            if flags & !NFT_TABLE_F_MASK != 0 {
                return Err(EOPNOTSUPP.into());
            }
            tx.counters.table_handle += 1;
            let handle = tx.counters.table_handle;
            let table = Table {
                name: name_of(&name),
                family,
                flags,
                owner: if flags & NFT_TABLE_F_OWNER != 0 {
                    m.meta.portid
                } else {
                    0
                },
                udata: m.tb.get(NFTA_TABLE_USERDATA).map(|a| a.value.to_vec()),
                handle,
                chains: Vec::new(),
                sets: Vec::new(),
                objects: Vec::new(),
                flowtables: Vec::new(),
            };
            tx.rs.tables.push(table);
            tx.new_tables.insert(handle);
            tx.push(m.meta, handle, TransKind::NewTable { update: false });
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `nf_tables_updtable`: dormant and owner flag changes of an existing table.
fn update(tx: &mut Txn<'_>, m: &Msg<'_>, ti: usize) -> MsgResult {
    let Some(flags) = m.tb.be32(NFTA_TABLE_FLAGS) else {
        return Ok(());
    };
    if flags & !NFT_TABLE_F_MASK != 0 {
        return Err(EOPNOTSUPP.into());
    }
    let t = &tx.rs.tables[ti];
    if flags == t.flags & NFT_TABLE_F_MASK {
        return Ok(());
    }
    let orphan = t.flags & (NFT_TABLE_F_OWNER | NFT_TABLE_F_PERSIST) == NFT_TABLE_F_PERSIST;
    if (t.has_owner() && flags & NFT_TABLE_F_OWNER == 0)
        || (flags & NFT_TABLE_F_OWNER != 0 && !orphan)
    {
        return Err(EOPNOTSUPP.into());
    }
    if (flags ^ t.flags) & NFT_TABLE_F_PERSIST != 0 {
        return Err(EOPNOTSUPP.into());
    }
    let handle = t.handle;
    if pending_update(tx, handle) {
        return Err(EINVAL.into());
    }
    let t = &mut tx.rs.tables[ti];
    t.flags = (t.flags & !NFT_TABLE_F_DORMANT) | (flags & NFT_TABLE_F_DORMANT);
    if flags & NFT_TABLE_F_OWNER != 0 && !t.has_owner() {
        t.owner = m.meta.portid;
        t.flags |= NFT_TABLE_F_OWNER;
    }
    tx.push(m.meta, handle, TransKind::NewTable { update: true });
    Ok(())
}

pub fn del(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    let name = m.tb.get(NFTA_TABLE_NAME);
    let handle = m.tb.get(NFTA_TABLE_HANDLE);
    if family == NFPROTO_UNSPEC || (name.is_none() && handle.is_none()) {
        return flush(tx, m, family);
    }
    let (attr, found) = match handle {
        Some(h) => (h, lookup_by_handle(&tx.rs, h.be64(), family, m.meta.portid)),
        None => (
            name.unwrap_or(Nla {
                kind: 0,
                value: &[],
                off: 0,
            }),
            lookup(&tx.rs, name, family, m.meta.portid),
        ),
    };
    let ti = match found {
        Ok(ti) => ti,
        Err(ENOENT) if is_destroy(m.meta.msg_type) => return Ok(()),
        Err(e) => return Err(MsgErr::at(e, Some(attr.off))),
    };
    if m.meta.flags & NLM_F_NONREC != 0 && crate::dump::table_use(&tx.rs.tables[ti]) > 0 {
        return Err(EBUSY.into());
    }
    let meta = Meta { family, ..m.meta };
    flush_table(tx, meta, ti)
}

/// `nft_flush`: every table of the family (all families for 0), optionally by name,
/// except tables owned by another socket.
fn flush(tx: &mut Txn<'_>, m: &Msg<'_>, family: u8) -> MsgResult {
    let name = m.tb.get(NFTA_TABLE_NAME);
    let handles: Vec<u64> = tx
        .rs
        .tables
        .iter()
        .filter(|t| family == NFPROTO_UNSPEC || t.family == family)
        .filter(|t| !(t.has_owner() && t.owner != m.meta.portid))
        .filter(|t| name.is_none_or(|n| t.name.as_bytes() == n.strcmp_bytes()))
        .map(|t| t.handle)
        .collect();
    for h in handles {
        let Some(ti) = tx.rs.table_idx_by_handle(h) else {
            continue;
        };
        let meta = Meta {
            family: tx.rs.tables[ti].family,
            ..m.meta
        };
        flush_table(tx, meta, ti)?;
    }
    Ok(())
}

/// `nft_flush_table`: rules, named sets, flowtables, objects, chains, then the table.
pub fn flush_table(tx: &mut Txn<'_>, meta: Meta, ti: usize) -> MsgResult {
    let table = tx.rs.tables[ti].handle;
    let chains: Vec<u64> = tx.rs.tables[ti]
        .chains
        .iter()
        .filter(|c| !c.is_binding())
        .map(|c| c.handle)
        .collect();
    for ch in &chains {
        rule::delete_all(tx, meta, table, *ch)?;
    }
    let Some(ti) = tx.rs.table_idx_by_handle(table) else {
        return Ok(());
    };
    let sets: Vec<u64> = tx.rs.tables[ti]
        .sets
        .iter()
        .filter(|s| !s.is_anonymous())
        .map(|s| s.handle)
        .collect();
    for s in sets {
        set::delete(tx, meta, table, s);
    }
    let fts: Vec<u64> = tx.rs.tables[ti]
        .flowtables
        .iter()
        .map(|f| f.handle)
        .collect();
    for f in fts {
        flowtable::delete(tx, meta, table, f);
    }
    let objs: Vec<u64> = tx.rs.tables[ti].objects.iter().map(|o| o.handle).collect();
    for o in objs {
        obj::delete(tx, meta, table, o);
    }
    let chains: Vec<u64> = tx
        .rs
        .table_by_handle(table)
        .map(|t| {
            t.chains
                .iter()
                .filter(|c| !c.is_binding())
                .map(|c| c.handle)
                .collect()
        })
        .unwrap_or_default();
    for c in chains {
        chain::delete(tx, meta, table, c);
    }
    if let Some(ti) = tx.rs.table_idx_by_handle(table) {
        let t = tx.rs.tables.remove(ti);
        tx.push(
            meta,
            table,
            TransKind::DelTable {
                snapshot: Box::new(t),
            },
        );
    }
    Ok(())
}
