//! xt_HMARK's packet tuple on IPv4 in the kernel with BPF_PROG_TEST_RUN: the mark the
//! program leaves on the skb is the reference's (src/ir.rs `Hmark::mark_ipv4`, written
//! from hmark_pkt_set_htuple_ipv4() and hmark_hash()) over arbitrary masks, seeds,
//! moduli and offsets, and over TCP, UDP, SCTP, ESP, AH, ICMP, other protocols,
//! fragments, IP options and ICMP errors quoting (possibly cut) headers; later rules
//! see the new mark.

mod common;

use common::load_or_skip;
use nftshim_ebpf::ir::{
    jhash_3words, Action, Chain, Hmark, L3Scope, Match, Program, Rule, Statement, Test, Verdict,
};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use proptest::prelude::*;

/// `-j HMARK ...` on IPv4, then `rest`, policy accept.
fn program(h: Hmark, rest: Vec<Rule>) -> Program {
    let mut rules = vec![Rule::new(
        vec![Match::is(Test::IpSaddr(vec![Default::default()]))],
        Action::Continue,
    )
    .with(Statement::Hmark(h))];
    rules.extend(rest);
    Program::single(Chain {
        scope: L3Scope::Ipv4,
        policy: Verdict::Accept,
        rules,
    })
}

fn load(program: &Program) -> Option<LoadedProgram> {
    load_or_skip(
        &compile_program(program).expect("program compiles"),
        LoadOptions::default(),
    )
}

/// An IPv4 header (with `options`, a multiple of 4 bytes) of protocol `proto` and
/// fragment field `frag`, then `payload`.
fn ip(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&((ihl * 4 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(options);
    let sum = h
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = (sum & 0xffff) + (sum >> 16);
    let c = !(((sum & 0xffff) + (sum >> 16)) as u16);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn frame(datagram: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(datagram);
    f
}

fn mark_of(loaded: &LoadedProgram, f: &[u8], before: u32) -> (Verdict, u32) {
    let run = loaded
        .run_tc(
            f,
            SkbMeta {
                mark: before,
                ..SkbMeta::default()
            },
            1,
        )
        .unwrap();
    (run.verdict, run.mark.unwrap())
}

fn hmark(modulus: u32, offset: u32) -> Hmark {
    Hmark {
        src_mask: [255; 4],
        dst_mask: [255; 4],
        port_mask: [255; 4],
        port_set: [0; 4],
        l3: false,
        proto_mask: 0xff,
        rnd: 4,
        modulus,
        offset,
    }
}

#[test]
fn jhash_3words_is_symmetric_in_the_sorted_addresses_only() {
    // hmark_hash() sorts the addresses and hmark_swap_ports() the ports: a reply
    // gets its request's mark.
    let h = hmark(0xffff_ffff, 0);
    let req = ip(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        6,
        0,
        &[],
        &[0x04, 0xd2, 0, 80, 0, 0, 0, 0],
    );
    let rep = ip(
        [10, 0, 0, 2],
        [10, 0, 0, 1],
        6,
        0,
        &[],
        &[0, 80, 0x04, 0xd2, 0, 0, 0, 0],
    );
    assert_eq!(h.mark_ipv4(&req), h.mark_ipv4(&rep));
    assert_ne!(jhash_3words(1, 2, 3, 4), jhash_3words(2, 1, 3, 4));
}

#[test]
fn marks_and_later_rules_see_the_mark() {
    let h = hmark(42, 1);
    let udp = ip(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        17,
        0,
        &[],
        &[0x30, 0x39, 0, 53, 0, 8, 0, 0],
    );
    let want = h.mark_ipv4(&udp).unwrap();
    assert!((1..43).contains(&want));
    // A later rule drops packets with that mark.
    let p = program(
        h,
        vec![Rule::new(
            vec![Match::is(Test::Mark {
                mask: u32::MAX,
                values: vec![want],
            })],
            Action::Drop,
        )],
    );
    let Some(loaded) = load(&p) else { return };
    assert_eq!(mark_of(&loaded, &frame(&udp), 0x77), (Verdict::Drop, want));
}

#[test]
fn an_icmp_error_too_short_for_its_quote_leaves_the_mark() {
    let p = program(hmark(42, 1), vec![]);
    let Some(loaded) = load(&p) else { return };
    // Destination unreachable quoting 12 bytes of an IP header.
    let err = ip(
        [10, 0, 0, 9],
        [10, 0, 0, 1],
        1,
        0,
        &[],
        &[
            3, 1, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0,
        ],
    );
    assert_eq!(hmark(42, 1).mark_ipv4(&err), None);
    assert_eq!(
        mark_of(&loaded, &frame(&err), 0x77),
        (Verdict::Accept, 0x77)
    );
}

/// A datagram of one of the protocols HMARK treats differently.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let proto = prop::sample::select(vec![1u8, 6, 17, 33, 47, 50, 51, 132, 136, 253]);
    let frag = prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x0001, 0x2003]);
    let options = prop::sample::select(vec![0usize, 4, 8]);
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        proto,
        frag,
        options,
        prop::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(s, d, p, f, o, pl)| ip(s, d, p, f, &vec![1; o], &pl))
}

/// An ICMP error of a type HMARK looks into, or another ICMP type, quoting `inner`
/// (cut to `keep` bytes).
fn icmp_around(inner: Vec<u8>, ty: u8, keep: usize) -> Vec<u8> {
    let mut icmp = vec![ty, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&inner[..keep.min(inner.len())]);
    ip([192, 0, 2, 1], [10, 0, 0, 1], 1, 0, &[], &icmp)
}

fn spec() -> impl Strategy<Value = Hmark> {
    let mask4 = prop_oneof![
        Just([255u8; 4]),
        Just([255, 255, 255, 0]),
        Just([0u8; 4]),
        any::<[u8; 4]>()
    ];
    (
        mask4.clone(),
        mask4,
        prop_oneof![Just([255u8; 4]), Just([0u8; 4]), any::<[u8; 4]>()],
        prop_oneof![Just([0u8; 4]), any::<[u8; 4]>()],
        any::<bool>(),
        any::<u8>(),
        any::<u32>(),
        prop_oneof![Just(1u32), Just(42), 1u32..=u32::MAX],
        any::<u32>(),
    )
        .prop_map(
            |(s, d, pm, ps, l3, proto_mask, rnd, modulus, offset)| Hmark {
                src_mask: s,
                dst_mask: d,
                port_mask: pm,
                port_set: ps,
                l3,
                proto_mask: if l3 { 0 } else { proto_mask },
                rnd,
                modulus,
                offset,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn bpf_marks_as_the_reference(
        h in spec(),
        d in datagram(),
        error in prop::option::of((prop::sample::select(vec![3u8, 4, 5, 11, 12, 0, 8, 13, 40]), 0usize..80)),
        before in any::<u32>(),
    ) {
        let p = program(h, vec![]);
        let Some(loaded) = load(&p) else { return Ok(()) };
        let d = match error {
            Some((ty, keep)) => icmp_around(d, ty, keep),
            None => d,
        };
        let want = h.mark_ipv4(&d).unwrap_or(before);
        let (verdict, got) = mark_of(&loaded, &frame(&d), before);
        prop_assert_eq!(verdict, Verdict::Accept);
        prop_assert_eq!(got, want, "datagram {:02x?}", d);
    }
}
