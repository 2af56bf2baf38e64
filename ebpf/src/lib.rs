//! nftshim's data plane: an nftables chain compiled into an LBVS (Linear Bit Vector
//! Search) eBPF classifier, run at XDP or TC.
//!
//! - [`ir`]: the chain as rules of field predicates (what the engine will produce).
//! - [`maps`]: compiles the IR into the maps' contents (pure Rust).
//! - [`loader`]: loads `bpf/nftshim.bpf.c` with aya, fills the maps, runs it.
//! - [`reference`]: the IR evaluated directly, the oracle for tests.
//! - [`simulate`]: the compiled maps evaluated in Rust the way the BPF program does.
//! - [`fields`]: the packet fields rules can test.

pub mod fields;
pub mod ir;
pub mod loader;
pub mod maps;
pub mod reference;
pub mod simulate;

pub use ipnet::{Ipv4Net, Ipv6Net};
