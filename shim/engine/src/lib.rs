//! The kernel's side of nf_tables for one network namespace, as a pure state machine.
//!
//! The daemon owns one [`Netns`] per network namespace and feeds it every datagram a
//! client sends ([`Netns::handle_datagram`]). What comes back is what the kernel would
//! have put on the wire: unicast records for the sender (each ACK/error a record of its
//! own, dump parts packed into records), and multicast records for NFNLGRP_NFTABLES.
//! Enforcement is behind [`Dataplane`]: every commit is checked, then applied.

pub mod dataplane;

pub use dataplane::{Dataplane, DataplaneError, NoDataplane};

use serde::{Deserialize, Serialize};

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
}

/// What the kernel would send in answer to one datagram.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Records (datagrams) for the sender, in order.
    pub unicast: Vec<Vec<u8>>,
    /// Records for members of a multicast group: (group number, record).
    pub multicast: Vec<(u32, Vec<u8>)>,
}

/// One namespace's nf_tables state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Netns {
    // filled by the engine
}

impl Netns {
    pub fn new() -> Self {
        Netns::default()
    }

    /// Processes one datagram as `nfnetlink_rcv` does.
    pub fn handle_datagram(
        &mut self,
        _caller: &Caller,
        _datagram: &[u8],
        _dataplane: &mut dyn Dataplane,
    ) -> Output {
        Output::default()
    }

    /// The current generation id.
    pub fn genid(&self) -> u32 {
        1
    }

    /// Serialises the committed state for the state directory.
    pub fn to_persisted(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Restores state written by [`Netns::to_persisted`].
    pub fn from_persisted(v: serde_json::Value) -> Result<Netns, serde_json::Error> {
        serde_json::from_value(v)
    }
}
