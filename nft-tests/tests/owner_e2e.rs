//! `-m owner` and nft's `meta skuid/skgid` on locally generated packets, kernel
//! against nftshimd (eBPF data plane), with real sockets owned by other users:
//! senders in `fw` run as uid/gid 1000-1003 and 3000 (setpriv, with supplementary
//! groups), UDP, TCP (the client's SYN; a listener's SYN-ACK, sent from its request
//! socket; an accepted-queue child without a `struct socket`), ICMP echo from ping
//! sockets and from raw sockets, IPv6 UDP, and the kernel's own TCP resets (IPv4: its
//! control socket, a socket without a file; IPv6: none) and ICMP errors. Each case runs on both sides in fresh
//! namespaces; the outcomes and the listed counters must be equal. The iptables
//! ruleset also logs with `LOG --log-uid`, whose lines are checked against the
//! kernel's (see [`log_uid_lines_are_the_kernels`]). Needs root.
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::{run_client, Daemon};
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const NO_ARGS: &[&str] = &[];

const RULES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp -m udp --dport 7100 -m owner --uid-owner 1000 -j DROP
-A OUTPUT -p udp -m udp --dport 7101 -m owner ! --uid-owner 1000 -j DROP
-A OUTPUT -p udp -m udp --dport 7102 -m owner --uid-owner 1000-1001 -j DROP
-A OUTPUT -p udp -m udp --dport 7103 -m owner --gid-owner 3000 -j DROP
-A OUTPUT -p udp -m udp --dport 7104 -m owner --gid-owner 3000-3001 --suppl-groups -j DROP
-A OUTPUT -p udp -m udp --dport 7105 -m owner --uid-owner 1000 --gid-owner 1000 -j DROP
-A OUTPUT -p udp -m udp --dport 7106 -m owner ! --gid-owner 1001 -j DROP
-A OUTPUT -p udp -m udp --dport 7107 -m owner ! --socket-exists -j DROP
-A OUTPUT -p udp -m udp --dport 7108 -m owner --socket-exists -j DROP
-A OUTPUT -p tcp -m tcp --dport 7200 -m owner --uid-owner 1001 -j DROP
-A OUTPUT -p tcp -m tcp --sport 8000 -m owner --uid-owner 1001 -j DROP
-A OUTPUT -p tcp -m tcp --sport 8001 -m owner --uid-owner 1001 -j DROP
-A OUTPUT -p tcp -m tcp --sport 8001 -m owner ! --socket-exists
-A OUTPUT -p tcp -m tcp --sport 5555 -m owner ! --uid-owner 1000 -j DROP
-A OUTPUT -p tcp -m tcp --sport 5556 -m owner --uid-owner 0-4294967294 -j DROP
-A OUTPUT -p tcp -m tcp --sport 5556 -m owner --socket-exists
-A OUTPUT -p icmp -m icmp --icmp-type 8 -m owner --uid-owner 1000 -j DROP
-A OUTPUT -p icmp -m icmp --icmp-type 3 -m owner --socket-exists
-A OUTPUT -p icmp -m icmp --icmp-type 3 -m owner ! --gid-owner 0
-A OUTPUT -p udp -m udp --dport 7110 -j LOG --log-prefix \"owner-uid \" --log-uid
-A OUTPUT -p icmp -m icmp --icmp-type 3 -j LOG --log-prefix \"owner-icmp \" --log-uid
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -p udp -m udp --dport 7109 -m owner --uid-owner 1002 -j DROP
-A POSTROUTING -p udp -m udp --dport 7109 -m owner --socket-exists
COMMIT
";

/// A ruleset, how it is loaded and how its counters are listed.
struct Rules {
    load: &'static str,
    load_args: &'static [&'static str],
    text: &'static str,
    list: &'static str,
    list_args: &'static [&'static str],
    /// ip6tables-nft-restore input, loaded after `text`.
    ip6: Option<&'static str>,
}

/// IPv6: UDP from users, and the kernel's IPv6 resets (tcp_v6_send_response()).
const RULES6: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp -m udp --dport 7300 -m owner --uid-owner 1000 -j DROP
-A OUTPUT -p udp -m udp --dport 7300 -m owner --socket-exists
-A OUTPUT -p tcp -m tcp --sport 5557 -m owner --socket-exists -j DROP
-A OUTPUT -p tcp -m tcp --sport 5558 -m owner ! --socket-exists -j DROP
COMMIT
";

const IPTABLES: Rules = Rules {
    load: "iptables-nft-restore",
    load_args: NO_ARGS,
    text: RULES,
    list: "iptables-nft-save",
    list_args: &["-c"],
    ip6: Some(RULES6),
};

/// nft's `meta skuid/skgid` (nft_meta_get_eval_skugid()) on the same senders.
const NFT: Rules = Rules {
    load: "nft",
    load_args: &["-f", "-"],
    text: "table inet t {
  chain o {
    type filter hook output priority 0;
    udp dport 7100 meta skuid 1000 counter drop
    udp dport 7101 meta skuid != 1000 counter drop
    udp dport 7102 meta skuid 1000-1001 counter drop
    udp dport 7103 meta skgid 3000 counter drop
    udp dport 7104 meta skgid { 1002, 3000 } counter drop
    udp dport 7105 meta skuid . meta skgid { 1000 . 1000 } counter drop
    tcp sport 8000 meta skuid 1001 counter drop
    tcp sport 8001 meta skuid != 1001 counter
    tcp sport 5555 meta skuid != 1000 counter drop
    icmp type echo-request meta skuid 1000 counter drop
    icmp type destination-unreachable meta skgid 0 counter
  }
  chain p {
    type filter hook postrouting priority 0;
    udp dport 7109 meta skuid 1002 counter drop
    udp dport 7300 meta skuid 1000 counter drop
    tcp sport 5557 meta skgid 0 counter drop
  }
}
",
    list: "nft",
    list_args: &["list", "ruleset"],
    ip6: None,
};

/// The senders, run as another user in `fw` (outcomes on stdout).
const HELPER: &str = r#"
import socket, struct, sys, time
kind = sys.argv[1]
def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
if kind == "udp":
    fam = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if len(sys.argv) > 4:
        s.bind(("0.0.0.0", int(sys.argv[4])))
    try:
        s.sendto(b"owner", (sys.argv[2], int(sys.argv[3])))
    except OSError:
        pass
    print("sent", flush=True)
elif kind == "tcp":
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect((sys.argv[2], int(sys.argv[3])))
        print("connected", flush=True)
    except socket.timeout:
        print("timed out", flush=True)
    except ConnectionRefusedError:
        print("refused", flush=True)
    except OSError as e:
        print("error %d" % e.errno, flush=True)
elif kind in ("ping", "raw"):
    t = socket.SOCK_DGRAM if kind == "ping" else socket.SOCK_RAW
    s = socket.socket(socket.AF_INET, t, socket.IPPROTO_ICMP)
    s.settimeout(0.5)
    body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"owner"
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    try:
        s.sendto(body, (sys.argv[2], 0))
    except OSError:
        pass
    got = "no reply"
    end = time.time() + 0.5
    while time.time() < end:
        try:
            data = s.recv(2048)
        except (socket.timeout, OSError):
            break
        icmp = data if kind == "ping" else data[(data[0] & 15) * 4:]
        if icmp[0] == 0:
            got = "reply"
            break
    print(got, flush=True)
elif kind == "listen":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3])))
    s.listen(8)
    print("ready", flush=True)
    sys.stdin.read()
"#;

/// `setpriv` arguments for a user: uid = gid = `id`, these supplementary groups.
fn user(id: u32, groups: &[u32]) -> Vec<String> {
    let mut v = vec![
        format!("--reuid={id}"),
        format!("--regid={id}"),
        // The ambient capability lets a raw socket be opened as this user (its
        // file's f_cred is the user's).
        "--inh-caps=+net_raw".into(),
        "--ambient-caps=+net_raw".into(),
    ];
    if groups.is_empty() {
        v.push("--clear-groups".into());
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        v.push(format!("--groups={}", g.join(",")));
    }
    v
}

fn helper_cmd(ns: &Netns, id: u32, groups: &[u32], args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "setpriv"])
        .args(user(id, groups))
        .args(["/usr/bin/python3", "-c", HELPER])
        .args(args);
    cmd
}

/// Runs the helper to its end; its one line of outcome.
fn send(ns: &Netns, id: u32, groups: &[u32], args: &[&str]) -> String {
    let out = helper_cmd(ns, id, groups, args).output().unwrap();
    assert!(
        out.status.success(),
        "helper {args:?} as {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A TCP listener of user `id` in `ns`, until dropped.
struct Listener(Child);

impl Listener {
    fn start(ns: &Netns, id: u32, addr: &str, port: u16) -> Listener {
        let port = port.to_string();
        let mut child = helper_cmd(ns, id, &[], &["listen", addr, &port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn connect(from: &Netns, to: &str) -> &'static str {
    let addr: SocketAddr = to.parse().unwrap();
    let r = in_netns(from, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500))
    });
    match r {
        Ok(_) => "connected",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timed out",
        Err(_) => "other error",
    }
}

fn sysctl(ns: &Netns, setting: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sysctl", "-qw", setting])
        .status()
        .unwrap()
        .success();
    assert!(ok, "sysctl {setting}");
}

fn settle() {
    std::thread::sleep(Duration::from_millis(150));
}

/// The outcomes of the cases on one side (`daemon`: through nftshimd), and the
/// counters listed after them.
fn run_side(
    bins: &Binaries,
    daemon: Option<&Daemon>,
    rules: &Rules,
) -> (Vec<(String, String)>, String) {
    let fw = Netns::create_unique("nftshim-owner", "fw").unwrap();
    let peer = Netns::create_unique("nftshim-owner", "peer").unwrap();
    nft_tests::netns::veth_pair((&fw, "f0", "10.9.1.1/24"), (&peer, "p0", "10.9.1.2/24")).unwrap();
    sysctl(&fw, "net.ipv4.ping_group_range=0 2147483647");
    for (ns, dev, a) in [(&fw, "f0", "fd09::1/64"), (&peer, "p0", "fd09::2/64")] {
        let ok = Command::new("ip")
            .args(["-n", ns.name(), "addr", "add", a, "dev", dev, "nodad"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip addr add {a}");
    }
    let udp6 = in_netns(&peer, || {
        let s = UdpSocket::bind("[fd09::2]:7300")?;
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        Ok(s)
    })
    .unwrap();
    let udp: Vec<UdpSocket> = in_netns(&peer, || {
        (7100..=7109)
            .chain([7110])
            .map(|p| {
                let s = UdpSocket::bind(("10.9.1.2", p))?;
                s.set_read_timeout(Some(Duration::from_millis(300)))?;
                Ok(s)
            })
            .collect()
    })
    .unwrap();
    let tcp = in_netns(&peer, || TcpListener::bind("10.9.1.2:7200")).unwrap();

    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    let restored = run_client(&fw, shim, rules.load, rules.load_args, Some(rules.text));
    assert!(
        restored.success(),
        "{}: {}{}",
        rules.load,
        restored.stderr,
        daemon.map(|d| d.log_tail(20)).unwrap_or_default()
    );
    if let Some(text) = rules.ip6 {
        let restored = run_client(&fw, shim, "ip6tables-nft-restore", NO_ARGS, Some(text));
        assert!(
            restored.success(),
            "ip6tables-nft-restore: {}",
            restored.stderr
        );
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut out = Vec::new();
    let mut record = |name: String, what: String| out.push((name, what));
    // UDP datagrams from users (id, supplementary groups) to each port: did peer get it?
    let users: [(u32, &[u32]); 5] = [
        (1000, &[]),
        (1001, &[]),
        (1002, &[3000, 3005]),
        (1003, &[]),
        (3000, &[]),
    ];
    for (k, sock) in udp[..10].iter().enumerate() {
        let port = (7100 + k).to_string();
        for (id, groups) in users {
            send(&fw, id, groups, &["udp", "10.9.1.2", &port]);
            let mut buf = [0u8; 64];
            let got = match sock.recv(&mut buf) {
                Ok(_) => "received",
                Err(_) => "lost",
            };
            record(format!("udp :{port} from {id} {groups:?}"), got.into());
        }
    }
    // Logged with --log-uid, from a fixed port.
    for (id, groups) in [(1000, &[][..]), (1002, &[3000, 3005][..])] {
        send(&fw, id, groups, &["udp", "10.9.1.2", "7110", "40000"]);
        let mut buf = [0u8; 64];
        let got = udp[10].recv(&mut buf).map_or("lost", |_| "received");
        record(format!("udp :7110 from {id} (LOG)"), got.into());
    }
    // TCP: the client's SYN.
    for id in [1000, 1001] {
        record(
            format!("tcp :7200 from {id}"),
            send(&fw, id, &[], &["tcp", "10.9.1.2", "7200"]),
        );
    }
    // A listener's SYN-ACK (skb->sk is the request socket: its listener's owner).
    for (port, id) in [(8000u16, 1001), (8001, 1000), (8000, 1000)] {
        let l = Listener::start(&fw, id, "10.9.1.1", port);
        record(
            format!("peer -> fw:{port}, listener of {id}"),
            connect(&peer, &format!("10.9.1.1:{port}")).into(),
        );
        // Peer's FIN reaches the child (not accepted: no struct socket) before the
        // listener goes; then no SYN-ACK is retransmitted.
        settle();
        drop(l);
        settle();
    }
    // The kernel's resets (control socket: a socket without a file).
    for port in [5555, 5556] {
        record(
            format!("peer -> fw:{port} (reset)"),
            connect(&peer, &format!("10.9.1.1:{port}")).into(),
        );
    }
    // IPv6.
    for id in [1000, 1001] {
        send(&fw, id, &[], &["udp", "fd09::2", "7300"]);
        let mut buf = [0u8; 64];
        let got = udp6.recv(&mut buf).map_or("lost", |_| "received");
        record(format!("udp [fd09::2]:7300 from {id}"), got.into());
    }
    for port in [5557, 5558] {
        record(
            format!("peer -> [fd09::1]:{port} (reset)"),
            connect(&peer, &format!("[fd09::1]:{port}")).into(),
        );
    }
    // ICMP echo from ping sockets and raw sockets.
    for kind in ["ping", "raw"] {
        for id in [1000, 1001] {
            record(
                format!("{kind} from {id}"),
                send(&fw, id, &[], &[kind, "10.9.1.2"]),
            );
        }
    }
    // The kernel's ICMP errors (port unreachable from fw).
    let probe = in_netns(&peer, || UdpSocket::bind("10.9.1.2:40001")).unwrap();
    probe.send_to(b"x", "10.9.1.1:9999").unwrap();
    settle();
    drop(tcp);
    let mut listed = run_client(&fw, shim, rules.list, rules.list_args, None);
    assert!(listed.success(), "{}", listed.stderr);
    if rules.ip6.is_some() {
        let listed6 = run_client(&fw, shim, "ip6tables-nft-save", &["-c"], None);
        assert!(listed6.success(), "{}", listed6.stderr);
        // The chains' policy counters there count neighbour discovery and MLD,
        // sent as timers fire: the rules' counters only.
        for line in listed6.stdout.lines().filter(|l| !l.starts_with(':')) {
            listed.stdout.push_str(line);
            listed.stdout.push('\n');
        }
    }
    let counters = listed
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    (out, counters)
}

#[test]
fn owner_matches_local_sockets_as_the_kernel_does() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let all_netns = std::fs::read_to_string("/proc/sys/net/netfilter/nf_log_all_netns")
        .is_ok_and(|v| v.trim() == "1");
    let dmesg_before = all_netns.then(dmesg);
    let (kernel, kernel_counters) = run_side(&bins, None, &IPTABLES);
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let (shim, shim_counters) = run_side(&bins, Some(&daemon), &IPTABLES);
    let find = |name: &str| {
        kernel
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o.as_str())
            .unwrap()
    };
    // Spot checks of the kernel's answers, as worked out from owner_mt().
    assert_eq!(find("udp :7100 from 1000 []"), "lost");
    assert_eq!(find("udp :7100 from 1001 []"), "received");
    assert_eq!(find("udp :7104 from 1002 [3000, 3005]"), "lost");
    assert_eq!(find("udp :7103 from 1002 [3000, 3005]"), "received");
    assert_eq!(find("udp :7103 from 3000 []"), "lost");
    assert_eq!(find("tcp :7200 from 1001"), "timed out");
    assert_eq!(find("peer -> fw:8000, listener of 1001"), "timed out");
    assert_eq!(find("peer -> fw:8001, listener of 1000"), "connected");
    assert_eq!(find("peer -> fw:5555 (reset)"), "timed out");
    assert_eq!(find("peer -> fw:5556 (reset)"), "refused");
    assert_eq!(find("ping from 1000"), "no reply");
    assert_eq!(find("raw from 1001"), "reply");
    for ((name, k), (_, s)) in kernel.iter().zip(&shim) {
        assert_eq!(
            k,
            s,
            "{name}: kernel {k}, nftshimd {s}\n{}",
            daemon.log_tail(20)
        );
    }
    assert_eq!(kernel, shim);
    assert_eq!(
        kernel_counters,
        shim_counters,
        "counters, kernel vs nftshimd\n{}",
        daemon.log_tail(20)
    );
    log_uid_lines_are_the_kernels(&daemon, dmesg_before.as_deref());
}

/// From the `owner-` mark on, IP ids masked (not the same on both sides), sorted.
#[test]
fn meta_skuid_skgid_match_local_sockets_as_the_kernel_does() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let (kernel, kernel_counters) = run_side(&bins, None, &NFT);
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let (shim, shim_counters) = run_side(&bins, Some(&daemon), &NFT);
    let find = |name: &str| {
        kernel
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o.as_str())
            .unwrap()
    };
    assert_eq!(find("udp :7100 from 1000 []"), "lost");
    assert_eq!(find("udp :7103 from 3000 []"), "lost");
    assert_eq!(find("peer -> fw:8000, listener of 1001"), "timed out");
    // The control socket has no file: `!=` breaks too, the reset goes out.
    assert_eq!(find("peer -> fw:5555 (reset)"), "refused");
    for ((name, k), (_, s)) in kernel.iter().zip(&shim) {
        assert_eq!(
            k,
            s,
            "{name}: kernel {k}, nftshimd {s}\n{}",
            daemon.log_tail(20)
        );
    }
    assert_eq!(kernel, shim);
    assert_eq!(
        kernel_counters,
        shim_counters,
        "counters, kernel vs nftshimd\n{}",
        daemon.log_tail(20)
    );
}

fn log_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.find("owner-").map(|i| l[i..].trim_end().to_string()))
        .map(|l| {
            l.split(' ')
                .map(|w| if w.starts_with("ID=") { "ID=*" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    v.sort();
    v
}

/// nftshimd's `--log-uid` lines. The kernel prints lines of namespaces other than
/// the first only with net.netfilter.nf_log_all_netns=1 (a global switch left alone
/// here): with it, they must be the kernel's own (dmesg); without it, the UDP lines
/// must be nf_log_syslog's for those datagrams, `UID=%u GID=%u ` of the sender's
/// fsuid and fsgid before the end (dump_ipv4_packet(); the source address's sport
/// was bound), and the ICMP error, sent by the kernel's control socket (no file),
/// has none.
fn log_uid_lines_are_the_kernels(daemon: &Daemon, dmesg_before: Option<&str>) {
    // The worker reads events every 100 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = log_lines(&daemon.log_tail(100_000));
    while got.len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = log_lines(&daemon.log_tail(100_000));
    }
    if let Some(before) = dmesg_before {
        let after = dmesg();
        let want = log_lines(after.strip_prefix(before).unwrap_or(&after));
        assert_eq!(got, want, "nftshimd vs the kernel's log lines");
        return;
    }
    let udp = |id: u32| {
        format!(
            "owner-uid IN= OUT=f0 SRC=10.9.1.1 DST=10.9.1.2 LEN=33 TOS=0x00 PREC=0x00 \
             TTL=64 ID=* DF PROTO=UDP SPT=40000 DPT=7110 LEN=13 UID={id} GID={id}"
        )
    };
    let (icmp, udp_lines): (Vec<_>, Vec<_>) =
        got.iter().partition(|l| l.starts_with("owner-icmp "));
    assert_eq!(udp_lines, [&udp(1000), &udp(1002)], "{got:#?}");
    assert_eq!(icmp.len(), 1, "{got:#?}");
    assert!(icmp[0].contains("PROTO=ICMP TYPE=3 CODE=3 "), "{}", icmp[0]);
    assert!(!icmp[0].contains("UID="), "{}", icmp[0]);
}

fn dmesg() -> String {
    let out = Command::new("dmesg").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
