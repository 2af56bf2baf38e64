//! xt_connlimit's hotdrop ([`Insn::XtConnlimitTuple`]) with BPF_PROG_TEST_RUN at XDP
//! and TC: crafted IPv4 packets whose transport header is whole or cut short, each
//! rule's verdict and counters against the reference, and the reference against what
//! the kernel gave the same packets (a packet without a connection and without the
//! bytes of its tuple dropped, the rule not counted).

mod common;

use common::load_or_skip;
use nftshim_ebpf::fields::{L3Fields, PacketFields};
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{Headers, Insn, ResidualProgram};

/// An Ethernet frame with an IPv4 datagram of protocol `proto` carrying `payload`.
fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let tot = (20 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&tot.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]);
    f.extend_from_slice(payload);
    f
}

/// What the IP hooks see of such a frame (no connection: the reference's default).
fn fields(frame: &[u8]) -> PacketFields {
    let network = frame[14..].to_vec();
    let ports = network.get(20..24).map(|p| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    });
    let len = network.len() as u32;
    PacketFields {
        l3: L3Fields::V4 {
            saddr: [10, 9, 0, 1].into(),
            daddr: [10, 9, 0, 2].into(),
        },
        l4proto: Some(network[9]),
        ports: ports.filter(|_| matches!(network[9], 6 | 17 | 136 | 132 | 33)),
        len,
        headers: Some(Headers {
            protocol: 0x0800,
            transport: Some(20),
            network,
            ..Headers::default()
        }),
        ..PacketFields::default()
    }
}

/// Packets, and whether the kernel dropped them at `-m connlimit --connlimit-above 0`
/// (measured on 6.18 with raw packets from a peer namespace).
fn packets() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("udp, 2 bytes", ipv4(17, &[0x13, 0x88]), true),
        (
            "udp, 6 bytes (ports)",
            ipv4(17, &[0x13, 0x89, 0, 9, 0, 0]),
            false,
        ),
        ("udp-lite, 2 bytes", ipv4(136, &[0x13, 0x88]), true),
        ("sctp, 2 bytes", ipv4(132, &[0x13, 0x88]), true),
        ("dccp, 2 bytes", ipv4(33, &[0x13, 0x88]), false),
        ("gre, empty", ipv4(47, &[]), false),
        ("tcp, 1 byte", ipv4(6, &[0x13]), true),
        (
            "tcp, 8 bytes",
            ipv4(6, &[0x13, 0x8a, 0, 80, 0, 0, 0, 1]),
            false,
        ),
        ("icmp, 6 bytes", ipv4(1, &[8, 0, 0, 0, 0, 1]), true),
        (
            "icmpv6 in ipv4, 6 bytes",
            ipv4(58, &[128, 0, 0, 0, 0, 1]),
            true,
        ),
        ("protocol 253, empty", ipv4(253, &[]), false),
        (
            "udp, whole",
            ipv4(17, &[0x13, 0x89, 0, 9, 0, 8, 0, 0]),
            false,
        ),
    ]
}

#[test]
fn connlimit_tuple_drops_as_the_kernel_and_the_reference() {
    let rule = Rule::new(
        vec![Match::is(Test::Residual(ResidualProgram {
            insns: vec![Insn::XtConnlimitTuple],
        }))],
        Action::Continue,
    );
    let program = Program {
        base_chains: vec![Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: vec![rule, Rule::new(vec![], Action::Continue)],
        }],
        conntrack: true,
        ..Program::default()
    };
    let compiled = compile_program(&program).unwrap();
    let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
        return;
    };
    let mut wrong = Vec::new();
    for (name, frame, kernel_drops) in packets() {
        let want = Reference::new(&program)
            .unwrap()
            .evaluate(&fields(&frame))
            .unwrap();
        if (want.verdict == Verdict::Drop) != kernel_drops {
            wrong.push(format!("reference on {name}: {:?}", want.verdict));
        }
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
            let want_counted: Vec<usize> =
                want.counted.iter().copied().filter(|&i| i < 2).collect();
            if run.verdict != want.verdict || counted != want_counted {
                wrong.push(format!(
                    "{} on {name}: BPF {:?} {counted:?}, reference {:?} {want_counted:?}",
                    if xdp { "XDP" } else { "TC" },
                    run.verdict,
                    want.verdict,
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
