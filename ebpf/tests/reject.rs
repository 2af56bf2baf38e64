//! `reject` in the kernel with BPF_PROG_TEST_RUN: the answers' bytes, read back with
//! etherparse and checked field by field against nf_reject's rules, checksums verified
//! with an independent one's-complement sum; and the packets that get no answer.

mod common;

use std::net::IpAddr;

use common::frames::{self, addr, ACK, PSH, RST, SYN};
use common::load_or_skip;
use etherparse::{Ethernet2HeaderSlice, Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice};
use nftshim_ebpf::ir::{Action, Chain, IcmpxCode, L3Scope, Program, Reject, Rule, Verdict};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;

fn load(reject: Reject) -> Option<LoadedProgram> {
    let program = Program::single(Chain {
        scope: L3Scope::Netdev,
        policy: Verdict::Accept,
        rules: vec![Rule::new(vec![], Action::Reject(reject))],
    });
    load_or_skip(&compile_program(&program).unwrap(), LoadOptions::default())
}

/// The answers at TC and XDP, which must be the same frame; `None` when the packet was
/// dropped without one.
fn answer(loaded: &LoadedProgram, frame: &[u8]) -> Option<Vec<u8>> {
    let tc = loaded.run_tc(frame, SkbMeta::default(), 1).unwrap();
    let xdp = loaded.run_xdp(frame, 1).unwrap();
    assert_eq!(tc.verdict, Verdict::Drop);
    assert_eq!(xdp.verdict, Verdict::Drop);
    assert_eq!(tc.reply, xdp.reply, "TC and XDP answer alike");
    tc.reply
}

/// RFC 1071 sum of the 16-bit words (odd length padded), folded.
fn ones_sum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let bytes: Vec<u8> = chunks.concat();
    for pair in bytes.chunks(2) {
        let word = if pair.len() == 2 {
            u16::from_be_bytes([pair[0], pair[1]])
        } else {
            u16::from_be_bytes([pair[0], 0])
        };
        sum += word as u64;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The transport checksum over the pseudo header and `segment` is right.
fn transport_checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    let len = segment.len() as u32;
    let pseudo: Vec<u8> = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [
            &s.octets()[..],
            &d.octets(),
            &[0, proto],
            &(len as u16).to_be_bytes(),
        ]
        .concat(),
        (IpAddr::V6(s), IpAddr::V6(d)) => [
            &s.octets()[..],
            &d.octets(),
            &len.to_be_bytes(),
            &[0, 0, 0, proto],
        ]
        .concat(),
        _ => unreachable!(),
    };
    ones_sum(&[&pseudo, segment]) == 0xffff
}

/// Checks the link and network headers of an answer to `original`; returns the
/// network payload.
fn check_ip<'a>(answer: &'a [u8], original: &[u8], proto: u8) -> &'a [u8] {
    let eth = Ethernet2HeaderSlice::from_slice(answer).unwrap();
    assert_eq!(
        eth.destination(),
        original[6..12],
        "back to the sender's MAC"
    );
    assert_eq!(eth.source(), original[0..6]);
    let ip = &answer[14..];
    if ip[0] >> 4 == 4 {
        let h = Ipv4HeaderSlice::from_slice(ip).unwrap();
        let o = Ipv4HeaderSlice::from_slice(&original[14..]).unwrap();
        assert_eq!((h.source(), h.destination()), (o.destination(), o.source()));
        assert_eq!(h.protocol().0, proto);
        assert_eq!(h.ttl(), 64);
        assert_eq!(h.total_len() as usize, ip.len());
        assert_eq!(ones_sum(&[h.slice()]), 0xffff, "IPv4 header checksum");
        &ip[20..]
    } else {
        let h = Ipv6HeaderSlice::from_slice(ip).unwrap();
        let o = Ipv6HeaderSlice::from_slice(&original[14..]).unwrap();
        assert_eq!((h.source(), h.destination()), (o.destination(), o.source()));
        assert_eq!(h.next_header().0, proto);
        assert_eq!(h.hop_limit(), 64);
        assert_eq!(h.payload_length() as usize, ip.len() - 40);
        &ip[40..]
    }
}

fn ends(frame: &[u8]) -> (IpAddr, IpAddr) {
    let f = common::frames::fields_of(frame, 0, 0);
    match f.l3 {
        nftshim_ebpf::fields::L3Fields::V4 { saddr, daddr } => (daddr.into(), saddr.into()),
        nftshim_ebpf::fields::L3Fields::V6 { saddr, daddr } => (daddr.into(), saddr.into()),
        nftshim_ebpf::fields::L3Fields::None => unreachable!(),
    }
}

#[test]
fn tcp_resets_answer_segments_as_nf_send_reset_does() {
    let Some(loaded) = load(Reject::TcpReset) else {
        return;
    };
    for (a, b) in [
        (addr("10.0.0.1"), addr("10.0.0.2")),
        (addr("2001:db8::1"), addr("2001:db8::2")),
    ] {
        // A SYN with 8 bytes of payload (seq 1000): RST|ACK acking 1000 + 1 + 8.
        let syn = frames::tcp(a, b, 40000, 80, SYN);
        let reply = answer(&loaded, &syn).expect("a reset");
        let seg = check_ip(&reply, &syn, 6);
        let t = TcpHeaderSlice::from_slice(seg).unwrap();
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        assert!(t.rst() && t.ack() && !t.syn() && !t.fin());
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (0, 1009));
        assert_eq!((t.data_offset(), t.window_size(), seg.len()), (5, 0, 20));
        let (src, dst) = ends(&syn);
        assert!(transport_checksum_ok(src, dst, 6, seg), "TCP checksum");
        if a.is_ipv4() {
            let h = Ipv4HeaderSlice::from_slice(&reply[14..]).unwrap();
            assert!(h.dont_fragment());
        }

        // With ACK (ack number 1): a bare RST with that sequence number.
        let data = frames::tcp(a, b, 40000, 80, PSH | ACK);
        let reply = answer(&loaded, &data).expect("a reset");
        let seg = check_ip(&reply, &data, 6);
        let t = TcpHeaderSlice::from_slice(seg).unwrap();
        assert!(t.rst() && !t.ack());
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (1, 0));
        let (src, dst) = ends(&data);
        assert!(transport_checksum_ok(src, dst, 6, seg), "TCP checksum");

        // No reset for a reset, nor for something that is not TCP.
        assert_eq!(answer(&loaded, &frames::tcp(a, b, 40000, 80, RST)), None);
        assert_eq!(answer(&loaded, &frames::udp(a, b, 1, 2)), None);
    }
}

/// The ICMP answer's type and code, checksum-checked, and the quote it carries.
fn check_unreach(reply: &[u8], original: &[u8]) -> (u8, u8, Vec<u8>) {
    let v6 = original[12..14] == [0x86, 0xdd];
    let msg = check_ip(reply, original, if v6 { 58 } else { 1 });
    if v6 {
        let (src, dst) = ends(original);
        assert!(transport_checksum_ok(src, dst, 58, msg), "ICMPv6 checksum");
    } else {
        assert_eq!(ones_sum(&[msg]), 0xffff, "ICMP checksum");
        let tos = reply[15];
        assert_eq!(
            tos,
            0xc0 | (original[15] & 0x1e),
            "precedence internet control"
        );
    }
    assert_eq!(msg[4..8], [0; 4]);
    (msg[0], msg[1], msg[8..].to_vec())
}

#[test]
fn icmp_unreachables_quote_the_packet_with_the_rules_code() {
    let (a, b) = (addr("10.0.0.1"), addr("10.0.0.2"));
    let (a6, b6) = (addr("2001:db8::1"), addr("2001:db8::2"));
    let cases = [
        (Reject::Icmp(3), (3, 3), (1, 3)),
        (Reject::Icmp(10), (3, 10), (1, 10)),
        (Reject::Icmpx(IcmpxCode::PortUnreachable), (3, 3), (1, 4)),
        (Reject::Icmpx(IcmpxCode::AdminProhibited), (3, 13), (1, 1)),
        (Reject::Icmpx(IcmpxCode::NoRoute), (3, 0), (1, 0)),
        (Reject::Icmpx(IcmpxCode::HostUnreachable), (3, 1), (1, 3)),
    ];
    for (reject, v4_code, v6_code) in cases {
        let Some(loaded) = load(reject) else {
            return;
        };
        for (original, want) in [
            (frames::udp(a, b, 5000, 53), v4_code),
            (frames::tcp(a, b, 40000, 80, SYN), v4_code),
            (frames::icmp(a, b, 8, 1), v4_code),
            (frames::udp(a6, b6, 5000, 53), v6_code),
            (frames::icmp(a6, b6, 128, 1), v6_code),
        ] {
            let reply = answer(&loaded, &original).expect("an unreachable");
            let (ty, code, quote) = check_unreach(&reply, &original);
            assert_eq!((ty, code), want, "{reject:?}");
            assert_eq!(quote, original[14..], "the whole packet is quoted");
        }
    }
}

#[test]
fn quotes_are_cut_to_the_minimum_mtu() {
    let Some(loaded) = load(Reject::Icmpx(IcmpxCode::PortUnreachable)) else {
        return;
    };
    let big = |src: IpAddr, dst: IpAddr| {
        let mut out = Vec::new();
        let step = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => step.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => step.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!(),
        }
        .udp(5000, 53)
        .write(&mut out, &[0x77; 1400])
        .unwrap();
        out
    };
    let v4 = big(addr("10.0.0.1"), addr("10.0.0.2"));
    let reply = answer(&loaded, &v4).expect("an unreachable");
    assert_eq!(reply.len(), 14 + 576, "576 bytes of IPv4");
    let (_, _, quote) = check_unreach(&reply, &v4);
    assert_eq!(quote, v4[14..14 + 548]);

    let v6 = big(addr("2001:db8::1"), addr("2001:db8::2"));
    let reply = answer(&loaded, &v6).expect("an unreachable");
    assert_eq!(reply.len(), 14 + 1280, "1280 bytes of IPv6");
    let (_, _, quote) = check_unreach(&reply, &v6);
    assert_eq!(quote, v6[14..14 + 1232]);
}

#[test]
fn no_answer_to_errors_multicast_or_later_fragments() {
    let Some(loaded) = load(Reject::Icmpx(IcmpxCode::PortUnreachable)) else {
        return;
    };
    let (a, b) = (addr("10.0.0.1"), addr("10.0.0.2"));
    let udp = frames::udp(a, b, 5000, 53);
    // An ICMP error, and an ICMPv6 one.
    assert_eq!(
        answer(&loaded, &frames::icmp_error(b, a, 3, 3, &udp, 64)),
        None
    );
    let (a6, b6) = (addr("2001:db8::1"), addr("2001:db8::2"));
    let udp6 = frames::udp(a6, b6, 5000, 53);
    assert_eq!(
        answer(&loaded, &frames::icmp_error(b6, a6, 1, 4, &udp6, 64)),
        None
    );
    // Multicast and broadcast destinations, a multicast IPv6 source.
    assert_eq!(
        answer(&loaded, &frames::udp(a, addr("224.0.0.9"), 520, 520)),
        None
    );
    assert_eq!(
        answer(&loaded, &frames::udp(a, addr("255.255.255.255"), 67, 68)),
        None
    );
    assert_eq!(
        answer(&loaded, &frames::udp(a6, addr("ff02::1"), 1, 2)),
        None
    );
    assert_eq!(
        answer(&loaded, &frames::udp(addr("ff02::1"), b6, 1, 2)),
        None
    );
    // A later fragment.
    let mut frag = udp.clone();
    frag[20] = 0x00;
    frag[21] = 0x10; // offset 16 × 8 bytes
    let sum = {
        frag[24] = 0;
        frag[25] = 0;
        !ones_sum(&[&frag[14..34]])
    };
    frag[24..26].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(answer(&loaded, &frag), None);
    // Not IP.
    let arp = common::PacketSpec::new(common::L3Spec::Arp).frame();
    assert_eq!(answer(&loaded, &arp), None);
}

#[test]
fn vlan_tags_stay_in_the_answer() {
    let Some(loaded) = load(Reject::TcpReset) else {
        return;
    };
    let spec = common::PacketSpec {
        vlans: 2,
        ..common::PacketSpec::v4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            common::L4Spec::Tcp {
                sport: 40000,
                dport: 22,
            },
        )
    };
    let frame = spec.frame();
    let reply = answer(&loaded, &frame).expect("a reset");
    assert_eq!(reply[..6], frame[6..12]);
    assert_eq!(reply[6..12], frame[..6]);
    assert_eq!(reply[12..22], frame[12..22], "both tags kept");
    assert_eq!(reply.len(), 22 + 40);
    let ip = Ipv4HeaderSlice::from_slice(&reply[22..]).unwrap();
    assert_eq!(ip.destination(), [10, 0, 0, 1]);
}

/// The answers look past an IPv6 AH header, as nf_reject_ip6_tcphdr_get() and
/// icmp6_send() do (ipv6_skip_exthdr()), although the chains see AH as the protocol.
#[test]
fn answers_look_past_an_ipv6_ah_header() {
    let (a, b) = (addr("2001:db8::1"), addr("2001:db8::2"));
    if let Some(loaded) = load(Reject::TcpReset) {
        let syn = frames::with_ah(&frames::tcp(a, b, 40000, 80, SYN));
        let reply = answer(&loaded, &syn).expect("a reset for the TCP segment after AH");
        let seg = check_ip(&reply, &syn, 6);
        let t = TcpHeaderSlice::from_slice(seg).unwrap();
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        assert_eq!(t.acknowledgment_number(), 1009);
        assert!(transport_checksum_ok(a, b, 6, seg) || transport_checksum_ok(b, a, 6, seg));
        assert_eq!(
            answer(&loaded, &frames::with_ah(&frames::udp(a, b, 1, 2))),
            None,
            "no reset for UDP after AH"
        );
    }
    let Some(loaded) = load(Reject::Icmpx(IcmpxCode::PortUnreachable)) else {
        return;
    };
    let udp = frames::with_ah(&frames::udp(a, b, 5000, 53));
    assert!(answer(&loaded, &udp).is_some(), "UDP after AH is answered");
    let error = frames::with_ah(&frames::icmp_error(
        b,
        a,
        1,
        4,
        &frames::udp(a, b, 5000, 53),
        64,
    ));
    assert_eq!(
        answer(&loaded, &error),
        None,
        "an ICMPv6 error after AH is not"
    );
}
