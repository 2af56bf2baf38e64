//! ebt_* blobs as ebtables-nft 1.8.9 sends them, and what their residual programs
//! make of frames (run by the reference evaluator in the netdev view bridge rules use).

use super::*;
use crate::compile::Family;
use nftshim_ebpf::residual::{Headers, MetaValues, NetdevFrame, ResidualProgram};

fn cx(hook: Hook) -> XtCx<'static> {
    XtCx {
        family: Family::Bridge,
        hook,
        families: 0,
        l4protos: None,
        view: None,
    }
}

/// A zeroed blob of `size` bytes with fields written at their offsets.
fn blob(size: usize, fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; size];
    for (off, bytes) in fields {
        b[*off..off + bytes.len()].copy_from_slice(bytes);
    }
    b
}

fn matcher(name: &str, hook: Hook, info: &[u8]) -> Result<Decompiled, String> {
    decompile_match(&cx(hook), name, 0, Blob(info))
}

/// Whether the match holds for `frame` (Ethernet header first) with `pkt_type`.
fn holds_with(d: &Decompiled, frame: &[u8], pkt_type: u8, accel: Option<(u16, u16)>) -> bool {
    match d {
        Decompiled::Always => true,
        Decompiled::Never => false,
        Decompiled::Residual(ms, insns) => {
            assert!(ms.is_empty());
            let mut all = vec![Insn::NetdevView];
            all.extend(insns.iter().cloned());
            let program = ResidualProgram { insns: all };
            program.check().unwrap();
            let nf = NetdevFrame {
                frame: frame.to_vec(),
                skb_protocol: u16::from_be_bytes([frame[12], frame[13]]),
                egress: false,
                accel,
            };
            let h = Headers {
                netdev: Some(nf),
                pkt_type,
                ..Headers::default()
            };
            program.holds(&h, &MetaValues::default())
        }
        other => panic!("not a residual match: {other:?}"),
    }
}

fn holds(d: &Decompiled, frame: &[u8]) -> bool {
    holds_with(d, frame, 0, None)
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 10.0.0.1 -> 10.0.0.2 with `tos`, `proto`, fragment field `frag`, IHL `ihl`,
/// then `l4`.
fn ipv4(tos: u8, proto: u8, frag: u16, ihl: u8, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x40 | ihl, tos, 0, 0, 0, 0];
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    ip.resize(ihl as usize * 4, 0);
    ip.extend_from_slice(l4);
    eth(0x0800, &ip)
}

const UDP_53: [u8; 8] = [0x0f, 0xa0, 0, 53, 0, 8, 0, 0];

#[test]
fn ip_tos_addresses_protocol_and_ports() {
    // --ip-tos 0x10 (as ebtables-nft 1.8.9 sent it)
    let tos = matcher(
        "ip",
        Hook::Forward,
        &blob(32, &[(16, &[0x10]), (18, &[0x04])]),
    )
    .unwrap();
    assert!(holds(&tos, &ipv4(0x10, 17, 0, 5, &UDP_53)));
    assert!(!holds(&tos, &ipv4(0, 17, 0, 5, &UDP_53)));
    // Shorter than an IPv4 header: no match, inverted or not.
    let inv_tos = matcher(
        "ip",
        Hook::Forward,
        &blob(32, &[(16, &[0x10]), (18, &[4]), (19, &[4])]),
    )
    .unwrap();
    assert!(holds(&inv_tos, &ipv4(0, 17, 0, 5, &UDP_53)));
    assert!(!holds(&inv_tos, &eth(0x0800, &[0x45; 19])));
    // --ip-src 10.0.0.0/24 --ip-proto udp --ip-dport ! 54
    let b = blob(
        28,
        &[
            (0, &[10, 0, 0, 0]),
            (8, &[255, 255, 255, 0]),
            (17, &[17]),
            (18, &[0x01 | 0x08 | 0x20]),
            (19, &[0x20]),
            (24, &54u16.to_ne_bytes()),
            (26, &54u16.to_ne_bytes()),
        ],
    );
    let d = matcher("ip", Hook::Input, &b).unwrap();
    assert!(holds(&d, &ipv4(0, 17, 0, 5, &UDP_53)));
    let mut udp54 = UDP_53;
    udp54[3] = 54;
    assert!(!holds(&d, &ipv4(0, 17, 0, 5, &udp54)));
    // Ports after IP options (IHL 6); none in a later fragment or a short header.
    assert!(holds(&d, &ipv4(0, 17, 0, 6, &UDP_53)));
    assert!(!holds(&d, &ipv4(0, 17, 0x0001, 5, &UDP_53)));
    assert!(holds(&d, &ipv4(0, 17, 0x4000, 5, &UDP_53)));
    assert!(!holds(&d, &ipv4(0, 17, 0, 5, &UDP_53[..3])));
    assert!(!holds(&d, &ipv4(0, 6, 0, 5, &UDP_53)));
}

#[test]
fn ip_icmp_type_and_code_inverted_as_a_whole() {
    // --ip-proto icmp --ip-icmp-type ! 3/1:2 (types 3..3, codes 1..2)
    let b = blob(
        28,
        &[
            (17, &[1]),
            (18, &[0x08 | 0x40]),
            (19, &[0x40]),
            (20, &[3, 3]),
            (24, &[1, 2]),
        ],
    );
    let d = matcher("ip", Hook::Forward, &b).unwrap();
    let icmp = |t, c| ipv4(0, 1, 0, 5, &[t, c, 0, 0, 0, 0, 0, 0]);
    assert!(!holds(&d, &icmp(3, 1)));
    assert!(holds(&d, &icmp(3, 3)));
    assert!(holds(&d, &icmp(8, 1)));
}

fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, rest.len() as u8, next, 64];
    ip.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ip.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ip.extend_from_slice(rest);
    eth(0x86dd, &ip)
}

#[test]
fn ip6_protocol_after_extension_headers_and_masked_addresses() {
    // --ip6-src fe80::/64 --ip6-proto udp --ip6-dport 53
    let mut mask = [0u8; 16];
    mask[..8].fill(0xff);
    let b = blob(
        76,
        &[
            (0, &[0xfe, 0x80]),
            (32, &mask),
            (65, &[17]),
            (66, &[0x01 | 0x08 | 0x20]),
            (72, &53u16.to_ne_bytes()),
            (74, &53u16.to_ne_bytes()),
        ],
    );
    let d = matcher("ip6", Hook::Forward, &b).unwrap();
    assert!(holds(&d, &ipv6(17, &UDP_53)));
    // Behind a hop-by-hop header.
    let mut hbh = vec![17u8, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&UDP_53);
    assert!(holds(&d, &ipv6(0, &hbh)));
    // A later fragment: the walk stops on the fragment header (protocol 44).
    let mut frag = vec![17u8, 0, 0, 8, 0, 0, 0, 1];
    frag.extend_from_slice(&UDP_53);
    assert!(!holds(&d, &ipv6(44, &frag)));
    let mut other = ipv6(17, &UDP_53);
    other[14 + 8 + 7] = 1; // fe80:0:0:1::1: outside fe80::/64
    assert!(!holds(&d, &other));
    // An inverted source with an empty mask never holds.
    let never = blob(76, &[(66, &[0x08]), (67, &[0x01]), (65, &[17])]);
    assert_eq!(matcher("ip6", Hook::Forward, &never), Ok(Decompiled::Never));
}

fn arp(op: u16, hln: u8, sip: [u8; 4], tip: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, hln, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend(std::iter::repeat_n(0xaa, hln as usize));
    a.extend_from_slice(&sip);
    a.extend(std::iter::repeat_n(0xbb, hln as usize));
    a.extend_from_slice(&tip);
    eth(0x0806, &a)
}

#[test]
fn arp_opcode_addresses_and_gratuitous() {
    // --arp-op Reply --arp-ip-dst 10.0.0.0/24
    let b = blob(
        52,
        &[
            (4, &[0, 2]),
            (16, &[10, 0, 0, 0]),
            (20, &[255, 255, 255, 0]),
            (48, &[0x01 | 0x10]),
        ],
    );
    let d = matcher("arp", Hook::Input, &b).unwrap();
    assert!(holds(&d, &arp(2, 6, [1, 1, 1, 1], [10, 0, 0, 7])));
    assert!(!holds(&d, &arp(1, 6, [1, 1, 1, 1], [10, 0, 0, 7])));
    // The target address follows ar_hln bytes of hardware address (twice).
    assert!(holds(&d, &arp(2, 8, [1, 1, 1, 1], [10, 0, 0, 7])));
    assert!(!holds(&d, &arp(2, 8, [10, 0, 0, 7], [1, 1, 1, 1])));
    // --arp-mac-dst needs ar_hln 6.
    let mac = blob(52, &[(36, &[0xbb; 6]), (42, &[0xff; 6]), (48, &[0x40])]);
    let d = matcher("arp", Hook::Input, &mac).unwrap();
    assert!(holds(&d, &arp(1, 6, [0; 4], [0; 4])));
    assert!(!holds(&d, &arp(1, 8, [0; 4], [0; 4])));
    // --arp-gratuitous: sender and target IP addresses equal (inverted: differ); only
    // IPv4 over ARP with 4-byte protocol addresses.
    let grat = matcher("arp", Hook::Input, &blob(52, &[(48, &[0x80])])).unwrap();
    assert!(holds(&grat, &arp(1, 6, [10, 0, 0, 7], [10, 0, 0, 7])));
    assert!(holds(&grat, &arp(2, 8, [10, 0, 0, 7], [10, 0, 0, 7])));
    assert!(!holds(&grat, &arp(1, 6, [10, 0, 0, 7], [10, 0, 0, 8])));
    let mut ipx = arp(1, 6, [10, 0, 0, 7], [10, 0, 0, 7]);
    ipx[17] = 0x01;
    assert!(!holds(&grat, &ipx));
    let not_grat = matcher(
        "arp",
        Hook::Input,
        &blob(52, &[(48, &[0x80]), (49, &[0x80])]),
    )
    .unwrap();
    assert!(!holds(&not_grat, &arp(1, 6, [10, 0, 0, 7], [10, 0, 0, 7])));
    assert!(holds(&not_grat, &arp(1, 6, [10, 0, 0, 7], [10, 0, 0, 8])));
    // A target address cut off: no match either way.
    let mut cut = arp(1, 6, [10, 0, 0, 7], [10, 0, 0, 7]);
    cut.truncate(cut.len() - 2);
    assert!(!holds(&grat, &cut) && !holds(&not_grat, &cut));
}

#[test]
fn vlan_reads_the_accelerated_tag_or_the_frame() {
    // --vlan-id 42 --vlan-encap 0800
    let b = blob(8, &[(0, &42u16.to_ne_bytes()), (4, &[8, 0]), (6, &[0x05])]);
    let d = matcher("vlan", Hook::Forward, &b).unwrap();
    let tagged = eth(0x8100, &[0x20, 42, 8, 0, 0x45]);
    assert!(holds(&d, &tagged));
    let mut other = tagged.clone();
    other[15] = 43;
    assert!(!holds(&d, &other));
    // Accelerated: the TCI from the skb, the encapsulated protocol skb->protocol.
    let untagged = eth(0x0800, &[0x45; 20]);
    assert!(holds_with(&d, &untagged, 0, Some((0x8100, 42))));
    assert!(!holds_with(&d, &untagged, 0, Some((0x8100, 41))));
}

#[test]
fn pkttype_compares_skb_pkt_type_but_not_at_prerouting() {
    let d = matcher("pkttype", Hook::Forward, &[1, 0]).unwrap();
    let f = eth(0x88b5, &[0; 46]);
    assert!(holds_with(&d, &f, 1, None));
    assert!(!holds_with(&d, &f, 3, None));
    let inv = matcher("pkttype", Hook::Input, &[1, 1]).unwrap();
    assert!(holds_with(&inv, &f, 3, None));
    assert!(matcher("pkttype", Hook::Prerouting, &[1, 0]).is_err());
}

#[test]
fn mark_match_and_target() {
    let mark_m = |mark: u64, mask: u64, invert: u8, bits: u8| {
        let mut b = mark.to_ne_bytes().to_vec();
        b.extend_from_slice(&mask.to_ne_bytes());
        b.extend_from_slice(&[invert, bits, 0, 0, 0, 0, 0, 0]);
        matcher("mark_m", Hook::Forward, &b).unwrap()
    };
    assert_eq!(
        mark_m(3, 3, 0, 1),
        one(
            Test::Mark {
                mask: 3,
                values: vec![3]
            },
            false
        )
    );
    // --mark-or: (mark & mask) != 0.
    assert_eq!(
        mark_m(0, 0x10, 0, 2),
        one(
            Test::Mark {
                mask: 0x10,
                values: vec![0]
            },
            true
        )
    );
    assert_eq!(mark_m(1 << 40, u64::MAX, 0, 1), Decompiled::Never);
    let target = |mark: u64, target: u32, hook| {
        let mut b = mark.to_ne_bytes().to_vec();
        b.extend_from_slice(&target.to_ne_bytes());
        b.extend_from_slice(&[0; 4]);
        decompile_target(&cx(hook), "mark", 0, Blob(&b))
    };
    assert_eq!(
        target(5, MARK_SET_VALUE | 0xf, Hook::Forward),
        Ok(Decompiled::StatementVerdict(
            Statement::SetMark { and: 0, xor: 5 },
            Action::Accept
        ))
    );
    assert_eq!(
        target(0xa, MARK_OR_VALUE | 0xd, Hook::Output),
        Ok(Decompiled::Statement(Statement::SetMark {
            and: !0xa,
            xor: 0xa
        }))
    );
    assert_eq!(
        target(1, MARK_AND_VALUE | 0xc, Hook::Forward),
        Ok(Decompiled::StatementVerdict(
            Statement::SetMark { and: 1, xor: 0 },
            Action::Return
        ))
    );
    // As `meta mark set`: not in input chains.
    assert!(target(1, MARK_XOR_VALUE | 0xd, Hook::Input).is_err());
    assert!(decompile_target(&cx(Hook::Prerouting), "redirect", 0, Blob(&[0xff; 4])).is_err());
}

#[test]
fn llc_sap_and_snap_type_after_either_control_field() {
    // --802_3-sap ! 0x0a
    let d = matcher("802_3", Hook::Forward, &[0x0a, 0, 0, 0, 1, 1]).unwrap();
    let llc = |dsap: u8, ssap: u8, ctrl: u8, tail: &[u8]| {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 46, dsap, ssap, ctrl];
        f.extend_from_slice(tail);
        f
    };
    assert!(holds(&d, &llc(0x42, 0x42, 3, &[0; 40])));
    assert!(!holds(&d, &llc(0x0a, 0x42, 3, &[0; 40])));
    assert!(!holds(&d, &llc(0x42, 0x0a, 3, &[0; 40])));
    // --802_3-type 0x0800: UI frames have it at 20, others at 22.
    let d = matcher("802_3", Hook::Output, &[0, 0, 0x08, 0x00, 2, 0]).unwrap();
    assert!(holds(&d, &llc(0xaa, 0xaa, 3, &[0, 0, 0, 8, 0, 0, 0])));
    assert!(!holds(&d, &llc(0xaa, 0xaa, 0, &[0, 0, 0, 8, 0, 0, 0])));
    assert!(holds(&d, &llc(0xaa, 0xaa, 0, &[0, 0, 0, 0, 0, 8, 0])));
    assert!(!holds(&d, &llc(0x42, 0x42, 3, &[0, 0, 0, 8, 0, 0, 0])));
}
