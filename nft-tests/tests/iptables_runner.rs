//! `nft-conformance --suite iptables` judged against a known answer: both sides are the
//! kernel, but on the "nftshim" side `iptables-nft` is a wrapper (found first on PATH)
//! that sabotages chosen rules, so we know which cases must pass, fail and be skipped.
//! Needs root (network namespaces), as the runner does.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const SUITE: &str = "\
:INPUT
-p tcp --dport 21;=;OK
-p tcp --dport 22;=;OK
-p tcp --dport 23;=;OK
-p tcp --dport 99999;;FAIL
";

/// A setup command nftshimd refuses: the lines after it need what it would have set
/// up, so they are skipped, not failed.
const REFUSED_SETUP: &str = "\
:INPUT
-p tcp --dport 21;=;OK
@iptables -I INPUT -p udp --dport 9 -j DROP
-p tcp --dport 25;=;OK
";

/// In the nftshim-side namespaces (`...-s`): refuses `--dport 22` and the setup rule
/// of [`REFUSED_SETUP`] as unsupported and turns `--dport 23` into `24`.
const FAKE: &str = r#"#!/bin/sh
case "$(ip netns identify $$)" in
*-s)
    case "$*" in
    "-A INPUT -p tcp --dport 22") echo "iptables: RULE_APPEND failed (Operation not supported)" >&2; exit 4 ;;
    "-I INPUT -p udp --dport 9 -j DROP") echo "iptables: RULE_INSERT failed (Operation not supported)" >&2; exit 4 ;;
    *"--dport 23") exec /usr/sbin/iptables-nft $(echo "$*" | sed 's/dport 23/dport 24/') ;;
    esac ;;
esac
exec /usr/sbin/iptables-nft "$@"
"#;

/// Runs the runner on `suite` with the fake iptables-nft first on PATH: its stdout.
fn run_suite(suite: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("libipt_sample.t"), suite).unwrap();
    let fake = dir.path().join("iptables-nft");
    std::fs::write(&fake, FAKE).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_nft-conformance"))
        .args(["--suite", "iptables", "--nftshim-side", "kernel"])
        .arg(dir.path().join("libipt_sample.t"))
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn counts_passes_failures_and_skips() {
    let stdout = run_suite(SUITE);
    assert_eq!(
        stdout.lines().last(),
        Some("conformance: 2 passed, 1 failed, 1 skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL ")
            && stdout.contains("-p tcp --dport 23")
            && stdout.contains("+-A INPUT -p tcp -m tcp --dport 24"),
        "the failure shows the save diff:\n{stdout}"
    );
}

#[test]
fn lines_after_a_refused_setup_command_are_skipped() {
    let stdout = run_suite(REFUSED_SETUP);
    assert_eq!(
        stdout.lines().last(),
        Some("conformance: 1 passed, 0 failed, 2 skipped"),
        "{stdout}"
    );
}
