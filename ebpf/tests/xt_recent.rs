//! xt_recent's lists (net/netfilter/xt_recent.c, 6.18), modelled in Rust and checked
//! against the kernel: packet sequences sent through OUTPUT rules of a scratch
//! namespace, each packet's fate (a DROP in OUTPUT fails sendmsg with EPERM) and the
//! final `/proc/net/xt_recent/<name>` compared with the model's.
//!
//! The same model is the oracle of the eBPF data plane's lists (bpf/lib/xt_recent.h):
//! `bpf_*` tests run packet sequences through BPF programs (BPF_PROG_TEST_RUN) whose
//! rules are recent matches, on lists seeded with entries of every age, and compare
//! each packet's fate and the lists left in `recent_lists` with the model's. Needs
//! root; skipped otherwise.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// The model: a namespace's lists, keyed by name only (ip and ip6 rules share them).
mod model {
    use std::collections::BTreeMap;

    /// Module parameters of this machine's xt_recent (`/sys/module/xt_recent/parameters`).
    pub const IP_LIST_TOT: usize = 100;
    pub const HZ: u64 = 250;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Mode {
        Check,
        Set,
        Update,
        Remove,
    }

    /// One `-m recent` match, as its `struct xt_recent_mtinfo_v1` says.
    #[derive(Clone, Debug)]
    pub struct Match {
        pub name: String,
        pub mode: Mode,
        pub seconds: u32,
        pub hitcount: u32,
        pub rttl: bool,
        pub reap: bool,
        pub invert: bool,
        pub dest: bool,
        pub mask: [u8; 16],
    }

    #[derive(Clone, Debug)]
    pub struct Entry {
        pub v6: bool,
        pub addr: [u8; 16],
        pub ttl: u8,
        pub index: u16,
        pub nstamps: u16,
        pub stamps: Vec<u64>,
    }

    struct List {
        refcnt: u32,
        mask: [u8; 16],
        nstamps_max_mask: u16,
        /// LRU order: the head (least recently set or updated) first.
        entries: Vec<Entry>,
    }

    /// The packet as recent_mt() reads it.
    pub struct Packet {
        pub v6: bool,
        pub saddr: [u8; 16],
        pub daddr: [u8; 16],
        /// TTL or hop limit, already adjusted (+1 with an output device and no socket
        /// of the namespace).
        pub ttl: u8,
    }

    #[derive(Default)]
    pub struct Lists {
        lists: BTreeMap<String, List>,
    }

    /// time_after(a, b): a is later than b, on wrapping jiffies.
    fn time_after(a: u64, b: u64) -> bool {
        (b.wrapping_sub(a) as i64) < 0
    }

    impl Lists {
        /// recent_mt_check() (the blob already passed its flag checks).
        pub fn check(&mut self, m: &Match) {
            let nstamp_mask = if m.hitcount != 0 {
                (m.hitcount.next_power_of_two() - 1) as u16
            } else {
                31
            };
            let list = self.lists.entry(m.name.clone()).or_insert(List {
                refcnt: 0,
                mask: m.mask,
                nstamps_max_mask: nstamp_mask,
                entries: Vec::new(),
            });
            if nstamp_mask > list.nstamps_max_mask {
                list.entries.clear();
                list.nstamps_max_mask = nstamp_mask;
            }
            list.refcnt += 1;
        }

        /// recent_mt_destroy().
        pub fn destroy(&mut self, m: &Match) {
            if let Some(list) = self.lists.get_mut(&m.name) {
                list.refcnt -= 1;
                if list.refcnt == 0 {
                    self.lists.remove(&m.name);
                }
            }
        }

        pub fn entries(&self, name: &str) -> Option<&[Entry]> {
            self.lists.get(name).map(|l| l.entries.as_slice())
        }

        /// The list's mask and nstamps_max_mask.
        pub fn shape(&self, name: &str) -> Option<([u8; 16], u16)> {
            self.lists.get(name).map(|l| (l.mask, l.nstamps_max_mask))
        }

        /// An entry at the LRU tail, as if packets had made it (a test's seed).
        pub fn seed(&mut self, name: &str, e: Entry) {
            let list = self.lists.get_mut(name).expect("checked");
            assert!(e.stamps.len() == list.nstamps_max_mask as usize + 1);
            list.entries.push(e);
        }

        /// recent_mt() at `jiffies`.
        pub fn eval(&mut self, m: &Match, p: &Packet, jiffies: u64) -> bool {
            let list = self.lists.get_mut(&m.name).expect("checked");
            let mut ret = m.invert;
            let raw = if m.dest { p.daddr } else { p.saddr };
            let mut addr = [0u8; 16];
            let len = if p.v6 { 16 } else { 4 };
            for i in 0..len {
                addr[i] = raw[i] & list.mask[i];
            }
            let want_ttl = if m.rttl { p.ttl } else { 0 };
            let found = list.entries.iter().position(|e| {
                e.v6 == p.v6 && e.addr == addr && (want_ttl == e.ttl || want_ttl == 0 || e.ttl == 0)
            });
            let Some(mut at) = found else {
                if m.mode != Mode::Set {
                    return ret;
                }
                if list.entries.len() >= IP_LIST_TOT {
                    list.entries.remove(0);
                }
                let mut stamps = vec![0; list.nstamps_max_mask as usize + 1];
                stamps[0] = jiffies;
                list.entries.push(Entry {
                    v6: p.v6,
                    addr,
                    ttl: p.ttl,
                    index: 1,
                    nstamps: 1,
                    stamps,
                });
                return !ret;
            };
            match m.mode {
                Mode::Set => ret = !ret,
                Mode::Remove => {
                    list.entries.remove(at);
                    return !ret;
                }
                Mode::Check | Mode::Update => {
                    // `info->seconds * HZ` is an unsigned int product.
                    let time = jiffies.wrapping_sub(m.seconds.wrapping_mul(HZ as u32) as u64);
                    let e = &list.entries[at];
                    let mut hits = 0;
                    for &stamp in &e.stamps[..e.nstamps as usize] {
                        if m.seconds != 0 && time_after(time, stamp) {
                            continue;
                        }
                        hits += 1;
                        if m.hitcount == 0 || hits >= m.hitcount {
                            ret = !ret;
                            break;
                        }
                    }
                    if m.reap {
                        let updating = m.mode == Mode::Update && ret;
                        let head = &list.entries[0];
                        let newest = head.stamps[head.index as usize - 1];
                        if !(at == 0 && updating) && time_after(time, newest) {
                            list.entries.remove(0);
                            if at == 0 {
                                // The entry itself went; nothing is updated below.
                                return ret;
                            }
                            at -= 1;
                        }
                    }
                }
            }
            if m.mode == Mode::Set || (m.mode == Mode::Update && ret) {
                let mask = list.nstamps_max_mask;
                let mut e = list.entries.remove(at);
                e.index &= mask;
                e.stamps[e.index as usize] = jiffies;
                e.index += 1;
                e.nstamps = e.nstamps.max(e.index);
                e.ttl = p.ttl;
                list.entries.push(e);
            }
            ret
        }
    }
}

use model::{Lists, Match, Mode, Packet};

/// A scratch namespace this thread has entered; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn enter(test: &str) -> Option<Netns> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return None;
        }
        let name = format!("nftshim-test-recent-{test}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        let ns = Netns { name };
        let file = std::fs::File::open(format!("/var/run/netns/{}", ns.name)).unwrap();
        // SAFETY: setns(2) on a valid namespace fd; affects this test's thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A rule of the OUTPUT chain: `-p udp`, the recent match, and DROP when `drop`.
struct Rule {
    m: Match,
    drop: bool,
}

fn rule(name: &str, mode: Mode) -> Match {
    Match {
        name: name.into(),
        mode,
        seconds: 0,
        hitcount: 0,
        rttl: false,
        reap: false,
        invert: false,
        dest: false,
        mask: [0xff; 16],
    }
}

impl Rule {
    /// The iptables arguments after `-A OUTPUT`.
    fn args(&self) -> Vec<String> {
        let m = &self.m;
        let mut a: Vec<String> = ["-p", "udp", "-m", "recent", "--name", &m.name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if m.invert {
            a.push("!".into());
        }
        a.push(
            match m.mode {
                Mode::Check => "--rcheck",
                Mode::Set => "--set",
                Mode::Update => "--update",
                Mode::Remove => "--remove",
            }
            .into(),
        );
        if m.seconds != 0 {
            a.extend(["--seconds".into(), m.seconds.to_string()]);
        }
        if m.hitcount != 0 {
            a.extend(["--hitcount".into(), m.hitcount.to_string()]);
        }
        if m.rttl {
            a.push("--rttl".into());
        }
        if m.reap {
            a.push("--reap".into());
        }
        a.push(if m.dest { "--rdest" } else { "--rsource" }.into());
        if m.mask != [0xff; 16] {
            // IPv4 masks only (an IPv6 list's mask is left at its default here).
            let [a0, a1, a2, a3, ..] = m.mask;
            a.extend(["--mask".into(), format!("{a0}.{a1}.{a2}.{a3}")]);
        }
        if self.drop {
            a.extend(["-j".into(), "DROP".into()]);
        }
        a
    }
}

/// The kernel and the model side by side.
struct Harness {
    rules: Vec<(bool, Rule)>,
    model: Lists,
    start: Instant,
}

impl Harness {
    fn new() -> Self {
        run(&["ip", "link", "set", "lo", "up"]);
        run(&["ip", "route", "add", "10.0.0.0/8", "dev", "lo"]);
        run(&["ip", "-6", "route", "add", "fd00::/16", "dev", "lo"]);
        for i in 1..=4 {
            run(&["ip", "addr", "add", &format!("10.9.0.{i}/32"), "dev", "lo"]);
            run(&[
                "ip",
                "addr",
                "add",
                &format!("fd09::{i}/128"),
                "dev",
                "lo",
                "nodad",
            ]);
        }
        Harness {
            rules: Vec::new(),
            model: Lists::default(),
            start: Instant::now(),
        }
    }

    /// `ip(6)tables -A OUTPUT` of the rule; checkentry in the model.
    fn add(&mut self, v6: bool, r: Rule) {
        let bin = if v6 { "ip6tables" } else { "iptables" };
        let mut args = vec![bin.to_string(), "-A".into(), "OUTPUT".into()];
        args.extend(r.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args);
        self.model.check(&r.m);
        self.rules.push((v6, r));
    }

    /// Deletes the `i`-th rule added (the kernel destroys its match).
    fn delete(&mut self, i: usize) {
        let (v6, r) = self.rules.remove(i);
        let bin = if v6 { "ip6tables" } else { "iptables" };
        let mut args = vec![bin.to_string(), "-D".into(), "OUTPUT".into()];
        args.extend(r.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args);
        self.model.destroy(&r.m);
    }

    /// Jiffies since the start, as the model counts them (tests keep a wide margin
    /// around every `--seconds` edge).
    fn jiffies(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 * model::HZ / 1000
    }

    /// Sends one UDP datagram; whether the kernel dropped it, checked against the
    /// model's chain (rules of the packet's family in order, the first DROP decides).
    fn send(&mut self, src: &str, dst: &str, ttl: u8) -> bool {
        let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let sock = UdpSocket::bind(SocketAddr::new(src, 0)).unwrap();
        let v6 = src.is_ipv6();
        if v6 {
            let hops = ttl as libc::c_int;
            // SAFETY: setsockopt on an open socket with an int option.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_UNICAST_HOPS,
                    &hops as *const _ as *const libc::c_void,
                    4,
                )
            };
            assert_eq!(rc, 0);
        } else {
            sock.set_ttl(ttl as u32).unwrap();
        }
        let kernel_dropped = match sock.send_to(b"x", SocketAddr::new(dst, 9)) {
            Ok(_) => false,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => true,
            Err(e) => panic!("send {src} -> {dst}: {e}"),
        };
        let bytes = |a: IpAddr| match a {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                b
            }
            IpAddr::V6(a) => a.octets(),
        };
        let packet = Packet {
            v6,
            saddr: bytes(src),
            daddr: bytes(dst),
            // OUTPUT with the sending socket of the namespace: no adjustment.
            ttl,
        };
        let jiffies = self.jiffies();
        let mut model_dropped = false;
        for (rule_v6, r) in &self.rules {
            if *rule_v6 == v6 && self.model.eval(&r.m, &packet, jiffies) && r.drop {
                model_dropped = true;
                break;
            }
        }
        assert_eq!(
            kernel_dropped, model_dropped,
            "packet {src} -> {dst} ttl {ttl}"
        );
        kernel_dropped
    }

    /// The list's entries as /proc shows them (this thread's namespace: /proc/net is
    /// the main thread's) and as the model has them: address
    /// (as %pI4 / %pI6 print it), ttl, index (oldest_pkt), number of stamps; sorted.
    fn compare(&self, name: &str) {
        let proc = std::fs::read_to_string(format!("/proc/thread-self/net/xt_recent/{name}"));
        let mut kernel: Vec<(String, u8, u16, u16)> = match &proc {
            Ok(text) => text.lines().map(parse_proc_line).collect(),
            Err(_) => Vec::new(),
        };
        let mut model: Vec<(String, u8, u16, u16)> = self
            .model
            .entries(name)
            .unwrap_or(&[])
            .iter()
            .map(|e| (format_addr(e.v6, &e.addr), e.ttl, e.index, e.nstamps))
            .collect();
        assert_eq!(
            proc.is_ok(),
            self.model.entries(name).is_some(),
            "list {name}"
        );
        kernel.sort();
        model.sort();
        assert_eq!(kernel, model, "list {name}");
    }
}

fn format_addr(v6: bool, a: &[u8; 16]) -> String {
    if v6 {
        a.chunks(2)
            .map(|w| format!("{:02x}{:02x}", w[0], w[1]))
            .collect::<Vec<_>>()
            .join(":")
    } else {
        format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
    }
}

/// `src=ADDR ttl: T last_seen: J oldest_pkt: I s1, s2, ...`
fn parse_proc_line(line: &str) -> (String, u8, u16, u16) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let addr = words[0].trim_start_matches("src=").to_string();
    let ttl = words[2].parse().unwrap();
    let index = words[6].parse().unwrap();
    let stamps = words[7..].len() as u16;
    (addr, ttl, index, stamps)
}

/// The classic: the 3rd packet from one source within 60 s is dropped (`--rcheck
/// --hitcount 2` before `--set`), per source, IPv4 and IPv6 in one list.
#[test]
fn third_packet_within_the_window_is_dropped() {
    let Some(_ns) = Netns::enter("third") else {
        return;
    };
    let mut h = Harness::new();
    for v6 in [false, true] {
        let mut check = rule("limit", Mode::Check);
        (check.seconds, check.hitcount) = (60, 2);
        h.add(
            v6,
            Rule {
                m: check,
                drop: true,
            },
        );
        h.add(
            v6,
            Rule {
                m: rule("limit", Mode::Set),
                drop: false,
            },
        );
    }
    let mut fates = Vec::new();
    for _ in 0..4 {
        fates.push(h.send("10.9.0.1", "10.1.2.3", 64));
        fates.push(h.send("fd09::1", "fd00::7", 64));
    }
    fates.push(h.send("10.9.0.2", "10.1.2.3", 64));
    assert_eq!(
        fates,
        [false, false, false, false, true, true, true, true, false]
    );
    h.compare("limit");
}

/// `--update --seconds 2 --hitcount 2 --reap`, then a gap of 2.5 s: the stamps fall
/// out of the window and the stale oldest entry is reaped.
#[test]
fn update_seconds_and_reap() {
    let Some(_ns) = Netns::enter("reap") else {
        return;
    };
    let mut h = Harness::new();
    let mut update = rule("upd", Mode::Update);
    (update.seconds, update.hitcount, update.reap) = (2, 2, true);
    h.add(
        false,
        Rule {
            m: update,
            drop: true,
        },
    );
    h.add(
        false,
        Rule {
            m: rule("upd", Mode::Set),
            drop: false,
        },
    );
    h.send("10.9.0.1", "10.1.1.1", 64);
    h.send("10.9.0.2", "10.1.1.1", 64);
    // One stamp of 10.9.0.1 within the window, then two: the third packet drops.
    assert!(!h.send("10.9.0.1", "10.1.1.1", 64));
    assert!(h.send("10.9.0.1", "10.1.1.1", 64));
    h.compare("upd");
    std::thread::sleep(Duration::from_millis(2500));
    // 10.9.0.2 (set once, now stale) is the LRU head: 10.9.0.1's check reaps it.
    assert!(!h.send("10.9.0.1", "10.1.1.1", 64));
    h.compare("upd");
    assert!(!h.send("10.9.0.2", "10.1.1.1", 64));
    h.compare("upd");
}

/// `--rttl`: an entry is found only with its TTL; `--remove` deletes and matches;
/// `!` inverts; a list outlives the family that created it.
#[test]
fn rttl_remove_invert_and_lifetime() {
    let Some(_ns) = Netns::enter("rttl") else {
        return;
    };
    let mut h = Harness::new();
    let mut rcheck = rule("t", Mode::Check);
    rcheck.rttl = true;
    h.add(
        false,
        Rule {
            m: rcheck,
            drop: true,
        },
    );
    let mut inverted = rule("t", Mode::Check);
    inverted.invert = true;
    h.add(
        true,
        Rule {
            m: inverted,
            drop: false,
        },
    );
    h.add(
        false,
        Rule {
            m: rule("t", Mode::Set),
            drop: false,
        },
    );
    h.send("10.9.0.1", "10.1.1.1", 64);
    // Not found with TTL 63; the --set then stores 63, with which it is found.
    assert!(!h.send("10.9.0.1", "10.1.1.1", 63));
    assert!(h.send("10.9.0.1", "10.1.1.1", 63));
    assert!(!h.send("10.9.0.1", "10.1.1.1", 64));
    h.compare("t");
    let mut remove = rule("t", Mode::Remove);
    remove.dest = true;
    h.add(
        false,
        Rule {
            m: remove,
            drop: true,
        },
    );
    h.send("10.9.0.3", "10.9.0.1", 50);
    h.compare("t");
    // Delete every IPv4 rule: the ip6tables rule keeps the list and its entries.
    h.delete(2);
    h.delete(0);
    h.delete(1);
    h.compare("t");
    h.delete(0);
    h.compare("t");
}

/// 105 destinations with `--set --rdest`: the list keeps the last 100; a `--mask`
/// of the creating rule applies to every rule of the list; a larger `--hitcount`
/// added later flushes it.
#[test]
fn lru_eviction_mask_and_flush() {
    let Some(_ns) = Netns::enter("lru") else {
        return;
    };
    let mut h = Harness::new();
    let mut set = rule("lru", Mode::Set);
    set.dest = true;
    h.add(
        false,
        Rule {
            m: set,
            drop: false,
        },
    );
    for i in 1..=105 {
        h.send("10.9.0.1", &format!("10.0.{}.{}", i / 200, i % 200 + 1), 64);
    }
    h.send("10.9.0.1", "10.0.0.10", 64);
    h.send("10.9.0.1", "10.0.0.200", 64);
    h.compare("lru");
    let mut masked = rule("m", Mode::Set);
    masked.mask = [255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    h.add(
        false,
        Rule {
            m: masked,
            drop: false,
        },
    );
    let mut check = rule("m", Mode::Check);
    check.hitcount = 3;
    h.add(
        false,
        Rule {
            m: check,
            drop: true,
        },
    );
    h.send("10.9.0.1", "10.1.1.1", 64);
    h.send("10.9.0.2", "10.1.1.1", 64);
    assert!(h.send("10.9.0.3", "10.1.1.1", 64));
    h.compare("m");
    let mut bigger = rule("m", Mode::Check);
    bigger.hitcount = 40;
    h.add(
        false,
        Rule {
            m: bigger,
            drop: false,
        },
    );
    h.compare("m");
    assert!(!h.send("10.9.0.3", "10.1.1.1", 64));
    h.compare("m");
}

/// The BPF side: programs of recent matches run with BPF_PROG_TEST_RUN, lists in the
/// program's `recent_lists` map, compared with the model.
mod bpf {
    use super::model::{Entry, Lists, Match, Mode, Packet};
    use nftshim_ebpf::ir::{
        Action, Chain, L3Scope, Match as IrMatch, Program, Rule, Test, Verdict,
    };
    use nftshim_ebpf::loader::{LoadOptions, LoadedChain, SkbMeta};
    use nftshim_ebpf::maps::compile_program;
    use nftshim_ebpf::recent::{list_key, BpfRecentList, MAX_STAMPS};
    use nftshim_ebpf::residual::{Insn, ResidualProgram};
    use std::net::IpAddr;

    use super::common;

    /// A list's entries in LRU order: (v6, address, index, nstamps, stamps).
    pub type ListView = Vec<(bool, [u8; 16], u16, u16, Vec<u64>)>;

    pub fn insn(m: &Match) -> Insn {
        let mode = match m.mode {
            Mode::Check => 1,
            Mode::Set => 2,
            Mode::Update => 4,
            Mode::Remove => 8,
        };
        Insn::XtRecent {
            list: list_key(m.name.as_bytes()),
            check_set: mode | if m.reap { 32 } else { 0 },
            seconds: m.seconds,
            hit_count: m.hitcount,
            invert: m.invert,
            dest: m.dest,
        }
    }

    /// One chain, policy accept: each rule its recent match, then DROP or nothing.
    pub fn program(rules: &[(Match, bool)]) -> Program {
        Program::single(Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: rules
                .iter()
                .map(|(m, drop)| {
                    Rule::new(
                        vec![IrMatch::is(Test::Residual(ResidualProgram {
                            insns: vec![insn(m)],
                        }))],
                        if *drop {
                            Action::Drop
                        } else {
                            Action::Continue
                        },
                    )
                })
                .collect(),
        })
    }

    pub fn load(rules: &[(Match, bool)]) -> Option<LoadedChain> {
        common::load_or_skip(
            &compile_program(&program(rules)).expect("program compiles"),
            LoadOptions::default(),
        )
    }

    /// This kernel's jiffies (/proc/timer_list, root only).
    pub fn jiffies() -> u64 {
        let text = std::fs::read_to_string("/proc/timer_list").unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("jiffies: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn map(
        loaded: &mut LoadedChain,
    ) -> aya::maps::HashMap<&mut aya::maps::MapData, u64, BpfRecentList> {
        aya::maps::HashMap::try_from(loaded.ebpf_mut().map_mut("recent_lists").unwrap()).unwrap()
    }

    /// The model's list `name` written to the map (entries in LRU order).
    pub fn write(loaded: &mut LoadedChain, model: &Lists, name: &str) {
        let key = list_key(name.as_bytes());
        let Some((mask, nmask)) = model.shape(name) else {
            let _ = map(loaded).remove(&key);
            return;
        };
        let mut l = BpfRecentList::empty(mask, nmask, super::model::IP_LIST_TOT as u32);
        for (i, e) in model.entries(name).unwrap().iter().enumerate() {
            let b = &mut l.e[i];
            for w in 0..4 {
                b.addr[w] = u32::from_ne_bytes(e.addr[4 * w..4 * w + 4].try_into().unwrap());
            }
            b.family = if e.v6 { 10 } else { 2 };
            b.ttl = e.ttl;
            b.index = e.index;
            b.nstamps = e.nstamps;
            b.stamps[..e.stamps.len()].copy_from_slice(&e.stamps);
            b.seq = i as u64 + 1;
        }
        l.entries = model.entries(name).unwrap().len() as u32;
        l.seq = l.entries as u64;
        map(loaded).insert(key, *l, 0).unwrap();
    }

    /// The list as the map has it, entries in LRU order: (v6, address, index,
    /// nstamps, stamps).
    pub fn read(loaded: &mut LoadedChain, name: &str) -> Option<ListView> {
        let l = map(loaded).get(&list_key(name.as_bytes()), 0).ok()?;
        let mut used: Vec<_> = l.e.iter().filter(|e| e.family != 0).collect();
        used.sort_by_key(|e| e.seq);
        assert_eq!(used.len(), l.entries as usize, "entry count of {name}");
        let nmask = l.nstamps_max_mask as usize;
        Some(
            used.into_iter()
                .map(|e| {
                    let mut addr = [0u8; 16];
                    for w in 0..4 {
                        addr[4 * w..4 * w + 4].copy_from_slice(&e.addr[w].to_ne_bytes());
                    }
                    (
                        e.family == 10,
                        addr,
                        e.index,
                        e.nstamps,
                        e.stamps[..(nmask + 1).min(MAX_STAMPS)].to_vec(),
                    )
                })
                .collect(),
        )
    }

    pub fn model_view(model: &Lists, name: &str) -> Option<ListView> {
        model.entries(name).map(|es| {
            es.iter()
                .map(|e: &Entry| (e.v6, e.addr, e.index, e.nstamps, e.stamps.clone()))
                .collect()
        })
    }

    /// Lists equal but for stamps of this run, which may be a few jiffies apart (the
    /// model reads /proc/timer_list just before the program runs; every `--seconds`
    /// edge is seconds away).
    pub fn assert_same(bpf: Option<ListView>, model: Option<ListView>, what: &str) {
        let (Some(b), Some(m)) = (&bpf, &model) else {
            assert_eq!(bpf.is_some(), model.is_some(), "{what}");
            return;
        };
        assert_eq!(b.len(), m.len(), "{what}: {b:?} vs {m:?}");
        for (x, y) in b.iter().zip(m) {
            assert_eq!(
                (x.0, x.1, x.2, x.3),
                (y.0, y.1, y.2, y.3),
                "{what}: {b:?} vs {m:?}"
            );
            // Only the first nstamps are ever read (a reused slot keeps old ones past).
            for (s, t) in x.4.iter().zip(&y.4).take(x.3 as usize) {
                assert!(
                    s.abs_diff(*t) <= 25,
                    "{what}: stamps {:?} vs {:?}",
                    x.4,
                    y.4
                );
            }
        }
    }

    pub fn bytes(a: IpAddr) -> [u8; 16] {
        match a {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                b
            }
            IpAddr::V6(a) => a.octets(),
        }
    }

    /// Runs one UDP packet through the program and the model's chain; the fates must
    /// agree. True when dropped.
    pub fn send(
        loaded: &LoadedChain,
        model: &mut Lists,
        rules: &[(Match, bool)],
        src: IpAddr,
        dst: IpAddr,
    ) -> bool {
        let frame = common::frames::udp(src, dst, 1000, 9);
        let jiffies = jiffies();
        let run = loaded.run_tc(&frame, SkbMeta::default(), 1).unwrap();
        let bpf_dropped = run.verdict == Verdict::Drop;
        let packet = Packet {
            v6: src.is_ipv6(),
            saddr: bytes(src),
            daddr: bytes(dst),
            ttl: 64,
        };
        let mut model_dropped = false;
        for (m, drop) in rules {
            if model.eval(m, &packet, jiffies) && *drop {
                model_dropped = true;
                break;
            }
        }
        assert_eq!(bpf_dropped, model_dropped, "packet {src} -> {dst}");
        bpf_dropped
    }
}

/// The BPF lists against the model: random rule sets (every mode, `--seconds`,
/// `--hitcount`, `--reap`, `!`, `--rdest`, a creator's /24 mask) on two lists seeded
/// with entries from now to 200 s old, and random packets of IPv4 and IPv6 sources.
mod bpf_vs_model {
    use super::bpf;
    use super::model::{Entry, Lists, Match, Mode, HZ};
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// Five IPv4 addresses (two /24s) and three IPv6 ones.
    fn addr(v6: bool, i: u8) -> IpAddr {
        if v6 {
            format!("fd09::{}", i % 3 + 1).parse().unwrap()
        } else {
            format!("10.9.{}.{}", i % 2, i % 5 + 1).parse().unwrap()
        }
    }

    fn a_match() -> impl Strategy<Value = (Match, bool)> {
        (
            0..2u8,
            0..4u8,
            prop_oneof![Just(0u32), Just(5), Just(60)],
            prop_oneof![Just(0u32), Just(1), Just(2), Just(3), Just(5)],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(name, mode, seconds, hitcount, reap, invert, dest, masked, drop)| {
                    let mode = [Mode::Check, Mode::Set, Mode::Update, Mode::Remove][mode as usize];
                    let checks = matches!(mode, Mode::Check | Mode::Update);
                    let mut mask = [0xff; 16];
                    if masked {
                        mask[3] = 0;
                    }
                    (
                        Match {
                            name: ["a", "b"][name as usize].into(),
                            mode,
                            seconds: if checks { seconds } else { 0 },
                            hitcount: if checks { hitcount } else { 0 },
                            rttl: false,
                            reap: checks && seconds != 0 && reap,
                            invert,
                            dest,
                            mask,
                        },
                        drop,
                    )
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn bpf_lists_agree_with_the_model(
            rules in proptest::collection::vec(a_match(), 4),
            seeds in proptest::collection::vec((0..2u8, any::<bool>(), 0..8u8, 0..4usize, 1..5u16), 0..8),
            packets in proptest::collection::vec((any::<bool>(), 0..8u8, 0..8u8), 1..24),
        ) {
            if unsafe { libc::geteuid() } != 0 {
                return Ok(());
            }
            // One load (the verifier takes seconds); each case rewrites the maps.
            static LOADED: std::sync::Mutex<Option<nftshim_ebpf::loader::LoadedChain>> =
                std::sync::Mutex::new(None);
            let mut guard = LOADED.lock().unwrap_or_else(|p| p.into_inner());
            let patched = guard.as_mut().is_some_and(|l| {
                let p = nftshim_ebpf::maps::compile_program(&bpf::program(&rules)).unwrap();
                l.patch(&p, nftshim_ebpf::loader::LoadOptions::default()).is_ok()
            });
            if !patched {
                *guard = bpf::load(&rules);
            }
            let Some(loaded) = guard.as_mut() else { return Ok(()) };
            let mut model = Lists::default();
            for (m, _) in &rules {
                model.check(m);
            }
            let now = bpf::jiffies();
            for (name, v6, a, age, n) in seeds {
                let name = ["a", "b"][name as usize];
                let Some((mask, nmask)) = model.shape(name) else { continue };
                let ip = addr(v6, a);
                let raw = bpf::bytes(ip);
                let mut masked = [0u8; 16];
                for i in 0..16 {
                    masked[i] = raw[i] & mask[i];
                }
                let v6 = ip.is_ipv6();
                if !v6 {
                    masked[4..].fill(0);
                }
                if model.entries(name).unwrap().iter().any(|e| e.v6 == v6 && e.addr == masked) {
                    continue;
                }
                // Ages far from every window's edge (5 s, 60 s).
                let age = [0u64, 2, 30, 200][age] * HZ;
                let n = n.min(nmask + 1);
                let mut stamps = vec![0u64; nmask as usize + 1];
                for (k, s) in stamps.iter_mut().take(n as usize).enumerate() {
                    *s = now - age - (n as u64 - 1 - k as u64);
                }
                model.seed(name, Entry { v6, addr: masked, ttl: 64, index: n, nstamps: n, stamps });
            }
            for name in ["a", "b"] {
                bpf::write(loaded, &model, name);
            }
            for (v6, s, d) in packets {
                bpf::send(loaded, &mut model, &rules, addr(v6, s), addr(v6, d));
            }
            for name in ["a", "b"] {
                bpf::assert_same(bpf::read(loaded, name), bpf::model_view(&model, name), name);
            }
        }
    }
}

/// More entries than ip_list_tot: the least recently set or updated ones go, in the
/// program as in the model; an `--update` moves its entry to the LRU tail.
#[test]
fn bpf_lru_eviction() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let mut set = rule("lru", Mode::Set);
    set.dest = true;
    let mut update = rule("lru", Mode::Update);
    update.dest = true;
    let rules = vec![(update, false), (set, false)];
    let Some(mut loaded) = bpf::load(&rules) else {
        return;
    };
    let mut model = Lists::default();
    for (m, _) in &rules {
        model.check(m);
    }
    bpf::write(&mut loaded, &model, "lru");
    let src: IpAddr = "10.9.0.1".parse().unwrap();
    for i in 1..=110u32 {
        let dst = format!("10.0.{}.{}", i / 200, i % 200 + 1).parse().unwrap();
        bpf::send(&loaded, &mut model, &rules, src, dst);
        if i % 7 == 0 {
            // Refresh an early one: it survives the evictions.
            bpf::send(
                &loaded,
                &mut model,
                &rules,
                src,
                "10.0.0.2".parse().unwrap(),
            );
        }
    }
    let got = bpf::read(&mut loaded, "lru");
    assert_eq!(got.as_ref().map(Vec::len), Some(model::IP_LIST_TOT));
    assert!(got
        .as_ref()
        .unwrap()
        .iter()
        .any(|e| e.1[..4] == [10, 0, 0, 2]));
    bpf::assert_same(got, bpf::model_view(&model, "lru"), "lru");
}
