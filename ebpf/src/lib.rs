//! nftshim's data plane: a hook's nftables chains compiled into an LBVS (Linear Bit
//! Vector Search) eBPF classifier, run at XDP or TC.
//!
//! - [`ir`]: the hook's program: base chains, regular chains, rules of field predicates
//!   (what the engine will produce).
//! - [`maps`]: compiles the IR into the maps' contents (pure Rust).
//! - [`loader`]: loads `bpf/nftshim.bpf.c` with aya, fills the maps, runs it.
//! - [`reference`](mod@reference): the IR evaluated directly, the oracle for tests.
//! - [`simulate`]: the compiled maps evaluated in Rust the way the BPF program does.
//! - [`fields`]: the packet fields rules can test.
//! - [`residual`]: per-rule programs for what LBVS does not index (other header
//!   bytes, masks, ranges, any-key lookups), run on LBVS's candidates only.
//! - [`conntrack`]: connection tracking as the data plane models it, in Rust (the
//!   reference's), and its timeouts.
//!
//! The C side is `bpf/`: `lib/parse.h` (packet -> `struct pkt_ctx`), `lib/lbvs.h`
//! (LBVS maps, lookups and the block scan), `lib/eval.h` (chains: base chains in order,
//! jump/goto/return, the bpf_loop driving it), `lib/conntrack.h` (connection tracking
//! in an LRU hash), `lib/stmts.h` (residual checks: ct status, sets, limit, quota;
//! statements: mark/ct mark set, log), `lib/residual.h` (the residual program
//! interpreter), `lib/sets.h` (named sets as LPM/hash maps),
//! `lib/log.h` (ring buffer events), `lib/reject.h` (TCP reset / ICMP unreachable
//! answers), `lib/actions.h` (counters, stats), and `nftshim.bpf.c` (the XDP and TC
//! entry points sharing them).
//!
//! Not done yet: sharing the connection table (and sets, buckets, quotas) between the
//! programs of different hooks (each load has its own maps: the daemon needs map
//! pinning or reuse); verdict maps, concatenated set keys and dynamic sets; NAT and the
//! other statements (queue, dup, fwd, notrack, named counter/quota/limit objects);
//! TCP window tracking and the SCTP/DCCP/GRE conntrack state machines; a per-flow
//! verdict cache beyond the conntrack fast path; attaching to interfaces and atomic
//! replacement on ruleset change (the `dataplane` crate's job).

pub mod addrtype;
pub mod conntrack;
pub mod fields;
pub mod image;
pub mod ir;
pub mod loader;
pub mod maps;
pub mod rateest;
pub mod recent;
pub mod reference;
pub mod residual;
pub mod rewrite;
pub mod shared;
pub mod simulate;

pub use ipnet::{Ipv4Net, Ipv6Net};
