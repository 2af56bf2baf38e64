//! Per-packet cost of the LBVS classifier as the chain grows, measured by the kernel
//! with BPF_PROG_TEST_RUN. Worst case: no rule matches, so every word of the AND is
//! scanned. Then the same chain behind conntrack: a packet whose connection is not
//! established (tracked, then the full scan), and a reply of an established one that
//! `ct state established accept` at the top lets through on the fast path. Needs root.
//!
//!     cargo run -p nftshim-ebpf --release --example lbvs_timing

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use nftshim_ebpf::ir::{
    ct_state, Action, Chain, L3Scope, Match, PortRange, Program, Rule, RuleBody, Test, Verdict,
};
use nftshim_ebpf::loader::{LoadOptions, LoadedChain, SkbMeta};
use nftshim_ebpf::maps::{compile, compile_program};
use nftshim_ebpf::Ipv4Net;

const REPEAT: u32 = 200_000;
const ROUNDS: usize = 5;

/// Rule i: `ip saddr 10.x.y.0/24 ip daddr 192.168.0.0/16 meta l4proto tcp
/// tcp sport 1024-65535 tcp dport 1000+i%5000 accept`: five dimensions.
fn chain(n: usize) -> Chain {
    let rules = (0..n)
        .map(|i| {
            let saddr = Ipv4Net::new(Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 0), 24).unwrap();
            Rule::from(RuleBody {
                matches: vec![
                    Match::is(Test::IpSaddr(vec![saddr])),
                    Match::is(Test::IpDaddr(vec!["192.168.0.0/16".parse().unwrap()])),
                    Match::is(Test::L4Proto(vec![6])),
                    Match::is(Test::Sport(vec![PortRange::new(1024, 65535)])),
                    Match::is(Test::Dport(vec![PortRange::single(
                        1000 + (i % 5000) as u16,
                    )])),
                ],
                action: Action::Accept,
                ..RuleBody::default()
            })
        })
        .collect();
    Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Drop,
        rules,
    }
}

fn tcp_frame(saddr: [u8; 4], dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(saddr, [192, 168, 1, 1], 64)
        .tcp(40000, dport, 1, 1024)
        .write(&mut frame, &[0; 18])
        .unwrap();
    frame
}

fn udp_frame(saddr: [u8; 4], daddr: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(saddr, daddr, 64)
        .udp(sport, dport)
        .write(&mut frame, &[0; 18])
        .unwrap();
    frame
}

/// The chain behind `ct state established,related accept`, with conntrack; the policy
/// accepts new connections so that they get an entry.
fn with_conntrack(mut chain: Chain) -> Program {
    chain.rules.insert(
        0,
        Rule::new(
            vec![Match::is(Test::CtState(
                ct_state::ESTABLISHED | ct_state::RELATED,
            ))],
            Action::Accept,
        ),
    );
    chain.policy = Verdict::Accept;
    Program {
        base_chains: vec![chain],
        conntrack: true,
        ..Program::default()
    }
}

/// The fastest of a few rounds, as the kernel measures it (per packet).
fn best(mut run: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| run()).min().unwrap()
}

fn main() {
    println!(
        "{:>7} {:>8} {:>10} {:>9} {:>8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "rules",
        "vectors",
        "table KiB",
        "compile",
        "load",
        "xdp miss ns",
        "tc miss ns",
        "xdp hit0 ns",
        "ct new ns",
        "ct est ns"
    );
    for n in [10, 1_000, 10_000] {
        let chain = chain(n);
        let t = Instant::now();
        let compiled = compile(&chain).expect("compiles");
        let compile_time = t.elapsed();
        let t = Instant::now();
        let loaded = match LoadedChain::load(&compiled, LoadOptions::default()) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("cannot load the BPF programs (root needed?): {e}");
                std::process::exit(1);
            }
        };
        let load_time = t.elapsed();

        // 172.16.0.1 is in no rule's source prefix: every word is scanned, nothing matches.
        let miss = tcp_frame([172, 16, 0, 1], 1000);
        // 10.0.0.1 port 1000 matches rule 0: the scan stops at the first word.
        let hit = tcp_frame([10, 0, 0, 1], 1000);
        let xdp_miss = best(|| {
            let run = loaded.run_xdp(&miss, REPEAT).unwrap();
            assert_eq!(run.verdict, Verdict::Drop);
            run.duration
        });
        let tc_miss = best(|| {
            let run = loaded.run_tc(&miss, SkbMeta::default(), REPEAT).unwrap();
            assert_eq!(run.verdict, Verdict::Drop);
            run.duration
        });
        let xdp_hit = best(|| {
            let run = loaded.run_xdp(&hit, REPEAT).unwrap();
            assert_eq!(run.verdict, Verdict::Accept);
            run.duration
        });

        // Conntrack: an unanswered UDP flow stays NEW (tracked, then the full scan); its
        // reply is ESTABLISHED and takes the fast path.
        let ct = compile_program(&with_conntrack(chain)).expect("compiles");
        let ct = LoadedChain::load(&ct, LoadOptions::default()).expect("loads");
        let out = udp_frame([172, 16, 0, 1], [192, 168, 1, 1], 5000, 53);
        let back = udp_frame([192, 168, 1, 1], [172, 16, 0, 1], 53, 5000);
        let ct_new = best(|| {
            let run = ct.run_tc(&out, SkbMeta::default(), REPEAT).unwrap();
            assert_eq!(run.verdict, Verdict::Accept);
            run.duration
        });
        ct.run_tc(&back, SkbMeta::default(), 1).unwrap();
        let ct_est = best(|| {
            let run = ct.run_tc(&back, SkbMeta::default(), REPEAT).unwrap();
            assert_eq!(run.verdict, Verdict::Accept);
            run.duration
        });
        println!(
            "{:>7} {:>8} {:>10} {:>7}ms {:>6}ms {:>12} {:>12} {:>12} {:>12} {:>12}",
            n,
            compiled.distinct_vectors(),
            (compiled.blocks.len() * 512 + compiled.vector_blocks.len() * 4) / 1024,
            compile_time.as_millis(),
            load_time.as_millis(),
            xdp_miss.as_nanos(),
            tc_miss.as_nanos(),
            xdp_hit.as_nanos(),
            ct_new.as_nanos(),
            ct_est.as_nanos()
        );
    }
}
