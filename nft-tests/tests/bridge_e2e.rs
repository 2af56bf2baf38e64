//! Bridge family chains against the kernel's, on a real bridge: per side, a namespace
//! `br` holding bridge br0 with ports b1 and b2, veth peers of a1 in `h1` and a2 in
//! `h2`. Frames of a local experimental ethertype (no IP: nothing else talks, IPv6 is
//! off) are injected on a1 and a2 and sent by br0, and caught by packet sockets of that
//! ethertype on a1, a2, br0 and b1 (which sees only what the bridge passes up on the
//! port: link-local frames). Per ruleset, every frame's catchers and every counter of
//! `nft list ruleset` must be the kernel's.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::nft::{NftSide, Target};
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

fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A non-blocking packet socket for ETHERTYPE frames on `dev`.
fn packet_socket(dev: &str) -> io::Result<OwnedFd> {
    packet_socket_for(dev, ETHERTYPE)
}

/// A non-blocking packet socket for frames of `ethertype` on `dev`.
fn packet_socket_for(dev: &str, ethertype: u16) -> io::Result<OwnedFd> {
    let s = socket(
        libc::AF_PACKET,
        libc::SOCK_RAW | libc::SOCK_NONBLOCK,
        i32::from(ethertype.to_be()),
    )?;
    let name = std::ffi::CString::new(dev).expect("name");
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ethertype.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a valid sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            s.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
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
    /// An IPv4/UDP frame to 10.9.9.9 with this destination port instead.
    udp: Option<u16>,
}

fn probes() -> Vec<Probe> {
    let p = |id, from, src, dst, pad| Probe {
        id,
        from,
        src,
        dst,
        pad,
        udp: None,
    };
    let udp = |id, dport| Probe {
        udp: Some(dport),
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
    if let Some(dport) = p.udp {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2(p.src, p.dst)
            .ipv4([10, 9, 9, 1], [10, 9, 9, 9], 64)
            .udp(4000, dport)
            .write(&mut v, &data)
            .expect("udp frame");
        return v;
    }
    let mut f = p.dst.to_vec();
    f.extend_from_slice(&p.src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&p.id.to_be_bytes());
    f.extend(std::iter::repeat_n(0u8, p.pad));
    f
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

/// Per catcher (a1, a2, br0, b1): the ids it caught, sorted.
fn observe(side: &Side, probes: &[Probe]) -> Vec<(&'static str, Vec<u32>)> {
    let a1 = in_netns(&side.h1, || packet_socket("a1")).unwrap();
    let a2 = in_netns(&side.h2, || packet_socket("a2")).unwrap();
    let br0 = in_netns(&side.br, || packet_socket("br0")).unwrap();
    let br0_ip = in_netns(&side.br, || packet_socket_for("br0", 0x0800)).unwrap();
    let b1 = in_netns(&side.br, || packet_socket("b1")).unwrap();
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
    let mut out = Vec::new();
    for (name, s) in [
        ("a1", &a1),
        ("a2", &a2),
        ("br0", &br0),
        ("b1", &b1),
        ("br0 ip", &br0_ip),
    ] {
        let mut ids = caught(s);
        ids.sort_unstable();
        out.push((name, ids));
    }
    out
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

#[test]
fn bridge_chains_see_what_the_kernel_s_bridge_hooks_see() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Side::create("k");
    let shim = Side::create("s");
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let limit = Duration::from_secs(60);
    let kside = NftSide {
        netns: kernel.br.name().to_string(),
        target: Target::Kernel,
        nft: "nft".into(),
        limit,
    };
    let sside = NftSide {
        netns: shim.br.name().to_string(),
        target: Target::Shim {
            preload: bins.preload.clone(),
            socket: daemon.socket().into(),
        },
        nft: "nft".into(),
        limit,
    };
    let probes = probes();
    for (name, ruleset) in RULESETS {
        let file = std::env::temp_dir().join(format!(
            "nftshim-bridge-e2e-{}-{}.nft",
            std::process::id(),
            name.replace(' ', "-")
        ));
        std::fs::write(&file, ruleset).unwrap();
        for side in [&kside, &sside] {
            let out = nft_in(side, &["-f", file.to_str().unwrap()]);
            assert!(out.success(), "{name}: {out:?}\n{}", daemon.log_tail(20));
        }
        let _ = std::fs::remove_file(&file);
        // Let the data plane switch to the new programs.
        std::thread::sleep(Duration::from_millis(300));
        let k = observe(&kernel, &probes);
        let s = observe(&shim, &probes);
        assert_eq!(k, s, "{name}: frames caught (kernel, nftshimd)");
        let kl = nft_in(&kside, &["list", "ruleset"]);
        let sl = nft_in(&sside, &["list", "ruleset"]);
        assert!(kl.success() && sl.success(), "{kl:?} {sl:?}");
        assert_eq!(kl.stdout, sl.stdout, "{name}: counters (kernel, nftshimd)");
        eprintln!("{name}: {k:?}");
    }
}
