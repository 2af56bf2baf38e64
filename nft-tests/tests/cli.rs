//! The real `nft` 1.0.6 driving nftshimd through the preload, compared command by
//! command with the same `nft` driving the kernel in another namespace.
//! Needs root and the workspace's binaries (`cargo build --workspace`).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nft_tests::harness::*;

const BASE: &str = "\
table ip t {
	chain c {
		type filter hook input priority 0; policy accept;
	}
}
";

/// The handle of the only rule matching `needle` in `ip t c`.
fn handle_of(listing: &str, needle: &str) -> u64 {
    let line = listing
        .lines()
        .find(|l| l.contains(needle) && l.contains("# handle"))
        .unwrap_or_else(|| panic!("no rule `{needle}` in\n{listing}"));
    line.rsplit("# handle ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn add_insert_replace_delete_by_handle() {
    let d = Differential::new("rules");
    d.ok_stdin(&["-f", "-"], BASE);
    d.ok(&["add rule ip t c tcp dport 22 accept"]);
    d.ok(&["add rule ip t c tcp dport 23 accept"]);
    d.ok(&["insert rule ip t c tcp dport 21 accept"]);
    let listing = d.same_ruleset();
    let h23 = handle_of(&listing, "dport 23");
    let h22 = handle_of(&listing, "dport 22");
    d.same(&[format!(
        "insert rule ip t c position {h23} tcp dport 30 drop"
    )]);
    d.same(&[format!("add rule ip t c position {h22} tcp dport 31 drop")]);
    d.same(&[format!("add rule ip t c handle {h22} tcp dport 32 drop")]);
    d.same_ruleset();
    d.same(&[format!(
        "replace rule ip t c handle {h23} counter tcp dport 24 drop"
    )]);
    d.same_ruleset();
    d.ok(&[format!("delete rule ip t c handle {h22}")]);
    let listing = d.same_ruleset();
    assert!(!listing.contains("dport 22"), "{listing}");
    // Errors: a handle that is gone, one that never was, a chain that does not exist.
    d.same(&[format!("delete rule ip t c handle {h22}")]);
    d.same(&["delete rule ip t c handle 9999"]);
    d.same(&["replace rule ip t c handle 9999 accept"]);
    d.same(&["insert rule ip t c position 9999 accept"]);
    d.same(&["add rule ip t nochain accept"]);
    d.same(&["add rule ip t c tcp dport 99999"]);
    d.same_ruleset();
}

#[test]
fn listing_variants() {
    let d = Differential::new("lists");
    d.ok_stdin(
        &["-f", "-"],
        "table inet filter {
	counter hits { }
	set allowed { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.168.1.1 } }
	map ports { type inet_service : verdict; elements = { 22 : accept, 80 : drop } }
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ip saddr @allowed tcp dport vmap @ports
		iifname \"lo\" counter name \"hits\" accept
		tcp dport { 443, 8443 } jump web
	}
	chain web {
		ip6 nexthdr tcp log prefix \"web \" accept
	}
}
table ip nat {
	chain post { type nat hook postrouting priority srcnat; oifname \"eth0\" masquerade; }
}
",
    );
    for args in [
        vec!["list", "ruleset"],
        vec!["-a", "list", "ruleset"],
        vec!["-n", "list", "ruleset"],
        vec!["-s", "list", "ruleset"],
        vec!["-t", "list", "ruleset"],
        vec!["-j", "list", "ruleset"],
        vec!["-a", "-j", "list", "ruleset"],
        vec!["list", "tables"],
        vec!["list", "table", "inet", "filter"],
        vec!["-a", "list", "chain", "inet", "filter", "input"],
        vec!["list", "chains"],
        vec!["list", "set", "inet", "filter", "allowed"],
        vec!["list", "map", "inet", "filter", "ports"],
        vec!["list", "sets"],
        vec!["list", "counters"],
        vec!["list", "counter", "inet", "filter", "hits"],
        vec!["list", "table", "ip", "missing"],
        vec!["list", "chain", "inet", "filter", "missing"],
    ] {
        d.same(&args);
    }
    let (k, _) = d.nft(&["-j", "list", "ruleset"]);
    let json: serde_json::Value = serde_json::from_str(&k.stdout).expect("kernel JSON parses");
    assert!(
        json["nftables"].as_array().is_some_and(|a| a.len() > 5),
        "{json}"
    );
}

#[test]
fn ruleset_files_load_atomically() {
    let d = Differential::new("files");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.nft");
    std::fs::write(
        &good,
        "flush ruleset
define ssh = 22
table ip filter {
	set blocked { type ipv4_addr; elements = { 198.51.100.1, 198.51.100.2 } }
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr @blocked drop
		tcp dport $ssh counter accept
	}
}
",
    )
    .unwrap();
    d.ok(&[std::ffi::OsStr::new("-f"), good.as_os_str()]);
    let before = d.same_ruleset();
    // Saved and loaded again: the same ruleset, with fresh handles on both sides.
    let saved = d.same(&["list", "ruleset"]).stdout;
    d.ok(&["flush", "ruleset"]);
    d.ok_stdin(&["-f", "-"], &saved);
    d.same_ruleset();
    // An error on a later line: same message, and nothing of the file applied.
    let bad = dir.path().join("bad.nft");
    std::fs::write(
        &bad,
        "table ip other {\n\tchain c { type filter hook input priority 0; }\n}\nadd rule ip other c tcp dport 70000\n",
    )
    .unwrap();
    assert!(!d
        .same(&[std::ffi::OsStr::new("-f"), bad.as_os_str()])
        .success());
    let bad_kernel = "table ip other {\n\tchain c { type filter hook input priority 0; }\n}\nadd rule ip other nochain accept\n";
    assert!(!d.same_stdin(&["-f", "-"], bad_kernel).success());
    assert_eq!(
        normalise(&d.same(&["list", "ruleset"]).stdout),
        normalise(&saved)
    );
    assert!(!before.is_empty());
}

#[test]
fn flush_chain_table_set_and_ruleset() {
    let d = Differential::new("flush");
    let setup = "table ip a {
	set s { type ipv4_addr; elements = { 1.1.1.1, 2.2.2.2 } }
	chain c1 { type filter hook input priority 0; tcp dport 1 accept; tcp dport 2 accept; }
	chain c2 { udp dport 3 accept; }
}
table ip6 b {
	chain c { type filter hook output priority 0; meta l4proto tcp accept; }
}
";
    d.ok_stdin(&["-f", "-"], setup);
    d.ok(&["flush chain ip a c1"]);
    d.same_ruleset();
    d.ok(&["flush set ip a s"]);
    d.same_ruleset();
    d.ok(&["flush table ip a"]);
    d.same_ruleset();
    d.same(&["flush chain ip a missing"]);
    d.same(&["flush table ip missing"]);
    d.ok(&["flush ruleset"]);
    assert_eq!(d.same(&["list", "ruleset"]).stdout, "");
    // Handles keep counting after a flush of the ruleset, on both sides alike.
    d.ok_stdin(&["-f", "-"], setup);
    d.same_ruleset();
}

#[test]
fn echo_prints_what_was_added() {
    let d = Differential::new("echo");
    for cmd in [
        &["-e", "add table ip t"][..],
        &[
            "-e",
            "-a",
            "add chain ip t c { type filter hook input priority 0; }",
        ],
        &[
            "--echo",
            "--handle",
            "add rule ip t c tcp dport { 22, 80 } counter accept",
        ],
        &["-e", "add set ip t s { type ipv4_addr; }"],
        &["-e", "add element ip t s { 10.1.1.1 }"],
        &["-e", "-j", "add rule ip t c ip saddr @s drop"],
        &["-e", "insert rule ip t c meta mark 7 drop"],
    ] {
        let out = d.ok(cmd);
        assert!(!out.stdout.is_empty(), "{cmd:?} echoed nothing");
    }
    d.same(&["-e", "add rule ip t nochain accept"]);
    d.same_ruleset();
}

#[test]
fn check_mode_applies_nothing() {
    let d = Differential::new("check");
    d.ok_stdin(&["-f", "-"], BASE);
    let before = d.same_ruleset();
    d.ok(&["-c", "add table ip x"]);
    d.ok(&["-c", "add rule ip t c tcp dport 22 accept"]);
    d.same(&["-c", "add rule ip t nochain accept"]);
    d.same(&["-c", "add rule ip t c tcp dport 99999"]);
    d.same(&["-c", "delete table ip t"]);
    d.same_stdin(
        &["-c", "-f", "-"],
        "flush ruleset\ntable ip y { chain c { type filter hook output priority 0; } }\n",
    );
    assert_eq!(d.same_ruleset(), before, "nft -c changed the ruleset");
}

/// Lines `nft monitor` prints in `ns` while `actions` run (from other processes), with
/// the process ids of "new generation" lines masked.
fn monitor_lines(ns: &Netns, shim: Option<&ShimDaemon>, actions: impl FnOnce()) -> Vec<String> {
    let mut child = command(ns, shim, "nft", &["monitor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning nft monitor");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // nft subscribes after filling its cache; give it time to do so.
    std::thread::sleep(Duration::from_millis(800));
    actions();
    let mut lines = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        match rx.recv_timeout(Duration::from_millis(1500)) {
            Ok(l) => lines.push(mask_process_ids(&l).trim_end().to_string()),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn monitor_sees_other_clients_changes() {
    let d = Differential::new("monitor");
    let changes = |ns: &Netns, shim: Option<&ShimDaemon>| {
        for cmd in [
            "add table ip t",
            "add chain ip t c { type filter hook input priority 0; }",
            "add rule ip t c tcp dport 22 counter accept",
            "add set ip t s { type ipv4_addr; }",
            "add element ip t s { 192.0.2.1, 192.0.2.2 }",
            "delete element ip t s { 192.0.2.1 }",
            "delete rule ip t c handle 2",
            "flush ruleset",
        ] {
            let out = nft(ns, shim, &[cmd]);
            assert!(out.success() || shim.is_some(), "{cmd}: {}", out.stderr);
        }
    };
    let kernel = monitor_lines(&d.kernel, None, || changes(&d.kernel, None));
    assert!(
        kernel.iter().any(|l| l == "add table ip t"),
        "kernel monitor saw: {kernel:?}"
    );
    let shim = monitor_lines(&d.shim_ns, Some(&d.shim), || {
        changes(&d.shim_ns, Some(&d.shim))
    });
    assert_eq!(shim, kernel);
}

#[test]
fn family_rules_of_ct_helpers_and_osf() {
    let d = Differential::new("family");
    d.ok(&["add table ip t"]);
    d.ok(&["add table inet i"]);
    // A ct helper takes its table's family unless told otherwise, and may not contradict it.
    d.ok(&["add ct helper ip t h1 { type \"ftp\" protocol tcp; }"]);
    d.same(&["add ct helper ip t h2 { type \"ftp\" protocol tcp; l3proto ip6; }"]);
    d.ok(&["add ct helper inet i h3 { type \"ftp\" protocol tcp; }"]);
    // osf fingerprints IPv4: refused in ip6 tables, accepted in inet ones.
    d.ok(&["add table ip6 s"]);
    d.ok(&["add chain ip6 s c { type filter hook input priority 0; }"]);
    d.same(&["add rule ip6 s c osf name \"Linux\""]);
    d.ok(&["add chain inet i c { type filter hook input priority 0; }"]);
    d.ok(&["add rule inet i c osf name \"Linux\""]);
    // ct timeouts and expectations default to the table's family; expectations are
    // IPv4 or IPv6 only.
    d.ok(&["add ct timeout ip t c1 { protocol tcp; policy = { established:122 } ;}"]);
    d.ok(&["add ct timeout inet i c2 { protocol udp; policy = { replied:14 } ;}"]);
    d.ok(&["add ct expectation ip t e1 { protocol tcp; dport 1234; timeout 2m; size 12; }"]);
    d.same(&["add ct expectation inet i e2 { protocol tcp; dport 1; timeout 2m; size 1; }"]);
    // A synproxy object, named or through a map, only in input and forward.
    d.ok(&["add synproxy ip t s1 mss 1460 wscale 7"]);
    d.ok(&["add chain ip t o { type filter hook output priority 0; }"]);
    d.same(&["add rule ip t o synproxy name tcp dport map { 443 : \"s1\" }"]);
    d.same(&["add rule ip t o synproxy name \"s1\""]);
    d.ok(&["add chain ip t in { type filter hook input priority 0; }"]);
    d.ok(&["add rule ip t in synproxy name tcp dport map { 443 : \"s1\" }"]);
    d.same_ruleset();
}

#[test]
fn concatenated_intervals_clash_only_at_their_ends() {
    // nft_pipapo_insert refuses a new element whose start or end lies in an existing
    // one (field by field); one that only surrounds part of another is taken.
    let d = Differential::new("pipapo");
    d.ok(&["add table ip t"]);
    d.ok(&["add set ip t s { type ipv4_addr . inet_service; flags interval; }"]);
    d.ok(&["add element ip t s { 10.0.0.0/8 . 10-23 }"]);
    d.ok(&["add element ip t s { 10.1.0.0/16 . 5-30 }"]);
    d.same(&["add element ip t s { 10.2.0.0/16 . 20-40 }"]);
    d.same(&["add element ip t s { 9.0.0.0-10.0.0.0 . 30-40 }"]);
    d.same(&["add element ip t s { 9.0.0.0/8 . 20-40 }"]);
    d.same_ruleset();
}
