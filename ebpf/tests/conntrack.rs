//! Connection tracking in the BPF program (bpf/lib/conntrack.h), run with
//! BPF_PROG_TEST_RUN: hand-written kernel behaviour (handshakes, replies, related ICMP
//! errors, untracked neighbour discovery, unconfirmed drops, expiry), and random packet
//! sequences against the Rust model (src/conntrack.rs) plus the reference evaluator,
//! comparing the per-rule counters after every packet.

mod common;

use std::net::IpAddr;

use common::frames::{self, addr, fields_of, ACK, FIN, PSH, RST, SYN, URG};
use common::{load_or_skip, monotonic_ns};
use nftshim_ebpf::conntrack::{Timeouts, Tracker};
use nftshim_ebpf::ir::{
    ct_state, ct_status, Action, Chain, L3Scope, Match, PortRange, Program, Rule, Test, Verdict,
};
use nftshim_ebpf::loader::{Counter, LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use proptest::prelude::*;
use proptest::sample::select;

const INVALID: usize = 0;
const ESTABLISHED: usize = 3;
const RELATED: usize = 4;
const UNTRACKED: usize = 5;
const NEW: usize = 6;
const HAS_CONN: usize = 7;
const ASSURED: usize = 9;

/// Counts each ct state in its own rule; drops new UDP to 99 and new TCP to 7, so those
/// connections are never confirmed.
fn ct_program() -> Program {
    let state = |s| Match::is(Test::CtState(s));
    let dport = |p| Match::is(Test::Dport(vec![PortRange::single(p)]));
    let rules = vec![
        Rule::new(vec![state(ct_state::INVALID)], Action::Continue),
        Rule::new(
            vec![
                state(ct_state::NEW),
                Match::is(Test::L4Proto(vec![17])),
                dport(99),
            ],
            Action::Drop,
        ),
        Rule::new(
            vec![
                state(ct_state::NEW),
                Match::is(Test::L4Proto(vec![6])),
                dport(7),
            ],
            Action::Drop,
        ),
        Rule::new(vec![state(ct_state::ESTABLISHED)], Action::Continue),
        Rule::new(vec![state(ct_state::RELATED)], Action::Continue),
        Rule::new(vec![state(ct_state::UNTRACKED)], Action::Continue),
        Rule::new(vec![state(ct_state::NEW)], Action::Continue),
        // Holds for any packet with a connection (its mark is 0), for no other.
        Rule::new(
            vec![Match::not(Test::CtMark {
                mask: u32::MAX,
                values: vec![1],
            })],
            Action::Continue,
        ),
        Rule::new(
            vec![Match::is(Test::CtStatus(ct_status::SEEN_REPLY))],
            Action::Continue,
        ),
        Rule::new(
            vec![Match::is(Test::CtStatus(ct_status::ASSURED))],
            Action::Continue,
        ),
        // A new connection is not confirmed until its first packet is accepted.
        Rule::new(
            vec![Match::not(Test::CtStatus(ct_status::CONFIRMED))],
            Action::Continue,
        ),
    ];
    Program {
        base_chains: vec![Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules,
        }],
        conntrack: true,
        ..Program::default()
    }
}

/// One counting rule per `ct` key a residual program loads (nft_ct_get_eval() over
/// the tracker's tuples), each compared with a value the test's flows have: direction,
/// protocols, either tuple's addresses and ports, ICMP id and type/code, zone, labels,
/// helper, and state/status/mark read by the residual program.
fn ct_keys_program() -> Program {
    use nftshim_ebpf::residual::{CmpOp, CtKey, Insn, ResidualProgram};
    let key = |key, reply, len: u8, data: Vec<u8>| {
        let insns = vec![
            Insn::Ct {
                key,
                reply,
                len,
                dreg: 4,
            },
            Insn::Cmp {
                sreg: 4,
                op: CmpOp::Eq,
                data,
            },
        ];
        Rule::new(
            vec![Match::is(Test::Residual(ResidualProgram { insns }))],
            Action::Continue,
        )
    };
    let v6 = |s: &str| match addr(s) {
        IpAddr::V6(a) => a.octets().to_vec(),
        IpAddr::V4(_) => unreachable!(),
    };
    let rules = vec![
        key(CtKey::Direction, false, 1, vec![0]),
        key(CtKey::Direction, false, 1, vec![1]),
        key(CtKey::L3Protocol, false, 1, vec![2]),
        key(CtKey::L3Protocol, true, 1, vec![10]),
        key(CtKey::Protocol, false, 1, vec![17]),
        key(CtKey::Protocol, true, 1, vec![47]),
        // 10.0.0.1 opened the connection, or 10.0.0.2 did.
        key(CtKey::SrcIp, false, 4, vec![10, 0, 0, 1]),
        key(CtKey::SrcIp, true, 4, vec![10, 0, 0, 1]),
        key(CtKey::DstIp, true, 4, vec![10, 0, 0, 1]),
        key(CtKey::SrcIp6, false, 16, v6("2001:db8::2")),
        key(CtKey::DstIp6, true, 16, v6("2001:db8::2")),
        // TCP 40000 -> 80 opened from either side; UDP 5001 -> 99.
        key(CtKey::ProtoSrc, false, 2, 40000u16.to_be_bytes().to_vec()),
        key(CtKey::ProtoDst, true, 2, 40000u16.to_be_bytes().to_vec()),
        key(CtKey::ProtoDst, false, 2, 99u16.to_be_bytes().to_vec()),
        key(CtKey::ProtoSrc, true, 2, 99u16.to_be_bytes().to_vec()),
        // Echo queries: the id in both tuples, the types and code.
        key(CtKey::ProtoSrc, true, 2, vec![0, 2]),
        key(CtKey::ProtoDst, false, 2, vec![8, 0]),
        key(CtKey::ProtoDst, true, 2, vec![0, 0]),
        key(CtKey::ProtoDst, true, 2, vec![129, 0]),
        key(CtKey::ProtoDst, false, 2, vec![13, 0]),
        key(CtKey::Zone, false, 2, vec![0, 0]),
        key(CtKey::Zone, true, 2, vec![0, 0]),
        key(CtKey::Labels, false, 16, vec![0; 16]),
        key(CtKey::Helper, false, 16, vec![0; 16]),
        key(CtKey::State, false, 4, ct_state::NEW.to_ne_bytes().to_vec()),
        key(
            CtKey::State,
            false,
            4,
            ct_state::INVALID.to_ne_bytes().to_vec(),
        ),
        key(
            CtKey::Status,
            false,
            4,
            ct_status::CONFIRMED.to_ne_bytes().to_vec(),
        ),
        key(CtKey::Mark, false, 4, vec![0; 4]),
        // Dropped: new UDP to 99 is never confirmed.
        Rule::new(
            vec![
                Match::is(Test::CtState(ct_state::NEW)),
                Match::is(Test::L4Proto(vec![17])),
                Match::is(Test::Dport(vec![PortRange::single(99)])),
            ],
            Action::Drop,
        ),
    ];
    Program {
        base_chains: vec![Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules,
        }],
        conntrack: true,
        ..Program::default()
    }
}

/// One counting rule per comparison of a connection's counters (ct packets, bytes,
/// avgpkt of either direction or both), the values the test's flows reach.
fn ct_counters_program() -> Program {
    use nftshim_ebpf::residual::{CmpOp, CtKey, Insn, ResidualProgram};
    // `ct [dir] key op value`, as nft writes it: the host-order load swapped to
    // network order for an ordering, compared as is for equality.
    let rule = |key, reply, op, value: u64| {
        let mut insns = vec![Insn::Ct {
            key,
            reply,
            len: 8,
            dreg: 4,
        }];
        let data = if op == CmpOp::Eq {
            value.to_ne_bytes().to_vec()
        } else {
            insns.push(Insn::Byteorder {
                sreg: 4,
                dreg: 4,
                len: 8,
                size: 8,
            });
            value.to_be_bytes().to_vec()
        };
        insns.push(Insn::Cmp { sreg: 4, op, data });
        Rule::new(
            vec![Match::is(Test::Residual(ResidualProgram { insns }))],
            Action::Continue,
        )
    };
    let one = |both| CtKey::Packets { both };
    let rules = vec![
        rule(one(false), false, CmpOp::Eq, 1),
        rule(one(false), false, CmpOp::Eq, 2),
        rule(one(false), false, CmpOp::Gt, 2),
        rule(one(false), true, CmpOp::Eq, 0),
        rule(one(false), true, CmpOp::Eq, 1),
        rule(one(true), false, CmpOp::Eq, 2),
        rule(one(true), true, CmpOp::Gt, 3),
        rule(CtKey::Bytes { both: false }, false, CmpOp::Eq, 36),
        rule(CtKey::Bytes { both: false }, true, CmpOp::Gt, 36),
        rule(CtKey::Bytes { both: true }, false, CmpOp::Lt, 100),
        rule(CtKey::Avgpkt { both: false }, false, CmpOp::Eq, 36),
        rule(CtKey::Avgpkt { both: true }, false, CmpOp::Gt, 37),
        rule(CtKey::Avgpkt { both: false }, true, CmpOp::Eq, 0),
        // xt_connbytes' test that the connection keeps counters (1, or break).
        Rule::new(
            vec![Match::is(Test::Residual(ResidualProgram {
                insns: vec![
                    Insn::Ct {
                        key: CtKey::HasCounters,
                        reply: false,
                        len: 1,
                        dreg: 4,
                    },
                    Insn::Cmp {
                        sreg: 4,
                        op: CmpOp::Eq,
                        data: vec![1],
                    },
                ],
            }))],
            Action::Continue,
        ),
    ];
    Program {
        base_chains: vec![Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules,
        }],
        conntrack: true,
        ..Program::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Xdp,
    Tc,
}

/// Runs frames through the program and the Rust model side by side.
struct CtChecker<'a> {
    loaded: LoadedProgram,
    reference: Reference<'a>,
    tracker: Tracker,
    counters: Vec<Counter>,
}

impl<'a> CtChecker<'a> {
    fn new(program: &'a Program, timeouts: Timeouts) -> Option<Self> {
        let options = LoadOptions {
            ct_timeouts: timeouts,
            ..LoadOptions::default()
        };
        let compiled = compile_program(program).unwrap();
        let loaded = load_or_skip(&compiled, options)?;
        let reference = Reference::new(program).unwrap();
        let counters = vec![Counter::default(); reference.nrules() + program.base_chains.len()];
        let mut tracker = Tracker::new(timeouts);
        tracker.acct = compiled.enables_ct_acct();
        Some(CtChecker {
            loaded,
            reference,
            tracker,
            counters,
        })
    }

    /// Runs one frame; returns the ct state the model gave it and the verdict. Fails if
    /// the program's verdict or counters differ from the model's.
    fn run(&mut self, frame: &[u8], hook: Hook) -> Result<(u32, Verdict), TestCaseError> {
        let iif = if hook == Hook::Xdp { 1 } else { 0 };
        let mut fields = fields_of(frame, iif, 0);
        let now = monotonic_ns();
        let tracked = self.tracker.track(&fields, now);
        fields.ct = tracked.fields;
        let want = self.reference.evaluate_at(&fields, now).unwrap();
        self.tracker
            .commit(&tracked, want.verdict == Verdict::Accept);
        let len = frame.len() as u64 - 14;
        for &i in &want.counted {
            self.counters[i].packets += 1;
            self.counters[i].bytes += len;
        }
        let got = match hook {
            Hook::Xdp => self.loaded.run_xdp(frame, 1),
            Hook::Tc => self.loaded.run_tc(frame, SkbMeta::default(), 1),
        }
        .unwrap()
        .verdict;
        prop_assert_eq!(got, want.verdict, "verdict; model: {:?}", fields.ct);
        prop_assert_eq!(
            self.loaded.counters().unwrap(),
            self.counters.clone(),
            "counters; model says {:?} for {:?}",
            fields.ct,
            fields
        );
        Ok((fields.ct.state, want.verdict))
    }

    /// Runs a frame at TC and asserts the state the model gave it.
    fn expect(&mut self, frame: &[u8], state: u32) {
        let (got, _) = self.run(frame, Hook::Tc).unwrap();
        assert_eq!(got, state, "model's ct state");
    }
}

fn v4() -> (IpAddr, IpAddr) {
    (addr("10.0.0.1"), addr("10.0.0.2"))
}

#[test]
fn tcp_handshake_teardown_and_pickup() {
    let program = ct_program();
    let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else {
        return;
    };
    let (a, b) = v4();
    let out = |flags| frames::tcp(a, b, 40000, 80, flags);
    let back = |flags| frames::tcp(b, a, 80, 40000, flags);
    c.expect(&out(SYN), ct_state::NEW);
    c.expect(&out(SYN), ct_state::NEW); // retransmitted: no reply yet
    c.expect(&back(SYN | ACK), ct_state::ESTABLISHED);
    c.expect(&out(ACK), ct_state::ESTABLISHED);
    c.expect(&back(PSH | ACK), ct_state::ESTABLISHED);
    c.expect(&out(FIN | ACK), ct_state::ESTABLISHED);
    c.expect(&back(FIN | ACK), ct_state::ESTABLISHED);
    c.expect(&out(ACK), ct_state::ESTABLISHED);
    // TIME_WAIT: a new SYN reopens the connection.
    c.expect(&out(SYN), ct_state::NEW);
    // Bad flag combinations and SYN-ACK without a connection are invalid.
    c.expect(&frames::tcp(a, b, 40001, 80, SYN | FIN), ct_state::INVALID);
    c.expect(&frames::tcp(a, b, 40001, 80, 0), ct_state::INVALID);
    c.expect(&frames::tcp(a, b, 40001, 80, FIN), ct_state::INVALID);
    c.expect(&frames::tcp(b, a, 80, 40002, SYN | ACK), ct_state::INVALID);
    // A bare ACK is picked up mid-stream (nf_conntrack_tcp_loose=1).
    c.expect(&frames::tcp(a, b, 40003, 80, ACK | URG), ct_state::NEW);
    c.expect(&frames::tcp(b, a, 80, 40003, ACK), ct_state::ESTABLISHED);
    // A reset as the only reply deletes the connection.
    c.expect(&frames::tcp(a, b, 40004, 80, SYN), ct_state::NEW);
    c.expect(
        &frames::tcp(b, a, 80, 40004, RST | ACK),
        ct_state::ESTABLISHED,
    );
    c.expect(&frames::tcp(a, b, 40004, 80, SYN), ct_state::NEW);
    let counters = c.loaded.counters().unwrap();
    assert_eq!(counters[NEW].packets, 6);
    assert_eq!(counters[INVALID].packets, 4);
    // The handshake's third packet and the data after it see ASSURED.
    assert!(counters[ASSURED].packets >= 4, "{:?}", counters[ASSURED]);
}

#[test]
fn a_dropped_first_packet_confirms_nothing() {
    let program = ct_program();
    let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else {
        return;
    };
    let (a, b) = v4();
    let (_, v) = c.run(&frames::udp(a, b, 5000, 99), Hook::Tc).unwrap();
    assert_eq!(v, Verdict::Drop);
    c.expect(&frames::udp(a, b, 5000, 99), ct_state::NEW);
    c.expect(&frames::udp(b, a, 99, 5000), ct_state::NEW);
    // TCP to 7 is dropped: the SYN-ACK finds nothing.
    c.expect(&frames::tcp(a, b, 40000, 7, SYN), ct_state::NEW);
    c.expect(&frames::tcp(b, a, 7, 40000, SYN | ACK), ct_state::INVALID);
}

#[test]
fn udp_icmp_related_and_untracked() {
    let program = ct_program();
    let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else {
        return;
    };
    let (a, b) = v4();
    let query = frames::udp(a, b, 5000, 53);
    c.expect(&query, ct_state::NEW);
    c.expect(&frames::udp(b, a, 53, 5000), ct_state::ESTABLISHED);
    c.expect(&query, ct_state::ESTABLISHED);
    // Port unreachable from b about a's datagram: related; to the wrong host: invalid.
    c.expect(
        &frames::icmp_error(b, a, 3, 3, &query, 64),
        ct_state::RELATED,
    );
    c.expect(
        &frames::icmp_error(b, addr("10.0.0.9"), 3, 3, &query, 64),
        ct_state::INVALID,
    );
    let unknown = frames::udp(a, b, 5999, 53);
    c.expect(
        &frames::icmp_error(b, a, 3, 3, &unknown, 64),
        ct_state::INVALID,
    );
    // Echo: request new, reply established, reply to an unknown id invalid.
    c.expect(&frames::icmp(a, b, 8, 7), ct_state::NEW);
    c.expect(&frames::icmp(b, a, 0, 7), ct_state::ESTABLISHED);
    c.expect(&frames::icmp(b, a, 0, 8), ct_state::INVALID);
    c.expect(&frames::icmp(b, a, 8, 7), ct_state::NEW); // the other way: another flow
    c.expect(&frames::icmp(a, b, 9, 7), ct_state::INVALID); // router advertisement
                                                            // Time exceeded about the echo: related.
    let echo = frames::icmp(a, b, 8, 7);
    c.expect(
        &frames::icmp_error(b, a, 11, 0, &echo, 28),
        ct_state::RELATED,
    );

    let (a6, b6) = (addr("2001:db8::1"), addr("2001:db8::2"));
    c.expect(&frames::icmp(a6, b6, 135, 0), ct_state::UNTRACKED);
    c.expect(&frames::icmp(a6, b6, 128, 3), ct_state::NEW);
    c.expect(&frames::icmp(b6, a6, 129, 3), ct_state::ESTABLISHED);
    let q6 = frames::udp(a6, b6, 5000, 53);
    c.expect(&q6, ct_state::NEW);
    c.expect(
        &frames::icmp_error(b6, a6, 1, 4, &q6, 64),
        ct_state::RELATED,
    );
    c.expect(&frames::other(a6, b6, 47), ct_state::NEW);
    c.expect(&frames::other(b6, a6, 47), ct_state::ESTABLISHED);
    let counters = c.loaded.counters().unwrap();
    assert_eq!(counters[RELATED].packets, 3);
    assert_eq!(counters[UNTRACKED].packets, 1);
    // `ct mark != 1` holds exactly for packets with a connection.
    let with_conn = counters[NEW].packets + counters[ESTABLISHED].packets + 3;
    assert_eq!(counters[HAS_CONN].packets, with_conn);
}

#[test]
fn later_fragments_share_their_first_fragments_state() {
    let program = ct_program();
    let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else {
        return;
    };
    let (a, b) = v4();
    let (first, later) = frames::fragment_v4(&frames::udp(a, b, 5000, 53), 77);
    // Before its first fragment, a later one has no connection.
    c.expect(&later, ct_state::INVALID);
    c.expect(&first, ct_state::NEW);
    c.expect(&later, ct_state::NEW);
    let (first, later) = frames::fragment_v4(&frames::udp(b, a, 53, 5000), 78);
    c.expect(&first, ct_state::ESTABLISHED);
    c.expect(&later, ct_state::ESTABLISHED);
    // A TCP segment with bad flags: the whole datagram is invalid.
    let (first, later) = frames::fragment_v4(&frames::tcp(a, b, 1, 2, 0), 79);
    c.expect(&first, ct_state::INVALID);
    c.expect(&later, ct_state::INVALID);
}

#[test]
fn connections_expire() {
    let program = ct_program();
    let timeouts = Timeouts {
        udp_unreplied: 1,
        udp_replied: 1,
        icmp: 1,
        ..Timeouts::default()
    };
    let Some(mut c) = CtChecker::new(&program, timeouts) else {
        return;
    };
    let (a, b) = v4();
    c.expect(&frames::udp(a, b, 5000, 53), ct_state::NEW);
    c.expect(&frames::udp(b, a, 53, 5000), ct_state::ESTABLISHED);
    c.expect(&frames::icmp(a, b, 8, 1), ct_state::NEW);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    c.expect(&frames::udp(b, a, 53, 5000), ct_state::NEW);
    c.expect(&frames::icmp(b, a, 0, 1), ct_state::INVALID);
}

#[test]
fn connection_counters_count_each_direction_before_the_rules() {
    let program = ct_counters_program();
    assert!(compile_program(&program).unwrap().enables_ct_acct());
    assert!(!compile_program(&ct_keys_program())
        .unwrap()
        .enables_ct_acct());
    let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else {
        return;
    };
    let (a, b) = v4();
    let query = frames::udp(a, b, 5000, 53);
    assert_eq!(query.len() - 14, 36);
    // orig 1 packet / 36 bytes, reply 0.
    c.expect(&query, ct_state::NEW);
    // orig 1, reply 1 (both 2).
    c.expect(&frames::udp(b, a, 53, 5000), ct_state::ESTABLISHED);
    // orig 2 packets.
    c.expect(&query, ct_state::ESTABLISHED);
    // A related error is not counted: still orig 2, reply 1.
    c.expect(
        &frames::icmp_error(b, a, 3, 3, &query, 64),
        ct_state::RELATED,
    );
    // orig 3.
    c.expect(&query, ct_state::ESTABLISHED);
    // A TCP packet the state machine ignores (a SYN in ESTABLISHED) is not counted.
    let out = |flags| frames::tcp(a, b, 40000, 80, flags);
    c.expect(&out(SYN), ct_state::NEW);
    c.expect(
        &frames::tcp(b, a, 80, 40000, SYN | ACK),
        ct_state::ESTABLISHED,
    );
    c.expect(&out(ACK), ct_state::ESTABLISHED);
    c.expect(&out(SYN), ct_state::ESTABLISHED);
    let n = c.loaded.counters().unwrap();
    let packets = |i: usize| n[i].packets;
    // `ct original packets 1`: the UDP query and its answer, the TCP SYN and SYN-ACK.
    assert_eq!(packets(0), 4);
    // `ct original packets 2`: the second query, the error, the ACK, the ignored SYN.
    assert_eq!(packets(1), 4);
    assert_eq!(packets(2), 1);
    // `ct reply packets 0`: each flow's first packet.
    assert_eq!(packets(3), 2);
    // `ct original bytes 36`: the first query and its answer (TCP packets are 40).
    assert_eq!(packets(7), 2);
    // `ct original avgpkt 36`: every UDP packet (36, 36, 72 / 2, 72 / 2, 108 / 3).
    assert_eq!(packets(10), 5);
}

#[test]
fn a_syn_retransmitted_before_any_reply_is_not_counted() {
    let program = ct_counters_program();
    let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else {
        return;
    };
    let (a, b) = v4();
    let syn = frames::tcp(a, b, 40000, 80, SYN);
    // orig 1, then the same SYN again twice (a client or a spoofed source that gets
    // no answer): still SYN_SENT, still orig 1 (nf_conntrack_tcp_packet() returns
    // before refreshing and counting).
    c.expect(&syn, ct_state::NEW);
    c.expect(&syn, ct_state::NEW);
    c.expect(&syn, ct_state::NEW);
    // The answer counts, and after it a SYN is ignored, uncounted, as before.
    c.expect(
        &frames::tcp(b, a, 80, 40000, SYN | ACK),
        ct_state::ESTABLISHED,
    );
    c.expect(&frames::tcp(a, b, 40000, 80, ACK), ct_state::ESTABLISHED);
    let n = c.loaded.counters().unwrap();
    // `ct original packets 1`: the three SYNs and the SYN-ACK.
    assert_eq!(n[0].packets, 4);
    // `ct original packets 2`: the ACK.
    assert_eq!(n[1].packets, 1);
}

/// One packet of a small world of flows between two hosts.
#[derive(Clone, Debug)]
enum Event {
    Tcp {
        ports: usize,
        flags: u8,
    },
    Udp {
        ports: usize,
    },
    Icmp {
        ty: u8,
        id: u16,
    },
    /// An ICMP error quoting the packet of another event; `wrong_dst` sends it to a
    /// third host.
    Error {
        quoted: Box<Event>,
        reverse: bool,
        wrong_dst: bool,
    },
    Other,
    /// The IPv4 UDP datagram of `ports`, in two fragments with this id.
    Fragments {
        ports: usize,
        id: u16,
    },
}

const TCP_PORTS: [(u16, u16); 3] = [(40000, 80), (40001, 7), (40002, 443)];
const UDP_PORTS: [(u16, u16); 3] = [(5000, 53), (5001, 99), (5002, 123)];
const TCP_FLAGS: [u8; 12] = [
    SYN,
    SYN | ACK,
    ACK,
    PSH | ACK,
    FIN | ACK,
    RST,
    RST | ACK,
    ACK | URG,
    FIN,
    SYN | FIN,
    0,
    SYN | URG,
];

fn plain_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..TCP_PORTS.len(), select(&TCP_FLAGS[..])).prop_map(|(ports, flags)| Event::Tcp { ports, flags }),
        2 => (0..UDP_PORTS.len()).prop_map(|ports| Event::Udp { ports }),
        2 => (select(&[8u8, 0, 13, 14, 9, 128, 129, 135][..]), 1u16..3).prop_map(|(ty, id)| Event::Icmp { ty, id }),
        1 => Just(Event::Other),
        1 => (0..UDP_PORTS.len(), 1u16..4).prop_map(|(ports, id)| Event::Fragments { ports, id }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => plain_event(),
        1 => (plain_event(), any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(q, reverse, wrong_dst)| Event::Error {
            quoted: Box::new(q),
            reverse,
            wrong_dst,
        }),
    ]
}

fn frame_of(event: &Event, v6: bool, reverse: bool) -> Vec<u8> {
    let (mut a, mut b) = if v6 {
        (addr("2001:db8::1"), addr("2001:db8::2"))
    } else {
        v4()
    };
    if reverse {
        std::mem::swap(&mut a, &mut b);
    }
    let swap = |(x, y): (u16, u16)| if reverse { (y, x) } else { (x, y) };
    match event {
        Event::Tcp { ports, flags } => {
            let (s, d) = swap(TCP_PORTS[*ports]);
            frames::tcp(a, b, s, d, *flags)
        }
        Event::Udp { ports } => {
            let (s, d) = swap(UDP_PORTS[*ports]);
            frames::udp(a, b, s, d)
        }
        Event::Icmp { ty, id } => {
            // ICMPv6 types on IPv6, ICMP ones on IPv4 (mapped when drawn the other way).
            let ty = match (v6, *ty) {
                (true, t) if t < 128 => [128, 129, 128, 129, 135][t as usize % 5],
                (false, t) if t >= 128 => [8, 0][t as usize % 2],
                (_, t) => t,
            };
            frames::icmp(a, b, ty, *id)
        }
        Event::Error {
            quoted,
            reverse: quoted_reverse,
            wrong_dst,
        } => {
            // The quoted packet went from q_src to q_dst; the error comes back from q_dst.
            let quoted = frame_of(quoted, v6, *quoted_reverse);
            let q = fields_of(&quoted, 0, 0);
            let (q_src, q_dst) = match q.l3 {
                nftshim_ebpf::fields::L3Fields::V4 { saddr, daddr } => {
                    (IpAddr::V4(saddr), IpAddr::V4(daddr))
                }
                nftshim_ebpf::fields::L3Fields::V6 { saddr, daddr } => {
                    (IpAddr::V6(saddr), IpAddr::V6(daddr))
                }
                nftshim_ebpf::fields::L3Fields::None => unreachable!(),
            };
            let dst = if *wrong_dst {
                if v6 {
                    addr("2001:db8::9")
                } else {
                    addr("10.0.0.9")
                }
            } else {
                q_src
            };
            let (ty, code) = if v6 { (1, 4) } else { (3, 3) };
            frames::icmp_error(q_dst, dst, ty, code, &quoted, 64)
        }
        Event::Other => frames::other(a, b, 47),
        // Sent as two frames by `frames_of`; as one, the whole datagram.
        Event::Fragments { ports, .. } => frame_of(&Event::Udp { ports: *ports }, v6, reverse),
    }
}

/// The frames of an event: two for fragments (IPv4 only), else one.
fn frames_of(event: &Event, v6: bool, reverse: bool) -> Vec<Vec<u8>> {
    match event {
        Event::Fragments { id, .. } if !v6 => {
            let (first, later) = frames::fragment_v4(&frame_of(event, v6, reverse), *id);
            vec![first, later]
        }
        _ => vec![frame_of(event, v6, reverse)],
    }
}

/// The usual firewall head, whose first rules the builder turns into a fast path; a
/// second base chain sees IPv6 only, so IPv6 established packets take the full path.
fn fast_path_program() -> Program {
    let state = |s| Match::is(Test::CtState(s));
    let dport = |p| Match::is(Test::Dport(vec![PortRange::single(p)]));
    Program {
        base_chains: vec![
            Chain {
                scope: L3Scope::Inet,
                policy: Verdict::Drop,
                rules: vec![
                    Rule::new(
                        vec![state(ct_state::ESTABLISHED | ct_state::RELATED)],
                        Action::Accept,
                    ),
                    Rule::new(vec![state(ct_state::INVALID)], Action::Drop),
                    Rule::new(vec![dport(7)], Action::Drop),
                    Rule::new(vec![state(ct_state::NEW), dport(99)], Action::Drop),
                    Rule::new(vec![state(ct_state::UNTRACKED)], Action::Accept),
                    Rule::new(vec![state(ct_state::NEW)], Action::Accept),
                ],
            },
            Chain {
                scope: L3Scope::Ipv6,
                policy: Verdict::Accept,
                rules: vec![Rule::new(
                    vec![state(ct_state::ESTABLISHED)],
                    Action::Continue,
                )],
            },
        ],
        conntrack: true,
        ..Program::default()
    }
}

#[test]
fn the_fast_path_decides_as_the_rules_would() {
    let program = fast_path_program();
    let compiled = compile_program(&program).unwrap();
    let fast = compiled.live.fast_rule;
    // IPv4: established (bit 1) and related (bit 2) accept by rule 0, invalid drops by
    // rule 1; new goes the full way. IPv6: a later base chain, so no fast accept.
    assert_eq!(fast[0][1], 1 << 1);
    assert_eq!(fast[0][2], 1 << 1);
    assert_eq!(fast[0][0], (2 << 1) | 1);
    assert_eq!(fast[0][3], 0);
    assert_eq!((fast[1][1], fast[1][0]), (0, (2 << 1) | 1));
    let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else {
        return;
    };
    let (a, b) = v4();
    c.expect(&frames::udp(a, b, 5000, 53), ct_state::NEW);
    c.expect(&frames::udp(b, a, 53, 5000), ct_state::ESTABLISHED);
    c.expect(&frames::tcp(a, b, 1, 7, ACK), ct_state::NEW);
    c.expect(&frames::tcp(a, b, 1, 7, 0), ct_state::INVALID);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_fast_path_agrees_with_the_model(
        events in prop::collection::vec((event(), any::<bool>(), any::<bool>(), any::<bool>()), 1..25),
    ) {
        let program = fast_path_program();
        let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else { return Ok(()) };
        for (event, v6, reverse, xdp) in &events {
            for frame in frames_of(event, *v6, *reverse) {
                c.run(&frame, if *xdp { Hook::Xdp } else { Hook::Tc })?;
            }
        }
    }

    #[test]
    fn ct_keys_agree_with_the_model(
        events in prop::collection::vec((event(), any::<bool>(), any::<bool>(), any::<bool>()), 1..40),
    ) {
        let program = ct_keys_program();
        let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else { return Ok(()) };
        for (event, v6, reverse, xdp) in &events {
            for frame in frames_of(event, *v6, *reverse) {
                c.run(&frame, if *xdp { Hook::Xdp } else { Hook::Tc })?;
            }
        }
    }

    #[test]
    fn ct_counters_agree_with_the_model(
        events in prop::collection::vec((event(), any::<bool>(), any::<bool>(), any::<bool>()), 1..40),
    ) {
        let program = ct_counters_program();
        let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else { return Ok(()) };
        for (event, v6, reverse, xdp) in &events {
            for frame in frames_of(event, *v6, *reverse) {
                c.run(&frame, if *xdp { Hook::Xdp } else { Hook::Tc })?;
            }
        }
    }

    #[test]
    fn bpf_conntrack_agrees_with_the_model(
        events in prop::collection::vec((event(), any::<bool>(), any::<bool>(), any::<bool>()), 1..60),
    ) {
        let program = ct_program();
        let Some(mut c) = CtChecker::new(&program, Timeouts::default()) else { return Ok(()) };
        for (event, v6, reverse, xdp) in &events {
            for frame in frames_of(event, *v6, *reverse) {
                c.run(&frame, if *xdp { Hook::Xdp } else { Hook::Tc })?;
            }
        }
    }
}
