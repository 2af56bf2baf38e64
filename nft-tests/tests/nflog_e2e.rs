//! NFLOG (`-j NFLOG`, nft `log group`) end to end: the same rules at prerouting,
//! output and postrouting (iptables-nft and ip6tables-nft raw PREROUTING and OUTPUT,
//! an inet table), the same frames injected from `peer` and the same datagrams and
//! echo requests sent by sockets of `fw` (one made with another fsuid/fsgid, for
//! NFULA_UID/GID), and an nfnetlink_log listener (`nflog-listen`) bound to the
//! group, on the kernel and through nftshimd (eBPF data plane). What the listener
//! receives must be the same datagram for datagram, message for message, attribute
//! for attribute (timestamps masked, ifindexes named), for several listener settings:
//! one message per datagram with sequence numbers, the default batching (queue
//! threshold 100, a second's flush timer, the rule's threshold, the buffer size),
//! copy ranges, and metadata only. Needs root.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

mod nflog_common;
use nflog_common::*;

use etherparse::PacketBuilder;
use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const MAC_FW: [u8; 6] = [0x02, 0, 0, 0, 5, 1];
const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 5, 2];
const FW4: [u8; 4] = [10, 9, 5, 1];
const PEER4: [u8; 4] = [10, 9, 5, 2];
const FW6: [u8; 16] = [0xfd, 0x09, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const PEER6: [u8; 16] = [0xfd, 0x09, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const RULES4: &str = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 5001 -j NFLOG --nflog-group 7 --nflog-prefix ipt-udp
-A PREROUTING -p tcp -m tcp --dport 5002 -j NFLOG --nflog-group 7 --nflog-size 40 --nflog-threshold 3
-A PREROUTING -p icmp -m icmp --icmp-type 8 -j NFLOG --nflog-group 7 --nflog-size 0
-A PREROUTING -p udp -m udp --dport 5003 -j NFLOG --nflog-group 8 --nflog-prefix nobody
-A PREROUTING -p udp -m udp --dport 5003 -j NFLOG --nflog-group 7 --nflog-prefix after
-A OUTPUT -p udp -m udp --sport 6001 -j NFLOG --nflog-group 7 --nflog-prefix out4
COMMIT
";

const RULES6: &str = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 5001 -j NFLOG --nflog-group 7 --nflog-prefix ip6t-udp
-A PREROUTING -p tcp -m tcp --dport 5002 -j NFLOG --nflog-group 7 --nflog-size 60
-A PREROUTING -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j NFLOG --nflog-group 7
-A OUTPUT -p udp -m udp --sport 6001 -j NFLOG --nflog-group 7 --nflog-prefix out6 --nflog-size 20
COMMIT
";

const NFT: &str = "table inet s9nflog {
    chain pre {
        type filter hook prerouting priority 10; policy accept;
        udp dport 5004 meta mark set 0x2a log group 7 prefix \"nft-mark\" snaplen 30
        tcp dport 5004 log group 7 queue-threshold 2
        udp dport 5005 log group 7
        udp dport 5005 log prefix \"syslog, not nflog\"
    }
    chain post {
        type filter hook postrouting priority 0; policy accept;
        udp sport 6002 log group 7 prefix \"post\"
        icmp type echo-request log group 7
        icmpv6 type echo-request log group 7 snaplen 16
    }
}
";

/// The frames peer sends: UDP, TCP (a SYN and a segment with data) and ICMP echo
/// requests of both families, to each rule's port, one large.
fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let eth = || PacketBuilder::ethernet2(MAC_PEER, MAC_FW);
    let payload = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 + 3) as u8).collect() };
    for v6 in [false, true] {
        let ip = |ttl: u8| {
            if v6 {
                eth().ipv6(PEER6, FW6, ttl)
            } else {
                eth().ipv4(PEER4, FW4, ttl)
            }
        };
        let mut push = |b: etherparse::PacketBuilderStep<etherparse::UdpHeader>, p: &[u8]| {
            let mut f = Vec::new();
            b.write(&mut f, p).unwrap();
            out.push(f);
        };
        for (port, n) in [
            (5001, 100),
            (5003, 10),
            (5004, 64),
            (5005, 1400),
            (5005, 7000),
        ] {
            push(ip(64).udp(40000, port), &payload(n));
        }
        for (port, syn, n) in [(5002, true, 0), (5002, false, 300), (5004, true, 0)] {
            let mut f = Vec::new();
            let b = ip(63).tcp(40001, port, 1000, 512);
            let b = if syn { b.syn() } else { b.ack(77).psh() };
            b.write(&mut f, &payload(n)).unwrap();
            out.push(f);
        }
        let mut f = Vec::new();
        if v6 {
            ip(64)
                .icmpv6_echo_request(9, 1)
                .write(&mut f, &payload(56))
                .unwrap();
        } else {
            ip(64)
                .icmpv4_echo_request(9, 1)
                .write(&mut f, &payload(56))
                .unwrap();
        }
        out.push(f);
    }
    out
}

fn send_to(fd: &OwnedFd, data: &[u8], to: std::net::SocketAddr) {
    let (addr, len) = sockaddr(to);
    // SAFETY: data and addr are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            &addr as *const _ as *const libc::sockaddr,
            len,
        )
    };
    assert_eq!(n, data.len() as isize, "sendto {to}");
}

/// What fw's own sockets send (output and postrouting): UDP from ports 6001 and 6002
/// (sockets with other ids send from 6001), ICMP and ICMPv6 echo requests. IPv4 goes
/// through raw sockets with the header included, with a fixed IP id (the kernel's
/// own ids are hashed with a per-namespace secret).
fn local_traffic(fw: &Netns) {
    in_netns(fw, || {
        // SAFETY: as in `inject`.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        let peer4: std::net::SocketAddr = "10.9.5.2:0".parse().unwrap();
        let peer6: std::net::SocketAddr = "[fd09:5::2]:7777".parse().unwrap();
        let mut id = 0x1200u16;
        let mut send4 = |fd: &OwnedFd, mut pkt: Vec<u8>| {
            id += 1;
            pkt[4..6].copy_from_slice(&id.to_be_bytes());
            send_to(fd, &pkt, peer4);
            std::thread::sleep(Duration::from_millis(2));
        };
        for (other, port) in [(true, 6001u16), (false, 6002)] {
            let r4 = socket_as(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW, other);
            let u6 = socket_as(libc::AF_INET6, libc::SOCK_DGRAM, 0, other);
            bind(&u6, format!("[fd09:5::1]:{port}").parse().unwrap());
            for n in [12usize, 300] {
                let data: Vec<u8> = (0..n).map(|i| (i * 5 + usize::from(port)) as u8).collect();
                let mut pkt = Vec::new();
                PacketBuilder::ipv4(FW4, PEER4, 64)
                    .udp(port, 7777)
                    .write(&mut pkt, &data)
                    .unwrap();
                send4(&r4, pkt);
                send_to(&u6, &data, peer6);
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let payload: Vec<u8> = (0..40).collect();
        let r4 = socket_as(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW, false);
        let mut pkt = Vec::new();
        PacketBuilder::ipv4(FW4, PEER4, 64)
            .icmpv4_echo_request(9, 1)
            .write(&mut pkt, &payload)
            .unwrap();
        send4(&r4, pkt);
        // ICMPv6 from a raw socket of other ids: the kernel fills the checksum in.
        let r6 = socket_as(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6, true);
        let mut echo = vec![128, 0, 0, 0, 0, 9, 0, 1];
        echo.extend_from_slice(&payload);
        send_to(&r6, &echo, "[fd09:5::2]:0".parse().unwrap());
        Ok(())
    })
    .unwrap();
}

fn setup(bins: &Binaries, daemon: Option<&Daemon>, tag: &str) -> Pair {
    let pair = pair("nftshim-s9nflog", tag, 5, Some("9000"));
    load(&pair.fw, bins, daemon, RULES4, RULES6, NFT);
    pair
}

#[test]
fn nflog_messages_match_the_kernels() {
    let bins = Binaries::for_tests();
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let kernel = setup(&bins, None, "k");
    let shim = setup(&bins, Some(&daemon), "s");
    std::thread::sleep(Duration::from_millis(300));
    let settings: [&[&str]; 5] = [
        &["qthresh=1", "flags=3"],
        &[],
        &["mode=2,range=20", "qthresh=5", "timeout=10"],
        &["mode=1,range=0", "qthresh=2", "flags=1"],
        &["mode=2,range=1000", "nlbufsiz=6000", "timeout=20"],
    ];
    for args in settings {
        let k = listen(&kernel.fw, &bins, None, args);
        let s = listen(&shim.fw, &bins, Some(&daemon), args);
        inject(&kernel.peer, &frames());
        inject(&shim.peer, &frames());
        local_traffic(&kernel.fw);
        local_traffic(&shim.fw);
        let (k, s) = (finish(k, kernel.f0), finish(s, shim.f0));
        assert!(
            k.matches("msg type=0x0400").count() >= 20 && k.contains("attr 11 000010e1"),
            "the kernel's listener got too little ({args:?}):\n{k}"
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
            let head = |t: &str| t.lines().take(80).collect::<Vec<_>>().join("\n");
            panic!(
                "listener {args:?}: kernel {} lines, nftshimd {} lines\n{}\n--- kernel:\n{}\n--- \
                 nftshimd:\n{}",
                k.lines().count(),
                s.lines().count(),
                diff.join("\n"),
                head(&k),
                head(&s)
            );
        }
    }
}
