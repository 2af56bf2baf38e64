//! The runtime in a real namespace (needs root and BPF): programs attach on every
//! interface, follow new interfaces, switch atomically, and go away with the ruleset.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use aya::programs::{SchedClassifier, TcAttachType};
use nftshim_dataplane::compile::Direction;
use nftshim_dataplane::runtime::{netns, NetnsKey};
use nftshim_dataplane::EbpfDataplane;
use nftshim_engine::{Dataplane, Netns};

struct TestNetns(String);

impl TestNetns {
    fn new() -> TestNetns {
        let name = format!("nftshim-dptest-{}-{}", std::process::id(), rand_suffix());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        TestNetns(name)
    }
    fn key(&self) -> NetnsKey {
        let path = format!("/run/netns/{}", self.0);
        let f = std::fs::File::open(&path).unwrap();
        NetnsKey {
            inode: f.metadata().unwrap().ino(),
            cookie: netns::cookie_of(f.as_fd()).unwrap(),
        }
    }
    fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip -n {} {args:?}", self.0);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

fn fixture(name: &str) -> Netns {
    let path = format!(
        "{}/tests/fixtures/{name}.state.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Netns::from_persisted(v).unwrap()
}

fn bpf_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn programs_follow_the_ruleset_and_the_links() {
    if !bpf_available() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = TestNetns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    let mut dp = EbpfDataplane::new(ns.key());
    let rules = fixture("hooks");
    let t0 = Instant::now();
    dp.check(&rules.view())
        .expect("hooks ruleset is enforceable");
    eprintln!("check (decompile, load the programs): {:?}", t0.elapsed());
    dp.apply(&rules.view());
    let st = dp.status().expect("worker running");
    assert!(st.attached.contains(&(1, Direction::Ingress)), "{st:?}");
    assert!(st.attached.contains(&(1, Direction::Egress)), "{st:?}");
    assert_eq!(st.errors, 0);

    // A new interface is covered within milliseconds, both ends of the pair.
    let t = Instant::now();
    ns.ip(&["link", "add", "dpa", "type", "veth", "peer", "name", "dpb"]);
    let created = Instant::now();
    let covered = loop {
        let st = dp.status().unwrap();
        if st.attached.len() >= 6 {
            break Some(created.elapsed());
        }
        if t.elapsed() > Duration::from_secs(3) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let latency = covered.unwrap_or_else(|| panic!("new links not attached: {:?}", dp.status()));
    eprintln!("new veth pair attached {latency:?} after `ip link add` returned");
    assert!(latency < Duration::from_millis(500));
    // The kernel agrees: TCX programs on the new device, both directions.
    assert_eq!(
        tcx_programs(&ns, "dpa", TcAttachType::Ingress),
        ["nftshim_tc"]
    );
    assert_eq!(
        tcx_programs(&ns, "dpb", TcAttachType::Egress),
        ["nftshim_tc"]
    );

    // A new ruleset replaces the programs; links stay attached throughout.
    let before = dp.status().unwrap();
    let other = fixture("conflict");
    let mut only_a = other.to_persisted();
    for t in only_a["ruleset"]["tables"].as_array_mut().unwrap() {
        t["chains"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["name"] == "a");
    }
    let only_a = Netns::from_persisted(only_a).unwrap();
    dp.check(&only_a.view()).unwrap();
    dp.apply(&only_a.view());
    let after = dp.status().unwrap();
    assert_eq!(after.generations, before.generations + 1);
    // Input only: ingress programs, no egress ones.
    assert!(
        after.attached.iter().all(|(_, d)| *d == Direction::Ingress),
        "{after:?}"
    );

    // An empty ruleset detaches everything and releases the namespace.
    let empty = Netns::new();
    dp.check(&empty.view()).unwrap();
    dp.apply(&empty.view());
    assert!(dp.status().is_none());
    assert!(tcx_programs(&ns, "dpa", TcAttachType::Ingress).is_empty());
    assert!(tcx_programs(&ns, "lo", TcAttachType::Ingress).is_empty());
}

/// Names of the TCX programs on `dev` of the namespace, asked from inside it.
fn tcx_programs(ns: &TestNetns, dev: &str, dir: TcAttachType) -> Vec<String> {
    let f = std::fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            netns::enter(f.as_fd()).unwrap();
            let (_, progs) = SchedClassifier::query_tcx(dev, dir).unwrap();
            progs
                .iter()
                .map(|p| p.name_as_str().unwrap_or("?").to_string())
                .collect()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn a_refused_ruleset_leaves_nothing_behind() {
    if !bpf_available() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = TestNetns::new();
    let dp = EbpfDataplane::new(ns.key());
    let refused = fixture("refused");
    let err = dp.check(&refused.view()).unwrap_err();
    assert_eq!(err.errno, libc::EOPNOTSUPP);
    assert!(dp.status().is_none());
}
