//! The namespace's shared maps (BPF_PROG_TEST_RUN): two programs loaded on one
//! `SharedState` (as two interfaces, or two generations, would be) see one connection
//! table and one bucket per limit/quota state; a new state gets a fresh bucket, and a
//! state freed and used again starts afresh. An observing program (a forwarded packet
//! at egress) sees the state without changing the connection. Needs root.

mod common;

use common::frames::{self, addr, ACK, RST, SYN};
use nftshim_ebpf::ir::{
    ct_state, Action, Chain, L3Scope, Limit, Match, Program, Quota, Rule, StateId, Test, Verdict,
};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::shared::SharedState;

/// A bpffs directory of its own, removed at the end.
struct PinDir(SharedState);

impl PinDir {
    fn new(name: &str) -> Option<PinDir> {
        let dir = format!("/sys/fs/bpf/nftshim-test-{name}-{}", std::process::id());
        match SharedState::open(&dir) {
            Ok(s) => Some(PinDir(s)),
            Err(e) => {
                eprintln!("SKIPPED: no bpffs at /sys/fs/bpf ({e})");
                None
            }
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let dir = self.0.dir().to_path_buf();
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn state(rule: u64) -> StateId {
    StateId {
        table: 1,
        rule,
        expr: 0,
    }
}

fn program(rules: Vec<Rule>, conntrack: bool) -> Program {
    Program {
        base_chains: vec![Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Drop,
            rules,
        }],
        conntrack,
        ..Program::default()
    }
}

fn limited(rule: u64) -> Program {
    program(
        vec![Rule::new(
            vec![Match::is(Test::Limit(Limit {
                rate: 1,
                unit_secs: 86400,
                burst: 2,
                bytes: false,
                state: Some(state(rule)),
            }))],
            Action::Accept,
        )],
        false,
    )
}

fn load(p: &Program, options: LoadOptions, shared: &mut SharedState) -> LoadedProgram {
    LoadedProgram::load_shared(&compile_program(p).unwrap(), options, shared).unwrap()
}

fn accepted(p: &LoadedProgram, frame: &[u8]) -> bool {
    p.run_tc(frame, SkbMeta::default(), 1).unwrap().verdict == Verdict::Accept
}

#[test]
fn programs_of_one_namespace_share_limit_and_quota_state() {
    let Some(mut pins) = PinDir::new("limits") else {
        return;
    };
    let shared = &mut pins.0;
    let frame = frames::tcp(addr("10.0.0.1"), addr("10.0.0.2"), 1000, 80, SYN);
    let a = load(&limited(7), LoadOptions::default(), shared);
    let b = load(&limited(7), LoadOptions::default(), shared);
    // Burst 2 for both programs together.
    assert_eq!(
        [
            accepted(&a, &frame),
            accepted(&b, &frame),
            accepted(&a, &frame)
        ],
        [true, true, false]
    );
    // Another rule: its own bucket.
    let c = load(&limited(8), LoadOptions::default(), shared);
    assert!(accepted(&c, &frame));
    // A later generation of rule 7 carries on with its empty bucket.
    let a2 = load(&limited(7), LoadOptions::default(), shared);
    assert!(!accepted(&a2, &frame));
    // Rule 7 gone (and its slot reused): a rule that comes back starts afresh.
    shared.retain(&[state(8)].into_iter().collect());
    let d = load(&limited(9), LoadOptions::default(), shared);
    assert_eq!([accepted(&d, &frame), accepted(&d, &frame)], [true, true]);
    assert!(!accepted(&d, &frame));

    // A quota: 2 packets' worth across two programs.
    let len = 20 + 20 + 8; // IPv4 + TCP + payload of frames::tcp
    let quota = program(
        vec![Rule::new(
            vec![Match::is(Test::Quota(Quota {
                bytes: 2 * len,
                used: 0,
                state: Some(state(20)),
            }))],
            Action::Accept,
        )],
        false,
    );
    let q1 = load(&quota, LoadOptions::default(), shared);
    let q2 = load(&quota, LoadOptions::default(), shared);
    assert_eq!(
        [
            accepted(&q1, &frame),
            accepted(&q2, &frame),
            accepted(&q1, &frame)
        ],
        [true, true, false]
    );

    // Without a state id nothing can be shared.
    let private = program(
        vec![Rule::new(
            vec![Match::is(Test::Quota(Quota {
                bytes: 1,
                used: 0,
                state: None,
            }))],
            Action::Accept,
        )],
        false,
    );
    assert!(LoadedProgram::load_shared(
        &compile_program(&private).unwrap(),
        LoadOptions::default(),
        shared
    )
    .is_err());
}

#[test]
fn one_connection_table_for_every_program_and_generation() {
    let Some(mut pins) = PinDir::new("ct") else {
        return;
    };
    let shared = &mut pins.0;
    let (client, server) = (addr("10.0.0.1"), addr("10.0.0.2"));
    // Only established traffic is accepted; new connections only by `opener`.
    let established = || {
        Rule::new(
            vec![Match::is(Test::CtState(ct_state::ESTABLISHED))],
            Action::Accept,
        )
    };
    let opener = load(
        &program(
            vec![
                established(),
                Rule::new(
                    vec![Match::is(Test::CtState(ct_state::NEW))],
                    Action::Accept,
                ),
            ],
            true,
        ),
        LoadOptions::default(),
        shared,
    );
    let strict = program(vec![established()], true);
    let other = load(&strict, LoadOptions::default(), shared);
    // The SYN goes out through `opener` (one interface and direction), the SYN-ACK
    // comes back through `other`: it finds the connection.
    assert!(accepted(
        &opener,
        &frames::tcp(client, server, 1000, 80, SYN)
    ));
    assert!(accepted(
        &other,
        &frames::tcp(server, client, 80, 1000, SYN | ACK)
    ));
    // A next generation's program carries on with the same connections.
    let next = load(&strict, LoadOptions::default(), shared);
    assert!(accepted(&next, &frames::tcp(client, server, 1000, 80, ACK)));
    // Unknown connections stay out (a SYN-ACK without a SYN is invalid).
    assert!(!accepted(
        &next,
        &frames::tcp(server, client, 81, 1001, SYN | ACK)
    ));

    // A reset as the only reply deletes the connection (nf_conntrack does)... but not
    // when the program only observes (loopback's ingress: its egress tracked it).
    let everything = program(vec![Rule::new(vec![], Action::Accept)], true);
    let tracking = load(&everything, LoadOptions::default(), shared);
    let observing = load(
        &everything,
        LoadOptions {
            tc_loopback_ingress: true,
            ..LoadOptions::default()
        },
        shared,
    );
    for (port, via, kept) in [(2000, &observing, true), (2001, &tracking, false)] {
        assert!(accepted(
            &opener,
            &frames::tcp(client, server, port, 80, SYN)
        ));
        assert!(accepted(
            via,
            &frames::tcp(server, client, 80, port, RST | ACK)
        ));
        assert_eq!(
            accepted(&next, &frames::tcp(server, client, 80, port, SYN | ACK)),
            kept,
            "port {port}"
        );
    }
}

#[test]
fn a_forwarded_connection_dropped_at_egress_is_not_kept() {
    let Some(mut pins) = PinDir::new("fwd") else {
        return;
    };
    let shared = &mut pins.0;
    let (peer, far) = (addr("10.7.1.2"), addr("10.7.2.2"));
    let accept_all = program(vec![Rule::new(vec![], Action::Accept)], true);
    let established = program(
        vec![Rule::new(
            vec![Match::is(Test::CtState(ct_state::ESTABLISHED))],
            Action::Accept,
        )],
        true,
    );
    let ingress = load(&accept_all, LoadOptions::default(), shared);
    let egress = |p: &Program, shared: &mut SharedState| {
        load(
            p,
            LoadOptions {
                tc_egress: true,
                ..LoadOptions::default()
            },
            shared,
        )
    };
    // Forward (at egress) accepts only established traffic: the SYN is dropped there.
    let forward_strict = egress(&established, shared);
    let forward_open = egress(&accept_all, shared);
    // A forwarded packet: it came in on a device.
    let fwd = SkbMeta {
        ingress_ifindex: 5,
        ..SkbMeta::default()
    };
    let run = |p: &LoadedProgram, frame: &[u8], meta| {
        p.run_tc(frame, meta, 1).unwrap().verdict == Verdict::Accept
    };
    for (port, forward, kept) in [(1000, &forward_strict, false), (1001, &forward_open, true)] {
        let syn = frames::tcp(peer, far, port, 80, SYN);
        assert!(run(&ingress, &syn, SkbMeta::default()));
        assert_eq!(run(forward, &syn, fwd), kept);
        // The answer comes back in on the other side: established only if the
        // connection was confirmed.
        let synack = frames::tcp(far, peer, 80, port, SYN | ACK);
        assert!(run(&ingress, &synack, SkbMeta::default()));
        assert_eq!(run(&forward_strict, &synack, fwd), kept, "port {port}");
    }
}
