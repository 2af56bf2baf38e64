//! The preload library under real programs: a probe that compares socket semantics with
//! the kernel, nft and iptables-nft against a fake daemon, and the failure/fallback
//! paths. Needs root (network namespaces).

mod support;

use std::time::Duration;

use support::fake_daemon::{Behaviour, FakeDaemon};
use support::{preload_lib, probe, run, text, Netns};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `program args` in `ns` under the preload library, served by `daemon`.
fn under_preload(
    ns: &Netns,
    daemon: &FakeDaemon,
    program: &str,
    args: &[&str],
) -> std::process::Output {
    let lib = preload_lib();
    let env = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("NFTSHIM_SOCKET", daemon.path.to_str().unwrap()),
    ];
    run(ns.command(&env, program, args), LIMIT)
}

fn probe_under_preload(ns: &Netns, daemon: &FakeDaemon, args: &[&str]) -> String {
    let out = under_preload(ns, daemon, probe().to_str().unwrap(), args);
    assert!(
        out.status.success(),
        "probe {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn socket_semantics_match_the_kernel() {
    let kernel_ns = Netns::new();
    let kernel = run(
        kernel_ns.command(&[], probe().to_str().unwrap(), &["semantics"]),
        LIMIT,
    );
    assert!(
        kernel.status.success(),
        "probe against the kernel failed: {}",
        text(&kernel.stderr)
    );

    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let emulated = probe_under_preload(&ns, &daemon, &["semantics"]);

    let kernel = text(&kernel.stdout);
    for (k, e) in kernel.lines().zip(emulated.lines()) {
        assert_eq!(
            k, e,
            "kernel vs emulated differ\n--- kernel:\n{kernel}\n--- emulated:\n{emulated}"
        );
    }
    assert_eq!(
        kernel.lines().count(),
        emulated.lines().count(),
        "emulated:\n{emulated}"
    );

    // And it was the daemon that answered, for a socket in the caller's namespace.
    let log = daemon.wait_for("all sessions closed", |l| {
        l.closed_sessions == l.hellos.len()
    });
    assert_eq!(log.hellos.len(), 3, "{log:?}");
    assert!(
        log.hellos
            .iter()
            .all(|h| h.netns_inode == ns.inode() && h.far_end_is_seqpacket),
        "{log:?}"
    );
    assert!(
        log.sockopts
            .iter()
            .any(|o| o.level == 270 && o.name == 11 && o.value == 1i32.to_ne_bytes()),
        "{log:?}"
    );
    assert!(
        log.sockopts
            .iter()
            .any(|o| o.level == libc::SOL_SOCKET && o.name == libc::SO_RCVBUF),
        "{log:?}"
    );
    assert_eq!(log.binds.len(), 1);
}

#[test]
fn nft_list_ruleset_is_served_by_the_daemon() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour {
        genid: 5,
        ..Behaviour::default()
    });
    let out = under_preload(&ns, &daemon, "nft", &["list", "ruleset"]);
    assert!(out.status.success(), "nft failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "empty ruleset prints nothing");
    let log = daemon.log();
    let getgen = 0x0a00 | 16;
    let msgs = log.messages();
    assert!(
        msgs.iter().filter(|(t, _)| *t == getgen).count() >= 2,
        "GETGEN before and after the dumps: {msgs:x?}"
    );
    assert!(
        msgs.iter().any(|(t, f)| *t == 0x0a01 && f & 0x300 == 0x300),
        "a GETTABLE dump: {msgs:x?}"
    );
    assert_eq!(log.hellos.len(), 1, "one netfilter socket per nft run");
}

#[test]
fn iptables_nft_list_is_served_by_the_daemon() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = under_preload(&ns, &daemon, "iptables-nft", &["-L", "-n"]);
    assert!(
        out.status.success(),
        "iptables-nft failed: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    for chain in [
        "Chain INPUT (policy ACCEPT)",
        "Chain FORWARD (policy ACCEPT)",
        "Chain OUTPUT (policy ACCEPT)",
    ] {
        assert!(stdout.contains(chain), "{stdout}");
    }
    let log = daemon.log();
    assert!(
        !log.hellos.is_empty() && !log.binds.is_empty(),
        "iptables binds its socket: {log:?}"
    );
}

#[test]
fn without_a_daemon_socket_fails_with_a_clear_message() {
    let ns = Netns::new();
    let lib = preload_lib();
    let env = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("NFTSHIM_SOCKET", "/nonexistent/nftshim.sock"),
    ];
    let out = run(ns.command(&env, "nft", &["list", "ruleset"]), LIMIT);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("nftshim: cannot reach nftshimd at /nonexistent/nftshim.sock: No such file or directory; set NFTSHIM_FALLBACK=kernel to use the kernel"),
        "{err}"
    );
}

#[test]
fn a_socket_file_nobody_listens_on_gives_econnrefused() {
    let dir = std::env::temp_dir().join(format!("nftshim-dead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dead.sock");
    drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
    let ns = Netns::new();
    let lib = preload_lib();
    let env = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("NFTSHIM_SOCKET", path.to_str().unwrap()),
    ];
    let out = run(ns.command(&env, "nft", &["list", "ruleset"]), LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Connection refused"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fallback_reaches_the_kernel() {
    let ns = Netns::new();
    let lib = preload_lib();
    let env = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("NFTSHIM_SOCKET", "/nonexistent/nftshim.sock"),
        ("NFTSHIM_FALLBACK", "kernel"),
    ];
    let add = run(
        ns.command(&env, "nft", &["add", "table", "ip", "fallback_probe"]),
        LIMIT,
    );
    assert!(add.status.success(), "{}", text(&add.stderr));
    // Check with the kernel directly (no preload): the table is in the namespace's ruleset.
    let list = run(ns.command(&[], "nft", &["list", "tables"]), LIMIT);
    assert!(
        text(&list.stdout).contains("table ip fallback_probe"),
        "{}",
        text(&list.stdout)
    );
}

#[test]
fn netlink_route_stays_with_the_kernel() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = under_preload(&ns, &daemon, "ip", &["link"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("lo:"), "{}", text(&out.stdout));
    let probe_out = probe_under_preload(&ns, &daemon, &["route"]);
    assert!(
        probe_out.contains("route_so_protocol: len 4 bytes [00, 00, 00, 00]"),
        "{probe_out}"
    );
    assert!(
        daemon.log().hellos.is_empty(),
        "no NETLINK_ROUTE socket may reach the daemon"
    );
}

#[test]
fn dup_shares_the_socket_and_the_last_close_ends_the_session() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = probe_under_preload(&ns, &daemon, &["dup"]);
    for line in [
        "send_on_dup: ok 20",
        "recv_on_original: true",
        "close_original: ok 0",
        "send_after_original_closed: ok 20",
        "recv_on_dup: true",
        "fcntl_dupfd_so_protocol: len 4 bytes [0c, 00, 00, 00]",
        "dup2_so_protocol: len 4 bytes [0c, 00, 00, 00]",
        "close_copies: ok 0",
        // A pipe dup2'd over the last copy is a pipe: getsockopt says ENOTSOCK.
        "dup2_over_so_protocol: errno88",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    let log = daemon.wait_for("the session to close", |l| l.closed_sessions == 1);
    assert_eq!(log.hellos.len(), 1);
}

#[test]
fn nonblocking_read_asks_the_daemon_for_held_back_replies() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour {
        lazy: true,
        ..Behaviour::default()
    });
    let out = probe_under_preload(&ns, &daemon, &["nonblock-read"]);
    assert!(out.contains("first_read: type 0x0a0f seq 3"), "{out}");
    assert!(out.contains("second_read: EAGAIN"), "{out}");
    assert_eq!(daemon.log().syncs, 2, "one Sync per EAGAIN");
}

#[test]
fn a_datagram_larger_than_one_record_arrives_whole() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let size = 3 << 20;
    let out = probe_under_preload(&ns, &daemon, &["big", &size.to_string()]);
    assert!(out.contains(&format!("sent: ok {size}")), "{out}");
    assert!(out.contains("ack: error 0 seq 99"), "{out}");
    let log = daemon.log();
    assert_eq!(log.datagrams.len(), 1);
    assert_eq!(log.datagrams[0].len(), size);
    assert!(log.parts >= 2, "sent in parts: {}", log.parts);
}

#[test]
fn zero_timeout_select_sees_every_reply_after_send() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = probe_under_preload(&ns, &daemon, &["select"]);
    assert!(out.contains("readable_before: false"), "{out}");
    // NEWGEN and the ACK, each a record of its own, both queued before send returned.
    assert!(out.contains("records_read_while_readable: 2"), "{out}");
}

#[test]
fn sockets_in_parallel_threads_get_their_own_replies() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = probe_under_preload(&ns, &daemon, &["threads", "4"]);
    assert!(out.contains("matched_replies: 400"), "{out}");
}

#[test]
fn nft_batch_commands_and_a_multi_megabyte_batch_reach_the_daemon_whole() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = under_preload(&ns, &daemon, "nft", &["add", "table", "ip", "t"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let rules = 20_000;
    let mut script = String::from("add table ip t\nadd chain ip t c\n");
    for i in 0..rules {
        script.push_str(&format!("add rule ip t c ip saddr 10.{}.{}.{} tcp dport {} counter accept comment \"rule {i}\"\n", i >> 16, (i >> 8) & 255, i & 255, 1000 + i % 5000));
    }
    let file = std::env::temp_dir().join(format!("nftshim-big-{}.nft", std::process::id()));
    std::fs::write(&file, script).unwrap();
    let out = under_preload(&ns, &daemon, "nft", &["-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let log = daemon.log();
    let newrule = 0x0a00 | 6;
    let biggest = log.datagrams.iter().max_by_key(|d| d.len()).unwrap();
    let in_biggest = support::fake_daemon::count_type(biggest, newrule);
    assert_eq!(
        in_biggest,
        rules,
        "all rules in one batch datagram of {} bytes",
        biggest.len()
    );
    assert!(
        biggest.len() > 4 << 20,
        "larger than any single Unix record: {}",
        biggest.len()
    );
}

#[test]
fn iptables_nft_append_and_check_complete() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = under_preload(
        &ns,
        &daemon,
        "iptables-nft",
        &["-A", "INPUT", "-s", "10.0.0.1", "-j", "ACCEPT"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let msgs = daemon.log().messages();
    assert!(
        msgs.iter().any(|(t, _)| *t == 0x10),
        "a batch BEGIN: {msgs:x?}"
    );
    assert!(
        msgs.iter().any(|(t, _)| *t == 0x0a06),
        "a NEWRULE: {msgs:x?}"
    );
}

#[test]
fn an_error_in_a_batch_reaches_nft_before_its_send_returns() {
    // nft reads batch results with a zero-timeout select right after sendmsg: an error
    // that arrived later would be lost and the command would "succeed".
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let out = under_preload(&ns, &daemon, "nft", &["add", "table", "ip", "refuse_me"]);
    assert!(!out.status.success(), "the refusal was lost");
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
    let out = under_preload(
        &ns,
        &daemon,
        "iptables-nft",
        &["-t", "raw", "-A", "PREROUTING", "-j", "ACCEPT"],
    );
    assert!(!out.status.success(), "iptables-nft lost the refusal");
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
}
