//! ebtables' residual operations (bpf/lib/ebt.h: a load placed by a header length
//! field, ebt_ip6's ipv6_skip_exthdr() walk, ebt_802_3's type after either control
//! field) with BPF_PROG_TEST_RUN in the netdev view bridge rules run in, at TC ingress
//! and egress, against the reference ([`ResidualProgram::holds`]) on frames that make
//! them take each path: IP options, short headers, extension headers (a later
//! fragment, "no next header", a header cut short, many of them), ARP with other
//! address lengths, gratuitous ARP (two fields compared), LLC frames of both control field sizes.

mod common;

use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::residual::{
    CmpOp, Headers, Insn, MetaValues, NetdevFrame, PayloadBase, ResidualProgram,
};

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 with IHL `ihl` (options zero) and fragment field `frag`, then `l4`.
fn ipv4(ihl: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x40 | ihl, 0, 0, 0, 0, 0];
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    ip.resize((ihl as usize * 4).max(20), 0);
    ip.extend_from_slice(l4);
    eth(0x0800, &ip)
}

fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, rest.len() as u8, next, 64];
    ip.extend_from_slice(&[0xfd; 32]);
    ip.extend_from_slice(rest);
    eth(0x86dd, &ip)
}

const UDP_53: [u8; 8] = [0x0f, 0xa0, 0, 53, 0, 8, 0, 0];

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let hbh = |next: u8, len: u8| {
        let mut h = vec![next, len];
        h.resize((len as usize + 1) * 8, 0);
        h
    };
    let mut many = Vec::new();
    for _ in 0..12 {
        many.extend(hbh(60, 0));
    }
    many.extend(hbh(17, 0));
    many.extend_from_slice(&UDP_53);
    let mut behind_hbh = hbh(17, 1);
    behind_hbh.extend_from_slice(&UDP_53);
    let mut first_frag = vec![17, 0, 0, 1, 0, 0, 0, 1];
    first_frag.extend_from_slice(&UDP_53);
    let mut later_frag = vec![17, 0, 0, 8, 0, 0, 0, 1];
    later_frag.extend_from_slice(&UDP_53);
    let mut ah = vec![17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    ah.extend_from_slice(&UDP_53);
    let arp_to = |hln: u8, target: u8| {
        let mut a = vec![0, 1, 8, 0, hln, 4, 0, 1];
        a.extend(std::iter::repeat_n(0xaa, hln as usize));
        a.extend_from_slice(&[10, 0, 0, 1]);
        a.extend(std::iter::repeat_n(0xbb, hln as usize));
        a.extend_from_slice(&[10, 0, 0, target]);
        eth(0x0806, &a)
    };
    let arp = |hln: u8| arp_to(hln, 2);
    let llc = |ctrl: u8, tail: &[u8]| {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 46, 0xaa, 0xaa, ctrl];
        f.extend_from_slice(tail);
        f
    };
    vec![
        ("udp", ipv4(5, 0, &UDP_53)),
        ("udp after options", ipv4(7, 0, &UDP_53)),
        ("udp, ihl 15", ipv4(15, 0, &UDP_53)),
        (
            "udp, ihl 15, cut short",
            ipv4(15, 0, &UDP_53)[..14 + 62].to_vec(),
        ),
        ("udp, ihl 2", ipv4(2, 0, &UDP_53)),
        ("udp later fragment", ipv4(5, 0x0010, &UDP_53)),
        ("udp, 3 bytes", ipv4(5, 0, &UDP_53[..3])),
        ("ipv6 udp", ipv6(17, &UDP_53)),
        ("ipv6 hbh udp", ipv6(0, &behind_hbh)),
        ("ipv6 first fragment", ipv6(44, &first_frag)),
        ("ipv6 later fragment", ipv6(44, &later_frag)),
        ("ipv6 ah udp", ipv6(51, &ah)),
        ("ipv6 13 extension headers", ipv6(0, &many)),
        ("ipv6 no next header", ipv6(59, &UDP_53)),
        ("ipv6 hbh cut short", ipv6(0, &[17])),
        ("arp hln 6", arp(6)),
        ("arp hln 8", arp(8)),
        ("arp hln 6, cut short", arp(6)[..14 + 20].to_vec()),
        ("arp gratuitous hln 8", arp_to(8, 1)),
        ("arp gratuitous hln 6", arp_to(6, 1)),
        (
            "arp gratuitous, cut short",
            arp_to(6, 1)[..14 + 26].to_vec(),
        ),
        ("llc ui", llc(3, &[0, 0, 0, 8, 0, 0, 0, 0, 0])),
        ("llc i", llc(0, &[0, 0, 0, 0, 0, 8, 0, 0, 0])),
        ("llc i, cut short", llc(0, &[0, 0, 0, 0, 0])),
    ]
}

fn cmp(data: &[u8]) -> Insn {
    Insn::Cmp {
        sreg: 0,
        op: CmpOp::Eq,
        data: data.to_vec(),
    }
}

/// ebt_arp's `--arp-gratuitous`: the sender IP address (after `ar_hln`) at register 0,
/// the target's (after twice that and the sender's) at 4, compared.
fn gratuitous(negated: bool) -> Vec<Insn> {
    let after_hln = |scale, offset, dreg| Insn::PayloadIndexed {
        index: 4,
        mask: 0xff,
        scale,
        offset,
        len: 4,
        dreg,
    };
    vec![
        after_hln(1, 8, 0),
        after_hln(2, 12, 4),
        Insn::HalvesEq {
            sreg: 0,
            len: 4,
            negated,
        },
    ]
}

fn programs() -> Vec<(&'static str, Vec<Insn>)> {
    let at_ihl = |offset, len| Insn::PayloadIndexed {
        index: 0,
        mask: 0x0f,
        scale: 4,
        offset,
        len,
        dreg: 0,
    };
    let skip = |offset, len, nexthdr| Insn::Ip6SkipExthdr {
        offset,
        len,
        dreg: 0,
        nexthdr,
    };
    vec![
        ("dport 53 at ihl*4", vec![at_ihl(2, 2), cmp(&[0, 53])]),
        (
            "4 bytes at ihl*4",
            vec![at_ihl(0, 4), cmp(&[0x0f, 0xa0, 0, 53])],
        ),
        ("ipv6 upper layer udp", vec![skip(0, 1, true), cmp(&[17])]),
        (
            "ipv6 upper layer fragment",
            vec![skip(0, 1, true), cmp(&[44])],
        ),
        (
            "ipv6 upper layer dport 53",
            vec![skip(2, 2, false), cmp(&[0, 53])],
        ),
        (
            "arp target ip after 2 * hln",
            vec![
                Insn::PayloadIndexed {
                    index: 4,
                    mask: 0xff,
                    scale: 2,
                    offset: 12,
                    len: 4,
                    dreg: 0,
                },
                cmp(&[10, 0, 0, 2]),
            ],
        ),
        (
            "arp target mac after hln + pln",
            vec![
                Insn::PayloadIndexed {
                    index: 5,
                    mask: 0xff,
                    scale: 1,
                    offset: 14,
                    len: 6,
                    dreg: 0,
                },
                cmp(&[0xbb; 6]),
            ],
        ),
        ("arp gratuitous", gratuitous(false)),
        ("arp not gratuitous", gratuitous(true)),
        (
            "llc snap type 0800",
            vec![
                Insn::LinkChoice {
                    index: 16,
                    mask: 3,
                    offset_set: 20,
                    offset_clear: 22,
                    len: 2,
                    dreg: 0,
                },
                cmp(&[8, 0]),
            ],
        ),
        (
            "network byte 0 present",
            vec![
                Insn::Payload {
                    base: PayloadBase::Network,
                    offset: 0,
                    len: 1,
                    dreg: 0,
                },
                Insn::Range {
                    sreg: 0,
                    negated: false,
                    from: vec![0],
                    to: vec![0xff],
                },
            ],
        ),
    ]
}

fn with_view(insns: &[Insn]) -> ResidualProgram {
    let mut all = vec![Insn::NetdevView];
    all.extend_from_slice(insns);
    ResidualProgram { insns: all }
}

/// Which (frame, program) pairs match at one hook: the BPF program's counters.
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
    for (name, frame) in frames() {
        let before = loaded.counters().unwrap();
        let meta = SkbMeta {
            mark: 0,
            ingress_ifindex: 0,
            ifindex: 0,
        };
        loaded
            .run_tc(&frame, meta, 1)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
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

/// What ebt_ip/ebt_ip6/ebt_arp/ebt_802_3 read there (net/bridge/netfilter), where the
/// frames were built for it.
fn kernel_reads(program: &str, frame: &str) -> Option<bool> {
    Some(match (program, frame) {
        ("dport 53 at ihl*4", "udp after options") => true,
        ("dport 53 at ihl*4", "udp, ihl 15, cut short") => false,
        ("ipv6 upper layer udp", "ipv6 13 extension headers") => true,
        ("ipv6 upper layer fragment", "ipv6 later fragment") => true,
        ("ipv6 upper layer udp", "ipv6 first fragment") => true,
        ("ipv6 upper layer dport 53", "ipv6 ah udp") => true,
        ("ipv6 upper layer udp", "ipv6 no next header") => false,
        ("arp target ip after 2 * hln", "arp hln 8") => true,
        ("llc snap type 0800", "llc i") => true,
        ("arp gratuitous", "arp gratuitous hln 8") => true,
        ("arp gratuitous", "arp gratuitous hln 6") => true,
        ("arp gratuitous", "arp hln 6") => false,
        ("arp not gratuitous", "arp hln 6") => true,
        ("arp not gratuitous", "arp gratuitous hln 6") => false,
        // The target address is not all there: no match, inverted or not.
        ("arp gratuitous", "arp gratuitous, cut short") => false,
        ("arp not gratuitous", "arp gratuitous, cut short") => false,
        ("llc snap type 0800", "llc ui") => true,
        _ => return None,
    })
}

#[test]
fn ebtables_operations_agree_with_the_reference() {
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
                if let Some(kernel) = kernel_reads(program_name, frame_name) {
                    assert_eq!(want, kernel, "{program_name} on {frame_name}: reference");
                }
            }
        }
    }
}
