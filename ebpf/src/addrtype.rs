//! The type of an IPv4 address as the kernel's inet_dev_addr_type() and
//! inet_addr_type() answer it (net/ipv4/fib_frontend.c, `__inet_dev_addr_type()`),
//! which xt_addrtype and nft_fib's `type` ask: BROADCAST for 0.0.0.0/8 and
//! 255.255.255.255, MULTICAST for 224.0.0.0/4, else the type of the route
//! fib_table_lookup() finds for the address in the local table (RT_TABLE_LOCAL), or
//! UNICAST when it finds none, when the route's type makes the lookup fail
//! (blackhole, unreachable, prohibit, throw), or when a device is given and is not the
//! device of the route's first nexthop.
//!
//! The runtime mirrors the local table into the shared `addrtype_v4` LPM trie
//! (bpf/lib/addrtype.h): per prefix, the answer of the first of its routes (in the
//! table's order) that the lookup takes ([`resolve`]). A prefix whose routes are all
//! skipped has no entry, so the trie's longest match is the prefix where
//! fib_table_lookup()'s backtracking ends.

/// The map's name in the BPF object.
pub const MAP: &str = "addrtype_v4";
/// Its `max_entries` (NS_ADDRTYPE_MAX).
pub const MAX_ENTRIES: usize = 16384;

pub const RTN_UNICAST: u8 = 1;
pub const RTN_LOCAL: u8 = 2;
pub const RTN_BROADCAST: u8 = 3;
pub const RTN_ANYCAST: u8 = 4;
pub const RTN_MULTICAST: u8 = 5;
pub const RTN_BLACKHOLE: u8 = 6;
pub const RTN_UNREACHABLE: u8 = 7;
pub const RTN_PROHIBIT: u8 = 8;
pub const RTN_THROW: u8 = 9;

/// What a lookup under `prefix` answers (an entry of the mirror).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub addr: [u8; 4],
    pub len: u8,
    /// RTN_*; UNICAST for a route whose lookup fails.
    pub rtype: u8,
    /// The device of the route's first nexthop (0: none).
    pub oif: u32,
}

/// One nexthop of a route, as the dump shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nexthop {
    pub oif: u32,
    /// fib_lookup_good_nhc(): not RTNH_F_DEAD, and not RTNH_F_LINKDOWN on a device
    /// with `ignore_routes_with_linkdown`.
    pub good: bool,
}

/// One route (fib_alias) of a prefix, in the table's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// The route's TOS (`fa_dscp`): a lookup with TOS 0 skips routes that have one.
    pub tos: u8,
    pub rtype: u8,
    /// fi->fib_flags has RTNH_F_DEAD.
    pub dead: bool,
    pub nexthops: Vec<Nexthop>,
}

/// What fib_table_lookup() answers for the prefix whose routes are `aliases` (in
/// order): `Some((type, first nexthop's device))`, or None when it skips them all and
/// backtracks to shorter prefixes.
pub fn resolve(aliases: &[Alias]) -> Option<(u8, u32)> {
    for a in aliases {
        if a.tos != 0 || a.dead {
            continue;
        }
        // fib_props[type].error: the lookup fails, __inet_dev_addr_type() answers
        // UNICAST whatever the device.
        if matches!(
            a.rtype,
            RTN_BLACKHOLE | RTN_UNREACHABLE | RTN_PROHIBIT | RTN_THROW
        ) {
            return Some((RTN_UNICAST, 0));
        }
        if a.nexthops.iter().any(|n| n.good) {
            return Some((a.rtype, a.nexthops.first().map_or(0, |n| n.oif)));
        }
    }
    None
}

/// `__inet_dev_addr_type(net, dev, addr, RT_TABLE_LOCAL)` on the mirror `table`
/// (`dev` 0: none).
pub fn addr_type(table: &[Route], dev: u32, addr: [u8; 4]) -> u8 {
    if addr[0] == 0 || addr == [255; 4] {
        return RTN_BROADCAST;
    }
    if addr[0] & 0xf0 == 0xe0 {
        return RTN_MULTICAST;
    }
    let a = u32::from_be_bytes(addr);
    let best = table
        .iter()
        .filter(|r| {
            let mask = if r.len == 0 {
                0
            } else {
                u32::MAX << (32 - r.len.min(32))
            };
            a & mask == u32::from_be_bytes(r.addr) & mask
        })
        .max_by_key(|r| r.len);
    match best {
        None => RTN_UNICAST,
        Some(r) if dev != 0 && dev != r.oif => RTN_UNICAST,
        Some(r) => r.rtype,
    }
}

/// The map's value (`struct ns_addrtype_route`): type, device.
pub fn value(r: &Route) -> [u32; 2] {
    [r.rtype as u32, r.oif]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nh(oif: u32, good: bool) -> Nexthop {
        Nexthop { oif, good }
    }

    fn alias(rtype: u8, nexthops: Vec<Nexthop>) -> Alias {
        Alias {
            tos: 0,
            rtype,
            dead: false,
            nexthops,
        }
    }

    #[test]
    fn the_first_route_taken_decides() {
        assert_eq!(
            resolve(&[alias(RTN_LOCAL, vec![nh(1, true)])]),
            Some((2, 1))
        );
        // TOS routes and dead ones are skipped; a route with no good nexthop too.
        let mut tos = alias(RTN_BROADCAST, vec![nh(3, true)]);
        tos.tos = 4;
        let mut dead = alias(RTN_BROADCAST, vec![nh(3, true)]);
        dead.dead = true;
        let down = alias(RTN_ANYCAST, vec![nh(5, false), nh(6, true)]);
        assert_eq!(resolve(&[tos.clone(), dead.clone(), down]), Some((4, 5)));
        assert_eq!(resolve(&[tos, dead]), None);
        // An error route answers UNICAST and ends the lookup.
        assert_eq!(
            resolve(&[
                alias(RTN_THROW, vec![]),
                alias(RTN_LOCAL, vec![nh(1, true)])
            ]),
            Some((RTN_UNICAST, 0))
        );
    }

    #[test]
    fn types_of_addresses() {
        let t = [
            Route {
                addr: [10, 0, 0, 0],
                len: 8,
                rtype: RTN_LOCAL,
                oif: 1,
            },
            Route {
                addr: [10, 1, 0, 255],
                len: 32,
                rtype: RTN_BROADCAST,
                oif: 2,
            },
        ];
        assert_eq!(addr_type(&t, 0, [10, 9, 9, 9]), RTN_LOCAL);
        assert_eq!(addr_type(&t, 1, [10, 9, 9, 9]), RTN_LOCAL);
        assert_eq!(addr_type(&t, 2, [10, 9, 9, 9]), RTN_UNICAST);
        assert_eq!(addr_type(&t, 0, [10, 1, 0, 255]), RTN_BROADCAST);
        assert_eq!(addr_type(&t, 0, [11, 0, 0, 1]), RTN_UNICAST);
        assert_eq!(addr_type(&t, 7, [0, 1, 2, 3]), RTN_BROADCAST);
        assert_eq!(addr_type(&t, 7, [255; 4]), RTN_BROADCAST);
        assert_eq!(addr_type(&t, 0, [239, 1, 1, 1]), RTN_MULTICAST);
    }
}
