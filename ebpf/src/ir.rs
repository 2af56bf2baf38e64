//! The rule IR: one nftables chain as an ordered list of rules, each a conjunction of
//! field predicates and an action. This is what the engine will hand the data plane;
//! [`crate::maps`] compiles it to LBVS maps and [`crate::reference`] evaluates it
//! directly (the oracle the BPF program is tested against).
//!
//! Semantics, chosen to match nf_tables:
//! - A [`Match`] holds when its field is present in the packet and
//!   `(value in the set) != negated`. A field that is absent makes the match fail even
//!   when negated, as nft's implicit dependencies do (`tcp dport != 22` implies
//!   `meta l4proto tcp`; `ip saddr` in an inet chain implies `meta nfproto ipv4`).
//! - Presence: `ip saddr/daddr` on IPv4 packets, `ip6 saddr/daddr` on IPv6 packets,
//!   `l4proto` on IP packets (later fragments too) unless an IPv6 extension header
//!   chain cannot be walked (see [`crate::fields::PacketFields::l4proto`]), ports on TCP, UDP, UDP-Lite,
//!   SCTP and DCCP packets whose transport header is there (not on later fragments),
//!   `icmp type` on IPv4 ICMP and `icmpv6 type` on IPv6 ICMPv6 with a header, and
//!   `iif`, `oif` and `mark` always (0 when there is no such device or mark). What a
//!   hook knows: XDP has iif only (no mark); TC ingress iif and mark; TC egress also
//!   oif (the device it is attached to) and, for forwarded packets, iif.
//! - VLAN tags in the frame are looked through: a tagged frame is classified by the
//!   packet inside.
//! - Rules are tried in order; the first whose matches all hold and whose action is a
//!   verdict decides; [`Action::Continue`] rules (no verdict, e.g. a bare `counter`) are
//!   counted and evaluation goes on. No rule decides: the chain's policy.

use ipnet::{Ipv4Net, Ipv6Net};

/// One chain, as the data plane enforces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Which packets the chain sees; the others pass untouched.
    pub scope: L3Scope,
    /// The verdict when no rule decides.
    pub policy: Verdict,
    pub rules: Vec<Rule>,
}

/// The packets a chain sees, from its table's family: `ip` sees IPv4, `ip6` IPv6,
/// `inet` both, `netdev` every frame (non-IP ones have only iif/oif/mark).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L3Scope {
    Ipv4,
    Ipv6,
    Inet,
    Netdev,
}

/// A final verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
}

/// What a rule does when all its matches hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Drop,
    /// No verdict: count the rule and go on with the next one.
    Continue,
    /// Representable, not executed yet: the map builder refuses chains that use them.
    Jump(String),
    Goto(String),
    Return,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// All must hold (an empty list matches every packet the chain sees).
    pub matches: Vec<Match>,
    pub action: Action,
}

/// One predicate: `test`, or its negation (`!=`). See the module doc for absent fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub test: Test,
    pub negated: bool,
}

impl Match {
    /// `field == value` / `field { set }`.
    pub fn is(test: Test) -> Self {
        Match {
            test,
            negated: false,
        }
    }

    /// `field != value` / `field != { set }`.
    pub fn not(test: Test) -> Self {
        Match {
            test,
            negated: true,
        }
    }
}

/// A field and the set of values the predicate accepts (one value is a set of one; an
/// empty set accepts nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    IpSaddr(Vec<Ipv4Net>),
    IpDaddr(Vec<Ipv4Net>),
    Ip6Saddr(Vec<Ipv6Net>),
    Ip6Daddr(Vec<Ipv6Net>),
    /// `meta l4proto`: the transport protocol after IPv6 extension headers.
    L4Proto(Vec<u8>),
    Sport(Vec<PortRange>),
    Dport(Vec<PortRange>),
    IcmpType(Vec<u8>),
    Icmpv6Type(Vec<u8>),
    /// Interface indexes (`meta iif` / `meta oif`).
    Iif(Vec<u32>),
    Oif(Vec<u32>),
    /// `meta mark & mask == value` for some value (mask `u32::MAX` for a plain
    /// `meta mark`). A ruleset may use at most two distinct masks.
    Mark {
        mask: u32,
        values: Vec<u32>,
    },
}

/// An inclusive port range; `first == last` is a single port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    pub fn new(first: u16, last: u16) -> Self {
        PortRange { first, last }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}
