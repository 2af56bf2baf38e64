//! NFLOG at input end to end: `-j NFLOG` in iptables-nft and ip6tables-nft filter
//! INPUT, nft `log group` in an inet input chain,
//! a prerouting rule on the same datagrams, and an nfnetlink_log listener
//! (`nflog-listen`) on fw, on the kernel and through nftshimd (eBPF data plane). At
//! input the kernel's message carries NFULA_UID/GID of the socket early demux attached
//! after prerouting: fw's UDP sockets, made with fsuid 4321 and fsgid 765, are
//! connected to peer's address and port (ids present), unconnected, bound to the any
//! address and then connected (present), or connected to another port (absent); a TCP
//! listener gets SYNs (absent: early demux does not attach listeners) and an
//! established connection, accepted under those ids, gets data (present). Frames are
//! injected from peer, plus the connection's segments (compared as metadata: its
//! sequence numbers are random). What the listener receives must be the same,
//! attribute for attribute (timestamps masked, ifindexes named). Needs root.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

mod nflog_common;
use nflog_common::*;

use etherparse::PacketBuilder;
use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const MAC_FW: [u8; 6] = [0x02, 0, 0, 0, 6, 1];
const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 6, 2];
const FW4: [u8; 4] = [10, 9, 6, 1];
const PEER4: [u8; 4] = [10, 9, 6, 2];
const FW6: [u8; 16] = [0xfd, 0x09, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const PEER6: [u8; 16] = [0xfd, 0x09, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const RULES4: &str = "*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 5101 -j NFLOG --nflog-group 7 --nflog-prefix pre4
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 5101:5104 -j NFLOG --nflog-group 7 --nflog-prefix in4
-A INPUT -p tcp -m tcp --dport 5110 --tcp-flags SYN,ACK,RST SYN -j NFLOG --nflog-group 7 --nflog-prefix syn4
-A INPUT -p tcp -m tcp --dport 5111 --tcp-flags PSH PSH -j NFLOG --nflog-group 7 --nflog-prefix est4
-A INPUT -i lo -p udp -m udp --dport 5107 -j NFLOG --nflog-group 7 --nflog-prefix lo4
-A INPUT -d 239.1.2.3/32 -p udp -m udp --dport 5108 -j NFLOG --nflog-group 7 --nflog-prefix mc4
COMMIT
";

const RULES6: &str = "*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 5101:5104 -j NFLOG --nflog-group 7 --nflog-prefix in6
-A INPUT -p tcp -m tcp --dport 5110 --tcp-flags SYN,ACK,RST SYN -j NFLOG --nflog-group 7 --nflog-prefix syn6
-A INPUT -p tcp -m tcp --dport 5111 --tcp-flags PSH PSH -j NFLOG --nflog-group 7 --nflog-prefix est6
COMMIT
";

const NFT: &str = "table inet s10nfin {
    chain pre {
        type filter hook prerouting priority 0; policy accept;
        udp dport 5105 meta mark set 0x2b
    }
    chain in {
        type filter hook input priority 10; policy accept;
        udp dport 5105 log group 7 prefix \"nft-in\" snaplen 30
    }
}
";

/// Peer's side of the UDP datagrams: from port 40000 to each of fw's ports, both
/// families; and TCP SYNs to the listeners.
fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let eth = || PacketBuilder::ethernet2(MAC_PEER, MAC_FW);
    let payload = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 11 + 5) as u8).collect() };
    for v6 in [false, true] {
        let ip = |ttl: u8| {
            if v6 {
                eth().ipv6(PEER6, FW6, ttl)
            } else {
                eth().ipv4(PEER4, FW4, ttl)
            }
        };
        for port in 5101..=5106u16 {
            let mut f = Vec::new();
            ip(64)
                .udp(40000, port)
                .write(&mut f, &payload(20 + usize::from(port - 5100)))
                .unwrap();
            out.push(f);
        }
        let mut f = Vec::new();
        ip(64)
            .tcp(40001, 5110, 1000, 512)
            .syn()
            .write(&mut f, &[])
            .unwrap();
        out.push(f);
    }
    // To a group fw's f0 joined, with its Ethernet multicast address.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_PEER, [0x01, 0, 0x5e, 1, 2, 3])
        .ipv4(PEER4, [239, 1, 2, 3], 1)
        .udp(40000, 5108)
        .write(&mut f, &payload(30))
        .unwrap();
    out.push(f);
    out
}

fn connect(fd: &OwnedFd, a: std::net::SocketAddr) {
    let (addr, len) = sockaddr(a);
    // SAFETY: addr is valid for len.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            len,
        )
    };
    assert_eq!(rc, 0, "connect {a}: {}", std::io::Error::last_os_error());
}

/// fw's sockets, all made with fsuid 4321 / fsgid 765 (see the module's comment).
fn sockets(fw: &Netns) -> Vec<OwnedFd> {
    in_netns(fw, || {
        let mut v = Vec::new();
        for v6 in [false, true] {
            let (dom, me, any, peer) = if v6 {
                (libc::AF_INET6, "[fd09:6::1]", "[::]", "[fd09:6::2]")
            } else {
                (libc::AF_INET, "10.9.6.1", "0.0.0.0", "10.9.6.2")
            };
            let a =
                |h: &str, p: u16| -> std::net::SocketAddr { format!("{h}:{p}").parse().unwrap() };
            // (port, bound to fw's address (else the any address), connected to)
            let udp: [(u16, bool, Option<u16>); 6] = [
                (5101, true, Some(40000)),
                (5102, true, None),
                (5103, false, Some(40000)),
                (5104, true, Some(40009)),
                (5105, true, Some(40000)),
                (5106, true, Some(40000)),
            ];
            for (port, own, to) in udp {
                let s = socket_as(dom, libc::SOCK_DGRAM, 0, true);
                if v6 {
                    // [::]:5103 beside IPv4's 0.0.0.0:5103.
                    let one: libc::c_int = 1;
                    // SAFETY: an int option of the right size.
                    let rc = unsafe {
                        libc::setsockopt(
                            s.as_raw_fd(),
                            libc::IPPROTO_IPV6,
                            libc::IPV6_V6ONLY,
                            &one as *const _ as *const libc::c_void,
                            4,
                        )
                    };
                    assert_eq!(rc, 0);
                }
                bind(&s, a(if own { me } else { any }, port));
                if let Some(to) = to {
                    connect(&s, a(peer, to));
                }
                v.push(s);
            }
            for port in [5110u16, 5111] {
                let s = socket_as(dom, libc::SOCK_STREAM, 0, true);
                bind(&s, a(me, port));
                // SAFETY: listen(2) on a bound socket.
                assert_eq!(unsafe { libc::listen(s.as_raw_fd(), 8) }, 0);
                v.push(s);
            }
        }
        // The only socket of port 5108, bound to the any address, in group 239.1.2.3
        // on f0: udp_v4_early_demux() attaches it to the group's datagrams.
        let m = socket_as(libc::AF_INET, libc::SOCK_DGRAM, 0, true);
        bind(&m, "0.0.0.0:5108".parse().unwrap());
        let name = std::ffi::CString::new("f0").unwrap();
        let mreq = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from_ne_bytes([239, 1, 2, 3]),
            },
            imr_address: libc::in_addr { s_addr: 0 },
            // SAFETY: a NUL-terminated name.
            imr_ifindex: unsafe { libc::if_nametoindex(name.as_ptr()) } as i32,
        };
        // SAFETY: an ip_mreqn of its size.
        let rc = unsafe {
            libc::setsockopt(
                m.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_ADD_MEMBERSHIP,
                &mreq as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::ip_mreqn>() as u32,
            )
        };
        assert_eq!(rc, 0, "IP_ADD_MEMBERSHIP");
        v.push(m);
        Ok(v)
    })
    .unwrap()
}

/// A TCP connection from peer to fw's port 5111 per family, accepted by fw under
/// fsuid 4321 / fsgid 765 (the accepted socket's file takes the caller's credentials),
/// then a few bytes from peer (one segment with PSH).
/// And over loopback, a datagram to a UDP socket of those ids connected to its sender:
/// the kernel's loopback packets keep their output route (loopback_xmit()), so early
/// demux passes them by (no ids).
fn established(side: &Side) -> Vec<OwnedFd> {
    let mut keep = in_netns(&side.fw, || {
        ip(&["-n", side.fw.name(), "link", "set", "lo", "up"]);
        let a = socket_as(libc::AF_INET, libc::SOCK_DGRAM, 0, true);
        let b = socket_as(libc::AF_INET, libc::SOCK_DGRAM, 0, false);
        bind(&a, "127.0.0.1:5107".parse().unwrap());
        bind(&b, "127.0.0.1:40000".parse().unwrap());
        connect(&a, "127.0.0.1:40000".parse().unwrap());
        connect(&b, "127.0.0.1:5107".parse().unwrap());
        let data = b"over lo";
        // SAFETY: data is valid for its length.
        let n = unsafe { libc::send(b.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
        assert_eq!(n, data.len() as isize);
        std::thread::sleep(Duration::from_millis(20));
        Ok(vec![a, b])
    })
    .unwrap();
    for v6 in [false, true] {
        let (dom, fw) = if v6 {
            (libc::AF_INET6, "[fd09:6::1]:5111")
        } else {
            (libc::AF_INET, "10.9.6.1:5111")
        };
        let c = in_netns(&side.peer, || {
            let c = socket_as(dom, libc::SOCK_STREAM, 0, false);
            connect(&c, fw.parse().unwrap());
            Ok(c)
        })
        .unwrap();
        let listener = &side.sockets[if v6 { 15 } else { 7 }];
        // SAFETY: credential calls affect this thread only; accept(2) result owned.
        let a = unsafe {
            libc::setfsgid(765);
            libc::setfsuid(4321);
            let fd = libc::accept(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            libc::setfsuid(0);
            libc::setfsgid(0);
            assert!(fd >= 0, "accept");
            OwnedFd::from_raw_fd(fd)
        };
        std::thread::sleep(Duration::from_millis(20));
        let data = b"hello";
        // SAFETY: data is valid for its length.
        let n = unsafe { libc::send(c.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
        assert_eq!(n, data.len() as isize);
        std::thread::sleep(Duration::from_millis(20));
        keep.push(c);
        keep.push(a);
    }
    keep
}

struct Side {
    fw: Netns,
    peer: Netns,
    f0: u32,
    sockets: Vec<OwnedFd>,
}

fn setup(bins: &Binaries, daemon: Option<&Daemon>, tag: &str) -> Side {
    let pair = pair("nftshim-s10nfin", tag, 6, None);
    load(&pair.fw, bins, daemon, RULES4, RULES6, NFT);
    let Pair { fw, peer, f0 } = pair;
    let sockets = sockets(&fw);
    Side {
        fw,
        peer,
        f0,
        sockets,
    }
}

#[test]
fn nflog_input_messages_match_the_kernels() {
    let bins = Binaries::for_tests();
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let kernel = setup(&bins, None, "k");
    let shim = setup(&bins, Some(&daemon), "s");
    std::thread::sleep(Duration::from_millis(300));
    // Whole frames (injected only), then metadata with the TCP connection.
    let settings: [(&[&str], bool); 2] = [
        (&["qthresh=1", "flags=1"], false),
        (&["mode=1,range=0", "qthresh=1"], true),
    ];
    for (args, tcp) in settings {
        let k = listen(&kernel.fw, &bins, None, args);
        let s = listen(&shim.fw, &bins, Some(&daemon), args);
        inject(&kernel.peer, &frames());
        inject(&shim.peer, &frames());
        let _keep = tcp.then(|| (established(&kernel), established(&shim)));
        let (k, s) = (finish(k, kernel.f0), finish(s, shim.f0));
        let msgs = k.matches("msg type=0x0400").count();
        let uids = k.matches("attr 11 000010e1").count();
        // At input: 5101-5105 and a SYN of each family (and the two connections'
        // data); at prerouting ip 5101 (5106 has no rule). The ids on the messages of
        // the datagrams to connected sockets (5101, 5103, 5105 of each family) and of
        // the data (the accepted sockets), the multicast datagram's (the group's only
        // socket); the loopback datagram's has none.
        let (want_msgs, want_uids) = if tcp { (17, 9) } else { (14, 7) };
        assert!(
            msgs == want_msgs && uids == want_uids,
            "the kernel's listener got other than expected ({args:?}: {msgs} messages, \
             {uids} with uid 4321):\n{k}"
        );
        if k != s {
            let diff: Vec<String> = k
                .lines()
                .zip(s.lines())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(10)
                .map(|(i, (a, b))| format!("line {i}:\n  kernel: {a}\n  shim:   {b}"))
                .collect();
            let head = |t: &str| t.lines().take(120).collect::<Vec<_>>().join("\n");
            panic!(
                "listener {args:?}: kernel {} lines, nftshimd {} lines\n{}\n--- kernel:\n{}\n--- \
                 nftshimd:\n{}\n--- daemon:\n{}",
                k.lines().count(),
                s.lines().count(),
                diff.join("\n"),
                head(&k),
                head(&s),
                daemon.log_tail(30)
            );
        }
    }
}
