//! Random chains and packets for property tests. Values come from small pools so that
//! rules and packets collide often (prefixes nest, ports fall inside ranges).

use std::net::{Ipv4Addr, Ipv6Addr};

use std::collections::BTreeMap;

use nftshim_ebpf::ir::{
    Action, Chain, IcmpxCode, L3Scope, Limit, Match, PortRange, Program, Quota, Reject, Rule,
    SetField, Statement, Test, Verdict,
};
use nftshim_ebpf::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::sample::select;

use super::{Frag, L3Spec, L4Spec, PacketSpec, V6Exts};

const V4: [[u8; 4]; 8] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [10, 0, 1, 1],
    [10, 1, 0, 1],
    [192, 168, 1, 1],
    [192, 168, 1, 200],
    [172, 16, 0, 1],
    [8, 8, 8, 8],
];
const V4_LENS: [u8; 7] = [0, 8, 16, 24, 25, 31, 32];
const V6: [&str; 6] = [
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:1::1",
    "fe80::1",
    "::1",
    "2001:db8:ffff::1",
];
const V6_LENS: [u8; 7] = [0, 16, 32, 48, 64, 127, 128];
const PORTS: [u16; 8] = [0, 22, 53, 80, 443, 1024, 8080, 65535];
const PROTOS: [u8; 6] = [6, 17, 1, 58, 47, 50];
const ICMP_TYPES: [u8; 7] = [0, 3, 8, 11, 128, 129, 135];
const IFINDEXES: [u32; 4] = [1, 2, 3, 7];
const MARK_MASKS: [u32; 2] = [u32::MAX, 0xff];
const MARKS: [u32; 5] = [0, 1, 2, 0x100, 0x101];

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    select(&V4[..]).prop_map(Ipv4Addr::from)
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    select(&V6[..]).prop_map(|s| s.parse().unwrap())
}

fn v4_net() -> impl Strategy<Value = Ipv4Net> {
    (v4_addr(), select(&V4_LENS[..])).prop_map(|(a, l)| Ipv4Net::new(a, l).unwrap())
}

fn v6_net() -> impl Strategy<Value = Ipv6Net> {
    (v6_addr(), select(&V6_LENS[..])).prop_map(|(a, l)| Ipv6Net::new(a, l).unwrap())
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (select(&PORTS[..]), select(&PORTS[..]), any::<bool>()).prop_map(|(a, b, single)| {
        if single {
            PortRange::single(a)
        } else {
            PortRange::new(a.min(b), a.max(b))
        }
    })
}

fn set<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(s, 1..=3)
}

pub fn test() -> impl Strategy<Value = Test> {
    prop_oneof![
        set(v4_net()).prop_map(Test::IpSaddr),
        set(v4_net()).prop_map(Test::IpDaddr),
        set(v6_net()).prop_map(Test::Ip6Saddr),
        set(v6_net()).prop_map(Test::Ip6Daddr),
        set(select(&PROTOS[..])).prop_map(Test::L4Proto),
        set(port_range()).prop_map(Test::Sport),
        set(port_range()).prop_map(Test::Dport),
        set(select(&ICMP_TYPES[..])).prop_map(Test::IcmpType),
        set(select(&ICMP_TYPES[..])).prop_map(Test::Icmpv6Type),
        set(select(&IFINDEXES[..])).prop_map(Test::Iif),
        set(select(&[0u32, 1, 2][..])).prop_map(Test::Oif),
        (select(&MARK_MASKS[..]), set(select(&MARKS[..])))
            .prop_map(|(mask, values)| Test::Mark { mask, values }),
    ]
}

fn matches() -> impl Strategy<Value = Vec<Match>> {
    prop::collection::vec((test(), prop::bool::weighted(0.25)), 0..=3).prop_map(|ms| {
        ms.into_iter()
            .map(|(test, negated)| Match { test, negated })
            .collect()
    })
}

pub fn rule() -> impl Strategy<Value = Rule> {
    let action = prop_oneof![3 => Just(Action::Accept), 3 => Just(Action::Drop), 1 => Just(Action::Continue)];
    (matches(), action).prop_map(|(matches, action)| Rule::new(matches, action))
}

/// Regular chains of generated programs: `c0`, `c1`, ...; chain `ci` only jumps to
/// later ones, so there are no loops.
pub const REGULAR_CHAINS: usize = 4;

fn regular_name(i: usize) -> String {
    format!("c{i}")
}

/// A rule of a chain that may jump or go to regular chains `first..REGULAR_CHAINS`.
fn program_rule(first: usize) -> impl Strategy<Value = Rule> {
    let targets = first..REGULAR_CHAINS.max(first + 1);
    let can_jump = first < REGULAR_CHAINS;
    let jump = targets.clone().prop_map(move |t| {
        if can_jump {
            Action::Jump(regular_name(t))
        } else {
            Action::Continue
        }
    });
    let goto = targets.prop_map(move |t| {
        if can_jump {
            Action::Goto(regular_name(t))
        } else {
            Action::Return
        }
    });
    let action = prop_oneof![
        3 => Just(Action::Accept),
        3 => Just(Action::Drop),
        2 => Just(Action::Continue),
        3 => jump,
        1 => goto,
        1 => Just(Action::Return),
    ];
    (matches(), action).prop_map(|(matches, action)| Rule::new(matches, action))
}

fn program_chain(first_target: usize, max_rules: usize) -> impl Strategy<Value = Chain> {
    let scope = select(&[L3Scope::Ipv4, L3Scope::Ipv6, L3Scope::Inet, L3Scope::Netdev][..]);
    let policy = select(&[Verdict::Accept, Verdict::Drop][..]);
    (
        scope,
        policy,
        prop::collection::vec(program_rule(first_target), 0..=max_rules),
    )
        .prop_map(|(scope, policy, rules)| Chain {
            scope,
            policy,
            rules,
        })
}

/// 1-3 base chains and up to four regular chains jumping to each other.
pub fn program(max_rules: usize) -> impl Strategy<Value = Program> {
    let bases = prop::collection::vec(program_chain(0, max_rules), 1..=3);
    let regulars = (0..REGULAR_CHAINS)
        .map(|i| program_chain(i + 1, max_rules))
        .collect::<Vec<_>>();
    (bases, regulars).prop_map(|(base_chains, regulars)| Program {
        base_chains,
        chains: regulars
            .into_iter()
            .enumerate()
            .map(|(i, c)| (regular_name(i), c))
            .collect::<BTreeMap<_, _>>(),
        ..Program::default()
    })
}

pub fn chain(max_rules: usize) -> impl Strategy<Value = Chain> {
    let scope = select(&[L3Scope::Ipv4, L3Scope::Ipv6, L3Scope::Inet, L3Scope::Netdev][..]);
    let policy = select(&[Verdict::Accept, Verdict::Drop][..]);
    (scope, policy, prop::collection::vec(rule(), 0..=max_rules)).prop_map(
        |(scope, policy, rules)| Chain {
            scope,
            policy,
            rules,
        },
    )
}

fn l4() -> impl Strategy<Value = L4Spec> {
    prop_oneof![
        (select(&PORTS[..]), select(&PORTS[..]))
            .prop_map(|(sport, dport)| L4Spec::Tcp { sport, dport }),
        (select(&PORTS[..]), select(&PORTS[..]))
            .prop_map(|(sport, dport)| L4Spec::Udp { sport, dport }),
        (select(&ICMP_TYPES[..]), any::<u8>()).prop_map(|(ty, code)| L4Spec::Icmp { ty, code }),
        select(&[47u8, 50, 89, 2][..]).prop_map(L4Spec::Other),
    ]
}

fn frag() -> impl Strategy<Value = Frag> {
    prop_oneof![6 => Just(Frag::None), 1 => Just(Frag::First), 1 => Just(Frag::Later)]
}

pub fn packet() -> impl Strategy<Value = PacketSpec> {
    let v4 = (v4_addr(), v4_addr(), any::<bool>(), frag(), l4()).prop_map(
        |(saddr, daddr, options, frag, l4)| L3Spec::V4 {
            saddr,
            daddr,
            options,
            frag,
            l4,
        },
    );
    let exts = any::<[bool; 4]>().prop_map(|[hop_by_hop, dest_opts, routing, auth]| V6Exts {
        hop_by_hop,
        dest_opts,
        routing,
        auth,
    });
    let v6 =
        (v6_addr(), v6_addr(), exts, frag(), l4()).prop_map(|(saddr, daddr, exts, frag, l4)| {
            L3Spec::V6 {
                saddr,
                daddr,
                exts,
                frag,
                l4,
            }
        });
    let l3 = prop_oneof![4 => v4, 4 => v6, 1 => Just(L3Spec::Arp)];
    (0u8..=2, l3, select(&IFINDEXES[..]), select(&MARKS[..])).prop_map(|(vlans, l3, iif, mark)| {
        PacketSpec {
            vlans,
            l3,
            iif,
            mark,
            truncate: None,
        }
    })
}

/// Matches beyond the LBVS dimensions: set lookups (in the sets `nets`, `ports`, `ifs`
/// the test gives the program), limits slow enough that no token comes back during a
/// test, and quotas.
fn extra_test() -> impl Strategy<Value = Test> {
    prop_oneof![
        select(&[SetField::IpSaddr, SetField::IpDaddr][..]).prop_map(|field| Test::InSet {
            field,
            set: "nets".into()
        }),
        select(&[SetField::Sport, SetField::Dport][..]).prop_map(|field| Test::InSet {
            field,
            set: "ports".into()
        }),
        Just(Test::InSet {
            field: SetField::Iif,
            set: "ifs".into()
        }),
        (1u64..4, 0u32..3).prop_map(|(rate, burst)| Test::Limit(Limit {
            rate,
            unit_secs: 86400,
            burst,
            bytes: false,
            state: None,
        })),
        (0u64..400, 0u64..100).prop_map(|(bytes, used)| Test::Quota(Quota {
            bytes,
            used,
            state: None
        })),
    ]
}

fn statement() -> impl Strategy<Value = Statement> {
    prop_oneof![
        select(&MARKS[..]).prop_map(Statement::set_mark),
        (any::<u32>(), select(&MARKS[..])).prop_map(|(and, xor)| Statement::SetMark { and, xor }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            1u8..32,
            any::<u32>()
        )
            .prop_map(|(and, xor, left, by, post)| Statement::MarkShift(
                nftshim_ebpf::ir::MarkShift {
                    from_ct: false,
                    to_ct: false,
                    and,
                    xor,
                    left,
                    by,
                    post,
                }
            )),
        select(&["a", "b"][..]).prop_map(|p| Statement::Log {
            prefix: p.to_string()
        }),
    ]
}

fn rule_with_extras(first: usize) -> impl Strategy<Value = Rule> {
    let extras = prop::collection::vec((extra_test(), prop::bool::weighted(0.3)), 0..=2);
    let statements = prop::collection::vec(statement(), 0..=2);
    let reject = select(
        &[
            Reject::TcpReset,
            Reject::Icmp(3),
            Reject::Icmpx(IcmpxCode::AdminProhibited),
        ][..],
    );
    (
        program_rule(first),
        extras,
        statements,
        prop::bool::weighted(0.1),
        reject,
    )
        .prop_map(|(mut rule, extras, statements, rejects, how)| {
            rule.matches.extend(
                extras
                    .into_iter()
                    .map(|(test, negated)| Match { test, negated }),
            );
            rule.statements = statements;
            if rejects {
                rule.action = Action::Reject(how);
            }
            rule
        })
}

fn chain_with_extras(first_target: usize, max_rules: usize) -> impl Strategy<Value = Chain> {
    let scope = select(&[L3Scope::Ipv4, L3Scope::Ipv6, L3Scope::Inet, L3Scope::Netdev][..]);
    let policy = select(&[Verdict::Accept, Verdict::Drop][..]);
    (
        scope,
        policy,
        prop::collection::vec(rule_with_extras(first_target), 0..=max_rules),
    )
        .prop_map(|(scope, policy, rules)| Chain {
            scope,
            policy,
            rules,
        })
}

/// Like [`program`], with set lookups, limits, quotas, mark and log statements and
/// rejects. The caller supplies the sets.
pub fn program_with_extras(max_rules: usize) -> impl Strategy<Value = Program> {
    let bases = prop::collection::vec(chain_with_extras(0, max_rules), 1..=2);
    let regulars = (0..REGULAR_CHAINS)
        .map(|i| chain_with_extras(i + 1, max_rules))
        .collect::<Vec<_>>();
    (bases, regulars).prop_map(|(base_chains, regulars)| Program {
        base_chains,
        chains: regulars
            .into_iter()
            .enumerate()
            .map(|(i, c)| (regular_name(i), c))
            .collect::<BTreeMap<_, _>>(),
        ..Program::default()
    })
}
