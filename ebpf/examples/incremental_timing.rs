//! Control-plane cost of one appended or deleted rule at the end of a 10,000-rule
//! chain shaped like the benchmark's (docs/benchmarks.md): the incremental compile
//! (`compile_program_after`) and the image a spare program two commits back is
//! rewritten to (`Image::successor`). Pure Rust, no kernel needed.
//!
//!     cargo run -p nftshim-ebpf --release --example incremental_timing [RULES]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use nftshim_ebpf::image::{Capacity, Image};
use nftshim_ebpf::ir::{
    ct_state, Action, Chain, L3Scope, Match, PortRange, Program, Rule, Test, Verdict,
};
use nftshim_ebpf::maps::compile_program_after;
use nftshim_ebpf::{Ipv4Net, Ipv6Net};

fn rule(i: usize) -> Rule {
    let port = PortRange::single(20000 + (i % 40000) as u16);
    let tcp = Match::is(Test::L4Proto(vec![6]));
    let udp = Match::is(Test::L4Proto(vec![17]));
    let (b2, b3) = ((i >> 8) as u8, i as u8);
    let matches = match i % 6 {
        0 => vec![
            Match::is(Test::IpSaddr(vec![Ipv4Net::new(
                Ipv4Addr::new(10, 128, b3, 0),
                24,
            )
            .unwrap()])),
            tcp,
            Match::is(Test::Dport(vec![port])),
        ],
        1 => vec![
            Match::is(Test::IpDaddr(vec![Ipv4Net::new(
                Ipv4Addr::new(172, 16, 128 + b2, b3),
                32,
            )
            .unwrap()])),
            udp,
            Match::is(Test::Dport(vec![port])),
        ],
        2 => vec![
            Match::is(Test::Iif(vec![7])),
            udp,
            Match::is(Test::Dport(vec![port])),
        ],
        3 => vec![
            Match::is(Test::Ip6Saddr(vec![Ipv6Net::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, i as u16, 0, 0, 0, 0),
                64,
            )
            .unwrap()])),
            tcp,
            Match::is(Test::Dport(vec![port])),
        ],
        4 => vec![
            Match::is(Test::IpSaddr(vec!["10.128.0.0/16".parse().unwrap()])),
            Match::is(Test::IpDaddr(vec![Ipv4Net::new(
                Ipv4Addr::new(192, 168, b3, 0),
                24,
            )
            .unwrap()])),
            udp,
            Match::is(Test::Sport(vec![PortRange::new(1024, 65535)])),
            Match::is(Test::Dport(vec![port])),
        ],
        _ => vec![
            tcp,
            Match::is(Test::Sport(vec![port])),
            Match::is(Test::Dport(vec![PortRange::new(1, 1023)])),
        ],
    };
    Rule::new(
        matches,
        if i % 2 == 0 {
            Action::Drop
        } else {
            Action::Accept
        },
    )
}

fn program(rules: Vec<Rule>) -> Program {
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

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().unwrap());
    let mut rules = vec![Rule::new(
        vec![Match::is(Test::CtState(
            ct_state::ESTABLISHED | ct_state::RELATED,
        ))],
        Action::Accept,
    )];
    rules.extend((0..n).map(rule));
    let extra = Rule::new(
        vec![
            Match::is(Test::IpSaddr(vec!["203.0.113.7/32".parse().unwrap()])),
            Match::is(Test::L4Proto(vec![6])),
            Match::is(Test::Dport(vec![PortRange::single(4444)])),
        ],
        Action::Drop,
    );
    let base = program(rules.clone());
    let t = Instant::now();
    let (c0, _) = compile_program_after(&base, None).unwrap();
    println!(
        "full compile {:?}: {} vectors, {} blocks",
        t.elapsed(),
        c0.distinct_vectors(),
        c0.block_entries()
    );
    let cap = Capacity::for_program(&c0);
    let img0 = Image::default().successor(&c0, &c0.rule_ext, &cap).unwrap();
    // Spares: images of two commits back, as the worker alternates two programs.
    let mut images = [img0.clone(), img0];
    let (mut prog, mut comp) = (base, c0);
    let mut with = rules.clone();
    with.push(extra);
    let (mut compile_ms, mut image_ms) = (Vec::new(), Vec::new());
    let cold = std::env::var_os("COLD").is_some();
    let mut flush = vec![0u8; if cold { 64 << 20 } else { 0 }];
    let steps: usize = std::env::var("STEPS").map_or(20, |s| s.parse().unwrap());
    for step in 0..steps {
        let next = program(if step % 2 == 0 {
            with.clone()
        } else {
            rules.clone()
        });
        // COLD=1: caches flushed before each step, as the daemon's other work between
        // commits leaves them.
        if cold {
            flush.iter_mut().for_each(|b| *b = b.wrapping_add(1));
        }
        let t = Instant::now();
        let (c, inc) = compile_program_after(&next, Some((&prog, &comp))).unwrap();
        compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(inc);
        let spare = &mut images[step % 2];
        if cold {
            flush.iter_mut().for_each(|b| *b = b.wrapping_add(1));
        }
        let t = Instant::now();
        let img = spare.successor(&c, &c.rule_ext, &cap).unwrap();
        image_ms.push(t.elapsed().as_secs_f64() * 1e3);
        *spare = img;
        prog = next;
        comp = c;
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Even steps append, odd ones delete.
    let (mut add_c, mut del_c): (Vec<f64>, Vec<f64>) = (
        compile_ms.iter().step_by(2).copied().collect(),
        compile_ms.iter().skip(1).step_by(2).copied().collect(),
    );
    let (mut add_i, mut del_i): (Vec<f64>, Vec<f64>) = (
        image_ms.iter().step_by(2).copied().collect(),
        image_ms.iter().skip(1).step_by(2).copied().collect(),
    );
    println!(
        "median ms: compile add {:.2} delete {:.2}; spare image add {:.2} delete {:.2}",
        med(&mut add_c),
        med(&mut del_c),
        med(&mut add_i),
        med(&mut del_i)
    );
}
