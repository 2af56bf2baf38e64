//! Address writes in input chains, on packets that came in on loopback: the data
//! plane carries them out at lo's TC ingress, before the IP stack, which does not
//! route such packets again (they keep the route they were sent with). A datagram
//! sent to one local address and rewritten to another reaches the socket bound to the
//! new one, in the kernel's namespace and in nftshimd's alike.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const RULESET: &str = r#"table inet t {
  chain input {
    type filter hook input priority 0;
    iif "lo" udp dport 5001 ip daddr set 127.0.0.2
    iifname "lo" udp dport 5001 ip6 daddr set ::1
  }
}
"#;

/// Sends a datagram to `to` and reports whether the socket bound to `bound` got it.
fn delivered(ns: &Netns, to: IpAddr, bound: IpAddr) -> bool {
    in_netns(ns, || {
        let rx = UdpSocket::bind(SocketAddr::new(bound, 5001))?;
        rx.set_read_timeout(Some(Duration::from_millis(500)))?;
        let unspecified: IpAddr = if to.is_ipv4() {
            [0, 0, 0, 0].into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let tx = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
        tx.send_to(b"probe", SocketAddr::new(to, 5001))?;
        let mut buf = [0u8; 16];
        Ok(matches!(rx.recv_from(&mut buf), Ok((5, _))))
    })
    .unwrap_or(false)
}

fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ip {args:?}");
}

#[test]
fn address_writes_on_loopback_packets_reach_the_new_address() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Netns::create_unique("nftshim-lo", "k").unwrap();
    let shim = Netns::create_unique("nftshim-lo", "s").unwrap();
    // Declared after the namespaces: dropped (killed) first, so it lets go of them.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let limit = Duration::from_secs(15);
    let [kside, sside] = daemon.sides(&bins.preload, (kernel.name(), shim.name()), "nft", limit);
    let sides = [(&kernel, kside), (&shim, sside)];
    let v4 = |s: &str| -> IpAddr { s.parse().unwrap() };
    for (ns, side) in &sides {
        ip(&["-n", ns.name(), "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            "fd00::5/128",
            "dev",
            "lo",
            "nodad",
        ]);
        // Without the rules, nothing listens where the datagrams go.
        assert!(!delivered(ns, v4("127.0.0.1"), v4("127.0.0.2")));
        assert!(!delivered(ns, v4("fd00::5"), v4("::1")));
        let out = side.run_program("nft".as_ref(), &["-f", "-"], Some(RULESET.as_bytes()));
        assert!(out.success(), "{out:?}\n{}", daemon.log_tail(20));
    }
    for (ns, side) in &sides {
        let what = format!("{:?}", side.target);
        assert!(
            delivered(ns, v4("127.0.0.1"), v4("127.0.0.2")),
            "{what}: IPv4 datagram not rewritten\n{}",
            daemon.log_tail(20)
        );
        assert!(
            delivered(ns, v4("fd00::5"), v4("::1")),
            "{what}: IPv6 datagram not rewritten\n{}",
            daemon.log_tail(20)
        );
    }
}
