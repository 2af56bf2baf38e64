//! GET requests outside batches: single objects (answered with the object, then an ACK
//! if asked) and dumps (NLM_F_MULTI parts, then NLMSG_DONE), with the filters the kernel
//! honours; GETGEN; and the *_RESET variants that zero counters and quotas.

use netlink_proto::consts::*;
use netlink_proto::extra::NFPROTO_UNSPEC;
use netlink_proto::extra::*;

use crate::dump;
use crate::errno::*;
use crate::nfnl::{dump_records, Handled};
use crate::obj::{reset_attrs, ResetKind};
use crate::state::{Expr, Table};
use crate::txn::{Msg, MsgErr};
use crate::wire::DUMP_RECORD_MAX;
use crate::{chain, table, Caller, Netns, Output};

pub fn handle(
    ns: &mut Netns,
    caller: &Caller,
    m: &Msg<'_>,
    out: &mut Output,
) -> Result<Handled, MsgErr> {
    let is_dump = m.req.flags & NLM_F_DUMP != 0;
    let res_id = (ns.genid & 0xffff) as u16;
    let (seq, portid, family) = (m.req.seq, caller.portid, m.meta.family);
    let now = ns.now_ms();
    let rs = &ns.ruleset;
    let fam_ok = |t: &Table| family == NFPROTO_UNSPEC || t.family == family;
    match m.meta.msg_type {
        NFT_MSG_GETGEN => {
            out.unicast.push(dump::gen_msg(
                ns.genid,
                caller.pid,
                &caller.comm,
                seq,
                portid,
            ));
            Ok(Handled::Done)
        }
        NFT_MSG_GETTABLE => {
            if is_dump {
                let msgs = rs
                    .tables
                    .iter()
                    .filter(|t| fam_ok(t))
                    .map(|t| dump::table_msg(t, NFT_MSG_NEWTABLE, NLM_F_MULTI, seq, portid, res_id))
                    .collect();
                dump_records(msgs, seq, portid, out);
                return Ok(Handled::Dump);
            }
            let ti = table::lookup_at(rs, m.tb.get(NFTA_TABLE_NAME), family, 0)?;
            out.unicast.push(dump::table_msg(
                &rs.tables[ti],
                NFT_MSG_NEWTABLE,
                0,
                seq,
                portid,
                res_id,
            ));
            Ok(Handled::Done)
        }
        NFT_MSG_GETCHAIN => {
            if is_dump {
                let mut msgs = Vec::new();
                for t in rs.tables.iter().filter(|t| fam_ok(t)) {
                    // One pass over the table for the use counts of all its chains.
                    let refs = dump::jump_refs(t);
                    for c in &t.chains {
                        let jumps = refs.get(c.name.as_str()).copied().unwrap_or(0);
                        let use_count = c.rules.len() as u32 + jumps + u32::from(c.bound);
                        msgs.push(dump::chain_msg_with_use(
                            t,
                            c,
                            NFT_MSG_NEWCHAIN,
                            NLM_F_MULTI,
                            seq,
                            portid,
                            res_id,
                            None,
                            use_count,
                        ));
                    }
                }
                dump_records(msgs, seq, portid, out);
                return Ok(Handled::Dump);
            }
            let ti = table::lookup_at(rs, m.tb.get(NFTA_CHAIN_TABLE), family, 0)?;
            let t = &rs.tables[ti];
            let name = m.tb.get(NFTA_CHAIN_NAME);
            let ci = chain::lookup(t, name).map_err(|e| MsgErr::at(e, name.map(|a| a.off)))?;
            out.unicast.push(dump::chain_msg(
                t,
                &t.chains[ci],
                NFT_MSG_NEWCHAIN,
                0,
                seq,
                portid,
                res_id,
                None,
            ));
            Ok(Handled::Done)
        }
        NFT_MSG_GETRULE | NFT_MSG_GETRULE_RESET => {
            let reset = m.meta.msg_type == NFT_MSG_GETRULE_RESET;
            if is_dump {
                let tname = m.tb.get(NFTA_RULE_TABLE).map(|a| a.cstr().to_vec());
                let cname = m.tb.get(NFTA_RULE_CHAIN).map(|a| a.cstr().to_vec());
                let mut msgs = Vec::new();
                let mut touched: Vec<(u64, u64, u64)> = Vec::new();
                for t in rs.tables.iter().filter(|t| fam_ok(t)) {
                    if tname
                        .as_ref()
                        .is_some_and(|n| n.as_slice() != t.name.as_bytes())
                    {
                        continue;
                    }
                    let chains: Vec<&crate::state::Chain> = match &cname {
                        Some(cn) if tname.is_some() => t
                            .chains
                            .iter()
                            .filter(|c| c.name.as_bytes() == cn.as_slice())
                            .take(1)
                            .collect(),
                        _ => t.chains.iter().collect(),
                    };
                    for c in chains {
                        let mut prev = 0;
                        for r in &c.rules {
                            msgs.push(dump::rule_msg(
                                t,
                                &c.name,
                                r,
                                NFT_MSG_NEWRULE,
                                NLM_F_MULTI | NLM_F_APPEND,
                                seq,
                                portid,
                                res_id,
                                prev,
                            ));
                            prev = r.handle;
                            touched.push((t.handle, c.handle, r.handle));
                        }
                    }
                    // With a table filter the dump stops at the first table of that name.
                    if tname.is_some() {
                        break;
                    }
                }
                if reset {
                    reset_rules(ns, &touched);
                }
                dump_records(msgs, seq, portid, out);
                return Ok(Handled::Dump);
            }
            let ti = table::lookup_at(rs, m.tb.get(NFTA_RULE_TABLE), family, 0)?;
            let t = &rs.tables[ti];
            let cn = m.tb.get(NFTA_RULE_CHAIN);
            let ci = chain::lookup(t, cn).map_err(|e| MsgErr::at(e, cn.map(|a| a.off)))?;
            let c = &t.chains[ci];
            let h = m.tb.get(NFTA_RULE_HANDLE);
            let Some(hattr) = h else {
                return Err(EINVAL.into());
            };
            let r = c
                .rules
                .iter()
                .find(|r| r.handle == hattr.be64())
                .ok_or(MsgErr::at(ENOENT, Some(hattr.off)))?;
            out.unicast.push(dump::rule_msg(
                t,
                &c.name,
                r,
                NFT_MSG_NEWRULE,
                0,
                seq,
                portid,
                res_id,
                0,
            ));
            if reset {
                let key = (t.handle, c.handle, r.handle);
                reset_rules(ns, &[key]);
            }
            Ok(Handled::Done)
        }
        NFT_MSG_GETSET => {
            let mut table_filter = None;
            if let Some(ta) = m.tb.get(NFTA_SET_TABLE) {
                table_filter = Some(table::lookup_at(rs, Some(ta), family, 0)?);
            }
            if is_dump {
                let mut msgs = Vec::new();
                for (i, t) in rs.tables.iter().enumerate().filter(|(_, t)| fam_ok(t)) {
                    if table_filter.is_some_and(|f| f != i) {
                        continue;
                    }
                    for s in &t.sets {
                        msgs.push(dump::set_msg(
                            t,
                            s,
                            NFT_MSG_NEWSET,
                            NLM_F_MULTI,
                            seq,
                            portid,
                            res_id,
                        ));
                    }
                }
                dump_records(msgs, seq, portid, out);
                return Ok(Handled::Dump);
            }
            if family == NFPROTO_UNSPEC {
                return Err(EAFNOSUPPORT.into());
            }
            let Some(ti) = table_filter else {
                return Err(EINVAL.into());
            };
            let t = &rs.tables[ti];
            let name = m.tb.get(NFTA_SET_NAME);
            let s = name
                .and_then(|n| {
                    t.sets
                        .iter()
                        .find(|s| s.name.as_bytes() == n.strcmp_bytes())
                })
                .ok_or(MsgErr::at(
                    if name.is_some() { ENOENT } else { EINVAL },
                    name.map(|a| a.off),
                ))?;
            out.unicast
                .push(dump::set_msg(t, s, NFT_MSG_NEWSET, 0, seq, portid, res_id));
            Ok(Handled::Done)
        }
        NFT_MSG_GETSETELEM | NFT_MSG_GETSETELEM_RESET => {
            let reset = m.meta.msg_type == NFT_MSG_GETSETELEM_RESET;
            if !is_dump && !m.tb.has(NFTA_SET_ELEM_LIST_ELEMENTS) {
                return Err(EINVAL.into());
            }
            let ti = table::lookup_at(rs, m.tb.get(NFTA_SET_ELEM_LIST_TABLE), family, 0)?;
            let t = &rs.tables[ti];
            let sattr = m.tb.get(NFTA_SET_ELEM_LIST_SET);
            let si = sattr
                .and_then(|n| {
                    t.sets
                        .iter()
                        .position(|s| s.name.as_bytes() == n.strcmp_bytes())
                })
                .ok_or(MsgErr::at(
                    if sattr.is_some() { ENOENT } else { EINVAL },
                    sattr.map(|a| a.off),
                ))?;
            let s = &t.sets[si];
            if is_dump {
                setelem_dump(t, s, seq, portid, res_id, now, out);
                if reset {
                    reset_elems(ns, ti, si, None);
                }
                return Ok(Handled::Dump);
            }
            get_elems(ns, m, ti, si, seq, portid, res_id, now, reset, out)?;
            Ok(Handled::Done)
        }
        NFT_MSG_GETOBJ | NFT_MSG_GETOBJ_RESET => {
            let reset = m.meta.msg_type == NFT_MSG_GETOBJ_RESET;
            if is_dump {
                let tname = m.tb.get(NFTA_OBJ_TABLE).map(|a| a.cstr().to_vec());
                let ty = m.tb.be32(NFTA_OBJ_TYPE).unwrap_or(NFT_OBJECT_UNSPEC);
                let mut msgs = Vec::new();
                let mut touched = Vec::new();
                for (ti, t) in rs.tables.iter().enumerate().filter(|(_, t)| fam_ok(t)) {
                    for (oi, o) in t.objects.iter().enumerate() {
                        if tname
                            .as_ref()
                            .is_some_and(|n| n.as_slice() != t.name.as_bytes())
                        {
                            continue;
                        }
                        if ty != NFT_OBJECT_UNSPEC && o.obj_type != ty {
                            continue;
                        }
                        msgs.push(dump::obj_msg(
                            t,
                            o,
                            NFT_MSG_NEWOBJ,
                            NLM_F_MULTI | NLM_F_APPEND,
                            seq,
                            portid,
                            res_id,
                        ));
                        touched.push((ti, oi));
                    }
                }
                if reset {
                    for (ti, oi) in touched {
                        reset_obj(ns, ti, oi);
                    }
                }
                dump_records(msgs, seq, portid, out);
                return Ok(Handled::Dump);
            }
            let (Some(name), Some(ty)) = (m.tb.get(NFTA_OBJ_NAME), m.tb.be32(NFTA_OBJ_TYPE)) else {
                return Err(EINVAL.into());
            };
            let ti = table::lookup_at(rs, m.tb.get(NFTA_OBJ_TABLE), family, 0)?;
            let t = &rs.tables[ti];
            let oi = t
                .obj_idx(name.cstr(), ty)
                .ok_or(MsgErr::at(ENOENT, Some(name.off)))?;
            out.unicast.push(dump::obj_msg(
                t,
                &t.objects[oi],
                NFT_MSG_NEWOBJ,
                0,
                seq,
                portid,
                res_id,
            ));
            if reset {
                reset_obj(ns, ti, oi);
            }
            Ok(Handled::Done)
        }
        NFT_MSG_GETFLOWTABLE => {
            if is_dump {
                let tname = m.tb.get(NFTA_FLOWTABLE_TABLE).map(|a| a.cstr().to_vec());
                let mut msgs = Vec::new();
                for t in rs.tables.iter().filter(|t| fam_ok(t)) {
                    if tname
                        .as_ref()
                        .is_some_and(|n| n.as_slice() != t.name.as_bytes())
                    {
                        continue;
                    }
                    for f in &t.flowtables {
                        msgs.push(dump::flowtable_msg(
                            t,
                            f,
                            NFT_MSG_NEWFLOWTABLE,
                            NLM_F_MULTI | NLM_F_APPEND,
                            seq,
                            portid,
                            res_id,
                            None,
                        ));
                    }
                }
                dump_records(msgs, seq, portid, out);
                return Ok(Handled::Dump);
            }
            let Some(name) = m.tb.get(NFTA_FLOWTABLE_NAME) else {
                return Err(EINVAL.into());
            };
            let ti = table::lookup_at(rs, m.tb.get(NFTA_FLOWTABLE_TABLE), family, 0)?;
            let t = &rs.tables[ti];
            let fi = t
                .flowtable_idx(name.strcmp_bytes())
                .ok_or(MsgErr::at(ENOENT, Some(name.off)))?;
            out.unicast.push(dump::flowtable_msg(
                t,
                &t.flowtables[fi],
                NFT_MSG_NEWFLOWTABLE,
                0,
                seq,
                portid,
                res_id,
                None,
            ));
            Ok(Handled::Done)
        }
        _ => Err(EINVAL.into()),
    }
}

/// `nf_tables_dump_set`: elements packed into NEWSETELEM messages, one per record; the
/// kernel's final pass adds an empty NEWSETELEM, and DONE comes in that same record.
fn setelem_dump(
    t: &Table,
    s: &crate::state::Set,
    seq: u32,
    portid: u32,
    res_id: u16,
    now: u64,
    out: &mut Output,
) {
    let live: Vec<_> = s
        .elems
        .iter()
        .filter(|e| !crate::set::expired(e, now))
        .map(|e| dump::setelem_attr(s, e, now))
        .collect();
    let empty = dump::setelem_msg(
        t,
        s,
        &[],
        NFT_MSG_NEWSETELEM,
        NLM_F_MULTI,
        seq,
        portid,
        res_id,
    );
    let room = DUMP_RECORD_MAX.saturating_sub(empty.len());
    let mut batch: Vec<netlink_proto::attr::Attr> = Vec::new();
    let mut used = 0;
    for a in live {
        if !batch.is_empty() && used + a.wire_len() > room {
            out.unicast.push(dump::setelem_msg(
                t,
                s,
                &batch,
                NFT_MSG_NEWSETELEM,
                NLM_F_MULTI,
                seq,
                portid,
                res_id,
            ));
            batch.clear();
            used = 0;
        }
        used += a.wire_len();
        batch.push(a);
    }
    if !batch.is_empty() {
        out.unicast.push(dump::setelem_msg(
            t,
            s,
            &batch,
            NFT_MSG_NEWSETELEM,
            NLM_F_MULTI,
            seq,
            portid,
            res_id,
        ));
    }
    let mut last = empty;
    last.extend_from_slice(&crate::wire::done(seq, portid));
    out.unicast.push(last);
}

/// `nft_get_set_elem` for each element asked for: one NEWSETELEM per element.
#[allow(clippy::too_many_arguments)]
fn get_elems(
    ns: &mut Netns,
    m: &Msg<'_>,
    ti: usize,
    si: usize,
    seq: u32,
    portid: u32,
    res_id: u16,
    now: u64,
    reset: bool,
    out: &mut Output,
) -> Result<(), MsgErr> {
    let list =
        m.tb.get(NFTA_SET_ELEM_LIST_ELEMENTS)
            .ok_or(MsgErr::from(EINVAL))?;
    for a in list.nested() {
        let t = &ns.ruleset.tables[ti];
        let s = &t.sets[si];
        let found = crate::set::find_elem(s, &a, now).map_err(|e| MsgErr::at(e, Some(a.off)))?;
        let e = &s.elems[found];
        out.unicast.push(dump::setelem_msg(
            t,
            s,
            &[dump::setelem_attr(s, e, now)],
            NFT_MSG_NEWSETELEM,
            0,
            seq,
            portid,
            res_id,
        ));
        if reset {
            reset_elems(ns, ti, si, Some(found));
        }
    }
    Ok(())
}

fn reset_exprs(exprs: &mut [Expr]) {
    for e in exprs {
        match e.name.as_str() {
            "counter" => reset_attrs(ResetKind::Counter, &mut e.data),
            "quota" => reset_attrs(ResetKind::Quota, &mut e.data),
            _ => {}
        }
    }
}

fn reset_rules(ns: &mut Netns, rules: &[(u64, u64, u64)]) {
    ns.dirty = true;
    for (th, ch, rh) in rules {
        let Some(ti) = ns.ruleset.table_idx_by_handle(*th) else {
            continue;
        };
        let Some(ci) = ns.ruleset.tables[ti].chain_idx_by_handle(*ch) else {
            continue;
        };
        if let Some(r) = ns.ruleset.tables[ti].chains[ci]
            .rules
            .iter_mut()
            .find(|r| r.handle == *rh)
        {
            reset_exprs(crate::state::Rule::exprs_mut(r));
        }
    }
}

fn reset_elems(ns: &mut Netns, ti: usize, si: usize, only: Option<usize>) {
    ns.dirty = true;
    let s = &mut ns.ruleset.tables[ti].sets[si];
    for (i, e) in s.elems.iter_mut().enumerate() {
        if only.is_none_or(|o| o == i) {
            reset_exprs(&mut e.exprs);
        }
    }
}

fn reset_obj(ns: &mut Netns, ti: usize, oi: usize) {
    ns.dirty = true;
    let o = &mut ns.ruleset.tables[ti].objects[oi];
    match o.obj_type {
        NFT_OBJECT_COUNTER => reset_attrs(ResetKind::Counter, &mut o.data),
        NFT_OBJECT_QUOTA => reset_attrs(ResetKind::Quota, &mut o.data),
        _ => {}
    }
}
