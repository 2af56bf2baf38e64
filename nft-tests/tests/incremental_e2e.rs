//! One `nft add rule` (and `delete rule`) into a 10,000-rule chain changes only what
//! it must: the data plane rewrites a spare program's maps in place (no program is
//! loaded, a handful of map entries are written, `nftshim status` says how many), and
//! packets get the kernel's verdicts before and after each change.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::packets::{self, Outcome, Sides, Topology};
use nftshim_ipc::{DataplaneStatus, StatusReport};

fn large_ruleset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets/large-10000-rules.nft")
}

/// The data plane's figures for the namespace `netns` names, from `nftshim status`.
fn dataplane_status(bins: &Binaries, daemon: &Daemon, netns: &str) -> DataplaneStatus {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(format!("/run/netns/{netns}"))
        .unwrap()
        .ino();
    let cli = bins.nftshimd.with_file_name("nftshim");
    let out = Command::new(&cli)
        .args(["status", "--json", "--socket"])
        .arg(daemon.socket())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    report
        .namespaces
        .into_iter()
        .find(|n| n.inode == inode)
        .and_then(|n| n.dataplane)
        .unwrap_or_else(|| panic!("no data plane status for {netns}"))
}

fn same_fates(kernel: &Topology, shim: &Topology, probes: &[packets::Probe], when: &str) {
    let k = packets::observe(kernel, probes).unwrap();
    let s = packets::observe(shim, probes).unwrap();
    let differ: Vec<String> = probes
        .iter()
        .zip(k.delivered.iter().zip(&s.delivered))
        .filter(|(_, (a, b))| a != b)
        .map(|(p, (a, b))| format!("{p}: kernel delivered={a}, nftshimd delivered={b}"))
        .collect();
    assert!(differ.is_empty(), "{when}:\n{}", differ.join("\n"));
}

#[test]
fn adding_a_rule_to_10000_rewrites_only_what_changed() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Topology::create("nftshim-inc", "k").unwrap();
    let shim = Topology::create("nftshim-inc", "s").unwrap();
    // Declared after the namespaces: dropped (killed) first, so it lets go of them.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let sides = Sides::new(
        &kernel,
        &shim,
        &bins.preload,
        daemon.socket(),
        "nft".as_ref(),
        Duration::from_secs(60),
    );
    // TCP probes only: they are the ones the added rules decide.
    let probes: Vec<_> = packets::corpus()
        .into_iter()
        .filter(|p| matches!(p.l4, packets::L4::Tcp { .. }))
        .collect();
    let outcome = packets::run_ruleset(&kernel, &shim, &sides, &large_ruleset(), &probes).unwrap();
    assert!(
        matches!(outcome, Outcome::Passed { .. }),
        "the 10,000-rule ruleset: {outcome:?}\n{}",
        daemon.log_tail(20)
    );
    let shim_ns = shim.fw.name().to_string();
    // The daemon's first ruleset here: what it wrote is a full load's cost.
    let full = dataplane_status(&bins, &daemon, &shim_ns);
    assert!(full.loads > 0 && full.map_writes > 10_000, "{full:?}");

    let both = |args: &[&str]| {
        for side in [&sides.kernel, &sides.shim] {
            let out = side.run(args);
            assert!(
                out.success(),
                "nft {args:?}: {out:?}\n{}",
                daemon.log_tail(20)
            );
        }
    };
    // The first change after a load may load afresh (no spare program exists yet);
    // from then on every change rewrites the spare in place.
    both(&[
        "add", "rule", "inet", "filter", "input", "tcp", "dport", "8000", "drop",
    ]);
    same_fates(&kernel, &shim, &probes, "after the first added rule");
    for (i, port) in ["8001", "8050", "443"].iter().enumerate() {
        let before = dataplane_status(&bins, &daemon, &shim_ns);
        both(&[
            "add", "rule", "inet", "filter", "input", "tcp", "dport", port, "drop",
        ]);
        let after = dataplane_status(&bins, &daemon, &shim_ns);
        let writes = after.map_writes - before.map_writes;
        eprintln!(
            "rule {i} added: {writes} map writes ({after:?}; the load wrote {})",
            full.map_writes
        );
        assert_eq!(after.loads, before.loads, "no program loaded for one rule");
        assert!(after.patches > before.patches, "{before:?} -> {after:?}");
        assert!(
            writes > 0 && writes * 100 < full.map_writes,
            "one rule wrote {writes} map entries, the whole ruleset {}",
            full.map_writes
        );
        same_fates(
            &kernel,
            &shim,
            &probes,
            &format!("after adding tcp dport {port} drop"),
        );
    }

    // Deleting the last rule again: same story.
    let listed = sides
        .shim
        .run(&["-a", "list", "chain", "inet", "filter", "input"]);
    let handle = listed
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("tcp dport 443 drop # handle "))
        .expect("the added rule is listed")
        .to_string();
    let klisted = sides
        .kernel
        .run(&["-a", "list", "chain", "inet", "filter", "input"]);
    let khandle = klisted
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("tcp dport 443 drop # handle "))
        .expect("the added rule is listed by the kernel")
        .to_string();
    assert_eq!(handle, khandle, "handles are the kernel's");
    let before = dataplane_status(&bins, &daemon, &shim_ns);
    both(&[
        "delete", "rule", "inet", "filter", "input", "handle", &handle,
    ]);
    let after = dataplane_status(&bins, &daemon, &shim_ns);
    assert_eq!(
        after.loads, before.loads,
        "no program loaded to delete a rule"
    );
    assert!(after.patches > before.patches, "{before:?} -> {after:?}");
    // The spare program still holds the ruleset of before the last addition, which is
    // the one now: it may have nothing to write at all.
    let writes = after.map_writes - before.map_writes;
    assert!(
        writes * 100 < full.map_writes,
        "deleting wrote {writes} entries: {after:?}"
    );
    same_fates(&kernel, &shim, &probes, "after deleting tcp dport 443 drop");
    packets::flush(&sides);
}
