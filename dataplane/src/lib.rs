//! nftshim's enforcing data plane: every committed ruleset of a network namespace is
//! decompiled into the eBPF rule IR of `nftshim-ebpf` and enforced by TC (TCX)
//! programs on every interface of that namespace.
//!
//! - [`compile`]: ruleset -> [`compile::Program`] (refusing what cannot be enforced
//!   exactly) -> one IR chain per interface and direction for the namespace's current
//!   interfaces and local addresses.
//! - [`runtime`]: [`EbpfDataplane`], the engine's [`nftshim_engine::Dataplane`] for one
//!   namespace: a worker thread inside the namespace loads, attaches and atomically
//!   replaces the programs, and follows links and local addresses over rtnetlink.

//!
//! Enforced: ip/ip6/inet filter (and route) base chains at prerouting, input,
//! forward, output, postrouting; netdev ingress/egress chains (meta matches only);
//! `ip/ip6 saddr/daddr` (prefixes, ranges, sets), `meta l4proto`/`ip protocol`,
//! `meta nfproto`, tcp/udp/udplite/sctp/dccp ports (values, ranges, `<`/`>`,
//! sets), icmp/icmpv6 type, `meta iif/oif/iifname/oifname/mark` (mark with a mask),
//! `!=` and negated lookups, constant named or anonymous sets, `counter`,
//! accept/drop, policies, several base chains per hook when no accept (theirs or of a
//! chain they jump to) can skip a later one; `jump` to regular chains, `goto` and
//! `return` inside regular chains; `meta mark set CONSTANT` (not in input chains: TC
//! sets it before routing; not in route chains: no re-routing); `counter name` and
//! base chain counters, read back by the worker ([`EbpfDataplane`]'s `take_counts`:
//! per program counter slot, summed over interfaces and kept across generations);
//! `reject` ([`compile::reject`]: where its answer takes the kernel's path); `log`
//! ([`runtime::logline`]: nf_log_syslog's line through the daemon's logger; not in
//! forward or netdev chains); `log group` and xt_NFLOG ([`compile::nflog`]: to
//! nfnetlink_log listeners through the daemon, at prerouting, input, output and postrouting). `ct state` is decompiled exactly but
//! refused when the programs are built: each interface and direction has its own
//! connection table, so replies would look new. Everything else is refused
//! (EOPNOTSUPP; the reason is logged): other expressions (other ct keys, limit, quota,
//! nat, mangling...),
//! `goto`/`return` in base chains, maps, dynamic or timeout sets, link-layer and other
//! header fields, inet ingress, arp forward, bridge constructs [`compile::bridge`] does
//! not map, chains an accept would skip, ties of priority whose order matters.
//!
//! Known differences: counters in netdev ingress chains count a frame's bytes from
//! its network header for IP packets (as the kernel, for untagged frames without
//! padding) but from its link-layer header for other frames (the kernel: 14 bytes
//! less); the kernel rate-limits the ICMP errors `reject` sends
//! (`icmp_ratelimit`), the programs do not; counts reach listings when they are asked
//! for (and before each batch), not continuously, so the state directory holds them as
//! of the last commit.
//!
//! Known difference: the kernel judges IPv4 input and all output/postrouting packets
//! before fragmentation or after reassembly, TC sees fragments. A later fragment has
//! no ports, so port-based accepts with a drop policy drop the later fragments of a
//! fragmented datagram that the kernel would deliver (never the other way round:
//! the first fragment carries the verdict fields). Needs fragment support in the eBPF
//! programs.

pub mod compile;
pub mod runtime;

pub use runtime::EbpfDataplane;
