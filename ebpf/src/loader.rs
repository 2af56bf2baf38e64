//! Loads the embedded eBPF object for one [`CompiledProgram`]: sets the read-only
//! configuration and map sizes, creates the maps, fills them, verifies both programs,
//! and runs them on frames with BPF_PROG_TEST_RUN. Attaching to interfaces is left to
//! the daemon's data-plane issue.

use std::time::Duration;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::{include_bytes_aligned, Ebpf, EbpfLoader, Pod};

use crate::conntrack::Timeouts;
use crate::image::{self, Capacity, Image, NoRoom};
use crate::ir::{SetElement, Verdict};
use crate::maps::checks::{BpfLimit, BpfQuota, BpfResidualElem, BpfResidualInsn, BpfRuleExt};
use crate::maps::checks::{CHECK_LIMIT, CHECK_QUOTA};
use crate::maps::sets::{self, SetEntry, SetIds};
use crate::maps::{BpfChain, BpfConfig, BpfLive, BpfRule, CompiledProgram};
use crate::shared::{SharedState, SHARED_CT_MAX, SHARED_MAPS, SHARED_SLOTS};

/// The compiled `bpf/nftshim.bpf.c` (built by build.rs).
pub static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nftshim.bpf.o"));

pub const XDP_PROGRAM: &str = "nftshim_xdp";
pub const TC_PROGRAM: &str = "nftshim_tc";

/// `NS_STAT_EVALUATED` (lib/actions.h).
const STAT_EVALUATED: u32 = 5;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

/// Room for a test run's output frame (a reject answer is at most 22 + 1280 bytes).
const DATA_OUT: usize = 4096;

// Safety: plain #[repr(C)] integers, no padding, mirrored by `struct ns_config`.
unsafe impl Pod for BpfConfig {}
// Safety: as `struct ns_live`, u32 fields only.
unsafe impl Pod for BpfLive {}
// Safety: as `struct ns_chain`, four u32.
unsafe impl Pod for BpfChain {}
// Safety: as `struct ns_rule`: u8, u8, u16, u32, u32, no padding.
unsafe impl Pod for BpfRule {}
// Safety: as `struct ns_rule_ext`: 4 × (u8 × 4, u32) then 4 × 3 u32, no padding.
unsafe impl Pod for BpfRuleExt {}
// Safety: as `struct ns_limit`: u32 lock, u32, six u64, no padding.
unsafe impl Pod for BpfLimit {}
// Safety: two u64.
unsafe impl Pod for BpfQuota {}
// Safety: as `struct ns_res_insn`: 6 × u8, u16, 2 × u32, 32 × u8, no padding.
unsafe impl Pod for BpfResidualInsn {}
// Safety: 32 × u8.
unsafe impl Pod for BpfResidualElem {}

/// `struct ns_set4_key` without its prefix length (aya's `Key` adds it).
#[derive(Clone, Copy)]
#[repr(C)]
struct Set4Key {
    set: u32,
    addr: u32,
}
// Safety: two u32.
unsafe impl Pod for Set4Key {}

#[derive(Clone, Copy)]
#[repr(C)]
struct Set6Key {
    set: u32,
    addr: [u8; 16],
}
// Safety: u32 then 16 bytes, no padding.
unsafe impl Pod for Set6Key {}

#[derive(Clone, Copy)]
#[repr(C)]
struct SetPortKey {
    set: u32,
    port: u16,
    pad: u16,
}
// Safety: u32, u16, u16.
unsafe impl Pod for SetPortKey {}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
struct SetValKey {
    set: u32,
    value: u32,
}
// Safety: two u32.
unsafe impl Pod for SetValKey {}

/// One `log` statement that ran (`struct ns_log_event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// The rule's number in the program.
    pub rule: u32,
    /// Index into the program's `log_prefixes`.
    pub prefix: u32,
    pub iif: u32,
    pub oif: u32,
    /// The meta mark when the statement ran.
    pub mark: u32,
    /// Bytes from the network header on.
    pub len: u32,
    /// The `ct state` bit.
    pub ct_state: u32,
    /// Where the network header starts in `headers`.
    pub l3_off: u16,
    /// The frame's first bytes (at most 128).
    pub headers: Vec<u8>,
    /// The socket file's fsuid and fsgid, when the packet had one (read only by
    /// programs with [`crate::maps::FEATURE_SOCKCRED`], at TC egress).
    pub uid_gid: Option<(u32, u32)>,
}

const LOG_EVENT_SIZE: usize = 7 * 4 + 2 * 2 + 128 + 3 * 4;

/// One xt_NFLOG / `log group` statement that ran (`struct ns_nflog_event`, lib/nflog.h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NflogEvent {
    /// Index into the program's `log_prefixes` (the statement's spec).
    pub spec: u32,
    pub iif: u32,
    pub oif: u32,
    /// The meta mark when the statement ran.
    pub mark: u32,
    /// skb->len at the IP hooks: bytes from the network header on.
    pub len: u32,
    /// skb->tstamp (0: none).
    pub tstamp: u64,
    /// Where the network header starts in `frame`.
    pub l3_off: u16,
    /// skb->protocol, as the kernel stores it (network order).
    pub protocol: u16,
    /// The fsuid and fsgid of the packet's socket file, when it has one (TC egress).
    pub uid_gid: Option<(u32, u32)>,
    /// The frame from its link-layer header on, as far as the statement may need it.
    pub frame: Vec<u8>,
}

const NFLOG_EVENT_SIZE: usize = 48;
/// `NS_SOCKCRED_FILE` (lib/sockcred.h).
const SOCKCRED_FILE: u32 = 2;

/// Pages of each CPU's perf buffer: room for a few packets of the largest size.
const NFLOG_PAGES: usize = 64;

impl NflogEvent {
    /// Parses one perf sample: the event, then the frame.
    fn parse(sample: &[u8]) -> Option<NflogEvent> {
        let u32_at = |o: usize| u32::from_ne_bytes(sample[o..o + 4].try_into().expect("4 bytes"));
        let u16_at = |o: usize| u16::from_ne_bytes(sample[o..o + 2].try_into().expect("2 bytes"));
        if sample.len() < NFLOG_EVENT_SIZE {
            return None;
        }
        let caplen = u32_at(20) as usize;
        let frame = sample.get(NFLOG_EVENT_SIZE..NFLOG_EVENT_SIZE + caplen)?;
        Some(NflogEvent {
            spec: u32_at(0),
            iif: u32_at(4),
            oif: u32_at(8),
            mark: u32_at(12),
            len: u32_at(16),
            tstamp: u64::from_ne_bytes(sample[24..32].try_into().expect("8 bytes")),
            l3_off: u16_at(32),
            // Stored as the kernel's __be16, read back as its bytes.
            protocol: u16::from_be_bytes(sample[34..36].try_into().expect("2 bytes")),
            uid_gid: (u32_at(36) == SOCKCRED_FILE).then(|| (u32_at(40), u32_at(44))),
            frame: frame.to_vec(),
        })
    }
}
/// Packets and bytes that hit a rule (or the policy), summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

// Safety: two u64, as `struct ns_counter`.
unsafe impl Pod for Counter {}

/// Program events (`dp_stats`), summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Seen by some base chain.
    pub classified: u64,
    /// Outside every base chain's scope, passed unclassified.
    pub unscoped: u64,
    /// Map lookups that cannot fail did, or the step bound ran out (the packet was
    /// dropped).
    pub errors: u64,
    /// Jumps past NFT_JUMP_STACK_SIZE (the packet was dropped, as by the kernel).
    pub jump_overflows: u64,
    /// Log events lost for want of ring buffer space.
    pub logs_lost: u64,
    /// Packets evaluated (counted after their counters were).
    pub evaluated: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// The TC program will be attached at egress: `skb->ifindex` is then the output
    /// device (`meta oif`); at ingress `oif` is 0.
    pub tc_egress: bool,
    /// The TC program will be attached at the loopback device's ingress, whose packets
    /// conntrack saw at its egress already.
    pub tc_loopback_ingress: bool,
    /// Connection tracking timeouts (when the program tracks connections).
    pub ct_timeouts: Timeouts,
    /// Size of the connection table (least recently used entries are evicted).
    pub ct_max: u32,
    /// Entries of each set map (all sets of a key type share one; a port range takes
    /// up to 30).
    pub set_max: u32,
    /// The cookie of the namespace the program serves (SO_NETNS_COOKIE): the socket
    /// matches' net_eq(); 0 outside one (tests: their packets have no socket).
    pub netns_cookie: u64,
    /// Verify the XDP program too (tests run it; the daemon attaches TC only, and a
    /// program it never runs must not refuse a ruleset nor cost a verification).
    pub xdp: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            tc_egress: false,
            tc_loopback_ingress: false,
            ct_timeouts: Timeouts::default(),
            ct_max: 65536,
            set_max: 65536,
            netns_cookie: 0,
            xdp: true,
        }
    }
}

/// `struct __sk_buff` fields a TC test run can set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbMeta {
    pub mark: u32,
    /// Must be 0 or an existing ifindex of the caller's namespace (the kernel looks it up).
    pub ifindex: u32,
    /// Any value: becomes `skb->skb_iif`, the program's `meta iif`.
    pub ingress_ifindex: u32,
}

/// One BPF_PROG_TEST_RUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The packet's fate (a rejected one is dropped).
    pub verdict: Verdict,
    /// Kernel-measured time per repetition.
    pub duration: Duration,
    /// A reject's answer, sent back (TC redirect, XDP_TX): the frame.
    pub reply: Option<Vec<u8>>,
    /// TC: the skb's mark after the program.
    pub mark: Option<u32>,
    /// TC: the skb's priority after the program.
    pub priority: Option<u32>,
    /// TC: the frame as the program let it through (header writes done); empty when
    /// it was dropped or answered.
    pub packet: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the eBPF object: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("the chain needs {0} vector-table entries, more than a BPF array takes")]
    TooLarge(usize),
    #[error("program returned {0}, which is not a verdict")]
    UnexpectedReturn(u32),
    #[error("no set named {0:?}")]
    UnknownSet(String),
    #[error("set {0:?} has another key type than the element")]
    SetKeyMismatch(String),
    #[error("a limit or quota without a state id cannot use the shared tables")]
    Unshared,
    #[error("more than {SHARED_SLOTS} limits or quotas in the namespace")]
    NoSlot,
    #[error("the program was verified with other constants")]
    OtherConstants,
    #[error(transparent)]
    NoRoom(#[from] NoRoom),
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> LoadError {
    move |e| LoadError::Map {
        name,
        source: Box::new(e),
    }
}

fn prog_err(name: &'static str) -> impl FnOnce(ProgramError) -> LoadError {
    move |e| LoadError::Program {
        name,
        source: Box::new(e),
    }
}

/// What a program of the shared tables needs: pin paths, and the (slot, new) of each
/// of its limits and quotas.
struct Shared {
    pins: Vec<(&'static str, std::path::PathBuf)>,
    limits: Vec<(u32, bool)>,
    quotas: Vec<(u32, bool)>,
}

/// One program's maps and verified programs in the kernel. Dropping it frees them.
pub struct LoadedProgram {
    ebpf: Ebpf,
    ncounters: u32,
    sets: SetIds,
    log_prefixes: Vec<String>,
    /// The constants it was verified with.
    config: BpfConfig,
    /// Its maps' sizes.
    caps: Capacity,
    /// What its maps hold.
    image: Image,
    /// Map writes of the last load or patch.
    writes: u64,
    /// Programs with NFLOG statements: their per-CPU perf buffers.
    nflog: Vec<PerfEventArrayBuffer<MapData>>,
}

/// A loaded lone chain.
pub type LoadedChain = LoadedProgram;

impl LoadedProgram {
    /// Loads a program with maps of its own.
    pub fn load(chain: &CompiledProgram, options: LoadOptions) -> Result<Self, LoadError> {
        Self::load_with(chain, options, None)
    }

    /// Loads a program that uses the namespace's shared maps (connections, limits,
    /// quotas): pinned in `shared`'s directory, created there by the first program.
    pub fn load_shared(
        chain: &CompiledProgram,
        options: LoadOptions,
        shared: &mut SharedState,
    ) -> Result<Self, LoadError> {
        with_shared_slots(chain, shared, |limits, quotas, pins| {
            Self::load_with(
                chain,
                options,
                Some(Shared {
                    pins,
                    limits,
                    quotas,
                }),
            )
        })
    }

    /// The program's constants for `chain` under `options`, with vectors of `stride`
    /// entries.
    fn constants(chain: &CompiledProgram, options: &LoadOptions, stride: u32) -> BpfConfig {
        BpfConfig {
            egress: options.tc_egress as u32,
            loopback_ingress: options.tc_loopback_ingress as u32,
            ct_timeout: options.ct_timeouts.to_config(),
            block_stride: stride,
            netns_cookie: options.netns_cookie,
            ..chain.config
        }
    }

    fn load_with(
        chain: &CompiledProgram,
        options: LoadOptions,
        shared: Option<Shared>,
    ) -> Result<Self, LoadError> {
        let caps = Capacity::for_program(chain);
        let config = Self::constants(chain, &options, caps.stride);
        let entries = u32::try_from(caps.vector_entries())
            .map_err(|_| LoadError::TooLarge(caps.vector_entries() as usize))?;
        // Every map needs at least one entry; empty ones are simply never read.
        let size = |n: usize| (n as u32).max(1);
        let mut loader = EbpfLoader::new();
        loader
            .override_global("cfg", &config, true)
            .map_max_entries("vectors", caps.blocks)
            .map_max_entries("vector_blocks", entries)
            .map_max_entries("rules", caps.rules)
            .map_max_entries("chains", caps.chains)
            .map_max_entries("rule_counters", caps.counters)
            .map_max_entries("ct_table", options.ct_max.max(1))
            .map_max_entries("rule_ext", caps.rule_ext)
            .map_max_entries("limits", size(chain.limits.len()))
            .map_max_entries("quotas", size(chain.quotas.len()))
            .map_max_entries("residual_insns", caps.residual_insns)
            .map_max_entries("residual_elems", caps.residual_elems)
            .map_max_entries("set_v4", options.set_max.max(1))
            .map_max_entries("set_v6", options.set_max.max(1))
            .map_max_entries("set_port", options.set_max.max(1))
            .map_max_entries("set_val", options.set_max.max(1));
        for (name, max) in image::LPM_MAPS.iter().zip(caps.lpm) {
            loader.map_max_entries(name, max);
        }
        for (name, max) in image::HASH_MAPS.iter().zip(caps.hash) {
            loader.map_max_entries(name, max);
        }
        if let Some(sh) = &shared {
            // One size for every program of the namespace: the pinned map's.
            loader
                .map_max_entries("ct_table", SHARED_CT_MAX)
                .map_max_entries("limits", SHARED_SLOTS)
                .map_max_entries("quotas", SHARED_SLOTS);
            for (name, path) in &sh.pins {
                loader.map_pin_path(name, path.as_path());
            }
        }
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| LoadError::Object(Box::new(e)))?;

        let rule_ext = match &shared {
            Some(sh) => resolve_slots(&chain.rule_ext, &sh.limits, &sh.quotas)?,
            None => chain.rule_ext.clone(),
        };
        let empty = Image::default();
        let image = empty.successor(chain, &rule_ext, &caps)?;
        let writes = empty
            .write_diff(&image, &mut ebpf)
            .map_err(map_err("the ruleset's maps"))?;
        for entry in &chain.set_entries {
            set_entry(&mut ebpf, entry, true)?;
        }
        enable_ct_acct(&mut ebpf, chain)?;
        fill_pod_array(&mut ebpf, "ct_labels", &[chain.ct_labels as u32])?;
        match &shared {
            // Only new shared slots are initialised, the others carry on with their
            // rule's state.
            Some(sh) => init_fresh_slots(&mut ebpf, chain, &sh.limits, &sh.quotas)?,
            None => {
                fill_pod_array(&mut ebpf, "limits", &full_buckets(chain))?;
                fill_pod_array(&mut ebpf, "quotas", &chain.quotas)?;
            }
        }

        if options.xdp {
            let xdp: &mut Xdp = program_mut(&mut ebpf, XDP_PROGRAM)?
                .try_into()
                .map_err(prog_err(XDP_PROGRAM))?;
            xdp.load().map_err(prog_err(XDP_PROGRAM))?;
        }
        let tc: &mut SchedClassifier = program_mut(&mut ebpf, TC_PROGRAM)?
            .try_into()
            .map_err(prog_err(TC_PROGRAM))?;
        tc.load().map_err(prog_err(TC_PROGRAM))?;
        let nflog = if config.features & crate::maps::FEATURE_NFLOG != 0 {
            open_nflog_buffers(&mut ebpf)?
        } else {
            Vec::new()
        };
        Ok(LoadedProgram {
            nflog,
            ebpf,
            ncounters: chain.ncounters() as u32,
            sets: chain.sets.clone(),
            log_prefixes: chain.log_prefixes.clone(),
            config,
            caps,
            image,
            writes: writes + chain.set_entries.len() as u64,
        })
    }

    /// Rewrites this program's maps, in place, to enforce `chain` instead: only the
    /// entries that differ are written. Fails, writing nothing, when the program's
    /// constants differ or its maps have no room; fails after writing some when a map
    /// write does (then the program is half-way and must be dropped). The program
    /// must not be attached: a packet would see parts of both rulesets.
    pub fn patch_shared(
        &mut self,
        chain: &CompiledProgram,
        options: LoadOptions,
        shared: &mut SharedState,
    ) -> Result<u64, LoadError> {
        self.check_constants(chain, &options)?;
        with_shared_slots(chain, shared, |limits, quotas, _| {
            let rule_ext = resolve_slots(&chain.rule_ext, &limits, &quotas)?;
            let writes = self.rewrite(chain, rule_ext)?;
            enable_ct_acct(&mut self.ebpf, chain)?;
            fill_pod_array(&mut self.ebpf, "ct_labels", &[chain.ct_labels as u32])?;
            init_fresh_slots(&mut self.ebpf, chain, &limits, &quotas)?;
            Ok(writes)
        })
    }

    /// [`Self::patch_shared`] for a program with maps of its own: its limits and
    /// quotas start afresh.
    pub fn patch(
        &mut self,
        chain: &CompiledProgram,
        options: LoadOptions,
    ) -> Result<u64, LoadError> {
        self.check_constants(chain, &options)?;
        let writes = self.rewrite(chain, chain.rule_ext.clone())?;
        enable_ct_acct(&mut self.ebpf, chain)?;
        fill_pod_array(&mut self.ebpf, "ct_labels", &[chain.ct_labels as u32])?;
        fill_pod_array(&mut self.ebpf, "limits", &full_buckets(chain))?;
        fill_pod_array(&mut self.ebpf, "quotas", &chain.quotas)?;
        Ok(writes)
    }

    fn check_constants(
        &self,
        chain: &CompiledProgram,
        options: &LoadOptions,
    ) -> Result<(), LoadError> {
        if Self::constants(chain, options, self.caps.stride) == self.config {
            Ok(())
        } else {
            Err(LoadError::OtherConstants)
        }
    }

    /// Writes what differs between the maps' image and `chain`'s.
    fn rewrite(
        &mut self,
        chain: &CompiledProgram,
        rule_ext: Vec<BpfRuleExt>,
    ) -> Result<u64, LoadError> {
        let next = self.image.successor(chain, &rule_ext, &self.caps)?;
        let mut writes = self
            .image
            .write_diff(&next, &mut self.ebpf)
            .map_err(map_err("the ruleset's maps"))?;
        let (gone, new) = self.image.set_changes(&next);
        for e in gone.iter() {
            set_entry(&mut self.ebpf, e, false)?;
        }
        for e in new.iter() {
            set_entry(&mut self.ebpf, e, true)?;
        }
        writes += (gone.len() + new.len()) as u64;
        self.image = next;
        self.ncounters = chain.ncounters() as u32;
        self.sets = chain.sets.clone();
        self.log_prefixes = chain.log_prefixes.clone();
        self.writes = writes;
        Ok(writes)
    }

    /// Map updates and deletions of the last load or patch.
    pub fn last_writes(&self) -> u64 {
        self.writes
    }

    /// Runs the XDP program on one frame (`repeat` times; the duration is per run). The
    /// kernel runs it as received on the namespace's loopback.
    pub fn run_xdp(&self, frame: &[u8], repeat: u32) -> Result<Run, LoadError> {
        let prog: &Xdp = self
            .program(XDP_PROGRAM)?
            .try_into()
            .map_err(prog_err(XDP_PROGRAM))?;
        let mut out = vec![0u8; DATA_OUT];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        };
        let result = prog.test_run(opts).map_err(prog_err(XDP_PROGRAM))?;
        let (verdict, reply) = match result.return_value {
            XDP_PASS => (Verdict::Accept, None),
            XDP_DROP => (Verdict::Drop, None),
            XDP_TX => {
                out.truncate(result.data_size_out as usize);
                (Verdict::Drop, Some(out))
            }
            other => return Err(LoadError::UnexpectedReturn(other)),
        };
        Ok(Run {
            verdict,
            duration: result.duration,
            reply,
            mark: None,
            priority: None,
            packet: Vec::new(),
        })
    }

    /// Runs the TC program on one frame with the given skb fields.
    pub fn run_tc(&self, frame: &[u8], meta: SkbMeta, repeat: u32) -> Result<Run, LoadError> {
        let prog: &SchedClassifier = self
            .program(TC_PROGRAM)?
            .try_into()
            .map_err(prog_err(TC_PROGRAM))?;
        let ctx = sk_buff_ctx(meta);
        let mut ctx_out = [0u8; 192];
        let mut out = vec![0u8; DATA_OUT];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ctx_out: Some(&mut ctx_out),
            repeat,
            ..TestRunOptions::new()
        };
        let result = prog.test_run(opts).map_err(prog_err(TC_PROGRAM))?;
        let mut packet = Vec::new();
        let (verdict, reply) = match result.return_value {
            TC_ACT_OK => {
                packet = out[..(result.data_size_out as usize).min(out.len())].to_vec();
                (Verdict::Accept, None)
            }
            TC_ACT_SHOT => (Verdict::Drop, None),
            TC_ACT_REDIRECT => {
                out.truncate(result.data_size_out as usize);
                (Verdict::Drop, Some(out))
            }
            other => return Err(LoadError::UnexpectedReturn(other)),
        };
        Ok(Run {
            verdict,
            duration: result.duration,
            reply,
            mark: Some(u32::from_ne_bytes(
                ctx_out[SKB_MARK..SKB_MARK + 4].try_into().expect("4 bytes"),
            )),
            priority: Some(u32::from_ne_bytes(
                ctx_out[SKB_PRIORITY..SKB_PRIORITY + 4]
                    .try_into()
                    .expect("4 bytes"),
            )),
            packet,
        })
    }

    /// Adds an element to a named set, at once for the running program.
    pub fn set_insert(&mut self, set: &str, element: &SetElement) -> Result<(), LoadError> {
        for entry in self.set_entries(set, element)? {
            set_entry(&mut self.ebpf, &entry, true)?;
            self.image.set_entry(entry, true);
        }
        Ok(())
    }

    /// Removes an element from a named set (an element that is not there is ignored).
    /// Elements of one set must not overlap (nft refuses overlapping intervals): the
    /// prefixes of one would be removed from the other.
    pub fn set_remove(&mut self, set: &str, element: &SetElement) -> Result<(), LoadError> {
        for entry in self.set_entries(set, element)? {
            set_entry(&mut self.ebpf, &entry, false)?;
            self.image.set_entry(entry, false);
        }
        Ok(())
    }

    fn set_entries(&self, set: &str, element: &SetElement) -> Result<Vec<SetEntry>, LoadError> {
        let info = self
            .sets
            .0
            .get(set)
            .ok_or_else(|| LoadError::UnknownSet(set.to_string()))?;
        if info.key != element.key() {
            return Err(LoadError::SetKeyMismatch(set.to_string()));
        }
        Ok(sets::entries(info.id, element))
    }

    /// The prefix of a log event (`LogEvent::prefix`).
    pub fn log_prefix(&self, id: u32) -> Option<&str> {
        self.log_prefixes.get(id as usize).map(String::as_str)
    }

    /// Takes the log events written since the last call.
    pub fn read_logs(&self) -> Result<Vec<LogEvent>, LoadError> {
        let map = self
            .ebpf
            .map("log_events")
            .ok_or(LoadError::Missing("log_events"))?;
        let mut ring = RingBuf::try_from(map).map_err(map_err("log_events"))?;
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() < LOG_EVENT_SIZE {
                continue;
            }
            let u32_at =
                |i: usize| u32::from_ne_bytes(item[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            let u16_at = |o: usize| u16::from_ne_bytes(item[o..o + 2].try_into().expect("2 bytes"));
            let caplen = (u16_at(30) as usize).min(128);
            events.push(LogEvent {
                rule: u32_at(0),
                prefix: u32_at(1),
                iif: u32_at(2),
                oif: u32_at(3),
                mark: u32_at(4),
                len: u32_at(5),
                ct_state: u32_at(6),
                l3_off: u16_at(28),
                headers: item[32..32 + caplen].to_vec(),
                uid_gid: (u32_at(42) != 0).then(|| (u32_at(40), u32_at(41))),
            });
        }
        Ok(events)
    }

    /// Takes the nflog events written since the last call, and how many the perf
    /// buffers had no room for.
    pub fn read_nflog(&mut self) -> (Vec<NflogEvent>, u64) {
        let mut events = Vec::new();
        let mut lost = 0;
        for buf in &mut self.nflog {
            buf.for_each(|ev| match ev {
                PerfEvent::Sample { head, tail } => {
                    let parsed = if tail.is_empty() {
                        NflogEvent::parse(head)
                    } else {
                        NflogEvent::parse(&[head, tail].concat())
                    };
                    match parsed {
                        Some(e) => events.push(e),
                        None => lost += 1,
                    }
                }
                PerfEvent::Lost { count } => lost += count,
            });
        }
        (events, lost)
    }

    /// Whether the program has nflog statements.
    pub fn has_nflog(&self) -> bool {
        !self.nflog.is_empty()
    }

    /// Counters of rules `0..nrules`, then the base chains' policies, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<Counter>, LoadError> {
        self.read_counter_slots(self.ncounters)
    }

    /// Every slot of the counters map, summed over CPUs: [`LoadedProgram::counters`],
    /// then the slots no rule uses now (a later patch may give them rules: what they
    /// hold is then known).
    pub fn counter_slots(&self) -> Result<Vec<Counter>, LoadError> {
        self.read_counter_slots(self.caps.counters)
    }

    fn read_counter_slots(&self, n: u32) -> Result<Vec<Counter>, LoadError> {
        let map = self
            .ebpf
            .map("rule_counters")
            .ok_or(LoadError::Missing("rule_counters"))?;
        let aya::maps::Map::PerCpuArray(data) = map else {
            return Err(LoadError::Missing("rule_counters"));
        };
        read_counters(data, n).map_err(|e| LoadError::Map {
            name: "rule_counters",
            source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_lookup_batch",
                io_error: e,
            })),
        })
    }

    pub fn stats(&self) -> Result<Stats, LoadError> {
        Ok(Stats {
            classified: self.stat(0)?,
            unscoped: self.stat(1)?,
            errors: self.stat(2)?,
            jump_overflows: self.stat(3)?,
            logs_lost: self.stat(4)?,
            evaluated: self.stat(STAT_EVALUATED)?,
        })
    }

    /// Packets evaluated so far. Each is counted after every counter it bumped: if
    /// this reads the same before two counter reads, the counters did not move
    /// between them (stores become visible in order on x86).
    pub fn evaluated(&self) -> Result<u64, LoadError> {
        self.stat(STAT_EVALUATED)
    }

    /// `dp_stats[i]` (`enum ns_stat`), summed over CPUs.
    fn stat(&self, i: u32) -> Result<u64, LoadError> {
        let map = self
            .ebpf
            .map("dp_stats")
            .ok_or(LoadError::Missing("dp_stats"))?;
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_err("dp_stats"))?;
        Ok(stats.get(&i, 0).map_err(map_err("dp_stats"))?.iter().sum())
    }

    /// The loaded programs, for attaching (`Xdp::attach`, `SchedClassifier::attach`).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn program(&self, name: &'static str) -> Result<&aya::programs::Program, LoadError> {
        self.ebpf.program(name).ok_or(LoadError::Missing(name))
    }
}

fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::programs::Program, LoadError> {
    ebpf.program_mut(name).ok_or(LoadError::Missing(name))
}

fn map_data<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, LoadError> {
    ebpf.map_mut(name).ok_or(LoadError::Missing(name))
}

/// Writes an array of plain structs, all of them.
/// Turns connection accounting on (the shared `ct_acct` flag) when `chain` reads
/// counters; it stays on, as nf_conntrack_acct does once nf_tables set it.
fn enable_ct_acct(ebpf: &mut Ebpf, chain: &CompiledProgram) -> Result<(), LoadError> {
    if chain.enables_ct_acct() {
        fill_pod_array(ebpf, "ct_acct", &[1u32])?;
    }
    Ok(())
}

fn fill_pod_array<T: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    values: &[T],
) -> Result<(), LoadError> {
    if values.is_empty() {
        return Ok(());
    }
    let mut map: Array<&mut MapData, T> =
        Array::try_from(map_data(ebpf, name)?).map_err(map_err(name))?;
    for (index, value) in values.iter().enumerate() {
        map.set(index as u32, *value, 0).map_err(map_err(name))?;
    }
    Ok(())
}

/// Writes `values[i]` at slot `slots[i].0` where the slot is new (`slots[i].1`).
fn fill_pod_slots<T: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    values: &[T],
    slots: &[(u32, bool)],
) -> Result<(), LoadError> {
    if !slots.iter().any(|&(_, fresh)| fresh) {
        return Ok(());
    }
    let mut map: Array<&mut MapData, T> =
        Array::try_from(map_data(ebpf, name)?).map_err(map_err(name))?;
    for (value, &(slot, fresh)) in values.iter().zip(slots) {
        if fresh {
            map.set(slot, *value, 0).map_err(map_err(name))?;
        }
    }
    Ok(())
}

/// Takes the shared limit and quota slots of `chain`'s states and runs `f` with them
/// (and the pin paths); if `f` fails, the slots it would have started are forgotten,
/// so that the next load starts them.
fn with_shared_slots<T>(
    chain: &CompiledProgram,
    shared: &mut SharedState,
    f: impl FnOnce(
        Vec<(u32, bool)>,
        Vec<(u32, bool)>,
        Vec<(&'static str, std::path::PathBuf)>,
    ) -> Result<T, LoadError>,
) -> Result<T, LoadError> {
    let mut fresh = Vec::new();
    let result = (|| {
        let mut take = |slots: &mut crate::shared::Slots,
                        states: &[Option<crate::ir::StateId>],
                        limit: bool|
         -> Result<Vec<(u32, bool)>, LoadError> {
            let mut out = Vec::new();
            for state in states {
                let id = state.ok_or(LoadError::Unshared)?;
                let slot = slots.slot(id).ok_or(LoadError::NoSlot)?;
                if slot.1 {
                    fresh.push((limit, id));
                }
                out.push(slot);
            }
            Ok(out)
        };
        let limits = take(&mut shared.limits, &chain.limit_states, true)?;
        let quotas = take(&mut shared.quotas, &chain.quota_states, false)?;
        let pins = SHARED_MAPS
            .iter()
            .map(|&n| (n, shared.pin_path(n)))
            .collect();
        f(limits, quotas, pins)
    })();
    if result.is_err() {
        for (limit, id) in fresh {
            if limit {
                shared.limits.forget(id);
            } else {
                shared.quotas.forget(id);
            }
        }
    }
    result
}

/// The rules' checks with their limits and quotas pointing at the shared slots.
fn resolve_slots(
    rule_ext: &[BpfRuleExt],
    limit_slots: &[(u32, bool)],
    quota_slots: &[(u32, bool)],
) -> Result<Vec<BpfRuleExt>, LoadError> {
    let mut ext = rule_ext.to_vec();
    for x in &mut ext {
        for c in &mut x.checks {
            let slots = match c.kind {
                CHECK_LIMIT => limit_slots,
                CHECK_QUOTA => quota_slots,
                _ => continue,
            };
            c.arg = slots.get(c.arg as usize).ok_or(LoadError::NoSlot)?.0;
        }
    }
    Ok(ext)
}

/// `chain`'s token buckets, full now (bpf_ktime_get_ns() is CLOCK_MONOTONIC).
fn full_buckets(chain: &CompiledProgram) -> Vec<BpfLimit> {
    let now = monotonic_ns();
    chain
        .limits
        .iter()
        .map(|l| BpfLimit { last: now, ..*l })
        .collect()
}

/// Starts the shared limit and quota slots that are new.
fn init_fresh_slots(
    ebpf: &mut Ebpf,
    chain: &CompiledProgram,
    limit_slots: &[(u32, bool)],
    quota_slots: &[(u32, bool)],
) -> Result<(), LoadError> {
    fill_pod_slots(ebpf, "limits", &full_buckets(chain), limit_slots)?;
    fill_pod_slots(ebpf, "quotas", &chain.quotas, quota_slots)
}

/// The first `n` entries of the per-CPU `rule_counters`, summed over CPUs, read
/// with BPF_MAP_LOOKUP_BATCH: one system call for a 10,000-rule program rather than
/// one per rule.
fn read_counters(map: &MapData, n: u32) -> std::io::Result<Vec<Counter>> {
    use std::os::fd::{AsFd, AsRawFd};
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    /// `union bpf_attr`'s `batch` member.
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let mut sums = vec![Counter::default(); n as usize];
    let mut keys = vec![0u32; n as usize];
    let mut values = vec![Counter::default(); n as usize * cpus];
    let (mut start, mut next) = (0u32, 0u32);
    let mut done = 0usize;
    let fd = map.fd().as_fd().as_raw_fd();
    while done < n as usize {
        let mut attr = BatchAttr {
            in_batch: if done == 0 {
                0
            } else {
                &mut start as *mut u32 as u64
            },
            out_batch: &mut next as *mut u32 as u64,
            keys: keys[done..].as_mut_ptr() as u64,
            values: values[done * cpus..].as_mut_ptr() as u64,
            count: (n as usize - done) as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the buffers hold `count` keys and `count * cpus` values (`struct
        // ns_counter` is 16 bytes, already 8-aligned) and outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(std::io::Error::last_os_error);
        done += attr.count as usize;
        match err {
            // The end of the map: `count` says what was read.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Some(e) => return Err(e),
            None if attr.count == 0 => break,
            None => start = next,
        }
    }
    for (i, sum) in sums.iter_mut().enumerate().take(done) {
        for c in &values[i * cpus..(i + 1) * cpus] {
            sum.packets += c.packets;
            sum.bytes += c.bytes;
        }
    }
    Ok(sums)
}

/// Offset of `mark` in `struct __sk_buff`.
const SKB_MARK: usize = 8;
const SKB_PRIORITY: usize = 32;

/// A `struct __sk_buff` (uapi linux/bpf.h, 192 bytes) with the fields test runs may set.
fn sk_buff_ctx(meta: SkbMeta) -> [u8; 192] {
    const INGRESS_IFINDEX: usize = 36;
    const IFINDEX: usize = 40;
    let mut ctx = [0u8; 192];
    ctx[SKB_MARK..SKB_MARK + 4].copy_from_slice(&meta.mark.to_ne_bytes());
    ctx[INGRESS_IFINDEX..INGRESS_IFINDEX + 4].copy_from_slice(&meta.ingress_ifindex.to_ne_bytes());
    ctx[IFINDEX..IFINDEX + 4].copy_from_slice(&meta.ifindex.to_ne_bytes());
    ctx
}

/// A removal of an entry that is not there succeeded.
fn not_there_is_fine(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Adds (or removes) one set map entry.
fn set_entry(ebpf: &mut Ebpf, entry: &SetEntry, add: bool) -> Result<(), LoadError> {
    fn apply<K: Pod>(
        ebpf: &mut Ebpf,
        name: &'static str,
        key: Key<K>,
        add: bool,
    ) -> Result<(), LoadError> {
        let mut trie: LpmTrie<&mut MapData, K, u8> =
            LpmTrie::try_from(map_data(ebpf, name)?).map_err(map_err(name))?;
        if add {
            trie.insert(&key, 1, 0).map_err(map_err(name))
        } else {
            not_there_is_fine(trie.remove(&key)).map_err(map_err(name))
        }
    }
    match *entry {
        SetEntry::V4 { set, net } => apply(
            ebpf,
            "set_v4",
            Key::new(
                32 + net.prefix_len() as u32,
                Set4Key {
                    set: set.to_be(),
                    addr: u32::from(net.addr()).to_be(),
                },
            ),
            add,
        ),
        SetEntry::V6 { set, net } => apply(
            ebpf,
            "set_v6",
            Key::new(
                32 + net.prefix_len() as u32,
                Set6Key {
                    set: set.to_be(),
                    addr: net.addr().octets(),
                },
            ),
            add,
        ),
        SetEntry::Port { set, port, len } => apply(
            ebpf,
            "set_port",
            Key::new(
                32 + len as u32,
                SetPortKey {
                    set: set.to_be(),
                    port: port.to_be(),
                    pad: 0,
                },
            ),
            add,
        ),
        SetEntry::Value { set, value } => {
            let name = "set_val";
            let mut map: BpfHashMap<&mut MapData, SetValKey, u8> =
                BpfHashMap::try_from(map_data(ebpf, name)?).map_err(map_err(name))?;
            let key = SetValKey { set, value };
            if add {
                map.insert(key, 1, 0).map_err(map_err(name))
            } else {
                not_there_is_fine(map.remove(&key)).map_err(map_err(name))
            }
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of bpf_ktime_get_ns().
/// What each quota of the namespace has consumed so far (the shared `quotas` map),
/// by its rule's state: bytes, not capped at the quota.
pub fn quota_usage(shared: &SharedState) -> Result<Vec<(crate::ir::StateId, u64)>, LoadError> {
    let slots: Vec<(crate::ir::StateId, u32)> = shared.quotas.assigned().collect();
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let map = MapData::from_pin(shared.pin_path("quotas")).map_err(map_err("quotas"))?;
    let quotas: aya::maps::Array<MapData, BpfQuota> =
        aya::maps::Array::try_from(aya::maps::Map::Array(map)).map_err(map_err("quotas"))?;
    slots
        .into_iter()
        .map(|(state, slot)| {
            let q = quotas.get(&slot, 0).map_err(map_err("quotas"))?;
            Ok((state, q.consumed))
        })
        .collect()
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: a valid pointer to a timespec; CLOCK_MONOTONIC cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Opens one perf buffer per online CPU for the `nflog_events` map.
fn open_nflog_buffers(ebpf: &mut Ebpf) -> Result<Vec<PerfEventArrayBuffer<MapData>>, LoadError> {
    let map = ebpf
        .take_map("nflog_events")
        .ok_or(LoadError::Missing("nflog_events"))?;
    let mut array = PerfEventArray::try_from(map).map_err(map_err("nflog_events"))?;
    let cpus = aya::util::online_cpus().map_err(|(_, e)| LoadError::Map {
        name: "nflog_events",
        source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
            call: "online_cpus",
            io_error: e,
        })),
    })?;
    cpus.into_iter()
        .map(|cpu| {
            array
                .open(cpu, Some(NFLOG_PAGES))
                .map_err(|e| LoadError::Map {
                    name: "nflog_events",
                    source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
                        call: "perf_event_open",
                        io_error: std::io::Error::other(e.to_string()),
                    })),
                })
        })
        .collect()
}
