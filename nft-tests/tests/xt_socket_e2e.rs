//! `-m socket` (xt_socket) kernel against nftshimd (eBPF data plane) with real sockets:
//! listeners and UDP sockets in `fw`, bound to fw's address or to the any address,
//! connections and datagrams from `peer`, rules in mangle PREROUTING and INPUT of both
//! families, and an ICMP error for a connected UDP socket of fw. Each case runs on
//! both sides in fresh namespaces; the outcomes must be equal. Needs root.
//!
//! What the cases show, as worked out from socket_match(): a SYN to a socket bound to
//! fw's address is dropped; to one bound to the any address it is not (a wildcard
//! socket), but the handshake's last ACK finds the request socket (not a full socket,
//! so never a wildcard) and is dropped: the client connects, the server accepts
//! nothing; `--nowildcard` drops the SYN; a closed port answers a reset.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::{run_client, Daemon};
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const RULES4: &str = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 7001:7003 -m socket -j DROP
-A PREROUTING -p tcp -m tcp --dport 7004 -m socket --nowildcard -j DROP
-A PREROUTING -p udp -m udp --dport 7101:7102 -m socket -j DROP
-A PREROUTING -p icmp -m socket -j DROP
-A INPUT -p tcp -m tcp --dport 7201:7203 -m socket -j DROP
-A INPUT -p udp -m udp --dport 7301 -m socket --nowildcard -j DROP
COMMIT
";

const RULES6: &str = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 7001:7003 -m socket -j DROP
-A PREROUTING -p tcp -m tcp --dport 7004 -m socket --nowildcard -j DROP
-A PREROUTING -p udp -m udp --dport 7101:7102 -m socket -j DROP
-A PREROUTING -p ipv6-icmp -m socket -j DROP
-A INPUT -m socket -j DROP
COMMIT
";

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}

fn restore(bins: &Binaries, daemon: Option<&Daemon>, fw: &Netns, tool: &str, rules: &str) {
    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    let out = run_client(fw, shim, tool, &[] as &[&str], Some(rules));
    assert!(out.success(), "{tool}: {}", out.stderr);
}

/// How a connection from peer ended, and whether fw's listener (if any) accepted it.
fn connect(peer: &Netns, to: SocketAddr, listener: Option<&TcpListener>) -> String {
    let r = in_netns(peer, || {
        TcpStream::connect_timeout(&to, Duration::from_millis(1500))
    });
    let client = match &r {
        Ok(_) => "connected",
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => "refused",
        Err(e) if e.kind() == ErrorKind::TimedOut => "timed out",
        Err(_) => "other error",
    };
    let accepted = listener.map(|l| {
        std::thread::sleep(Duration::from_millis(300));
        l.set_nonblocking(true).unwrap();
        l.accept().is_ok()
    });
    match accepted {
        Some(true) => format!("{client}, accepted"),
        Some(false) => format!("{client}, not accepted"),
        None => client.to_string(),
    }
}

/// Whether a datagram from peer reaches fw's socket.
fn datagram(peer: &Netns, to: SocketAddr, sock: &UdpSocket) -> &'static str {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    in_netns(peer, || UdpSocket::bind(any)?.send_to(b"probe", to)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    if sock.recv(&mut buf).is_ok() {
        "received"
    } else {
        "not received"
    }
}

/// A connected UDP socket of fw sends to a closed port of peer; peer's port
/// unreachable comes back unless a rule drops it.
fn icmp_error(fw: &Netns, from: &str, to: &str) -> &'static str {
    let (from, to): (SocketAddr, SocketAddr) = (from.parse().unwrap(), to.parse().unwrap());
    let sock = in_netns(fw, || {
        let s = UdpSocket::bind(from)?;
        s.connect(to)?;
        Ok(s)
    })
    .unwrap();
    sock.send(b"probe").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    match sock.recv(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => "port unreachable",
        Err(_) => "nothing",
        Ok(_) => "data",
    }
}

/// The outcomes of the cases on one side (`daemon`: through nftshimd).
fn run_side(bins: &Binaries, daemon: Option<&Daemon>) -> Vec<(String, String)> {
    let fw = Netns::create_unique("nftshim-xtsock", "fw").unwrap();
    let peer = Netns::create_unique("nftshim-xtsock", "peer").unwrap();
    nft_tests::netns::veth_pair((&fw, "f0", "10.9.0.1/24"), (&peer, "p0", "10.9.0.2/24")).unwrap();
    ip(&[
        "-n",
        fw.name(),
        "addr",
        "add",
        "fd09::1/64",
        "dev",
        "f0",
        "nodad",
    ]);
    ip(&[
        "-n",
        peer.name(),
        "addr",
        "add",
        "fd09::2/64",
        "dev",
        "p0",
        "nodad",
    ]);
    restore(bins, daemon, &fw, "iptables-nft-restore", RULES4);
    restore(bins, daemon, &fw, "ip6tables-nft-restore", RULES6);
    std::thread::sleep(Duration::from_millis(300));

    let mut out = Vec::new();
    for (fw_addr, any) in [("10.9.0.1", "0.0.0.0"), ("fd09::1", "::")] {
        let at = |a: &str, p: u16| -> SocketAddr {
            if a.contains(':') {
                format!("[{a}]:{p}").parse().unwrap()
            } else {
                format!("{a}:{p}").parse().unwrap()
            }
        };
        let v6only = |a: SocketAddr| in_netns(&fw, || tcp_listener(a)).unwrap();
        // TCP: bound to fw's address, to the any address, none; --nowildcard.
        for (base, hook) in [(7000, "prerouting"), (7200, "input")] {
            let bound = v6only(at(fw_addr, base + 1));
            let wild = v6only(at(any, base + 2));
            out.push((
                format!("{fw_addr} {hook} tcp bound"),
                connect(&peer, at(fw_addr, base + 1), Some(&bound)),
            ));
            out.push((
                format!("{fw_addr} {hook} tcp wildcard"),
                connect(&peer, at(fw_addr, base + 2), Some(&wild)),
            ));
            out.push((
                format!("{fw_addr} {hook} tcp closed"),
                connect(&peer, at(fw_addr, base + 3), None),
            ));
        }
        let wild = v6only(at(any, 7004));
        out.push((
            format!("{fw_addr} prerouting tcp wildcard --nowildcard"),
            connect(&peer, at(fw_addr, 7004), Some(&wild)),
        ));
        // UDP: bound to fw's address, to the any address; --nowildcard at INPUT.
        let udp = |a: SocketAddr| in_netns(&fw, || UdpSocket::bind(a)).unwrap();
        let (bound, wild, wild_input) = (
            udp(at(fw_addr, 7101)),
            udp(at(any, 7102)),
            udp(at(any, 7301)),
        );
        out.push((
            format!("{fw_addr} prerouting udp bound"),
            datagram(&peer, at(fw_addr, 7101), &bound).into(),
        ));
        out.push((
            format!("{fw_addr} prerouting udp wildcard"),
            datagram(&peer, at(fw_addr, 7102), &wild).into(),
        ));
        out.push((
            format!("{fw_addr} input udp wildcard --nowildcard"),
            datagram(&peer, at(fw_addr, 7301), &wild_input).into(),
        ));
        // The ICMP error quoting a packet of fw's connected UDP socket.
        let peer_addr = if fw_addr.contains(':') {
            "fd09::2"
        } else {
            "10.9.0.2"
        };
        out.push((
            format!("{fw_addr} icmp error for a connected udp socket"),
            icmp_error(
                &fw,
                &at(any, 7401).to_string(),
                &at(peer_addr, 9).to_string(),
            )
            .into(),
        ));
    }
    out
}

/// A listening TCP socket; IPv6 ones are v6-only, so the IPv4 cases' ports stay free.
fn tcp_listener(a: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::FromRawFd;
    let (domain, len) = if a.is_ipv4() {
        (libc::AF_INET, std::mem::size_of::<libc::sockaddr_in>())
    } else {
        (libc::AF_INET6, std::mem::size_of::<libc::sockaddr_in6>())
    };
    // SAFETY: socket calls on a descriptor this function owns (or closes on error
    // through the TcpListener it becomes at once).
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let l = TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if !a.is_ipv4() {
            let p = &one as *const libc::c_int as *const libc::c_void;
            if libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, p, int_len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        match a {
            SocketAddr::V4(v4) => {
                let sa = &mut storage as *mut _ as *mut libc::sockaddr_in;
                (*sa).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sa).sin_port = v4.port().to_be();
                (*sa).sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            }
            SocketAddr::V6(v6) => {
                let sa = &mut storage as *mut _ as *mut libc::sockaddr_in6;
                (*sa).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sa).sin6_port = v6.port().to_be();
                (*sa).sin6_addr.s6_addr = v6.ip().octets();
            }
        }
        let sa = &storage as *const _ as *const libc::sockaddr;
        if libc::bind(fd, sa, len as libc::socklen_t) != 0 || libc::listen(fd, 8) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(l)
    }
}

#[test]
fn socket_match_finds_the_sockets_the_kernel_finds() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = run_side(&bins, None);
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let shim = run_side(&bins, Some(&daemon));
    // The kernel's own answers, as worked out from xt_socket: IPv4, then IPv6, whose
    // INPUT rule (any protocol, no --nowildcard) lets the wildcard UDP socket receive.
    let expected = |input_udp: &'static str| {
        [
            "timed out, not accepted",
            "connected, not accepted",
            "refused",
            "timed out, not accepted",
            "connected, not accepted",
            "refused",
            "timed out, not accepted",
            "not received",
            "received",
            input_udp,
            "nothing",
        ]
    };
    let (v4, v6) = (expected("not received"), expected("received"));
    assert_eq!(kernel.len(), v4.len() + v6.len());
    for (got, want) in kernel.iter().zip(v4.iter().chain(v6.iter())) {
        assert_eq!(got.1, *want, "kernel: {}", got.0);
    }
    assert_eq!(kernel, shim, "kernel vs nftshimd\n{}", daemon.log_tail(20));
}
