//! xt_socket's lookup (`Insn::XtSocket`, bpf/lib/xt_socket.h) with real sockets: the
//! test thread moves to a fresh network namespace, opens TCP and UDP sockets there,
//! and BPF_PROG_TEST_RUN (whose packets come in on that namespace's loopback, at TC
//! ingress and XDP) must find them as socket_match() does: bound to an address (or
//! an established socket): a match; bound to the any address: a match only with
//! `--nowildcard`; none: no match; an ICMP error finds the socket that sent the packet
//! it quotes; a later fragment gets its first fragment's answer (none without it). The reference has no sockets: where the namespace
//! has none, it and the program agree. Kernel against nftshimd with the same rules:
//! nft-tests/tests/xt_socket_e2e.rs.

mod common;

use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;

use common::frames::{addr, fragment_v4, icmp_error, tcp, udp, with_ah};
use common::load_or_skip;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, LoadedChain, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{Insn, ResidualProgram};

/// Drops what the socket match holds for; accepts the rest.
fn program(nowildcard: bool) -> Program {
    Program::single(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![Rule::new(
            vec![Match::is(Test::Residual(ResidualProgram {
                insns: vec![Insn::XtSocket { nowildcard }],
            }))],
            Action::Drop,
        )],
    })
}

/// Moves this thread into a new network namespace with its loopback up.
fn fresh_netns() -> bool {
    // SAFETY: unshare(2) of this thread's network namespace only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!("SKIPPED: unshare(CLONE_NEWNET) needs root");
        return false;
    }
    // A child forked by this thread starts in its namespace.
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(up, "ip link set lo up");
    true
}

/// Whether the programs (TC ingress, XDP) hold the match for `frame`.
fn matched(loaded: &LoadedChain, frame: &[u8]) -> bool {
    let meta = SkbMeta {
        mark: 0,
        ifindex: 0,
        ingress_ifindex: 0,
    };
    let tc = loaded.run_tc(frame, meta, 1).unwrap().verdict;
    let xdp = loaded.run_xdp(frame, 1).unwrap().verdict;
    assert_eq!(tc, xdp, "TC and XDP differ");
    tc == Verdict::Drop
}

/// A TCP listener on [::]:port with IPV6_V6ONLY (std has no option for it before bind).
fn v6only_listener(port: u16) -> TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        assert_eq!(
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                &one as *const _ as *const _,
                len
            ),
            0
        );
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = port.to_be();
        assert_eq!(
            libc::bind(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            ),
            0
        );
        assert_eq!(libc::listen(fd, 8), 0);
        TcpListener::from_raw_fd(fd)
    }
}

/// Splits an IPv6 UDP frame (8 bytes of payload) into two fragments with
/// identification `id`: the UDP header (more fragments), then the payload.
fn fragment_v6(frame: &[u8], id: u32) -> (Vec<u8>, Vec<u8>) {
    let (eth, ip, rest) = (&frame[..14], &frame[14..54], &frame[54..]);
    let piece = |data: &[u8], offset_units: u16, more: bool| {
        let mut f = eth.to_vec();
        let mut hdr = ip.to_vec();
        hdr[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        hdr[6] = 44;
        f.extend_from_slice(&hdr);
        let off = offset_units << 3 | u16::from(more);
        f.extend_from_slice(&[ip[6], 0]);
        f.extend_from_slice(&off.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(data);
        f
    };
    (piece(&rest[..8], 0, true), piece(&rest[8..], 1, false))
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

#[test]
fn lookups_find_the_namespace_sockets() {
    let handle = std::thread::spawn(|| {
        if !fresh_netns() {
            return;
        }
        let (l4, r4) = (addr("127.0.0.1"), addr("127.0.0.5"));
        let (l6, r6): (IpAddr, IpAddr) = (addr("::1"), addr("::1"));
        let _bound = TcpListener::bind("127.0.0.1:7001").unwrap();
        let any = TcpListener::bind("0.0.0.0:7002").unwrap();
        let _udp_bound = UdpSocket::bind("127.0.0.1:7004").unwrap();
        let _udp_any = UdpSocket::bind("0.0.0.0:7005").unwrap();
        let _bound6 = TcpListener::bind("[::1]:7011").unwrap();
        let _any6 = v6only_listener(7012);
        let _udp_bound6 = UdpSocket::bind("[::1]:7014").unwrap();
        // An established socket accepted by the wildcard listener: bound to 127.0.0.1.
        let client = TcpStream::connect("127.0.0.1:7002").unwrap();
        let (_server, _) = any.accept().unwrap();
        let cport = client.local_addr().unwrap().port();

        // (frame, holds without --nowildcard, holds with it)
        let cases: Vec<(&str, Vec<u8>, bool, bool)> = vec![
            ("tcp bound", tcp(r4, l4, 40000, 7001, SYN), true, true),
            ("tcp any", tcp(r4, l4, 40000, 7002, SYN), false, true),
            ("tcp none", tcp(r4, l4, 40000, 7003, SYN), false, false),
            ("tcp established", tcp(l4, l4, cport, 7002, ACK), true, true),
            ("udp bound", udp(r4, l4, 40000, 7004), true, true),
            ("udp any", udp(r4, l4, 40000, 7005), false, true),
            ("udp none", udp(r4, l4, 40000, 7006), false, false),
            // Ports of UDP on a TCP socket's port: the lookup is per protocol.
            ("udp at a tcp port", udp(r4, l4, 40000, 7001), false, false),
            (
                "icmp error quoting the bound udp socket's packet",
                icmp_error(r4, l4, 3, 3, &udp(l4, r4, 7004, 53), 28),
                true,
                true,
            ),
            (
                "icmp error quoting another port",
                icmp_error(r4, l4, 3, 3, &udp(l4, r4, 7006, 53), 28),
                false,
                false,
            ),
            (
                "icmp error quoting a tcp packet of the established socket",
                icmp_error(r4, l4, 3, 4, &tcp(l4, l4, 7002, cport, ACK), 28),
                true,
                true,
            ),
            ("tcp6 bound", tcp(r6, l6, 40000, 7011, SYN), true, true),
            ("tcp6 any", tcp(r6, l6, 40000, 7012, SYN), false, true),
            ("tcp6 none", tcp(r6, l6, 40000, 7013, SYN), false, false),
            ("udp6 bound", udp(r6, l6, 40000, 7014), true, true),
            // ipv6_find_hdr() without IP6_FH_F_AUTH looks past AH.
            (
                "tcp6 bound after AH",
                with_ah(&tcp(r6, l6, 40000, 7011, SYN)),
                true,
                true,
            ),
            (
                "udp6 bound after AH",
                with_ah(&udp(r6, l6, 40000, 7014)),
                true,
                true,
            ),
            (
                "icmpv6 error after AH quoting the bound udp socket's packet",
                with_ah(&icmp_error(r6, l6, 1, 4, &udp(l6, r6, 7014, 53), 48)),
                true,
                true,
            ),
            (
                "icmpv6 error quoting the bound udp socket's packet",
                icmp_error(r6, l6, 1, 4, &udp(l6, r6, 7014, 53), 48),
                true,
                true,
            ),
            (
                "icmpv6 error quoting another port",
                icmp_error(r6, l6, 1, 4, &udp(l6, r6, 7015, 53), 48),
                false,
                false,
            ),
        ];
        for nowildcard in [false, true] {
            let program = program(nowildcard);
            let compiled = compile_program(&program).unwrap();
            let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
                return;
            };
            for (name, frame, holds, holds_nowildcard) in &cases {
                let want = if nowildcard {
                    *holds_nowildcard
                } else {
                    *holds
                };
                assert_eq!(
                    matched(&loaded, frame),
                    want,
                    "{name}, nowildcard {nowildcard}"
                );
            }
            // A later fragment has no ports: it gets what its first fragment found.
            for (port, id) in [(7004u16, 77u16), (7005, 78)] {
                let (first, later) = fragment_v4(&udp(r4, l4, 40000, port), id);
                let want = port == 7004 || nowildcard;
                assert!(!matched(&loaded, &later), "later fragment before its first");
                assert_eq!(matched(&loaded, &first), want, "first fragment to {port}");
                assert_eq!(matched(&loaded, &later), want, "later fragment to {port}");
            }
            let (first6, later6) = fragment_v6(&udp(r6, l6, 40000, 7014), 80);
            assert!(
                !matched(&loaded, &later6),
                "IPv6 later fragment before its first"
            );
            assert!(matched(&loaded, &first6), "IPv6 first fragment");
            assert!(matched(&loaded, &later6), "IPv6 later fragment");
            let (_, later) = fragment_v4(&udp(r4, l4, 40000, 7004), 79);
            // Where no socket is found, the reference agrees.
            for frame in [
                tcp(r4, l4, 40000, 7003, SYN),
                udp(r6, l6, 40000, 7006),
                later,
            ] {
                let fields = common::frames::fields_of(&frame, 0, 0);
                let want = Reference::new(&program).unwrap().evaluate(&fields).unwrap();
                assert_eq!(want.verdict, Verdict::Accept);
                assert!(!matched(&loaded, &frame));
            }
        }
    });
    handle.join().unwrap();
}
