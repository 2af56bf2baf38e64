//! What rules can see of one packet: the fields the BPF parser (bpf/lib/parse.h)
//! extracts, as plain Rust values. The reference evaluator and the map simulator read
//! this; tests build a real frame from it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Transport protocols whose first four header bytes are source and destination port.
pub const PORT_PROTOCOLS: [u8; 5] = [
    6,   /* TCP */
    17,  /* UDP */
    136, /* UDP-Lite */
    132, /* SCTP */
    33,  /* DCCP */
];
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// `PacketFields::default()` is a non-IP packet with nothing set, for
/// `PacketFields { l3, .., ..Default::default() }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketFields {
    pub l3: L3Fields,
    /// The transport protocol (`meta l4proto`): known for IPv4, and for IPv6 when the
    /// extension header chain could be walked as the kernel's `ipv6_find_hdr` does
    /// (not truncated, and no extension header after a later fragment).
    pub l4proto: Option<u8>,
    /// Source and destination port, when the transport header carries them and is there.
    pub ports: Option<(u16, u16)>,
    /// ICMP (on IPv4) or ICMPv6 (on IPv6) type, when that header is there.
    pub icmp_type: Option<u8>,
    /// Its code (0 when the header is not there).
    pub icmp_code: u8,
    /// Input and output ifindex, 0 when there is none.
    pub iif: u32,
    pub oif: u32,
    pub mark: u32,
    /// What conntrack says about the packet (before the chains run).
    pub ct: CtFields,
    /// TCP flags, when the whole 20-byte TCP header is there.
    pub tcp_flags: Option<u8>,
    /// The ICMP/ICMPv6 identifier field, when the whole 8-byte header is there.
    pub icmp_id: Option<u16>,
    /// An ICMP error's quoted packet, when its addresses and 8 transport bytes are there
    /// (and, on IPv6, no extension header precedes its transport header).
    pub inner: Option<InnerTuple>,
    /// A fragment other than the first (no transport header).
    pub later_fragment: bool,
    /// Any fragment: the datagram's identification (IPv4 16 bits, IPv6 32), when there.
    pub fragment_id: Option<u32>,
    /// Bytes from the network header on (what byte counters, quotas and byte limits
    /// count, as skb->len at the nf_tables hooks).
    pub len: u32,
    /// The header bytes residual programs read ([`crate::residual`]); without them
    /// every payload load fails.
    pub headers: Option<crate::residual::Headers>,
}

/// The transport tuple of the packet an ICMP error quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InnerTuple {
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub l4proto: u8,
    /// Ports, or (ICMP) the id in both.
    pub sport: u16,
    pub dport: u16,
    /// ICMP/ICMPv6 quoted: its type.
    pub icmp_type: Option<u8>,
}

/// The `ct` fields rules can test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtFields {
    /// One of the [`crate::ir::ct_state`] bits.
    pub state: u32,
    /// [`crate::ir::ct_status`] bits of the connection (0 without one).
    pub status: u32,
    /// The connection's mark (0 without one).
    pub mark: u32,
    /// The connection's tuples and the packet's direction (with a connection).
    pub conn: Option<CtConn>,
    /// The connection's counters (this packet counted), when it has them.
    pub counters: Option<CtCounters>,
}

/// A connection's accounting (nf_conn_acct), per direction (`IP_CT_DIR_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtCounters {
    pub packets: [u64; 2],
    /// From the network header on, as [`PacketFields::len`].
    pub bytes: [u64; 2],
}

impl CtCounters {
    /// nft_ct_get_eval()'s packets, bytes or avgpkt of direction `d`, or of both.
    fn value(&self, key: crate::residual::CtKey, d: usize, both: bool) -> u64 {
        use crate::residual::CtKey::*;
        let (packets, bytes) = if both {
            (
                self.packets[0] + self.packets[1],
                self.bytes[0] + self.bytes[1],
            )
        } else {
            (self.packets[d], self.bytes[d])
        };
        match key {
            Packets { .. } => packets,
            Bytes { .. } => bytes,
            _ => bytes.checked_div(packets).unwrap_or(0),
        }
    }
}

/// A connection's tuples as nf_conntrack stores them, and the packet's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtConn {
    /// The packet goes the reply way (IP_CT_DIR_REPLY).
    pub reply: bool,
    /// The original tuple's source and destination address.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// `src.u.all` and `dst.u.all` of the original tuple then of the reply tuple
    /// (network order): ports, ICMP id and type/code, or 0.
    pub l4: [[u8; 4]; 2],
}

impl CtConn {
    /// The tuples of a connection from `src` to `dst` of `proto`, opened by a packet
    /// with ports `sport`, `dport` (ICMP queries: the id in both, and `icmp` the
    /// query's type and code, with its reply's type).
    pub fn new(
        reply: bool,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        (sport, dport): (u16, u16),
        icmp: Option<(u8, u8, u8)>,
    ) -> CtConn {
        let [s0, s1] = sport.to_be_bytes();
        let [d0, d1] = dport.to_be_bytes();
        let l4 = match icmp {
            Some((query, answer, code)) => [[s0, s1, query, code], [s0, s1, answer, code]],
            // The protocols nf_conntrack keys by ports (DCCP has no tracker in 6.18).
            None if matches!(proto, 6 | 17 | 136 | 132) => [[s0, s1, d0, d1], [d0, d1, s0, s1]],
            None => [[0; 4]; 2],
        };
        CtConn {
            reply,
            src,
            dst,
            proto,
            l4,
        }
    }
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl CtFields {
    /// The value nft_ct_get_eval() stores for `key` (of the reply tuple with `reply`),
    /// `None` when it breaks.
    pub fn key_value(&self, key: crate::residual::CtKey, reply: bool) -> Option<Vec<u8>> {
        use crate::residual::CtKey::*;
        if key == State {
            return Some(self.state.to_ne_bytes().to_vec());
        }
        let c = self.conn.filter(|_| self.has_conn())?;
        let v4 = c.src.is_ipv4();
        let d = reply as usize;
        // Direction d's tuple: the original one, or it inverted.
        let (src, dst) = if reply {
            (c.dst, c.src)
        } else {
            (c.src, c.dst)
        };
        Some(match key {
            State => unreachable!(),
            Direction => vec![c.reply as u8],
            Status => self.status.to_ne_bytes().to_vec(),
            Mark => self.mark.to_ne_bytes().to_vec(),
            Helper => return None,
            L3Protocol => vec![if v4 { 2 } else { 10 }],
            Protocol => vec![c.proto],
            ProtoSrc => c.l4[d][..2].to_vec(),
            ProtoDst => c.l4[d][2..].to_vec(),
            Labels => vec![0; 16],
            Zone => vec![0; 2],
            Src => addr_bytes(src),
            Dst => addr_bytes(dst),
            SrcIp | DstIp if !v4 => return None,
            SrcIp6 | DstIp6 if v4 => return None,
            SrcIp | SrcIp6 => addr_bytes(src),
            DstIp | DstIp6 => addr_bytes(dst),
            HasCounters => {
                self.counters?;
                vec![1]
            }
            Packets { .. } | Bytes { .. } | Avgpkt { .. } => self
                .counters
                .map_or(0, |n| n.value(key, d, key.both()))
                .to_ne_bytes()
                .to_vec(),
        })
    }

    /// The packet belongs to a connection (new, established or related); without one
    /// `ct mark` and `ct status` match nothing, as nft_ct_get_eval() breaks then.
    pub fn has_conn(&self) -> bool {
        use crate::ir::ct_state::{ESTABLISHED, NEW, RELATED};
        self.state & (NEW | ESTABLISHED | RELATED) != 0
    }
}

impl Default for CtFields {
    /// No connection: what nf_tables sees without conntrack.
    fn default() -> Self {
        CtFields {
            state: crate::ir::ct_state::INVALID,
            status: 0,
            mark: 0,
            conn: None,
            counters: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum L3Fields {
    /// Not IPv4 or IPv6 (ARP, or a malformed IP header).
    #[default]
    None,
    V4 {
        saddr: Ipv4Addr,
        daddr: Ipv4Addr,
    },
    V6 {
        saddr: Ipv6Addr,
        daddr: Ipv6Addr,
    },
}

impl PacketFields {
    /// Source and destination port if this is a port-carrying protocol with its header.
    pub fn transport_ports(&self) -> Option<(u16, u16)> {
        match self.l4proto {
            Some(proto) if PORT_PROTOCOLS.contains(&proto) => self.ports,
            _ => None,
        }
    }

    /// The ICMP type if this is an IPv4 ICMP packet with its header.
    pub fn icmpv4_type(&self) -> Option<u8> {
        match (&self.l3, self.l4proto) {
            (L3Fields::V4 { .. }, Some(IPPROTO_ICMP)) => self.icmp_type,
            _ => None,
        }
    }

    /// What residual programs read besides header bytes.
    pub fn meta_values(&self) -> crate::residual::MetaValues {
        crate::residual::MetaValues {
            len: self.len,
            nfproto: match self.l3 {
                L3Fields::V4 { .. } => 2,
                L3Fields::V6 { .. } => 10,
                L3Fields::None => 0,
            },
            l4proto: self.l4proto,
            mark: self.mark,
            ct: self.ct,
        }
    }

    /// The ICMPv6 type if this is an IPv6 ICMPv6 packet with its header.
    pub fn icmpv6_type(&self) -> Option<u8> {
        match (&self.l3, self.l4proto) {
            (L3Fields::V6 { .. }, Some(IPPROTO_ICMPV6)) => self.icmp_type,
            _ => None,
        }
    }
}
