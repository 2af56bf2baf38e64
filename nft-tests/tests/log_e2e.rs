//! `log` through the eBPF data plane: the same ruleset in the kernel's and nftshimd's
//! `fw` namespace (see `nft_tests::packets`), the same probes through both; nftshimd's
//! log must hold the lines the kernel's nf_log_syslog prints for them. The kernel logs
//! from a namespace other than the first only with `net.netfilter.nf_log_all_netns=1`
//! (a global switch this test leaves alone): when it is set the lines are compared
//! with the kernel's own (dmesg), otherwise with the kernel's lines recorded in
//! `tests/data/log_e2e.expected` (same topology and probes).
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;

use nft_tests::packets::{self, Topology};

const RULESET: &str = r#"table inet filter {
  chain input {
    type filter hook input priority 0;
    tcp dport 22 log prefix "nlt-ssh " accept
    udp dport 53 log prefix "nlt-dns " level info flags ether drop
    meta nfproto ipv4 icmp type echo-request log prefix "nlt-echo4 " level err
    meta nfproto ipv6 icmpv6 type echo-request log prefix "nlt-echo6 "
    tcp dport 80 log prefix "nlt-http " flags tcp sequence,options
  }
  chain output {
    type filter hook output priority 0;
    tcp dport 443 log prefix "nlt-out " flags ip options
    udp dport 53 log prefix "nlt-out-dns " level notice
  }
}
"#;

/// The same log rules with iptables' `-j LOG` (a compat target), IPv4 only.
const IPTABLES: &str = "\
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j LOG --log-prefix \"nlt-ssh \"
-A INPUT -p udp -m udp --dport 53 -j LOG --log-prefix \"nlt-dns \" --log-level 6 --log-macdecode
-A INPUT -p udp -m udp --dport 53 -j DROP
-A INPUT -p icmp -m icmp --icmp-type 8 -j LOG --log-prefix \"nlt-echo4 \" --log-level 3
-A INPUT -p tcp -m tcp --dport 80 -j LOG --log-prefix \"nlt-http \" --log-tcp-sequence --log-tcp-options
-A OUTPUT -p tcp -m tcp --dport 443 -j LOG --log-prefix \"nlt-out \" --log-ip-options
-A OUTPUT -p udp -m udp --dport 53 -j LOG --log-prefix \"nlt-out-dns \" --log-level 5
COMMIT
";

const MARK: &str = "nlt-";

/// The lines from `MARK` on, trailing spaces trimmed, sorted (the kernel prints them
/// as packets come, nftshimd as it reads each program's events).
fn lines_of(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.find(MARK).map(|i| l[i..].trim_end().to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn log_lines_are_the_kernels() {
    same_lines_as_the_kernel("nft", &["-f", "-"], RULESET, |_| true);
}

#[test]
fn iptables_log_target_lines_are_the_kernels() {
    // The recorded lines of the nft ruleset's IPv4 packets.
    let v4 = |line: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix("SRC="))
            .is_some_and(|a| a.contains('.'))
    };
    same_lines_as_the_kernel("iptables-nft-restore", &[], IPTABLES, v4);
}

/// Loads `rules` with `program args` on both sides, sends the probe corpus through
/// both, and compares nftshimd's log lines with the kernel's (those `keep` selects,
/// when they come from the recorded file).
fn same_lines_as_the_kernel(program: &str, args: &[&str], rules: &str, keep: fn(&str) -> bool) {
    // One at a time: the other test's probes would slow this daemon's event reads
    // past the wait below.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Topology::create("nftshim-log", "k").unwrap();
    let shim = Topology::create("nftshim-log", "s").unwrap();
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
        let out = side.run_program(program.as_ref(), args, Some(rules.as_bytes()));
        assert!(out.success(), "{out:?}\n{}", daemon.log_tail(20));
    }
    let all_netns = std::fs::read_to_string("/proc/sys/net/netfilter/nf_log_all_netns")
        .is_ok_and(|v| v.trim() == "1");
    let dmesg_before = if all_netns { dmesg() } else { String::new() };
    let probes = packets::corpus();
    packets::run(&kernel, &probes).unwrap();
    packets::run(&shim, &probes).unwrap();
    let want = if all_netns {
        let after = dmesg();
        lines_of(after.strip_prefix(dmesg_before.as_str()).unwrap_or(&after))
    } else {
        let mut recorded = lines_of(include_str!("data/log_e2e.expected"));
        recorded.retain(|l| keep(l));
        recorded
    };
    // The worker reads events every 100 ms, and not while it rebuilds programs (an
    // address change, e.g. a link-local address leaving DAD, rebuilds them): wait for
    // as many lines as the kernel's, a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = lines_of(&daemon.log_tail(100_000));
    while got.len() < want.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = lines_of(&daemon.log_tail(100_000));
    }
    // Late duplicates would show too.
    std::thread::sleep(Duration::from_millis(200));
    let got = lines_of(&daemon.log_tail(100_000));
    assert!(!want.is_empty());
    assert_eq!(
        got,
        want,
        "nftshimd:\n{}\nkernel:\n{}\nthe daemon's other lines:\n{}",
        got.join("\n"),
        want.join("\n"),
        daemon
            .log_tail(100_000)
            .lines()
            .filter(|l| !l.contains(MARK))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn dmesg() -> String {
    let out = std::process::Command::new("dmesg").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
