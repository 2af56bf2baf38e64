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

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etherparse::PacketBuilder;
use nft_tests::bins::Binaries;
use nft_tests::daemon::{run_client, Daemon};
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

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}

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

/// Sends the frames on peer's p0, from one CPU (the kernel's and the programs' order
/// of the messages is then the frames').
fn inject(peer: &Netns) {
    in_netns(peer, || {
        // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        // SAFETY: socket(2), owned at once.
        let s = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)) };
        let name = std::ffi::CString::new("p0").unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: addr is a valid sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                s.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind p0");
        for f in frames() {
            // SAFETY: f is valid for its length.
            let n = unsafe { libc::send(s.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            assert_eq!(n, f.len() as isize, "send");
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })
    .unwrap();
}

/// A socket of fw's own: made with fsuid 4321 and fsgid 765 (its file's credentials)
/// when `other_ids`.
fn socket_as(domain: i32, ty: i32, proto: i32, other_ids: bool) -> OwnedFd {
    // SAFETY: credential calls affect this thread only; socket(2) is owned at once.
    unsafe {
        if other_ids {
            libc::setfsgid(765);
            libc::setfsuid(4321);
        }
        let fd = libc::socket(domain, ty, proto);
        assert!(fd >= 0, "socket");
        if other_ids {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
        OwnedFd::from_raw_fd(fd)
    }
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

fn sockaddr(a: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_storage is valid; the variant is filled below.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        std::net::SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (ss, std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        std::net::SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

fn bind(fd: &OwnedFd, a: std::net::SocketAddr) {
    let (addr, len) = sockaddr(a);
    // SAFETY: addr is valid for len.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            len,
        )
    };
    assert_eq!(rc, 0, "bind {a}");
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

struct Side {
    fw: Netns,
    peer: Netns,
    f0: u32,
}

fn setup(bins: &Binaries, daemon: Option<&Daemon>, tag: &str) -> Side {
    let fw = Netns::create_unique("nftshim-s9nflog", &format!("{tag}fw")).unwrap();
    let peer = Netns::create_unique("nftshim-s9nflog", &format!("{tag}peer")).unwrap();
    nft_tests::netns::veth_pair((&fw, "f0", "10.9.5.1/24"), (&peer, "p0", "10.9.5.2/24")).unwrap();
    for (ns, dev, mac, a6) in [
        (&fw, "f0", MAC_FW, "fd09:5::1/64"),
        (&peer, "p0", MAC_PEER, "fd09:5::2/64"),
    ] {
        let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        ip(&["-n", ns.name(), "link", "set", dev, "down"]);
        ip(&[
            "-n",
            ns.name(),
            "link",
            "set",
            dev,
            "address",
            &mac.join(":"),
        ]);
        ip(&["-n", ns.name(), "link", "set", dev, "mtu", "9000", "up"]);
        ip(&["-n", ns.name(), "addr", "add", a6, "dev", dev, "nodad"]);
    }
    // fw's packets leave at once (no neighbour resolution between the hook and TC).
    let peer_mac = "02:00:00:00:05:02";
    for a in ["10.9.5.2", "fd09:5::2"] {
        ip(&[
            "-n",
            fw.name(),
            "neigh",
            "replace",
            a,
            "lladdr",
            peer_mac,
            "dev",
            "f0",
            "nud",
            "permanent",
        ]);
    }
    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    for (tool, rules) in [
        ("iptables-nft-restore", RULES4),
        ("ip6tables-nft-restore", RULES6),
    ] {
        let out = run_client(&fw, shim, tool, &[] as &[&str], Some(rules));
        assert!(
            out.success(),
            "{tool}: {}\n{}",
            out.stderr,
            daemon.map(|d| d.log_tail(20)).unwrap_or_default()
        );
    }
    let out = run_client(&fw, shim, "nft", &["-f", "-"], Some(NFT));
    assert!(out.success(), "nft: {}", out.stderr);
    let link = Command::new("ip")
        .args(["-n", fw.name(), "-o", "link", "show", "f0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&link.stdout);
    let f0 = text.split(':').next().unwrap().trim().parse().unwrap();
    Side { fw, peer, f0 }
}

/// Starts the listener on fw and waits until it has bound and configured its group.
fn listen(side: &Side, bins: &Binaries, daemon: Option<&Daemon>, args: &[&str]) -> Child {
    let listener = env!("CARGO_BIN_EXE_nflog-listen");
    let target = daemon.map_or(nft_tests::nft::Target::Kernel, |d| d.target(&bins.preload));
    let mut all = vec!["7", "3000"];
    all.extend_from_slice(args);
    let mut cmd = nft_tests::nft::command_in(side.fw.name(), &target, listener.as_ref(), &all);
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.as_mut().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "listener ended early"
        );
        if line.trim() == "ready" {
            break;
        }
        assert!(line.contains("error=0"), "listener config: {line}");
    }
    child
}

/// The listener's output with fw's f0 (input or output device) named instead of
/// numbered.
fn finish(child: Child, side: &Side) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "listener: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f0 = format!(" {:08x}", side.f0);
    text.lines()
        .map(|l| {
            if l.starts_with("attr 4 ") || l.starts_with("attr 5 ") {
                l.replace(&f0, " F0")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
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
        let k = listen(&kernel, &bins, None, args);
        let s = listen(&shim, &bins, Some(&daemon), args);
        inject(&kernel.peer);
        inject(&shim.peer);
        local_traffic(&kernel.fw);
        local_traffic(&shim.fw);
        let (k, s) = (finish(k, &kernel), finish(s, &shim));
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
