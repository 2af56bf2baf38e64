//! `nftshim`: run a program with its nf_tables netlink served by nftshimd
//! (`nftshim exec -- nft list ruleset`), or ask the daemon how it is doing
//! (`nftshim status`).

mod exec;
mod status;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nftshim",
    version,
    about = "Serve nft / iptables-nft from nftshimd instead of the kernel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD with libnftshim_preload.so loaded, so its NETLINK_NETFILTER sockets go to
    /// nftshimd. Exits with CMD's status.
    Exec {
        /// nftshimd's socket (default: $NFTSHIM_SOCKET, else /run/nftshim/nftshim.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
    /// Show the daemon's data plane, namespaces and generations.
    Status {
        /// nftshimd's socket (default: $NFTSHIM_SOCKET, else /run/nftshim/nftshim.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Print the daemon's JSON as it is.
        #[arg(long)]
        json: bool,
    },
}

/// `--socket`, else $NFTSHIM_SOCKET, else the default path.
fn daemon_socket(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(nftshim_ipc::ENV_SOCKET)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(nftshim_ipc::DEFAULT_SOCKET))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Exec { socket, command } => exec::run(&daemon_socket(socket), &command),
        Command::Status { socket, json } => status::run(&daemon_socket(socket), json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nftshim: {e:#}");
            ExitCode::from(1)
        }
    }
}
