//! The thread that enforces one namespace's ruleset. It lives inside the namespace
//! (setns at start), because aya resolves interface names and TCX attaches by ifindex
//! in the calling thread's namespace; it owns every program and link there.
//!
//! A ruleset change is a new [`Generation`]: its programs are prepared beside the live
//! ones, then every attached TCX link is switched to its new program with
//! `BPF_LINK_UPDATE` (atomic per interface and direction: a packet runs either the old
//! or the new program). A program is prepared by rewriting, in place, the maps of one the
//! previous switch retired (only the entries that differ; see `nftshim_ebpf::image`), or
//! by loading a fresh one when no spare has the same constants and room. The programs
//! this switch retires become the next commit's spares.
//! Link and address events over rtnetlink re-read the facts and, when they changed,
//! build and switch to a new generation the same way, so new interfaces are covered
//! as soon as the kernel announces them.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use aya::programs::links::LinkOrder;
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{SchedClassifier, TcAttachType};
use nftshim_ebpf::ir;
use nftshim_ebpf::loader::{Counter, LoadError, LoadOptions, LoadedChain, TC_PROGRAM};
use nftshim_ebpf::maps;
use nftshim_ebpf::shared::SharedState;
use nftshim_engine::{CountDelta, CounterRef, DataplaneError, NflogSink};

use super::links as pinned_links;
use super::logline::{self, LogSpec};
use super::netns::{self, NetnsKey};
use super::pins;
use super::rateest::{Estimators, RATES_MAP};
use super::recent::{Lists as RecentLists, LISTS_MAP};
use super::rtnl::{self, RtnlSocket};
use crate::compile::{instantiate, refuse, Direction, Facts, Program};

/// What the worker reports for `nftshim status` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStatus {
    /// (ifindex, direction) pairs with a program attached.
    pub attached: Vec<(u32, Direction)>,
    pub programs: usize,
    /// Generations switched to since the worker started.
    pub generations: u64,
    /// Interfaces whose attach or switch failed (logged); retried on the next change.
    pub errors: u64,
    /// Programs loaded (and verified) afresh since the worker started.
    pub loads: u64,
    /// Programs that took a new ruleset by rewriting their maps in place.
    pub patches: u64,
    /// Map entries written (updated or deleted) since the worker started.
    pub map_writes: u64,
}

enum Command {
    /// Build (load and fill) the programs of a ruleset without attaching them.
    Prepare(Arc<Program>, Sender<Result<(), DataplaneError>>),
    /// Switch to a ruleset (the prepared one if it is the same).
    Commit(Arc<Program>, Sender<()>),
    /// The ruleset is gone: detach everything and unpin the shared maps.
    Retire(Sender<()>),
    /// What the programs counted since the last time.
    TakeCounts(Sender<Vec<CountDelta>>),
}

pub struct Worker {
    commands: Sender<Command>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<WorkerStatus>>,
}

impl Worker {
    /// Starts the worker in the namespace `key` names.
    pub fn start(key: NetnsKey, nflog: Option<NflogSink>) -> io::Result<Worker> {
        let netns = netns::open(key)?;
        // SAFETY: eventfd(2); the fd is owned at once.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(raw) };
        let wake_thread = wake.try_clone()?;
        let (tx, rx) = channel();
        let (ready_tx, ready_rx) = channel();
        let status = Arc::new(Mutex::new(WorkerStatus::default()));
        let status_thread = status.clone();
        let thread = std::thread::Builder::new()
            .name(format!("nftshim-dp-{}", key.cookie))
            .spawn(move || {
                // Before anything is pinned, so that no other worker of this process
                // takes this namespace's pins for stale; dropped last.
                let _in_use = pins::in_use(key.cookie);
                let started = (|| -> io::Result<(RtnlSocket, Facts, SharedState)> {
                    netns::enter(netns.as_fd())?;
                    drop(netns);
                    if netns::current_cookie()? != key.cookie {
                        return Err(io::Error::other("namespace cookie changed"));
                    }
                    pins::ensure_bpffs()?;
                    pins::remove_stale();
                    let shared = SharedState::open(pins::netns_dir(key.cookie))?;
                    // Subscribe before reading, so no change falls in between.
                    let events = RtnlSocket::events()?;
                    let facts = rtnl::read_facts()?;
                    Ok((events, facts, shared))
                })();
                match started {
                    Ok((events, facts, shared)) => {
                        let _ = ready_tx.send(Ok(()));
                        let mut w = State::new(key, facts, shared, status_thread);
                        w.nflog = nflog;
                        w.run(&rx, &events, wake_thread);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("worker thread died")))?;
        Ok(Worker {
            commands: tx,
            wake,
            thread: Some(thread),
            status,
        })
    }

    fn send(&self, c: Command) {
        if self.commands.send(c).is_ok() {
            let one = 1u64;
            // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    pub fn prepare(&self, program: Arc<Program>) -> Result<(), DataplaneError> {
        let (tx, rx) = channel();
        self.send(Command::Prepare(program, tx));
        rx.recv()
            .unwrap_or_else(|_| Err(refuse("the data plane worker of this namespace stopped")))
    }

    pub fn commit(&self, program: Arc<Program>) {
        let (tx, rx) = channel();
        self.send(Command::Commit(program, tx));
        let _ = rx.recv();
    }

    /// Stops enforcing for good (the namespace's ruleset is gone): links detached,
    /// pins and shared state removed. Dropping a worker instead (daemon shutdown)
    /// leaves the pinned links enforcing the last ruleset until the next daemon
    /// takes them over.
    pub fn retire(self) {
        let (tx, rx) = channel();
        self.send(Command::Retire(tx));
        let _ = rx.recv();
    }

    /// Packets and bytes counted since the last call, for every counter of the
    /// ruleset, summed over interfaces, directions and generations of programs.
    pub fn take_counts(&self) -> Vec<CountDelta> {
        let (tx, rx) = channel();
        self.send(Command::TakeCounts(tx));
        rx.recv().unwrap_or_default()
    }

    pub fn status(&self) -> WorkerStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Worker {
    /// Detaches everything: dropping the sender ends the loop, which drops the links.
    fn drop(&mut self) {
        let (tx, _) = channel();
        self.commands = tx;
        let one = 1u64;
        // SAFETY: as in `send`.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One ruleset's programs for one set of facts.
struct Generation {
    program: Arc<Program>,
    facts: Facts,
    /// Programs by id. A program the previous generation already runs (same chain,
    /// same direction) is not loaded again: its id is in `assign` and the program
    /// itself moves over at the switch.
    progs: BTreeMap<u64, LoadedProg>,
    /// Which program each (ifindex, direction) gets.
    assign: BTreeMap<(u32, Direction), u64>,
    /// Programs kept for interfaces yet to come.
    spares: Vec<u64>,
    /// Each quota's state and what it had used when its rule came, once asked for
    /// (every listing with counters asks; the live programs do not change).
    quotas: std::cell::OnceCell<BTreeMap<ir::StateId, u64>>,
}

/// Writes the lines of the log events the programs reported, as the kernel's
/// nf_log_syslog would print them, through the daemon's logger.
fn write_logs<'a>(key: NetnsKey, facts: &Facts, progs: impl Iterator<Item = &'a LoadedProg>) {
    for p in progs {
        if p.loaded.log_prefix(0).is_none() {
            continue;
        }
        let events = match p.loaded.read_logs() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(netns_cookie = key.cookie, error = %e, "cannot read log events");
                continue;
            }
        };
        for ev in events {
            let Some(spec) = p.loaded.log_prefix(ev.prefix).and_then(LogSpec::from_key) else {
                continue;
            };
            let name = |i: u32| facts.links.get(&i).map(String::as_str);
            // The hook's devices: ingress has an input device only, egress (output,
            // postrouting) an output device only.
            let (input, output) = match p.dir {
                Direction::Ingress => (Some(name(ev.iif).unwrap_or("")), None),
                Direction::Egress => (None, Some(name(ev.oif).unwrap_or(""))),
            };
            let packet = logline::Packet {
                frame: &ev.headers,
                l3_off: usize::from(ev.l3_off),
                len: ev.len as usize,
                mark: ev.mark,
                uid_gid: ev.uid_gid,
            };
            // The line alone, as the kernel's: its syslog level is the event's level.
            let line = logline::format(&spec, input, output, &packet);
            match spec.level {
                0..=3 => tracing::error!(target: "nft_log", "{line}"),
                4 => tracing::warn!(target: "nft_log", "{line}"),
                5 | 6 => tracing::info!(target: "nft_log", "{line}"),
                _ => tracing::debug!(target: "nft_log", "{line}"),
            }
        }
    }
}

/// Turns the NFLOG events the programs reported into packets for the engine's
/// nfnetlink_log, and hands them to the sink.
fn send_nflog<'a>(
    key: NetnsKey,
    facts: &Facts,
    sink: Option<&NflogSink>,
    progs: impl Iterator<Item = &'a mut LoadedProg>,
) {
    let mut packets = Vec::new();
    for p in progs {
        if !p.loaded.has_nflog() {
            continue;
        }
        let (events, lost) = p.loaded.read_nflog();
        if lost > 0 {
            tracing::warn!(
                netns_cookie = key.cookie,
                lost,
                "NFLOG events lost (perf buffer full)"
            );
        }
        for ev in events {
            let spec = p
                .loaded
                .log_prefix(ev.spec)
                .and_then(super::nflog::NflogSpec::from_key);
            match spec.and_then(|s| super::nflog::to_packet(&s, &ev, facts)) {
                Some(pkt) => packets.push(pkt),
                None => tracing::warn!(
                    netns_cookie = key.cookie,
                    ifindex = ev.iif,
                    "NFLOG event the data plane cannot turn into a message, dropped"
                ),
            }
        }
    }
    if let (Some(sink), false) = (sink, packets.is_empty()) {
        sink(packets);
    }
}

/// No real interface has it (ifindexes are positive `int`s).
const PHANTOM_IFINDEX: u32 = u32::MAX;

/// The loopback device's ifindex in every namespace (LOOPBACK_IFINDEX).
const LOOPBACK_IFINDEX: u32 = 1;

/// The program id of a link adopted from an earlier worker (ids start at 1).
const ADOPTED: u64 = 0;

struct LoadedProg {
    chain: Arc<ir::Program>,
    /// `fingerprint(&chain)`: most chains a build compares differ, often only in their
    /// last rules; the fingerprints tell them apart without walking them.
    fingerprint: u64,
    dir: Direction,
    /// Loopback's ingress program (its packets were tracked at its egress).
    loopback: bool,
    /// Per counter slot, the ruleset's counters it counts for (part of what makes a
    /// program reusable: the same slots must keep meaning the same counters).
    counters: Arc<Vec<Vec<CounterRef>>>,
    /// Per counter slot, what was already handed out.
    seen: Vec<Counter>,
    /// The program's count of evaluated packets when `seen` was read: while it stays
    /// the same, the slots still hold `seen` and need no reading.
    evaluated: Option<u64>,
    loaded: LoadedChain,
    /// What `chain` compiled to: the basis the next commit's compile of this
    /// interface's chain updates (`maps::compile_program_after`).
    compiled: Arc<maps::CompiledProgram>,
}

/// The limits' and quotas' states a program uses.
fn states(program: &ir::Program) -> impl Iterator<Item = ir::StateId> + '_ {
    program.chains_in_order().flat_map(|(_, c)| {
        c.rules.iter().flat_map(|r| {
            r.matches.iter().filter_map(|m| match &m.test {
                ir::Test::Limit(l) => l.state,
                ir::Test::Quota(q) => q.state,
                ir::Test::Nth(n) => n.state,
                _ => None,
            })
        })
    })
}

/// Each quota of a program's rules: its state and what it had used when loaded.
fn rule_quotas(program: &ir::Program) -> impl Iterator<Item = (ir::StateId, u64)> + '_ {
    program.chains_in_order().flat_map(|(_, c)| {
        c.rules.iter().flat_map(|r| {
            r.matches.iter().filter_map(|m| match &m.test {
                ir::Test::Quota(q) => q.state.map(|s| (s, q.used)),
                _ => None,
            })
        })
    })
}

/// Counts handed out by `take_counts`, or kept from programs that are gone.
type Tally = BTreeMap<CounterRef, (u64, u64)>;

impl LoadedProg {
    /// Adds what each slot counted since the last call to the counters it stands for.
    fn collect(&mut self, tally: &mut Tally) {
        if self.counters.iter().all(Vec::is_empty) {
            return;
        }
        // Read before the counters: a packet counted after it shows up next time.
        let evaluated = self.loaded.evaluated().ok();
        if evaluated.is_some() && evaluated == self.evaluated {
            return;
        }
        let now = match self.loaded.counter_slots() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data plane's counters");
                return;
            }
        };
        self.evaluated = evaluated;
        self.seen.resize(now.len(), Counter::default());
        for (slot, keys) in self.counters.iter().enumerate() {
            let (Some(cur), Some(seen)) = (now.get(slot), self.seen.get(slot)) else {
                break;
            };
            let packets = cur.packets.wrapping_sub(seen.packets);
            let bytes = cur.bytes.wrapping_sub(seen.bytes);
            if packets == 0 && bytes == 0 {
                continue;
            }
            for k in keys {
                let t = tally.entry(*k).or_default();
                t.0 = t.0.wrapping_add(packets);
                t.1 = t.1.wrapping_add(bytes);
            }
        }
        // Every slot, also those no counter of this ruleset uses: a later ruleset
        // patched into this program may, and counts from what its slots hold then.
        self.seen = now;
    }
}

/// What building a generation did, for the worker's status.
#[derive(Default)]
struct BuildTally {
    loads: u64,
    patches: u64,
    writes: u64,
}

/// A retired program (one the last switch left, attached nowhere) of the same hook,
/// rewritten in place to enforce `compiled`: no program load, and only the map entries
/// that differ are written. None if no spare has the same constants and room.
fn patch_spare(
    retired: &mut Vec<LoadedProg>,
    compiled: &maps::CompiledProgram,
    options: LoadOptions,
    dir: Direction,
    loopback: bool,
    shared: &mut SharedState,
) -> Option<LoadedProg> {
    let mut i = 0;
    while i < retired.len() {
        let spare = &mut retired[i];
        if spare.dir != dir || spare.loopback != loopback {
            i += 1;
            continue;
        }
        match spare.loaded.patch_shared(compiled, options, shared) {
            Ok(_) => return Some(retired.swap_remove(i)),
            Err(LoadError::OtherConstants | LoadError::NoRoom(_)) => i += 1,
            Err(e) => {
                // Written half-way: of no use any more.
                tracing::warn!(error = %e, "cannot rewrite a spare program; dropped");
                retired.swap_remove(i);
            }
        }
    }
    None
}

/// A hash of a planned chain, to tell chains apart before comparing them whole.
fn fingerprint(chain: &ir::Program) -> u64 {
    use std::hash::BuildHasher;
    // Compared only within this process: a fixed seed, and foldhash rather than SipHash
    // (10,000 rules are hashed on every commit).
    foldhash::fast::FixedState::default().hash_one(chain)
}

/// Returns once every BPF program run that started before has ended: TC programs run
/// inside RCU read-side sections, and membarrier(MEMBARRIER_CMD_GLOBAL) waits for an RCU
/// grace period (synchronize_rcu).
fn wait_for_running_programs() -> io::Result<()> {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn next_program_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Generation {
    fn build(
        program: Arc<Program>,
        facts: &Facts,
        live: Option<&Generation>,
        retired: &mut Vec<LoadedProg>,
        shared: &mut SharedState,
        tally: &mut BuildTally,
    ) -> Result<Generation, DataplaneError> {
        // Also the chain of an interface that does not exist yet (matched by no
        // interface name pattern, bound to no netdev chain): built ahead, so that a new
        // interface gets its program the moment the kernel announces it.
        let mut with_phantom = facts.clone();
        with_phantom.links.insert(PHANTOM_IFINDEX, String::new());
        let t = Instant::now();
        let plan = instantiate(&program, &with_phantom)?;
        tracing::debug!(elapsed = ?t.elapsed(), chains = plan.chains.len(), "instantiated");
        let mut progs: BTreeMap<u64, LoadedProg> = BTreeMap::new();
        // Chains are shared, not copied: each holds 10,000 rules at the sizes benchmarked.
        let mut compiled_chains: Vec<(u64, Arc<ir::Program>, Arc<maps::CompiledProgram>)> =
            Vec::new();
        let mut assign = BTreeMap::new();
        let mut spares = Vec::new();
        let mut plan_counters = plan.counters;
        let mut prints: Vec<(Arc<ir::Program>, u64)> = Vec::new();
        for ((ifindex, dir), chain) in plan.chains {
            let loopback = ifindex == LOOPBACK_IFINDEX && dir == Direction::Ingress;
            let counters = plan_counters.remove(&(ifindex, dir)).unwrap_or_default();
            // Interfaces that share a planned chain share its fingerprint too.
            let print = match prints.iter().find(|(c, _)| Arc::ptr_eq(c, &chain)) {
                Some(&(_, print)) => print,
                None => {
                    let print = fingerprint(&chain);
                    prints.push((chain.clone(), print));
                    print
                }
            };
            let same = |p: &LoadedProg| {
                p.fingerprint == print
                    && p.dir == dir
                    && p.loopback == loopback
                    && (Arc::ptr_eq(&p.counters, &counters) || p.counters == counters)
                    && (Arc::ptr_eq(&p.chain, &chain) || p.chain == chain)
            };
            let reused = live
                .and_then(|g| g.progs.iter().find(|(_, p)| same(p)))
                .or_else(|| progs.iter().find(|(_, p)| same(p)))
                .map(|(&id, _)| id);
            let id = match reused {
                Some(id) => id,
                None => {
                    // Interfaces often get the same chains (loopback's ingress and the
                    // others' differ only in how they are loaded): compiled once.
                    let found = compiled_chains
                        .iter()
                        .find(|(p, c, _)| *p == print && (Arc::ptr_eq(c, &chain) || *c == chain));
                    let (chain, compiled) = match found {
                        Some((_, shared_chain, compiled)) => {
                            (shared_chain.clone(), compiled.clone())
                        }
                        None => {
                            // The live program of this interface and direction (else one
                            // of the same direction): the chain it runs is most often
                            // this one with a rule more or less at the end.
                            let basis = live.and_then(|g| {
                                g.assign
                                    .get(&(ifindex, dir))
                                    .and_then(|id| g.progs.get(id))
                                    .filter(|p| p.loopback == loopback)
                                    .or_else(|| {
                                        g.progs
                                            .values()
                                            .find(|p| p.dir == dir && p.loopback == loopback)
                                    })
                            });
                            let t = Instant::now();
                            let (compiled, incremental) = maps::compile_program_after(
                                &chain,
                                basis.map(|p| (&*p.chain, &*p.compiled)),
                            )
                            .map_err(|e| {
                                refuse(format!(
                                    "the eBPF data plane cannot build this ruleset: {e}"
                                ))
                            })?;
                            let compiled = Arc::new(compiled);
                            tracing::debug!(elapsed = ?t.elapsed(), incremental, "chain compiled");
                            compiled_chains.push((print, chain.clone(), compiled.clone()));
                            (chain, compiled)
                        }
                    };
                    let options = LoadOptions {
                        tc_egress: dir == Direction::Egress,
                        tc_loopback_ingress: loopback,
                        // The worker thread is in the namespace.
                        netns_cookie: netns::current_cookie().map_err(|e| {
                            refuse(format!("cannot read the namespace's cookie: {e}"))
                        })?,
                        xdp: false,
                        ..LoadOptions::default()
                    };
                    let t = Instant::now();
                    let patched = patch_spare(retired, &compiled, options, dir, loopback, shared);
                    tracing::debug!(elapsed = ?t.elapsed(), patched = patched.is_some(), "spare tried");
                    let (loaded, seen, evaluated) = match patched {
                        Some(spare) => {
                            tally.patches += 1;
                            // Counts start now: what the slots hold is another ruleset's,
                            // still what was last read of them if no packet ran since.
                            let now = spare.loaded.evaluated().ok();
                            let unmoved = now.is_some() && now == spare.evaluated;
                            let seen = if unmoved {
                                spare.seen
                            } else {
                                spare.loaded.counter_slots().unwrap_or_default()
                            };
                            (spare.loaded, seen, now)
                        }
                        None => {
                            tally.loads += 1;
                            let loaded = LoadedChain::load_shared(&compiled, options, shared)
                                .map_err(|e| {
                                    refuse(format!(
                                        "the eBPF data plane cannot load this ruleset: {e}"
                                    ))
                                })?;
                            (loaded, Vec::new(), None)
                        }
                    };
                    tally.writes += loaded.last_writes();
                    let id = next_program_id();
                    progs.insert(
                        id,
                        LoadedProg {
                            chain,
                            compiled,
                            fingerprint: print,
                            dir,
                            loopback,
                            counters,
                            seen,
                            evaluated,
                            loaded,
                        },
                    );
                    id
                }
            };
            if ifindex == PHANTOM_IFINDEX {
                spares.push(id);
            } else {
                assign.insert((ifindex, dir), id);
            }
        }
        Ok(Generation {
            quotas: Default::default(),
            program,
            facts: facts.clone(),
            progs,
            assign,
            spares,
        })
    }

    /// Takes over the programs of `old` that this generation reuses.
    fn adopt(&mut self, old: &mut Generation) {
        let wanted: Vec<u64> = self.assign.values().chain(&self.spares).copied().collect();
        for id in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.progs.entry(id) {
                if let Some(p) = old.progs.remove(&id) {
                    slot.insert(p);
                }
            }
        }
    }

    fn classifier(&mut self, id: u64) -> Option<&mut SchedClassifier> {
        self.progs
            .get_mut(&id)?
            .loaded
            .ebpf_mut()
            .program_mut(TC_PROGRAM)?
            .try_into()
            .ok()
    }
}

struct State {
    key: NetnsKey,
    facts: Facts,
    /// The namespace's shared maps; unpinned when the worker stops.
    shared: Option<SharedState>,
    live: Option<Generation>,
    /// Built by Prepare, used by the Commit of the same program.
    pending: Option<Generation>,
    /// Attached links and the id of the program each runs.
    links: BTreeMap<(u32, Direction), (u64, SchedClassifierLink)>,
    status: Arc<Mutex<WorkerStatus>>,
    generations: u64,
    errors: u64,
    /// Counted by programs dropped since the last `take_counts`.
    carry: Tally,
    /// Programs the last switch retired: attached nowhere, kept to take a later
    /// ruleset by rewriting their maps (double buffering without reloads).
    retired: Vec<LoadedProg>,
    /// The retired programs may still be running packets (switched away from since the
    /// last wait for an RCU grace period).
    retired_running: bool,
    /// Per live quota, what it had consumed when last reported to the engine.
    quotas_reported: BTreeMap<ir::StateId, u64>,
    /// The namespace's rate estimators (xt_RATEEST).
    estimators: Estimators,
    /// The namespace's xt_recent lists.
    recent: RecentLists,
    loads: u64,
    patches: u64,
    map_writes: u64,
    /// Where NFLOG packets go (none: they are dropped, as with no listener).
    nflog: Option<NflogSink>,
}

impl State {
    fn new(
        key: NetnsKey,
        facts: Facts,
        shared: SharedState,
        status: Arc<Mutex<WorkerStatus>>,
    ) -> State {
        // Links an earlier nftshimd left attached: switched to this worker's programs
        // by its first commit (a restored ruleset), or detached if it has none there.
        let links = pinned_links::adopt(shared.dir())
            .into_iter()
            .map(|(k, link)| (k, (ADOPTED, link)))
            .collect();
        State {
            links,
            key,
            facts,
            shared: Some(shared),
            live: None,
            pending: None,
            status,
            generations: 0,
            errors: 0,
            carry: Tally::new(),
            retired: Vec::new(),
            retired_running: false,
            quotas_reported: BTreeMap::new(),
            estimators: Estimators::default(),
            recent: RecentLists::default(),
            loads: 0,
            patches: 0,
            map_writes: 0,
            nflog: None,
        }
    }

    fn run(&mut self, commands: &Receiver<Command>, events: &RtnlSocket, wake: OwnedFd) {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: events.raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // Log events wait in each program's ring buffer: read them every 100 ms.
            // NFLOG packets wait in perf buffers: 10 ms, about the kernel's shortest
            // flush timer (2 jiffies).
            let mut timeout = if self.nflogs() {
                10
            } else if self.logs() {
                100
            } else {
                -1
            };
            // A rate estimator's period ends.
            if let Some(next) = self.estimators.next_deadline() {
                let wait = next.saturating_duration_since(Instant::now());
                let ms = wait.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                timeout = if timeout < 0 { ms } else { timeout.min(ms) };
            }
            // SAFETY: two valid pollfds.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                tracing::error!(
                    netns_cookie = self.key.cookie,
                    "poll failed; data plane worker stops"
                );
                return;
            }
            if fds[0].revents != 0 {
                let mut buf = [0u8; 8];
                // SAFETY: reading 8 bytes into a valid buffer from our eventfd.
                unsafe { libc::read(wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            }
            // Before a command or an address change rebuilds programs (which can take
            // a while), and again after it.
            if let Some(g) = self.live.as_ref() {
                write_logs(self.key, &self.facts, g.progs.values());
            }
            self.send_nflog();
            loop {
                match commands.try_recv() {
                    Ok(c) => self.handle(c),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
            if fds[1].revents != 0 && events.drain() {
                self.refresh_facts();
            }
            self.run_estimators();
            if let Some(g) = self.live.as_ref() {
                write_logs(self.key, &self.facts, g.progs.values());
            }
            self.send_nflog();
        }
    }

    /// Whether some live program has NFLOG statements.
    fn nflogs(&self) -> bool {
        self.live
            .as_ref()
            .is_some_and(|g| g.progs.values().any(|p| p.loaded.has_nflog()))
    }

    /// Hands the NFLOG packets of the live programs to the sink.
    fn send_nflog(&mut self) {
        if let Some(g) = self.live.as_mut() {
            send_nflog(
                self.key,
                &self.facts,
                self.nflog.as_ref(),
                g.progs.values_mut(),
            );
        }
    }

    /// Whether some live program has `log` statements.
    fn logs(&self) -> bool {
        self.live
            .as_ref()
            .is_some_and(|g| g.progs.values().any(|p| p.loaded.log_prefix(0).is_some()))
    }

    fn handle(&mut self, c: Command) {
        match c {
            Command::Prepare(program, reply) => {
                let result = self.build(program).map(|g| {
                    self.pending = Some(g);
                });
                self.publish();
                let _ = reply.send(result);
            }
            Command::Commit(program, reply) => {
                let prepared = self
                    .pending
                    .take()
                    .filter(|g| g.program == program && g.facts == self.facts);
                let next = match prepared {
                    Some(g) => Ok(g),
                    None => self.build(program),
                };
                match next {
                    Ok(g) => self.switch(g),
                    Err(e) => {
                        // Check built the same program a moment ago; only a change of
                        // facts in between can get here.
                        self.errors += 1;
                        tracing::error!(netns_cookie = self.key.cookie, error = %e, "cannot build the committed ruleset");
                    }
                }
                self.publish();
                let _ = reply.send(());
                // The grace period passes now, while the client reads its answer, not
                // in the next commit.
                self.settle_retired();
            }
            Command::TakeCounts(reply) => {
                let mut tally = std::mem::take(&mut self.carry);
                if let Some(g) = self.live.as_mut() {
                    for p in g.progs.values_mut() {
                        p.collect(&mut tally);
                    }
                }
                self.collect_quotas(&mut tally);
                self.estimators.absorb(&mut tally);
                let deltas = tally
                    .into_iter()
                    .map(|(counter, (packets, bytes))| CountDelta {
                        counter,
                        packets,
                        bytes,
                    })
                    .collect();
                let _ = reply.send(deltas);
            }
            Command::Retire(reply) => {
                self.retire();
                self.publish();
                let _ = reply.send(());
            }
        }
    }

    /// Adds what each live rule's quota consumed since the last call (its bytes, on
    /// the quota expression's own reference), so that listings show `used`.
    fn collect_quotas(&mut self, tally: &mut Tally) {
        let (Some(shared), Some(g)) = (self.shared.as_ref(), self.live.as_ref()) else {
            return;
        };
        let initial = g.quotas.get_or_init(|| {
            g.progs
                .values()
                .flat_map(|p| rule_quotas(&p.chain))
                .collect()
        });
        self.quotas_reported.retain(|s, _| initial.contains_key(s));
        if initial.is_empty() {
            return;
        }
        let usage = match nftshim_ebpf::loader::quota_usage(shared) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(netns_cookie = self.key.cookie, error = %e, "cannot read the quotas");
                return;
            }
        };
        for (state, consumed) in usage {
            let Some(&used) = initial.get(&state) else {
                continue;
            };
            let reported = self.quotas_reported.entry(state).or_insert(used);
            if consumed > *reported {
                let counter = CounterRef::Rule {
                    table: state.table,
                    rule: state.rule,
                    expr: state.expr,
                };
                let t = tally.entry(counter).or_default();
                t.1 = t.1.wrapping_add(consumed - *reported);
                *reported = consumed;
            }
        }
    }

    /// Where this namespace's links are pinned.
    fn pin_dir(&self) -> Option<std::path::PathBuf> {
        self.shared.as_ref().map(|s| s.dir().to_path_buf())
    }

    /// Unpins a link that is dropped next (then it detaches).
    fn unpin_link(&mut self, ifindex: u32, dir: Direction) {
        if let Some(d) = self.pin_dir() {
            if let Err(e) = pinned_links::unpin(&pinned_links::pin_path(&d, ifindex, dir)) {
                self.errors += 1;
                tracing::error!(netns_cookie = self.key.cookie, ifindex, ?dir, error = %e, "cannot unpin a link");
            }
        }
    }

    /// Ends the rate estimators' periods that are over: their counters are what the
    /// programs counted until now, and their new rates go to the programs' map.
    fn run_estimators(&mut self) {
        let now = Instant::now();
        if self.estimators.next_deadline().is_none_or(|t| t > now) {
            return;
        }
        if let Some(g) = self.live.as_mut() {
            for p in g.progs.values_mut() {
                p.collect(&mut self.carry);
            }
        }
        self.estimators.absorb(&mut self.carry);
        let rates = self.estimators.tick(now);
        let Some(pin) = self.shared.as_ref().map(|s| s.pin_path(RATES_MAP)) else {
            return;
        };
        if let Err(e) = self.estimators.write(&pin, &rates) {
            self.errors += 1;
            tracing::warn!(netns_cookie = self.key.cookie, error = %e, "cannot write the rate estimators' rates");
        }
    }

    /// Detaches every link, drops the programs and removes every pin.
    fn retire(&mut self) {
        self.estimators = Estimators::default();
        let keys: Vec<(u32, Direction)> = self.links.keys().copied().collect();
        for (ifindex, dir) in keys {
            self.unpin_link(ifindex, dir);
        }
        self.links.clear();
        self.pending = None;
        self.live = None;
        self.retired.clear();
        if let Some(shared) = self.shared.take() {
            if let Err(e) = shared.remove() {
                self.errors += 1;
                tracing::warn!(netns_cookie = self.key.cookie, error = %e, "cannot remove the pinned state");
            }
        }
    }

    /// A generation of `program` for the current facts, on the shared maps.
    /// Waits until no packet runs a retired program any more. A packet that entered
    /// one before its link switched may still be running it, and its maps are
    /// rewritten only after such runs end.
    fn settle_retired(&mut self) {
        if self.retired_running && !self.retired.is_empty() {
            let t = Instant::now();
            if let Err(e) = wait_for_running_programs() {
                tracing::warn!(netns_cookie = self.key.cookie, error = %e, "cannot wait for running programs; spares dropped");
                self.retired.clear();
            }
            tracing::debug!(elapsed = ?t.elapsed(), "retired programs settled");
        }
        self.retired_running = false;
    }

    fn build(&mut self, program: Arc<Program>) -> Result<Generation, DataplaneError> {
        if let Some(why) = self.estimators.conflict(&program) {
            return Err(refuse(why));
        }
        if let Some(why) = self.recent.conflict(&program) {
            return Err(refuse(why));
        }
        self.settle_retired();
        let shared = self
            .shared
            .as_mut()
            .ok_or_else(|| refuse("the data plane worker of this namespace stopped"))?;
        let mut tally = BuildTally::default();
        let lists_pin = shared.pin_path(LISTS_MAP);
        let g = Generation::build(
            program.clone(),
            &self.facts,
            self.live.as_ref(),
            &mut self.retired,
            shared,
            &mut tally,
        );
        self.loads += tally.loads;
        self.patches += tally.patches;
        self.map_writes += tally.writes;
        let g = g?;
        // After the retired programs settled: a list made again is never written
        // while a program of the commit that deleted it still runs.
        let params = crate::compile::xt::recent::params().ok();
        self.recent
            .prepare(&program, &lists_pin, params)
            .map_err(refuse)?;
        Ok(g)
    }

    /// Frees the limit and quota slots of rules neither the live nor the prepared
    /// generation has: they are gone, and come back (if ever) with fresh state.
    fn free_unused_states(&mut self) {
        let live: BTreeSet<ir::StateId> = self
            .live
            .iter()
            .chain(self.pending.iter())
            .flat_map(|g| g.progs.values())
            .flat_map(|p| states(&p.chain))
            .collect();
        if let Some(shared) = self.shared.as_mut() {
            shared.retain(&live);
        }
    }

    fn refresh_facts(&mut self) {
        let facts = match rtnl::read_facts() {
            Ok(f) => f,
            Err(e) => {
                self.errors += 1;
                tracing::error!(netns_cookie = self.key.cookie, error = %e, "cannot read links and addresses");
                return;
            }
        };
        if facts == self.facts {
            return;
        }
        let t = Instant::now();
        self.facts = facts;
        if let Some(program) = self.live.as_ref().map(|g| g.program.clone()) {
            match self.build(program) {
                Ok(g) => self.switch(g),
                Err(e) => {
                    self.errors += 1;
                    tracing::error!(netns_cookie = self.key.cookie, error = %e, "cannot rebuild after a link or address change");
                }
            }
            tracing::debug!(netns_cookie = self.key.cookie, elapsed = ?t.elapsed(), "followed a link or address change");
        }
        self.publish();
    }

    /// Moves every link to the new generation's program, attaches new ones, detaches
    /// the ones the new generation does not have, then drops the old programs.
    fn switch(&mut self, mut next: Generation) {
        // The table the new generation was built for, before its programs run.
        if let Some(pin) = self
            .shared
            .as_ref()
            .map(|s| s.pin_path(nftshim_ebpf::addrtype::MAP))
        {
            match super::addrtype::sync(&pin, &next.facts.addrtype_v4) {
                Ok(n) => self.map_writes += n,
                Err(e) => {
                    self.errors += 1;
                    tracing::error!(netns_cookie = self.key.cookie, error = %e, "cannot write the local routing table's mirror");
                }
            }
        }
        let pin = self.shared.as_ref().map(|s| s.pin_path(RATES_MAP));
        self.estimators
            .adopt(&next.program, Instant::now(), pin.as_deref());
        if let Some(pin) = self.shared.as_ref().map(|s| s.pin_path(LISTS_MAP)) {
            self.recent.commit(&next.program, &pin);
        }
        if let Some(old) = self.live.as_mut() {
            next.adopt(old);
        }
        let mut links = BTreeMap::new();
        let assign = next.assign.clone();
        let names = next.facts.links.clone();
        let Some(pin_dir) = self.pin_dir() else {
            return;
        };
        for (&(ifindex, dir), &id) in &assign {
            let old = self.links.remove(&(ifindex, dir));
            if let Some((old_id, link)) = old {
                if old_id == id {
                    // Already runs this very program.
                    links.insert((ifindex, dir), (id, link));
                    continue;
                }
                let Some(prog) = next.classifier(id) else {
                    self.errors += 1;
                    continue;
                };
                match prog.attach_to_link(link).and_then(|l| prog.take_link(l)) {
                    Ok(link) => {
                        links.insert((ifindex, dir), (id, link));
                        continue;
                    }
                    Err(e) => {
                        // E.g. an adopted link of an interface that is gone (its ifindex
                        // reused): unpinned, it detaches; a fresh one is attached.
                        self.errors += 1;
                        tracing::error!(netns_cookie = self.key.cookie, ifindex, ?dir, error = %e, "cannot switch the data plane program; attaching anew");
                        self.unpin_link(ifindex, dir);
                    }
                }
            }
            let Some(name) = names.get(&ifindex) else {
                continue;
            };
            let Some(prog) = next.classifier(id) else {
                self.errors += 1;
                continue;
            };
            let attach_type = match dir {
                Direction::Ingress => TcAttachType::Ingress,
                Direction::Egress => TcAttachType::Egress,
            };
            let attached = prog
                .attach_with_options(
                    name,
                    attach_type,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .and_then(|l| prog.take_link(l))
                .map_err(|e| e.to_string())
                .and_then(|l| pinned_links::pin(l, &pin_dir, ifindex, dir));
            match attached {
                Ok(link) => {
                    links.insert((ifindex, dir), (id, link));
                }
                Err(e) => {
                    self.errors += 1;
                    tracing::error!(netns_cookie = self.key.cookie, ifindex, ?dir, error = %e, "cannot attach the data plane program");
                }
            }
        }
        // What is left was not in the new generation: unpinned and dropped, a link
        // detaches; then the old programs no link runs any more are dropped, after
        // their last counts are kept (a rule keeps its counter across generations).
        let gone: Vec<(u32, Direction)> = self.links.keys().copied().collect();
        for (ifindex, dir) in gone {
            self.unpin_link(ifindex, dir);
        }
        self.links = links;
        if let Some(mut old) = self.live.take() {
            write_logs(self.key, &self.facts, old.progs.values());
            send_nflog(
                self.key,
                &self.facts,
                self.nflog.as_ref(),
                old.progs.values_mut(),
            );
            for p in old.progs.values_mut() {
                p.collect(&mut self.carry);
            }
            // The programs no link runs any more are the next commit's spares.
            self.retired = std::mem::take(&mut old.progs).into_values().collect();
            self.retired_running = true;
        }
        self.live = Some(next);
        self.generations += 1;
        self.free_unused_states();
    }

    fn publish(&self) {
        if let Ok(mut s) = self.status.lock() {
            *s = WorkerStatus {
                attached: self.links.keys().copied().collect(),
                programs: self.live.as_ref().map_or(0, |g| g.progs.len()),
                generations: self.generations,
                errors: self.errors,
                loads: self.loads,
                patches: self.patches,
                map_writes: self.map_writes,
            };
        }
    }
}

impl Drop for State {
    /// The daemon stops (or the worker is dropped without [`Worker::retire`]): the
    /// pinned links and maps stay, enforcing the last ruleset for the next daemon,
    /// unless no link is attached or nothing else holds the namespace (then it goes
    /// with this thread): then everything pinned for it goes.
    fn drop(&mut self) {
        // Nothing attached (e.g. only a refused or checked-only batch was prepared):
        // nothing to keep enforcing either.
        if self.links.is_empty() || !netns::held_elsewhere(self.key.inode) {
            self.retire();
        }
        self.links.clear();
        self.pending = None;
        self.live = None;
    }
}
