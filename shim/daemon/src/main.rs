//! nftshimd: speaks the kernel's side of nf_tables netlink.

use clap::Parser;
use nftshimd::{Cli, Options, Server};
use tokio::signal::unix::{signal, SignalKind};

/// A commit at 10,000 rules builds and drops hundreds of thousands of small values
/// (decoded expressions, IR rules, map images); glibc's malloc spent about a third of
/// the daemon's time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "termination requested");
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nftshimd: bad --log-level {:?}: {e}", cli.log_level);
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nftshimd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let opts = Options {
        socket: cli.socket,
        state_dir: cli.state_dir,
        dataplane: cli.dataplane,
        limits: Default::default(),
    };
    let result = runtime.block_on(async {
        let server = Server::<nftshim_engine::Netns>::start(&opts)?;
        server.serve(termination()).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nftshimd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
