//! Link-layer matches (`ether`, `vlan`, `@ll`, `meta iiftype`) against the kernel's,
//! with real VLAN-tagged frames. Per side, namespace `h` holds veths v0, e0 and e3;
//! namespace `fw` their peers: v1 (with addresses) and e1, e2, ports of bridge br0.
//! Frames with 802.1Q, 802.1ad + 802.1Q (QinQ) and priority tags in their bytes are
//! injected in h; the receive path of v1 and e1 takes the outer tag into the skb (a
//! hardware-accelerated tag), which link-layer loads put back after the MAC
//! addresses. The bridge (no VLAN filtering) forwards them to e2 with the tag still
//! accelerated; frames fw sends on v1 keep their tags in their bytes. Within a group
//! (sent on v0, on v1, on e0) each frame is sent a different power of two times, so
//! a rule's packet count tells which frames it matched. Per ruleset, the frames
//! caught in h and fw and every rule's packet count must be the kernel's (byte counts
//! are left out: the data plane does not charge a QinQ frame's inner tag at netdev
//! ingress, a known difference). This kernel has no 802.1Q devices (no 8021q module)
//! and no bridge VLAN filtering: tags are only made by the receive path.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const ETHERTYPE: u16 = 0x88b5;
const ETH_P_ALL: u16 = 0x0003;
const MAGIC: &[u8; 8] = b"NFTSHIMV";
const MAC_H: [u8; 6] = [0x02, 0, 0, 0, 9, 1];
const MAC_FW: [u8; 6] = [0x02, 0, 0, 0, 9, 0xf];
/// Not on any link: the bridge floods frames to it (from e1 to e2).
const MAC_FAR: [u8; 6] = [0x02, 0, 0, 0, 9, 0xe];

struct Side {
    h: Netns,
    fw: Netns,
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
            h: Netns::create_unique("nftshim-vlan", &format!("{side}-h")).unwrap(),
            fw: Netns::create_unique("nftshim-vlan", &format!("{side}-fw")).unwrap(),
        };
        // No IPv6 (router solicitations, MLD, DAD): the probes are all the traffic.
        for ns in [&s.h, &s.fw] {
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
        let (h, fw) = (s.h.name(), s.fw.name());
        ip(&[
            "-n",
            fw,
            "link",
            "add",
            "v1",
            "address",
            &mac(MAC_FW),
            "type",
            "veth",
            "peer",
            "name",
            "v0",
            "netns",
            h,
            "address",
            &mac(MAC_H),
        ]);
        ip(&["-n", fw, "addr", "add", "10.8.0.1/24", "dev", "v1"]);
        // br_netfilter (loaded on this host): nftshimd refuses bridge prerouting chains
        // at priority 0 or later while it validates and trims IP frames before them.
        for t in ["iptables", "ip6tables"] {
            let _ = Command::new("ip")
                .args(["netns", "exec", fw, "sysctl", "-qw"])
                .arg(format!("net.bridge.bridge-nf-call-{t}=0"))
                .status();
        }
        ip(&["-n", fw, "link", "add", "br0", "type", "bridge"]);
        for (port, peer) in [("e1", "e0"), ("e2", "e3")] {
            ip(&[
                "-n", fw, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", h,
            ]);
            ip(&["-n", fw, "link", "set", port, "master", "br0"]);
            ip(&["-n", fw, "link", "set", port, "up"]);
            ip(&["-n", h, "link", "set", peer, "up"]);
        }
        for dev in ["v1", "br0", "lo"] {
            ip(&["-n", fw, "link", "set", dev, "up"]);
        }
        ip(&["-n", h, "link", "set", "v0", "up"]);
        // fw's own datagram to h needs no ARP (which would add frames to the counts).
        ip(&[
            "-n",
            fw,
            "neigh",
            "add",
            "10.8.0.2",
            "lladdr",
            &mac(MAC_H),
            "dev",
            "v1",
            "nud",
            "permanent",
        ]);
        s
    }
}

/// A non-blocking packet socket for frames of `ethertype` on `dev`.
fn packet_socket(dev: &str, ethertype: u16) -> io::Result<OwnedFd> {
    let s = nft_tests::packets::packet_socket(dev, ethertype, libc::SOCK_NONBLOCK)?;
    // Room for every probe (root may exceed rmem_max).
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt(2) with a valid int.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    Ok(s)
}

/// Probe ids in what the socket has queued, with how often each came.
fn caught(s: &OwnedFd) -> Vec<(u32, usize)> {
    let mut ids: Vec<u32> = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            break;
        }
        let data = &buf[..n as usize];
        if let Some(p) = data.windows(MAGIC.len()).position(|w| w == MAGIC) {
            if let Some(b) = data.get(p + 8..p + 12) {
                ids.push(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
    }
    ids.sort_unstable();
    let mut out: Vec<(u32, usize)> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => out.push((id, 1)),
        }
    }
    out
}

/// A frame and where it is sent from.
struct Probe {
    id: u32,
    /// "h" (on v0), "h.e0" (on e0, to be bridged) or "fw" (on v1).
    from: &'static str,
    copies: usize,
    /// 802.1Q/802.1ad tags in the frame's bytes: (TPID, TCI), outer first.
    tags: &'static [(u16, u16)],
    /// An IPv4/UDP datagram to fw (10.8.0.1, or 10.8.10.1 with a tag) to this port.
    udp: Option<u16>,
}

fn probes() -> Vec<Probe> {
    let p = |id, from, copies, tags, udp| Probe {
        id,
        from,
        copies,
        tags,
        udp,
    };
    const QINQ: &[(u16, u16)] = &[(0x88a8, 0x0001), (0x8100, 0x0002)];
    vec![
        p(0, "h", 1, &[], None),
        p(1, "h", 2, &[(0x8100, 0x600a)], None), // vid 10 pcp 3 (no VLAN device: dropped)
        p(2, "h", 4, &[(0x8100, 0x0014)], None), // vid 20
        p(3, "h", 8, QINQ, None),
        p(4, "h", 16, &[(0x8100, 0xa000)], None), // priority tag (vid 0, pcp 5)
        p(5, "h", 32, &[], Some(53)),
        p(6, "h", 64, &[(0x8100, 0x0000)], Some(54)), // priority-tagged IPv4
        p(8, "fw", 1, &[], None),
        p(9, "fw", 2, &[(0x8100, 0x001e)], None), // vid 30 in the frame's bytes
        p(11, "h.e0", 1, &[], None),
        p(12, "h.e0", 2, &[(0x8100, 0x600a)], None),
        p(13, "h.e0", 4, QINQ, None),
        p(14, "h.e0", 8, &[(0x8100, 0x0000)], None),
    ]
}

fn frame(p: &Probe) -> Vec<u8> {
    let (src, dst) = match p.from {
        "h" => (MAC_H, MAC_FW),
        "h.e0" => (MAC_H, MAC_FAR),
        _ => (MAC_FW, MAC_H),
    };
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    for (tpid, tci) in p.tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    let mut data = MAGIC.to_vec();
    data.extend_from_slice(&p.id.to_be_bytes());
    match p.udp {
        Some(dport) => {
            let mut v = Vec::new();
            etherparse::PacketBuilder::ethernet2(src, dst)
                .ipv4([10, 8, 0, 2], [10, 8, 0, 1], 64)
                .udp(4000, dport)
                .write(&mut v, &data)
                .expect("udp frame");
            f.extend_from_slice(&v[12..]);
        }
        None => {
            f.extend_from_slice(&ETHERTYPE.to_be_bytes());
            f.extend_from_slice(&data);
            f.extend(std::iter::repeat_n(0u8, 20));
        }
    }
    f
}

fn send(dev: &str, frames: &[Vec<u8>]) -> io::Result<()> {
    let s = packet_socket(dev, ETHERTYPE)?;
    for f in frames {
        // SAFETY: f is valid for its length.
        if unsafe { libc::send(s.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) } < 0 {
            let e = io::Error::last_os_error();
            // A frame an egress hook dropped (NET_XMIT_DROP).
            if e.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// UDP datagrams a bound socket received, by probe id.
fn received(s: &UdpSocket) -> Vec<(u32, usize)> {
    let mut ids = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = s.recv(&mut buf) {
        if n >= 12 && &buf[..8] == MAGIC {
            ids.push(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
        }
    }
    ids.sort_unstable();
    let mut out: Vec<(u32, usize)> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => out.push((id, 1)),
        }
    }
    out
}

/// Per catcher: the probes it caught, with how many copies.
fn observe(side: &Side, probes: &[Probe]) -> Vec<(&'static str, Vec<(u32, usize)>)> {
    let v0 = in_netns(&side.h, || packet_socket("v0", ETH_P_ALL)).unwrap();
    let e3 = in_netns(&side.h, || packet_socket("e3", ETH_P_ALL)).unwrap();
    let v1 = in_netns(&side.fw, || packet_socket("v1", ETHERTYPE)).unwrap();
    let v1_qinq = in_netns(&side.fw, || packet_socket("v1", 0x8100)).unwrap();

    let udp = in_netns(&side.fw, || {
        let bind = |port| -> io::Result<UdpSocket> {
            let s = UdpSocket::bind(("0.0.0.0", port))?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        Ok((bind(53)?, bind(54)?))
    })
    .unwrap();
    for (from, ns, dev) in [
        ("h", &side.h, "v0"),
        ("h.e0", &side.h, "e0"),
        ("fw", &side.fw, "v1"),
    ] {
        let frames: Vec<Vec<u8>> = probes
            .iter()
            .filter(|p| p.from == from)
            .flat_map(|p| std::iter::repeat_n(frame(p), p.copies))
            .collect();
        in_netns(ns, || send(dev, &frames)).unwrap();
    }
    // A datagram of fw's own (output, postrouting, v1's egress): probe 10.
    in_netns(&side.fw, || {
        let s = UdpSocket::bind("10.8.0.1:0")?;
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&10u32.to_be_bytes());
        s.send_to(&data, "10.8.0.2:9").map(|_| ())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    vec![
        ("h v0", caught(&v0)),
        ("fw v1", caught(&v1)),
        ("fw v1 (0x8100)", caught(&v1_qinq)),
        ("h e3", caught(&e3)),
        ("fw udp 53", received(&udp.0)),
        ("fw udp 54", received(&udp.1)),
    ]
}

const RULESETS: &[(&str, &str)] = &[
    (
        "netdev ingress",
        r#"flush ruleset
table netdev t {
	chain in {
		type filter hook ingress device "v1" priority 0; policy accept;
		ether type vlan counter
		ether type 8021ad counter
		vlan id 10 counter
		vlan id 20 vlan pcp 0 counter
		vlan pcp 3 counter
		vlan id 0 counter
		ether type 8021ad vlan id 1 vlan type 8021q vlan id 2 counter
		ether type vlan vlan type ip counter
		ether type 0x88b5 counter
		ether saddr 02:00:00:00:09:01 ether type vlan counter
		meta iiftype ether counter
		@ll,80,64 0x09018100001488b5 counter
		@ll,128,16 0x88b5 counter
		@ll,160,16 0x88b5 counter
		@ll,96,48 0x88a800018100 counter
		vlan id 20 counter drop
		vlan id 0 udp dport 54 counter drop
	}
}
"#,
    ),
    (
        "netdev egress",
        r#"flush ruleset
table netdev t {
	chain out {
		type filter hook egress devices = { "v1", "e2" } priority 0; policy accept;
		ether type vlan counter
		ether type 8021ad counter
		@ll,96,16 0x8100 counter
		@ll,116,12 10 counter
		@ll,116,12 30 counter
		@ll,128,16 0x88b5 counter
		@ll,160,16 0x88b5 counter
		ether type 0x88b5 counter
		ether saddr 02:00:00:00:09:0f counter
		@ll,0,128 0x02000000090e0200000009018100600a counter
		@ll,80,64 0x090188a800018100 counter
		vlan id 10 counter
		@ll,116,12 30 counter drop
		@ll,144,16 0x0002 counter drop
	}
}
"#,
    ),
    (
        "ip prerouting and input",
        r#"flush ruleset
table inet t {
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		ether saddr 02:00:00:00:09:01 counter
		iiftype ether counter
		ether type ip counter
		ether type vlan counter
		@ll,96,32 0x08004500 counter
		iifname "v1" ether type ip counter
		ether daddr 02:00:00:00:09:0f udp dport 54 counter drop
	}
	chain in {
		type filter hook input priority 0; policy accept;
		ether saddr 02:00:00:00:09:01 udp dport 53 counter
		ip saddr . ether saddr { 10.8.0.2 . 02:00:00:00:09:01 } counter
		iiftype != ether counter
	}
}
"#,
    ),
    (
        "bridge prerouting, forward, postrouting",
        r#"flush ruleset
table bridge t {
	chain pre {
		type filter hook prerouting priority -10; policy accept;
		vlan id 10 counter
		vlan id 0 counter
		ether type vlan counter
		ether type 8021ad vlan id 1 vlan type 8021q vlan id 2 counter
		meta iiftype ether counter
		ether saddr 02:00:00:00:09:01 counter
		@ll,112,32 0x600a88b5 counter
	}
	chain forward_chain {
		type filter hook forward priority 0; policy accept;
		vlan id 10 vlan pcp 3 counter
		@ll,128,16 0x8100 counter
		meta iiftype ether counter
		ether type 8021ad counter
	}
	chain post {
		type filter hook postrouting priority 0; policy accept;
		vlan id 10 counter
		meta iiftype ether counter
		@ll,144,16 0x0002 counter drop
		@ll,112,16 0x0000 counter drop
		counter
	}
}
"#,
    ),
    (
        "iiftype at postrouting",
        r#"flush ruleset
table ip t {
	chain post {
		type filter hook postrouting priority 0; policy accept;
		iiftype ether counter
		iiftype loopback counter
		counter
	}
}
"#,
    ),
];

/// `nft list ruleset` with byte counts left out.
fn packets_only(listing: &str) -> String {
    listing
        .split_inclusive('\n')
        .map(|line| match line.find(" bytes ") {
            Some(at) if line[..at].contains("counter packets") => {
                let rest = &line[at + 7..];
                let tail = rest.find(' ').map_or("\n", |i| &rest[i..]);
                format!("{}{}", &line[..at], tail)
            }
            _ => line.to_string(),
        })
        .collect()
}

#[test]
fn link_layer_matches_see_what_the_kernel_s_hooks_see() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Side::create("k");
    let shim = Side::create("s");
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let limit = Duration::from_secs(60);
    let [kside, sside] = daemon.sides(
        &bins.preload,
        (kernel.fw.name(), shim.fw.name()),
        "nft",
        limit,
    );
    let probes = probes();
    for (name, ruleset) in RULESETS {
        let file = std::env::temp_dir().join(format!(
            "nftshim-vlan-e2e-{}-{}.nft",
            std::process::id(),
            name.replace(' ', "-")
        ));
        std::fs::write(&file, ruleset).unwrap();
        for side in [&kside, &sside] {
            let out = side.run(&["-f", file.to_str().unwrap()]);
            assert!(out.success(), "{name}: {out:?}\n{}", daemon.log_tail(20));
        }
        let _ = std::fs::remove_file(&file);
        // Let the data plane switch to the new programs.
        std::thread::sleep(Duration::from_millis(300));
        let k = observe(&kernel, &probes);
        let s = observe(&shim, &probes);
        assert_eq!(k, s, "{name}: frames caught (kernel, nftshimd)");
        let kl = kside.run(&["list", "ruleset"]);
        let sl = sside.run(&["list", "ruleset"]);
        assert!(kl.success() && sl.success(), "{kl:?} {sl:?}");
        assert_eq!(
            packets_only(&kl.stdout),
            packets_only(&sl.stdout),
            "{name}: counters (kernel, nftshimd)"
        );
        eprintln!("{name}: {k:?}\n{}", packets_only(&kl.stdout));
        // Not vacuous: the rules' counts differ (they matched different frames).
        let counts: std::collections::BTreeSet<&str> = kl
            .stdout
            .lines()
            .filter_map(|l| l.split("counter packets ").nth(1))
            .filter_map(|c| c.split(' ').next())
            .collect();
        assert!(counts.len() >= 2, "{name}: {counts:?}");
    }
}
