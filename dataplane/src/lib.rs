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

pub mod compile;
pub mod runtime;

pub use runtime::EbpfDataplane;
