//! The BPF programs, run in the kernel with BPF_PROG_TEST_RUN on frames built with
//! etherparse, against the reference evaluator: verdicts, per-rule counters and the
//! program's own stats. Needs root (or CAP_BPF + CAP_NET_ADMIN); skips, saying so,
//! only when BPF is denied to the process.

mod common;

use common::check::{Checker, LOOPBACK};
use common::{gen, load_or_skip, Frag, L3Spec, L4Spec, PacketSpec, V6Exts};
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, PortRange, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, LoadedChain, SkbMeta};
use nftshim_ebpf::maps::{compile, compile_program};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn net4(s: &str) -> nftshim_ebpf::Ipv4Net {
    s.parse().unwrap()
}

fn net6(s: &str) -> nftshim_ebpf::Ipv6Net {
    s.parse().unwrap()
}

fn rule(matches: Vec<Match>, action: Action) -> Rule {
    Rule::new(matches, action)
}

fn ports(ranges: &[(u16, u16)]) -> Vec<PortRange> {
    ranges.iter().map(|&(a, b)| PortRange::new(a, b)).collect()
}

fn load(chain: &Chain, options: LoadOptions) -> Option<LoadedChain> {
    load_or_skip(&compile(chain).expect("chain compiles"), options)
}

/// A firewall-like chain touching every field, negation, sets, ranges and continue.
fn mixed_chain() -> Chain {
    use Test::*;
    Chain {
        scope: L3Scope::Netdev,
        policy: Verdict::Accept,
        rules: vec![
            rule(vec![], Action::Continue),
            rule(vec![Match::is(Iif(vec![7]))], Action::Drop),
            rule(
                vec![
                    Match::is(IpSaddr(vec![net4("10.0.0.0/8")])),
                    Match::is(L4Proto(vec![6])),
                    Match::is(Dport(ports(&[(22, 22)]))),
                ],
                Action::Accept,
            ),
            rule(
                vec![
                    Match::is(L4Proto(vec![6])),
                    Match::is(Dport(ports(&[(22, 22)]))),
                ],
                Action::Drop,
            ),
            rule(
                vec![
                    Match::is(IpDaddr(vec![net4("192.168.1.0/24")])),
                    Match::not(IpSaddr(vec![net4("192.168.1.0/24")])),
                ],
                Action::Continue,
            ),
            rule(
                vec![
                    Match::is(L4Proto(vec![17])),
                    Match::is(Dport(ports(&[(53, 53), (1024, 8080)]))),
                ],
                Action::Accept,
            ),
            rule(
                vec![
                    Match::is(L4Proto(vec![17])),
                    Match::not(Sport(ports(&[(1024, 65535)]))),
                ],
                Action::Drop,
            ),
            rule(
                vec![
                    Match::is(IcmpType(vec![8])),
                    Match::is(IpSaddr(vec![net4("10.0.0.0/16")])),
                ],
                Action::Accept,
            ),
            rule(vec![Match::is(IcmpType(vec![8, 3]))], Action::Drop),
            rule(
                vec![
                    Match::is(Icmpv6Type(vec![128])),
                    Match::not(Ip6Saddr(vec![net6("2001:db8::/32")])),
                ],
                Action::Drop,
            ),
            rule(
                vec![Match::is(Ip6Saddr(vec![
                    net6("2001:db8:1::/48"),
                    net6("fe80::/10"),
                ]))],
                Action::Drop,
            ),
            rule(
                vec![
                    Match::is(Ip6Daddr(vec![net6("2001:db8::2/128")])),
                    Match::is(Dport(ports(&[(80, 443)]))),
                ],
                Action::Drop,
            ),
            rule(
                vec![Match::is(Mark {
                    mask: 0xff,
                    values: vec![1],
                })],
                Action::Drop,
            ),
            rule(
                vec![
                    Match::is(Mark {
                        mask: u32::MAX,
                        values: vec![0x100],
                    }),
                    Match::not(Iif(vec![2])),
                ],
                Action::Drop,
            ),
            rule(vec![Match::is(L4Proto(vec![47, 50]))], Action::Continue),
            rule(vec![Match::not(L4Proto(vec![6, 17, 1, 58]))], Action::Drop),
            rule(
                vec![
                    Match::is(Oif(vec![0])),
                    Match::is(Dport(ports(&[(8080, 8080)]))),
                ],
                Action::Drop,
            ),
        ],
    }
}

/// A deterministic spread of packets over the pools the mixed chain tests.
fn sweep() -> Vec<PacketSpec> {
    let v4: [[u8; 4]; 5] = [
        [10, 0, 0, 1],
        [10, 1, 0, 1],
        [192, 168, 1, 5],
        [172, 16, 0, 1],
        [8, 8, 8, 8],
    ];
    let v6 = [
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8:1::9",
        "fe80::1",
        "2a00::1",
    ];
    let l4s = [
        L4Spec::Tcp {
            sport: 40000,
            dport: 22,
        },
        L4Spec::Tcp {
            sport: 1000,
            dport: 443,
        },
        L4Spec::Udp {
            sport: 53,
            dport: 53,
        },
        L4Spec::Udp {
            sport: 1023,
            dport: 9000,
        },
        L4Spec::Udp {
            sport: 5000,
            dport: 8080,
        },
        L4Spec::Icmp { ty: 8, code: 0 },
        L4Spec::Icmp { ty: 3, code: 1 },
        L4Spec::Icmp { ty: 128, code: 0 },
        L4Spec::Other(47),
        L4Spec::Other(89),
    ];
    let mut out = Vec::new();
    let mut n = 0usize;
    for (i, &s) in v4.iter().enumerate() {
        for &d in &v4 {
            for &l4 in &l4s {
                n += 1;
                let frag = [Frag::None, Frag::None, Frag::First, Frag::Later][n % 4];
                let l3 = L3Spec::V4 {
                    saddr: s.into(),
                    daddr: d.into(),
                    options: n.is_multiple_of(3),
                    frag,
                    l4,
                };
                out.push(PacketSpec {
                    vlans: (n % 3) as u8,
                    l3,
                    iif: [1, 2, 7][n % 3],
                    mark: [0, 1, 0x101, 0x100][i % 4],
                    truncate: None,
                });
            }
        }
    }
    for (i, s) in v6.iter().enumerate() {
        for d in &v6 {
            for &l4 in &l4s {
                n += 1;
                let exts = V6Exts {
                    hop_by_hop: n.is_multiple_of(2),
                    dest_opts: n.is_multiple_of(3),
                    routing: n.is_multiple_of(5),
                    auth: n.is_multiple_of(7),
                };
                let frag = [Frag::None, Frag::First, Frag::None, Frag::Later][n % 4];
                let l3 = L3Spec::V6 {
                    saddr: s.parse().unwrap(),
                    daddr: d.parse().unwrap(),
                    exts,
                    frag,
                    l4,
                };
                out.push(PacketSpec {
                    vlans: (n % 3) as u8,
                    l3,
                    iif: [1, 2, 7][n % 3],
                    mark: [0, 1, 0x100][i % 3],
                    truncate: None,
                });
            }
        }
    }
    for vlans in 0..=2 {
        out.push(PacketSpec {
            vlans,
            ..PacketSpec::new(L3Spec::Arp)
        });
    }
    out
}

#[test]
fn mixed_chain_agrees_with_the_reference() {
    let chain = mixed_chain();
    let Some(loaded) = load(&chain, LoadOptions::default()) else {
        return;
    };
    let mut check = Checker::new(&loaded, &chain);
    let packets = sweep();
    let mut verdicts = [0usize; 2];
    for spec in &packets {
        let v = check.packet(spec).unwrap();
        verdicts[(v == Verdict::Drop) as usize] += 1;
    }
    // The sweep exercises both outcomes and most rules, or it proves little.
    assert!(
        verdicts[0] > 50 && verdicts[1] > 50,
        "accepted/dropped: {verdicts:?}"
    );
    let hit_rules = check.counters.iter().filter(|c| c.packets > 0).count();
    assert!(
        hit_rules >= chain.rules.len() - 1,
        "only {hit_rules} counters hit"
    );
    check.finish().unwrap();
}

#[test]
fn scope_passes_packets_the_chain_does_not_see() {
    let chain = Chain {
        scope: L3Scope::Ipv4,
        policy: Verdict::Drop,
        rules: vec![],
    };
    let Some(loaded) = load(&chain, LoadOptions::default()) else {
        return;
    };
    let mut check = Checker::new(&loaded, &chain);
    let udp = L4Spec::Udp { sport: 1, dport: 2 };
    assert_eq!(
        check
            .packet(&PacketSpec::v4([1, 1, 1, 1], [2, 2, 2, 2], udp))
            .unwrap(),
        Verdict::Drop
    );
    assert_eq!(
        check.packet(&PacketSpec::v6("::1", "::2", udp)).unwrap(),
        Verdict::Accept
    );
    assert_eq!(
        check.packet(&PacketSpec::new(L3Spec::Arp)).unwrap(),
        Verdict::Accept
    );
    assert_eq!(check.stats.unscoped, 4);
    check.finish().unwrap();
}

#[test]
fn truncated_transport_headers_leave_ports_absent() {
    let chain = Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![
            rule(
                vec![Match::not(Test::Dport(ports(&[(22, 22)])))],
                Action::Drop,
            ),
            rule(vec![Match::is(Test::L4Proto(vec![6]))], Action::Continue),
        ],
    };
    let Some(loaded) = load(&chain, LoadOptions::default()) else {
        return;
    };
    let mut spec = PacketSpec::v4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        L4Spec::Tcp {
            sport: 9,
            dport: 80,
        },
    );
    assert_eq!(
        loaded.run_xdp(&spec.frame(), 1).unwrap().verdict,
        Verdict::Drop,
        "whole header: 80 != 22"
    );
    // Ethernet 14 + IPv4 20 + 3 bytes: the destination port is cut.
    spec.truncate = Some(37);
    assert_eq!(
        loaded.run_xdp(&spec.frame(), 1).unwrap().verdict,
        Verdict::Accept
    );
    assert_eq!(
        loaded
            .run_tc(&spec.frame(), SkbMeta::default(), 1)
            .unwrap()
            .verdict,
        Verdict::Accept
    );
    let counters = loaded.counters().unwrap();
    assert_eq!(
        counters.iter().map(|c| c.packets).collect::<Vec<_>>(),
        [1, 2, 2],
        "l4proto is still known"
    );
}

#[test]
fn tc_at_egress_sees_the_output_device() {
    let chain = Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![rule(
            vec![Match::is(Test::Oif(vec![LOOPBACK]))],
            Action::Drop,
        )],
    };
    let frame = PacketSpec::v4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        L4Spec::Udp { sport: 1, dport: 2 },
    )
    .frame();
    // A test run's skb is on loopback unless told otherwise.
    let Some(egress) = load(
        &chain,
        LoadOptions {
            tc_egress: true,
            ..LoadOptions::default()
        },
    ) else {
        return;
    };
    assert_eq!(
        egress
            .run_tc(&frame, SkbMeta::default(), 1)
            .unwrap()
            .verdict,
        Verdict::Drop
    );
    let ingress = load(
        &chain,
        LoadOptions {
            tc_egress: false,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        ingress
            .run_tc(&frame, SkbMeta::default(), 1)
            .unwrap()
            .verdict,
        Verdict::Accept,
        "no oif at ingress"
    );
}

#[test]
fn long_chains_scan_across_blocks_and_continue_rules() {
    // 9000 rules: three 4096-rule blocks. Rule i drops UDP to port 10000 + i; a few
    // counter-only rules that match everything sit at block edges.
    let continues = [0usize, 4095, 4096, 6000, 8191, 8192];
    let rules: Vec<Rule> = (0..9000u16)
        .map(|i| {
            if continues.contains(&(i as usize)) {
                rule(vec![], Action::Continue)
            } else {
                rule(
                    vec![
                        Match::is(Test::L4Proto(vec![17])),
                        Match::is(Test::Dport(ports(&[(10000 + i, 10000 + i)]))),
                    ],
                    Action::Drop,
                )
            }
        })
        .collect();
    let chain = Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules,
    };
    let Some(loaded) = load(&chain, LoadOptions::default()) else {
        return;
    };
    let mut check = Checker::new(&loaded, &chain);
    for dport in [10001, 14095, 14097, 16001, 18500, 18999, 19000, 9999, 22] {
        let spec = PacketSpec::v4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            L4Spec::Udp { sport: 5, dport },
        );
        check.packet(&spec).unwrap();
    }
    assert_eq!(
        check.counters[8500].packets, 2,
        "rule 8500 decided at XDP and TC"
    );
    assert_eq!(
        check.counters[9000].packets,
        2 * 4,
        "policy for 19000, 9999, 22 and continue-rule ports"
    );
    check.finish().unwrap();
}

#[test]
fn every_dimension_in_a_long_chain_verifies_and_agrees() {
    // The verifier's hardest case: all ten dimensions looked up, and scan positions
    // anywhere in two blocks. Rules are random but reproducible; most hold predicates
    // that rarely match, so packets get deep into the chain.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut rules: Vec<Rule> = prop::collection::vec(gen::rule(), 6000)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    for r in &mut rules {
        // Never at XDP (iif 1), half the time at TC: fewer early matches.
        r.matches.push(Match::is(Test::Iif(vec![2, 3])));
    }
    rules.push(rule(
        vec![Match::is(Test::Mark {
            mask: 0xff,
            values: vec![1],
        })],
        Action::Drop,
    ));
    let chain = Chain {
        scope: L3Scope::Netdev,
        policy: Verdict::Drop,
        rules,
    };
    let compiled = compile(&chain).unwrap();
    assert_eq!(compiled.config.dims, (1 << 10) - 1, "all dimensions in use");
    let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
        return;
    };
    let mut check = Checker::new(&loaded, &chain);
    let packets: Vec<PacketSpec> = prop::collection::vec(gen::packet(), 200)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    for spec in &packets {
        check.packet(spec).unwrap();
    }
    check.finish().unwrap();
}

/// Rule i of a chain of n: nine dimensions, matched by `deep_packet(i)` only.
fn wide_rule(i: usize) -> Rule {
    let saddr = nftshim_ebpf::Ipv4Net::new([10, (i >> 8) as u8, i as u8, 0].into(), 24).unwrap();
    rule(
        vec![
            Match::is(Test::IpSaddr(vec![saddr])),
            Match::is(Test::IpDaddr(vec![net4("192.168.0.0/16")])),
            Match::is(Test::L4Proto(vec![6])),
            Match::is(Test::Sport(ports(&[(1024, 65535)]))),
            Match::is(Test::Dport(ports(&[(
                1000 + (i % 5000) as u16,
                1000 + (i % 5000) as u16,
            )]))),
            Match::not(Test::Iif(vec![9])),
            Match::is(Test::Oif(vec![0])),
            Match::is(Test::Mark {
                mask: 0xff,
                values: vec![0],
            }),
            Match::not(Test::Mark {
                mask: u32::MAX,
                values: vec![7],
            }),
        ],
        if i.is_multiple_of(2) {
            Action::Accept
        } else {
            Action::Drop
        },
    )
}

fn deep_packet(i: usize) -> PacketSpec {
    let l4 = L4Spec::Tcp {
        sport: 40000,
        dport: 1000 + (i % 5000) as u16,
    };
    PacketSpec::v4([10, (i >> 8) as u8, i as u8, 1], [192, 168, 1, 1], l4)
}

#[test]
fn programs_verify_and_agree_at_every_chain_size() {
    // Scan positions, block counts and the last block's length all depend on the size;
    // the verifier must accept the programs for each (clang's codegen once made it
    // reject 10000 rules only).
    for n in [1, 63, 64, 65, 4095, 4096, 4097, 10_000, 20_000] {
        let mut rules: Vec<Rule> = (0..n).map(wide_rule).collect();
        rules[0].matches.push(Match::not(Test::IcmpType(vec![8])));
        let chain = Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Drop,
            rules,
        };
        let compiled = compile(&chain).unwrap();
        assert_eq!(compiled.config.dims, (1 << 10) - 1, "all dimensions in use");
        let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
            return;
        };
        let mut check = Checker::new(&loaded, &chain);
        for i in [0, n / 2, n - 1, n] {
            check.packet(&deep_packet(i)).unwrap();
        }
        check.finish().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn bpf_agrees_with_the_reference_on_random_chains(
        chain in gen::chain(20),
        packets in prop::collection::vec(gen::packet(), 24),
    ) {
        let Some(loaded) = load(&chain, LoadOptions::default()) else { return Ok(()) };
        let mut check = Checker::new(&loaded, &chain);
        for spec in &packets {
            check.packet(spec)?;
        }
        check.finish()?;
    }

    #[test]
    fn bpf_agrees_with_the_reference_on_random_programs(
        program in gen::program(8),
        packets in prop::collection::vec(gen::packet(), 24),
    ) {
        let compiled = compile_program(&program).expect("generated programs compile");
        let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else { return Ok(()) };
        let mut check = Checker::for_program(&loaded, &program);
        for spec in &packets {
            check.packet(spec)?;
        }
        check.finish()?;
    }
}
