//! `reject` in forward chains, kernel against nftshimd: the same ruleset in the `fw`
//! namespace of two copies of the packet suite's topology (peer — fw — far, see
//! `nft_tests::packets`), the same frames injected on peer's `p0` toward far (and from
//! a source fw has no route back to), and the answers peer receives captured on `p0`
//! and compared byte for byte: Ethernet and IP headers, ICMP type and code, the quoted
//! packet (cut at 576 / 1280 bytes of answer), TCP reset fields.
//!
//! Not compared: the IPv4 identification (the kernel's comes from its ident hash) and
//! with it the IPv4 header checksum (checked valid on both sides instead), and the
//! IPv6 flow label of ICMPv6 errors (the kernel's is a hash of the flow under a random
//! key, auto_flowlabels). The topology turns fw's per-destination ICMP rate limits
//! off (the eBPF programs do not rate-limit: a known difference).
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, PacketBuilder};
use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::packets::{in_netns, Topology};

/// The topology's MAC addresses of peer's `p0` and fw's `f0`.
const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 1, 2];
const MAC_FW0: [u8; 6] = [0x02, 0, 0, 0, 1, 1];

const RULESET: &str = "table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    udp dport 1001 reject
    udp dport 1002 reject with icmpx host-unreachable
    meta nfproto ipv4 udp dport 1003 reject with icmp net-unreachable
    meta nfproto ipv6 udp dport 1003 reject with icmpv6 no-route
    meta nfproto ipv4 udp dport 1004 reject with icmp admin-prohibited
    meta nfproto ipv6 udp dport 1004 reject with icmpv6 admin-prohibited
    udp dport 1005 reject with icmpx admin-prohibited
    meta nfproto ipv4 udp dport 1006 reject with icmp host-prohibited
    meta nfproto ipv6 udp dport 1006 reject with icmpv6 addr-unreachable
    tcp dport 1007 reject with tcp reset
    tcp dport 1008 reject
    meta nfproto ipv4 icmp type echo-request reject with icmp port-unreachable
    meta nfproto ipv6 icmpv6 type echo-request reject with icmpv6 policy-fail
  }
}
";

/// The same answers from iptables' and ip6tables' REJECT (compat targets).
const IPTABLES: &str = "\
*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -p udp -m udp --dport 1001 -j REJECT
-A FORWARD -p udp -m udp --dport 1002 -j REJECT --reject-with icmp-host-unreachable
-A FORWARD -p udp -m udp --dport 1003 -j REJECT --reject-with icmp-net-unreachable
-A FORWARD -p udp -m udp --dport 1004 -j REJECT --reject-with icmp-admin-prohibited
-A FORWARD -p udp -m udp --dport 1005 -j REJECT --reject-with icmp-proto-unreachable
-A FORWARD -p udp -m udp --dport 1006 -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -p tcp -m tcp --dport 1007 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp -m tcp --dport 1008 -j REJECT --reject-with icmp-net-prohibited
-A FORWARD -p icmp -m icmp --icmp-type 8 -j REJECT
COMMIT
";

const IP6TABLES: &str = "\
*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -p udp -m udp --dport 1001 -j REJECT
-A FORWARD -p udp -m udp --dport 1002 -j REJECT --reject-with icmp6-addr-unreachable
-A FORWARD -p udp -m udp --dport 1003 -j REJECT --reject-with icmp6-no-route
-A FORWARD -p udp -m udp --dport 1004 -j REJECT --reject-with icmp6-adm-prohibited
-A FORWARD -p udp -m udp --dport 1005 -j REJECT --reject-with icmp6-policy-fail
-A FORWARD -p udp -m udp --dport 1006 -j REJECT --reject-with icmp6-reject-route
-A FORWARD -p tcp -m tcp --dport 1007 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp -m tcp --dport 1008 -j REJECT --reject-with icmp6-port-unreachable
-A FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j REJECT
COMMIT
";

#[derive(Clone, Copy, Debug)]
enum L4 {
    Udp(u16),
    Syn(u16),
    /// A segment with ACK and payload: the reset takes its acknowledgment number.
    Ack(u16),
    Echo,
}

#[derive(Clone, Copy, Debug)]
struct Probe {
    v6: bool,
    /// From an address fw has no route back to: no answer.
    spoofed: bool,
    l4: L4,
    /// IPv4 TOS / IPv6 traffic class.
    tos: u8,
    /// Payload bytes.
    len: usize,
}

fn probes() -> Vec<Probe> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let p = |l4, tos, len| Probe {
            v6,
            spoofed: false,
            l4,
            tos,
            len,
        };
        for port in 1001..=1006 {
            out.push(p(L4::Udp(port), 0, 32));
        }
        // DSCP and ECN bits: the IPv4 answer keeps the TOS bits with precedence 6.
        out.push(p(L4::Udp(1001), 0xb9, 32));
        // Longer than an answer may quote.
        out.push(p(L4::Udp(1002), 0, 1400));
        out.push(p(L4::Syn(1007), 0, 0));
        out.push(p(L4::Syn(1007), 0, 20));
        out.push(p(L4::Ack(1007), 0, 100));
        out.push(p(L4::Syn(1008), 0, 0));
        out.push(p(L4::Echo, 0, 56));
        // Forwarded (fw routes to far) but unanswerable.
        out.push(Probe {
            spoofed: true,
            ..p(L4::Udp(1001), 0, 32)
        });
        out.push(Probe {
            spoofed: true,
            ..p(L4::Syn(1007), 0, 0)
        });
    }
    out
}

fn frame(p: &Probe, n: u32) -> Vec<u8> {
    let payload: Vec<u8> = (0..p.len).map(|i| (i as u32 + n) as u8).collect();
    let (src, dst): (IpAddr, IpAddr) = match (p.v6, p.spoofed) {
        (false, false) => (
            Ipv4Addr::new(10, 7, 1, 2).into(),
            Ipv4Addr::new(10, 7, 2, 2).into(),
        ),
        (false, true) => (
            Ipv4Addr::new(192, 0, 2, 9).into(),
            Ipv4Addr::new(10, 7, 2, 2).into(),
        ),
        (true, false) => (
            "fd07:1::2".parse::<Ipv6Addr>().unwrap().into(),
            "fd07:2::2".parse::<Ipv6Addr>().unwrap().into(),
        ),
        (true, true) => (
            "2001:db8::5".parse::<Ipv6Addr>().unwrap().into(),
            "fd07:2::2".parse::<Ipv6Addr>().unwrap().into(),
        ),
    };
    let b = PacketBuilder::ethernet2(MAC_PEER, MAC_FW0);
    let b = match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(d)) => b.ipv4(a.octets(), d.octets(), 64),
        (IpAddr::V6(a), IpAddr::V6(d)) => b.ipv6(a.octets(), d.octets(), 64),
        _ => unreachable!(),
    };
    let mut v = Vec::new();
    let sport = 40000 + n as u16;
    match p.l4 {
        L4::Udp(port) => b.udp(sport, port).write(&mut v, &payload),
        L4::Syn(port) => b
            .tcp(sport, port, 1000 + n, 64000)
            .syn()
            .write(&mut v, &payload),
        L4::Ack(port) => b
            .tcp(sport, port, 5000 + n, 64000)
            .ack(777 + n)
            .psh()
            .write(&mut v, &payload),
        L4::Echo => {
            let hdr = IcmpEchoHeader {
                id: 0x4e53,
                seq: n as u16,
            };
            if p.v6 {
                b.icmpv6(Icmpv6Type::EchoRequest(hdr))
                    .write(&mut v, &payload)
            } else {
                b.icmpv4(Icmpv4Type::EchoRequest(hdr))
                    .write(&mut v, &payload)
            }
        }
    }
    .expect("probe frame");
    if p.tos != 0 {
        if p.v6 {
            // Traffic class: the nibbles after the version.
            v[14] = 0x60 | (p.tos >> 4);
            v[15] = (v[15] & 0x0f) | (p.tos << 4);
        } else {
            v[15] = p.tos;
            v[24] = 0;
            v[25] = 0;
            let c = ipv4_checksum(&v[14..34]);
            v[24..26].copy_from_slice(&c.to_be_bytes());
        }
    }
    v
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    nft_tests::packets::packet_socket(ifname, libc::ETH_P_ALL as u16, libc::SOCK_NONBLOCK)
}

/// The frames queued on `s` that are fw's answers: from f0 to p0, an ICMP destination
/// unreachable, an ICMPv6 one, or a TCP reset.
fn answers(s: &OwnedFd) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            break;
        }
        let f = &buf[..n as usize];
        if f.len() < 54 || f[0..6] != MAC_PEER || f[6..12] != MAC_FW0 {
            continue;
        }
        let answer = match (f[12], f[13]) {
            (0x08, 0x00) => {
                let l4 = 14 + usize::from(f[14] & 0xf) * 4;
                match f[23] {
                    1 => f.get(l4) == Some(&3),
                    6 => f.get(l4 + 13).is_some_and(|fl| fl & 0x04 != 0),
                    _ => false,
                }
            }
            (0x86, 0xdd) => match f[20] {
                58 => f[54] == 1,
                6 => f.get(54 + 13).is_some_and(|fl| fl & 0x04 != 0),
                _ => false,
            },
            _ => false,
        };
        if answer {
            out.push(f.to_vec());
        }
    }
    out
}

/// What is compared of an answer: everything but the IPv4 identification and header
/// checksum (the latter checked first) and an ICMPv6 error's flow label. A TCP
/// reset's checksum must be valid; the kernel's may also be the pseudo-header sum
/// it leaves for the device to complete (CHECKSUM_PARTIAL, which veth never
/// completes), and is compared as completed.
fn comparable(f: &[u8], kernel: bool) -> Result<Vec<u8>, String> {
    let mut v = f.to_vec();
    let v4 = v[12..14] == [0x08, 0x00];
    let (l4, proto) = if v4 {
        let hl = usize::from(v[14] & 0xf) * 4;
        if ipv4_checksum(&v[14..14 + hl]) != 0 {
            return Err(format!("bad IPv4 header checksum: {f:02x?}"));
        }
        v[18..20].fill(0);
        v[24..26].fill(0);
        (14 + hl, v[23])
    } else {
        if v[20] == 58 {
            v[15] &= 0xf0;
            v[16..18].fill(0);
        }
        (54, v[20])
    };
    if proto == 6 {
        let seg = &f[l4..];
        let mut pseudo = if v4 {
            f[26..34].to_vec()
        } else {
            f[22..54].to_vec()
        };
        pseudo.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 6]);
        let mut zeroed = seg.to_vec();
        zeroed[16..18].fill(0);
        pseudo.extend_from_slice(&zeroed);
        let full = ipv4_checksum(&pseudo);
        let field = u16::from_be_bytes([seg[16], seg[17]]);
        // The folded pseudo-header sum, not inverted: what a partial checksum holds.
        let partial = !ipv4_checksum(&pseudo[..pseudo.len() - seg.len()]);
        if field != full && !(kernel && field == partial) {
            return Err(format!("bad TCP checksum {field:04x}: {f:02x?}"));
        }
        v[l4 + 16..l4 + 18].copy_from_slice(&full.to_be_bytes());
    }
    Ok(v)
}

/// Per probe, the comparable answers peer got.
fn observe(t: &Topology, probes: &[Probe], kernel: bool) -> Vec<Vec<Vec<u8>>> {
    in_netns(&t.peer, || {
        let cap = packet_socket("p0")?;
        let tx = packet_socket("p0")?;
        answers(&cap);
        let mut out = Vec::new();
        for (i, p) in probes.iter().enumerate() {
            let f = frame(p, i as u32);
            // SAFETY: f is valid for its length.
            if unsafe { libc::send(tx.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
            std::thread::sleep(Duration::from_millis(150));
            let got = answers(&cap)
                .iter()
                .map(|a| comparable(a, kernel).map_err(io::Error::other))
                .collect::<io::Result<Vec<_>>>()?;
            out.push(got);
        }
        Ok(out)
    })
    .unwrap()
}

/// `forget_peer`: fw's neighbour entries for peer are removed after the load, so that
/// the first answer of each family waits for ARP / neighbour discovery.
fn same_answers_as_the_kernel(tag: &str, loads: &[(&str, &str)], forget_peer: bool) {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Topology::create(tag, "k").unwrap();
    let shim = Topology::create(tag, "s").unwrap();
    // Declared after the namespaces: dropped (killed) first, so it lets go of them.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let limit = Duration::from_secs(15);
    let sides = daemon.sides(
        &bins.preload,
        (kernel.fw.name(), shim.fw.name()),
        "nft",
        limit,
    );
    for side in &sides {
        for (program, input) in loads {
            let args: &[&str] = if *program == "nft" { &["-f", "-"] } else { &[] };
            let out = side.run_program(program.as_ref(), args, Some(input.as_bytes()));
            assert!(out.success(), "{out:?}\n{}", daemon.log_tail(20));
        }
    }
    if forget_peer {
        for t in [&kernel, &shim] {
            for addr in ["10.7.1.2", "fd07:1::2"] {
                let ok = std::process::Command::new("ip")
                    .args(["-n", t.fw.name(), "neigh", "del", addr, "dev", "f0"])
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
    }
    let probes = probes();
    let k = observe(&kernel, &probes, true);
    let s = observe(&shim, &probes, false);
    // The kernel answers every probe but the spoofed ones, once.
    for (p, a) in probes.iter().zip(&k) {
        assert_eq!(
            a.len(),
            usize::from(!p.spoofed),
            "the kernel's answers to {p:?}"
        );
    }
    let differ: Vec<String> = probes
        .iter()
        .zip(&k)
        .zip(&s)
        .filter(|((_, a), b)| a != b)
        .map(|((p, a), b)| format!("{p:?}:\n  nftshimd {b:02x?}\n  kernel   {a:02x?}"))
        .collect();
    assert!(
        differ.is_empty(),
        "answers that differ:\n{}\n{}",
        differ.join("\n"),
        daemon.log_tail(20)
    );
}

#[test]
fn forward_rejects_answer_as_the_kernel() {
    same_answers_as_the_kernel("nftshim-rejf", &[("nft", RULESET)], false);
}

#[test]
fn forward_reject_answers_wait_for_the_neighbour() {
    same_answers_as_the_kernel("nftshim-rejfn", &[("nft", RULESET)], true);
}

#[test]
fn forward_reject_targets_answer_as_the_kernel() {
    same_answers_as_the_kernel(
        "nftshim-rejfx",
        &[
            ("iptables-nft-restore", IPTABLES),
            ("ip6tables-nft-restore", IP6TABLES),
        ],
        false,
    );
}

/// The answers assume the kernel's defaults for the sysctls that shape them: with
/// another default TTL the namespace's forward rejects are refused (the whole batch),
/// and taken once it is back.
#[test]
fn forward_rejects_refused_with_another_default_ttl() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let ns = nft_tests::netns::Netns::create_unique("nftshim-rejft", "s").unwrap();
    // Declared after the namespace: dropped (killed) first, so it lets go of it.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let side = daemon.side(&bins.preload, ns.name(), "nft", Duration::from_secs(15));
    let ttl = |v: &str| {
        let ok = std::process::Command::new("ip")
            .args(["netns", "exec", ns.name(), "sysctl", "-qw"])
            .arg(format!("net.ipv4.ip_default_ttl={v}"))
            .status()
            .unwrap();
        assert!(ok.success());
    };
    ttl("63");
    let out = side.run_program("nft".as_ref(), &["-f", "-"], Some(RULESET.as_bytes()));
    assert!(
        !out.success() && out.stderr.contains("Operation not supported"),
        "{out:?}"
    );
    assert!(
        daemon.log_tail(50).contains("ip_default_ttl is 63"),
        "{}",
        daemon.log_tail(50)
    );
    ttl("64");
    let out = side.run_program("nft".as_ref(), &["-f", "-"], Some(RULESET.as_bytes()));
    assert!(out.success(), "{out:?}\n{}", daemon.log_tail(20));
}
