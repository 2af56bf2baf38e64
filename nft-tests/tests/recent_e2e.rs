//! `-m recent` lists over rule changes, kernel against nftshimd (eBPF data plane): UDP
//! datagrams sent on lo through OUTPUT rules while rules of a list are added, moved
//! out of reach, restored with iptables-nft-restore, all deleted (the list goes) and
//! kept by an ip6tables rule alone. Each side runs the same script in a fresh
//! namespace; which datagrams arrive must be equal. Then what nftshimd refuses
//! (`--rttl`, a large hitcount, a match after `--set`). Needs root.

use std::net::UdpSocket;
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::{run_client, Daemon};
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

/// One step of the script.
enum Step {
    /// `iptables-nft ARGS` (or ip6tables-nft with `v6`); must succeed.
    Rule(bool, &'static [&'static str]),
    /// `iptables-nft-save | iptables-nft-restore`.
    SaveRestore,
    /// N datagrams 127.0.0.1 -> 127.0.0.1:9999; which arrived.
    Send(usize),
}

use Step::*;

const SCRIPT: &[Step] = &[
    Rule(false, &["-N", "foo"]),
    Rule(
        false,
        &[
            "-A", "foo", "-p", "udp", "-m", "recent", "--set", "--name", "x", "--rdest",
        ],
    ),
    Rule(
        false,
        &[
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "-m",
            "recent",
            "--rcheck",
            "--name",
            "x",
            "--rdest",
            "--hitcount",
            "2",
            "-j",
            "DROP",
        ],
    ),
    Rule(false, &["-A", "OUTPUT", "-p", "udp", "-j", "foo"]),
    Send(4),
    // The set rule out of reach: the list lives on with its entries.
    Rule(false, &["-D", "OUTPUT", "-p", "udp", "-j", "foo"]),
    Send(2),
    // Restoring the same rules keeps it too.
    SaveRestore,
    Send(1),
    // No rule names it: gone; named again, it starts empty.
    Rule(false, &["-F", "OUTPUT"]),
    Rule(false, &["-F", "foo"]),
    Rule(
        false,
        &[
            "-A", "OUTPUT", "-p", "udp", "-m", "recent", "--rcheck", "--name", "x", "--rdest",
            "-j", "DROP",
        ],
    ),
    Rule(
        false,
        &[
            "-A", "OUTPUT", "-p", "udp", "-m", "recent", "--set", "--name", "x", "--rdest",
        ],
    ),
    Send(2),
    // An ip6tables rule alone keeps the list, IPv4 entries included.
    Rule(
        true,
        &[
            "-A", "OUTPUT", "-p", "udp", "-m", "recent", "--rcheck", "--name", "x",
        ],
    ),
    Rule(false, &["-F", "OUTPUT"]),
    Send(1),
    Rule(
        false,
        &[
            "-A", "OUTPUT", "-p", "udp", "-m", "recent", "--rcheck", "--name", "x", "--rdest",
            "-j", "DROP",
        ],
    ),
    Send(1),
];

/// Sends `n` datagrams on lo; true for each that arrived (a DROP in OUTPUT fails the
/// kernel's sendmsg with EPERM; the data plane drops it at TC egress).
fn send(ns: &Netns, n: usize) -> Vec<bool> {
    in_netns(ns, || {
        let rx = UdpSocket::bind("127.0.0.1:9999")?;
        rx.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut out = Vec::new();
        for i in 0..n {
            let tx = UdpSocket::bind("127.0.0.1:0")?;
            let sent = tx.send_to(&[i as u8], "127.0.0.1:9999").is_ok();
            let mut buf = [0u8; 8];
            out.push(sent && rx.recv(&mut buf).is_ok());
        }
        Ok(out)
    })
    .unwrap()
}

fn run_side(bins: &Binaries, daemon: Option<&Daemon>) -> Vec<Vec<bool>> {
    let ns = Netns::create_unique("nftshim-recent", "lo").unwrap();
    let up = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "ip", "link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(up.success());
    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    let mut out = Vec::new();
    for step in SCRIPT {
        match step {
            Rule(v6, args) => {
                let bin = if *v6 { "ip6tables-nft" } else { "iptables-nft" };
                let r = run_client(&ns, shim, bin, args, None);
                assert!(r.success(), "{bin} {args:?}: {}", r.stderr);
            }
            SaveRestore => {
                let saved = run_client(&ns, shim, "iptables-nft-save", &[] as &[&str], None);
                assert!(saved.success(), "{}", saved.stderr);
                let r = run_client(
                    &ns,
                    shim,
                    "iptables-nft-restore",
                    &[] as &[&str],
                    Some(&saved.stdout),
                );
                assert!(r.success(), "restore: {}", r.stderr);
            }
            Send(n) => out.push(send(&ns, *n)),
        }
    }
    out
}

#[test]
fn recent_lists_live_and_die_with_their_rules_as_the_kernel_s() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = run_side(&bins, None);
    // The kernel's answers, as worked out from xt_recent.
    assert_eq!(
        kernel,
        vec![
            vec![true, true, false, false],
            vec![false, false],
            vec![false],
            vec![true, false],
            vec![true],
            vec![false],
        ]
    );
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let shim = run_side(&bins, Some(&daemon));
    assert_eq!(kernel, shim, "kernel vs nftshimd\n{}", daemon.log_tail(20));
}

#[test]
fn what_the_data_plane_cannot_enforce_is_refused() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let ns = Netns::create_unique("nftshim-recent", "refused").unwrap();
    let shim = Some((&daemon, bins.preload.as_path()));
    let refused: [&[&str]; 3] = [
        &[
            "-A", "INPUT", "-m", "recent", "--update", "--rttl", "--name", "x",
        ],
        &[
            "-A",
            "INPUT",
            "-m",
            "recent",
            "--rcheck",
            "--hitcount",
            "33",
            "--name",
            "x",
        ],
        // The iprange test (an indexed match) would run before the list changes.
        &[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-m",
            "recent",
            "--set",
            "--name",
            "x",
            "-m",
            "iprange",
            "--src-range",
            "10.0.0.1-10.0.0.9",
        ],
    ];
    for args in refused {
        let r = run_client(&ns, shim, "iptables-nft", args, None);
        assert!(
            !r.success() && r.stderr.contains("Operation not supported"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Enforced: an indexed match after a check that changes nothing, and a native
    // match (`meta mark`, which iptables-nft sends for `-m mark`) after `--set`, which
    // runs after it in the rule's residual program.
    let accepted: [&[&str]; 2] = [
        &[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-m",
            "recent",
            "--rcheck",
            "--name",
            "x",
            "-m",
            "iprange",
            "--src-range",
            "10.0.0.1-10.0.0.9",
        ],
        &[
            "-A", "INPUT", "-p", "udp", "-m", "recent", "--set", "--name", "x", "-m", "mark",
            "--mark", "1",
        ],
    ];
    for args in accepted {
        let r = run_client(&ns, shim, "iptables-nft", args, None);
        assert!(
            r.success(),
            "{args:?}: {}\n{}",
            r.stderr,
            daemon.log_tail(20)
        );
    }
}
