//! One nftshimd, many network namespaces: each sees only its own ruleset; and callers
//! without CAP_NET_ADMIN are refused as the kernel refuses them.
//! Needs root and the workspace's binaries (`cargo build --workspace`).

use nft_tests::harness::*;

const SETPRIV: [&str; 5] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    "nft",
];

fn ruleset(ns: &Netns, shim: &ShimDaemon) -> String {
    let out = nft(ns, Some(shim), &["-a", "list", "ruleset"]);
    assert!(out.success(), "{}", out.stderr);
    out.stdout
}

#[test]
fn each_namespace_sees_only_its_own_ruleset() {
    let shim = ShimDaemon::start();
    let a = test_netns("iso-a");
    let b = test_netns("iso-b");
    let fresh_kernel = test_netns("iso-k");
    // Two clients at once, one per namespace, each adding its own rules.
    std::thread::scope(|s| {
        for (ns, name) in [(&a, "only_a"), (&b, "only_b")] {
            let shim = &shim;
            s.spawn(move || {
                let out = nft(ns, Some(shim), &[format!("add table ip {name}")]);
                assert!(out.success(), "{}", out.stderr);
                let out = nft(ns, Some(shim), &[format!("add chain ip {name} c")]);
                assert!(out.success(), "{}", out.stderr);
                for port in 1..=15 {
                    let out = nft(
                        ns,
                        Some(shim),
                        &[format!("add rule ip {name} c tcp dport {port} accept")],
                    );
                    assert!(out.success(), "{}", out.stderr);
                }
            });
        }
    });
    let (in_a, in_b) = (ruleset(&a, &shim), ruleset(&b, &shim));
    assert!(
        in_a.contains("table ip only_a") && !in_a.contains("only_b"),
        "{in_a}"
    );
    assert!(
        in_b.contains("table ip only_b") && !in_b.contains("only_a"),
        "{in_b}"
    );
    assert_eq!(in_a.matches("tcp dport").count(), 15, "{in_a}");
    // Handles are per namespace too: B looks exactly as a fresh kernel namespace that
    // got the same commands.
    nft(&fresh_kernel, None, &["add table ip only_b"]);
    nft(&fresh_kernel, None, &["add chain ip only_b c"]);
    for port in 1..=15 {
        nft(
            &fresh_kernel,
            None,
            &[format!("add rule ip only_b c tcp dport {port} accept")],
        );
    }
    assert_eq!(
        in_b,
        nft(&fresh_kernel, None, &["-a", "list", "ruleset"]).stdout
    );
    // Flushing one namespace's ruleset leaves the other alone.
    assert!(nft(&a, Some(&shim), &["flush", "ruleset"]).success());
    assert_eq!(ruleset(&a, &shim), "");
    assert_eq!(ruleset(&b, &shim), in_b);
}

#[test]
fn caller_without_cap_net_admin_is_refused_like_by_the_kernel() {
    let d = Differential::new("priv");
    d.ok(&["add table ip t"]);
    let before = d.same_ruleset();
    for args in [
        &["list", "ruleset"][..],
        &["list", "tables"],
        &["add", "table", "ip", "u"],
        &["delete", "table", "ip", "t"],
        &["flush", "ruleset"],
    ] {
        let argv: Vec<&str> = SETPRIV.iter().chain(args).copied().collect();
        let k = run(command(&d.kernel, None, "setpriv", &argv));
        let s = run(command(&d.shim_ns, Some(&d.shim), "setpriv", &argv));
        assert!(
            !k.success() && k.stderr.contains("Operation not permitted"),
            "{k:?}"
        );
        assert_same(&format!("setpriv ... nft {}", args.join(" ")), &k, &s);
    }
    assert_eq!(
        d.same_ruleset(),
        before,
        "an unprivileged caller changed the ruleset"
    );
}
