//! Frames for connection tracking and reject tests, written with etherparse, and the
//! fields a data plane should see in any frame, read back with etherparse's parser
//! (independent of bpf/lib/parse.h).

use std::net::IpAddr;

use etherparse::{
    IpNumber, NetSlice, PacketBuilder, PacketBuilderStep, SlicedPacket, TransportSlice,
};
use nftshim_ebpf::fields::{InnerTuple, L3Fields, PacketFields};
use nftshim_ebpf::residual::Headers;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

fn ip_step(src: IpAddr, dst: IpAddr) -> PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    }
}

pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP segment with these flags and 8 bytes of payload.
pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut step = ip_step(src, dst).tcp(sport, dport, 1000, 64000);
    if flags & FIN != 0 {
        step = step.fin();
    }
    if flags & SYN != 0 {
        step = step.syn();
    }
    if flags & RST != 0 {
        step = step.rst();
    }
    if flags & PSH != 0 {
        step = step.psh();
    }
    if flags & ACK != 0 {
        step = step.ack(1);
    }
    if flags & URG != 0 {
        step = step.urg(0);
    }
    let mut out = Vec::new();
    step.write(&mut out, &[0x55; 8]).unwrap();
    out
}

pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    ip_step(src, dst)
        .udp(sport, dport)
        .write(&mut out, &[0x55; 8])
        .unwrap();
    out
}

/// An ICMP (IPv4) or ICMPv6 (IPv6) message whose bytes 5-8 are the id and sequence 1,
/// with 12 bytes of payload (what a timestamp message needs).
pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, id: u16) -> Vec<u8> {
    let rest = [(id >> 8) as u8, id as u8, 0, 1];
    let mut out = Vec::new();
    let step = ip_step(src, dst);
    if src.is_ipv6() {
        step.icmpv6_raw(ty, 0, rest)
            .write(&mut out, &[0x55; 12])
            .unwrap();
    } else {
        step.icmpv4_raw(ty, 0, rest)
            .write(&mut out, &[0x55; 12])
            .unwrap();
    }
    out
}

/// An ICMP error from `src` to `dst` quoting the IP packet inside `quoted` (a frame),
/// as much of it as `quote_len` bytes.
pub fn icmp_error(
    src: IpAddr,
    dst: IpAddr,
    ty: u8,
    code: u8,
    quoted: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    let quote = &quoted[14..quoted.len().min(14 + quote_len)];
    let mut out = Vec::new();
    let step = ip_step(src, dst);
    if src.is_ipv6() {
        step.icmpv6_raw(ty, code, [0; 4])
            .write(&mut out, quote)
            .unwrap();
    } else {
        step.icmpv4_raw(ty, code, [0; 4])
            .write(&mut out, quote)
            .unwrap();
    }
    out
}

/// A packet of another IP protocol (no ports).
pub fn other(src: IpAddr, dst: IpAddr, proto: u8) -> Vec<u8> {
    let mut out = Vec::new();
    ip_step(src, dst)
        .write(&mut out, IpNumber(proto), &[0x55; 8])
        .unwrap();
    out
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// The tuple of the IP packet an ICMP error quotes, read the way conntrack needs it:
/// addresses, and 8 bytes of the transport header (IPv6: directly after the header).
fn inner_tuple(quote: &[u8], v6: bool) -> Option<InnerTuple> {
    let (saddr, daddr, proto, l4) = if v6 {
        if quote.len() < 40 || quote[0] >> 4 != 6 {
            return None;
        }
        let s: [u8; 16] = quote[8..24].try_into().unwrap();
        let d: [u8; 16] = quote[24..40].try_into().unwrap();
        (IpAddr::from(s), IpAddr::from(d), quote[6], &quote[40..])
    } else {
        if quote.len() < 20 || quote[0] >> 4 != 4 {
            return None;
        }
        let ihl = (quote[0] & 0xf) as usize * 4;
        if ihl < 20 || quote.len() < ihl {
            return None;
        }
        let s: [u8; 4] = quote[12..16].try_into().unwrap();
        let d: [u8; 4] = quote[16..20].try_into().unwrap();
        (IpAddr::from(s), IpAddr::from(d), quote[9], &quote[ihl..])
    };
    if l4.len() < 8 {
        return None;
    }
    let icmp = proto == if v6 { 58 } else { 1 };
    if icmp {
        let id = be16(&l4[4..]);
        Some(InnerTuple {
            saddr,
            daddr,
            l4proto: proto,
            sport: id,
            dport: id,
            icmp_type: Some(l4[0]),
        })
    } else if nftshim_ebpf::fields::PORT_PROTOCOLS.contains(&proto) {
        Some(InnerTuple {
            saddr,
            daddr,
            l4proto: proto,
            sport: be16(l4),
            dport: be16(&l4[2..]),
            icmp_type: None,
        })
    } else {
        None
    }
}

/// What rules see in a frame (no VLANs, no IPv6 extension headers, not fragmented).
pub fn fields_of(frame: &[u8], iif: u32, mark: u32) -> PacketFields {
    let sliced = SlicedPacket::from_ethernet(frame).expect("a well-formed frame");
    let mut f = PacketFields {
        l3: L3Fields::None,
        l4proto: None,
        ports: None,
        icmp_type: None,
        icmp_code: 0,
        iif,
        oif: 0,
        mark,
        ct: Default::default(),
        tcp_flags: None,
        icmp_id: None,
        inner: None,
        later_fragment: false,
        fragment_id: None,
        len: frame.len().saturating_sub(14) as u32,
        headers: None,
    };
    match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            f.l3 = L3Fields::V4 {
                saddr: ip.header().source_addr(),
                daddr: ip.header().destination_addr(),
            };
            f.l4proto = Some(ip.payload_ip_number().0);
        }
        Some(NetSlice::Ipv6(ip)) => {
            f.l3 = L3Fields::V6 {
                saddr: ip.header().source_addr(),
                daddr: ip.header().destination_addr(),
            };
            f.l4proto = Some(ip.payload().ip_number.0);
        }
        _ => return f,
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => {
            f.ports = Some((t.source_port(), t.destination_port()));
            f.tcp_flags = Some(t.slice()[13]);
        }
        Some(TransportSlice::Udp(u)) => {
            f.ports = Some((u.source_port(), u.destination_port()));
        }
        Some(TransportSlice::Icmpv4(i)) => {
            f.icmp_type = Some(i.type_u8());
            f.icmp_code = i.code_u8();
            f.icmp_id = Some(be16(&i.bytes5to8()));
            if matches!(i.type_u8(), 3 | 4 | 5 | 11 | 12) {
                f.inner = inner_tuple(i.payload(), false);
            }
        }
        Some(TransportSlice::Icmpv6(i)) => {
            f.icmp_type = Some(i.type_u8());
            f.icmp_code = i.code_u8();
            f.icmp_id = Some(be16(&i.bytes5to8()));
            if (1..=4).contains(&i.type_u8()) {
                f.inner = inner_tuple(i.payload(), true);
            }
        }
        _ => {}
    }
    // IPv4 fragments (the tests fragment only IPv4), which etherparse leaves
    // unparsed: flags, offset, id, and a first fragment's ports, by hand.
    if frame[12..14] == [8, 0] {
        let frag = be16(&frame[20..22]);
        if frag & 0x3fff != 0 {
            f.fragment_id = Some(be16(&frame[18..20]) as u32);
            if frag & 0x1fff != 0 {
                f.later_fragment = true;
            } else if nftshim_ebpf::fields::PORT_PROTOCOLS.contains(&frame[23]) {
                let l4 = &frame[14 + (frame[14] & 0xf) as usize * 4..];
                f.ports = Some((be16(l4), be16(&l4[2..])));
                if frame[23] == 6 && l4.len() >= 20 {
                    f.tcp_flags = Some(l4[13]);
                }
            }
        }
    }
    f
}

/// Splits an IPv4 UDP/TCP frame into two fragments: the first with the transport
/// header (rounded up to 8 bytes; more fragments set), the rest after it; both with
/// identification `id`.
pub fn fragment_v4(frame: &[u8], id: u16) -> (Vec<u8>, Vec<u8>) {
    let hdr = &frame[14..34];
    let data = &frame[34..];
    let l4_header: usize = if frame[23] == 6 { 20 } else { 8 };
    let l4_first = l4_header.div_ceil(8) * 8;
    let piece = |payload: &[u8], offset_units: u16, more: bool| {
        let mut ip = hdr.to_vec();
        ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        let flags = if more { 0x2000 } else { 0 } | offset_units;
        ip[6..8].copy_from_slice(&flags.to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let sum = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        [&frame[..14], &ip[..], payload].concat()
    };
    (
        piece(&data[..l4_first], 0, true),
        piece(&data[l4_first..], l4_first as u16 / 8, false),
    )
}

fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `frame` (Ethernet, IPv6) with a 16-byte AH header inserted after the IPv6 header.
pub fn with_ah(frame: &[u8]) -> Vec<u8> {
    let (eth, ip6, rest) = (&frame[..14], &frame[14..54], &frame[54..]);
    let mut ip6 = ip6.to_vec();
    let next = ip6[6];
    ip6[6] = 51;
    let plen = u16::from_be_bytes([ip6[4], ip6[5]]) + 16;
    ip6[4..6].copy_from_slice(&plen.to_be_bytes());
    // Next header, length in 4-byte units minus 2, reserved, SPI 1, sequence 1, 4 bytes of ICV.
    let ah = [next, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
    [eth, &ip6, &ah, rest].concat()
}

/// A UDP datagram (IPv4 or IPv6) carrying `payload`.
pub fn udp_carrying(payload: &[u8], v6: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let step = if v6 {
        eth.ipv6([0xfd; 16], [0xfe; 16], 64)
    } else {
        eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
    };
    let mut out = Vec::new();
    step.udp(4000, 53).write(&mut out, payload).unwrap();
    out
}

/// The fields of a `udp_carrying` frame, with the header copy the residual tests read.
pub fn fields_with_headers(frame: &[u8], v6: bool) -> PacketFields {
    let mut f = fields_of(frame, 0, 0);
    f.headers = Some(Headers {
        network: frame[14..].to_vec(),
        transport: Some(if v6 { 40 } else { 20 }),
        protocol: if v6 { 0x86dd } else { 0x0800 },
        ..Default::default()
    });
    f
}
