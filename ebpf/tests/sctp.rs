//! SCTP chunk matches ([`Insn::SctpChunk`], nft_exthdr_sctp_eval) with
//! BPF_PROG_TEST_RUN: crafted SCTP packets (chunk present or missing, a field in the
//! first or a later chunk, a chunk past the residual header copy's 2048 bytes, chunk
//! length 0, a truncated chunk, padding, non-SCTP, IPv6, fragments), at XDP and TC in
//! IP chains and at TC ingress and egress in netdev chains, against the reference
//! ([`ResidualProgram::holds`]) and against what Linux 6.18's walk gives by its code.

mod common;

use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, LoadedChain, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::residual::{CmpOp, Headers, Insn, MetaValues, NetdevFrame, ResidualProgram};

const SCTP: u8 = 132;

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 datagram (fragment offset field `frag`) of `payload`.
fn ipv4(proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let tot = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&tot.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]);
    h.extend_from_slice(payload);
    eth(0x0800, &h)
}

/// An IPv6 datagram; the source address's bytes 4..8 are `src_word` (what the chunk
/// walk of an IPv6 later fragment reads: it starts at the network header + 12).
fn ipv6(next: u8, src_word: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0xfd, 0, 0, 0]);
    h.extend_from_slice(&src_word);
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(payload);
    eth(0x86dd, &h)
}

/// A chunk: type, flags, length field `len` (`None`: the real length), the body, and
/// padding to 4 bytes.
fn chunk(kind: u8, flags: u8, len: Option<u16>, body: &[u8]) -> Vec<u8> {
    let real = 4 + body.len() as u16;
    let mut c = vec![kind, flags];
    c.extend_from_slice(&len.unwrap_or(real).to_be_bytes());
    c.extend_from_slice(body);
    while c.len() % 4 != 0 {
        c.push(0);
    }
    c
}

/// DATA: tsn 7, stream 1, ssn 0, ppid 0x01020304, then `data`.
fn data(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 7, 0, 1, 0, 0, 1, 2, 3, 4];
    b.extend_from_slice(payload);
    chunk(0, flags, None, &b)
}

/// INIT: tag, a_rwnd, outbound streams 10, inbound streams `inbound`, initial tsn.
fn init(inbound: u16) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 9, 0, 1, 0, 0, 0, 10];
    b.extend_from_slice(&inbound.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 1]);
    chunk(1, 0, None, &b)
}

/// An SCTP packet 1000 -> 2000 (checksum not checked here) with these chunks.
fn sctp(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 1, 0, 0, 0, 0];
    for c in chunks {
        p.extend_from_slice(c);
    }
    p
}

/// The frames, by name.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    // Padding chunks (type 0x84) push an INIT far past the 2048 bytes residual
    // programs copy: 3400 bytes, about what BPF_PROG_TEST_RUN takes for an skb.
    let pad = chunk(0x84, 0, None, &[0xee; 3200 - 4]);
    let mut truncated = sctp(&[data(3, b"abcd"), init(1)]);
    truncated.truncate(truncated.len() - 8);
    let mut cut_header = sctp(&[data(3, b"abcd")]);
    cut_header.extend_from_slice(&[1, 0]);
    // A later fragment's payload that reads like chunks from its offset 12 on.
    let fragment_data = sctp(&[init(1)]);
    let mut frag6 = vec![SCTP, 0, 0, 8 * 3, 0, 0, 0, 7];
    frag6.extend_from_slice(&sctp(&[init(1)]));
    let mut ext6 = vec![SCTP, 0, 1, 4, 0, 0, 0, 0];
    ext6.extend_from_slice(&sctp(&[data(2, b"xyz"), init(1)]));
    vec![
        (
            "data, init",
            ipv4(SCTP, 0, &sctp(&[data(3, b"abcd"), init(1)])),
        ),
        ("init only", ipv4(SCTP, 0, &sctp(&[init(2)]))),
        // DATA of length 17 (3 bytes of padding), then a SACK.
        (
            "padded data, sack",
            ipv4(
                SCTP,
                0,
                &sctp(&[data(2, b"x"), chunk(3, 0, None, &[0; 12])]),
            ),
        ),
        (
            "padding, init past 2048",
            ipv4(SCTP, 0, &sctp(&[pad.clone(), init(1)])),
        ),
        (
            "chunk length 0, init",
            ipv4(SCTP, 0, &sctp(&[chunk(0, 3, Some(0), &[0; 12]), init(1)])),
        ),
        // Length 2: one 4-byte step on, to the INIT.
        (
            "chunk length 2, init",
            ipv4(SCTP, 0, &sctp(&[chunk(5, 0, Some(2), &[]), init(1)])),
        ),
        ("init cut short", ipv4(SCTP, 0, &truncated)),
        ("chunk header cut short", ipv4(SCTP, 0, &cut_header)),
        // A DATA chunk whose length runs 8 bytes past the packet.
        (
            "data longer than the packet",
            ipv4(SCTP, 0, &sctp(&[chunk(0, 3, Some(28), &[0; 16])])),
        ),
        ("no chunks", ipv4(SCTP, 0, &sctp(&[]))),
        ("udp", ipv4(17, 0, &sctp(&[data(3, b"abcd"), init(1)]))),
        ("ipv4 later fragment", ipv4(SCTP, 3, &fragment_data)),
        (
            "ipv4 first fragment",
            ipv4(SCTP, 0x2000, &sctp(&[data(3, b"abcd"), init(1)])),
        ),
        (
            "ipv6 data, init",
            ipv6(SCTP, [0; 4], &sctp(&[data(3, b"abcd"), init(1)])),
        ),
        ("ipv6 destination options", ipv6(60, [0; 4], &ext6)),
        ("ipv6 later fragment", ipv6(44, [1, 0, 0, 4], &frag6)),
        (
            "ipv6 padding, init past 2048",
            ipv6(SCTP, [0; 4], &sctp(&[pad, init(1)])),
        ),
    ]
}

fn chunk_insn(kind: u8, offset: u8, len: u8, present: bool) -> Insn {
    Insn::SctpChunk {
        kind,
        offset,
        len,
        dreg: 0,
        present,
    }
}

fn cmp(data: &[u8]) -> Insn {
    Insn::Cmp {
        sreg: 0,
        op: CmpOp::Eq,
        data: data.to_vec(),
    }
}

const YES: [u8; 4] = 1u32.to_ne_bytes();
const NO: [u8; 4] = 0u32.to_ne_bytes();

/// The programs, by the nft rule they stand for.
fn programs() -> Vec<(&'static str, Vec<Insn>)> {
    vec![
        (
            "sctp chunk data exists",
            vec![chunk_insn(0, 0, 1, true), cmp(&YES)],
        ),
        (
            "sctp chunk init exists",
            vec![chunk_insn(1, 0, 1, true), cmp(&YES)],
        ),
        (
            "sctp chunk init missing",
            vec![chunk_insn(1, 0, 1, true), cmp(&NO)],
        ),
        (
            "sctp chunk sack exists",
            vec![chunk_insn(3, 0, 1, true), cmp(&YES)],
        ),
        (
            "sctp chunk data flags 3",
            vec![chunk_insn(0, 1, 1, false), cmp(&[3])],
        ),
        (
            "sctp chunk data ppid 0x01020304",
            vec![chunk_insn(0, 12, 4, false), cmp(&[1, 2, 3, 4])],
        ),
        (
            "sctp chunk init num-inbound-streams 1",
            vec![chunk_insn(1, 14, 2, false), cmp(&[0, 1])],
        ),
        (
            "sctp chunk init length { 20, 24 }",
            vec![
                chunk_insn(1, 2, 2, false),
                Insn::Lookup {
                    sreg: 0,
                    len: 2,
                    negated: false,
                    elements: vec![(vec![0, 20], vec![0, 20]), (vec![0, 24], vec![0, 24])],
                },
            ],
        ),
        (
            "sctp chunk type 0x86 exists",
            vec![chunk_insn(0x86, 0, 1, true), cmp(&YES)],
        ),
    ]
}

/// Where a chain sees the frames.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hook {
    Xdp,
    TcIngress,
    NetdevIngress,
    NetdevEgress,
}

impl Hook {
    fn netdev(self) -> bool {
        matches!(self, Hook::NetdevIngress | Hook::NetdevEgress)
    }
}

fn residual(hook: Hook, insns: &[Insn]) -> ResidualProgram {
    let mut all = if hook.netdev() {
        vec![Insn::NetdevView]
    } else {
        vec![]
    };
    all.extend_from_slice(insns);
    ResidualProgram { insns: all }
}

/// What the IP hooks see of the frame, found independently of the BPF parser (no
/// VLAN; IPv6 extension headers: destination options and fragment only).
fn ip_view(frame: &[u8]) -> (Headers, MetaValues) {
    let network = frame[14..].to_vec();
    let mut h = Headers {
        protocol: u16::from_be_bytes([frame[12], frame[13]]),
        ..Headers::default()
    };
    let mut m = MetaValues {
        len: network.len() as u32,
        ..MetaValues::default()
    };
    if h.protocol == 0x0800 {
        m.nfproto = 2;
        m.l4proto = Some(network[9]);
        let th = (network[0] & 0xf) as usize * 4;
        if u16::from_be_bytes([network[6], network[7]]) & 0x1fff != 0 {
            h.fragment_thoff = Some(th);
        } else {
            h.transport = Some(th);
        }
    } else {
        m.nfproto = 10;
        let (mut next, mut off) = (network[6], 40);
        loop {
            match next {
                60 => {
                    (next, off) = (network[off], off + (network[off + 1] as usize + 1) * 8);
                }
                44 => {
                    let later = u16::from_be_bytes([network[off + 2], network[off + 3]]) & !7 != 0;
                    next = network[off];
                    if later {
                        // ipv6_find_hdr() leaves thoff 0: the network header.
                        h.fragment_thoff = Some(0);
                        break;
                    }
                    off += 8;
                }
                _ => {
                    h.transport = Some(off);
                    break;
                }
            }
        }
        m.l4proto = Some(next);
    }
    h.network = network;
    (h, m)
}

fn reference(hook: Hook, insns: &[Insn], frame: &[u8]) -> bool {
    let program = residual(hook, insns);
    if hook.netdev() {
        let headers = Headers {
            netdev: Some(NetdevFrame {
                frame: frame.to_vec(),
                skb_protocol: u16::from_be_bytes([frame[12], frame[13]]),
                egress: hook == Hook::NetdevEgress,
                accel: None,
            }),
            ..Headers::default()
        };
        return program.holds(&headers, &MetaValues::default());
    }
    let (h, m) = ip_view(frame);
    program.holds(&h, &m)
}

fn load(hook: Hook) -> Option<LoadedChain> {
    let rules = programs()
        .iter()
        .map(|(_, insns)| {
            Rule::new(
                vec![Match::is(Test::Residual(residual(hook, insns)))],
                Action::Continue,
            )
        })
        .collect();
    let scope = if hook.netdev() {
        L3Scope::Netdev
    } else {
        L3Scope::Inet
    };
    let program = Program::single(Chain {
        scope,
        policy: Verdict::Accept,
        rules,
    });
    let compiled = compile_program(&program).unwrap();
    let options = LoadOptions {
        tc_egress: hook == Hook::NetdevEgress,
        ..LoadOptions::default()
    };
    load_or_skip(&compiled, options)
}

/// Which programs match each frame at `hook`, by the BPF program's counters.
fn bpf_matches(hook: Hook) -> Option<Vec<Vec<bool>>> {
    let loaded = load(hook)?;
    let nprograms = programs().len();
    let mut out = Vec::new();
    for (_, frame) in frames() {
        let before = loaded.counters().unwrap();
        if hook == Hook::Xdp {
            loaded.run_xdp(&frame, 1).unwrap();
        } else {
            let meta = SkbMeta {
                mark: 0,
                ingress_ifindex: 0,
                ifindex: 0,
            };
            loaded.run_tc(&frame, meta, 1).unwrap();
        }
        let after = loaded.counters().unwrap();
        out.push(
            (0..nprograms)
                .map(|i| after[i].packets > before[i].packets)
                .collect(),
        );
    }
    Some(out)
}

#[test]
fn chunk_matches_agree_with_the_reference_at_every_hook() {
    for hook in [
        Hook::Xdp,
        Hook::TcIngress,
        Hook::NetdevIngress,
        Hook::NetdevEgress,
    ] {
        let Some(got) = bpf_matches(hook) else {
            return;
        };
        let mut wrong = Vec::new();
        for ((frame_name, frame), got) in frames().iter().zip(&got) {
            for ((program_name, insns), &got) in programs().iter().zip(got) {
                let want = reference(hook, insns, frame);
                if got != want {
                    wrong.push(format!(
                        "{hook:?} `{program_name}` on {frame_name}: BPF {got}, reference {want}"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

/// What nft_exthdr_sctp_eval() gives, worked out from its code, at the IP hooks.
#[test]
fn the_reference_walks_chunks_as_the_kernel_does() {
    let frames = frames();
    let frame = |name: &str| &frames.iter().find(|(n, _)| *n == name).unwrap().1;
    let programs = programs();
    let holds = |program: &str, frame_name: &str| {
        let insns = &programs.iter().find(|(n, _)| *n == program).unwrap().1;
        reference(Hook::TcIngress, insns, frame(frame_name))
    };
    let cases = [
        ("sctp chunk data exists", "data, init", true),
        ("sctp chunk init exists", "data, init", true),
        ("sctp chunk init missing", "data, init", false),
        ("sctp chunk data flags 3", "data, init", true),
        ("sctp chunk data ppid 0x01020304", "data, init", true),
        ("sctp chunk init num-inbound-streams 1", "data, init", true),
        ("sctp chunk init num-inbound-streams 1", "init only", false),
        ("sctp chunk init length { 20, 24 }", "init only", true),
        ("sctp chunk data exists", "init only", false),
        ("sctp chunk init missing", "init only", false),
        ("sctp chunk sack exists", "padded data, sack", true),
        ("sctp chunk data flags 3", "padded data, sack", false),
        (
            "sctp chunk init num-inbound-streams 1",
            "padding, init past 2048",
            true,
        ),
        // Length 0 ends the walk; the chunk's type is not looked at.
        ("sctp chunk init exists", "chunk length 0, init", false),
        ("sctp chunk data exists", "chunk length 0, init", false),
        ("sctp chunk init exists", "chunk length 2, init", true),
        // The header is enough to exist; a field needs the whole chunk in the packet.
        ("sctp chunk init exists", "init cut short", true),
        ("sctp chunk init length { 20, 24 }", "init cut short", false),
        ("sctp chunk init missing", "chunk header cut short", true),
        (
            "sctp chunk data flags 3",
            "data longer than the packet",
            false,
        ),
        (
            "sctp chunk data exists",
            "data longer than the packet",
            true,
        ),
        ("sctp chunk init missing", "no chunks", true),
        // Not SCTP: `missing` holds, `exists` and fields do not.
        ("sctp chunk init missing", "udp", true),
        ("sctp chunk init exists", "udp", false),
        ("sctp chunk data flags 3", "udp", false),
        // 6.18 walks a later fragment's payload from nft_thoff() + 12.
        (
            "sctp chunk init num-inbound-streams 1",
            "ipv4 later fragment",
            true,
        ),
        ("sctp chunk data flags 3", "ipv4 first fragment", true),
        (
            "sctp chunk init num-inbound-streams 1",
            "ipv6 data, init",
            true,
        ),
        ("sctp chunk data exists", "ipv6 destination options", true),
        (
            "sctp chunk init num-inbound-streams 1",
            "ipv6 destination options",
            true,
        ),
        // An IPv6 later fragment has thoff 0: the walk reads its source address.
        ("sctp chunk init exists", "ipv6 later fragment", true),
        (
            "sctp chunk init length { 20, 24 }",
            "ipv6 later fragment",
            false,
        ),
        (
            "sctp chunk init num-inbound-streams 1",
            "ipv6 padding, init past 2048",
            true,
        ),
    ];
    for (program, frame_name, want) in cases {
        assert_eq!(
            holds(program, frame_name),
            want,
            "`{program}` on {frame_name}"
        );
    }
}
