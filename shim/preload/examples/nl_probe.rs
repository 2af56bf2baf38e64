//! Exercises a NETLINK_NETFILTER socket through libc and prints what it observed, one
//! `key: value` line per fact. The integration tests run it against the kernel and under
//! the preload library against a fake daemon, and compare.
//!
//! Usage: nl_probe semantics | dup | nonblock-read | big BYTES | route | threads N | select

use std::mem::{size_of, zeroed};

use libc::{c_int, socklen_t};
use netlink_proto::consts::{NFNL_SUBSYS_NFTABLES, NFTA_GEN_ID, NFT_MSG_GETGEN, NFT_MSG_NEWTABLE};
use netlink_proto::extra::{NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};
use netlink_proto::message::split_datagram;
use netlink_proto::{NfGenMsg, NlMsg, NlmsgErr};

const NETLINK_NETFILTER: c_int = 12;

fn errname(e: i32) -> String {
    let known = [
        (libc::EINVAL, "EINVAL"),
        (libc::ENOPROTOOPT, "ENOPROTOOPT"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
        (libc::EFAULT, "EFAULT"),
        (libc::ENOENT, "ENOENT"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EBADF, "EBADF"),
    ];
    known
        .iter()
        .find(|(n, _)| *n == e)
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| format!("errno{e}"))
}

/// "ok N" or the errno's name.
fn res(r: isize) -> String {
    if r >= 0 {
        format!("ok {r}")
    } else {
        errname(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

fn say(key: &str, value: impl std::fmt::Display) {
    println!("{key}: {value}");
}

fn nl_socket(ty: c_int) -> c_int {
    let fd = unsafe { libc::socket(libc::AF_NETLINK, ty, NETLINK_NETFILTER) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    fd
}

fn getgen(seq: u32, flags: u16) -> Vec<u8> {
    NlMsg::nf(
        (u16::from(NFNL_SUBSYS_NFTABLES) << 8) | NFT_MSG_GETGEN,
        NLM_F_REQUEST | flags,
        seq,
        0,
        NfGenMsg::new(0, 0),
        &[],
    )
    .to_bytes()
}

fn int_opt(fd: c_int, level: c_int, name: c_int, room: socklen_t) -> String {
    let mut buf = [0u8; 16];
    let mut len = room;
    let r = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        return res(-1);
    }
    let shown = (len as usize).min(room as usize).min(buf.len());
    format!("len {len} bytes {:02x?}", &buf[..shown])
}

fn set_int(fd: c_int, level: c_int, name: c_int, v: c_int) -> String {
    res(unsafe { libc::setsockopt(fd, level, name, (&v as *const c_int).cast(), 4) } as isize)
}

fn name_of(fd: c_int, peer: bool) -> String {
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_nl>() as socklen_t + 4;
    let p = (&mut sa as *mut libc::sockaddr_nl).cast();
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if r < 0 {
        return res(-1);
    }
    format!(
        "len {len} family {} pid_nonzero {} groups {:#x}",
        sa.nl_family,
        sa.nl_pid != 0,
        sa.nl_groups
    )
}

fn port_of(fd: c_int) -> u32 {
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_nl>() as socklen_t;
    unsafe { libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_nl).cast(), &mut len) };
    sa.nl_pid
}

fn send_to_kernel(fd: c_int, bytes: &[u8]) -> isize {
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    unsafe {
        libc::sendto(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    }
}

fn readable_now(fd: c_int) -> bool {
    // nft's mnl_batch_talk: select() with a zero timeout.
    unsafe {
        let mut set: libc::fd_set = zeroed();
        libc::FD_ZERO(&mut set);
        libc::FD_SET(fd, &mut set);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        libc::select(
            fd + 1,
            &mut set,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        ) > 0
    }
}

fn recv_all(fd: c_int, flags: c_int) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 65536];
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        return Err(res(-1));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn semantics() {
    let fd = nl_socket(libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    say(
        "nonblock",
        unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_NONBLOCK != 0,
    );
    say(
        "cloexec",
        unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0,
    );
    say(
        "so_protocol",
        int_opt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL, 4),
    );
    say(
        "so_domain",
        int_opt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, 4),
    );
    say("so_type", int_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE, 4));
    say(
        "so_type_short",
        int_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE, 2),
    );
    let dgram = nl_socket(libc::SOCK_DGRAM);
    say(
        "dgram_so_type",
        int_opt(dgram, libc::SOL_SOCKET, libc::SO_TYPE, 4),
    );
    say(
        "dgram_cloexec",
        unsafe { libc::fcntl(dgram, libc::F_GETFD) } & libc::FD_CLOEXEC != 0,
    );
    say(
        "dgram_nonblock",
        unsafe { libc::fcntl(dgram, libc::F_GETFL) } & libc::O_NONBLOCK != 0,
    );
    say("close_dgram", res(unsafe { libc::close(dgram) } as isize));
    say(
        "stream",
        res(
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_STREAM, NETLINK_NETFILTER) }
                as isize,
        ),
    );
    say("name_unbound", name_of(fd, false));
    say("peer_unbound", name_of(fd, true));
    for opt in 0..=13 {
        say(
            &format!("getsockopt_{opt}"),
            int_opt(fd, libc::SOL_NETLINK, opt, 4),
        );
    }
    say("set_ext_ack", set_int(fd, libc::SOL_NETLINK, 11, 1));
    say("get_ext_ack", int_opt(fd, libc::SOL_NETLINK, 11, 4));
    say("get_ext_ack_short", int_opt(fd, libc::SOL_NETLINK, 11, 2));
    say("get_ext_ack_long", int_opt(fd, libc::SOL_NETLINK, 11, 8));
    say("add_group_40", set_int(fd, libc::SOL_NETLINK, 1, 40));
    say("add_group_7", set_int(fd, libc::SOL_NETLINK, 1, 7));
    say("list_memberships", int_opt(fd, libc::SOL_NETLINK, 9, 8));
    say("name_with_group", name_of(fd, false));
    say("drop_group_7", set_int(fd, libc::SOL_NETLINK, 2, 7));
    say(
        "list_memberships_after_drop",
        int_opt(fd, libc::SOL_NETLINK, 9, 8),
    );
    say("set_level_tcp", set_int(fd, libc::IPPROTO_TCP, 1, 1));
    say("get_level_tcp", int_opt(fd, libc::IPPROTO_TCP, 1, 4));
    say(
        "set_unknown_netlink_opt",
        set_int(fd, libc::SOL_NETLINK, 99, 1),
    );
    say(
        "set_rcvbuf",
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 65536),
    );
    say(
        "get_rcvbuf",
        int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4),
    );
    say(
        "recv_empty_nonblocking",
        recv_all(fd, 0)
            .map(|v| v.len().to_string())
            .unwrap_or_else(|e| e),
    );
    say("readable_before_send", readable_now(fd));

    let req = getgen(7, 0);
    say("sendto_getgen", res(send_to_kernel(fd, &req)));
    say("name_after_send", name_of(fd, false));
    say("readable_after_send", readable_now(fd));
    let mut small = [0u8; 4];
    let full = unsafe {
        libc::recv(
            fd,
            small.as_mut_ptr().cast(),
            small.len(),
            libc::MSG_PEEK | libc::MSG_TRUNC,
        )
    };
    say("peek_trunc_reports_more_than_buffer", full > 4);
    // A truncated read through recvmsg: MSG_TRUNC in msg_flags, the rest of the message gone.
    let mut buf = [0u8; 10];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_name = (&mut sa as *mut libc::sockaddr_nl).cast();
    msg.msg_namelen = 64;
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    say("recvmsg_truncated", res(n));
    say("recvmsg_flags_trunc", msg.msg_flags & libc::MSG_TRUNC != 0);
    say(
        "recvmsg_name",
        format!(
            "len {} family {} pid {} groups {}",
            msg.msg_namelen, sa.nl_family, sa.nl_pid, sa.nl_groups
        ),
    );
    say("readable_after_read", readable_now(fd));

    say(
        "send_getgen_again",
        res(unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) }),
    );
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    let mut salen = 12 as socklen_t;
    let mut big = vec![0u8; 65536];
    let n = unsafe {
        libc::recvfrom(
            fd,
            big.as_mut_ptr().cast(),
            big.len(),
            0,
            (&mut sa as *mut libc::sockaddr_nl).cast(),
            &mut salen,
        )
    };
    say(
        "recvfrom_name",
        format!(
            "len {salen} family {} pid {} groups {}",
            sa.nl_family, sa.nl_pid, sa.nl_groups
        ),
    );
    big.truncate(n.max(0) as usize);
    let (msgs, _) = split_datagram(&big);
    let port = port_of(fd);
    for m in &msgs {
        say(
            "reply_type",
            format!(
                "{:#06x} flags {:#x} seq {}",
                m.msg_type(),
                m.flags(),
                m.seq()
            ),
        );
        say("reply_pid_is_socket_port", m.header.port_number == port);
        say("reply_res_id", m.nfgen().map(|g| g.res_id).unwrap_or(0));
        say(
            "reply_gen_id",
            m.nf_attrs()
                .0
                .iter()
                .find(|a| a.id() == NFTA_GEN_ID)
                .and_then(|a| a.as_u32_be())
                .unwrap_or(0),
        );
    }

    let mut to_peer: libc::sockaddr_nl = unsafe { zeroed() };
    to_peer.nl_family = libc::AF_NETLINK as u16;
    to_peer.nl_pid = 4242;
    let r = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&to_peer as *const libc::sockaddr_nl).cast(),
            12,
        )
    };
    say("sendto_other_port", res(r));
    let r = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&to_peer as *const libc::sockaddr_nl).cast(),
            8,
        )
    };
    say("sendto_short_address", res(r));
    let mut to_kernel = to_peer;
    to_kernel.nl_pid = 0;
    say(
        "connect_kernel",
        res(
            unsafe { libc::connect(fd, (&to_kernel as *const libc::sockaddr_nl).cast(), 12) }
                as isize,
        ),
    );
    say("peer_after_connect", name_of(fd, true));
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as u16,
        sa_data: [0; 14],
    };
    say(
        "connect_unspec",
        res(unsafe { libc::connect(fd, &unspec, size_of::<libc::sockaddr>() as u32) } as isize),
    );

    let copy = unsafe { libc::dup(fd) };
    say(
        "dup_so_protocol",
        int_opt(copy, libc::SOL_SOCKET, libc::SO_PROTOCOL, 4),
    );
    say("close_dup", res(unsafe { libc::close(copy) } as isize));
    say("close", res(unsafe { libc::close(fd) } as isize));
    say("close_again", res(unsafe { libc::close(fd) } as isize));

    // iptables-nft's way: a blocking, bound socket; write/read work too.
    let b = nl_socket(libc::SOCK_RAW);
    let mut me: libc::sockaddr_nl = unsafe { zeroed() };
    me.nl_family = libc::AF_NETLINK as u16;
    say(
        "bind_zero",
        res(unsafe { libc::bind(b, (&me as *const libc::sockaddr_nl).cast(), 12) } as isize),
    );
    say("bound_name", name_of(b, false));
    say(
        "bind_short",
        res(unsafe { libc::bind(b, (&me as *const libc::sockaddr_nl).cast(), 6) } as isize),
    );
    let req = getgen(0, NLM_F_ACK);
    say(
        "write_getgen_ack",
        res(unsafe { libc::write(b, req.as_ptr().cast(), req.len()) }),
    );
    let mut types = Vec::new();
    for _ in 0..2 {
        let mut buf = vec![0u8; 8192];
        let n = unsafe { libc::read(b, buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(n.max(0) as usize);
        types.extend(
            split_datagram(&buf)
                .0
                .iter()
                .map(|m| format!("{:#06x}", m.msg_type())),
        );
    }
    say("read_types", types.join(" "));
    say("close_bound", res(unsafe { libc::close(b) } as isize));
}

fn dup_and_close() {
    let fd = nl_socket(libc::SOCK_RAW);
    let copy = unsafe { libc::dup(fd) };
    let req = getgen(1, 0);
    say(
        "send_on_dup",
        res(unsafe { libc::send(copy, req.as_ptr().cast(), req.len(), 0) }),
    );
    say(
        "recv_on_original",
        recv_all(fd, 0).map(|v| !v.is_empty()).unwrap_or(false),
    );
    say("close_original", res(unsafe { libc::close(fd) } as isize));
    say(
        "send_after_original_closed",
        res(unsafe { libc::send(copy, req.as_ptr().cast(), req.len(), 0) }),
    );
    say(
        "recv_on_dup",
        recv_all(copy, 0).map(|v| !v.is_empty()).unwrap_or(false),
    );
    let high = unsafe { libc::fcntl(copy, libc::F_DUPFD_CLOEXEC, 100) };
    say(
        "fcntl_dupfd_so_protocol",
        int_opt(high, libc::SOL_SOCKET, libc::SO_PROTOCOL, 4),
    );
    let target = unsafe { libc::dup2(high, 50) };
    say(
        "dup2_so_protocol",
        int_opt(target, libc::SOL_SOCKET, libc::SO_PROTOCOL, 4),
    );
    say(
        "close_copies",
        res((unsafe { libc::close(copy) + libc::close(high) }) as isize),
    );
    // An ordinary fd dup2'd over the last copy replaces it: that copy is gone.
    let pipe_fd = {
        let mut p = [0; 2];
        unsafe { libc::pipe(p.as_mut_ptr()) };
        p[0]
    };
    unsafe { libc::dup2(pipe_fd, target) };
    say(
        "dup2_over_so_protocol",
        int_opt(target, libc::SOL_SOCKET, libc::SO_PROTOCOL, 4),
    );
    // Keep running a moment so the test can see the control connection closed.
    std::thread::sleep(std::time::Duration::from_millis(300));
}

fn nonblock_read() {
    let fd = nl_socket(libc::SOCK_RAW | libc::SOCK_NONBLOCK);
    let req = getgen(3, 0);
    say(
        "send",
        res(unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) }),
    );
    let describe = |r: Result<Vec<u8>, String>| match r {
        Ok(v) => split_datagram(&v)
            .0
            .iter()
            .map(|m| format!("type {:#06x} seq {}", m.msg_type(), m.seq()))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => e,
    };
    say("first_read", describe(recv_all(fd, 0)));
    say("second_read", describe(recv_all(fd, 0)));
}

fn big(size: usize) {
    let fd = nl_socket(libc::SOCK_RAW);
    let payload = vec![0x5au8; size - 16 - 4];
    let mut p = NfGenMsg::new(2, 0).to_bytes().to_vec();
    p.extend_from_slice(&payload);
    let m = NlMsg::new(
        (u16::from(NFNL_SUBSYS_NFTABLES) << 8) | NFT_MSG_NEWTABLE,
        NLM_F_REQUEST | NLM_F_ACK,
        99,
        0,
        p,
    )
    .to_bytes();
    say("sent", res(send_to_kernel(fd, &m)));
    let reply = recv_all(fd, 0).unwrap_or_default();
    for m in split_datagram(&reply).0 {
        if m.msg_type() == NLMSG_ERROR {
            let e = NlmsgErr::parse(&m).map(|e| e.error).unwrap_or(1);
            say("ack", format!("error {e} seq {}", m.seq()));
        }
    }
}

fn route() {
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) };
    say("route_socket", res(fd as isize));
    say(
        "route_so_protocol",
        int_opt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL, 4),
    );
}

fn threads(n: usize) {
    let workers: Vec<_> = (0..n)
        .map(|t| {
            std::thread::spawn(move || {
                let fd = nl_socket(libc::SOCK_RAW);
                let mut ok = 0;
                for i in 0..100u32 {
                    let seq = (t as u32) << 16 | i;
                    let req = getgen(seq, 0);
                    unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
                    let reply = recv_all(fd, 0).unwrap_or_default();
                    if split_datagram(&reply).0.first().map(|m| m.seq()) == Some(seq) {
                        ok += 1;
                    }
                }
                unsafe { libc::close(fd) };
                ok
            })
        })
        .collect();
    let ok: usize = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    say("matched_replies", ok);
}

fn select_pattern() {
    let fd = nl_socket(libc::SOCK_RAW | libc::SOCK_NONBLOCK);
    say("readable_before", readable_now(fd));
    let req = getgen(5, NLM_F_ACK);
    say(
        "send",
        res(unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) }),
    );
    let mut records = 0;
    while readable_now(fd) {
        if recv_all(fd, 0).is_err() {
            break;
        }
        records += 1;
    }
    say("records_read_while_readable", records);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("semantics") => semantics(),
        Some("dup") => dup_and_close(),
        Some("nonblock-read") => nonblock_read(),
        Some("big") => big(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3 << 20)),
        Some("route") => route(),
        Some("threads") => threads(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4)),
        Some("select") => select_pattern(),
        _ => {
            eprintln!(
                "usage: nl_probe semantics|dup|nonblock-read|big BYTES|route|threads N|select"
            );
            std::process::exit(2);
        }
    }
}
