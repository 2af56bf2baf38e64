//! `-m cgroup --path /` and `--cgroup` (net_cls classids) on locally generated packets, kernel against nftshimd (eBPF
//! data plane), with real sockets: a TCP client in `fw` (a socket of this process)
//! and the kernel's TCP resets, sent from its control socket, also while it waits for
//! ARP (the control socket is init_net's again by the time such a reset reaches TC
//! egress). Each case runs on both sides in fresh namespaces; the outcomes must be
//! equal. Needs root.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::{run_client, Daemon};
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const NO_ARGS: &[&str] = &[];

const RULES: &str = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p tcp -m tcp --dport 7001 -m cgroup --path / -j DROP
-A OUTPUT -p tcp -m tcp --dport 7002 -m cgroup ! --path / -j DROP
-A POSTROUTING -p tcp -m tcp --sport 5555 --tcp-flags RST RST -m cgroup --path / -j DROP
-A POSTROUTING -p tcp -m tcp --sport 5556 --tcp-flags RST RST -m cgroup ! --path / -j DROP
COMMIT
";

/// How a connection attempt ended.
fn outcome(r: std::io::Result<TcpStream>) -> &'static str {
    match r {
        Ok(_) => "connected",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timed out",
        Err(_) => "other error",
    }
}

fn connect(from: &Netns, to: &str) -> &'static str {
    let addr: SocketAddr = to.parse().unwrap();
    outcome(in_netns(from, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(1500))
    }))
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}

/// The outcomes of the cases on one side (`shim`: through nftshimd).
fn run_side(bins: &Binaries, daemon: Option<&Daemon>) -> Vec<(String, &'static str)> {
    let fw = Netns::create_unique("nftshim-sockx", "fw").unwrap();
    let peer = Netns::create_unique("nftshim-sockx", "peer").unwrap();
    nft_tests::netns::veth_pair((&fw, "f0", "10.9.0.1/24"), (&peer, "p0", "10.9.0.2/24")).unwrap();
    // Listeners in peer for fw's connections.
    let listeners: Vec<TcpListener> = in_netns(&peer, || {
        [7000, 7001, 7002]
            .iter()
            .map(|p| TcpListener::bind(("10.9.0.2", *p)))
            .collect()
    })
    .unwrap();

    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    let restored = run_client(&fw, shim, "iptables-nft-restore", NO_ARGS, Some(RULES));
    assert!(
        restored.success(),
        "iptables-nft-restore: {}",
        restored.stderr
    );
    // Let the data plane attach (the daemon applies a commit before answering, but
    // keep the cases clear of the attach itself).
    std::thread::sleep(Duration::from_millis(300));

    let mut out = Vec::new();
    // A socket of this process, in fw.
    for (name, to) in [
        ("fw -> peer:7000 (no rule)", "10.9.0.2:7000"),
        ("fw -> peer:7001 (--path / drops)", "10.9.0.2:7001"),
        ("fw -> peer:7002 (! --path / drops)", "10.9.0.2:7002"),
    ] {
        out.push((name.to_string(), connect(&fw, to)));
    }
    // fw's kernel resets to closed ports, with fw's neighbour entry for peer in
    // place, then while it waits for ARP (peer knows fw's MAC statically, so only
    // fw has to resolve).
    let link = Command::new("ip")
        .args(["-n", fw.name(), "-br", "link", "show", "f0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&link.stdout).to_string();
    let mac = text.split_whitespace().nth(2).unwrap().to_string();
    ip(&[
        "-n",
        peer.name(),
        "neigh",
        "replace",
        "10.9.0.1",
        "lladdr",
        &mac,
        "dev",
        "p0",
        "nud",
        "permanent",
    ]);
    for (port, rule) in [(5555, "--path / drops"), (5556, "! --path / drops")] {
        let to = format!("10.9.0.1:{port}");
        out.push((
            format!("reset from fw, neighbour known ({rule})"),
            connect(&peer, &to),
        ));
        ip(&["-n", fw.name(), "neigh", "flush", "dev", "f0"]);
        out.push((
            format!("reset from fw after ARP ({rule})"),
            connect(&peer, &to),
        ));
    }
    drop(listeners);
    out
}

#[test]
fn cgroup_root_path_matches_local_sockets_as_the_kernel_does() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = run_side(&bins, None);
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let shim = run_side(&bins, Some(&daemon));
    // The kernel's own answers, as worked out from xt_cgroup: a socket drops.
    assert_eq!(kernel[0].1, "connected");
    assert_eq!(kernel[1].1, "timed out");
    assert_eq!(kernel[2].1, "connected");
    // The control socket's resets: dropped by `--path /`, with or without ARP first.
    assert_eq!(kernel[3].1, "timed out");
    assert_eq!(kernel[4].1, "timed out");
    assert_eq!(kernel[5].1, "refused");
    assert_eq!(kernel[6].1, "refused");
    assert_eq!(kernel, shim, "kernel vs nftshimd\n{}", daemon.log_tail(20));
}

#[test]
fn cgroup_path_from_a_private_cgroup_namespace_is_refused() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let ns = Netns::create_unique("nftshim-sockx", "cgns").unwrap();
    let shim = Some((&daemon, bins.preload.as_path()));
    for rule in [["--path", "/"], ["!", "--path"]] {
        let mut args = vec!["-A", "OUTPUT", "-m", "cgroup"];
        args.extend(rule);
        if rule[0] == "!" {
            args.push("/");
        }
        args.extend(["-j", "DROP"]);
        // There "/" is the namespace's own root: only its subtree's sockets would match.
        let mut private = vec!["--cgroup", "iptables-nft"];
        private.extend(&args);
        let out = run_client(&ns, shim, "unshare", &private, None);
        assert!(
            !out.success() && out.stderr.contains("Operation not supported"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let listed = run_client(&ns, shim, "iptables-nft", &["-S", "OUTPUT"], None).stdout;
    assert!(!listed.contains("cgroup"), "{listed}");
    // From the initial cgroup namespace the same rule is the whole tree's, and enforced.
    let args = ["-A", "OUTPUT", "-m", "cgroup", "--path", "/", "-j", "DROP"];
    let out = run_client(&ns, shim, "iptables-nft", &args, None);
    assert!(out.success(), "{}\n{}", out.stderr, daemon.log_tail(20));
}

/// A net_cls hierarchy mounted for one test, with one cgroup of classid [`CLASSID`];
/// unmounted on drop.
struct NetCls {
    root: std::path::PathBuf,
}

const CLASSID: u32 = 0x10001;

impl NetCls {
    fn mount() -> Option<NetCls> {
        let root = std::env::temp_dir().join(format!("nftshim-netcls-{}", std::process::id()));
        std::fs::create_dir_all(&root).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "cgroup", "-o", "net_cls", "net_cls"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&root);
            return None;
        }
        let group = root.join("nftshim-test");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(group.join("net_cls.classid"), CLASSID.to_string()).unwrap();
        Some(NetCls { root })
    }

    /// Moves the calling thread into the cgroup: its new sockets take the classid.
    fn enter(&self) -> std::io::Result<()> {
        // SAFETY: gettid(2) has no preconditions.
        let tid = unsafe { libc::gettid() };
        std::fs::write(self.root.join("nftshim-test/tasks"), tid.to_string())
    }
}

impl Drop for NetCls {
    fn drop(&mut self) {
        // The threads that entered the cgroup have exited by now.
        let _ = std::fs::remove_dir(self.root.join("nftshim-test"));
        let _ = Command::new("umount").arg(&self.root).status();
        let _ = std::fs::remove_dir(&self.root);
    }
}

const CLASSID_RULES: &str = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p tcp -m tcp --dport 7001 -m cgroup --cgroup 0x10001 -j DROP
-A POSTROUTING -p tcp -m tcp --dport 7002 -m cgroup ! --cgroup 0x10001 -j DROP
-A POSTROUTING -p tcp -m tcp --sport 5555 --tcp-flags RST RST -m cgroup --cgroup 0 -j DROP
-A POSTROUTING -p tcp -m tcp --sport 5556 --tcp-flags RST RST -m cgroup --cgroup 0x10001 -j DROP
COMMIT
";

/// `--cgroup` cases on one side: connections from fw by a thread in the net_cls
/// cgroup and by one outside it, and resets from fw's control socket.
fn run_classid_side(
    bins: &Binaries,
    daemon: Option<&Daemon>,
    netcls: &NetCls,
) -> Vec<(String, &'static str)> {
    let fw = Netns::create_unique("nftshim-sockx", "fw").unwrap();
    let peer = Netns::create_unique("nftshim-sockx", "peer").unwrap();
    nft_tests::netns::veth_pair((&fw, "f0", "10.9.0.1/24"), (&peer, "p0", "10.9.0.2/24")).unwrap();
    let listeners: Vec<TcpListener> = in_netns(&peer, || {
        [7001, 7002]
            .iter()
            .map(|p| TcpListener::bind(("10.9.0.2", *p)))
            .collect()
    })
    .unwrap();
    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    let restored = run_client(
        &fw,
        shim,
        "iptables-nft-restore",
        NO_ARGS,
        Some(CLASSID_RULES),
    );
    assert!(restored.success(), "{}", restored.stderr);
    std::thread::sleep(Duration::from_millis(300));

    let mut out = Vec::new();
    for port in [7001, 7002] {
        let addr: SocketAddr = format!("10.9.0.2:{port}").parse().unwrap();
        for classified in [true, false] {
            let r = in_netns(&fw, || {
                if classified {
                    netcls.enter()?;
                }
                TcpStream::connect_timeout(&addr, Duration::from_millis(1500))
            });
            out.push((
                format!("fw -> peer:{port}, in the cgroup {classified}"),
                outcome(r),
            ));
        }
    }
    for port in [5555, 5556] {
        out.push((
            format!("reset from fw:{port}"),
            connect(&peer, &format!("10.9.0.1:{port}")),
        ));
    }
    drop(listeners);
    out
}

#[test]
fn cgroup_classid_matches_as_the_kernel_does() {
    nft_tests::cleanup::install_signal_cleanup();
    let Some(netcls) = NetCls::mount() else {
        eprintln!("SKIPPED: cannot mount a net_cls hierarchy (needs root)");
        return;
    };
    let bins = Binaries::for_tests();
    let kernel = run_classid_side(&bins, None, &netcls);
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let shim = run_classid_side(&bins, Some(&daemon), &netcls);
    // As worked out from cgroup_mt_v2(): the classid decides for sockets of fw; the
    // control socket that sends the resets has classid 0.
    let want = [
        "timed out",
        "connected",
        "connected",
        "timed out",
        "timed out",
        "refused",
    ];
    let got: Vec<&str> = kernel.iter().map(|(_, o)| *o).collect();
    assert_eq!(got, want, "the kernel: {kernel:?}");
    assert_eq!(kernel, shim, "kernel vs nftshimd\n{}", daemon.log_tail(20));
}
