//! Bridge family chains against the kernel's, on a real bridge: per side, a namespace
//! `br` holding bridge br0 with ports b1 and b2, veth peers of a1 in `h1` and a2 in
//! `h2`. Frames of a local experimental ethertype (no IP: nothing else talks, IPv6 is
//! off) are injected on a1 and a2 and sent by br0, and caught by packet sockets of that
//! ethertype on a1, a2, br0 and b1 (which sees only what the bridge passes up on the
//! port: link-local frames). Per ruleset, every frame's catchers and every counter of
//! `nft list ruleset` must be the kernel's. A second test does the same with
//! ebtables-nft rules (ebtables' compat matches and targets) on IPv4, IPv6, ARP and
//! 802.1Q frames, caught by packet sockets of their ethertypes.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::nft::NftSide;
use nft_tests::packets::in_netns;

const ETHERTYPE: u16 = 0x88b5;
const MAGIC: &[u8; 8] = b"NFTSHIMB";
const MAC_A1: [u8; 6] = [0x02, 0, 0, 0, 8, 1];
const MAC_A2: [u8; 6] = [0x02, 0, 0, 0, 8, 2];
const MAC_BR: [u8; 6] = [0x02, 0, 0, 0, 8, 0xb];
const BROADCAST: [u8; 6] = [0xff; 6];

struct Side {
    br: Netns,
    h1: Netns,
    h2: Netns,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Side {
    fn create(side: &str) -> Side {
        let s = Side {
            br: Netns::create_unique("nftshim-br", &format!("{side}-br")).unwrap(),
            h1: Netns::create_unique("nftshim-br", &format!("{side}-h1")).unwrap(),
            h2: Netns::create_unique("nftshim-br", &format!("{side}-h2")).unwrap(),
        };
        // No IPv6 (router solicitations, MLD, DAD): the probes are all the traffic.
        for ns in [&s.br, &s.h1, &s.h2] {
            for key in ["all", "default"] {
                let ok = Command::new("ip")
                    .args(["netns", "exec", ns.name(), "sysctl", "-qw"])
                    .arg(format!("net.ipv6.conf.{key}.disable_ipv6=1"))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "sysctl in {}", ns.name());
            }
        }
        // br_netfilter (loaded on this host): nftshimd refuses bridge prerouting chains
        // at priority 0 or later while it validates and trims IP frames before them.
        for t in ["iptables", "ip6tables"] {
            let _ = Command::new("ip")
                .args(["netns", "exec", s.br.name(), "sysctl", "-qw"])
                .arg(format!("net.bridge.bridge-nf-call-{t}=0"))
                .status();
        }
        let (br, h1, h2) = (s.br.name(), s.h1.name(), s.h2.name());
        ip(&[
            "-n",
            br,
            "link",
            "add",
            "br0",
            "address",
            &mac(MAC_BR),
            "type",
            "bridge",
        ]);
        for (port, peer, ns, m) in [("b1", "a1", h1, MAC_A1), ("b2", "a2", h2, MAC_A2)] {
            ip(&[
                "-n",
                br,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                ns,
                "address",
                &mac(m),
            ]);
            ip(&["-n", br, "link", "set", port, "master", "br0"]);
            ip(&["-n", br, "link", "set", port, "up"]);
            ip(&["-n", ns, "link", "set", peer, "up"]);
        }
        ip(&["-n", br, "link", "set", "br0", "up"]);
        s
    }
}

/// A non-blocking packet socket for ETHERTYPE frames on `dev`.
fn packet_socket(dev: &str) -> io::Result<OwnedFd> {
    packet_socket_for(dev, ETHERTYPE)
}

/// A non-blocking packet socket for frames of `ethertype` on `dev`.
fn packet_socket_for(dev: &str, ethertype: u16) -> io::Result<OwnedFd> {
    nft_tests::packets::packet_socket(dev, ethertype, libc::SOCK_NONBLOCK)
}

/// Probe ids in what the socket has queued.
fn caught(s: &OwnedFd) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return ids;
        }
        let data = &buf[..n as usize];
        if let Some(p) = data.windows(MAGIC.len()).position(|w| w == MAGIC) {
            if let Some(b) = data.get(p + 8..p + 12) {
                ids.push(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
    }
}

/// Where a frame is sent from, and to which MAC.
#[derive(Clone, Copy, Debug)]
struct Probe {
    id: u32,
    /// "h1", "h2" (from a1, a2), "br" (from br0) or "b1" (from the port itself).
    from: &'static str,
    src: [u8; 6],
    dst: [u8; 6],
    /// Padding after the id: frame lengths differ, so byte counters tell them apart.
    pad: usize,
    kind: Kind,
}

/// What a probe carries (the magic and id as its payload, or after an ARP body).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The local experimental ethertype.
    Experimental,
    /// IPv4 10.9.9.1 -> 10.9.9.9, with this TOS.
    Udp {
        dport: u16,
        tos: u8,
    },
    Tcp(u16),
    /// ICMP echo request.
    Ping,
    /// IPv6 fe80::1 -> fe80::2 UDP.
    Udp6(u16),
    /// IPv6 TCP behind a hop-by-hop options header.
    Tcp6Hbh(u16),
    /// ICMPv6 echo request.
    Ping6,
    /// ARP: operation, sender and target IPv4 addresses (sender MAC: the source).
    Arp(u16, [u8; 4], [u8; 4]),
    /// A UDP frame (port 53) in an 802.1Q tag with this TCI.
    Vlan(u16),
    /// An 802.3 frame with an LLC header: DSAP, SSAP, first control byte, and the SNAP
    /// type after a UI control byte (at 20) and after a two-byte one (at 22).
    Llc(u8, u8, u8, [u8; 2], [u8; 2]),
}

fn probes() -> Vec<Probe> {
    let p = |id, from, src, dst, pad| Probe {
        id,
        from,
        src,
        dst,
        pad,
        kind: Kind::Experimental,
    };
    let udp = |id, dport| Probe {
        kind: Kind::Udp { dport, tos: 0 },
        ..p(id, "h1", MAC_A1, MAC_BR, 0)
    };
    let ll = |x| [0x01, 0x80, 0xc2, 0, 0, x];
    vec![
        p(1, "h1", MAC_A1, MAC_A2, 0),  // forwarded b1 -> b2 (flooded: unknown)
        p(2, "h2", MAC_A2, MAC_A1, 10), // forwarded b2 -> b1
        p(3, "h1", MAC_A1, MAC_BR, 20), // to the bridge: input
        p(4, "h2", MAC_A2, MAC_BR, 30), // to the bridge from b2
        p(5, "h1", MAC_A1, BROADCAST, 40), // flooded to b2 and passed up
        p(6, "h1", MAC_A1, ll(0x03), 50), // link-local: input on the port b1
        p(7, "h1", MAC_A1, ll(0x00), 60), // STP off: forwarded like any frame
        p(8, "h1", MAC_A1, ll(0x01), 70), // pause: dropped before any hook
        p(9, "h1", [0x03, 0, 0, 0, 8, 9], MAC_A2, 80), // multicast source: dropped
        p(10, "br", MAC_BR, MAC_A1, 90), // sent by br0: output, not forward
        p(11, "h2", MAC_A2, BROADCAST, 100), // flooded to b1 and passed up
        p(12, "br", MAC_BR, BROADCAST, 110), // sent by br0 to both ports: output
        p(13, "br", MAC_BR, MAC_A2, 120), // sent by br0 to b2
        p(14, "b1", MAC_BR, MAC_A1, 130), // the port's own frame: no bridge hook
        udp(15, 53),                    // IPv4 to the bridge: header matches
        udp(16, 54),
    ]
}

fn frame(p: &Probe) -> Vec<u8> {
    let mut data = MAGIC.to_vec();
    data.extend_from_slice(&p.id.to_be_bytes());
    let eth = || etherparse::PacketBuilder::ethernet2(p.src, p.dst);
    let (v4, v6) = (
        ([10, 9, 9, 1], [10, 9, 9, 9]),
        (
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        ),
    );
    let mut v = Vec::new();
    match p.kind {
        Kind::Experimental => {
            let mut f = p.dst.to_vec();
            f.extend_from_slice(&p.src);
            f.extend_from_slice(&ETHERTYPE.to_be_bytes());
            f.extend_from_slice(MAGIC);
            f.extend_from_slice(&p.id.to_be_bytes());
            f.extend(std::iter::repeat_n(0u8, p.pad));
            return f;
        }
        Kind::Udp { dport, tos } => {
            eth()
                .ipv4(v4.0, v4.1, 64)
                .udp(4000, dport)
                .write(&mut v, &data)
                .expect("udp frame");
            // The bridge checks no IPv4 checksum.
            v[15] = tos;
            return v;
        }
        Kind::Tcp(dport) => eth()
            .ipv4(v4.0, v4.1, 64)
            .tcp(4000, dport, 1, 1024)
            .write(&mut v, &data),
        Kind::Ping => eth()
            .ipv4(v4.0, v4.1, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut v, &data),
        Kind::Udp6(dport) => eth()
            .ipv6(v6.0, v6.1, 64)
            .udp(4000, dport)
            .write(&mut v, &data),
        Kind::Tcp6Hbh(dport) => {
            eth()
                .ipv6(v6.0, v6.1, 64)
                .tcp(4000, dport, 1, 1024)
                .write(&mut v, &data)
                .expect("tcp6 frame");
            // Hop-by-hop options (PadN) between the IPv6 and TCP headers.
            v[14 + 6] = 0;
            let plen = u16::from_be_bytes([v[18], v[19]]) + 8;
            v[18..20].copy_from_slice(&plen.to_be_bytes());
            v.splice(54..54, [6u8, 0, 1, 4, 0, 0, 0, 0]);
            return v;
        }
        Kind::Ping6 => eth()
            .ipv6(v6.0, v6.1, 64)
            .icmpv6_echo_request(1, 1)
            .write(&mut v, &data),
        Kind::Arp(op, sip, tip) => {
            let mut f = p.dst.to_vec();
            f.extend_from_slice(&p.src);
            f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
            f.extend_from_slice(&op.to_be_bytes());
            f.extend_from_slice(&p.src);
            f.extend_from_slice(&sip);
            f.extend_from_slice(&[0; 6]);
            f.extend_from_slice(&tip);
            f.extend_from_slice(&data);
            return f;
        }
        Kind::Llc(dsap, ssap, ctrl, ui_type, ni_type) => {
            let mut f = p.dst.to_vec();
            f.extend_from_slice(&p.src);
            f.extend_from_slice(&46u16.to_be_bytes());
            f.extend_from_slice(&[dsap, ssap, ctrl, 0, 0, 0]);
            f.extend_from_slice(&ui_type);
            f.extend_from_slice(&ni_type);
            f.extend_from_slice(&data);
            f.resize(60, 0);
            return f;
        }
        Kind::Vlan(tci) => {
            eth()
                .ipv4(v4.0, v4.1, 64)
                .udp(4000, 53)
                .write(&mut v, &data)
                .expect("udp frame");
            let [hi, lo] = tci.to_be_bytes();
            v.splice(12..12, [0x81, 0x00, hi, lo]);
            return v;
        }
    }
    .expect("frame");
    v
}

fn send(dev: &str, frames: &[Vec<u8>]) -> io::Result<()> {
    let s = packet_socket(dev)?;
    for f in frames {
        // SAFETY: f is valid for its length.
        if unsafe { libc::send(s.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A packet socket: its name in the results, namespace, device and ethertype.
type Catcher<'a> = (&'static str, &'a Netns, &'static str, u16);

/// Per catcher (a1, a2, br0, b1 for the experimental ethertype, br0 for IPv4): the
/// ids it caught, sorted.
fn observe(side: &Side, probes: &[Probe]) -> Vec<(&'static str, Vec<u32>)> {
    observe_with(
        side,
        probes,
        &[
            ("a1", &side.h1, "a1", ETHERTYPE),
            ("a2", &side.h2, "a2", ETHERTYPE),
            ("br0", &side.br, "br0", ETHERTYPE),
            ("b1", &side.br, "b1", ETHERTYPE),
            ("br0 ip", &side.br, "br0", 0x0800),
        ],
    )
}

/// Per device (a1, a2, br0, b1), the ids of the frames of the experimental ethertype,
/// IPv4, IPv6, ARP and 802.2 LLC it received. (Not ETH_P_ALL: its taps see frames before TC
/// ingress, and those a device sends.)
fn observe_all(side: &Side, probes: &[Probe]) -> Vec<(&'static str, Vec<u32>)> {
    let mut catchers = Vec::new();
    for (name, ns, dev) in [
        ("a1", &side.h1, "a1"),
        ("a2", &side.h2, "a2"),
        ("br0", &side.br, "br0"),
        ("b1", &side.br, "b1"),
    ] {
        // ETH_P_802_2: the LLC frames' skb->protocol.
        for ethertype in [ETHERTYPE, 0x0800, 0x86dd, 0x0806, 0x0004] {
            catchers.push((name, ns, dev, ethertype));
        }
    }
    let mut per_device: Vec<(&'static str, Vec<u32>)> = Vec::new();
    for (name, ids) in observe_with(side, probes, &catchers) {
        match per_device.iter_mut().find(|(n, _)| *n == name) {
            Some((_, all)) => {
                all.extend(ids);
                all.sort_unstable();
            }
            None => per_device.push((name, ids)),
        }
    }
    per_device
}

fn observe_with(
    side: &Side,
    probes: &[Probe],
    catchers: &[Catcher<'_>],
) -> Vec<(&'static str, Vec<u32>)> {
    let sockets: Vec<_> = catchers
        .iter()
        .map(|&(name, ns, dev, ethertype)| {
            (
                name,
                in_netns(ns, || packet_socket_for(dev, ethertype)).unwrap(),
            )
        })
        .collect();
    for (from, ns, dev) in [
        ("h1", &side.h1, "a1"),
        ("h2", &side.h2, "a2"),
        ("br", &side.br, "br0"),
        ("b1", &side.br, "b1"),
    ] {
        let frames: Vec<Vec<u8>> = probes
            .iter()
            .filter(|p| p.from == from)
            .map(frame)
            .collect();
        in_netns(ns, || send(dev, &frames)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    sockets
        .iter()
        .map(|(name, s)| {
            let mut ids = caught(s);
            ids.sort_unstable();
            (*name, ids)
        })
        .collect()
}

const RULESETS: &[(&str, &str)] = &[
    (
        "marks and drops",
        r#"flush ruleset
table bridge t {
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		counter
		iifname "b2" meta mark set 3 counter
	}
	chain in {
		type filter hook input priority 0; policy accept;
		counter
		meta mark 3 counter drop
	}
	chain forward_chain {
		type filter hook forward priority 0; policy accept;
		counter
		oifname "b1" counter drop
	}
}
"#,
    ),
    (
        "drop policies",
        r#"flush ruleset
table bridge t {
	chain pre {
		type filter hook prerouting priority -5; policy drop;
		iifname "b1" counter accept
	}
	chain in {
		type filter hook input priority 0; policy drop;
		counter
	}
	chain forward_chain {
		type filter hook forward priority 0; policy drop;
		iifname "b1" oifname "b2" counter accept
	}
}
"#,
    ),
    (
        "jumps and limits",
        r#"flush ruleset
table bridge t {
	chain counted {
		counter
		limit rate 2/minute burst 3 packets accept
		counter drop
	}
	chain in {
		type filter hook input priority 0; policy accept;
		jump counted
	}
	chain forward_chain {
		type filter hook forward priority 0; policy accept;
		oifname "b2" jump counted
	}
}
"#,
    ),
    (
        "output and postrouting",
        r#"flush ruleset
table bridge t {
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		iifname "b2" meta mark set 3
	}
	chain out {
		type filter hook output priority 0; policy accept;
		counter
		oifname "b2" counter drop
	}
	chain forward_chain {
		type filter hook forward priority 0; policy accept;
		counter
	}
	chain post {
		type filter hook postrouting priority 0; policy accept;
		counter
		oifname "b1" meta mark 3 counter drop
	}
}
"#,
    ),
    (
        "header matches",
        r#"flush ruleset
table bridge t {
	chain pre {
		type filter hook prerouting priority -10; policy accept;
		ip daddr 10.9.9.9 counter
		meta protocol != ip counter
	}
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport 53 counter drop
		meta l4proto udp counter
	}
}
"#,
    ),
];

fn nft_in(side: &NftSide, args: &[&str]) -> nft_tests::nft::CmdOutput {
    side.run(args)
}

/// The kernel's and nftshimd's sides of the same bridge, and the daemon.
struct Bench {
    kernel: Side,
    shim: Side,
    daemon: Daemon,
    kside: NftSide,
    sside: NftSide,
}

impl Bench {
    fn start() -> Bench {
        nft_tests::cleanup::install_signal_cleanup();
        let bins = Binaries::for_tests();
        let kernel = Side::create("k");
        let shim = Side::create("s");
        let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
        let limit = Duration::from_secs(60);
        let [kside, sside] = daemon.sides(
            &bins.preload,
            (kernel.br.name(), shim.br.name()),
            "nft",
            limit,
        );
        Bench {
            kernel,
            shim,
            daemon,
            kside,
            sside,
        }
    }

    /// Sends the probes through both sides: the frames caught and the counters of
    /// `nft list ruleset` must be the kernel's.
    fn compare(
        &self,
        name: &str,
        probes: &[Probe],
        observe: fn(&Side, &[Probe]) -> Vec<(&'static str, Vec<u32>)>,
    ) {
        // Let the data plane switch to the new programs.
        std::thread::sleep(Duration::from_millis(300));
        let k = observe(&self.kernel, probes);
        let s = observe(&self.shim, probes);
        assert_eq!(k, s, "{name}: frames caught (kernel, nftshimd)");
        let kl = nft_in(&self.kside, &["list", "ruleset"]);
        let sl = nft_in(&self.sside, &["list", "ruleset"]);
        assert!(kl.success() && sl.success(), "{kl:?} {sl:?}");
        assert_eq!(kl.stdout, sl.stdout, "{name}: counters (kernel, nftshimd)");
        eprintln!("{name}: {k:?}");
    }
}

#[test]
fn bridge_chains_see_what_the_kernel_s_bridge_hooks_see() {
    let bench = Bench::start();
    let probes = probes();
    for (name, ruleset) in RULESETS {
        let file = std::env::temp_dir().join(format!(
            "nftshim-bridge-e2e-{}-{}.nft",
            std::process::id(),
            name.replace(' ', "-")
        ));
        std::fs::write(&file, ruleset).unwrap();
        for side in [&bench.kside, &bench.sside] {
            let out = nft_in(side, &["-f", file.to_str().unwrap()]);
            assert!(
                out.success(),
                "{name}: {out:?}\n{}",
                bench.daemon.log_tail(20)
            );
        }
        let _ = std::fs::remove_file(&file);
        bench.compare(name, &probes, observe);
    }
}

/// Frames for ebtables' matches: IPv4, IPv6 (one behind a hop-by-hop header), ARP,
/// 802.1Q, 802.3 with LLC headers, forwarded, to the bridge, flooded and sent by br0.
fn ebt_probes() -> Vec<Probe> {
    let p = |id, from, src, dst, kind| Probe {
        id,
        from,
        src,
        dst,
        pad: 0,
        kind,
    };
    let udp = |dport, tos| Kind::Udp { dport, tos };
    let (h1, h2, br) = ("h1", "h2", "br");
    let multicast = [0x01, 0, 0x5e, 0, 0, 1];
    vec![
        p(1, h1, MAC_A1, MAC_A2, udp(53, 0)),
        p(2, h1, MAC_A1, MAC_A2, udp(54, 0x10)),
        p(3, h1, MAC_A1, MAC_A2, Kind::Tcp(22)),
        p(4, h1, MAC_A1, MAC_A2, Kind::Ping),
        p(5, h1, MAC_A1, MAC_A2, Kind::Udp6(53)),
        p(6, h1, MAC_A1, MAC_A2, Kind::Tcp6Hbh(22)),
        p(7, h2, MAC_A2, MAC_A1, Kind::Ping6),
        p(
            8,
            h1,
            MAC_A1,
            BROADCAST,
            Kind::Arp(1, [10, 0, 0, 1], [10, 0, 0, 2]),
        ),
        p(
            9,
            h2,
            MAC_A2,
            MAC_A1,
            Kind::Arp(2, [10, 0, 0, 2], [10, 0, 0, 1]),
        ),
        p(10, h1, MAC_A1, MAC_A2, Kind::Vlan(42 | 1 << 13)),
        p(11, h1, MAC_A1, MAC_A2, Kind::Vlan(7)),
        p(12, h1, MAC_A1, MAC_BR, udp(53, 0)),
        p(13, h2, MAC_A2, BROADCAST, udp(53, 0)),
        p(14, h1, MAC_A1, multicast, Kind::Experimental),
        p(15, br, MAC_BR, MAC_A2, udp(55, 0)),
        p(16, br, MAC_BR, BROADCAST, Kind::Tcp(22)),
        p(17, h2, MAC_A2, MAC_A1, udp(54, 0)),
        p(
            18,
            h1,
            MAC_A1,
            MAC_A2,
            Kind::Llc(0x42, 0x42, 3, [0; 2], [0; 2]),
        ),
        p(
            19,
            h1,
            MAC_A1,
            MAC_A2,
            Kind::Llc(0xaa, 0xaa, 3, [8, 0], [0; 2]),
        ),
        p(
            20,
            h1,
            MAC_A1,
            MAC_A2,
            Kind::Llc(0xaa, 0xaa, 0, [0; 2], [8, 0]),
        ),
        p(
            21,
            h1,
            MAC_A1,
            MAC_A2,
            Kind::Llc(0xaa, 0xaa, 0, [8, 0], [0; 2]),
        ),
        p(
            22,
            h1,
            MAC_A1,
            MAC_BR,
            Kind::Llc(0x42, 0x42, 3, [0; 2], [0; 2]),
        ),
        p(
            23,
            h1,
            MAC_A1,
            MAC_BR,
            Kind::Llc(0x43, 0x42, 3, [0; 2], [0; 2]),
        ),
        p(
            24,
            h1,
            MAC_A1,
            MAC_BR,
            Kind::Llc(0x43, 0x43, 3, [0; 2], [0; 2]),
        ),
    ]
}

/// ebtables-nft rules (`ebtables-nft` arguments, table filter), one set per round.
const EBT_RULESETS: &[(&str, &[&str])] = &[
    (
        "ebt ip and ip6",
        &[
            "-A FORWARD -p IPv4 --ip-proto udp --ip-dport 53 -j DROP",
            "-A FORWARD -p IPv4 --ip-tos 0x10",
            "-A FORWARD -p IPv4 --ip-src 10.9.9.0/24 --ip-proto tcp --ip-dport 20:25 -j DROP",
            "-A FORWARD -p IPv4 --ip-proto icmp --ip-icmp-type echo-request",
            "-A FORWARD -p IPv6 --ip6-proto tcp --ip6-dport 22 -j DROP",
            "-A FORWARD -p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type echo-request -j DROP",
            "-A FORWARD -p IPv6 --ip6-src fe80::/64 --ip6-proto udp --ip6-sport 4000",
            "-A INPUT -p IPv4 --ip-dst 10.9.9.9 --ip-proto udp --ip-dport ! 54 -j DROP",
            "-A OUTPUT -p IPv4 --ip-proto tcp --ip-dport 22 -j DROP",
            "-A OUTPUT -p IPv4 --ip-proto udp",
        ],
    ),
    (
        "ebt arp and vlan",
        &[
            "-A FORWARD -p ARP --arp-op Reply --arp-ip-src 10.0.0.2 -j DROP",
            "-A FORWARD -p ARP --arp-mac-src 02:00:00:00:08:01",
            "-A INPUT -p ARP --arp-ip-dst 10.0.0.0/24 --arp-htype 1 -j DROP",
            "-A FORWARD -p 802_1Q --vlan-id 42 --vlan-prio 1 --vlan-encap 0800 -j DROP",
            "-A FORWARD -p 802_1Q --vlan-id ! 42",
        ],
    ),
    (
        "ebt pkttype and mark",
        &[
            "-A FORWARD -j mark --mark-set 5 --mark-target CONTINUE",
            "-A FORWARD --mark 5 --pkttype-type broadcast -j DROP",
            "-A FORWARD -j mark --mark-or 0x10 --mark-target CONTINUE",
            "-A FORWARD --mark 0x15 --pkttype-type multicast -j DROP",
            "-A FORWARD --mark 0x15",
            "-A INPUT --pkttype-type host -j DROP",
            "-A INPUT --pkttype-type ! broadcast",
            "-A OUTPUT --pkttype-type otherhost",
            "-A OUTPUT -j mark --mark-xor 3 --mark-target CONTINUE",
            "-A OUTPUT --mark 3/3 -j DROP",
        ],
    ),
    (
        "ebt among (native set lookups, network header at the ports' egress)",
        &[
            "-A FORWARD --among-dst 02:00:00:00:08:02=10.9.9.9 -j DROP",
            "-A FORWARD --among-src 02:00:00:00:08:02,02:00:00:00:08:0b",
            "-A OUTPUT --among-src 02:00:00:00:08:0b=10.9.9.1 -j DROP",
        ],
    ),
    (
        "ebt 802_3",
        &[
            "-A FORWARD -p Length --802_3-type 0x0800 -j DROP",
            "-A FORWARD -p Length --802_3-sap 0x42 -j DROP",
            "-A FORWARD -p Length --802_3-sap ! 0x43",
            "-A INPUT -p Length --802_3-sap ! 0x42 -j DROP",
        ],
    ),
];

#[test]
fn ebtables_nft_matches_and_targets_act_as_the_kernel_s() {
    let bench = Bench::start();
    let probes = ebt_probes();
    for (name, rules) in EBT_RULESETS {
        for side in [&bench.kside, &bench.sside] {
            let out = nft_in(side, &["flush", "ruleset"]);
            assert!(out.success(), "{name}: {out:?}");
            for rule in *rules {
                let args: Vec<&str> = rule.split_whitespace().collect();
                let out = side.run_program("ebtables-nft".as_ref(), &args, None);
                assert!(
                    out.success(),
                    "{name}: ebtables-nft {rule}: {out:?}\n{}",
                    bench.daemon.log_tail(20)
                );
            }
        }
        bench.compare(name, &probes, observe_all);
    }
}
