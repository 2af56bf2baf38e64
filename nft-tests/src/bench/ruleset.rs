//! The benchmark's rulesets: N "realistic" rules (address prefixes of both families,
//! ports, port ranges, protocols, input interfaces) in one input chain with policy
//! accept, none of which matches the measured traffic, so that its packets traverse
//! all N rules and the policy lets them through.
//!
//! The measured traffic is UDP from [`TRAFFIC_SRC`] to [`TRAFFIC_DST`] port
//! [`TRAFFIC_DPORT`], source ports [`TRAFFIC_SPORTS`]; the generator keeps every rule
//! away from it (prefixes outside 10.9.0.0/16, ports from [`RULE_PORT_BASE`] up).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

pub const TABLE: &str = "bench";
pub const CHAIN: &str = "input";
/// The receiving interface (in the receiver namespace).
pub const RX_IF: &str = "brx0";
pub const TRAFFIC_SRC: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
pub const TRAFFIC_DST: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
pub const TRAFFIC_DPORT: u16 = 9000;
/// Source ports of the measured flows (one flow each).
pub const TRAFFIC_SPORTS: std::ops::RangeInclusive<u16> = 10000..=10007;
/// Rules test ports from here up, far from the measured ones.
pub const RULE_PORT_BASE: u16 = 20000;
const RULE_PORT_SPAN: usize = 40000;

/// One generated rule, kept structured so that a packet matching it can be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `ip saddr NET/24 tcp dport PORT drop`
    SaddrTcp { net: Ipv4Addr, dport: u16 },
    /// `ip daddr ADDR udp dport PORT accept`
    DaddrUdp { addr: Ipv4Addr, dport: u16 },
    /// `iifname RX_IF udp dport PORT drop`
    IifUdp { dport: u16 },
    /// `ip6 saddr 2001:db8:A:B::/64 tcp dport PORT accept`
    Saddr6Tcp { a: u16, b: u16, dport: u16 },
    /// `ip saddr NET/16 ip daddr 192.168.B.0/24 udp sport 1024-65535 udp dport PORT drop`
    FiveFieldUdp { src: Ipv4Addr, b: u8, dport: u16 },
    /// `meta l4proto tcp tcp sport PORT tcp dport 1-1023 accept`
    TcpSportRange { sport: u16 },
}

impl Rule {
    /// Rule number `i`: the kinds take turns, the values vary with `i`.
    pub fn nth(i: usize) -> Rule {
        let port = RULE_PORT_BASE + (i % RULE_PORT_SPAN) as u16;
        // 10.128.0.0/9 holds 32,768 distinct /24s: far from the traffic's 10.9.0.0/16.
        let hi = 128 + ((i / 256) % 128) as u8;
        let lo = (i % 256) as u8;
        match i % 6 {
            0 => Rule::SaddrTcp {
                net: Ipv4Addr::new(10, hi, lo, 0),
                dport: port,
            },
            1 => Rule::DaddrUdp {
                addr: Ipv4Addr::new(172, 16 + (i / 65536 % 16) as u8, hi, lo),
                dport: port,
            },
            2 => Rule::IifUdp { dport: port },
            3 => Rule::Saddr6Tcp {
                a: (i / 65536) as u16,
                b: (i % 65536) as u16,
                dport: port,
            },
            4 => Rule::FiveFieldUdp {
                src: Ipv4Addr::new(10, hi, 0, 0),
                b: lo,
                dport: port,
            },
            _ => Rule::TcpSportRange { sport: port },
        }
    }

    /// The rule in nft syntax (without table and chain).
    pub fn to_nft(&self) -> String {
        match self {
            Rule::SaddrTcp { net, dport } => format!("ip saddr {net}/24 tcp dport {dport} drop"),
            Rule::DaddrUdp { addr, dport } => format!("ip daddr {addr} udp dport {dport} accept"),
            Rule::IifUdp { dport } => format!("iifname \"{RX_IF}\" udp dport {dport} drop"),
            Rule::Saddr6Tcp { a, b, dport } => {
                format!("ip6 saddr 2001:db8:{a:x}:{b:x}::/64 tcp dport {dport} accept")
            }
            Rule::FiveFieldUdp { src, b, dport } => format!(
                "ip saddr {src}/16 ip daddr 192.168.{b}.0/24 udp sport 1024-65535 udp dport {dport} drop"
            ),
            Rule::TcpSportRange { sport } => {
                format!("meta l4proto tcp tcp sport {sport} tcp dport 1-1023 accept")
            }
        }
    }

    /// An IPv4 UDP or TCP packet (src, dst, tcp?, sport, dport) this rule matches when
    /// it arrives on [`RX_IF`], or `None` for the IPv6 rule.
    pub fn matching_packet(&self) -> Option<Packet> {
        let dst = TRAFFIC_DST;
        Some(match *self {
            Rule::SaddrTcp { net, dport } => Packet::tcp(bump(net), dst, 40000, dport),
            Rule::DaddrUdp { addr, dport } => Packet::udp(TRAFFIC_SRC, addr, 40000, dport),
            Rule::IifUdp { dport } => Packet::udp(TRAFFIC_SRC, dst, 40000, dport),
            Rule::Saddr6Tcp { .. } => return None,
            Rule::FiveFieldUdp { src, b, dport } => {
                Packet::udp(bump(src), Ipv4Addr::new(192, 168, b, 7), 40000, dport)
            }
            Rule::TcpSportRange { sport } => Packet::tcp(TRAFFIC_SRC, dst, sport, 80),
        })
    }
}

/// An address inside the prefix starting at `net`.
fn bump(net: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net) | 7)
}

/// The fields of an IPv4 test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub tcp: bool,
    pub sport: u16,
    pub dport: u16,
}

impl Packet {
    pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Packet {
        Packet {
            src,
            dst,
            tcp: false,
            sport,
            dport,
        }
    }

    pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Packet {
        Packet {
            tcp: true,
            ..Packet::udp(src, dst, sport, dport)
        }
    }

    /// A packet of the measured traffic (matches no rule).
    pub fn traffic(flow: u16) -> Packet {
        Packet::udp(
            TRAFFIC_SRC,
            TRAFFIC_DST,
            TRAFFIC_SPORTS.start() + flow,
            TRAFFIC_DPORT,
        )
    }

    /// The packet as an Ethernet frame with an 18-byte payload (UDP: 60 bytes, 64 on the
    /// wire with the FCS).
    pub fn frame(&self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(
            self.src.octets(),
            self.dst.octets(),
            64,
        );
        let mut out = Vec::new();
        let payload = [0u8; 18];
        let written = if self.tcp {
            b.tcp(self.sport, self.dport, 1, 64000)
                .syn()
                .write(&mut out, &payload)
        } else {
            b.udp(self.sport, self.dport).write(&mut out, &payload)
        };
        // Writing into a Vec cannot fail for these sizes.
        written.expect("packet fits");
        out
    }
}

/// Options of a generated ruleset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Number of generated rules.
    pub rules: usize,
    /// Put `ct state established,related accept` first (one more rule).
    pub conntrack: bool,
}

/// The whole ruleset for `nft -f`.
pub fn render(spec: Spec) -> String {
    let mut s = String::with_capacity(spec.rules * 64 + 256);
    let _ = writeln!(s, "table inet {TABLE} {{");
    let _ = writeln!(s, "\tchain {CHAIN} {{");
    let _ = writeln!(s, "\t\ttype filter hook input priority 0; policy accept;");
    if spec.conntrack {
        let _ = writeln!(s, "\t\tct state established,related accept");
    }
    for i in 0..spec.rules {
        let _ = writeln!(s, "\t\t{}", Rule::nth(i).to_nft());
    }
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    s
}

/// The rule that the "time until a rule takes effect" measurement adds: it drops the
/// measured traffic.
pub fn traffic_drop_rule() -> String {
    format!("ip saddr {TRAFFIC_SRC} udp dport {TRAFFIC_DPORT} drop")
}

/// The rule that the add/delete latency measurement adds and deletes again: it matches
/// nothing the benchmark sends.
pub fn probe_rule() -> String {
    "ip saddr 203.0.113.7 tcp dport 4444 drop".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Does `rule` match packet `p` arriving on RX_IF (IPv4 only)? A small model of
    /// the generated rules, to check the generator keeps away from the traffic.
    fn matches(rule: &Rule, p: &Packet) -> bool {
        let in_prefix = |net: Ipv4Addr, len: u32, a: Ipv4Addr| {
            let mask = u32::MAX << (32 - len);
            u32::from(net) & mask == u32::from(a) & mask
        };
        match *rule {
            Rule::SaddrTcp { net, dport } => p.tcp && in_prefix(net, 24, p.src) && p.dport == dport,
            Rule::DaddrUdp { addr, dport } => !p.tcp && p.dst == addr && p.dport == dport,
            Rule::IifUdp { dport } => !p.tcp && p.dport == dport,
            Rule::Saddr6Tcp { .. } => false,
            Rule::FiveFieldUdp { src, b, dport } => {
                !p.tcp
                    && in_prefix(src, 16, p.src)
                    && in_prefix(Ipv4Addr::new(192, 168, b, 0), 24, p.dst)
                    && p.sport >= 1024
                    && p.dport == dport
            }
            Rule::TcpSportRange { sport } => {
                p.tcp && p.sport == sport && (1..=1023).contains(&p.dport)
            }
        }
    }

    #[test]
    fn no_rule_matches_the_measured_traffic() {
        for i in 0..60_000 {
            let rule = Rule::nth(i);
            for flow in 0..8 {
                assert!(
                    !matches(&rule, &Packet::traffic(flow)),
                    "rule {i} `{}` matches flow {flow}",
                    rule.to_nft()
                );
            }
        }
    }

    #[test]
    fn matching_packets_match_their_rule() {
        for i in 0..600 {
            let rule = Rule::nth(i);
            if let Some(p) = rule.matching_packet() {
                assert!(matches(&rule, &p), "rule {i} `{}` vs {p:?}", rule.to_nft());
            }
        }
    }

    #[test]
    fn every_kind_appears_and_values_vary() {
        let rules: Vec<String> = (0..12).map(|i| Rule::nth(i).to_nft()).collect();
        assert!(rules[0].starts_with("ip saddr 10.128.0.0/24 tcp dport 20000"));
        assert!(rules[2].starts_with("iifname \"brx0\" udp dport 20002"));
        assert!(rules[3].starts_with("ip6 saddr 2001:db8:0:3::/64"));
        assert!(rules[5].contains("tcp sport 20005 tcp dport 1-1023"));
        assert_ne!(rules[0], rules[6]);
    }

    #[test]
    fn render_counts_rules_and_ends_in_policy_accept() {
        let text = render(Spec {
            rules: 7,
            conntrack: true,
        });
        assert!(text.contains("policy accept;"));
        assert_eq!(
            text.matches(" drop\n").count() + text.matches(" accept\n").count(),
            8
        );
        assert!(text.contains("ct state established,related accept"));
        let plain = render(Spec {
            rules: 0,
            conntrack: false,
        });
        assert!(!plain.contains("ct state"));
    }

    #[test]
    fn traffic_frames_are_64_bytes() {
        let f = Packet::traffic(0).frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.len(), 14 + 20 + 8 + 18);
    }
}
