//! Counters of the eBPF data plane as iptables-nft shows them: the same rules in the
//! kernel's and in nftshimd's `fw` namespace (see `nft_tests::packets`), the same
//! probes through both, then `iptables-nft -L -v -n -x` and `iptables-nft-save -c`
//! (rule counters and the chains' policy counters) must be the same on both sides,
//! also after `iptables-nft -Z` and more probes.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::nft::NftSide;
use nft_tests::packets::{self, Topology};

const RULES: &[&[&str]] = &[
    &["-A", "INPUT", "-p", "udp", "--dport", "53", "-j", "DROP"],
    &["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
    &[
        "-A", "INPUT", "-s", "10.7.1.2", "-p", "icmp", "-j", "ACCEPT",
    ],
    &["-A", "INPUT", "-p", "tcp"],
    &["-A", "FORWARD", "-p", "tcp", "--dport", "80", "-j", "DROP"],
    &["-A", "OUTPUT", "-p", "tcp", "-j", "ACCEPT"],
];

/// What the two commands print, without the comment lines (they carry the time).
fn listings(side: &NftSide) -> String {
    let list = side.run_program("iptables-nft".as_ref(), &["-L", "-v", "-n", "-x"], None);
    let save = side.run_program("iptables-nft-save".as_ref(), &["-c"], None);
    assert!(list.success() && save.success(), "{list:?}\n{save:?}");
    let save: String = save
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{}{save}", list.stdout)
}

#[test]
fn iptables_nft_shows_what_the_ebpf_programs_counted() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Topology::create("nftshim-cnt", "k").unwrap();
    let shim = Topology::create("nftshim-cnt", "s").unwrap();
    // Declared after the namespaces: dropped (killed) first, so it lets go of them.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let limit = Duration::from_secs(15);
    let sides = daemon.sides(
        &bins.preload,
        (kernel.fw.name(), shim.fw.name()),
        "iptables-nft",
        limit,
    );
    for side in &sides {
        for rule in RULES {
            let out = side.run(rule);
            assert!(
                out.success(),
                "iptables-nft {rule:?}: {out:?}\n{}",
                daemon.log_tail(20)
            );
        }
    }
    let probes: Vec<_> = packets::corpus()
        .into_iter()
        .filter(|p| p.src.is_ipv4())
        .collect();
    packets::run(&kernel, &probes).unwrap();
    packets::run(&shim, &probes).unwrap();
    let (k, s) = (listings(&sides[0]), listings(&sides[1]));
    assert_eq!(
        k,
        s,
        "kernel:\n{k}\nnftshimd:\n{s}\n{}",
        daemon.log_tail(20)
    );
    // Every rule saw probes.
    assert!(!k.contains("[0:0] -A"), "every rule saw probes:\n{k}");

    // Zeroed as the kernel zeroes them, and counting again from there.
    for side in &sides {
        assert!(side.run(&["-Z"]).success());
    }
    packets::run(&kernel, &probes).unwrap();
    packets::run(&shim, &probes).unwrap();
    let (k, s) = (listings(&sides[0]), listings(&sides[1]));
    assert_eq!(k, s, "after -Z, kernel:\n{k}\nnftshimd:\n{s}");
    // -Z gives the built-in chains counters (NFTA_CHAIN_COUNTERS): from then on the
    // packets that meet their policy are counted too.
    for chain in ["INPUT", "FORWARD", "OUTPUT"] {
        assert!(!k.contains(&format!(":{chain} ACCEPT [0:0]")), "{k}");
    }
}
