//! Command line, and the choice of data plane.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use nftshim_engine::{Dataplane, NoDataplane};

use crate::namespace::DataplaneFactory;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataplaneKind {
    /// Store and list rules, enforce nothing (protocol testing only).
    None,
    /// Compile rulesets to eBPF (TCX programs on every interface of each namespace)
    /// and enforce them; rulesets it cannot enforce exactly are refused (EOPNOTSUPP).
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
        "--dataplane ebpf: cannot load the eBPF programs ({0}). nftshimd refuses to start \
         rather than run a firewall that enforces nothing (it needs root, or CAP_BPF and \
         CAP_NET_ADMIN, on a kernel with TCX). For protocol testing only, run with \
         --dataplane none (rules are stored and listed but NOT enforced)."
    )]
    EbpfUnavailable(String),
}

pub fn choose_dataplane(kind: DataplaneKind) -> Result<DataplaneChoice, DataplaneUnavailable> {
    match kind {
        DataplaneKind::Ebpf => {
            nftshim_dataplane::runtime::probe().map_err(DataplaneUnavailable::EbpfUnavailable)?;
            Ok(DataplaneChoice {
                name: "ebpf",
                enforcing: true,
                factory: Box::new(|id| {
                    Box::new(nftshim_dataplane::EbpfDataplane::new(
                        nftshim_dataplane::runtime::NetnsKey {
                            cookie: id.cookie,
                            inode: id.inode,
                        },
                    ))
                }),
            })
        }
        DataplaneKind::None => {
            let probe = NoDataplane;
            Ok(DataplaneChoice {
                name: probe.name(),
                enforcing: probe.enforces(),
                factory: Box::new(|_| Box::new(NoDataplane)),
            })
        }
    }
}
