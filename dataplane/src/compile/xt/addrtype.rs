//! `-m addrtype` (net/netfilter/xt_addrtype.c): the type of the packet's source and/or
//! destination address.
//!
//! IPv4 (`match_type()`): the address matches when the mask has the bit of
//! `inet_dev_addr_type()`, which is BROADCAST for 0.0.0.0/8 and 255.255.255.255,
//! MULTICAST for 224.0.0.0/4, else the type of the address's route in the local table
//! (UNICAST without one, or when that route is of a type whose lookup fails).
//! fib_create_info() only creates routes that look up without an error when their type
//! is UNICAST, LOCAL, BROADCAST, ANYCAST or MULTICAST, so the answer is always one of
//! those five: a mask without any of them never matches, one with all of them always
//! does. Other masks ask the runtime's mirror of the local table
//! ([`nftshim_ebpf::addrtype`]; the `AddrType` residual operation), with the device
//! of `--limit-iface-in/out` (revision 1) checked against the route's first nexthop
//! as __inet_dev_addr_type() does. Refused where the mirror is not exact (see
//! `check_addrtype` in compile/attach.rs: nexthop objects in the local table, VRF
//! devices with a device limit). Between a change of the table and the runtime's
//! rebuild after its rtnetlink event, packets see the previous table.
//!
//! IPv6 (`match_type6()`): the mask's MULTICAST, UNICAST and UNSPEC bits each require
//! a class of ipv6_addr_type() (all of them, not one of them), which depends on the
//! address alone: enforced. LOCAL, ANYCAST and UNREACHABLE need a route lookup:
//! refused. (checkentry refuses the other types for IPv6.)
//!
//! For IPv6, `--limit-iface-in/out` only choose the device of the route lookups,
//! which no enforced class depends on.

use ipnet::Ipv6Net;
use netlink_proto::xt::Blob;
use nftshim_ebpf::ir::{Match, Test};
use nftshim_ebpf::residual::{AddrDev, AddrTypeOut, Insn, PayloadBase};

use super::super::residual::SCRATCH;
use super::{Decompiled, XtCx};
use crate::compile::Family;

const UNSPEC: u16 = 1 << 0;
const UNICAST: u16 = 1 << 1;
const LOCAL: u16 = 1 << 2;
const BROADCAST: u16 = 1 << 3;
const ANYCAST: u16 = 1 << 4;
const MULTICAST: u16 = 1 << 5;
const UNREACHABLE: u16 = 1 << 7;

/// The types inet_dev_addr_type() can answer.
const V4_POSSIBLE: u16 = UNICAST | LOCAL | BROADCAST | ANYCAST | MULTICAST;

const NAMES: [&str; 12] = [
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];

const XT_ADDRTYPE_INVERT_SOURCE: u32 = 0x1;
const XT_ADDRTYPE_INVERT_DEST: u32 = 0x2;
const XT_ADDRTYPE_LIMIT_IFACE_IN: u32 = 0x4;
const XT_ADDRTYPE_LIMIT_IFACE_OUT: u32 = 0x8;

/// `struct xt_addrtype_info` (revision 0, IPv4): source u16 @0, dest u16 @2,
/// invert_source u32 @4, invert_dest u32 @8. `struct xt_addrtype_info_v1`: source,
/// dest, flags u32 @4 (invert source 1, invert dest 2, limit-iface-in 4, -out 8).
pub fn addrtype(cx: &XtCx<'_>, rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    let (source, dest) = (b.u16(0), b.u16(2));
    // addrtype_mt_v0 xors a bool with the whole u32: only its low bit decides.
    let (invert_source, invert_dest) = if rev == 0 {
        (b.u32(4) & 1 != 0, b.u32(8) & 1 != 0)
    } else {
        let flags = b.u32(4);
        (
            flags & XT_ADDRTYPE_INVERT_SOURCE != 0,
            flags & XT_ADDRTYPE_INVERT_DEST != 0,
        )
    };
    // addrtype_mt_v1(): the input device wins (checkentry refuses both).
    let dev = match rev {
        0 => AddrDev::None,
        _ if b.u32(4) & XT_ADDRTYPE_LIMIT_IFACE_IN != 0 => AddrDev::In,
        _ if b.u32(4) & XT_ADDRTYPE_LIMIT_IFACE_OUT != 0 => AddrDev::Out,
        _ => AddrDev::None,
    };
    let mut matches = Vec::new();
    let mut insns = Vec::new();
    for (mask, invert, is_source) in [(source, invert_source, true), (dest, invert_dest, false)] {
        // An empty mask is not tested at all (`if (info->source)`).
        if mask == 0 {
            continue;
        }
        let option = if is_source {
            "--src-type"
        } else {
            "--dst-type"
        };
        let holds = match cx.family {
            Family::Ip if rev <= 1 => v4_type(mask, is_source, dev),
            Family::Ip6 if rev == 1 => v6_type(mask, option, is_source)?,
            _ => {
                return Err(format!(
                    "xt match addrtype (revision {rev}) is not supported in this family"
                ))
            }
        };
        match holds {
            // The type test is constant: with the inversion it holds or it does not.
            Class::Never if invert => {}
            Class::Never => return Ok(Decompiled::Never),
            Class::Always if invert => return Ok(Decompiled::Never),
            Class::Always => {}
            Class::Test(m) => matches.push(Match {
                test: m.test,
                negated: m.negated != invert,
            }),
            Class::Lookup(mut ops) => {
                if let Some(Insn::AddrType {
                    out: AddrTypeOut::Test { invert: i, .. },
                    ..
                }) = ops.last_mut()
                {
                    *i = invert;
                }
                insns.extend(ops);
            }
        }
    }
    Ok(match (matches.is_empty(), insns.is_empty()) {
        (true, true) => Decompiled::Always,
        (false, true) => Decompiled::Matches(matches),
        _ => Decompiled::Residual(matches, insns),
    })
}

/// What a mask's type test is, before its inversion.
enum Class {
    Never,
    Always,
    Test(Match),
    /// Residual operations: the address's load, then its type's test (not inverted).
    Lookup(Vec<Insn>),
}

fn names(mask: u16) -> String {
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

fn v4_type(mask: u16, is_source: bool, dev: AddrDev) -> Class {
    if mask & V4_POSSIBLE == 0 {
        return Class::Never;
    }
    if mask & V4_POSSIBLE == V4_POSSIBLE {
        return Class::Always;
    }
    Class::Lookup(vec![
        Insn::Payload {
            base: PayloadBase::Network,
            offset: if is_source { 12 } else { 16 },
            len: 4,
            dreg: SCRATCH,
        },
        Insn::AddrType {
            sreg: SCRATCH,
            dev,
            out: AddrTypeOut::Test {
                mask,
                invert: false,
            },
        },
    ])
}

fn net(s: &str) -> Ipv6Net {
    s.parse().expect("literal prefix")
}

fn v6_type(mask: u16, option: &str, is_source: bool) -> Result<Class, String> {
    if mask & (LOCAL | ANYCAST | UNREACHABLE) != 0 {
        return Err(format!(
            "xt match addrtype {option} {} is not supported by the eBPF data plane for \
             IPv6 (it needs a route lookup in the namespace's full routing tables, \
             which the data plane does not mirror)",
            names(mask & (LOCAL | ANYCAST | UNREACHABLE))
        ));
    }
    if mask & !(MULTICAST | UNICAST | UNSPEC) != 0 {
        // checkentry refuses these for IPv6; nothing to enforce.
        return Err(format!(
            "xt match addrtype {option} {} is not valid for IPv6",
            names(mask)
        ));
    }
    // ipv6_addr_type(): MULTICAST is ff00::/8; ANY (what UNSPEC needs) is ::; UNICAST
    // is every other address but the IPv4-mapped ::ffff:0:0/96. The three classes
    // are disjoint, so two or more of them are never all met.
    let (prefixes, negated) = match mask & (MULTICAST | UNICAST | UNSPEC) {
        0 => return Ok(Class::Always),
        MULTICAST => (vec![net("ff00::/8")], false),
        UNSPEC => (vec![net("::/128")], false),
        UNICAST => (
            vec![net("::/128"), net("::ffff:0:0/96"), net("ff00::/8")],
            true,
        ),
        _ => return Ok(Class::Never),
    };
    let test = if is_source {
        Test::Ip6Saddr(prefixes)
    } else {
        Test::Ip6Daddr(prefixes)
    };
    Ok(Class::Test(Match { test, negated }))
}

#[cfg(test)]
mod tests {
    use super::super::decompile_match;
    use super::super::tests::{cx, xt_match};
    use super::*;
    use crate::compile::Hook;

    fn decompile(family: Family, source: u16, dest: u16, flags: u32) -> Result<Decompiled, String> {
        let mut info = vec![0u8; 8];
        info[..2].copy_from_slice(&source.to_ne_bytes());
        info[2..4].copy_from_slice(&dest.to_ne_bytes());
        info[4..].copy_from_slice(&flags.to_ne_bytes());
        let cx = cx(family, Hook::Input, None);
        let m = xt_match("addrtype", 1, info);
        decompile_match(&cx, &m)
    }

    #[test]
    fn ipv4_impossible_types_never_match() {
        // UNSPEC and the error route types are never inet_dev_addr_type()'s answer.
        assert_eq!(decompile(Family::Ip, UNSPEC, 0, 0), Ok(Decompiled::Never));
        assert_eq!(decompile(Family::Ip, 0, 0xffc1, 0), Ok(Decompiled::Never));
        // Inverted, they hold; the other part still decides.
        assert_eq!(decompile(Family::Ip, UNSPEC, 0, 1), Ok(Decompiled::Always));
        assert_eq!(
            decompile(Family::Ip, UNSPEC, UNSPEC, 1),
            Ok(Decompiled::Never)
        );
        assert_eq!(
            decompile(Family::Ip, UNSPEC, UNSPEC, 3),
            Ok(Decompiled::Always)
        );
        assert_eq!(decompile(Family::Ip, 0, 0, 3), Ok(Decompiled::Always));
    }

    fn lookup(is_source: bool, dev: AddrDev, mask: u16, invert: bool) -> Vec<Insn> {
        vec![
            Insn::Payload {
                base: PayloadBase::Network,
                offset: if is_source { 12 } else { 16 },
                len: 4,
                dreg: SCRATCH,
            },
            Insn::AddrType {
                sreg: SCRATCH,
                dev,
                out: AddrTypeOut::Test { mask, invert },
            },
        ]
    }

    #[test]
    fn ipv4_routed_types_ask_the_local_table() {
        for mask in [UNICAST, LOCAL, BROADCAST, UNSPEC | LOCAL, !LOCAL] {
            assert_eq!(
                decompile(Family::Ip, mask, 0, 0),
                Ok(Decompiled::Residual(
                    vec![],
                    lookup(true, AddrDev::None, mask, false)
                ))
            );
        }
        // Both addresses, inverted destination, the input device's routes.
        let mut both = lookup(true, AddrDev::In, LOCAL, false);
        both.extend(lookup(false, AddrDev::In, ANYCAST, true));
        assert_eq!(
            decompile(Family::Ip, LOCAL, ANYCAST, 2 | 4),
            Ok(Decompiled::Residual(vec![], both))
        );
        assert_eq!(
            decompile(Family::Ip, 0, MULTICAST, 8),
            Ok(Decompiled::Residual(
                vec![],
                lookup(false, AddrDev::Out, MULTICAST, false)
            ))
        );
        // Every possible type: always.
        assert_eq!(
            decompile(Family::Ip, V4_POSSIBLE, 0, 0),
            Ok(Decompiled::Always)
        );
        assert_eq!(decompile(Family::Ip, 0, 0xffff, 2), Ok(Decompiled::Never));
    }

    #[test]
    fn ipv6_address_classes() {
        let m = |test, negated| Ok(Decompiled::Matches(vec![Match { test, negated }]));
        assert_eq!(
            decompile(Family::Ip6, UNSPEC, 0, 0),
            m(Test::Ip6Saddr(vec![net("::/128")]), false)
        );
        assert_eq!(
            decompile(Family::Ip6, 0, MULTICAST, 2),
            m(Test::Ip6Daddr(vec![net("ff00::/8")]), true)
        );
        let not_unicast = vec![net("::/128"), net("::ffff:0:0/96"), net("ff00::/8")];
        assert_eq!(
            decompile(Family::Ip6, UNICAST, 0, 0),
            m(Test::Ip6Saddr(not_unicast.clone()), true)
        );
        assert_eq!(
            decompile(Family::Ip6, UNICAST, 0, 1),
            m(Test::Ip6Saddr(not_unicast), false)
        );
        // Disjoint classes: never all met.
        assert_eq!(
            decompile(Family::Ip6, UNSPEC | MULTICAST, 0, 0),
            Ok(Decompiled::Never)
        );
        assert_eq!(
            decompile(Family::Ip6, UNICAST | MULTICAST, 0, 1),
            Ok(Decompiled::Always)
        );
    }

    #[test]
    fn ipv6_route_lookups_are_refused() {
        for mask in [LOCAL, ANYCAST, UNREACHABLE, UNSPEC | LOCAL] {
            assert!(decompile(Family::Ip6, mask, 0, 4).is_err());
        }
    }
}
