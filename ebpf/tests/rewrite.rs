//! Header writes (`payload set`) in the kernel with BPF_PROG_TEST_RUN: the frame the
//! program lets through is the reference's (src/rewrite.rs) byte for byte, its
//! checksums verify, and later rules match the new values, never the old ones.

mod common;

use std::net::IpAddr;

use common::frames::{self, addr, ACK};
use common::load_or_skip;
use nftshim_ebpf::fields::PacketFields;
use nftshim_ebpf::ir::{
    Action, Chain, L3Scope, Match, PayloadWrite, PortRange, Program, Rule, SaturatingAdd,
    Statement, Test, Verdict, WriteBase,
};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::{compile_program, BuildError};
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{CmpOp, Headers, Insn, PayloadBase, ResidualProgram};
use nftshim_ebpf::rewrite::sum16;

fn program(policy: Verdict, rules: Vec<Rule>) -> Program {
    Program::single(Chain {
        scope: L3Scope::Inet,
        policy,
        rules,
    })
}

fn load(program: &Program) -> Option<LoadedProgram> {
    load_or_skip(
        &compile_program(program).expect("program compiles"),
        LoadOptions::default(),
    )
}

/// What rules see in `frame`, with its header bytes.
fn fields(frame: &[u8]) -> PacketFields {
    let mut f = frames::fields_of(frame, 0, 0);
    let network = frame[14..].to_vec();
    let (transport, protocol) = if frame[12..14] == [8, 0] {
        (((network[0] & 0xf) as usize) * 4, 0x0800)
    } else {
        (40, 0x86dd)
    };
    f.headers = Some(Headers {
        network,
        transport: Some(transport),
        protocol,
        ..Default::default()
    });
    f
}

/// Runs `frame` through the loaded program and the reference: same verdict, same
/// bytes out. Returns the frame let through (empty when dropped).
fn run(loaded: &LoadedProgram, program: &Program, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let run = loaded.run_tc(frame, SkbMeta::default(), 1).unwrap();
    let eval = Reference::new(program)
        .unwrap()
        .evaluate(&fields(frame))
        .unwrap();
    assert_eq!(run.verdict, eval.verdict, "verdict");
    if run.verdict == Verdict::Accept {
        let expected = match eval.effects.network {
            Some(net) => [&frame[..14], &net[..]].concat(),
            None => frame.to_vec(),
        };
        assert_eq!(run.packet, expected, "the frame let through");
    }
    (run.verdict, run.packet)
}

/// The checksums of an IPv4/IPv6 TCP or UDP frame verify (a UDP checksum of 0 is none).
fn checksums_verify(frame: &[u8]) -> bool {
    let net = &frame[14..];
    let (th, proto, pseudo) = if frame[12..14] == [8, 0] {
        let ihl = (net[0] & 0xf) as usize * 4;
        if sum16(&net[..ihl]) != 0xffff {
            return false;
        }
        (ihl, net[9], net[12..20].to_vec())
    } else {
        (40, net[6], net[8..40].to_vec())
    };
    let seg = &net[th..];
    if proto == 17 && seg[6..8] == [0, 0] {
        return true;
    }
    let mut all = pseudo;
    all.extend_from_slice(&[0, proto]);
    all.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    all.extend_from_slice(seg);
    sum16(&all) == 0xffff
}

fn write(base: WriteBase, offset: u8, mask: &[u8], xor: &[u8]) -> PayloadWrite {
    let mut w = PayloadWrite {
        base,
        offset,
        len: xor.len() as u8,
        mask: [0; 16],
        xor: [0; 16],
        csum_inet: false,
        csum_offset: 0,
        pseudo_header: false,
        csum_keep_zero: false,
        saturating: None,
    };
    w.mask[..mask.len()].copy_from_slice(mask);
    w.xor[..xor.len()].copy_from_slice(xor);
    w
}

/// `udp dport set PORT` / `tcp dport set PORT`, as nft sends it.
fn dport_set(port: u16, csum_offset: u8) -> Statement {
    let mut w = write(WriteBase::Transport, 2, &[], &port.to_be_bytes());
    (w.csum_inet, w.csum_offset) = (true, csum_offset);
    Statement::PayloadSet(w)
}

fn dport(port: u16) -> Match {
    Match::is(Test::Dport(vec![PortRange::single(port)]))
}

fn udp4(dport: u16) -> Vec<u8> {
    frames::udp(addr("10.0.0.1"), addr("10.0.0.2"), 9, dport)
}

#[test]
fn later_rules_see_the_new_port_and_never_the_old_one() {
    // dport 53 -> 5353; a later rule on 53 must not match, one on 5353 must.
    let p = program(
        Verdict::Drop,
        vec![
            Rule::new(vec![dport(53)], Action::Continue).with(dport_set(5353, 6)),
            Rule::new(vec![dport(53)], Action::Drop),
            Rule::new(vec![dport(5353)], Action::Accept),
        ],
    );
    let Some(loaded) = load(&p) else { return };
    let (verdict, out) = run(&loaded, &p, &udp4(53));
    assert_eq!(verdict, Verdict::Accept);
    assert_eq!(&out[36..38], &5353u16.to_be_bytes());
    assert!(checksums_verify(&out));
    // Untouched packets: 5353 passes as it is, anything else meets the policy.
    let (verdict, out) = run(&loaded, &p, &udp4(5353));
    assert_eq!((verdict, out), (Verdict::Accept, udp4(5353)));
    assert_eq!(run(&loaded, &p, &udp4(54)).0, Verdict::Drop);
}

#[test]
fn tcp_port_and_address_writes_keep_the_checksums_right() {
    // tcp dport set 8080, ip daddr set 192.0.2.7 (pseudo-header), then the new address
    // and port decide.
    let mut daddr = write(WriteBase::Network, 16, &[], &[192, 0, 2, 7]);
    (daddr.csum_inet, daddr.csum_offset, daddr.pseudo_header) = (true, 10, true);
    let p = program(
        Verdict::Drop,
        vec![
            Rule::new(vec![dport(80)], Action::Continue)
                .with(dport_set(8080, 16))
                .with(Statement::PayloadSet(daddr)),
            Rule::new(
                vec![
                    Match::is(Test::IpDaddr(vec!["192.0.2.7/32".parse().unwrap()])),
                    dport(8080),
                ],
                Action::Accept,
            ),
        ],
    );
    let Some(loaded) = load(&p) else { return };
    let frame = frames::tcp(addr("10.0.0.1"), addr("10.0.0.2"), 1234, 80, ACK);
    let (verdict, out) = run(&loaded, &p, &frame);
    assert_eq!(verdict, Verdict::Accept);
    assert_eq!(&out[30..34], &[192, 0, 2, 7]);
    assert!(checksums_verify(&out));
}

/// `ip ttl set 23` as nft sends it: a read-modify-write of bytes 8-9 (ttl, protocol).
fn ttl_set(ttl: u8) -> Statement {
    let mut w = write(WriteBase::Network, 8, &[0x00, 0xff], &[ttl, 0]);
    (w.csum_inet, w.csum_offset) = (true, 10);
    Statement::PayloadSet(w)
}

/// `ip ttl VALUE` as a residual test.
fn ttl_is(ttl: u8) -> Match {
    Match::is(Test::Residual(ResidualProgram {
        insns: vec![
            Insn::Payload {
                base: PayloadBase::Network,
                offset: 8,
                len: 1,
                dreg: 0,
            },
            Insn::Cmp {
                sreg: 0,
                op: CmpOp::Eq,
                data: vec![ttl],
            },
        ],
    }))
}

#[test]
fn ttl_writes_are_seen_by_residual_tests_and_fix_the_header_checksum() {
    let p = program(
        Verdict::Drop,
        vec![
            Rule::new(vec![], Action::Continue).with(ttl_set(23)),
            Rule::new(vec![ttl_is(64)], Action::Drop),
            Rule::new(vec![ttl_is(23)], Action::Accept),
        ],
    );
    let Some(loaded) = load(&p) else { return };
    for frame in [
        udp4(53),
        frames::tcp(addr("10.0.0.1"), addr("10.0.0.2"), 1, 2, ACK),
    ] {
        let (verdict, out) = run(&loaded, &p, &frame);
        assert_eq!(verdict, Verdict::Accept);
        assert_eq!(out[22], 23);
        assert_eq!(out[23], frame[23], "the protocol byte is kept");
        assert!(checksums_verify(&out));
    }
}

/// An IPv4 UDP frame whose header checksum is 0 once its TTL is `ttl` (its IP id
/// chosen for that), with a valid checksum for the TTL it has.
fn udp4_zero_checksum_at_ttl(ttl: u8) -> Vec<u8> {
    let mut f = udp4(53);
    let ip = 14;
    f[ip + 4..ip + 6].fill(0);
    f[ip + 10..ip + 12].fill(0);
    let old_ttl = f[ip + 8];
    f[ip + 8] = ttl;
    // Words summing to 0xffff leave a checksum of 0.
    let id = 0xffff - sum16(&f[ip..ip + 20]);
    f[ip + 4..ip + 6].copy_from_slice(&id.to_be_bytes());
    f[ip + 8] = old_ttl;
    let check = !sum16(&f[ip..ip + 20]);
    f[ip + 10..ip + 12].copy_from_slice(&check.to_be_bytes());
    f
}

/// xt_TTL's `--ttl-inc`/`--ttl-dec` as the compiler gives it: the TTL word kept, a
/// saturating add to its first byte, the checksum's zero kept (csum_replace2()).
fn ttl_add(by: u8, down: bool) -> Statement {
    let mut w = write(WriteBase::Network, 8, &[0xff, 0xff], &[0, 0]);
    (w.csum_inet, w.csum_offset, w.csum_keep_zero) = (true, 10, true);
    w.saturating = Some(SaturatingAdd { at: 0, by, down });
    Statement::PayloadSet(w)
}

/// An IPv4 UDP frame with TTL `ttl` and a valid header checksum.
fn udp4_with_ttl(ttl: u8) -> Vec<u8> {
    let mut f = udp4(53);
    f[22] = ttl;
    f[24..26].fill(0);
    let check = !sum16(&f[14..34]);
    f[24..26].copy_from_slice(&check.to_be_bytes());
    f
}

#[test]
fn ttl_increments_and_decrements_saturate_and_fix_the_checksum() {
    for (by, down) in [
        (10, false),
        (200, false),
        (0, false),
        (10, true),
        (100, true),
    ] {
        let p = program(
            Verdict::Accept,
            vec![Rule::new(vec![], Action::Continue).with(ttl_add(by, down))],
        );
        let Some(loaded) = load(&p) else { return };
        for ttl in [0u8, 1, 9, 10, 55, 64, 100, 200, 245, 255] {
            let frame = udp4_with_ttl(ttl);
            let (verdict, out) = run(&loaded, &p, &frame);
            assert_eq!(verdict, Verdict::Accept);
            let expected = if down {
                ttl.saturating_sub(by)
            } else {
                ttl.saturating_add(by)
            };
            assert_eq!(out[22], expected, "ttl {ttl} by {by} down {down}");
            assert_eq!(out[23], frame[23], "the protocol byte is kept");
            assert!(checksums_verify(&out));
        }
    }
    // A checksum of 0xffff (a valid form of 0) stays when the TTL does, as the kernel
    // writes nothing then; a changed TTL fixes it up.
    let mut f = udp4_zero_checksum_at_ttl(255);
    f[22] = 255;
    f[24..26].copy_from_slice(&[0xff, 0xff]);
    assert!(checksums_verify(&f));
    let p = program(
        Verdict::Accept,
        vec![Rule::new(vec![], Action::Continue).with(ttl_add(1, false))],
    );
    let Some(loaded) = load(&p) else { return };
    let (_, out) = run(&loaded, &p, &f);
    assert_eq!(out, f, "a saturated TTL leaves the frame alone");
    let p = program(
        Verdict::Accept,
        vec![Rule::new(vec![], Action::Continue).with(ttl_add(1, true))],
    );
    let Some(loaded) = load(&p) else { return };
    let (_, out) = run(&loaded, &p, &f);
    assert_eq!(out[22], 254);
    assert!(checksums_verify(&out));
}

#[test]
fn ipv6_hop_limit_decrements_saturate() {
    let mut w = write(WriteBase::Network, 7, &[0xff], &[0]);
    w.saturating = Some(SaturatingAdd {
        at: 0,
        by: 5,
        down: true,
    });
    let p = program(
        Verdict::Accept,
        vec![Rule::new(vec![], Action::Continue).with(Statement::PayloadSet(w))],
    );
    let Some(loaded) = load(&p) else { return };
    for hl in [0u8, 3, 5, 6, 64, 255] {
        let mut frame = frames::tcp(addr("2001:db8::1"), addr("2001:db8::2"), 1, 2, ACK);
        frame[21] = hl;
        let (_, out) = run(&loaded, &p, &frame);
        assert_eq!(out[21], hl.saturating_sub(5));
        assert!(checksums_verify(&out));
    }
}

#[test]
fn a_checksum_fixed_up_to_zero_is_mangled_unless_the_write_keeps_zero() {
    // nft_csum_replace() writes 0xffff (CSUM_MANGLED_0); csum_replace2() of the xtables
    // TTL target leaves 0.
    let frame = udp4_zero_checksum_at_ttl(23);
    assert!(checksums_verify(&frame));
    for (keep_zero, expected) in [(false, [0xff, 0xff]), (true, [0, 0])] {
        let mut st = ttl_set(23);
        if let Statement::PayloadSet(w) = &mut st {
            w.csum_keep_zero = keep_zero;
        }
        let p = program(
            Verdict::Accept,
            vec![Rule::new(vec![], Action::Continue).with(st)],
        );
        let Some(loaded) = load(&p) else { return };
        let (verdict, out) = run(&loaded, &p, &frame);
        assert_eq!(verdict, Verdict::Accept);
        assert_eq!(out[22], 23);
        assert_eq!(out[24..26], expected, "keep_zero {keep_zero}");
        assert!(checksums_verify(&out));
    }
}

#[test]
fn ipv6_hop_limit_and_address_writes() {
    let hoplimit = write(WriteBase::Network, 7, &[], &[1]);
    let new: IpAddr = addr("2001:db8::7");
    let IpAddr::V6(v6) = new else { unreachable!() };
    let mut daddr = write(WriteBase::Network, 24, &[], &v6.octets());
    daddr.pseudo_header = true;
    let p = program(
        Verdict::Drop,
        vec![
            Rule::new(vec![], Action::Continue)
                .with(Statement::PayloadSet(hoplimit))
                .with(Statement::PayloadSet(daddr)),
            Rule::new(
                vec![Match::is(Test::Ip6Daddr(vec!["2001:db8::7/128"
                    .parse()
                    .unwrap()]))],
                Action::Accept,
            ),
        ],
    );
    let Some(loaded) = load(&p) else { return };
    for frame in [
        frames::udp(addr("2001:db8::1"), addr("2001:db8::2"), 9, 53),
        frames::tcp(addr("2001:db8::1"), addr("2001:db8::2"), 9, 53, ACK),
    ] {
        let (verdict, out) = run(&loaded, &p, &frame);
        assert_eq!(verdict, Verdict::Accept);
        assert_eq!(out[14 + 7], 1);
        assert_eq!(&out[14 + 24..14 + 40], &v6.octets());
        assert!(checksums_verify(&out));
    }
}

#[test]
fn a_zero_udp_checksum_stays_zero_under_an_address_write() {
    // The pseudo-header fix-up leaves a UDP checksum of 0 (none) alone.
    let mut daddr = write(WriteBase::Network, 16, &[], &[192, 0, 2, 9]);
    (daddr.csum_inet, daddr.csum_offset, daddr.pseudo_header) = (true, 10, true);
    let p = program(
        Verdict::Accept,
        vec![Rule::new(vec![], Action::Continue).with(Statement::PayloadSet(daddr))],
    );
    let Some(loaded) = load(&p) else { return };
    let mut frame = udp4(53);
    frame[40..42].copy_from_slice(&[0, 0]);
    let (verdict, out) = run(&loaded, &p, &frame);
    assert_eq!(verdict, Verdict::Accept);
    assert_eq!(&out[40..42], &[0, 0]);
    assert!(checksums_verify(&out));
}

#[test]
fn a_transport_write_breaks_the_rule_on_a_later_fragment() {
    // nft_payload_set_eval breaks without a transport header: the rule's drop is not
    // taken, the policy accepts.
    let p = program(
        Verdict::Accept,
        vec![Rule::new(vec![], Action::Drop).with(dport_set(1, 6))],
    );
    let Some(loaded) = load(&p) else { return };
    let (_, later) = frames::fragment_v4(&udp4(53), 7);
    let run = loaded.run_tc(&later, SkbMeta::default(), 1).unwrap();
    assert_eq!(run.verdict, Verdict::Accept);
    assert_eq!(run.packet, later, "nothing written");
    // The first fragment has the header: the write happens, the rule drops.
    assert_eq!(run_first_fragment(&loaded), Verdict::Drop);
}

fn run_first_fragment(loaded: &LoadedProgram) -> Verdict {
    let (first, _) = frames::fragment_v4(&udp4(53), 7);
    loaded
        .run_tc(&first, SkbMeta::default(), 1)
        .unwrap()
        .verdict
}

#[test]
fn log_statements_and_header_writes_are_not_compiled_together() {
    let p = program(
        Verdict::Accept,
        vec![
            Rule::new(vec![], Action::Continue).with(Statement::Log { prefix: "x".into() }),
            Rule::new(vec![], Action::Continue).with(ttl_set(1)),
        ],
    );
    assert!(matches!(
        compile_program(&p),
        Err(BuildError::LogWithWrites)
    ));
}

#[test]
fn later_base_chains_and_jumped_to_chains_see_the_new_values() {
    // Base chain 1 rewrites and accepts (which ends only that chain); a regular chain
    // it jumps to after the write, and base chain 2, see only the new port.
    let mut p = program(
        Verdict::Accept,
        vec![
            Rule::new(vec![dport(53)], Action::Continue).with(dport_set(5353, 6)),
            Rule::new(vec![], Action::Jump("r".into())),
            Rule::new(vec![], Action::Accept),
        ],
    );
    p.chains.insert(
        "r".into(),
        Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: vec![Rule::new(vec![dport(53)], Action::Drop)],
        },
    );
    p.base_chains.push(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Drop,
        rules: vec![
            Rule::new(vec![dport(53)], Action::Drop),
            Rule::new(vec![dport(5353)], Action::Accept),
        ],
    });
    let Some(loaded) = load(&p) else { return };
    let (verdict, out) = run(&loaded, &p, &udp4(53));
    assert_eq!(verdict, Verdict::Accept);
    assert_eq!(&out[36..38], &5353u16.to_be_bytes());
    assert_eq!(run(&loaded, &p, &udp4(54)).0, Verdict::Drop);
}

/// xt_pkttype's residual load (not a write: here for the plain-frame helpers): the
/// skb's packet type as eth_type_trans() set it for the test run's device (loopback:
/// address 00:00:00:00:00:00), in the BPF program and the reference alike.
#[test]
fn xt_pkttype_reads_the_packet_type_of_the_skb() {
    let is = |t: u8, op: CmpOp| {
        Match::is(Test::Residual(ResidualProgram {
            insns: vec![
                Insn::XtPktType { dreg: 0 },
                Insn::Cmp {
                    sreg: 0,
                    op,
                    data: vec![t],
                },
            ],
        }))
    };
    // Counting rules for host, broadcast, multicast, other host, then "not host"
    // decides.
    let mut rules: Vec<Rule> = (0..4)
        .map(|t| Rule::new(vec![is(t, CmpOp::Eq)], Action::Continue))
        .collect();
    rules.push(Rule::new(vec![is(0, CmpOp::Neq)], Action::Drop));
    let p = program(Verdict::Accept, rules);
    let Some(loaded) = load(&p) else { return };
    for (dst, pkt_type) in [
        ([0u8; 6], 0u8),
        ([0xff; 6], 1),
        ([0x01, 0x00, 0x5e, 0, 0, 1], 2),
        ([0x02, 0, 0, 0, 0, 9], 3),
    ] {
        let mut frame = udp4(53);
        frame[..6].copy_from_slice(&dst);
        let run_ = loaded.run_tc(&frame, SkbMeta::default(), 1).unwrap();
        let mut f = fields(&frame);
        if let Some(h) = f.headers.as_mut() {
            h.pkt_type = pkt_type;
        }
        let eval = Reference::new(&p).unwrap().evaluate(&f).unwrap();
        assert_eq!(run_.verdict, eval.verdict, "packet type {pkt_type}");
        let want = if pkt_type == 0 {
            Verdict::Accept
        } else {
            Verdict::Drop
        };
        assert_eq!(run_.verdict, want, "packet type {pkt_type}");
        assert_eq!(eval.counted.first(), Some(&(pkt_type as usize)), "{eval:?}");
    }
}
