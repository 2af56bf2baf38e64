//! xt_recent's lists (net/netfilter/xt_recent.c, 6.18), modelled in Rust and checked
//! against the kernel: packet sequences sent through OUTPUT rules of a scratch
//! namespace, each packet's fate (a DROP in OUTPUT fails sendmsg with EPERM) and the
//! final `/proc/net/xt_recent/<name>` compared with the model's.
//!
//! The eBPF data plane refuses `-m recent` (dataplane/src/compile/xt/recent.rs,
//! docs/xt_recent.md); this model is the oracle an implementation must agree with,
//! and these tests pin down the kernel facts it rests on. Needs root; skipped
//! otherwise.

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
        stamps: Vec<u64>,
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
                    let time = jiffies.wrapping_sub(m.seconds as u64 * HZ);
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
