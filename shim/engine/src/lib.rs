//! The kernel's side of nf_tables for one network namespace, as a pure state machine.
//!
//! The daemon owns one [`Netns`] per network namespace and feeds it every datagram a
//! client sends ([`Netns::handle_datagram`]). What comes back is what the kernel would
//! have put on the wire: unicast records for the sender (each ACK/error a record of its
//! own, dump parts packed into records), and multicast records for NFNLGRP_NFTABLES.
//! Enforcement is behind [`Dataplane`]: every commit is checked, then applied.
//!
//! Module map (one concern each, mirroring the kernel's files):
//! - `nfnl`: `nfnetlink_rcv`: datagrams, batches, ACKs, commit/abort, replay;
//! - `txn`: the transaction of one batch (next-generation ruleset and its log) and the
//!   notifications it produces at commit;
//! - `table`, `chain`, `rule`, `set`, `obj`, `flowtable`: the message
//!   handlers of `nf_tables_api.c`, one module per object family;
//! - [`expr`]: expression types (init checks, references, the kernel's dump form);
//! - `validate`: commit-time validation (jump depth/loops, per-expression hooks);
//! - `dump`: the `nf_tables_fill_*_info` message builders shared by dumps, gets and
//!   notifications; `get`: GET requests and dumps;
//! - [`compat`]: the NFNL_SUBSYS_NFT_COMPAT revision query; `xt`: the xtables
//!   extensions behind nft_compat's `match`/`target` (existence per family, generic
//!   checks measured on this kernel, checkentry of the common ones);
//! - [`view`]: the read-only ruleset view handed to the [`Dataplane`].

pub mod compat;
mod counts;
pub mod dataplane;
pub mod errno;
pub mod expr;
mod expr_dump;
mod expr_init;
pub mod msg;
pub mod nla;
pub mod state;
pub mod ulog;
pub mod view;
pub mod wire;

mod chain;
mod dump;
mod flowtable;
mod get;
mod nfnl;
mod obj;
mod rule;
mod set;
mod table;
mod txn;
mod validate;
mod xt;

pub use dataplane::{
    CountDelta, CounterRef, Dataplane, DataplaneError, DataplaneStats, NflogSink, NoDataplane,
};
pub use view::RulesetView;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use state::Ruleset;

/// Who sent a datagram, as the kernel would know it from the socket.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Netlink port id of the sending socket (`nlmsg_pid` of replies).
    pub portid: u32,
    /// Process id and command name, for NFTA_GEN_PROC_PID / NFTA_GEN_PROC_NAME.
    pub pid: u32,
    pub comm: String,
    /// NETLINK_EXT_ACK and NETLINK_CAP_ACK as set on the socket.
    pub ext_ack: bool,
    pub cap_ack: bool,
    /// CAP_NET_ADMIN over the namespace; without it every message gets EPERM.
    pub net_admin: bool,
    /// The process is not in the initial cgroup namespace, so a cgroup path it names
    /// (`-m cgroup --path`) is resolved below its namespace's root, not the global one.
    pub private_cgroupns: bool,
    /// The network namespace is owned by a user namespace other than the initial one,
    /// so ids in rules (`-m owner --uid-owner`) are mapped through it.
    pub netns_private_userns: bool,
}

/// What the kernel would send in answer to one datagram.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Records (datagrams) for the sender, in order.
    pub unicast: Vec<Vec<u8>>,
    /// Records for members of a multicast group: (group number, record).
    pub multicast: Vec<(u32, Vec<u8>)>,
    /// For each entry of `multicast`, a port id that must not receive it: the kernel's
    /// `nlmsg_notify` skips the sender of an NLM_F_ECHO request, who gets the same
    /// record by unicast instead.
    pub multicast_skip_portid: Vec<Option<u32>>,
    /// Whether the persisted state changed: a commit, but also what the kernel keeps
    /// without a new generation (handles consumed by aborted batches, counter and quota
    /// resets, elements removed on timeout). The daemon saves the state when set.
    pub state_changed: bool,
}

impl Output {
    fn push_multicast(&mut self, group: u32, record: Vec<u8>, skip: Option<u32>) {
        self.multicast.push((group, record));
        self.multicast_skip_portid.push(skip);
    }
}

/// Counters the kernel never rolls back on abort: table handles of the namespace, and
/// the handle generator of each table (`table->hgenerator`), keyed by table handle.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub table_handle: u64,
    pub hgen: BTreeMap<u64, u64>,
    /// Names of anonymous binding chains (`__chain%llu`).
    pub chain_id: u64,
}

impl Counters {
    pub fn alloc_handle(&mut self, table_handle: u64) -> u64 {
        let h = self.hgen.entry(table_handle).or_insert(0);
        *h += 1;
        *h
    }
}

/// One namespace's nf_tables state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Netns {
    ruleset: Ruleset,
    genid: u32,
    counters: Counters,
    /// `nft_net->validate_state == NFT_VALIDATE_DO`: set when a commit failed validation,
    /// cleared by the next commit. Tables created meanwhile validate every rule at once.
    #[serde(default)]
    validate_sticky: bool,
    /// Fixed wall clock (ms since the epoch) for tests; the system clock otherwise.
    #[serde(skip)]
    clock_ms: Option<u64>,
    /// Set by changes that do not show in genid/counters (resets, element timeouts).
    #[serde(skip)]
    dirty: bool,
    /// nfnetlink_log groups bound by this namespace's sockets (not persisted: they
    /// live as long as their sockets).
    #[serde(skip)]
    nflog: ulog::Instances,
}

impl Default for Netns {
    fn default() -> Self {
        // `nf_tables_init_net`: base_seq starts at 1.
        Netns {
            ruleset: Ruleset::default(),
            genid: 1,
            counters: Counters::default(),
            validate_sticky: false,
            clock_ms: None,
            dirty: false,
            nflog: ulog::Instances::default(),
        }
    }
}

impl Netns {
    /// The namespace's nfnetlink_log groups (their listeners and queues).
    pub fn nflog_mut(&mut self) -> &mut ulog::Instances {
        &mut self.nflog
    }

    pub fn new() -> Self {
        Netns::default()
    }

    /// Processes one datagram as `nfnetlink_rcv` does.
    pub fn handle_datagram(
        &mut self,
        caller: &Caller,
        datagram: &[u8],
        dataplane: &mut dyn Dataplane,
    ) -> Output {
        nfnl::rcv(self, caller, datagram, dataplane)
    }

    /// The sending socket `portid` was closed (NETLINK_URELEASE, `nft_rcv_nl_event`):
    /// tables it owns (NFT_TABLE_F_OWNER) go away with everything in them, without
    /// notifications or a new generation; tables that also have NFT_TABLE_F_PERSIST
    /// just lose their owner; the nfnetlink_log groups it bound are released. Returns
    /// whether the ruleset changed (the dataplane was then given the new ruleset).
    pub fn socket_closed(&mut self, portid: u32, dataplane: &mut dyn Dataplane) -> bool {
        self.nflog.socket_closed(portid);
        let mut changed = false;
        self.ruleset.tables.retain_mut(|t| {
            if !t.has_owner() || t.owner != portid {
                return true;
            }
            changed = true;
            if t.flags & crate::msg::NFT_TABLE_F_PERSIST != 0 {
                t.flags &= !netlink_proto::consts::NFT_TABLE_F_OWNER;
                t.owner = 0;
                return true;
            }
            false
        });
        if changed {
            dataplane.apply(&RulesetView::new(&self.ruleset));
        }
        changed
    }

    /// The current generation id.
    pub fn genid(&self) -> u32 {
        self.genid
    }

    /// The committed ruleset, read-only.
    pub fn view(&self) -> RulesetView<'_> {
        RulesetView::new(&self.ruleset)
    }

    /// Serialises the committed state for the state directory.
    pub fn to_persisted(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The same, as JSON text, without building a `serde_json::Value` on the way.
    pub fn to_persisted_raw(&self) -> Box<serde_json::value::RawValue> {
        serde_json::value::to_raw_value(self).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("null".into()).expect("valid JSON")
        })
    }

    /// Restores state written by [`Netns::to_persisted`] or [`Netns::to_persisted_raw`].
    pub fn from_persisted(v: serde_json::Value) -> Result<Netns, serde_json::Error> {
        serde_json::from_value(v)
    }

    /// Pins the wall clock used for element timeouts (tests).
    pub fn set_clock_ms(&mut self, now_ms: Option<u64>) {
        self.clock_ms = now_ms;
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock_ms.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        })
    }
}
