//! nftshim's data plane: an nftables chain compiled into an LBVS (Linear Bit Vector
//! Search) eBPF classifier, run at XDP or TC.
//!
//! - [`ir`]: the chain as rules of field predicates (what the engine will produce).
//! - [`maps`]: compiles the IR into the maps' contents (pure Rust).
//! - [`loader`]: loads `bpf/nftshim.bpf.c` with aya, fills the maps, runs it.
//! - [`reference`](mod@reference): the IR evaluated directly, the oracle for tests.
//! - [`simulate`]: the compiled maps evaluated in Rust the way the BPF program does.
//! - [`fields`]: the packet fields rules can test.
//!
//! The C side is `bpf/`: `lib/parse.h` (packet -> `struct pkt_ctx`), `lib/classify.h`
//! (LBVS maps and scan), `lib/actions.h` (rule actions, counters), and
//! `nftshim.bpf.c` (the XDP and TC entry points sharing them).
//!
//! Not done yet: executing jump/goto/return (the IR has them, [`maps::compile`]
//! refuses them; the scan can already resume "at or after rule k"), several chains or
//! hooks per program, connection tracking, sets/maps beyond anonymous sets, a per-flow
//! verdict cache, attaching to interfaces and atomic replacement on ruleset change.

pub mod fields;
pub mod ir;
pub mod loader;
pub mod maps;
pub mod reference;
pub mod simulate;

pub use ipnet::{Ipv4Net, Ipv6Net};
