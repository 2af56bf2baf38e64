//! Docker-style iptables rulesets enforced through the eBPF data plane, compared with
//! the kernel: the unmodified `iptables-nft-restore` loads the same ruleset into a
//! kernel namespace and (through the interposer) into an nftshimd namespace, each the
//! `fw` of a [`Topology`] (`peer -- fw -- far`, `f1` standing for `docker0`). Both
//! must save back what was restored, and real TCP/UDP traffic (inbound, forwarded,
//! the replies of fw's own connections) must meet the same fate on both sides, and
//! the fate the ruleset says. The rulesets use the compat extensions iptables-nft
//! cannot express natively: `-m conntrack`, `-m comment`, `-m multiport` (inverted
//! too), `-j REJECT` with a TCP reset and an ICMP error. Needs root.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::iptables::strip_comments;
use nft_tests::netns::Netns;
use nft_tests::nft::{CmdOutput, NftSide, Target};
use nft_tests::packets::{in_netns, Topology};

/// Docker's filter table for one bridge (`f1`, the far side) and one published
/// port (far's TCP 80, and UDP 7005/7020), a DOCKER-USER rule blocking a port
/// range, and a host that takes only admin ports, as `iptables-nft-save` prints it.
const FORWARDING: &str = "\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p tcp -m multiport --dports 22,1000:1010 -m comment --comment \"admin ports\" -j ACCEPT
-A INPUT -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o f1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o f1 -j DOCKER
-A FORWARD -i f1 ! -o f1 -j ACCEPT
-A FORWARD -i f1 -o f1 -j ACCEPT
-A DOCKER -d 10.7.2.2/32 ! -i f1 -o f1 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 10.7.2.2/32 ! -i f1 -o f1 -p udp -m udp --dport 7005 -j ACCEPT
-A DOCKER -d 10.7.2.2/32 ! -i f1 -o f1 -p udp -m udp --dport 7020 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i f1 ! -o f1 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o f1 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -s 10.7.1.2/32 -p udp -m multiport --dports 7000:7010 -m comment --comment \"user block\" -j DROP
-A DOCKER-USER -j RETURN
COMMIT
";

/// A host that answers what it does not serve: a TCP reset on 113 and on every
/// unprivileged port but its admin range, an ICMP port unreachable for UDP. Only
/// INPUT exists (the restore saves back FORWARD and OUTPUT too).
const REJECTING: &str = "\
*filter
:INPUT DROP [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m multiport --dports 22,1000:1010 -m comment --comment \"admin ports\" -j ACCEPT
-A INPUT -p tcp -m tcp --dport 113 -j REJECT --reject-with tcp-reset
-A INPUT -p tcp -m multiport ! --dports 0:1023 -j REJECT --reject-with tcp-reset
-A INPUT -p udp -m udp --dport 53 -j ACCEPT
-A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable
COMMIT
";

/// [`REJECTING`] for IPv6: ICMPv6 echo requests in, UDP answered with an
/// administratively prohibited.
const REJECTING6: &str = "\
*filter
:INPUT DROP [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 22,1000:1010 -m comment --comment \"admin ports\" -j ACCEPT
-A INPUT -p tcp -m tcp --dport 113 -j REJECT --reject-with tcp-reset
-A INPUT -p tcp -m multiport ! --dports 0:1023 -j REJECT --reject-with tcp-reset
-A INPUT -p udp -m udp --dport 53 -j ACCEPT
-A INPUT -p udp -j REJECT --reject-with icmp6-adm-prohibited
COMMIT
";

/// The save of a restore that declared only INPUT: `*-save` lists the other built-in
/// chains too.
fn with_builtins(rules: &str) -> String {
    rules.replace(
        ":INPUT DROP [0:0]\n",
        ":INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
    )
}

/// What became of a connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Connected (TCP) or answered (UDP), and the echo came back.
    Echoed,
    /// A TCP reset or an ICMP port unreachable (ECONNREFUSED).
    Refused,
    /// An ICMP administratively prohibited (EACCES).
    Prohibited,
    /// Nothing came back.
    TimedOut,
}

const WAIT: Duration = Duration::from_millis(1200);

fn tcp(ns: &Netns, addr: &str, port: u16) -> Fate {
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    in_netns(ns, || {
        let mut s = match TcpStream::connect_timeout(&to, WAIT) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(Fate::Refused),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Ok(Fate::TimedOut)
            }
            Err(e) => return Err(e),
        };
        s.set_read_timeout(Some(WAIT))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 8];
        Ok(match s.read(&mut buf) {
            Ok(4) if &buf[..4] == b"ping" => Fate::Echoed,
            _ => Fate::TimedOut,
        })
    })
    .unwrap()
}

fn udp(ns: &Netns, addr: &str, port: u16) -> Fate {
    in_netns(ns, || {
        let any = if addr.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let s = UdpSocket::bind(any)?;
        s.connect(format!("{addr}:{port}"))?;
        s.set_read_timeout(Some(WAIT))?;
        s.send(b"ping")?;
        let mut buf = [0u8; 8];
        Ok(match s.recv(&mut buf) {
            Ok(4) if &buf[..4] == b"ping" => Fate::Echoed,
            Ok(_) => Fate::TimedOut,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Fate::Refused,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Fate::Prohibited,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                Fate::TimedOut
            }
            Err(e) => return Err(e),
        })
    })
    .unwrap()
}

/// Echo servers in `ns` (any address, IPv4 and IPv6) on these TCP and UDP ports, for
/// the test's life.
fn serve(ns: &Netns, tcp_ports: &[u16], udp_ports: &[u16]) {
    let (tcps, udps) = in_netns(ns, || {
        let t: Vec<TcpListener> = tcp_ports
            .iter()
            .map(|p| TcpListener::bind(("::", *p)))
            .collect::<Result<_, _>>()?;
        let u: Vec<UdpSocket> = udp_ports
            .iter()
            .map(|p| UdpSocket::bind(("::", *p)))
            .collect::<Result<_, _>>()?;
        Ok((t, u))
    })
    .unwrap();
    for l in tcps {
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8];
                    let n = c.read(&mut buf).unwrap_or(0);
                    let _ = c.write_all(&buf[..n]);
                });
            }
        });
    }
    for s in udps {
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
    }
}

/// A topology with the echo servers the probes talk to.
fn topology(tag: &str) -> Topology {
    let topo = Topology::create("nftshim-docker", tag).unwrap();
    serve(&topo.fw, &[22, 113, 500, 1005, 2222], &[53, 5353]);
    serve(&topo.peer, &[9000], &[]);
    serve(&topo.far, &[80, 81], &[7005, 7020]);
    topo
}

/// One side: its topology and the iptables clients of its `fw`.
struct Side<'t> {
    topo: &'t Topology,
    fw: NftSide,
}

impl Side<'_> {
    fn new(topo: &Topology, target: Target) -> Side<'_> {
        let fw = NftSide {
            netns: topo.fw.name().to_string(),
            target,
            nft: "nft".into(),
            limit: Duration::from_secs(30),
        };
        Side { topo, fw }
    }

    /// `TOOL-nft-restore` (iptables, ip6tables) of `rules`.
    fn restore(&self, tool: &str, rules: &str) -> CmdOutput {
        self.fw.run_program(
            format!("{tool}-nft-restore").as_ref(),
            &[] as &[&str],
            Some(rules.as_bytes()),
        )
    }

    fn save(&self, tool: &str) -> String {
        let out = self
            .fw
            .run_program(format!("{tool}-nft-save").as_ref(), &[] as &[&str], None);
        assert!(out.success(), "{tool}-nft-save: {out:?}");
        strip_comments(&out.stdout)
    }
}

/// A probe: its name, how to run it on a side, and the fate the ruleset gives it.
type Probe = (&'static str, fn(&Topology) -> Fate, Fate);

const IPT: &str = "iptables";
const IP6T: &str = "ip6tables";
const FAR: &str = "10.7.2.2";
const FW: &str = "10.7.1.1";
const PEER: &str = "10.7.1.2";
const FW6: &str = "[fd07:1::1]";
const PEER6: &str = "[fd07:1::2]";

/// Every probe's fate on both sides, and what the ruleset says it must be.
fn probe_both(kernel: &Side, shim: &Side, daemon: &Daemon, probes: &[Probe]) {
    let mut wrong = Vec::new();
    for (name, run, expected) in probes {
        let k = run(kernel.topo);
        let s = run(shim.topo);
        if k != *expected || s != *expected {
            wrong.push(format!(
                "{name}: kernel {k:?}, nftshimd {s:?}, expected {expected:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        daemon.log_tail(20)
    );
}

/// Restores `rules` with `tool` on both sides; both must succeed and save back `saved`.
fn load(kernel: &Side, shim: &Side, daemon: &Daemon, tool: &str, rules: &str, saved: &str) {
    for (side, who) in [(kernel, "kernel"), (shim, "nftshimd")] {
        let out = side.restore(tool, rules);
        assert!(
            out.success(),
            "{who}: {tool}-nft-restore: {out:?}\n{}",
            daemon.log_tail(10)
        );
    }
    let (k, s) = (kernel.save(tool), shim.save(tool));
    assert_eq!(k, saved, "the kernel saves back what was restored");
    assert_eq!(s, k, "nftshimd saves back what the kernel does");
}

#[test]
fn docker_rulesets_enforced_as_the_kernel_does() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let (k_topo, s_topo) = (topology("k"), topology("s"));
    // Declared after the namespaces it serves: dropped (killed) first.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let kernel = Side::new(&k_topo, Target::Kernel);
    let shim = Side::new(
        &s_topo,
        Target::Shim {
            preload: bins.preload.clone(),
            socket: daemon.socket().into(),
        },
    );

    load(&kernel, &shim, &daemon, IPT, FORWARDING, FORWARDING);
    probe_both(
        &kernel,
        &shim,
        &daemon,
        &[
            // Inbound: the multiport admin ports, UDP 53; the rest hits the DROP policy.
            ("tcp peer->fw:22", |t| tcp(&t.peer, FW, 22), Fate::Echoed),
            (
                "tcp peer->fw:1005",
                |t| tcp(&t.peer, FW, 1005),
                Fate::Echoed,
            ),
            (
                "tcp peer->fw:2222",
                |t| tcp(&t.peer, FW, 2222),
                Fate::TimedOut,
            ),
            ("udp peer->fw:53", |t| udp(&t.peer, FW, 53), Fate::Echoed),
            (
                "udp peer->fw:5353",
                |t| udp(&t.peer, FW, 5353),
                Fate::TimedOut,
            ),
            // fw's own connection: its replies come in as ESTABLISHED.
            (
                "tcp fw->peer:9000",
                |t| tcp(&t.fw, PEER, 9000),
                Fate::Echoed,
            ),
            // Forwarded: the published port through DOCKER, replies through the
            // conntrack rule; unpublished ports hit FORWARD's policy; DOCKER-USER's
            // multiport range blocks 7005 before DOCKER publishes it.
            ("tcp peer->far:80", |t| tcp(&t.peer, FAR, 80), Fate::Echoed),
            (
                "tcp peer->far:81",
                |t| tcp(&t.peer, FAR, 81),
                Fate::TimedOut,
            ),
            (
                "udp peer->far:7005",
                |t| udp(&t.peer, FAR, 7005),
                Fate::TimedOut,
            ),
            (
                "udp peer->far:7020",
                |t| udp(&t.peer, FAR, 7020),
                Fate::Echoed,
            ),
            // From the bridge out: `-i f1 ! -o f1 -j ACCEPT`.
            (
                "tcp far->peer:9000",
                |t| tcp(&t.far, PEER, 9000),
                Fate::Echoed,
            ),
        ],
    );

    // What the DROP policies dropped agrees too (OUTPUT's count depends on when each
    // side's TCP stack sends its last ACKs and FINs, not on the ruleset).
    let policies = |save: &str| -> Vec<String> {
        save.lines()
            .filter(|l| l.starts_with(":INPUT") || l.starts_with(":FORWARD"))
            .map(str::to_string)
            .collect()
    };
    let counted = shim.save(IPT);
    assert_eq!(
        policies(&counted),
        policies(&kernel.save(IPT)),
        "policy counters"
    );

    // Docker's chains with a rejecting INPUT (FORWARD DROP and OUTPUT declared, as
    // iptables-nft-restore of a whole filter table does): the answers leave as the
    // kernel's, locally generated (OUTPUT, not FORWARD), and reach the client.
    let both = FORWARDING.replace(
        "-A INPUT -p udp -m udp --dport 53 -j ACCEPT\n",
        "-A INPUT -p udp -m udp --dport 53 -j ACCEPT\n-A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable\n-A INPUT -p tcp -m tcp --dport 113 -j REJECT --reject-with tcp-reset\n",
    );
    load(&kernel, &shim, &daemon, IPT, &both, &both);
    probe_both(
        &kernel,
        &shim,
        &daemon,
        &[
            ("tcp peer->fw:22", |t| tcp(&t.peer, FW, 22), Fate::Echoed),
            ("udp peer->fw:53", |t| udp(&t.peer, FW, 53), Fate::Echoed),
            (
                "udp peer->fw:5353",
                |t| udp(&t.peer, FW, 5353),
                Fate::Refused,
            ),
            ("tcp peer->fw:113", |t| tcp(&t.peer, FW, 113), Fate::Refused),
            (
                "tcp peer->fw:2222",
                |t| tcp(&t.peer, FW, 2222),
                Fate::TimedOut,
            ),
            ("tcp peer->far:80", |t| tcp(&t.peer, FAR, 80), Fate::Echoed),
            (
                "tcp peer->far:81",
                |t| tcp(&t.peer, FAR, 81),
                Fate::TimedOut,
            ),
            (
                "tcp fw->peer:9000",
                |t| tcp(&t.fw, PEER, 9000),
                Fate::Echoed,
            ),
        ],
    );
    let answered = shim.save(IPT);
    assert_eq!(
        policies(&answered),
        policies(&kernel.save(IPT)),
        "policy counters with rejects"
    );

    for side in [&kernel, &shim] {
        assert!(side.fw.run(&["flush", "ruleset"]).success());
    }
    load(
        &kernel,
        &shim,
        &daemon,
        IPT,
        REJECTING,
        &with_builtins(REJECTING),
    );
    probe_both(
        &kernel,
        &shim,
        &daemon,
        &[
            ("tcp peer->fw:22", |t| tcp(&t.peer, FW, 22), Fate::Echoed),
            (
                "tcp peer->fw:1005",
                |t| tcp(&t.peer, FW, 1005),
                Fate::Echoed,
            ),
            // --reject-with tcp-reset, and ! --dports 0:1023.
            ("tcp peer->fw:113", |t| tcp(&t.peer, FW, 113), Fate::Refused),
            (
                "tcp peer->fw:2222",
                |t| tcp(&t.peer, FW, 2222),
                Fate::Refused,
            ),
            (
                "tcp peer->fw:500",
                |t| tcp(&t.peer, FW, 500),
                Fate::TimedOut,
            ),
            ("udp peer->fw:53", |t| udp(&t.peer, FW, 53), Fate::Echoed),
            // --reject-with icmp-port-unreachable
            (
                "udp peer->fw:5353",
                |t| udp(&t.peer, FW, 5353),
                Fate::Refused,
            ),
            (
                "tcp fw->peer:9000",
                |t| tcp(&t.fw, PEER, 9000),
                Fate::Echoed,
            ),
        ],
    );

    for side in [&kernel, &shim] {
        assert!(side.fw.run(&["flush", "ruleset"]).success());
    }
    load(
        &kernel,
        &shim,
        &daemon,
        IP6T,
        REJECTING6,
        &with_builtins(REJECTING6),
    );
    probe_both(
        &kernel,
        &shim,
        &daemon,
        &[
            ("tcp6 peer->fw:22", |t| tcp(&t.peer, FW6, 22), Fate::Echoed),
            (
                "tcp6 peer->fw:113",
                |t| tcp(&t.peer, FW6, 113),
                Fate::Refused,
            ),
            (
                "tcp6 peer->fw:2222",
                |t| tcp(&t.peer, FW6, 2222),
                Fate::Refused,
            ),
            (
                "tcp6 peer->fw:500",
                |t| tcp(&t.peer, FW6, 500),
                Fate::TimedOut,
            ),
            ("udp6 peer->fw:53", |t| udp(&t.peer, FW6, 53), Fate::Echoed),
            (
                "udp6 peer->fw:5353",
                |t| udp(&t.peer, FW6, 5353),
                Fate::Prohibited,
            ),
            (
                "tcp6 fw->peer:9000",
                |t| tcp(&t.fw, PEER6, 9000),
                Fate::Echoed,
            ),
        ],
    );
}
