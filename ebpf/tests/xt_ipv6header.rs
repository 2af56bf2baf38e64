//! ip6t_ipv6header's walk (Insn::XtIpv6HeaderTypes, bpf/lib/xt_ip6hdr.h) with
//! BPF_PROG_TEST_RUN at XDP and TC: IPv6 packets with every kind of extension header
//! ip6t_ext_hdr() knows, chains of more headers than the parser walks, headers longer
//! than the packet, "no next header" and ESP with and without the 2 bytes the walk
//! needs; each rule's verdict and counters against the reference, and the reference's
//! type bits against what ipv6header_mt6()'s code gives for each packet.

mod common;

use std::net::Ipv6Addr;

use common::load_or_skip;
use nftshim_ebpf::fields::{L3Fields, PacketFields};
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{ipv6_header_types, CmpOp, Headers, Insn, ResidualProgram};

const HOP: u8 = 0x80;
const DST: u8 = 0x40;
const RT: u8 = 0x20;
const FRAG: u8 = 0x10;
const AH: u8 = 0x08;
const ESP: u8 = 0x04;
const NONE: u8 = 0x02;
const PROTO: u8 = 0x01;

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, 64]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(payload);
    f
}

/// An options-like header (hop-by-hop, destination options, routing) of
/// `(len + 1) * 8` bytes.
fn opts(next: u8, len: u8) -> Vec<u8> {
    let mut h = vec![next, len, 1, 4];
    h.resize((len as usize + 1) * 8, 0);
    h
}

/// A fragment header (offset in 8-byte units, more fragments).
fn frag(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let field = offset << 3 | more as u16;
    let mut h = vec![next, 0];
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 9]);
    h
}

/// An AH header with payload length `len`: `(len + 2) * 4` bytes.
fn ah(next: u8, len: u8) -> Vec<u8> {
    let mut h = vec![next, len];
    h.resize((len as usize + 2) * 4, 0);
    h
}

const UDP: [u8; 8] = [0x03, 0xe8, 0x07, 0xd0, 0, 8, 0, 0];

/// The frames, by name, with the type bits ipv6header_mt6() gives (`None`: it
/// returns false before comparing), worked out from its code.
fn frames() -> Vec<(&'static str, Vec<u8>, Option<u8>)> {
    let many_dst: Vec<u8> = (0..20)
        .flat_map(|i| opts(if i < 19 { 60 } else { 17 }, 0))
        .chain(UDP)
        .collect();
    vec![
        ("udp", ipv6(17, &UDP), Some(PROTO)),
        ("none", ipv6(59, &[]), Some(NONE)),
        // "No next header" is seen before the length test.
        ("hbh, none", ipv6(0, &opts(59, 0)), Some(HOP | NONE)),
        (
            "hbh, udp",
            ipv6(0, &[opts(17, 0), UDP.to_vec()].concat()),
            Some(HOP | PROTO),
        ),
        (
            "every header, udp",
            ipv6(
                0,
                &[
                    opts(60, 1),
                    opts(43, 0),
                    opts(44, 0),
                    frag(51, 0, true),
                    ah(17, 4),
                    UDP.to_vec(),
                ]
                .concat(),
            ),
            Some(HOP | DST | RT | FRAG | AH | PROTO),
        ),
        (
            "dst, later fragment, udp",
            ipv6(
                60,
                &[opts(44, 0), frag(17, 100, false), UDP.to_vec()].concat(),
            ),
            Some(DST | FRAG | PROTO),
        ),
        ("esp", ipv6(50, &[0, 0, 0, 1, 0, 0, 0, 1]), Some(ESP)),
        (
            "hbh, esp",
            ipv6(0, &[opts(50, 0), vec![0; 8]].concat()),
            Some(HOP | ESP),
        ),
        // ESP needs 2 bytes after it, "no next header" none.
        ("esp, 1 byte", ipv6(50, &[0]), None),
        (
            "hbh, esp, 1 byte",
            ipv6(0, &[opts(50, 0), vec![0]].concat()),
            None,
        ),
        ("hbh, nothing after", ipv6(0, &[]), None),
        ("hbh, 1 byte", ipv6(0, &[0]), None),
        // The packet ends where the hop-by-hop header does: a next extension header
        // has no bytes, a protocol is only a bit.
        ("hbh ends the packet, dst", ipv6(0, &opts(60, 0)), None),
        (
            "hbh ends the packet, tcp",
            ipv6(0, &opts(6, 0)),
            Some(HOP | PROTO),
        ),
        // A header longer than the packet ends the walk on its next header field.
        (
            "hbh past the end, tcp",
            ipv6(0, &opts(6, 3)[..8]),
            Some(HOP | PROTO),
        ),
        (
            "hbh past the end, none",
            ipv6(0, &opts(59, 3)[..8]),
            Some(HOP),
        ),
        (
            "hbh past the end, dst",
            ipv6(0, &opts(60, 3)[..8]),
            Some(HOP | PROTO),
        ),
        ("ah past the end, esp", ipv6(51, &ah(50, 6)[..12]), Some(AH)),
        ("twenty dst, udp", ipv6(60, &many_dst), Some(DST | PROTO)),
        (
            "routing, icmpv6",
            ipv6(43, &[opts(58, 2), vec![128, 0, 0, 0, 0, 1, 0, 1]].concat()),
            Some(RT | PROTO),
        ),
    ]
}

/// `-m ipv6header` as the dataplane decompiles it: the hard comparison (`!=` with
/// invflags) or the soft one under the mask.
fn program(matchflags: u8, invflags: u8, soft: bool) -> Vec<Insn> {
    let mut insns = vec![Insn::XtIpv6HeaderTypes { dreg: 0 }];
    if soft {
        insns.extend([
            Insn::Bitwise {
                sreg: 0,
                dreg: 4,
                len: 1,
                mask: vec![matchflags],
                xor: vec![0],
            },
            Insn::Cmp {
                sreg: 4,
                op: CmpOp::Eq,
                data: vec![(matchflags ^ invflags) & matchflags],
            },
        ]);
    } else {
        insns.push(Insn::Cmp {
            sreg: 0,
            op: if invflags != 0 { CmpOp::Neq } else { CmpOp::Eq },
            data: vec![matchflags],
        });
    }
    insns
}

fn programs() -> Vec<(&'static str, Vec<Insn>)> {
    vec![
        ("--header hop-by-hop", program(HOP, 0, false)),
        ("! --header hop-by-hop", program(HOP, 0xff, false)),
        ("--header hop-by-hop --soft", program(HOP, 0, true)),
        ("--header ipv6-nonxt", program(NONE, 0, false)),
        ("--header hop-by-hop,proto", program(HOP | PROTO, 0, false)),
        ("--header esp --soft", program(ESP, 0, true)),
        ("! --header proto --soft", program(PROTO, PROTO, true)),
        // Hop-by-hop and a protocol, no fragment header.
        (
            "hop,frag,proto soft, frag inverted",
            program(HOP | FRAG | PROTO, FRAG, true),
        ),
        ("--header dst,proto", program(DST | PROTO, 0, false)),
    ]
}

/// What the IP hooks see: the datagram; the walk reads nothing else.
fn fields(frame: &[u8]) -> PacketFields {
    let network = frame[14..].to_vec();
    let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&network[o..o + 16]).unwrap());
    let l3 = L3Fields::V6 {
        saddr: a(8),
        daddr: a(24),
    };
    let len = network.len() as u32;
    PacketFields {
        l3,
        len,
        headers: Some(Headers {
            network,
            protocol: 0x86dd,
            ..Headers::default()
        }),
        ..PacketFields::default()
    }
}

/// The program as a rule, then a rule every packet matches.
fn chain(insns: &[Insn]) -> Chain {
    Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![
            Rule::new(
                vec![Match::is(Test::Residual(ResidualProgram {
                    insns: insns.to_vec(),
                }))],
                Action::Continue,
            ),
            Rule::new(vec![], Action::Continue),
        ],
    }
}

#[test]
fn the_reference_walks_as_ipv6header_mt6() {
    for (name, frame, want) in frames() {
        assert_eq!(ipv6_header_types(&frame[14..]), want, "{name}");
    }
}

#[test]
fn ipv6header_agrees_with_the_reference_at_xdp_and_tc() {
    let mut wrong = Vec::new();
    let mut matched = 0;
    for (name, insns) in programs() {
        let program = Program::single(chain(&insns));
        let compiled = compile_program(&program).unwrap();
        let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
            return;
        };
        for (frame_name, frame, _) in frames() {
            let want = Reference::new(&program)
                .unwrap()
                .evaluate(&fields(&frame))
                .unwrap();
            let want_counted: Vec<usize> =
                want.counted.iter().copied().filter(|&i| i < 2).collect();
            matched += want_counted.contains(&0) as usize;
            for xdp in [true, false] {
                let before = loaded.counters().unwrap();
                let run = if xdp {
                    loaded.run_xdp(&frame, 1).unwrap()
                } else {
                    let meta = SkbMeta {
                        mark: 0,
                        ingress_ifindex: 0,
                        ifindex: 0,
                    };
                    loaded.run_tc(&frame, meta, 1).unwrap()
                };
                let after = loaded.counters().unwrap();
                let counted: Vec<usize> = (0..2)
                    .filter(|&i| after[i].packets > before[i].packets)
                    .collect();
                if run.verdict != want.verdict || counted != want_counted {
                    wrong.push(format!(
                        "{} `{name}` on {frame_name}: BPF {:?} {counted:?}, reference {:?} \
                         {want_counted:?}",
                        if xdp { "XDP" } else { "TC" },
                        run.verdict,
                        want.verdict,
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The rules match some packets and not others.
    assert!(matched > 10, "{matched}");
}
