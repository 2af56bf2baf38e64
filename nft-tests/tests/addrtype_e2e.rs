//! `-m addrtype` follows the namespace's local routing table, kernel against nftshimd
//! (eBPF data plane): rules are loaded first, then `local` routes are added to the
//! local table (`ip route add local ... table local`) and removed again; UDP
//! datagrams from fw must end where the kernel's take them (peer, fw itself, or
//! dropped by an OUTPUT rule). One route's device is lo, the other's f0, while
//! locally delivered packets leave by lo: `--limit-iface-out` tells them apart as
//! __inet_dev_addr_type() does. Each side runs in fresh namespaces. Needs root.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use nft_tests::bins::Binaries;
use nft_tests::daemon::{run_client, Daemon};
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const NO_ARGS: &[&str] = &[];
const PREFIX: &str = "nftshim-s9addrtype";

const RULES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp -m udp --dport 7100 -m addrtype --dst-type LOCAL -j DROP
-A OUTPUT -p udp -m udp --dport 7101 -m addrtype --dst-type LOCAL --limit-iface-out -j DROP
-A OUTPUT -p udp -m udp --dport 7102 -m addrtype ! --dst-type UNICAST -j DROP
COMMIT
";

const PORTS: [u16; 3] = [7100, 7101, 7102];
const DESTS: [&str; 2] = ["10.60.0.1", "10.61.0.1"];

fn ip(ns: &Netns, args: &[&str]) {
    let ok = Command::new("ip")
        .args(["-n", ns.name()])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip {args:?}");
}

/// UDP listeners on every port, in `ns`.
fn listeners(ns: &Netns) -> Vec<UdpSocket> {
    in_netns(ns, || {
        PORTS
            .iter()
            .map(|p| {
                let s = UdpSocket::bind(("0.0.0.0", *p))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .unwrap()
}

/// Where each datagram from fw ended: "peer", "fw" or "dropped".
fn probe(fw: &Netns, at_fw: &[UdpSocket], at_peer: &[UdpSocket]) -> Vec<String> {
    let sender = in_netns(fw, || UdpSocket::bind("0.0.0.0:0")).unwrap();
    let mut out = Vec::new();
    for dst in DESTS {
        for (i, port) in PORTS.iter().enumerate() {
            let tag = format!("{dst}:{port}");
            // Sending may fail where a rule drops (EPERM): that is "dropped" too.
            let _ = sender.send_to(tag.as_bytes(), (dst, *port));
            let deadline = Instant::now() + Duration::from_millis(700);
            let mut buf = [0u8; 64];
            let fate = loop {
                let got = |s: &UdpSocket, buf: &mut [u8]| {
                    s.recv_from(buf)
                        .ok()
                        .is_some_and(|(n, _)| &buf[..n] == tag.as_bytes())
                };
                if got(&at_peer[i], &mut buf) {
                    break "peer";
                }
                if got(&at_fw[i], &mut buf) {
                    break "fw";
                }
                if Instant::now() > deadline {
                    break "dropped";
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            out.push(format!("{tag} {fate}"));
        }
    }
    out
}

/// The fates of the probes before, with and after the local routes (`daemon`: fw's
/// ruleset through nftshimd).
fn run_side(bins: &Binaries, daemon: Option<&Daemon>) -> Vec<Vec<String>> {
    let fw = Netns::create_unique(PREFIX, "fw").unwrap();
    let peer = Netns::create_unique(PREFIX, "peer").unwrap();
    nft_tests::netns::veth_pair((&fw, "f0", "10.9.0.1/24"), (&peer, "p0", "10.9.0.2/24")).unwrap();
    for a in ["10.60.0.1/32", "10.61.0.1/32"] {
        ip(&peer, &["addr", "add", a, "dev", "lo"]);
    }
    ip(&fw, &["route", "add", "10.60.0.0/15", "via", "10.9.0.2"]);
    let at_fw = listeners(&fw);
    let at_peer = listeners(&peer);

    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    let restored = run_client(&fw, shim, "iptables-nft-restore", NO_ARGS, Some(RULES));
    assert!(
        restored.success(),
        "iptables-nft-restore: {}",
        restored.stderr
    );
    // The data plane attaches, and later follows route changes, after rtnetlink
    // events: the window is the rebuild's time.
    let settle = || std::thread::sleep(Duration::from_millis(1500));
    settle();
    let mut phases = vec![probe(&fw, &at_fw, &at_peer)];
    let routes = [["10.60.0.0/24", "lo"], ["10.61.0.0/24", "f0"]];
    for [net, dev] in routes {
        ip(
            &fw,
            &["route", "add", "local", net, "dev", dev, "table", "local"],
        );
    }
    settle();
    phases.push(probe(&fw, &at_fw, &at_peer));
    for [net, dev] in routes {
        ip(
            &fw,
            &["route", "del", "local", net, "dev", dev, "table", "local"],
        );
    }
    settle();
    phases.push(probe(&fw, &at_fw, &at_peer));
    phases
}

#[test]
fn addrtype_follows_the_local_routing_table() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = run_side(&bins, None);
    let to_peer: Vec<String> = DESTS
        .iter()
        .flat_map(|d| PORTS.iter().map(move |p| format!("{d}:{p} peer")))
        .collect();
    // Without the local routes every destination is UNICAST, reached at peer.
    assert_eq!(kernel[0], to_peer);
    assert_eq!(kernel[2], to_peer);
    // With them: LOCAL, delivered to fw by lo, so dropped but where the route's
    // device (f0) is not the output device (lo) and the rule limits to it.
    assert_eq!(
        kernel[1],
        [
            "10.60.0.1:7100 dropped",
            "10.60.0.1:7101 dropped",
            "10.60.0.1:7102 dropped",
            "10.61.0.1:7100 dropped",
            "10.61.0.1:7101 fw",
            "10.61.0.1:7102 dropped",
        ]
    );
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let shim = run_side(&bins, Some(&daemon));
    assert_eq!(kernel, shim, "kernel vs nftshimd\n{}", daemon.log_tail(30));
}

/// Forms whose answer the mirror cannot give are refused, and their neighbours taken:
/// IPv6 lookups (an inet rule not limited to IPv4), fib's other results, and any
/// lookup while a main route lies inside a local prefix of another type. (The
/// refusal of device-limited lookups beside a VRF device is not tested here: this
/// kernel has no vrf driver.)
#[test]
fn forms_the_mirror_cannot_answer_are_refused() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let shim = Some((&daemon, bins.preload.as_path()));
    let ns = Netns::create_unique(PREFIX, "refuse").unwrap();
    let nft = |rule: &str| {
        let script = format!(
            "flush ruleset\ntable inet t {{\n chain c {{\n  type filter hook input priority 0;\n  {rule}\n }}\n}}\n"
        );
        run_client(&ns, shim, "nft", &["-f", "-"], Some(&script))
    };
    let refused = |out: nft_tests::nft::CmdOutput| {
        !out.success() && out.stderr.contains("Operation not supported")
    };
    let out = nft("fib daddr type local drop");
    assert!(!out.success(), "accepted");
    assert!(refused(out.clone()), "{}", out.stderr);
    assert!(refused(nft("fib daddr . iif oif lo drop")));
    let ok = nft("meta nfproto ipv4 fib daddr . iif type local drop");
    assert!(ok.success(), "{}", ok.stderr);
    // A main route inside a local prefix of another type: the local table's answer
    // depends on whether the tables still share their trie.
    ip(&ns, &["link", "set", "lo", "up"]);
    ip(&ns, &["route", "add", "10.9.0.0/24", "dev", "lo"]);
    ip(
        &ns,
        &[
            "route",
            "add",
            "local",
            "10.0.0.0/8",
            "dev",
            "lo",
            "table",
            "local",
        ],
    );
    // The data plane reads the tables again after the route events.
    std::thread::sleep(Duration::from_millis(500));
    let ipt = |args: &[&str]| run_client(&ns, shim, "iptables-nft", args, None);
    let rule = [
        "-A",
        "INPUT",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "DROP",
    ];
    assert!(run_client(&ns, shim, "nft", &["flush", "ruleset"], None).success());
    let out = ipt(&rule);
    assert!(refused(out.clone()), "{}", out.stderr);
    ip(&ns, &["route", "del", "10.9.0.0/24", "dev", "lo"]);
    std::thread::sleep(Duration::from_millis(500));
    let out = ipt(&rule);
    assert!(out.success(), "{}", out.stderr);
}
