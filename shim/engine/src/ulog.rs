//! NFNL_SUBSYS_ULOG: the listener side of nfnetlink_log (`nfulnl_recv_config`).
//!
//! A socket binds a log group (NFULNL_CFG_CMD_BIND) and configures it (copy mode and
//! range, flush timeout, queue threshold, buffer size, flags); the instance goes away
//! with NFULNL_CFG_CMD_UNBIND or when its socket closes (`nfulnl_rcv_nl_event`).
//! The answers are the kernel's: EBUSY for a second bind by the owner, EPERM for any
//! request about a group another socket bound, ENODEV without an instance, ENOTSUPP
//! for unknown commands and for NFULNL_MSG_PACKET sent by userspace.
//!
//! Instances are not persisted: like the kernel's, they live as long as their socket,
//! and a daemon restart closes every socket.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::errno::*;
use crate::nla::{self, Pol};
use crate::wire::Req;
use crate::Caller;

/// `NFNL_SUBSYS_ULOG`, the high byte of its message types.
pub const SUBSYS_ULOG: u16 = 4;

const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
/// `NFULNL_MSG_MAX`: message types at or above it are EINVAL (`nfnetlink_find_client`).
const NFULNL_MSG_MAX: u16 = 2;

const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_NLBUFSIZ: u16 = 3;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULA_CFG_FLAGS: u16 = 6;

const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_CFG_CMD_UNBIND: u8 = 2;
const NFULNL_CFG_CMD_PF_BIND: u8 = 3;
const NFULNL_CFG_CMD_PF_UNBIND: u8 = 4;

pub const NFULNL_COPY_NONE: u8 = 0;
pub const NFULNL_COPY_META: u8 = 1;
pub const NFULNL_COPY_PACKET: u8 = 2;

pub const NFULNL_CFG_F_SEQ: u16 = 1;
pub const NFULNL_CFG_F_SEQ_GLOBAL: u16 = 2;
pub const NFULNL_CFG_F_CONNTRACK: u16 = 4;

/// The kernel's `ENOTSUPP` (not a userspace errno, yet what the listener reads).
const ENOTSUPP: i32 = 524;
/// `NFPROTO_NUMPROTO`: PF_BIND/PF_UNBIND of a higher family is EINVAL.
const NFPROTO_NUMPROTO: u8 = 13;

/// `NFULNL_TIMEOUT_DEFAULT`, in hundredths of a second.
pub const TIMEOUT_DEFAULT: u32 = 100;
/// `NFULNL_QTHRESH_DEFAULT`.
pub const QTHRESH_DEFAULT: u32 = 100;
/// `NFULNL_NLBUFSIZ_DEFAULT` = NLMSG_GOODSIZE on this machine (4 KiB pages).
pub const NLBUFSIZ_DEFAULT: u32 = crate::wire::NLMSG_GOODSIZE as u32;
/// `NFULNL_COPY_RANGE_MAX`: the payload attribute's 16-bit length minus its header.
pub const COPY_RANGE_MAX: u32 = 0xffff - 4;

/// `nfula_cfg_policy`, parsed with maxtype NFULA_CFG_MAX (higher attributes ignored).
/// CMD and MODE are NLA_UNSPEC with a minimum length (the structs' sizes).
const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::MinLen(1),
    Pol::MinLen(6),
    Pol::U32,
    Pol::U32,
    Pol::U32,
    // NLA_POLICY_MASK(NLA_BE16, ...) in the source, yet this kernel accepts other bits.
    Pol::U16,
];

/// `nfgenmsg.res_id` (big endian): the log group of a config request.
fn res_id(req: &Req<'_>) -> u16 {
    match req.payload().get(2..4) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// One bound group (`struct nfulnl_instance`'s configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub peer_portid: u32,
    pub copy_mode: u8,
    pub copy_range: u32,
    pub flushtimeout: u32,
    pub qthreshold: u32,
    pub nlbufsiz: u32,
    pub flags: u16,
}

impl Instance {
    fn new(peer_portid: u32) -> Self {
        Instance {
            peer_portid,
            copy_mode: NFULNL_COPY_PACKET,
            copy_range: COPY_RANGE_MAX,
            flushtimeout: TIMEOUT_DEFAULT,
            qthreshold: QTHRESH_DEFAULT,
            nlbufsiz: NLBUFSIZ_DEFAULT,
            flags: 0,
        }
    }

    /// `nfulnl_set_mode`; an unknown mode changes nothing (its EINVAL is ignored).
    fn set_mode(&mut self, mode: u8, range: u32) {
        match mode {
            NFULNL_COPY_NONE | NFULNL_COPY_META => {
                self.copy_mode = mode;
                self.copy_range = 0;
            }
            NFULNL_COPY_PACKET => {
                self.copy_mode = mode;
                let range = if range == 0 { COPY_RANGE_MAX } else { range };
                self.copy_range = range.min(COPY_RANGE_MAX);
            }
            _ => {}
        }
    }

    /// `nfulnl_set_nlbufsiz`; its ERANGE is ignored too.
    fn set_nlbufsiz(&mut self, size: u32) {
        if (NLBUFSIZ_DEFAULT..=131072).contains(&size) {
            self.nlbufsiz = size;
        }
    }
}

/// The log groups of one namespace, by group number.
#[derive(Clone, Debug, Default)]
pub struct Instances {
    groups: BTreeMap<u16, Instance>,
    /// Each group's sequence number and queued messages.
    states: BTreeMap<u16, packet::InstanceState>,
    /// `log->global_seq`: NFULA_SEQ_GLOBAL, counted over the namespace's groups.
    global_seq: u32,
}

/// A datagram for a listener: its port id and the bytes.
pub type ToListener = (u32, Vec<u8>);

impl Instances {
    pub fn get(&self, group: u16) -> Option<&Instance> {
        self.groups.get(&group)
    }

    /// `nfulnl_rcv_nl_event` (NETLINK_URELEASE): the socket's instances go (what
    /// they queued has nowhere to go).
    pub fn socket_closed(&mut self, portid: u32) {
        let gone: Vec<u16> = self
            .groups
            .iter()
            .filter(|(_, i)| i.peer_portid == portid)
            .map(|(g, _)| *g)
            .collect();
        for g in gone {
            self.groups.remove(&g);
            self.states.remove(&g);
        }
    }

    /// `nfulnl_log_packet`: nothing without a listener bound to the group; else the
    /// message is queued, and what must go out now is returned.
    pub fn log_packet(&mut self, pkt: &packet::LogPacket, now: Instant) -> Vec<ToListener> {
        let Some(inst) = self.groups.get(&pkt.group) else {
            return Vec::new();
        };
        let st = self.states.entry(pkt.group).or_default();
        packet::log_packet(inst, pkt.group, st, &mut self.global_seq, pkt, now)
            .into_iter()
            .map(|d| (inst.peer_portid, d))
            .collect()
    }

    /// The bytes of the packet a message to `group` would carry now (None: no
    /// listener).
    pub fn payload_needed(&self, pkt: &packet::LogPacket) -> Option<usize> {
        let inst = self.groups.get(&pkt.group)?;
        Some(packet::payload_needed(inst, pkt))
    }

    /// The flush timers that fired by `now`: their queues go out.
    pub fn flush_expired(&mut self, now: Instant) -> Vec<ToListener> {
        let mut out = Vec::new();
        for (g, st) in self.states.iter_mut() {
            if packet::deadline(st).is_some_and(|d| d <= now) {
                if let (Some(inst), Some(d)) = (self.groups.get(g), packet::flush(st)) {
                    out.push((inst.peer_portid, d));
                }
            }
        }
        out
    }

    /// The next flush timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.states.values().filter_map(packet::deadline).min()
    }

    /// Whether some group has a listener.
    pub fn any_bound(&self) -> bool {
        !self.groups.is_empty()
    }

    /// One NFNL_SUBSYS_ULOG request outside a batch. Messages an unbound instance
    /// had queued go to its listener (the sender) before the answer.
    pub fn handle(
        &mut self,
        caller: &Caller,
        req: &Req<'_>,
        flushed: &mut Vec<Vec<u8>>,
    ) -> Result<(), MsgErr> {
        match req.msg_type & 0xff {
            NFULNL_MSG_PACKET => Err(ENOTSUPP.into()),
            NFULNL_MSG_CONFIG => self.config(caller, req, flushed),
            t if t >= NFULNL_MSG_MAX => Err(EINVAL.into()),
            _ => Err(EINVAL.into()),
        }
    }

    /// `nfulnl_recv_config`.
    fn config(
        &mut self,
        caller: &Caller,
        req: &Req<'_>,
        flushed: &mut Vec<Vec<u8>>,
    ) -> Result<(), MsgErr> {
        let tb = nla::parse(req.attr_bytes(), 20, POLICY)?;
        let group = res_id(req);
        let cmd = tb.get(NFULA_CFG_CMD).map(|a| a.value[0]);
        match cmd {
            Some(NFULNL_CFG_CMD_PF_BIND) | Some(NFULNL_CFG_CMD_PF_UNBIND) => {
                // nf_log_bind_pf: nfnetlink_log is registered for every family, so
                // binding succeeds; what it selects (the logger of loginfo-less
                // nf_log_packet calls) nothing here uses. PF_UNBIND never fails.
                if cmd == Some(NFULNL_CFG_CMD_PF_BIND) && req.family() >= NFPROTO_NUMPROTO {
                    return Err(EINVAL.into());
                }
                return Ok(());
            }
            _ => {}
        }
        if let Some(inst) = self.groups.get(&group) {
            if inst.peer_portid != caller.portid {
                return Err(EPERM.into());
            }
        }
        let flags = tb.get(NFULA_CFG_FLAGS).map(|a| a.be16());
        // Conntrack attributes need ctnetlink's builder, which the daemon does not have:
        // the kernel's answer when nf_conntrack_netlink is not loaded.
        if flags.is_some_and(|f| f & NFULNL_CFG_F_CONNTRACK != 0) {
            return Err(EOPNOTSUPP.into());
        }
        match cmd {
            Some(NFULNL_CFG_CMD_BIND) => {
                if self.groups.contains_key(&group) {
                    return Err(EBUSY.into());
                }
                self.groups.insert(group, Instance::new(caller.portid));
                self.states.remove(&group);
            }
            Some(NFULNL_CFG_CMD_UNBIND) => {
                // __instance_destroy flushes the queue to the listener.
                if let Some(d) = self.states.remove(&group).as_mut().and_then(packet::flush) {
                    flushed.push(d);
                }
                return match self.groups.remove(&group) {
                    Some(_) => Ok(()),
                    None => Err(ENODEV.into()),
                };
            }
            Some(_) => {
                // The kernel looked the instance up first: ENOTSUPP even without one.
                return Err(ENOTSUPP.into());
            }
            None => {}
        }
        let inst = self.groups.get_mut(&group).ok_or(MsgErr::from(ENODEV))?;
        if let Some(m) = tb.get(NFULA_CFG_MODE) {
            let range = u32::from_be_bytes([m.value[0], m.value[1], m.value[2], m.value[3]]);
            inst.set_mode(m.value[4], range);
        }
        if let Some(t) = tb.be32(NFULA_CFG_TIMEOUT) {
            inst.flushtimeout = t;
        }
        if let Some(s) = tb.be32(NFULA_CFG_NLBUFSIZ) {
            inst.set_nlbufsiz(s);
        }
        if let Some(q) = tb.be32(NFULA_CFG_QTHRESH) {
            inst.qthreshold = q;
        }
        if let Some(f) = flags {
            inst.flags = f;
        }
        Ok(())
    }
}

pub mod packet;

#[cfg(test)]
mod tests;
