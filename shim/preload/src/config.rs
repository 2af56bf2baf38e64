//! The environment that configures the interposer.

use std::os::unix::ffi::OsStrExt;

use nftshim_ipc::{DEFAULT_SOCKET, ENV_FALLBACK, ENV_SOCKET};

/// Path of nftshimd's socket: `$NFTSHIM_SOCKET`, else the default.
pub fn daemon_socket() -> Vec<u8> {
    match std::env::var_os(ENV_SOCKET) {
        Some(p) if !p.is_empty() => p.as_bytes().to_vec(),
        _ => DEFAULT_SOCKET.as_bytes().to_vec(),
    }
}

/// `NFTSHIM_FALLBACK=kernel`: an unreachable daemon means "use the kernel" rather than
/// failing closed.
pub fn fallback_to_kernel() -> bool {
    std::env::var_os(ENV_FALLBACK).is_some_and(|v| v == "kernel")
}
