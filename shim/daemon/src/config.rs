//! Command line, and the choice of data plane.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use nftshim_engine::{Dataplane, NoDataplane};

use crate::namespace::DataplaneFactory;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataplaneKind {
    /// Store and list rules, enforce nothing (protocol testing only).
    None,
    /// Compile rulesets to eBPF and enforce them (not built yet).
    Ebpf,
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "nftshimd",
    version,
    about = "The kernel's side of nf_tables netlink, one ruleset per network namespace."
)]
pub struct Cli {
    /// Control socket (SOCK_SEQPACKET) the interposer connects to.
    #[arg(long, default_value = nftshim_ipc::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Where each namespace's ruleset is saved across daemon restarts.
    #[arg(long, default_value = "/var/lib/nftshim")]
    pub state_dir: PathBuf,
    /// Packet filtering back end.
    #[arg(long, value_enum, default_value_t = DataplaneKind::Ebpf)]
    pub dataplane: DataplaneKind,
    /// Log filter (tracing syntax: `info`, `debug`, `nftshimd=trace`, ...).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// The chosen data plane, as far as the rest of the daemon needs to know.
pub struct DataplaneChoice {
    pub name: &'static str,
    pub enforcing: bool,
    pub factory: DataplaneFactory,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneUnavailable {
    #[error(
        "--dataplane ebpf: the eBPF data plane is not built yet. nftshimd refuses to start \
         rather than run a firewall that enforces nothing. For protocol testing only, run \
         with --dataplane none (rules are stored and listed but NOT enforced)."
    )]
    EbpfNotBuilt,
}

pub fn choose_dataplane(kind: DataplaneKind) -> Result<DataplaneChoice, DataplaneUnavailable> {
    match kind {
        DataplaneKind::Ebpf => Err(DataplaneUnavailable::EbpfNotBuilt),
        DataplaneKind::None => {
            let probe = NoDataplane;
            Ok(DataplaneChoice {
                name: probe.name(),
                enforcing: probe.enforces(),
                factory: Box::new(|| Box::new(NoDataplane)),
            })
        }
    }
}
