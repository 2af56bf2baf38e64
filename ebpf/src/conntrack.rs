//! Connection tracking, as the data plane models it (bpf/lib/conntrack.h has the rules
//! and what is simplified), written again in plain Rust as the reference for tests, and
//! the timeouts both use.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::fields::{CtConn, CtCounters, CtFields, L3Fields, PacketFields};
use crate::ir::{ct_state, ct_status};

/// Conntrack timeouts in seconds (the kernel's defaults by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    /// Established before any reply (a connection picked up mid-stream).
    pub tcp_unack: u32,
    pub udp_unreplied: u32,
    pub udp_replied: u32,
    pub icmp: u32,
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 5 * 24 * 3600,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            tcp_unack: 300,
            udp_unreplied: 30,
            udp_replied: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

impl Timeouts {
    /// As `cfg.ct_timeout[]` (`enum ns_ct_timeout`).
    pub fn to_config(self) -> [u32; 16] {
        let mut t = [0u32; 16];
        t[0] = self.tcp_syn_sent;
        t[1] = self.tcp_syn_recv;
        t[2] = self.tcp_established;
        t[3] = self.tcp_fin_wait;
        t[4] = self.tcp_close_wait;
        t[5] = self.tcp_last_ack;
        t[6] = self.tcp_time_wait;
        t[7] = self.tcp_close;
        t[8] = self.udp_unreplied;
        t[9] = self.udp_replied;
        t[10] = self.icmp;
        t[11] = self.generic;
        t[12] = self.tcp_unack;
        t
    }

    fn tcp(&self, state: TcpState) -> u32 {
        match state {
            TcpState::SynSent | TcpState::SynSent2 | TcpState::None => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TcpState {
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    SynSent2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    To(TcpState),
    Invalid,
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcpKind {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
}

/// tcp_error()'s flag check and the packet's kind; `None` for invalid combinations.
fn tcp_kind(flags: u8) -> Option<TcpKind> {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    // ECE, CWR and PSH do not matter.
    match flags & !(0x40 | 0x80 | 0x08) {
        f if f == SYN || f == SYN | URG => Some(TcpKind::Syn),
        f if f == SYN | ACK => Some(TcpKind::SynAck),
        f if f == RST || f == RST | ACK => Some(TcpKind::Rst),
        f if f == FIN | ACK || f == FIN | ACK | URG => Some(TcpKind::Fin),
        f if f == ACK || f == ACK | URG => Some(TcpKind::Ack),
        _ => None,
    }
}

/// nf_conntrack_proto_tcp's transitions.
fn tcp_next(reply: bool, kind: TcpKind, state: TcpState) -> Next {
    use Next::{Ignore as IG, Invalid as IV};
    use TcpState::*;
    let to = Next::To;
    match (reply, kind) {
        (false, TcpKind::Syn) => match state {
            None | SynSent | TimeWait | Close => to(SynSent),
            SynSent2 => to(SynSent2),
            _ => IG,
        },
        (false, TcpKind::SynAck) => match state {
            SynRecv | SynSent2 => to(SynRecv),
            _ => IV,
        },
        (_, TcpKind::Fin) => match state {
            None | SynSent | SynSent2 => IV,
            SynRecv | Established => to(FinWait),
            FinWait | CloseWait | LastAck => to(LastAck),
            TimeWait => to(TimeWait),
            Close => to(Close),
        },
        (false, TcpKind::Ack) => match state {
            None | SynRecv | Established => to(Established),
            SynSent | SynSent2 => IV,
            FinWait | CloseWait => to(CloseWait),
            LastAck | TimeWait => to(TimeWait),
            Close => to(Close),
        },
        (_, TcpKind::Rst) => match state {
            None => IV,
            _ => to(Close),
        },
        (true, TcpKind::Syn) => match state {
            SynSent | SynSent2 => to(SynSent2),
            TimeWait => to(SynSent),
            _ => IV,
        },
        (true, TcpKind::SynAck) => match state {
            None => IV,
            SynSent | SynSent2 => to(SynRecv),
            _ => IG,
        },
        (true, TcpKind::Ack) => match state {
            None => IV,
            SynSent | SynSent2 => IG,
            SynRecv => to(SynRecv),
            Established => to(Established),
            FinWait | CloseWait => to(CloseWait),
            LastAck | TimeWait => to(TimeWait),
            Close => to(Close),
        },
    }
}

/// One flow, whichever way a packet goes: the endpoint that opened it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: u8,
    /// ICMP: the query type (the id is in both ports).
    query: u8,
    orig: (IpAddr, u16),
    reply: (IpAddr, u16),
}

impl FlowKey {
    /// The connection's tuples, for a packet going the reply way or not.
    fn conn(&self, reply: bool, icmp_code: u8) -> CtConn {
        let icmp = (self.query != 0).then(|| {
            let answer = match self.query {
                8 => 0,
                q => q + 1,
            };
            (self.query, answer, icmp_code)
        });
        CtConn::new(
            reply,
            self.orig.0,
            self.reply.0,
            self.proto,
            (self.orig.1, self.reply.1),
            icmp,
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    expires: u64,
    stream_ts: u64,
    status: u32,
    mark: u32,
    tcp: TcpState,
    /// ICMP: the code of the query that opened it (part of its tuples).
    icmp_code: u8,
    /// Created while accounting was on.
    counters: Option<CtCounters>,
}

impl Conn {
    /// nf_ct_acct_update(): the packet of `len` bytes going the `reply` way.
    fn count(&mut self, reply: bool, len: u32) {
        if let Some(n) = &mut self.counters {
            n.packets[reply as usize] += 1;
            n.bytes[reply as usize] += len as u64;
        }
    }
}

/// The flow of a packet: its key as sent (original direction) or as answered.
#[derive(Clone, Copy, Debug)]
struct Tuple {
    proto: u8,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    query: u8,
    /// An ICMP reply: its flow is keyed from the other side.
    icmp_reply: bool,
}

impl Tuple {
    fn as_sent(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            query: self.query,
            orig: self.src,
            reply: self.dst,
        }
    }

    fn as_answer(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            query: self.query,
            orig: self.dst,
            reply: self.src,
        }
    }
}

/// The ICMP query type of a query or reply type, and whether it is the reply.
fn icmp_query(v6: bool, ty: u8) -> Option<(u8, bool)> {
    match (v6, ty) {
        (false, 8 | 13 | 15 | 17) | (true, 128 | 139) => Some((ty, false)),
        (false, 0) => Some((8, true)),
        (false, 14 | 16 | 18) | (true, 129 | 140) => Some((ty - 1, true)),
        _ => None,
    }
}

fn has_ports(proto: u8) -> bool {
    crate::fields::PORT_PROTOCOLS.contains(&proto)
}

/// What tracking decided for the packet being evaluated, to finish after the chains.
#[derive(Clone, Debug)]
pub struct Tracked {
    pub fields: CtFields,
    /// The connection the packet belongs to, if any.
    key: Option<FlowKey>,
    /// A new connection, inserted when the packet is accepted.
    pending: Option<Conn>,
}

/// A fragmented datagram: addresses, protocol, identification.
type FragKey = (IpAddr, IpAddr, u8, u32);

/// The connection table.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    pub timeouts: Timeouts,
    /// nf_conntrack_acct: connections created while it is on keep counters. Loading a
    /// rule that reads them turns it on for good (nft_ct_get_init()).
    pub acct: bool,
    table: HashMap<FlowKey, Conn>,
    /// What the first fragment of a datagram got: its state and connection (with the
    /// first fragment's direction).
    fragments: HashMap<FragKey, (u32, Option<FlowKey>, Option<CtConn>)>,
}

const NSEC: u64 = 1_000_000_000;

impl Tracker {
    pub fn new(timeouts: Timeouts) -> Self {
        Tracker {
            timeouts,
            acct: false,
            table: HashMap::new(),
            fragments: HashMap::new(),
        }
    }

    /// Connections in the table (expired ones included until a packet finds them).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn deadline(&self, now: u64, secs: u32) -> u64 {
        now + secs as u64 * NSEC
    }

    /// Tracks one packet at time `now` (ns), before the chains run. Later fragments
    /// get what their datagram's first fragment got.
    pub fn track(&mut self, p: &PacketFields, now: u64) -> Tracked {
        let datagram = match (&p.l3, p.l4proto, p.fragment_id) {
            (L3Fields::V4 { saddr, daddr }, Some(proto), Some(id)) => {
                Some(((*saddr).into(), (*daddr).into(), proto, id))
            }
            (L3Fields::V6 { saddr, daddr }, Some(proto), Some(id)) => {
                Some(((*saddr).into(), (*daddr).into(), proto, id))
            }
            _ => None,
        };
        if p.later_fragment {
            let first = datagram.and_then(|d| self.fragments.get(&d).copied());
            let Some((state, key, tuples)) = first else {
                return Tracked {
                    fields: CtFields::default(),
                    key: None,
                    pending: None,
                };
            };
            let conn = key
                .and_then(|k| self.table.get(&k))
                .filter(|c| c.expires > now);
            return Tracked {
                fields: CtFields {
                    state,
                    status: conn.map_or(0, |c| c.status),
                    mark: conn.map_or(0, |c| c.mark),
                    conn: tuples,
                    counters: conn.and_then(|c| c.counters),
                },
                key,
                pending: None,
            };
        }
        let tracked = self.track_packet(p, now);
        if let Some(d) = datagram {
            self.fragments
                .insert(d, (tracked.fields.state, tracked.key, tracked.fields.conn));
        }
        tracked
    }

    fn track_packet(&mut self, p: &PacketFields, now: u64) -> Tracked {
        let invalid = Tracked {
            fields: CtFields::default(),
            key: None,
            pending: None,
        };
        let (src, dst, v6) = match p.l3 {
            L3Fields::V4 { saddr, daddr } => (IpAddr::V4(saddr), IpAddr::V4(daddr), false),
            L3Fields::V6 { saddr, daddr } => (IpAddr::V6(saddr), IpAddr::V6(daddr), true),
            L3Fields::None => return invalid,
        };
        let Some(proto) = p.l4proto else {
            return invalid;
        };
        let icmp = proto == if v6 { 58 } else { 1 };
        let mut tcp = None;
        let tuple = if icmp {
            // Conntrack needs the whole 8-byte header, whatever the type.
            let (Some(ty), Some(id)) = (p.icmp_type, p.icmp_id) else {
                return invalid;
            };
            if v6 && ((130..=136).contains(&ty) || ty == 143) {
                return Tracked {
                    fields: CtFields {
                        state: ct_state::UNTRACKED,
                        ..CtFields::default()
                    },
                    ..invalid
                };
            }
            let error = if v6 {
                (1..=4).contains(&ty)
            } else {
                matches!(ty, 3 | 4 | 5 | 11 | 12)
            };
            if error {
                return self.related(p, dst, now).unwrap_or(invalid);
            }
            let Some((query, icmp_reply)) = icmp_query(v6, ty) else {
                return invalid;
            };
            Tuple {
                proto,
                src: (src, id),
                dst: (dst, id),
                query,
                icmp_reply,
            }
        } else {
            let (sport, dport) = if has_ports(proto) {
                match p.ports {
                    Some(ports) => ports,
                    None => return invalid,
                }
            } else {
                (0, 0)
            };
            if proto == 6 {
                match p.tcp_flags.and_then(tcp_kind) {
                    Some(kind) => tcp = Some(kind),
                    None => return invalid,
                }
            }
            Tuple {
                proto,
                src: (src, sport),
                dst: (dst, dport),
                query: 0,
                icmp_reply: false,
            }
        };

        // The connection this packet belongs to, and whether it goes the reply way.
        let found = if tuple.icmp_reply {
            let key = tuple.as_answer();
            self.table.get(&key).map(|_| (key, true))
        } else if let Some(_c) = self.table.get(&tuple.as_sent()) {
            Some((tuple.as_sent(), false))
        } else if tuple.query == 0 && self.table.contains_key(&tuple.as_answer()) {
            Some((tuple.as_answer(), true))
        } else {
            None
        };
        let found = found.filter(|(key, _)| {
            if self.table[key].expires <= now {
                self.table.remove(key);
                false
            } else {
                true
            }
        });

        if let Some((key, reply)) = found {
            match self.update(key, reply, proto, tcp, p.len, now) {
                Some(fields) => {
                    return Tracked {
                        fields,
                        key: Some(key),
                        pending: None,
                    }
                }
                None if tcp == Some(TcpKind::Syn) && self.reopens(&key, reply) => {
                    self.table.remove(&key);
                }
                None => return invalid,
            }
        }
        if tuple.icmp_reply {
            return invalid;
        }
        let code = if icmp { p.icmp_code } else { 0 };
        self.new_conn(tuple, tcp, code, p.len, now)
            .unwrap_or(invalid)
    }

    fn reopens(&self, key: &FlowKey, reply: bool) -> bool {
        let conn = &self.table[key];
        conn.tcp >= TcpState::TimeWait
            && conn.tcp != TcpState::SynSent2
            && matches!(
                tcp_next(reply, TcpKind::Syn, conn.tcp),
                Next::To(TcpState::SynSent)
            )
    }

    fn new_conn(
        &self,
        tuple: Tuple,
        tcp: Option<TcpKind>,
        icmp_code: u8,
        len: u32,
        now: u64,
    ) -> Option<Tracked> {
        let t = &self.timeouts;
        let (tcp_state, expires) = match tcp {
            Some(kind) => match tcp_next(false, kind, TcpState::None) {
                Next::To(TcpState::SynSent) => {
                    (TcpState::SynSent, self.deadline(now, t.tcp_syn_sent))
                }
                Next::To(TcpState::Established) => (
                    TcpState::Established,
                    self.deadline(now, t.tcp_established.min(t.tcp_unack)),
                ),
                _ => return None,
            },
            None if tuple.proto == 17 || tuple.proto == 136 => {
                (TcpState::None, self.deadline(now, t.udp_unreplied))
            }
            None if tuple.query != 0 => (TcpState::None, self.deadline(now, t.icmp)),
            None => (TcpState::None, self.deadline(now, t.generic)),
        };
        let mut conn = Conn {
            expires,
            stream_ts: now + 2 * NSEC,
            status: 0,
            mark: 0,
            tcp: tcp_state,
            icmp_code,
            counters: self.acct.then(CtCounters::default),
        };
        conn.count(false, len);
        Some(Tracked {
            fields: CtFields {
                state: ct_state::NEW,
                status: 0,
                mark: 0,
                conn: Some(tuple.as_sent().conn(false, icmp_code)),
                counters: conn.counters,
            },
            key: Some(tuple.as_sent()),
            pending: Some(conn),
        })
    }

    /// A packet of an existing connection; `None` when it is invalid for it.
    fn update(
        &mut self,
        key: FlowKey,
        reply: bool,
        proto: u8,
        tcp: Option<TcpKind>,
        len: u32,
        now: u64,
    ) -> Option<CtFields> {
        let t = self.timeouts;
        let conn = self.table.get_mut(&key)?;
        let before = conn.status;
        let state = if reply || before & ct_status::SEEN_REPLY != 0 {
            ct_state::ESTABLISHED
        } else {
            ct_state::NEW
        };
        let mut kill = false;
        // nf_ct_refresh_acct() counts; an ignored TCP packet returns before it.
        let mut counted = true;
        if let Some(kind) = tcp {
            let old = conn.tcp;
            match tcp_next(reply, kind, old) {
                Next::Invalid => return None,
                Next::To(TcpState::SynSent)
                    if old >= TcpState::TimeWait && old != TcpState::SynSent2 =>
                {
                    return None
                }
                Next::Ignore => counted = false,
                Next::To(new)
                    if before & ct_status::SEEN_REPLY == 0
                        && kind == TcpKind::Syn
                        && old == TcpState::SynSent =>
                {
                    // A SYN retransmitted (either way) before any reply: the kernel
                    // neither renews the timeout nor counts it, so that a reused
                    // port cannot keep the entry alive.
                    conn.tcp = new;
                    counted = false;
                }
                Next::To(new) => {
                    conn.tcp = new;
                    let mut timeout = if kind == TcpKind::Rst {
                        t.tcp_close
                    } else {
                        t.tcp(new)
                    };
                    if before & ct_status::SEEN_REPLY == 0 {
                        if new == TcpState::Established && timeout > t.tcp_unack {
                            timeout = t.tcp_unack;
                        }
                        kill = kind == TcpKind::Rst;
                    } else if before & ct_status::ASSURED == 0
                        && matches!(old, TcpState::SynRecv | TcpState::Established)
                        && new == TcpState::Established
                    {
                        conn.status |= ct_status::ASSURED;
                    }
                    conn.expires = now + timeout as u64 * NSEC;
                }
            }
        } else if proto == 17 || proto == 136 {
            let mut timeout = t.udp_unreplied;
            if before & ct_status::SEEN_REPLY != 0 && now > conn.stream_ts {
                timeout = t.udp_replied;
                conn.status |= ct_status::ASSURED;
            }
            conn.expires = now + timeout as u64 * NSEC;
        } else {
            let timeout = if key.query != 0 { t.icmp } else { t.generic };
            conn.expires = now + timeout as u64 * NSEC;
        }
        if counted {
            conn.count(reply, len);
        }
        if reply {
            conn.status |= ct_status::SEEN_REPLY;
        }
        let fields = CtFields {
            state,
            status: conn.status,
            mark: conn.mark,
            conn: Some(key.conn(reply, conn.icmp_code)),
            counters: conn.counters,
        };
        if kill {
            self.table.remove(&key);
        }
        Some(fields)
    }

    /// An ICMP error: RELATED to the connection of the packet it quotes.
    fn related(&self, p: &PacketFields, outer_dst: IpAddr, now: u64) -> Option<Tracked> {
        let inner = p.inner?;
        if inner.saddr != outer_dst {
            return None;
        }
        let v6 = inner.saddr.is_ipv6();
        let tuple = if inner.l4proto == if v6 { 58 } else { 1 } {
            let (query, icmp_reply) = icmp_query(v6, inner.icmp_type?)?;
            Tuple {
                proto: inner.l4proto,
                src: (inner.saddr, inner.sport),
                dst: (inner.daddr, inner.sport),
                query,
                icmp_reply,
            }
        } else {
            Tuple {
                proto: inner.l4proto,
                src: (inner.saddr, inner.sport),
                dst: (inner.daddr, inner.dport),
                query: 0,
                icmp_reply: false,
            }
        };
        let key = [tuple.as_sent(), tuple.as_answer()]
            .into_iter()
            .filter(|k| tuple.query == 0 || (*k == tuple.as_answer()) == tuple.icmp_reply)
            .find(|k| self.table.get(k).is_some_and(|c| c.expires > now))?;
        let conn = &self.table[&key];
        // The error answers the quoted packet: it goes the other way of the connection.
        let reply = key == tuple.as_sent();
        Some(Tracked {
            fields: CtFields {
                state: ct_state::RELATED,
                status: conn.status,
                mark: conn.mark,
                conn: Some(key.conn(reply, conn.icmp_code)),
                // Not counted: conntrack attaches an error without refreshing.
                counters: conn.counters,
            },
            key: Some(key),
            pending: None,
        })
    }

    /// After the chains: a new connection whose packet was accepted is confirmed, and a
    /// `ct mark set` (the final `fields.mark`) is written to the connection.
    pub fn commit(&mut self, tracked: &Tracked, accepted: bool) {
        let Some(key) = tracked.key else {
            return;
        };
        match tracked.pending {
            Some(mut conn) => {
                if accepted {
                    conn.status = ct_status::CONFIRMED;
                    conn.mark = tracked.fields.mark;
                    self.table.insert(key, conn);
                }
            }
            None => {
                if let Some(conn) = self.table.get_mut(&key) {
                    conn.mark = tracked.fields.mark;
                }
            }
        }
    }
}
