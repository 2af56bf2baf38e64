//! Rules: NEWRULE / DELRULE / DESTROYRULE (`nf_tables_newrule`, `_delrule`): append,
//! insert at a position (handle or in-batch id), replace by handle, delete by handle,
//! by in-batch id or all rules of a chain or table.

use netlink_proto::consts::*;
use netlink_proto::extra::*;

use crate::errno::*;
use crate::expr;
use crate::msg::*;
use crate::nla::Pol;
use crate::state::{Rule, Set};
use crate::txn::{Meta, Msg, MsgErr, MsgResult, TransKind, Txn};
use crate::{chain, table, validate};

pub const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NAME_MAX),                  // TABLE
    Pol::Str(NAME_MAX),                  // CHAIN
    Pol::U64,                            // HANDLE
    Pol::NestedArray(expr::EXPR_POLICY), // EXPRESSIONS
    Pol::Nested,                         // COMPAT
    Pol::U64,                            // POSITION
    Pol::Bin(USERDATA_MAXLEN),           // USERDATA
    Pol::Any,                            // PAD
    Pol::U32,                            // ID
    Pol::U32,                            // POSITION_ID
    Pol::U32,                            // CHAIN_ID
];

/// `NFT_RULE_MAXEXPRS`.
const MAX_EXPRS: usize = 128;

pub fn new(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    let ti = table::lookup_at(&tx.rs, m.tb.get(NFTA_RULE_TABLE), family, m.meta.portid)?;
    let t = &tx.rs.tables[ti];
    let table = t.handle;
    let ci = if let Some(c) = m.tb.get(NFTA_RULE_CHAIN) {
        chain::lookup(t, Some(c)).map_err(|e| MsgErr::at(e, Some(c.off)))?
    } else if let Some(id) = m.tb.get(NFTA_RULE_CHAIN_ID) {
        let h = tx
            .chain_by_id(table, id.be32())
            .ok_or(MsgErr::at(ENOENT, Some(id.off)))?;
        t.chain_idx_by_handle(h)
            .ok_or(MsgErr::at(ENOENT, Some(id.off)))?
    } else {
        return Err(EINVAL.into());
    };
    let c = &t.chains[ci];
    if c.is_binding() && c.bound {
        return Err(EOPNOTSUPP.into());
    }
    let chain_handle = c.handle;
    let chain_name = c.name.clone();
    let flags = m.meta.flags;
    // The rule this one is placed against, and whether it replaces it.
    let mut old: Option<u64> = None;
    let handle;
    if let Some(h) = m.tb.get(NFTA_RULE_HANDLE) {
        handle = h.be64();
        if !c.rules.iter().any(|r| r.handle == handle) {
            return Err(MsgErr::at(ENOENT, Some(h.off)));
        }
        if flags & NLM_F_EXCL != 0 {
            return Err(MsgErr::at(EEXIST, Some(h.off)));
        }
        if flags & NLM_F_REPLACE == 0 {
            return Err(EOPNOTSUPP.into());
        }
        old = Some(handle);
    } else {
        if flags & NLM_F_CREATE == 0 || flags & NLM_F_REPLACE != 0 {
            return Err(EINVAL.into());
        }
        handle = tx.alloc_handle(table);
        let t = &tx.rs.tables[ti];
        let c = &t.chains[ci];
        if let Some(p) = m.tb.get(NFTA_RULE_POSITION) {
            let ph = p.be64();
            if !c.rules.iter().any(|r| r.handle == ph) {
                return Err(MsgErr::at(ENOENT, Some(p.off)));
            }
            old = Some(ph);
        } else if let Some(p) = m.tb.get(NFTA_RULE_POSITION_ID) {
            let ph = tx
                .rule_by_id(table, chain_handle, p.be32())
                .ok_or(MsgErr::at(ENOENT, Some(p.off)))?;
            if !c.rules.iter().any(|r| r.handle == ph) {
                return Err(MsgErr::at(ENOENT, Some(p.off)));
            }
            old = Some(ph);
        }
    }
    // Parse and initialise the expressions against the next-generation table.
    let mut exprs = Vec::new();
    let mut needs_validate = false;
    let mut binds_sets = Vec::new();
    let mut binds_chains = Vec::new();
    if let Some(list) = m.tb.get(NFTA_RULE_EXPRESSIONS) {
        let cx = expr::Ctx {
            tx,
            ti,
            family,
            chain: Some(&chain_name),
            rule_compat: m.tb.get(NFTA_RULE_COMPAT),
        };
        // `nf_tables_expr_parse` for every expression, then `->init` of each.
        let elems = list.nested();
        let mut parsed = Vec::new();
        for (n, e) in elems.iter().enumerate() {
            if e.id() != NFTA_LIST_ELEM || n == MAX_EXPRS {
                return Err(EINVAL.into());
            }
            parsed.push(expr::parse(&cx, e).map_err(|err| MsgErr::at(err, Some(e.off)))?);
        }
        let mut regs = expr::Regs::default();
        for (e, p) in elems.iter().zip(&parsed) {
            let inited =
                expr::init_parsed(&cx, p, &mut regs).map_err(|err| MsgErr::at(err, Some(e.off)))?;
            needs_validate |= inited.validate;
            if let Some(s) = &inited.binds_set {
                if binds_sets.contains(s) {
                    return Err(MsgErr::at(EBUSY, Some(e.off)));
                }
                binds_sets.push(s.clone());
            }
            if let Some(c) = &inited.binds_chain {
                if binds_chains.contains(c) {
                    return Err(MsgErr::at(EBUSY, Some(e.off)));
                }
                binds_chains.push(c.clone());
            }
            exprs.push(inited.expr);
        }
    }
    let rule = std::sync::Arc::new(Rule::new(
        handle,
        exprs,
        m.tb.get(NFTA_RULE_USERDATA)
            .filter(|u| !u.value.is_empty())
            .map(|u| u.value.to_vec()),
        m.tb.get(NFTA_RULE_COMPAT)
            .map(|a| a.nested().iter().map(|x| x.to_attr()).collect()),
    ));
    // The kernel validates the whole table after adding an expression that has a
    // `->validate` op. The committed table was valid, so a rule that no base chain can
    // refuse leaves it valid, and the walk is skipped.
    if needs_validate && !rule.context_free() {
        tx.validate_need.insert(table);
    }
    for name in &binds_sets {
        if let Some(sh) = tx.rs.tables[ti]
            .sets
            .iter()
            .find(|s| &s.name == name)
            .map(|s| s.handle)
        {
            tx.bound_anon.insert((table, sh));
        }
    }
    let t = &mut tx.rs.tables[ti];
    for c in &binds_chains {
        if let Some(bc) = t.chains.iter_mut().find(|ch| &ch.name == c) {
            bc.bound = true;
        }
    }
    if flags & NLM_F_REPLACE != 0 {
        if t.chains[ci].is_binding() {
            return Err(EOPNOTSUPP.into());
        }
        let pos = t.chains[ci]
            .rules
            .iter()
            .position(|r| Some(r.handle) == old)
            .ok_or(MsgErr::from(ENOENT))?;
        let removed = t.chains[ci].rules.remove(pos);
        t.chains[ci].rules.insert(pos, rule.clone());
        let freed = release_rule_refs(tx, ti, &removed);
        tx.push(
            m.meta,
            table,
            TransKind::DelRule {
                chain: chain_name.clone(),
                snapshot: removed,
                freed_sets: freed,
            },
        );
    } else {
        let rules = &mut t.chains[ci].rules;
        let pos = match (
            old.and_then(|h| rules.iter().position(|r| r.handle == h)),
            flags & NLM_F_APPEND != 0,
        ) {
            (Some(p), true) => p + 1,
            (Some(p), false) => p,
            (None, true) => rules.len(),
            (None, false) => 0,
        };
        rules.insert(pos, rule.clone());
    }
    let id = m.tb.be32(NFTA_RULE_ID);
    tx.push(
        m.meta,
        table,
        TransKind::NewRule {
            chain: chain_handle,
            handle,
            id,
            snapshot: rule,
        },
    );
    if tx.validates_each(table) {
        if let Some(t) = tx.rs.table_by_handle(table) {
            validate::table(t)?;
        }
    }
    Ok(())
}

pub fn del(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let family = m.meta.family;
    let ti = table::lookup_at(&tx.rs, m.tb.get(NFTA_RULE_TABLE), family, m.meta.portid)?;
    let t = &tx.rs.tables[ti];
    let table = t.handle;
    let destroy = is_destroy(m.meta.msg_type);
    let Some(cattr) = m.tb.get(NFTA_RULE_CHAIN) else {
        let chains: Vec<u64> = t
            .chains
            .iter()
            .filter(|c| !c.is_binding())
            .map(|c| c.handle)
            .collect();
        for c in chains {
            delete_all(tx, m.meta, table, c)?;
        }
        return Ok(());
    };
    let ci = match chain::lookup(t, Some(cattr)) {
        Ok(ci) => ci,
        Err(ENOENT) if destroy => return Ok(()),
        Err(e) => return Err(MsgErr::at(e, Some(cattr.off))),
    };
    let c = &t.chains[ci];
    if c.is_binding() {
        return Err(EOPNOTSUPP.into());
    }
    let chain_handle = c.handle;
    if let Some(h) = m.tb.get(NFTA_RULE_HANDLE) {
        if !c.rules.iter().any(|r| r.handle == h.be64()) {
            if destroy {
                return Ok(());
            }
            return Err(MsgErr::at(ENOENT, Some(h.off)));
        }
        delete(tx, m.meta, table, chain_handle, h.be64());
        Ok(())
    } else if let Some(id) = m.tb.get(NFTA_RULE_ID) {
        let rh = tx
            .rule_by_id(table, chain_handle, id.be32())
            .ok_or(MsgErr::at(ENOENT, Some(id.off)))?;
        let exists = tx
            .rs
            .table_by_handle(table)
            .and_then(|t| t.chains.iter().find(|c| c.handle == chain_handle))
            .is_some_and(|c| c.rules.iter().any(|r| r.handle == rh));
        if !exists {
            // `nf_tables_delrule_deactivate`: the same rule cannot be deleted twice.
            return Err(ENOENT.into());
        }
        delete(tx, m.meta, table, chain_handle, rh);
        Ok(())
    } else {
        delete_all(tx, m.meta, table, chain_handle)
    }
}

/// `nft_delrule_by_chain`.
pub fn delete_all(tx: &mut Txn<'_>, meta: Meta, table: u64, chain: u64) -> MsgResult {
    let handles: Vec<u64> = tx
        .rs
        .table_by_handle(table)
        .and_then(|t| t.chains.iter().find(|c| c.handle == chain))
        .map(|c| c.rules.iter().map(|r| r.handle).collect())
        .unwrap_or_default();
    for h in handles {
        delete(tx, meta, table, chain, h);
    }
    Ok(())
}

/// `nft_delrule`: removes the rule and releases what it held (anonymous sets, binding
/// chains).
pub fn delete(tx: &mut Txn<'_>, meta: Meta, table: u64, chain: u64, handle: u64) {
    let Some(ti) = tx.rs.table_idx_by_handle(table) else {
        return;
    };
    let Some(ci) = tx.rs.tables[ti].chain_idx_by_handle(chain) else {
        return;
    };
    let Some(ri) = tx.rs.tables[ti].chains[ci]
        .rules
        .iter()
        .position(|r| r.handle == handle)
    else {
        return;
    };
    let rule = tx.rs.tables[ti].chains[ci].rules.remove(ri);
    let chain_name = tx.rs.tables[ti].chains[ci].name.clone();
    let freed = release_rule_refs(tx, ti, &rule);
    tx.push(
        meta,
        table,
        TransKind::DelRule {
            chain: chain_name,
            snapshot: rule,
            freed_sets: freed,
        },
    );
}

/// What a deleted rule held goes with it: anonymous sets it bound, binding chains it
/// jumped to (with their rules). Returns the freed anonymous sets.
fn release_rule_refs(tx: &mut Txn<'_>, ti: usize, rule: &Rule) -> Vec<Set> {
    let mut freed = Vec::new();
    let t = &mut tx.rs.tables[ti];
    for e in &rule.exprs {
        if let Some(name) = expr::set_ref(e) {
            if let Some(si) = t
                .sets
                .iter()
                .position(|s| s.name == name && s.is_anonymous())
            {
                // An anonymous set has no binding but this rule's.
                let s = t.sets.remove(si);
                tx.bound_anon.remove(&(t.handle, s.handle));
                freed.push(s);
            }
        }
        if let Some(target) = expr::verdict_chain(e) {
            if let Some(ci) = t
                .chains
                .iter()
                .position(|c| c.name == target && c.is_binding())
            {
                t.chains.remove(ci);
            }
        }
    }
    freed
}
