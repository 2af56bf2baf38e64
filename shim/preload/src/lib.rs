//! `libnftshim_preload.so`: an LD_PRELOAD interposer that turns every
//! `socket(AF_NETLINK, *, NETLINK_NETFILTER)` into a socket served by nftshimd, and
//! leaves every other socket (NETLINK_ROUTE included) with the kernel.
//!
//! How an emulated socket works (the protocol is documented in `nftshim_ipc`):
//! - `socket()` makes a `socketpair(AF_UNIX, SOCK_SEQPACKET)`, keeps one end for the
//!   application (with its SOCK_NONBLOCK / SOCK_CLOEXEC), connects a control socket to
//!   `$NFTSHIM_SOCKET` and hands the daemon the other end plus the calling thread's
//!   network namespace (`Hello`). The daemon writes every reply and event into that end,
//!   so `poll`/`select`/`O_NONBLOCK`/`MSG_PEEK`/`MSG_TRUNC` behave natively.
//! - `sendmsg`/`sendto`/`send`/`write` forward the datagram (`Request`) and return only
//!   when the daemon says every reply is queued (`Done`), as the kernel does.
//! - `recvmsg`/`recvfrom`/`recv`/`read` read the application's end and report a 12-byte
//!   `sockaddr_nl` source; a non-blocking read that finds nothing asks the daemon (`Sync`)
//!   whether replies were still held back, and reads once more if so.
//! - `bind`/`connect`/`getsockname`/`getpeername`/`setsockopt`/`getsockopt` follow
//!   af_netlink.c; SOL_NETLINK options are decided by the daemon and mirrored here.
//! - `close`, `dup*`, `fcntl(F_DUPFD*)`, `close_range`, `closefrom` keep the fd table right.
//!
//! Not covered (gaps): after `fork()` parent and child share one control connection, and
//! concurrent use from both corrupts the exchange; an emulated fd inherited across
//! `exec()` is a plain Unix socket to the new program; setuid programs and static or raw
//! `syscall()` callers bypass LD_PRELOAD; `sendmmsg`/`recvmmsg`/`readv`/`writev` on an
//! emulated socket are not interposed; sending to another netlink port id gives
//! ECONNREFUSED; received messages always carry source `{nl_pid 0, nl_groups 0}`, also
//! for multicast events; an emulated socket used inside a signal handler may deadlock
//! (other fds are served lock-free).

// The hooks would interpose on the unit-test binary itself; tests cover the pure parts
// and the integration tests load the real library.
#![cfg_attr(test, allow(dead_code))]

mod config;
mod control;
mod diag;
mod emulated;
mod errno;
#[cfg(not(test))]
mod hooks;
mod io;
mod real;
mod registry;
mod sockaddr;
mod sockopt;

/// Runs when the library is loaded: resolve libc's functions before any signal handler
/// could be the first to need one (dlsym is not async-signal-safe).
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static RESOLVE_AT_LOAD: extern "C" fn() = resolve_at_load;

#[cfg(not(test))]
extern "C" fn resolve_at_load() {
    real::resolve_all();
}
