//! Real TCP flows through a stateful ruleset enforced by the eBPF data plane: a server
//! namespace behind `ct state established,related accept` and a drop policy, a client
//! namespace joined to it by a veth. Connections to the accepted port carry data both
//! ways, the dropped port times out, the rejected one is refused at once, and the
//! server's own outgoing connection gets its replies back only through conntrack (the
//! connection is created at egress and found at ingress: one table for both
//! directions). A second commit keeps the connections (the table outlives program
//! generations). Needs root; namespaces and the daemon are removed even on failure.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::nft::NftSide;
use nft_tests::packets::in_netns;

const RULESET: &str = "table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iif lo accept
    tcp dport 8080 accept
    tcp dport 9090 reject with tcp reset
  }
}
";

const CLIENT: &str = "10.9.0.1";
const SERVER: &str = "10.9.0.2";

/// Two namespaces joined by a veth, loopback up.
fn topology(client: &Netns, server: &Netns) {
    nft_tests::netns::veth_pair((client, "c0", "10.9.0.1/24"), (server, "s0", "10.9.0.2/24"))
        .unwrap();
}

/// Echo servers (line by line) on `ports` in `ns`.
fn echo_servers(ns: &Netns, addr: &str, ports: &[u16]) {
    let listeners: Vec<TcpListener> = in_netns(ns, || {
        ports
            .iter()
            .map(|p| TcpListener::bind((addr, *p)))
            .collect()
    })
    .unwrap();
    for l in listeners {
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
}

fn open(ns: &Netns, to: &str, port: u16) -> std::io::Result<TcpStream> {
    in_netns(ns, || {
        let addr: SocketAddr = format!("{to}:{port}").parse().unwrap();
        let s = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(s)
    })
}

/// Sends `msg` and reads its echo.
fn exchange(s: &mut TcpStream, msg: &str) -> std::io::Result<String> {
    s.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn shim(server: &Netns, bins: &Binaries, daemon: &Daemon) -> NftSide {
    daemon.side(&bins.preload, server.name(), "nft", Duration::from_secs(15))
}

fn load(side: &NftSide, daemon: &Daemon, ruleset: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ruleset).unwrap();
    let out = side.run(&[std::ffi::OsStr::new("-f"), file.path().as_os_str()]);
    assert!(out.success(), "nft -f: {out:?}\n{}", daemon.log_tail(30));
}

/// The handle of the input chain's rule listed as `rule`.
fn rule_handle(side: &NftSide, rule: &str) -> String {
    let listing = side.run(&["-a", "list", "chain", "inet", "filter", "input"]);
    listing
        .stdout
        .lines()
        .find(|l| l.contains(rule))
        .and_then(|l| l.rsplit("handle ").next().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| panic!("{rule} is not listed: {listing:?}"))
}

/// The accepted port serves, the dropped one times out, the rejected one refuses at
/// once.
fn assert_enforced(client: &Netns) {
    let mut s = open(client, SERVER, 8080).expect("8080 is accepted");
    for i in 0..3 {
        let msg = format!("hello {i}\n");
        assert_eq!(exchange(&mut s, &msg).unwrap(), msg);
    }
    let t = Instant::now();
    let dropped = open(client, SERVER, 7070);
    assert!(
        matches!(&dropped, Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)),
        "7070 must be dropped (time out), got {dropped:?}"
    );
    assert!(t.elapsed() >= Duration::from_millis(1400));
    let t = Instant::now();
    let rejected = open(client, SERVER, 9090);
    assert!(
        matches!(&rejected, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "9090 must be reset, got {rejected:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "the reset must come at once, took {:?}",
        t.elapsed()
    );
}

#[test]
fn stateful_input_chain_with_real_tcp_flows() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let client = Netns::create_unique("nftshim-flow", "client").unwrap();
    let server = Netns::create_unique("nftshim-flow", "server").unwrap();
    // Declared after the namespaces: dropped (killed) first, so it lets go of them.
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    topology(&client, &server);
    // Listening on every port the test tries: a failure can only be the ruleset's.
    echo_servers(&server, "0.0.0.0", &[8080, 7070, 9090]);
    echo_servers(&client, "0.0.0.0", &[5555]);
    assert!(open(&client, SERVER, 7070).is_ok(), "no ruleset yet");

    let side = shim(&server, &bins, &daemon);
    load(&side, &daemon, RULESET);
    assert_enforced(&client);

    // The server's own connection out: its replies come in with a destination port
    // no rule accepts, so only conntrack (entry made at egress, found at ingress)
    // lets them in.
    let mut out = open(&server, CLIENT, 5555).expect("the server connects out");
    assert_eq!(exchange(&mut out, "out 1\n").unwrap(), "out 1\n");
    let mut long = open(&client, SERVER, 8080).unwrap();
    assert_eq!(exchange(&mut long, "long 1\n").unwrap(), "long 1\n");

    // A second commit (new programs) accepts 6060; a connection opened to it then
    // outlives a third commit that removes the rule: its next packet comes from the
    // client, and only the connection table the commits kept says it is established
    // (a fresh table would pick it up mid-stream as new, and the policy drops that).
    echo_servers(&server, "0.0.0.0", &[6060]);
    let add = side.run(&[
        "add", "rule", "inet", "filter", "input", "tcp", "dport", "6060", "accept",
    ]);
    assert!(add.success(), "{add:?}");
    let mut kept = open(&client, SERVER, 6060).expect("6060 is accepted now");
    assert_eq!(exchange(&mut kept, "kept 1\n").unwrap(), "kept 1\n");
    assert_eq!(exchange(&mut out, "out 2\n").unwrap(), "out 2\n");
    assert_eq!(exchange(&mut long, "long 2\n").unwrap(), "long 2\n");
    let handle = rule_handle(&side, "tcp dport 6060 accept");
    let del = side.run(&[
        "delete", "rule", "inet", "filter", "input", "handle", &handle,
    ]);
    assert!(del.success(), "{del:?}");
    assert_eq!(
        exchange(&mut kept, "kept 2\n").unwrap(),
        "kept 2\n",
        "an established connection survives the commits\n{}",
        daemon.log_tail(20)
    );
    assert!(
        open(&client, SERVER, 6060).is_err(),
        "a new connection to 6060 is dropped again"
    );
    assert_eq!(exchange(&mut out, "out 3\n").unwrap(), "out 3\n");
    assert_enforced(&client);

    // Without the conntrack rule, the server's connection out gets no replies.
    let handle = rule_handle(&side, "ct state established,related accept");
    let del = side.run(&[
        "delete", "rule", "inet", "filter", "input", "handle", &handle,
    ]);
    assert!(del.success(), "{del:?}");
    out.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    assert!(
        exchange(&mut out, "out 4\n").is_err(),
        "replies to the server's connection must be dropped without the ct rule"
    );
    // Nothing pinned is left behind once the ruleset goes.
    assert!(side.run(&["flush", "ruleset"]).success());
}

/// Program and link ids attached with TCX to `dev` of `ns` (BPF_PROG_QUERY).
fn tcx_attached(ns: &Netns, dev: &str, ingress: bool) -> (Vec<u32>, Vec<u32>) {
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_TCX_INGRESS: u32 = 46;
    const BPF_TCX_EGRESS: u32 = 47;
    let dev = std::ffi::CString::new(dev).unwrap();
    in_netns(ns, || {
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(dev.as_ptr()) };
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut progs = [0u32; 8];
        let mut links = [0u32; 8];
        // The query part of `union bpf_attr`: target_ifindex, attach_type,
        // query_flags, attach_flags, prog_ids, count, pad, prog_attach_flags,
        // link_ids, link_attach_flags, revision.
        let mut attr = [0u8; 64];
        attr[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        let ty = if ingress {
            BPF_TCX_INGRESS
        } else {
            BPF_TCX_EGRESS
        };
        attr[4..8].copy_from_slice(&ty.to_ne_bytes());
        attr[16..24].copy_from_slice(&(progs.as_mut_ptr() as u64).to_ne_bytes());
        attr[24..28].copy_from_slice(&(progs.len() as u32).to_ne_bytes());
        attr[40..48].copy_from_slice(&(links.as_mut_ptr() as u64).to_ne_bytes());
        // SAFETY: bpf(2) with an attr of the size passed, pointing at live buffers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_QUERY,
                attr.as_mut_ptr(),
                attr.len() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = u32::from_ne_bytes(attr[24..28].try_into().unwrap()) as usize;
        Ok((progs[..n].to_vec(), links[..n].to_vec()))
    })
    .unwrap()
}

#[test]
fn a_killed_daemon_leaves_the_rules_enforced_and_the_next_takes_them_over() {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let client = Netns::create_unique("nftshim-takeover", "client").unwrap();
    let server = Netns::create_unique("nftshim-takeover", "server").unwrap();
    let mut daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    topology(&client, &server);
    echo_servers(&server, "0.0.0.0", &[8080, 7070, 9090]);
    echo_servers(&client, "0.0.0.0", &[5555]);
    let side = shim(&server, &bins, &daemon);
    load(&side, &daemon, RULESET);
    assert_enforced(&client);
    let mut out = open(&server, CLIENT, 5555).expect("the server connects out");
    assert_eq!(exchange(&mut out, "before\n").unwrap(), "before\n");

    let before: Vec<_> = [true, false]
        .iter()
        .map(|&ingress| tcx_attached(&server, "s0", ingress))
        .collect();
    for (progs, links) in &before {
        assert_eq!(
            (progs.len(), links.len()),
            (1, 1),
            "one program per direction"
        );
    }

    // No daemon: the pinned links go on enforcing, connections included.
    daemon.kill();
    assert_enforced(&client);
    assert_eq!(exchange(&mut out, "down\n").unwrap(), "down\n");
    for (ingress, old) in [true, false].into_iter().zip(&before) {
        assert_eq!(&tcx_attached(&server, "s0", ingress), old);
    }

    // The next daemon restores the ruleset; the same links run its programs.
    daemon.restart(&bins.nftshimd, "ebpf").unwrap();
    assert_enforced(&client);
    assert_eq!(
        exchange(&mut out, "after\n").unwrap(),
        "after\n",
        "connections survive the restart\n{}",
        daemon.log_tail(20)
    );
    let after: Vec<_> = [true, false]
        .iter()
        .map(|&ingress| tcx_attached(&server, "s0", ingress))
        .collect();
    for ((progs, links), (old_progs, old_links)) in after.iter().zip(&before) {
        assert_eq!(
            (progs.len(), links.len()),
            (1, 1),
            "still one program per direction"
        );
        assert_eq!(
            links, old_links,
            "the pinned link is taken over, not attached anew"
        );
        assert_ne!(progs, old_progs, "and runs the new daemon's program");
    }

    // The ruleset goes: the links are detached and the pins removed.
    assert!(side.run(&["flush", "ruleset"]).success());
    for ingress in [true, false] {
        assert_eq!(tcx_attached(&server, "s0", ingress), (vec![], vec![]));
    }
    assert!(open(&client, SERVER, 7070).is_ok(), "unenforced again");
}
