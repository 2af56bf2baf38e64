//! One batch's transaction: the next-generation ruleset the messages edit, the log of
//! what they did (the kernel's `commit_list`), and the notifications the log produces
//! when the batch commits.
//!
//! The kernel edits its live objects and marks them active in the next generation; here
//! the batch edits a copy of the committed ruleset, which replaces it on commit and is
//! dropped on abort. Lookups during the batch therefore see the next generation, as the
//! kernel's `genmask_next` lookups do.

use std::collections::BTreeSet;

use netlink_proto::extra::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};

use crate::dump;
use crate::msg::*;
use crate::nla::Tb;
use crate::state::{Chain, Elem, Flowtable, Obj, Rule, Ruleset, Set, Table};
use crate::wire::Req;
use crate::Counters;

pub use crate::errno::MsgErr;

pub type MsgResult = Result<(), MsgErr>;

/// What the kernel keeps of a message in its context (`struct nft_ctx`).
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub msg_type: u16,
    pub seq: u32,
    pub flags: u16,
    pub family: u8,
    pub portid: u32,
}

impl Meta {
    pub fn from_req(req: &Req<'_>, portid: u32) -> Self {
        Meta {
            msg_type: req.msg_type & 0xff,
            seq: req.seq,
            flags: req.flags,
            family: req.family(),
            portid,
        }
    }
    /// `nlmsg_report`: NLM_F_ECHO asks for the notifications by unicast.
    pub fn report(&self) -> bool {
        self.flags & NLM_F_ECHO != 0
    }
    /// Flags a notification carries: the request's CREATE/EXCL.
    pub fn notify_flags(&self) -> u16 {
        self.flags & (NLM_F_CREATE | NLM_F_EXCL)
    }
}

/// One handler call: the message, its parsed attributes, and who sent it.
pub struct Msg<'a> {
    pub req: Req<'a>,
    pub tb: Tb<'a>,
    pub meta: Meta,
}

/// What one message did, kept until commit (the kernel's `struct nft_trans`).
#[derive(Clone, Debug)]
pub enum TransKind {
    NewTable {
        update: bool,
    },
    DelTable {
        snapshot: Box<Table>,
    },
    NewChain {
        handle: u64,
        id: Option<u32>,
        snapshot: Box<Chain>,
        update: bool,
        hook_devs: Option<Vec<String>>,
    },
    DelChain {
        snapshot: Box<Chain>,
        hook_devs: Option<Vec<String>>,
    },
    NewRule {
        chain: u64,
        handle: u64,
        id: Option<u32>,
        snapshot: std::sync::Arc<Rule>,
    },
    DelRule {
        chain: String,
        snapshot: std::sync::Arc<Rule>,
        freed_sets: Vec<Set>,
    },
    NewSet {
        handle: u64,
        id: Option<u32>,
        snapshot: Box<Set>,
        update: bool,
    },
    DelSet {
        snapshot: Box<Set>,
    },
    NewSetElem {
        set: String,
        elem: Box<Elem>,
    },
    DelSetElem {
        set: String,
        elem: Box<Elem>,
    },
    NewObj {
        handle: u64,
        snapshot: Box<Obj>,
    },
    DelObj {
        snapshot: Box<Obj>,
    },
    NewFlowtable {
        handle: u64,
        snapshot: Box<Flowtable>,
        hook_devs: Option<Vec<String>>,
    },
    DelFlowtable {
        snapshot: Box<Flowtable>,
        hook_devs: Option<Vec<String>>,
    },
}

#[derive(Clone, Debug)]
pub struct Trans {
    pub meta: Meta,
    /// Handle of the table the transaction belongs to.
    pub table: u64,
    pub kind: TransKind,
}

/// Which tables validate their ruleset after every rule or element (`NFT_VALIDATE_DO`),
/// as the kernel does when it replays a batch whose commit-time validation failed.
#[derive(Clone, Debug, Default)]
pub struct ValidateDo {
    pub tables: BTreeSet<u64>,
    pub new_tables: bool,
}

pub struct Txn<'a> {
    pub rs: Ruleset,
    pub log: Vec<Trans>,
    pub counters: &'a mut Counters,
    /// Tables with rules or elements whose expressions need validation at commit.
    pub validate_need: BTreeSet<u64>,
    pub validate_do: ValidateDo,
    /// Tables created in this batch.
    pub new_tables: BTreeSet<u64>,
    /// Sets created in this batch: (table handle, set handle).
    pub new_sets: std::collections::HashSet<(u64, u64)>,
    /// Anonymous sets a rule of this batch bound: (table handle, set handle).
    pub bound_anon: std::collections::HashSet<(u64, u64)>,
    pub now_ms: u64,
}

impl<'a> Txn<'a> {
    pub fn new(
        rs: Ruleset,
        counters: &'a mut Counters,
        validate_do: ValidateDo,
        now_ms: u64,
    ) -> Self {
        Txn {
            rs,
            log: Vec::new(),
            counters,
            validate_need: BTreeSet::new(),
            validate_do,
            new_tables: BTreeSet::new(),
            new_sets: Default::default(),
            bound_anon: Default::default(),
            now_ms,
        }
    }

    pub fn push(&mut self, meta: Meta, table: u64, kind: TransKind) {
        self.log.push(Trans { meta, table, kind });
    }

    /// Whether the table validates after each change (replay of a failed validation).
    pub fn validates_each(&self, table: u64) -> bool {
        self.validate_do.tables.contains(&table)
            || (self.validate_do.new_tables && self.new_tables.contains(&table))
    }

    /// `nft_chain_lookup_byid`: a chain created in this batch with that NFTA_CHAIN_ID.
    pub fn chain_by_id(&self, table: u64, id: u32) -> Option<u64> {
        self.log.iter().find_map(|t| match &t.kind {
            TransKind::NewChain {
                handle,
                id: Some(i),
                update: false,
                ..
            } if t.table == table && *i == id => Some(*handle),
            _ => None,
        })
    }

    /// `nft_set_lookup_byid`: the newest set created in this batch with that NFTA_SET_ID.
    pub fn set_by_id(&self, table: u64, id: u32) -> Option<u64> {
        self.log.iter().rev().find_map(|t| match &t.kind {
            TransKind::NewSet {
                handle,
                id: Some(i),
                update: false,
                ..
            } if t.table == table && *i == id => Some(*handle),
            _ => None,
        })
    }

    /// `nft_rule_lookup_byid`: a rule created in this batch in that chain with that id.
    pub fn rule_by_id(&self, table: u64, chain: u64, id: u32) -> Option<u64> {
        self.log.iter().find_map(|t| match &t.kind {
            TransKind::NewRule {
                chain: c,
                handle,
                id: Some(i),
                ..
            } if t.table == table && *c == chain && *i == id => Some(*handle),
            _ => None,
        })
    }

    /// Whether a set has a binding (`!list_empty(&set->bindings)`). An anonymous set has
    /// exactly one, from the rule it was created for; committed ones are always bound.
    pub fn set_bound(&self, t: &Table, s: &Set) -> bool {
        if s.is_anonymous() {
            if self.new_sets.contains(&(t.handle, s.handle)) {
                self.bound_anon.contains(&(t.handle, s.handle))
            } else {
                true
            }
        } else {
            crate::set::is_bound(t, &s.name)
        }
    }

    pub fn alloc_handle(&mut self, table: u64) -> u64 {
        self.counters.alloc_handle(table)
    }
}

/// A notification message, and whether it was asked for by NLM_F_ECHO.
pub struct Notification {
    pub report: bool,
    pub msg: Vec<u8>,
}

/// Where the rules a batch added sit in their chains. A batch that adds a few rules
/// to a chain searches it from the end (where appended rules are) for each; one that
/// adds many indexes the chain by handle once, instead of searching it once per rule.
struct RulePositions {
    added: std::collections::HashMap<(u64, u64), usize>,
    index: std::collections::HashMap<(u64, u64), std::collections::HashMap<u64, usize>>,
}

impl RulePositions {
    /// Up to this many added rules per chain, each is searched for.
    const SEARCHED: usize = 16;

    fn new(log: &[Trans]) -> Self {
        let mut added = std::collections::HashMap::new();
        for t in log {
            if let TransKind::NewRule { chain, .. } = &t.kind {
                *added.entry((t.table, *chain)).or_insert(0) += 1;
            }
        }
        RulePositions {
            added,
            index: std::collections::HashMap::new(),
        }
    }

    fn find(&mut self, table: u64, chain: &Chain, handle: u64) -> Option<usize> {
        let key = (table, chain.handle);
        if self.added.get(&key).copied().unwrap_or(0) <= Self::SEARCHED {
            return chain.rules.iter().rposition(|r| r.handle == handle);
        }
        let index = self.index.entry(key).or_insert_with(|| {
            chain
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| (r.handle, i))
                .collect()
        });
        index.get(&handle).copied()
    }
}

/// Renders the notifications of a committed transaction, in log order, from the
/// committed ruleset (objects that no longer exist are shown as they were when the
/// message handled them).
pub fn notifications(rs: &Ruleset, log: &[Trans], genid: u32) -> Vec<Notification> {
    let res_id = (genid & 0xffff) as u16;
    let mut out = Vec::new();
    // Anonymous sets count in `table->use` until their own NEWSET is committed.
    let mut pending_anon: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut rule_positions = RulePositions::new(log);
    for t in log {
        if let TransKind::NewSet {
            snapshot,
            update: false,
            ..
        } = &t.kind
        {
            if snapshot.is_anonymous() {
                *pending_anon.entry(t.table).or_default() += 1;
            }
        }
    }
    for t in log {
        if let TransKind::NewSet {
            snapshot,
            update: false,
            ..
        } = &t.kind
        {
            if snapshot.is_anonymous() {
                if let Some(n) = pending_anon.get_mut(&t.table) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        let m = &t.meta;
        let mut push = |msg: Vec<u8>| {
            out.push(Notification {
                report: m.report(),
                msg,
            })
        };
        let table = rs.table_by_handle(t.table);
        match &t.kind {
            TransKind::NewTable { .. } => {
                if let Some(tab) = table {
                    let use_count =
                        dump::table_use(tab) + pending_anon.get(&t.table).copied().unwrap_or(0);
                    push(dump::table_msg_with_use(
                        tab,
                        NFT_MSG_NEWTABLE,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                        use_count,
                    ));
                }
            }
            TransKind::DelTable { snapshot } => {
                push(dump::table_msg(
                    snapshot,
                    NFT_MSG_DELTABLE,
                    m.notify_flags(),
                    m.seq,
                    m.portid,
                    res_id,
                ));
            }
            TransKind::NewChain {
                handle,
                snapshot,
                hook_devs,
                ..
            } => {
                // Policy, counters and name as this transaction left them (later updates
                // apply at their own commit step); the use count as the batch left it.
                if let Some(tab) = table {
                    let live = tab.chains.iter().find(|c| c.handle == *handle);
                    let use_count = dump::chain_use(tab, live.unwrap_or(snapshot));
                    push(dump::chain_msg_with_use(
                        tab,
                        snapshot,
                        NFT_MSG_NEWCHAIN,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                        hook_devs.as_deref(),
                        use_count,
                    ));
                }
            }
            TransKind::DelChain {
                snapshot,
                hook_devs,
            } => {
                if let Some(tab) = table.or_else(|| deleted_table(log, t.table)) {
                    push(dump::chain_msg(
                        tab,
                        snapshot,
                        NFT_MSG_DELCHAIN,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                        hook_devs.as_deref(),
                    ));
                }
            }
            TransKind::NewRule {
                chain,
                handle,
                snapshot,
                ..
            } => {
                if let Some(tab) = table {
                    if let Some(c) = tab.chains.iter().find(|c| c.handle == *chain) {
                        let pos = rule_positions.find(t.table, c, *handle);
                        let rule = pos.map(|p| &c.rules[p]).unwrap_or(snapshot);
                        // The kernel names the previous rule unless the new one is first or last.
                        let position = match pos {
                            Some(p) if p > 0 && p + 1 < c.rules.len() => c.rules[p - 1].handle,
                            _ => 0,
                        };
                        let mut flags = m.notify_flags();
                        if m.flags
                            & (netlink_proto::extra::NLM_F_APPEND
                                | netlink_proto::extra::NLM_F_REPLACE)
                            != 0
                        {
                            flags |= netlink_proto::extra::NLM_F_APPEND;
                        }
                        push(dump::rule_msg(
                            tab,
                            &c.name,
                            rule,
                            NFT_MSG_NEWRULE,
                            flags,
                            m.seq,
                            m.portid,
                            res_id,
                            position,
                        ));
                    }
                }
            }
            TransKind::DelRule {
                chain,
                snapshot,
                freed_sets,
            } => {
                if let Some(tab) = table.or_else(|| deleted_table(log, t.table)) {
                    let mut flags = m.notify_flags();
                    if m.flags
                        & (netlink_proto::extra::NLM_F_APPEND | netlink_proto::extra::NLM_F_REPLACE)
                        != 0
                    {
                        flags |= netlink_proto::extra::NLM_F_APPEND;
                    }
                    push(dump::rule_msg(
                        tab,
                        chain,
                        snapshot,
                        NFT_MSG_DELRULE,
                        flags,
                        m.seq,
                        m.portid,
                        res_id,
                        0,
                    ));
                    for s in freed_sets {
                        push(dump::set_msg(
                            tab,
                            s,
                            NFT_MSG_DELSET,
                            m.notify_flags(),
                            m.seq,
                            m.portid,
                            res_id,
                        ));
                    }
                }
            }
            TransKind::NewSet {
                handle, snapshot, ..
            } => {
                // The definition as of this transaction; the element count as the batch
                // left it.
                if let Some(tab) = table {
                    let live = tab
                        .sets
                        .iter()
                        .find(|s| s.handle == *handle)
                        .unwrap_or(snapshot);
                    push(dump::set_msg_counted(
                        tab,
                        snapshot,
                        dump::set_count(live),
                        NFT_MSG_NEWSET,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                    ));
                }
            }
            TransKind::DelSet { snapshot } => {
                if let Some(tab) = table.or_else(|| deleted_table(log, t.table)) {
                    push(dump::set_msg(
                        tab,
                        snapshot,
                        NFT_MSG_DELSET,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                    ));
                }
            }
            TransKind::NewSetElem { set, elem } => {
                if let Some(tab) = table {
                    if let Some(s) = tab.sets.iter().find(|s| &s.name == set) {
                        // `nf_tables_setelem_notify` sends sequence number 0.
                        push(dump::setelem_notify_msg(
                            tab,
                            s,
                            elem,
                            NFT_MSG_NEWSETELEM,
                            m.notify_flags(),
                            m.portid,
                            res_id,
                        ));
                    }
                }
            }
            TransKind::DelSetElem { set, elem } => {
                if let Some(tab) = table {
                    if let Some(s) = tab.sets.iter().find(|s| &s.name == set) {
                        push(dump::setelem_notify_msg(
                            tab,
                            s,
                            elem,
                            NFT_MSG_DELSETELEM,
                            m.notify_flags(),
                            m.portid,
                            res_id,
                        ));
                    }
                }
            }
            TransKind::NewObj { snapshot, .. } => {
                if let Some(tab) = table {
                    push(dump::obj_msg(
                        tab,
                        snapshot,
                        NFT_MSG_NEWOBJ,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                    ));
                }
            }
            TransKind::DelObj { snapshot } => {
                if let Some(tab) = table.or_else(|| deleted_table(log, t.table)) {
                    push(dump::obj_msg(
                        tab,
                        snapshot,
                        NFT_MSG_DELOBJ,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                    ));
                }
            }
            TransKind::NewFlowtable {
                handle,
                snapshot,
                hook_devs,
            } => {
                if let Some(tab) = table {
                    let ft = tab
                        .flowtables
                        .iter()
                        .find(|f| f.handle == *handle)
                        .unwrap_or(snapshot);
                    push(dump::flowtable_msg(
                        tab,
                        ft,
                        NFT_MSG_NEWFLOWTABLE,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                        hook_devs.as_deref(),
                    ));
                }
            }
            TransKind::DelFlowtable {
                snapshot,
                hook_devs,
            } => {
                if let Some(tab) = table.or_else(|| deleted_table(log, t.table)) {
                    push(dump::flowtable_msg(
                        tab,
                        snapshot,
                        NFT_MSG_DELFLOWTABLE,
                        m.notify_flags(),
                        m.seq,
                        m.portid,
                        res_id,
                        hook_devs.as_deref(),
                    ));
                }
            }
        }
    }
    out
}

/// The snapshot of a table deleted in the same batch (for its contents' notifications).
fn deleted_table(log: &[Trans], handle: u64) -> Option<&Table> {
    log.iter().find_map(|t| match &t.kind {
        TransKind::DelTable { snapshot } if snapshot.handle == handle => Some(snapshot.as_ref()),
        _ => None,
    })
}
