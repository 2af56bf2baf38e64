//! xt_TCPOPTSTRIP in the kernel with BPF_PROG_TEST_RUN: the frame the program lets
//! through is the reference's (src/rewrite.rs `strip_tcp_options`, which fixes the
//! checksum up byte by byte as the kernel does) byte for byte, over arbitrary option
//! bytes, header lengths and kinds; its TCP checksum verifies whenever it did before;
//! cut-short headers are dropped; later rules see the stripped options.

mod common;

use common::frames;
use common::load_or_skip;
use nftshim_ebpf::fields::PacketFields;
use nftshim_ebpf::ir::{
    Action, Chain, L3Scope, Match, Program, Rule, Statement, TcpOptStrip, Test, Verdict,
};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{CmpOp, Headers, Insn, ResidualProgram};
use nftshim_ebpf::rewrite::sum16;
use proptest::prelude::*;

fn strip(kinds: &[u8]) -> TcpOptStrip {
    let mut s = TcpOptStrip { kinds: [0; 32] };
    for &k in kinds {
        s.kinds[usize::from(k / 8)] |= 1 << (k % 8);
    }
    s
}

/// `-p tcp -j TCPOPTSTRIP`, then `rest`, policy accept.
fn program(s: TcpOptStrip, rest: Vec<Rule>) -> Program {
    let mut rules = vec![
        Rule::new(vec![Match::is(Test::L4Proto(vec![6]))], Action::Continue)
            .with(Statement::TcpOptStrip(s)),
    ];
    rules.extend(rest);
    Program::single(Chain {
        scope: L3Scope::Inet,
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

/// An Ethernet frame with an IPv4 (or IPv6) header and a TCP header whose data offset
/// is `doff` and whose bytes from 20 on are `options`, then `payload`; `tcp_len` cuts
/// the TCP bytes the datagram holds (the IP length says so too). The TCP checksum is
/// right for the bytes the datagram holds.
fn frame(v6: bool, doff: u8, options: &[u8], payload: &[u8], tcp_len: Option<usize>) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = doff << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64000u16.to_be_bytes());
    tcp.extend_from_slice(options);
    tcp.extend_from_slice(payload);
    if let Some(n) = tcp_len {
        tcp.truncate(n);
    }
    let (src, dst): (Vec<u8>, Vec<u8>) = if v6 {
        (
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec(),
            "2001:db8::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec(),
        )
    } else {
        (vec![10, 0, 0, 1], vec![10, 0, 0, 2])
    };
    if tcp.len() >= 18 {
        let mut pseudo = [src.clone(), dst.clone()].concat();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&tcp);
        let c = !sum16(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
    }
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
    } else {
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(20 + tcp.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = !sum16(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
    }
    f.extend_from_slice(&tcp);
    f
}

/// What rules see in `f`: the fields of the same frame with a plain 20-byte TCP
/// header (which etherparse reads whatever the options), the real bytes as headers.
fn fields(f: &[u8]) -> PacketFields {
    let v6 = f[12..14] == [0x86, 0xdd];
    let th = if v6 { 40 } else { 20 };
    let mut plain = f.to_vec();
    plain[14 + th + 12] = 0x50;
    let mut p = frames::fields_of(&plain, 0, 0);
    p.headers = Some(Headers {
        network: f[14..].to_vec(),
        transport: Some(th),
        protocol: if v6 { 0x86dd } else { 0x0800 },
        ..Default::default()
    });
    p
}

/// The BPF program and the reference on `f`: same verdict, same frame out.
fn run(
    loaded: &LoadedProgram,
    program: &Program,
    f: &[u8],
    p: &PacketFields,
) -> (Verdict, Vec<u8>) {
    let run = loaded.run_tc(f, SkbMeta::default(), 1).unwrap();
    let eval = Reference::new(program).unwrap().evaluate(p).unwrap();
    assert_eq!(run.verdict, eval.verdict, "verdict");
    if run.verdict == Verdict::Accept {
        let expected = match eval.effects.network {
            Some(net) => [&f[..14], &net[..]].concat(),
            None => f.to_vec(),
        };
        assert_eq!(run.packet, expected, "the frame let through");
    }
    (run.verdict, run.packet)
}

fn tcp_checksum_verifies(f: &[u8]) -> bool {
    let v6 = f[12..14] == [0x86, 0xdd];
    let net = &f[14..];
    let (th, pseudo) = if v6 {
        (40, net[8..40].to_vec())
    } else {
        (20, net[12..20].to_vec())
    };
    let seg = &net[th..];
    let mut all = pseudo;
    all.extend_from_slice(&[0, 6]);
    all.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    all.extend_from_slice(seg);
    sum16(&all) == 0xffff
}

/// A SYN's usual options: MSS, SACK permitted, timestamps, NOP, window scale.
const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

#[test]
fn strips_sack_permitted_and_timestamps_from_a_syn() {
    let p = program(strip(&[4, 8]), vec![]);
    let Some(loaded) = load(&p) else { return };
    for v6 in [false, true] {
        let f = frame(v6, 10, &SYN_OPTIONS, &[], None);
        let (verdict, out) = run(&loaded, &p, &f, &fields(&f));
        assert_eq!(verdict, Verdict::Accept);
        let th = 14 + if v6 { 40 } else { 20 };
        let mut want = SYN_OPTIONS;
        want[4..16].fill(1);
        assert_eq!(&out[th + 20..th + 40], &want);
        assert!(tcp_checksum_verifies(&out));
    }
}

#[test]
fn later_rules_see_the_stripped_options() {
    // A later rule drops packets whose byte 20 of TCP is still the MSS kind.
    let mss_first = Match::is(Test::Residual(ResidualProgram {
        insns: vec![
            Insn::Payload {
                base: nftshim_ebpf::residual::PayloadBase::Transport,
                offset: 20,
                len: 1,
                dreg: 0,
            },
            Insn::Cmp {
                sreg: 0,
                op: CmpOp::Eq,
                data: vec![2],
            },
        ],
    }));
    for (kinds, verdict) in [(&[2u8][..], Verdict::Accept), (&[3u8][..], Verdict::Drop)] {
        let p = program(
            strip(kinds),
            vec![Rule::new(vec![mss_first.clone()], Action::Drop)],
        );
        let Some(loaded) = load(&p) else { return };
        let f = frame(false, 10, &SYN_OPTIONS, &[], None);
        assert_eq!(run(&loaded, &p, &f, &fields(&f)).0, verdict);
    }
}

#[test]
fn cut_short_headers_are_dropped() {
    let p = program(strip(&[2]), vec![]);
    let Some(loaded) = load(&p) else { return };
    for v6 in [false, true] {
        // Data offset 4 (under the header's own 20 bytes).
        let f = frame(v6, 4, &[], &[0; 8], None);
        assert_eq!(run(&loaded, &p, &f, &fields(&f)).0, Verdict::Drop);
        // Data offset 15 (60 bytes) in a datagram of 20 + 24 TCP bytes.
        let f = frame(v6, 15, &SYN_OPTIONS[..4], &[], None);
        assert_eq!(run(&loaded, &p, &f, &fields(&f)).0, Verdict::Drop);
        // A TCP header cut at 16 bytes (the reference needs a TCP header to parse).
        let f = frame(v6, 5, &[], &[], Some(16));
        let run = loaded.run_tc(&f, SkbMeta::default(), 1).unwrap();
        assert_eq!(run.verdict, Verdict::Drop);
    }
    // No option of the kinds: the packet goes on unchanged.
    let f = frame(false, 6, &[3, 3, 7, 0], &[1, 2, 3], None);
    let (verdict, out) = run(&loaded, &p, &f, &fields(&f));
    assert_eq!((verdict, out), (Verdict::Accept, f));
}

/// Option bytes that parse in many ways: kinds 0-9 and a few others, lengths 0-12.
fn option_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            (0u8..10).boxed(),
            prop::sample::select(vec![0u8, 1, 2, 3, 4, 8, 12, 30, 34, 253, 254, 255]).boxed(),
            any::<u8>().boxed(),
        ],
        0..=40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn bpf_strips_as_the_kernel_does(
        v6 in any::<bool>(),
        options in option_bytes(),
        extra in 0usize..3,
        kinds in prop::collection::vec(2u8..=255, 0..6),
        low in prop::collection::vec(2u8..10, 0..4),
        payload in prop::collection::vec(any::<u8>(), 0..6),
        csum_ffff in any::<bool>(),
    ) {
        // Options padded to whole words; sometimes the data offset claims fewer.
        let mut options = options;
        options.resize(options.len().div_ceil(4) * 4, 1);
        let doff = (5 + options.len() / 4).saturating_sub(extra).max(5) as u8;
        let mut f = frame(v6, doff, &options, &payload, None);
        let th = 14 + if v6 { 40 } else { 20 };
        if csum_ffff {
            // A checksum field of 0xffff instead of its equal 0 (or 0 instead of
            // 0xffff): the one's complement sum still verifies.
            let c = u16::from_be_bytes([f[th + 16], f[th + 17]]);
            if c == 0 || c == 0xffff {
                f[th + 16..th + 18].copy_from_slice(&(!c).to_be_bytes());
            }
        }
        let all: Vec<u8> = kinds.iter().chain(&low).copied().collect();
        let p = program(strip(&all), vec![]);
        let Some(loaded) = load(&p) else { return Ok(()) };
        let (verdict, out) = run(&loaded, &p, &f, &fields(&f));
        prop_assert_eq!(verdict, Verdict::Accept);
        prop_assert!(tcp_checksum_verifies(&out));
    }
}
