//! Link-layer loads (`@ll`, `ether`, `vlan`) of residual programs.
//!
//! With BPF_PROG_TEST_RUN: frames without a hardware-accelerated VLAN tag (plain,
//! 802.1Q and QinQ tags in the frame, frames cut short) against the reference
//! ([`ResidualProgram::holds`]), both for the netdev/bridge reading
//! ([`PayloadBase::LinkLayer`]) and the IP hooks' ([`PayloadBase::LinkLayerUntagged`]).
//! BPF_PROG_TEST_RUN cannot give the skb an accelerated tag (its `__sk_buff` ctx_in
//! must leave vlan_present, vlan_tci and vlan_proto zero): that path is tested by
//! nft-tests/tests/vlan_e2e.rs over veth, and the reference's rebuilt header here
//! against what nft_payload_copy_vlan() builds.

mod common;

use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::residual::{
    link_bytes, CmpOp, Headers, Insn, MetaValues, NetdevFrame, PayloadBase, ResidualProgram,
};

const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// An Ethernet frame: addresses, then `rest` (ethertypes, tags, payload).
fn frame(rest: &[u8]) -> Vec<u8> {
    let mut f = DST.to_vec();
    f.extend_from_slice(&SRC);
    f.extend_from_slice(rest);
    f
}

/// An IPv4/UDP datagram (checksums do not matter to link-layer loads).
fn ipv4_udp() -> Vec<u8> {
    let mut ip = vec![
        0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
    ];
    ip.extend_from_slice(&[0x03, 0xe8, 0, 53, 0, 12, 0, 0, b'a', b'b', b'c', b'd']);
    ip
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let ip = ipv4_udp();
    let tagged = |tags: &[(u16, u16)]| {
        let mut rest = Vec::new();
        for &(proto, tci) in tags {
            rest.extend_from_slice(&proto.to_be_bytes());
            rest.extend_from_slice(&tci.to_be_bytes());
        }
        rest.extend_from_slice(&0x0800u16.to_be_bytes());
        rest.extend_from_slice(&ip);
        frame(&rest)
    };
    vec![
        ("ipv4", tagged(&[])),
        ("802.1Q vid 10 pcp 3", tagged(&[(0x8100, 0x600a)])),
        ("802.1Q vid 0 (priority tag)", tagged(&[(0x8100, 0x2000)])),
        (
            "802.1ad vid 1, 802.1Q vid 2",
            tagged(&[(0x88a8, 0x0001), (0x8100, 0x0002)]),
        ),
        ("Ethernet header only", frame(&[0x88, 0xb5])),
        ("16 bytes", frame(&[0x81, 0x00, 0x00])),
        (
            "17 bytes, tag cut short",
            frame(&[0x81, 0x00, 0x00, 0x0a, 0x08]),
        ),
        ("18 bytes", frame(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00])),
    ]
}

/// (name, offset, len, value): `@ll,offset*8,len*8 value`.
fn loads() -> Vec<(&'static str, u16, u8, Vec<u8>)> {
    vec![
        ("ether daddr", 0, 6, DST.to_vec()),
        ("ether saddr", 6, 6, SRC.to_vec()),
        ("ether type ip", 12, 2, vec![0x08, 0x00]),
        ("ether type vlan", 12, 2, vec![0x81, 0x00]),
        ("ether type 8021ad", 12, 2, vec![0x88, 0xa8]),
        ("vlan tci 0x600a", 14, 2, vec![0x60, 0x0a]),
        ("vlan type ip", 16, 2, vec![0x08, 0x00]),
        ("vlan type vlan", 16, 2, vec![0x81, 0x00]),
        ("inner vlan tci 2", 18, 2, vec![0x00, 0x02]),
        ("inner vlan type ip", 20, 2, vec![0x08, 0x00]),
        (
            "saddr tail, vlan proto and tci",
            10,
            6,
            vec![0, 1, 0x81, 0, 0x60, 0x0a],
        ),
        (
            "ether saddr . type",
            6,
            8,
            vec![2, 0, 0, 0, 0, 1, 0x88, 0xa8],
        ),
        ("16 bytes from 8", 8, 16, {
            let mut v = vec![0, 0, 0, 1, 0x81, 0, 0x60, 0x0a, 0x08, 0, 0x45, 0];
            v.extend_from_slice(&[0, 32, 0, 1]);
            v
        }),
        ("@ll,136,8 0x00", 17, 1, vec![0]),
        ("past the frame", 240, 16, vec![0; 16]),
    ]
}

fn program(base: PayloadBase, offset: u16, len: u8, value: &[u8]) -> ResidualProgram {
    ResidualProgram {
        insns: vec![
            Insn::Payload {
                base,
                offset,
                len,
                dreg: 0,
            },
            Insn::Cmp {
                sreg: 0,
                op: CmpOp::Eq,
                data: value.to_vec(),
            },
        ],
    }
}

fn programs() -> Vec<(String, ResidualProgram)> {
    let mut out = Vec::new();
    for base in [PayloadBase::LinkLayer, PayloadBase::LinkLayerUntagged] {
        for (name, offset, len, value) in loads() {
            out.push((
                format!("{name} ({base:?})"),
                program(base, offset, len, &value),
            ));
        }
    }
    out
}

fn reference(program: &ResidualProgram, frame: &[u8], egress: bool) -> bool {
    let headers = Headers {
        netdev: Some(NetdevFrame {
            frame: frame.to_vec(),
            skb_protocol: u16::from_be_bytes([frame[12], frame[13]]),
            egress,
            accel: None,
        }),
        ..Headers::default()
    };
    program.holds(&headers, &MetaValues::default())
}

/// Which (frame, program) pairs the BPF program's counters say matched.
fn bpf_matches(egress: bool) -> Option<Vec<Vec<bool>>> {
    let programs = programs();
    let rules = programs
        .iter()
        .map(|(_, p)| Rule::new(vec![Match::is(Test::Residual(p.clone()))], Action::Continue))
        .collect();
    let chain = Program::single(Chain {
        scope: L3Scope::Netdev,
        policy: Verdict::Accept,
        rules,
    });
    let compiled = compile_program(&chain).unwrap();
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
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let after = loaded.counters().unwrap();
        out.push(
            (0..programs.len())
                .map(|i| after[i].packets > before[i].packets)
                .collect(),
        );
    }
    Some(out)
}

#[test]
fn link_layer_loads_agree_with_the_reference() {
    let mut matched = 0;
    for egress in [false, true] {
        let Some(got) = bpf_matches(egress) else {
            return;
        };
        for (f, (frame_name, frame)) in frames().iter().enumerate() {
            for (p, (program_name, program)) in programs().iter().enumerate() {
                let want = reference(program, frame, egress);
                matched += want as usize;
                assert_eq!(
                    got[f][p], want,
                    "{program_name} on {frame_name} (egress {egress}): BPF vs reference"
                );
            }
        }
    }
    // The programs are not vacuous: many hold, many do not.
    assert!(matched > 20, "{matched}");
}

#[test]
fn without_an_accelerated_tag_both_bases_read_the_frame() {
    let frames = frames();
    let get = |name: &str| &frames.iter().find(|(n, _)| *n == name).unwrap().1;
    for base in [PayloadBase::LinkLayer, PayloadBase::LinkLayerUntagged] {
        let qinq = get("802.1ad vid 1, 802.1Q vid 2");
        assert!(reference(&program(base, 12, 2, &[0x88, 0xa8]), qinq, false));
        assert!(reference(&program(base, 18, 2, &[0, 2]), qinq, false));
        // 17 bytes: a 2-byte load at 16 breaks (skb_copy_bits past the end).
        let short = get("17 bytes, tag cut short");
        assert!(!reference(&program(base, 16, 2, &[0x08, 0]), short, false));
        assert!(reference(&program(base, 16, 1, &[0x08]), short, false));
    }
}

/// What nft_payload_copy_vlan() gives for a frame whose outer tag is accelerated:
/// the MAC addresses, vlan_proto, the TCI, skb->protocol, then the frame from byte 14.
#[test]
fn an_accelerated_tag_is_put_back_after_the_mac_addresses() {
    // On the wire: 802.1ad vid 1, 802.1Q vid 2, IPv4. The receive path took the outer
    // tag into the skb: the data keeps the inner one, skb->protocol is 0x8100.
    let wire = frames()
        .into_iter()
        .find(|(n, _)| *n == "802.1ad vid 1, 802.1Q vid 2")
        .unwrap()
        .1;
    let mut data = wire[..12].to_vec();
    data.extend_from_slice(&wire[16..]);
    let nf = NetdevFrame {
        frame: data.clone(),
        skb_protocol: 0x8100,
        egress: false,
        accel: Some((0x88a8, 0x0001)),
    };
    // Every load of the wire's bytes reads them back, whatever its span.
    for offset in 0..wire.len() {
        for len in 1..=16.min(wire.len() - offset) {
            assert_eq!(
                link_bytes(&nf, offset, len, true).as_deref(),
                Some(&wire[offset..offset + len]),
                "offset {offset} len {len}"
            );
        }
    }
    // Past the (virtual) end: break.
    assert_eq!(link_bytes(&nf, wire.len() - 1, 2, true), None);
    // Loads within the addresses do not rebuild (nft_payload_need_vlan_adjust).
    assert_eq!(link_bytes(&nf, 0, 12, true).as_deref(), Some(&wire[..12]));
    // The IP hooks' reading ignores the tag: the data as it is.
    assert_eq!(
        link_bytes(&nf, 12, 2, false).as_deref(),
        Some(&[0x81, 0x00][..])
    );
    // skb->protocol, not the data, gives bytes 16-17 (vlan_set_encap_proto turns
    // an 802.3 length into ETH_P_802_3).
    let nf3 = NetdevFrame {
        frame: frame(&[0x00, 0x40, 0xaa, 0xaa]),
        skb_protocol: 0x0001,
        egress: false,
        accel: Some((0x8100, 0x000a)),
    };
    assert_eq!(
        link_bytes(&nf3, 12, 6, true).as_deref(),
        Some(&[0x81, 0x00, 0x00, 0x0a, 0x00, 0x01][..])
    );
    assert_eq!(
        link_bytes(&nf3, 18, 2, true).as_deref(),
        Some(&[0xaa, 0xaa][..])
    );
    // A frame shorter than the Ethernet header cannot be rebuilt.
    let tiny = NetdevFrame {
        frame: DST.to_vec(),
        ..nf3.clone()
    };
    assert_eq!(link_bytes(&tiny, 12, 2, true), None);
    assert_eq!(link_bytes(&tiny, 0, 6, true).as_deref(), Some(&DST[..]));
}
