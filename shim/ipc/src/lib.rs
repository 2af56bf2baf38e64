//! The control protocol between the interposer and nftshimd.
//!
//! Transport: a `SOCK_SEQPACKET` Unix socket at a filesystem path ([`DEFAULT_SOCKET`],
//! overridden by `$NFTSHIM_SOCKET`); a path, not an abstract name, because abstract names
//! are per network namespace and clients live in many.
//!
//! One control connection per emulated netlink socket. The application holds one end of
//! a `socketpair(AF_UNIX, SOCK_SEQPACKET)` as its "netlink socket"; the other end is handed
//! to the daemon in [`Op::Hello`] with `SCM_RIGHTS`, and the daemon writes every netlink
//! reply and event record straight into it. So replies and multicast events reach the
//! application at any time, and `poll`/`select`/`O_NONBLOCK` behave natively.
//!
//! Every control record is one datagram: a fixed [`Frame`] header (op, status) followed by
//! the op's payload. Requests are answered in order with [`Op::Done`].
//!
//! | client → daemon | payload | fds | daemon's `Done.status` |
//! |---|---|---|---|
//! | `Hello` | [`Hello`] | app-socket far end, netns of the calling thread | port id, or -errno |
//! | `Request` | one `sendmsg` datagram of netlink messages (or its last part) | – | bytes consumed, or -errno |
//! | `RequestPart` | a leading part of a datagram too large for one record | – | 0, or -errno |
//! | `SetSockOpt` | [`SockOpt`] | – | 0 or -errno |
//! | `Bind` | [`Bind`] | – | port id, or -errno |
//! | `Sync` | – | – | 1 if more reply bytes were queued since, else 0 |
//! | `Status` (its own connection, no Hello) | – | – | 0; the `Done` payload is JSON |
//!
//! `Done` for a `Request` is sent only after every reply of that request has been written
//! into the application's socket or queued in the daemon (when the socket is full; the
//! daemon tops it up as the application reads). `Sync` lets a non-blocking reader that
//! got `EAGAIN` make sure nothing is still queued in the daemon.
//!
//! ## What the interposer (shim/preload) relies on
//! - `Hello` carries exactly two fds, in this order: the far end of the application's
//!   socketpair (a blocking `SOCK_SEQPACKET` socket; the daemon may make it non-blocking),
//!   and an `O_RDONLY` fd of the caller's `/proc/thread-self/ns/net`. `tid` is a thread
//!   id of the caller (its process is the thread group of that tid). `Done` is the port
//!   id, which must be non-zero and unique among the namespace's netlink sockets, or
//!   -errno; nothing else is sent on the connection before it.
//! - Every record written into the far end is one `send()` of one whole netlink record;
//!   every reply message carries that port id as `nlmsg_pid`, as the kernel's do.
//! - `Request`: `Done` comes after all replies are in the far end or queued; the status
//!   is the datagram's byte count (the interposer returns it from `sendmsg`) or -errno.
//!   The first `Request` autobinds the socket, as the kernel's first `sendmsg` does.
//! - `Bind`: `pid` 0 keeps the assigned port id; another pid is taken if free
//!   (-EADDRINUSE if not); a socket already bound (or autobound) to a different port id
//!   gets -EINVAL. The status is the port id.
//! - `SetSockOpt` (SOL_NETLINK): the daemon's status is the application's result, and on
//!   success the interposer mirrors the value for `getsockopt`/`getsockname`: the kernel
//!   answers ADD/DROP_MEMBERSHIP with -EINVAL for group 0 or above NFNLGRP_MAX (9),
//!   -ENOPROTOOPT for options it does not know, and 0 for the boolean options
//!   (PKTINFO 3, BROADCAST_ERROR 4, NO_ENOBUFS 5, LISTEN_ALL_NSID 8, CAP_ACK 10,
//!   EXT_ACK 11, GET_STRICT_CHK 12). A value shorter than 4 bytes reads as 0.
//! - `Sync`: deliver what is queued, then answer 1 if any record was written into the
//!   far end since the previous answer on this connection (this Sync included), else 0.
//!   The interposer then reads once more without blocking; a 0 makes the application
//!   see EAGAIN.
//! - End of the control connection (EOF) = the application closed its last copy of the
//!   socket: drop the session, its memberships and its queue.
//!
//! ## Large datagrams
//! A Unix datagram cannot be much larger than the sender's `SO_SNDBUF` (and never more than
//! about 4 MiB), but nft sends a whole batch as one `sendmsg`. So the interposer splits a
//! datagram larger than its record limit into `RequestPart` records followed by one
//! `Request` with the rest. The daemon appends each part to a per-connection buffer,
//! answers `Done(0)`, and handles the concatenation as ONE datagram when the `Request`
//! arrives (answering `Done` with the total byte count). The total is limited by
//! [`MAX_RECORD`]; past it the daemon answers `-EMSGSIZE` and drops the parts. Any other
//! op between parts drops them too.
//!
//! ## SetSockOpt
//! Forwarded: every `setsockopt(SOL_NETLINK, ...)` (the daemon's status is what the
//! application gets), and, after the interposer applied it to the application's end,
//! `SOL_SOCKET` `SO_RCVBUF` / `SO_RCVBUFFORCE` with the application's int value, so the
//! daemon can size the send buffer of its end (the status of those is ignored).
//!
//! ## Status
//! The `Done` payload of [`Op::Status`] is a JSON object, [`StatusReport`]:
//! `{"dataplane": "none", "enforcing": false, "namespaces": [{"inode": 4026531840,
//! "name": "ns1", "generation": 3, "tables": 2, "sockets": 1}]}`. Only `dataplane`,
//! `enforcing` and each namespace's `inode` and `generation` are required; the other
//! fields are optional and readers ignore fields they do not know.

/// Where nftshimd listens unless `$NFTSHIM_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/nftshim/nftshim.sock";
/// Environment variable naming the daemon's socket path.
pub const ENV_SOCKET: &str = "NFTSHIM_SOCKET";
/// Environment variable: `kernel` lets the interposer fall back to the real kernel
/// socket when the daemon is unreachable. Anything else (or unset) fails closed.
pub const ENV_FALLBACK: &str = "NFTSHIM_FALLBACK";
/// Protocol version sent in [`Hello`].
pub const VERSION: u32 = 1;
/// Largest control record (a netlink datagram plus the frame). nft sends batches in
/// datagrams of at most a few MiB; anything larger is refused with EMSGSIZE.
pub const MAX_RECORD: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    Hello = 1,
    Request = 2,
    SetSockOpt = 3,
    Bind = 4,
    Sync = 5,
    /// `nftshim status`: the daemon answers with one `Done` whose payload is JSON.
    Status = 6,
    /// A leading part of a large `Request` datagram (see "Large datagrams").
    RequestPart = 7,
    /// daemon → client: the answer to the previous client record.
    Done = 100,
}

impl Op {
    pub fn from_u32(v: u32) -> Option<Op> {
        Some(match v {
            1 => Op::Hello,
            2 => Op::Request,
            3 => Op::SetSockOpt,
            4 => Op::Bind,
            5 => Op::Sync,
            6 => Op::Status,
            7 => Op::RequestPart,
            100 => Op::Done,
            _ => return None,
        })
    }
}

/// Header of every control record: `op: u32`, `status: i64` (native endian; both ends
/// are on one machine). `status` is meaningful in `Done` only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub op: Op,
    pub status: i64,
}

impl Frame {
    pub const LEN: usize = 12;

    pub fn encode(self, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN + payload.len());
        v.extend_from_slice(&(self.op as u32).to_ne_bytes());
        v.extend_from_slice(&self.status.to_ne_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Splits a record into its frame and payload.
    pub fn decode(record: &[u8]) -> Option<(Frame, &[u8])> {
        let op = Op::from_u32(u32::from_ne_bytes(record.get(0..4)?.try_into().ok()?))?;
        let status = i64::from_ne_bytes(record.get(4..12)?.try_into().ok()?);
        Some((Frame { op, status }, &record[Self::LEN..]))
    }

    pub fn done(status: i64) -> Vec<u8> {
        Frame {
            op: Op::Done,
            status,
        }
        .encode(&[])
    }
}

/// Payload of [`Op::Hello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    /// Thread id of the caller of `socket()`: its network namespace is the socket's.
    pub tid: u32,
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.version.to_ne_bytes().to_vec();
        v.extend_from_slice(&self.tid.to_ne_bytes());
        v
    }
    pub fn decode(p: &[u8]) -> Option<Hello> {
        Some(Hello {
            version: u32::from_ne_bytes(p.get(0..4)?.try_into().ok()?),
            tid: u32::from_ne_bytes(p.get(4..8)?.try_into().ok()?),
        })
    }
}

/// Payload of [`Op::SetSockOpt`]: the application's `setsockopt` on its netlink socket,
/// for the options the daemon must know about (SOL_NETLINK ones, and the receive buffer
/// size, which the daemon mirrors as the send buffer of its end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

impl SockOpt {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.level.to_ne_bytes().to_vec();
        v.extend_from_slice(&self.name.to_ne_bytes());
        v.extend_from_slice(&self.value);
        v
    }
    pub fn decode(p: &[u8]) -> Option<SockOpt> {
        Some(SockOpt {
            level: i32::from_ne_bytes(p.get(0..4)?.try_into().ok()?),
            name: i32::from_ne_bytes(p.get(4..8)?.try_into().ok()?),
            value: p.get(8..)?.to_vec(),
        })
    }
}

/// Payload of [`Op::Bind`]: `sockaddr_nl.nl_pid` (0 = let the daemon pick) and
/// `nl_groups` (legacy group bitmask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind {
    pub pid: u32,
    pub groups: u32,
}

impl Bind {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.pid.to_ne_bytes().to_vec();
        v.extend_from_slice(&self.groups.to_ne_bytes());
        v
    }
    pub fn decode(p: &[u8]) -> Option<Bind> {
        Some(Bind {
            pid: u32::from_ne_bytes(p.get(0..4)?.try_into().ok()?),
            groups: u32::from_ne_bytes(p.get(4..8)?.try_into().ok()?),
        })
    }
}

/// The JSON answer to [`Op::Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// The data plane's short name (`Dataplane::name` in the engine).
    pub dataplane: String,
    /// Whether committed rulesets filter packets at all.
    pub enforcing: bool,
    #[serde(default)]
    pub namespaces: Vec<NamespaceStatus>,
    /// The daemon's process id and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One network namespace the daemon holds a ruleset for.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceStatus {
    /// Inode of the namespace (`stat -L /proc/PID/ns/net`), its identity.
    pub inode: u64,
    /// The namespace's cookie (SO_NETNS_COOKIE): unlike the inode, never reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<u64>,
    /// A name under /run/netns, when the daemon knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The current nf_tables generation id.
    pub generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u32>,
    /// Emulated netlink sockets currently open in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<u32>,
    /// The data plane's work for this namespace, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<DataplaneStatus>,
}

/// How the data plane has been keeping up with a namespace's commits.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataplaneStatus {
    /// eBPF programs attached now.
    pub programs: u64,
    /// Programs loaded (and verified) afresh.
    pub loads: u64,
    /// Programs that took a new ruleset by rewriting their maps in place.
    pub patches: u64,
    /// Map entries written (updated or deleted) so far: a commit costs the difference.
    pub map_writes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip() {
        let rec = Frame {
            op: Op::Request,
            status: 0,
        }
        .encode(b"abc");
        let (f, p) = Frame::decode(&rec).unwrap();
        assert_eq!(f.op, Op::Request);
        assert_eq!(p, b"abc");
        assert_eq!(Frame::decode(&Frame::done(-1)).unwrap().0.status, -1);
        assert!(Frame::decode(&[1, 2]).is_none());
        let h = Hello {
            version: VERSION,
            tid: 42,
        };
        assert_eq!(Hello::decode(&h.encode()), Some(h));
        let s = SockOpt {
            level: 270,
            name: 1,
            value: vec![7, 0, 0, 0],
        };
        assert_eq!(SockOpt::decode(&s.encode()), Some(s));
        let b = Bind { pid: 0, groups: 0 };
        assert_eq!(Bind::decode(&b.encode()), Some(b));
        assert_eq!(Op::from_u32(Op::RequestPart as u32), Some(Op::RequestPart));
    }

    #[test]
    fn status_report_reads_minimal_and_extended_json() {
        let r: StatusReport = serde_json::from_str(
            r#"{"dataplane":"none","enforcing":false,"namespaces":[{"inode":7,"generation":3,"future":1}]}"#,
        )
        .unwrap();
        assert_eq!(r.namespaces[0].inode, 7);
        assert_eq!(r.namespaces[0].generation, 3);
        assert_eq!(r.namespaces[0].name, None);
        let back: StatusReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
