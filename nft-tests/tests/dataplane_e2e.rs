//! End to end through the eBPF data plane: the unmodified nft loads an input chain
//! into nftshimd for one namespace; a TCP client in another namespace is refused on
//! the dropped port and served on the accepted one; flushing the ruleset lifts it.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

const RULESET: &str = "table inet filter {
  chain input {
    type filter hook input priority 0;
    tcp dport 8001 drop
    tcp dport 8002 accept
  }
}
";

fn connect(client: &Netns, port: u16) -> std::io::Result<String> {
    in_netns(client, || {
        let addr: SocketAddr = format!("10.8.0.2:{port}").parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"ping\n")?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

#[test]
fn tcp_across_namespaces_through_an_enforced_input_chain() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let client = Netns::create_unique("nftshim-e2e", "client").unwrap();
    let server = Netns::create_unique("nftshim-e2e", "server").unwrap();
    // Declared after the namespaces: dropped (killed) first, so it lets go of them.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    nft_tests::netns::veth_pair(
        (&client, "c0", "10.8.0.1/24"),
        (&server, "s0", "10.8.0.2/24"),
    )
    .unwrap();

    // Echo servers on both ports, in the server namespace.
    let listeners: Vec<TcpListener> = in_netns(&server, || {
        [8001, 8002]
            .iter()
            .map(|p| TcpListener::bind(("0.0.0.0", *p)))
            .collect()
    })
    .unwrap();
    for l in listeners {
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 16];
                let n = c.read(&mut buf).unwrap_or(0);
                let _ = c.write_all(&buf[..n]);
            }
        });
    }
    assert_eq!(connect(&client, 8001).unwrap(), "ping\n", "no ruleset yet");

    let shim = daemon.side(&bins.preload, server.name(), "nft", Duration::from_secs(15));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), RULESET).unwrap();
    let out = shim.run(&[std::ffi::OsStr::new("-f"), file.path().as_os_str()]);
    assert!(out.success(), "nft -f: {out:?}\n{}", daemon.log_tail(20));

    let refused = connect(&client, 8001);
    assert!(
        refused.is_err(),
        "port 8001 must be dropped, got {refused:?}"
    );
    assert_eq!(connect(&client, 8002).unwrap(), "ping\n");

    // Unenforced again once the ruleset is gone.
    assert!(shim.run(&["flush", "ruleset"]).success());
    assert_eq!(connect(&client, 8001).unwrap(), "ping\n");
}

#[test]
fn packet_suite_agrees_with_the_kernel_on_every_ruleset() {
    let rulesets = concat!(env!("CARGO_MANIFEST_DIR"), "/rulesets");
    let bins = Binaries::for_tests();
    // A hang guard, not a timing: a ruleset with header writes loads several programs,
    // each verified for seconds on a busy 2-core machine.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nft-conformance"))
        .args(["--suite", "packets", "--timeout", "60", "--nftshimd"])
        .arg(&bins.nftshimd)
        .arg("--preload")
        .arg(&bins.preload)
        .arg(rulesets)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        last.starts_with("conformance: ") && last.contains(" 0 failed"),
        "{stdout}"
    );
    // The refusal examples are skipped, everything else passes.
    let skipped = stdout.lines().filter(|l| l.starts_with("SKIP ")).count();
    let files = std::fs::read_dir(rulesets)
        .unwrap()
        .filter(|e| nft_tests::packets::ruleset::is_ruleset(&e.as_ref().unwrap().path()))
        .count();
    let refused = std::fs::read_dir(rulesets)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("refused-")
        })
        .count();
    assert_eq!(skipped, refused, "{stdout}");
    assert_eq!(
        last,
        format!(
            "conformance: {} passed, 0 failed, {refused} skipped",
            files - refused
        )
    );
}

/// A rule the data plane cannot enforce is refused on its own message, so nft points at
/// that rule (as it does for the kernel's own EOPNOTSUPP), and nothing of the batch
/// applies.
#[test]
fn a_refused_rule_is_reported_on_its_own_line_and_nothing_applies() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let ns = Netns::create_unique("nftshim-e2e", "refuse").unwrap();
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let shim = daemon.side(&bins.preload, ns.name(), "nft", Duration::from_secs(15));
    // `osf` fingerprints operating systems from SYN options: nothing in the data plane does.
    let ruleset = "table inet filter {\n  chain input {\n    type filter hook input priority 0;\n    tcp dport 22 accept\n    osf name \"Linux\" drop\n    tcp dport 23 drop\n  }\n}\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ruleset).unwrap();
    let out = shim.run(&[std::ffi::OsStr::new("-f"), file.path().as_os_str()]);
    assert!(!out.success(), "{out:?}");
    let first = out.stderr.lines().next().unwrap_or("");
    assert!(
        first.contains(":5:")
            && first.ends_with("Error: Could not process rule: Operation not supported"),
        "the error must point at line 5, the osf rule: {out:?}"
    );
    assert!(out.stderr.contains("osf name \"Linux\" drop"), "{out:?}");
    let listed = shim.run(&["list", "ruleset"]);
    assert!(
        listed.success() && listed.stdout.is_empty(),
        "nothing may apply: {listed:?}"
    );
}
