//! `nfnetlink_rcv`: one datagram in, the kernel's answers out.
//!
//! A datagram is either a batch (BEGIN, messages, END) processed by
//! `nfnetlink_rcv_batch` with commit/abort, or a run of single requests processed by
//! `netlink_rcv_skb` (GET requests, dumps, GETGEN, the compat revision query).

use netlink_proto::consts::NFNL_BATCH_GENID;
use netlink_proto::extra::*;

use crate::dataplane::Dataplane;
use crate::errno::*;
use crate::msg::*;
use crate::nla::{self, Pol};
use crate::state::Ruleset;
use crate::txn::{self, Meta, Msg, MsgErr, MsgResult, Trans, Txn, ValidateDo};
use crate::wire::{ack, ack_ext, pack, AckOpts, Req, NLMSG_GOODSIZE};
use crate::{chain, compat, dump, flowtable, get, obj, rule, set, table, validate};
use crate::{Caller, Netns, Output};

/// Whether a callback runs inside batches (`NFNL_CB_BATCH`) or on its own (`NFNL_CB_RCU`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CbKind {
    Batch,
    Rcu,
}

/// The nf_tables callback table: policy and kind of every message type.
pub fn nft_callback(msg: u16) -> Option<(&'static [Pol], CbKind)> {
    use CbKind::*;
    Some(match msg {
        NFT_MSG_NEWTABLE | NFT_MSG_DELTABLE | NFT_MSG_DESTROYTABLE => (table::POLICY, Batch),
        NFT_MSG_GETTABLE => (table::POLICY, Rcu),
        NFT_MSG_NEWCHAIN | NFT_MSG_DELCHAIN | NFT_MSG_DESTROYCHAIN => (chain::POLICY, Batch),
        NFT_MSG_GETCHAIN => (chain::POLICY, Rcu),
        NFT_MSG_NEWRULE | NFT_MSG_DELRULE | NFT_MSG_DESTROYRULE => (rule::POLICY, Batch),
        NFT_MSG_GETRULE | NFT_MSG_GETRULE_RESET => (rule::POLICY, Rcu),
        NFT_MSG_NEWSET | NFT_MSG_DELSET | NFT_MSG_DESTROYSET => (set::POLICY, Batch),
        NFT_MSG_GETSET => (set::POLICY, Rcu),
        NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM | NFT_MSG_DESTROYSETELEM => {
            (set::ELEM_LIST_POLICY, Batch)
        }
        NFT_MSG_GETSETELEM | NFT_MSG_GETSETELEM_RESET => (set::ELEM_LIST_POLICY, Rcu),
        NFT_MSG_GETGEN => (&[], Rcu),
        NFT_MSG_NEWOBJ | NFT_MSG_DELOBJ | NFT_MSG_DESTROYOBJ => (obj::POLICY, Batch),
        NFT_MSG_GETOBJ | NFT_MSG_GETOBJ_RESET => (obj::POLICY, Rcu),
        NFT_MSG_NEWFLOWTABLE | NFT_MSG_DELFLOWTABLE | NFT_MSG_DESTROYFLOWTABLE => {
            (flowtable::POLICY, Batch)
        }
        NFT_MSG_GETFLOWTABLE => (flowtable::POLICY, Rcu),
        _ => return None,
    })
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

pub fn rcv(ns: &mut Netns, caller: &Caller, d: &[u8], dp: &mut dyn Dataplane) -> Output {
    let mut out = Output::default();
    if d.len() < NLMSG_HDRLEN {
        return out;
    }
    let len = u32_at(d, 0) as usize;
    if len < NLMSG_HDRLEN || d.len() < len {
        return out;
    }
    let opts = AckOpts {
        portid: caller.portid,
        ext_ack: caller.ext_ack,
        cap_ack: caller.cap_ack,
    };
    let first = Req::new(&d[..len]);
    if !caller.net_admin {
        // `netlink_net_capable` failed: one EPERM for the datagram's first message.
        out.unicast.push(ack(opts, &first, EPERM, None));
        return out;
    }
    let before = (ns.genid, ns.counters.clone(), ns.validate_sticky);
    // The set backends' garbage collection of timed-out elements.
    let now = ns.now_ms();
    if crate::set::gc(&mut ns.ruleset, now) {
        ns.dirty = true;
    }
    // Counts from the data plane, before they are listed or reset, and before a batch
    // (a chain update with NFTA_CHAIN_COUNTERS sets values that earlier packets must
    // not be added to).
    let is_batch = first.msg_type == NFNL_MSG_BATCH_BEGIN;
    if is_batch || shows_counters(first.msg_type) {
        crate::counts::fold(&mut ns.ruleset, &dp.take_counts());
    }
    if is_batch {
        rcv_skb_batch(ns, caller, opts, d, dp, &mut out);
    } else {
        rcv_skb(ns, caller, opts, d, &mut out);
    }
    out.state_changed = std::mem::take(&mut ns.dirty)
        || before != (ns.genid, ns.counters.clone(), ns.validate_sticky);
    out
}

/// Whether a request outside a batch answers with counters the data plane counts
/// (rules, counter objects, base chain counters), so that they must be read first.
fn shows_counters(msg_type: u16) -> bool {
    msg_type >> 8 == SUBSYS_NFTABLES
        && matches!(
            msg_type & 0xff,
            NFT_MSG_GETRULE
                | NFT_MSG_GETRULE_RESET
                | NFT_MSG_GETOBJ
                | NFT_MSG_GETOBJ_RESET
                | NFT_MSG_GETCHAIN
        )
}

/// Splits off the next message the way `netlink_rcv_skb` walks an skb. Returns the
/// message (its declared length, within the datagram) and the bytes after it.
fn next_msg(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    if rest.len() < NLMSG_HDRLEN {
        return None;
    }
    let len = u32_at(rest, 0) as usize;
    if len < NLMSG_HDRLEN || rest.len() < len {
        return None;
    }
    let step = netlink_proto::attr::align4(len).min(rest.len());
    Some((&rest[..len], &rest[step..]))
}

/// `netlink_rcv_skb(skb, nfnetlink_rcv_msg)`.
fn rcv_skb(ns: &mut Netns, caller: &Caller, opts: AckOpts, d: &[u8], out: &mut Output) {
    let mut rest = d;
    while let Some((m, after)) = next_msg(rest) {
        rest = after;
        let req = Req::new(m);
        let mut err = None;
        let mut skip_ack = false;
        if req.flags & NLM_F_REQUEST != 0 && req.msg_type >= NLMSG_MIN_TYPE {
            match rcv_msg(ns, caller, &req, out) {
                Ok(Handled::Done) => {}
                // A dump that started answers with its parts and DONE, never an ACK.
                Ok(Handled::Dump) => skip_ack = true,
                Err(e) => err = Some(e),
            }
        }
        if skip_ack {
            continue;
        }
        if req.flags & NLM_F_ACK != 0 || err.is_some() {
            let e = err.unwrap_or(MsgErr::from(0));
            out.unicast.push(ack_ext(opts, &req, &e));
        }
    }
}

pub enum Handled {
    Done,
    Dump,
}

/// `nfnetlink_rcv_msg` for one message outside a batch.
fn rcv_msg(
    ns: &mut Netns,
    caller: &Caller,
    req: &Req<'_>,
    out: &mut Output,
) -> Result<Handled, MsgErr> {
    if req.payload().len() < 4 {
        return Ok(Handled::Done);
    }
    let subsys = req.msg_type >> 8;
    let cb = req.msg_type & 0xff;
    match subsys {
        SUBSYS_NFTABLES => {
            let (policy, kind) = nft_callback(cb).ok_or(MsgErr::from(EINVAL))?;
            let (tb, leftover) =
                nla::parse_msg(req.attr_bytes(), (NLMSG_HDRLEN + 4) as u32, policy);
            let tb = tb?;
            if kind != CbKind::Rcu {
                return Err(leftover_msg(EINVAL.into(), leftover));
            }
            let msg = Msg {
                req: *req,
                tb,
                meta: Meta::from_req(req, caller.portid),
            };
            get::handle(ns, caller, &msg, out).map_err(|e| leftover_msg(e, leftover))
        }
        SUBSYS_NFT_COMPAT => compat::handle(caller, req, out).map(|_| Handled::Done),
        crate::ulog::SUBSYS_ULOG => {
            let mut flushed = Vec::new();
            let r = ns.nflog.handle(caller, req, &mut flushed);
            out.unicast.extend(flushed);
            r.map(|_| Handled::Done)
        }
        _ => Err(EINVAL.into()),
    }
}

/// `nfnetlink_rcv_skb_batch`: the BEGIN message, then the batch.
fn rcv_skb_batch(
    ns: &mut Netns,
    caller: &Caller,
    opts: AckOpts,
    d: &[u8],
    dp: &mut dyn Dataplane,
    out: &mut Output,
) {
    if d.len() < NLMSG_HDRLEN + 4 {
        return;
    }
    let len = u32_at(d, 0) as usize;
    let msglen = netlink_proto::attr::align4(len).min(d.len());
    let begin = Req::new(&d[..len]);
    let tb = match nla::parse(begin.attr_bytes(), 20, &[Pol::Any, Pol::U32]) {
        Ok(tb) => tb,
        Err(e) => {
            out.unicast.push(ack(opts, &begin, e.errno, None));
            return;
        }
    };
    let genid = tb.be32(NFNL_BATCH_GENID).unwrap_or(0);
    // Old nft sent res_id in host byte order.
    // `nlmsg_data(nlh)` is read whatever the declared length; the datagram has the bytes.
    let raw = [d[NLMSG_HDRLEN + 2], d[NLMSG_HDRLEN + 3]];
    let subsys = if u16::from_ne_bytes(raw) == SUBSYS_NFTABLES {
        SUBSYS_NFTABLES
    } else {
        u16::from_be_bytes(raw)
    };
    rcv_batch(
        ns,
        caller,
        opts,
        &begin,
        &d[msglen..],
        subsys,
        genid,
        dp,
        out,
    );
}

/// How one pass over the batch's messages ended.
struct Pass<'d> {
    /// `err_list`: (message, errno, bad attribute) for NLM_F_ACK messages and failures.
    acks: Vec<(Req<'d>, MsgErr)>,
    failure: bool,
    /// The END message, if the batch was closed.
    end: Option<Req<'d>>,
    /// The first message after BEGIN (`nlmsg_hdr(oskb)`): commit errors and NEWGEN use it.
    first: Option<Req<'d>>,
    rs: Ruleset,
    log: Vec<Trans>,
    validate_need: std::collections::BTreeSet<u64>,
    bound_anon: std::collections::HashSet<(u64, u64)>,
}

#[allow(clippy::too_many_arguments)]
fn rcv_batch<'d>(
    ns: &mut Netns,
    caller: &Caller,
    opts: AckOpts,
    begin: &Req<'d>,
    rest: &'d [u8],
    subsys: u16,
    genid: u32,
    dp: &mut dyn Dataplane,
    out: &mut Output,
) {
    if subsys >= SUBSYS_COUNT {
        out.unicast.push(ack(opts, begin, EINVAL, None));
        return;
    }
    if subsys != SUBSYS_NFTABLES {
        // No other subsystem here has commit/abort.
        out.unicast.push(ack(opts, begin, EOPNOTSUPP, None));
        return;
    }
    if genid != 0 && genid != ns.genid {
        out.unicast.push(ack(opts, begin, ERESTART, None));
        return;
    }
    let mut do_mode = ValidateDo {
        tables: Default::default(),
        new_tables: ns.validate_sticky,
    };
    let mut forced_failure = false;
    let mut replays = 0;
    loop {
        let mut acks: Vec<(Req<'d>, MsgErr)> = Vec::new();
        if begin.flags & NLM_F_ACK != 0 {
            acks.push((*begin, MsgErr::from(0)));
        }
        let pass = run_pass(ns, caller, rest, subsys, do_mode.clone(), &*dp);
        acks.extend(pass.acks.iter().copied());
        let failure = pass.failure || forced_failure;
        let mut immediate: Option<(Req<'d>, i32)> = None;
        if pass.end.is_some() && !failure {
            match commit(
                ns,
                caller,
                pass.rs,
                pass.log,
                &pass.validate_need,
                &pass.bound_anon,
                pass.first,
                dp,
                out,
            ) {
                Ok(()) => {
                    if let Some(end) = pass.end {
                        if end.flags & NLM_F_ACK != 0 {
                            acks.push((end, MsgErr::from(0)));
                        }
                    }
                }
                Err(CommitErr::Validate(tables)) if replays == 0 => {
                    ns.validate_sticky = true;
                    // `-EAGAIN` from commit: replay the batch validating as it goes, so
                    // that the error lands on the message that caused it.
                    replays += 1;
                    do_mode = ValidateDo {
                        tables,
                        new_tables: true,
                    };
                    continue;
                }
                Err(CommitErr::Validate(_)) => {
                    if let Some(f) = pass.first {
                        immediate = Some((f, ELOOP));
                    }
                }
                Err(CommitErr::Errno(e)) => {
                    if let Some(f) = pass.first {
                        immediate = Some((f, e));
                    }
                }
            }
        } else if !failure && replays == 0 {
            // Abort without END (`nft -c`): validate, and replay to report what fails.
            let tables = validate_tables(&pass.rs, &pass.validate_need);
            if !tables.is_empty() {
                replays += 1;
                forced_failure = true;
                do_mode = ValidateDo {
                    tables,
                    new_tables: true,
                };
                continue;
            }
        }
        if let Some((req, e)) = immediate {
            out.unicast.push(ack(opts, &req, e, None));
        }
        for (req, e) in acks {
            out.unicast.push(ack_ext(opts, &req, &e));
        }
        return;
    }
}

/// The message loop of `nfnetlink_rcv_batch`, against a fresh copy of the ruleset.
fn run_pass<'d>(
    ns: &mut Netns,
    caller: &Caller,
    rest: &'d [u8],
    subsys: u16,
    do_mode: ValidateDo,
    dp: &dyn Dataplane,
) -> Pass<'d> {
    let now = ns.now_ms();
    let mut tx = Txn::new(ns.ruleset.clone(), &mut ns.counters, do_mode, now);
    let mut acks = Vec::new();
    let mut failure = false;
    let mut end = None;
    let mut first = None;
    let mut rest = rest;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0) as usize;
        if len < NLMSG_HDRLEN || rest.len() < len || len < NLMSG_HDRLEN + 4 {
            // Malformed: drop the errors gathered so far and abort.
            acks.clear();
            failure = true;
            break;
        }
        let req = Req::new(&rest[..len]);
        rest = &rest[netlink_proto::attr::align4(len).min(rest.len())..];
        if first.is_none() {
            first = Some(req);
        }
        let mut res = batch_msg(&mut tx, caller, &req, subsys);
        if req.msg_type & 0xff == NFT_MSG_NEWRULE {
            if let BatchStep::Done(Ok(_)) = res {
                if let Some(e) = check_new_rule(&tx, caller, dp) {
                    res = BatchStep::Done(Err(e.errno.abs().into()));
                }
            }
        }
        match res {
            BatchStep::Begin => {
                acks.clear();
                failure = true;
                break;
            }
            BatchStep::End => {
                end = Some(req);
                break;
            }
            BatchStep::Done(r) => {
                let err = r.err();
                if req.flags & NLM_F_ACK != 0 || err.is_some() {
                    let e = err.unwrap_or(MsgErr::from(0));
                    acks.push((req, e));
                    if e.errno != 0 {
                        failure = true;
                    }
                }
            }
        }
    }
    let validate_need = std::mem::take(&mut tx.validate_need);
    let bound_anon = std::mem::take(&mut tx.bound_anon);
    Pass {
        acks,
        failure,
        end,
        first,
        rs: tx.rs,
        log: tx.log,
        validate_need,
        bound_anon,
    }
}

/// The data plane's verdict on the rule the last message added.
fn check_new_rule(
    tx: &Txn<'_>,
    caller: &Caller,
    dp: &dyn Dataplane,
) -> Option<crate::DataplaneError> {
    let last = tx.log.last()?;
    let txn::TransKind::NewRule { chain, handle, .. } = &last.kind else {
        return None;
    };
    let table = tx.rs.table_by_handle(last.table)?;
    let chain = table.chains.iter().find(|c| c.handle == *chain)?;
    // From the end: most rules are appended.
    let rule = chain.rules.iter().rev().find(|r| r.handle == *handle)?;
    dp.check_rule(
        &crate::view::RulesetView::new(&tx.rs),
        table,
        chain,
        rule,
        caller,
    )
    .err()
}

enum BatchStep {
    Begin,
    End,
    Done(MsgResult),
}

/// One message inside a batch: the checks of `nfnetlink_rcv_batch`, then the handler.
fn batch_msg(tx: &mut Txn<'_>, caller: &Caller, req: &Req<'_>, subsys: u16) -> BatchStep {
    if req.flags & NLM_F_REQUEST == 0 {
        return BatchStep::Done(Err(EINVAL.into()));
    }
    match req.msg_type {
        NFNL_MSG_BATCH_BEGIN => return BatchStep::Begin,
        NFNL_MSG_BATCH_END => return BatchStep::End,
        t if t < NLMSG_MIN_TYPE => return BatchStep::Done(Err(EINVAL.into())),
        _ => {}
    }
    if req.msg_type >> 8 != subsys {
        return BatchStep::Done(Err(EINVAL.into()));
    }
    let Some((policy, kind)) = nft_callback(req.msg_type & 0xff) else {
        return BatchStep::Done(Err(EINVAL.into()));
    };
    if kind != CbKind::Batch {
        return BatchStep::Done(Err(EINVAL.into()));
    }
    let (tb, leftover) = nla::parse_msg(req.attr_bytes(), (NLMSG_HDRLEN + 4) as u32, policy);
    let tb = match tb {
        Ok(tb) => tb,
        Err(e) => return BatchStep::Done(Err(e)),
    };
    let msg = Msg {
        req: *req,
        tb,
        meta: Meta::from_req(req, caller.portid),
    };
    BatchStep::Done(dispatch(tx, &msg).map_err(|e| leftover_msg(e, leftover)))
}

/// An error after a parse that left bytes over carries that parse's message, unless
/// something set another.
fn leftover_msg(mut e: MsgErr, leftover: bool) -> MsgErr {
    if leftover && e.msg.is_none() {
        e.msg = Some(nla::LEFTOVER_MSG);
    }
    e
}

fn dispatch(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    match m.meta.msg_type {
        NFT_MSG_NEWTABLE => table::new(tx, m),
        NFT_MSG_DELTABLE | NFT_MSG_DESTROYTABLE => table::del(tx, m),
        NFT_MSG_NEWCHAIN => chain::new(tx, m),
        NFT_MSG_DELCHAIN | NFT_MSG_DESTROYCHAIN => chain::del(tx, m),
        NFT_MSG_NEWRULE => rule::new(tx, m),
        NFT_MSG_DELRULE | NFT_MSG_DESTROYRULE => rule::del(tx, m),
        NFT_MSG_NEWSET => set::new(tx, m),
        NFT_MSG_DELSET | NFT_MSG_DESTROYSET => set::del(tx, m),
        NFT_MSG_NEWSETELEM => set::new_elems(tx, m),
        NFT_MSG_DELSETELEM | NFT_MSG_DESTROYSETELEM => set::del_elems(tx, m),
        NFT_MSG_NEWOBJ => obj::new(tx, m),
        NFT_MSG_DELOBJ | NFT_MSG_DESTROYOBJ => obj::del(tx, m),
        NFT_MSG_NEWFLOWTABLE => flowtable::new(tx, m),
        NFT_MSG_DELFLOWTABLE | NFT_MSG_DESTROYFLOWTABLE => flowtable::del(tx, m),
        _ => Err(EINVAL.into()),
    }
}

enum CommitErr {
    /// Validation failed in these tables (`-EAGAIN`: replay).
    Validate(std::collections::BTreeSet<u64>),
    Errno(i32),
}

/// Tables whose validation fails, among those that need it.
fn validate_tables(
    rs: &Ruleset,
    need: &std::collections::BTreeSet<u64>,
) -> std::collections::BTreeSet<u64> {
    rs.tables
        .iter()
        .filter(|t| need.contains(&t.handle))
        .filter(|t| validate::table(t).is_err())
        .map(|t| t.handle)
        .collect()
}

/// `nf_tables_commit`, then the notifications and the new generation's NEWGEN.
#[allow(clippy::too_many_arguments)]
fn commit(
    ns: &mut Netns,
    caller: &Caller,
    rs: Ruleset,
    log: Vec<Trans>,
    validate_need: &std::collections::BTreeSet<u64>,
    bound_anon: &std::collections::HashSet<(u64, u64)>,
    first: Option<Req<'_>>,
    dp: &mut dyn Dataplane,
    out: &mut Output,
) -> Result<(), CommitErr> {
    if log.is_empty() {
        return Ok(());
    }
    // Anonymous sets and binding chains created in this batch must have been bound.
    for t in &log {
        if let txn::TransKind::NewSet {
            handle,
            update: false,
            ..
        } = &t.kind
        {
            if let Some(tab) = rs.table_by_handle(t.table) {
                if let Some(s) = tab.sets.iter().find(|s| s.handle == *handle) {
                    if s.is_anonymous() && !bound_anon.contains(&(tab.handle, s.handle)) {
                        return Err(CommitErr::Errno(EINVAL));
                    }
                }
            }
        }
        if let txn::TransKind::NewChain {
            handle,
            update: false,
            ..
        } = &t.kind
        {
            if let Some(tab) = rs.table_by_handle(t.table) {
                if let Some(c) = tab.chains.iter().find(|c| c.handle == *handle) {
                    if c.is_binding() && !c.bound {
                        return Err(CommitErr::Errno(EINVAL));
                    }
                }
            }
        }
    }
    let failed = validate_tables(&rs, validate_need);
    if !failed.is_empty() {
        return Err(CommitErr::Validate(failed));
    }
    if let Err(e) = dp.check(&crate::view::RulesetView::new(&rs)) {
        return Err(CommitErr::Errno(e.errno.abs()));
    }
    // Bump the generation; 0 is skipped.
    let mut g = ns.genid.wrapping_add(1);
    if g == 0 {
        g = 1;
    }
    ns.genid = g;
    ns.validate_sticky = false;
    let notes = txn::notifications(&rs, &log, g);
    ns.ruleset = rs;
    dp.apply_checked(&crate::view::RulesetView::new(&ns.ruleset));
    send_notifications(caller, notes, out);
    // NEWGEN goes to the group and, if the first message asked for an echo, to the sender.
    let (seq, report) = first
        .map(|f| (f.seq, f.flags & NLM_F_ECHO != 0))
        .unwrap_or((0, false));
    let gen = dump::gen_msg(g, caller.pid, &caller.comm, seq, caller.portid);
    deliver(caller, report, gen, out);
    Ok(())
}

/// `nft_commit_notify`: notifications batched into records of up to NLMSG_GOODSIZE,
/// a new record whenever the echo flag changes.
fn send_notifications(caller: &Caller, notes: Vec<txn::Notification>, out: &mut Output) {
    let mut batch: Vec<u8> = Vec::new();
    let mut batch_report = false;
    for n in notes {
        if !batch.is_empty()
            && (batch.len() + n.msg.len() >= NLMSG_GOODSIZE || n.report != batch_report)
        {
            deliver(caller, batch_report, std::mem::take(&mut batch), out);
        }
        if batch.is_empty() {
            batch_report = n.report;
        }
        batch.extend_from_slice(&n.msg);
    }
    if !batch.is_empty() {
        deliver(caller, batch_report, batch, out);
    }
}

/// `nfnetlink_send` / `nlmsg_notify`: to the group (minus the sender when echoing), and
/// to the sender when it asked for an echo.
fn deliver(caller: &Caller, report: bool, record: Vec<u8>, out: &mut Output) {
    let group = netlink_proto::consts::NFNLGRP_NFTABLES;
    if report {
        out.push_multicast(group, record.clone(), Some(caller.portid));
        out.unicast.push(record);
    } else {
        out.push_multicast(group, record, None);
    }
}

/// Packs dump messages into records and closes the dump with DONE in a record of its own.
pub fn dump_records(messages: Vec<Vec<u8>>, seq: u32, portid: u32, out: &mut Output) {
    out.unicast
        .extend(pack(messages, crate::wire::DUMP_RECORD_MAX));
    out.unicast.push(crate::wire::done(seq, portid));
}
