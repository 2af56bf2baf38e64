//! Residual programs in netdev chains ([`Insn::NetdevView`]) with BPF_PROG_TEST_RUN:
//! frames the netdev hooks treat unlike the IP hooks (an IPv4 header failing
//! nft_set_pktinfo_ipv4_validate, a datagram longer than the frame, later fragments,
//! IPv6 AH, ARP), at TC ingress and egress, against the reference
//! ([`ResidualProgram::holds`] with [`netdev_view`]) and against what the kernel's
//! netdev hooks were seen to do with the same frames.

mod common;

use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::residual::{
    CmpOp, Headers, Insn, MetaKey, MetaValues, NetdevFrame, PayloadBase, ResidualProgram,
};

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while s > 0xffff {
        s = (s >> 16) + (s & 0xffff);
    }
    !(s as u16)
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header (version/ihl byte `ver_ihl`) on `payload`, total length off by `extra`.
fn ipv4(ver_ihl: u8, proto: u8, frag: u16, extra: i32, payload: &[u8]) -> Vec<u8> {
    let tot = (20 + payload.len() as i32 + extra) as u16;
    let mut h = vec![ver_ihl, 0];
    h.extend_from_slice(&tot.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    eth(0x0800, &h)
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(payload);
    eth(0x86dd, &h)
}

/// UDP 1000 -> 22 with 12 bytes of data.
fn udp() -> Vec<u8> {
    let mut u = vec![0x03, 0xe8, 0, 22, 0, 20, 0, 0];
    u.extend_from_slice(&[b'x'; 12]);
    u
}

/// The frames, by name.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    // A later fragment whose data starts like a TCP header to port 22.
    let mut later = vec![0x27, 0x0f, 0, 22];
    later.extend_from_slice(&[b'y'; 20]);
    let mut ah = vec![17, 4, 0, 0];
    ah.extend_from_slice(&[0; 20]);
    ah.extend_from_slice(&udp());
    let mut frag6 = vec![17, 0, 0, 8 * 3, 0, 0, 0, 7];
    frag6.extend_from_slice(&udp());
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 9, 0, 1, 0, 0, 0, 0, 0, 0, 10, 9, 0, 2,
    ];
    vec![
        ("udp", ipv4(0x45, 17, 0, 0, &udp())),
        (
            "udp, total length 10 past the frame",
            ipv4(0x45, 17, 0, 10, &udp()),
        ),
        (
            "udp, total length 16 past the frame",
            ipv4(0x45, 17, 0, 16, &udp()),
        ),
        (
            "udp, total length shorter than the header",
            ipv4(0x45, 17, 0, -22, &udp()),
        ),
        ("udp, version 5", ipv4(0x55, 17, 0, 0, &udp())),
        ("udp, ihl 4", ipv4(0x44, 17, 0, 0, &udp())),
        ("tcp later fragment", ipv4(0x45, 6, 3, 0, &later)),
        ("ipv6 udp", ipv6(17, &udp())),
        ("ipv6 ah udp", ipv6(51, &ah)),
        ("ipv6 later fragment udp", ipv6(44, &frag6)),
        ("ipv6 payload length past the frame", {
            let mut f = ipv6(17, &udp());
            f[18..20].copy_from_slice(&30u16.to_be_bytes());
            f
        }),
        ("arp", eth(0x0806, &arp)),
    ]
}

fn cmp(data: &[u8]) -> Insn {
    Insn::Cmp {
        sreg: 0,
        op: CmpOp::Eq,
        data: data.to_vec(),
    }
}

fn meta(key: MetaKey) -> Insn {
    Insn::Meta { key, dreg: 0 }
}

fn payload(base: PayloadBase, offset: u16, len: u8) -> Insn {
    Insn::Payload {
        base,
        offset,
        len,
        dreg: 0,
    }
}

/// The programs, by name (each after the netdev view).
fn programs() -> Vec<(&'static str, Vec<Insn>)> {
    use PayloadBase::{Network, Transport};
    vec![
        ("meta l4proto udp", vec![meta(MetaKey::L4Proto), cmp(&[17])]),
        ("meta l4proto ah", vec![meta(MetaKey::L4Proto), cmp(&[51])]),
        (
            "tcp dport 22",
            vec![
                meta(MetaKey::L4Proto),
                cmp(&[6]),
                payload(Transport, 2, 2),
                cmp(&[0, 22]),
            ],
        ),
        (
            "th 1-3 (slow path)",
            vec![payload(Transport, 1, 2), cmp(&[0, 0])],
        ),
        (
            "th 1-3 != 0x0f00",
            vec![
                payload(Transport, 1, 2),
                Insn::Cmp {
                    sreg: 0,
                    op: CmpOp::Neq,
                    data: vec![0x0f, 0],
                },
            ],
        ),
        (
            "udp dport 22",
            vec![payload(Transport, 2, 2), cmp(&[0, 22])],
        ),
        ("@nh,0,8 0x55", vec![payload(Network, 0, 1), cmp(&[0x55])]),
        (
            "@nh,0,8 0x00 (arp)",
            vec![payload(Network, 0, 1), cmp(&[0x00])],
        ),
        (
            "meta length 54",
            vec![meta(MetaKey::Len), cmp(&54u32.to_ne_bytes())],
        ),
        (
            "meta length 40",
            vec![meta(MetaKey::Len), cmp(&40u32.to_ne_bytes())],
        ),
        ("meta nfproto 5", vec![meta(MetaKey::NfProto), cmp(&[5])]),
        (
            "meta protocol ip",
            vec![meta(MetaKey::Protocol), cmp(&[8, 0])],
        ),
        (
            "meta protocol arp",
            vec![meta(MetaKey::Protocol), cmp(&[8, 6])],
        ),
        (
            "exthdr frag exists",
            vec![
                Insn::Ipv6Exthdr {
                    header: 44,
                    offset: 0,
                    len: 1,
                    dreg: 0,
                    present: true,
                },
                cmp(&1u32.to_ne_bytes()),
            ],
        ),
    ]
}

fn with_view(insns: &[Insn]) -> ResidualProgram {
    let mut all = vec![Insn::NetdevView];
    all.extend_from_slice(insns);
    ResidualProgram { insns: all }
}

/// Which (program, frame) pairs match at one hook: the BPF program's counters.
fn bpf_matches(egress: bool) -> Option<Vec<Vec<bool>>> {
    let programs = programs();
    let rules = programs
        .iter()
        .map(|(_, insns)| {
            Rule::new(
                vec![Match::is(Test::Residual(with_view(insns)))],
                Action::Continue,
            )
        })
        .collect();
    let program = Program::single(Chain {
        scope: L3Scope::Netdev,
        policy: Verdict::Accept,
        rules,
    });
    let compiled = compile_program(&program).unwrap();
    let options = LoadOptions {
        tc_egress: egress,
        ..LoadOptions::default()
    };
    let loaded = load_or_skip(&compiled, options)?;
    let mut out = Vec::new();
    for (_, frame) in frames() {
        let before = loaded.counters().unwrap();
        let meta = SkbMeta {
            mark: 0,
            ingress_ifindex: 0,
            ifindex: 0,
        };
        loaded.run_tc(&frame, meta, 1).unwrap();
        let after = loaded.counters().unwrap();
        out.push(
            (0..programs.len())
                .map(|i| after[i].packets > before[i].packets)
                .collect(),
        );
    }
    Some(out)
}

fn reference(insns: &[Insn], frame: &[u8], egress: bool) -> bool {
    let headers = Headers {
        netdev: Some(NetdevFrame {
            frame: frame.to_vec(),
            skb_protocol: u16::from_be_bytes([frame[12], frame[13]]),
            egress,
            accel: None,
        }),
        ..Headers::default()
    };
    with_view(insns).holds(&headers, &MetaValues::default())
}

/// What the kernel's netdev chains did with these frames (nft 1.0.6, Linux 6.18).
fn kernel_seen(program: &str, frame: &str, egress: bool) -> Option<bool> {
    Some(match (program, frame, egress) {
        ("meta l4proto udp", "udp", _) => true,
        ("meta l4proto udp", "udp, total length 10 past the frame", _) => false,
        ("meta l4proto udp", "udp, total length 16 past the frame", _) => false,
        ("meta l4proto udp", "udp, version 5", _) => false,
        ("@nh,0,8 0x55", "udp, version 5", _) => true,
        ("meta protocol ip", "udp, version 5", _) => true,
        ("tcp dport 22", "tcp later fragment", false) => true,
        ("meta l4proto ah", "ipv6 ah udp", false) => true,
        ("meta length 54", "udp", true) => true,
        ("meta length 40", "udp", false) => true,
        _ => return None,
    })
}

#[test]
fn netdev_view_agrees_with_the_reference_and_the_kernel() {
    for egress in [false, true] {
        let Some(got) = bpf_matches(egress) else {
            return;
        };
        for (f, (frame_name, frame)) in frames().iter().enumerate() {
            for (p, (program_name, insns)) in programs().iter().enumerate() {
                let want = reference(insns, frame, egress);
                assert_eq!(
                    got[f][p], want,
                    "{program_name} on {frame_name} (egress {egress}): BPF vs reference"
                );
                if let Some(kernel) = kernel_seen(program_name, frame_name, egress) {
                    assert_eq!(
                        want, kernel,
                        "{program_name} on {frame_name} (egress {egress}): reference vs kernel"
                    );
                }
            }
        }
    }
}

#[test]
fn a_later_fragment_has_a_transport_header_for_aligned_loads_only() {
    let frames = frames();
    let later = &frames
        .iter()
        .find(|(n, _)| *n == "tcp later fragment")
        .unwrap()
        .1;
    let programs = programs();
    let get = |name: &str| &programs.iter().find(|(n, _)| *n == name).unwrap().1;
    // Bytes 2-3 of the fragment's data are 22: the fast path reads them.
    assert!(reference(get("udp dport 22"), later, false));
    // An unaligned load takes nft_payload_eval, which breaks on fragments.
    assert!(!reference(get("th 1-3 != 0x0f00"), later, false));
    // IPv6 later fragments leave thoff 0: at ingress the transport loads read the
    // IPv6 header itself (its payload length at 4-5), at egress the Ethernet header.
    let v6 = &frames
        .iter()
        .find(|(n, _)| *n == "ipv6 later fragment udp")
        .unwrap()
        .1;
    let at = |egress| {
        let headers = Headers {
            netdev: Some(NetdevFrame {
                frame: v6.clone(),
                skb_protocol: 0x86dd,
                egress,
                accel: None,
            }),
            ..Headers::default()
        };
        let mut found = None;
        for v in 0..=255u8 {
            let p = with_view(&[payload(PayloadBase::Transport, 0, 1), cmp(&[v])]);
            if p.holds(&headers, &MetaValues::default()) {
                found = Some(v);
            }
        }
        found
    };
    assert_eq!(at(false), Some(0x60));
    assert_eq!(at(true), Some(0x02));
}
