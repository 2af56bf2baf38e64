//! Differential testing of nftshimd against the kernel: the `nft-conformance` runner's
//! pieces and the harness the integration tests use.

pub mod bench;
pub mod bins;
pub mod cleanup;
pub mod daemon;
pub mod differential;
pub mod harness;
pub mod iptables;
pub mod listing;
pub mod netns;
pub mod nft;
pub mod nftpy;
pub mod packets;
pub mod replay;
pub mod report;
pub mod suite;
