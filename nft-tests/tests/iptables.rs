//! The unmodified iptables-nft family (iptables, ip6tables, ebtables, arptables 1.8.9)
//! driving nftshimd through the preload, compared command by command with the same
//! binaries driving the kernel in another namespace. Needs root and the workspace's
//! binaries (`cargo build --workspace`).

use nft_tests::harness::*;
use nft_tests::iptables::strip_comments;

/// A Docker-style ruleset as `iptables-save` prints it (the order of the tables too).
const DOCKER: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -p tcp -m multiport --dports 22,2375 -m comment --comment \"block docker api\" -j REJECT --reject-with tcp-reset
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
";

/// Runs `PROGRAM ARGS...` (with `input` on stdin) on both sides of `d`.
fn both(
    d: &Differential,
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> (CmdOutput, CmdOutput) {
    let run_in = |ns: &Netns, shim: Option<&ShimDaemon>| {
        nft_tests::nft::run(
            command(ns, shim, program, args),
            input.map(str::as_bytes),
            LIMIT,
        )
    };
    (run_in(&d.kernel, None), run_in(&d.shim_ns, Some(&d.shim)))
}

/// Both sides must agree on status, stderr and stdout (`#` lines of `*-save` output,
/// which carry dates, left out); returns the kernel's output.
fn same(d: &Differential, program: &str, args: &[&str], input: Option<&str>) -> CmdOutput {
    let (mut k, mut s) = both(d, program, args, input);
    k.stdout = strip_comments(&k.stdout);
    s.stdout = strip_comments(&s.stdout);
    assert_same(&format!("{program} {}", args.join(" ")), &k, &s);
    k
}

/// [`same`], and the kernel must have succeeded.
fn ok(d: &Differential, program: &str, args: &[&str], input: Option<&str>) -> CmdOutput {
    let k = same(d, program, args, input);
    assert!(
        k.success(),
        "kernel refused `{program} {}`: {}",
        args.join(" "),
        k.stderr
    );
    k
}

/// The `*TABLE` ... `COMMIT` block of `table` in save output.
fn table_block<'a>(save: &'a str, table: &str) -> Vec<&'a str> {
    save.lines()
        .skip_while(|l| *l != format!("*{table}"))
        .take_while(|l| *l != "COMMIT")
        .collect()
}

#[test]
fn docker_ruleset_restores_and_saves_back_identically() {
    let d = Differential::new("ipt-docker");
    ok(&d, "iptables-nft-restore", &[], Some(DOCKER));
    let saved = ok(&d, "iptables-nft-save", &[], None).stdout;
    for table in ["filter", "nat"] {
        assert_eq!(
            table_block(&saved, table),
            table_block(DOCKER, table),
            "table {table} saved differently:\n{saved}"
        );
    }
    // What Docker does next: more rules with --noflush, listings, checks, deletions.
    let more =
        "*filter\n-I DOCKER-USER 1 -s 10.0.0.0/8 -m comment --comment \"lan\" -j RETURN\nCOMMIT\n";
    ok(&d, "iptables-nft-restore", &["--noflush"], Some(more));
    ok(&d, "iptables-nft-save", &["-t", "filter"], None);
    ok(&d, "iptables-nft", &["-S"], None);
    ok(&d, "iptables-nft", &["-t", "nat", "-S", "DOCKER"], None);
    ok(&d, "iptables-nft", &["-L", "-n", "-v"], None);
    ok(
        &d,
        "iptables-nft",
        &["-t", "nat", "-L", "-n", "--line-numbers"],
        None,
    );
    let reject = [
        "-C",
        "DOCKER-USER",
        "-p",
        "tcp",
        "-m",
        "multiport",
        "--dports",
        "22,2375",
        "-m",
        "comment",
        "--comment",
        "block docker api",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    ok(&d, "iptables-nft", &reject, None);
    let mut absent = reject;
    absent[8] = "22,2376";
    let k = same(&d, "iptables-nft", &absent, None);
    assert!(!k.success(), "a rule that is not there was found");
    let mut delete = reject;
    delete[0] = "-D";
    ok(&d, "iptables-nft", &delete, None);
    ok(&d, "iptables-nft", &["-t", "nat", "-F", "DOCKER"], None);
    ok(
        &d,
        "iptables-nft",
        &["-t", "nat", "-D", "PREROUTING", "1"],
        None,
    );
    ok(
        &d,
        "iptables-nft",
        &["-t", "nat", "-D", "OUTPUT", "1"],
        None,
    );
    ok(&d, "iptables-nft", &["-t", "nat", "-X", "DOCKER"], None);
    ok(&d, "iptables-nft-save", &[], None);
    // A full restore replaces the tables it names.
    ok(&d, "iptables-nft-restore", &[], Some(DOCKER));
    let again = ok(&d, "iptables-nft-save", &[], None).stdout;
    assert_eq!(table_block(&again, "filter"), table_block(DOCKER, "filter"));
    assert_eq!(table_block(&again, "nat"), table_block(DOCKER, "nat"));
}

#[test]
fn iptables_and_ip6tables_commands_agree() {
    let d = Differential::new("ipt-cmds");
    for (bin, save, addr) in [
        ("iptables-nft", "iptables-nft-save", "10.1.2.3"),
        ("ip6tables-nft", "ip6tables-nft-save", "2001:db8::3"),
    ] {
        let steps: &[&[&str]] = &[
            &["-N", "CUSTOM"],
            &[
                "-A",
                "INPUT",
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
            &[
                "-A", "INPUT", "-s", addr, "-p", "tcp", "-m", "tcp", "--dport", "22", "-j",
                "CUSTOM",
            ],
            &[
                "-A",
                "CUSTOM",
                "-m",
                "limit",
                "--limit",
                "3/min",
                "-j",
                "LOG",
                "--log-prefix",
                "ssh ",
            ],
            &["-A", "CUSTOM", "-m", "recent", "--name", "ssh", "--set"],
            &[
                "-A",
                "CUSTOM",
                "-m",
                "hashlimit",
                "--hashlimit-above",
                "10/sec",
                "--hashlimit-name",
                "h",
                "-j",
                "DROP",
            ],
            &["-A", "CUSTOM", "-j", "NFLOG", "--nflog-group", "5"],
            &["-I", "INPUT", "1", "-i", "lo", "-j", "ACCEPT"],
            &[
                "-I",
                "INPUT",
                "2",
                "-m",
                "pkttype",
                "--pkt-type",
                "multicast",
                "-j",
                "DROP",
            ],
            &[
                "-R", "INPUT", "2", "-m", "length", "--length", "0:64", "-j", "DROP",
            ],
            &[
                "-A", "FORWARD", "-m", "mark", "--mark", "0x1/0xff", "-j", "REJECT",
            ],
            &[
                "-A", "OUTPUT", "-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT",
            ],
            &["-P", "FORWARD", "DROP"],
            &[
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-j",
                "MARK",
                "--set-mark",
                "7",
            ],
            &[
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-j",
                "CONNMARK",
                "--save-mark",
            ],
            &[
                "-t",
                "mangle",
                "-A",
                "POSTROUTING",
                "-p",
                "tcp",
                "--tcp-flags",
                "SYN,RST",
                "SYN",
                "-j",
                "TCPMSS",
                "--clamp-mss-to-pmtu",
            ],
            &[
                "-t",
                "mangle",
                "-A",
                "POSTROUTING",
                "-p",
                "udp",
                "-j",
                "CHECKSUM",
                "--checksum-fill",
            ],
            &[
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-p",
                "udp",
                "--dport",
                "53",
                "-j",
                "CT",
                "--notrack",
            ],
            &["-t", "raw", "-A", "OUTPUT", "-j", "NOTRACK"],
            &[
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "--dport",
                "80",
                "-j",
                "REDIRECT",
                "--to-ports",
                "8080",
            ],
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                "eth0",
                "-j",
                "MASQUERADE",
            ],
            &["-L", "-n", "-v"],
            &["-L", "CUSTOM", "-n", "--line-numbers"],
            &["-S"],
            &["-t", "mangle", "-S"],
            &["-Z"],
            &["-Z", "INPUT", "1"],
            &["-C", "INPUT", "-i", "lo", "-j", "ACCEPT"],
            &["-C", "INPUT", "-i", "lo", "-j", "DROP"],
            &["-D", "INPUT", "-i", "lo", "-j", "ACCEPT"],
            &["-D", "INPUT", "1"],
            &["-D", "INPUT", "9"],
            &["-E", "CUSTOM", "RENAMED"],
            &["-X", "RENAMED"],
            &["-F", "RENAMED"],
            &["-S", "RENAMED"],
            &["-D", "INPUT", "1"],
            &["-X", "RENAMED"],
            &["-F"],
            &["-t", "nat", "-F"],
            &["-N", "EMPTY"],
            &["-X"],
            &["-L", "-n"],
        ];
        for args in steps {
            same(&d, bin, args, None);
        }
        ok(&d, save, &[], None);
    }
}

#[test]
fn ebtables_and_arptables_commands_agree() {
    let d = Differential::new("ipt-ebarp");
    let eb: &[&[&str]] = &[
        &[
            "-A",
            "FORWARD",
            "-p",
            "IPv4",
            "--ip-proto",
            "tcp",
            "--ip-dport",
            "22",
            "-j",
            "DROP",
        ],
        &[
            "-A",
            "FORWARD",
            "-p",
            "802_1Q",
            "--vlan-id",
            "5",
            "-j",
            "ACCEPT",
        ],
        &[
            "-A",
            "INPUT",
            "--mark",
            "0x10",
            "-j",
            "mark",
            "--mark-set",
            "0x20",
            "--mark-target",
            "CONTINUE",
        ],
        &["-I", "INPUT", "1", "-s", "00:11:22:33:44:55", "-j", "DROP"],
        &["-N", "MINE", "-P", "RETURN"],
        &[
            "-A", "MINE", "-p", "ARP", "--arp-op", "Request", "-j", "ACCEPT",
        ],
        &["-A", "FORWARD", "-j", "MINE"],
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "IPv4",
            "--ip-dst",
            "10.0.0.1",
            "-j",
            "dnat",
            "--to-dst",
            "00:11:22:33:44:66",
        ],
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-j",
            "snat",
            "--to-src",
            "00:11:22:33:44:77",
        ],
        &["-L"],
        &["-L", "--Ln"],
        &["-L", "FORWARD"],
        &["-t", "nat", "-L"],
        &["-P", "FORWARD", "DROP"],
        &[
            "-D",
            "FORWARD",
            "-p",
            "IPv4",
            "--ip-proto",
            "tcp",
            "--ip-dport",
            "22",
            "-j",
            "DROP",
        ],
        &["-D", "INPUT", "1"],
        &["-Z"],
        &["-L"],
        &["-F", "MINE"],
        &["-D", "FORWARD", "-j", "MINE"],
        &["-X", "MINE"],
        &["-F"],
        &["-t", "nat", "-F"],
        &["-L"],
    ];
    for args in eb {
        same(&d, "ebtables-nft", args, None);
    }
    ok(&d, "ebtables-nft-save", &[], None);
    let arp: &[&[&str]] = &[
        &["-A", "INPUT", "-s", "10.0.0.1", "-j", "DROP"],
        &["-A", "OUTPUT", "-j", "mangle", "--mangle-ip-s", "10.0.0.2"],
        &["-A", "OUTPUT", "-j", "MARK", "--set-mark", "3"],
        &[
            "-I", "INPUT", "1", "-i", "lo", "--opcode", "Request", "-j", "ACCEPT",
        ],
        &["-N", "ARPCHAIN"],
        &["-A", "ARPCHAIN", "-d", "10.0.0.9", "-j", "ACCEPT"],
        &["-L"],
        &["-L", "-n", "-v"],
        &["-S"],
        &["-D", "INPUT", "-s", "10.0.0.1", "-j", "DROP"],
        &["-D", "OUTPUT", "1"],
        &["-X", "ARPCHAIN"],
        &["-F", "ARPCHAIN"],
        &["-X", "ARPCHAIN"],
        &["-F"],
        &["-L"],
    ];
    for args in arp {
        same(&d, "arptables-nft", args, None);
    }
    ok(&d, "arptables-nft-save", &[], None);
}

/// The runner over `tests/data/iptables/*.t`: kernel checks that the upstream corpus
/// does not reach (hooks through jumps, table restrictions, checkentry limits).
#[test]
fn extension_checks_agree_with_the_kernel() {
    let bins = Binaries::for_tests();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/iptables");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nft-conformance"))
        .args(["--suite", "iptables", "--nftshimd"])
        .arg(&bins.nftshimd)
        .arg("--preload")
        .arg(&bins.preload)
        .arg(&data)
        .output()
        .expect("running nft-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && last.starts_with("conformance: ") && last.contains(" 0 failed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!last.starts_with("conformance: 0 passed"), "{last}");
}
