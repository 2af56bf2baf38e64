//! `-m recent` (net/netfilter/xt_recent.c), enforced by [`Insn::XtRecent`] on the
//! namespace's lists (bpf/lib/xt_recent.h), which the worker keeps as the kernel keeps
//! its tables (runtime/recent.rs). The kernel facts (checked on 6.18 here,
//! docs/xt_recent.md):
//!
//! - A list is per network namespace and per NAME only: ip and ip6 rules of one name
//!   share it (entries keyed by family and masked address), and its mask is the one of
//!   the rule that created it (later rules' `--mask` is ignored).
//! - It lives while any rule of that name exists, in any table or chain, dormant or
//!   unreachable: nft_compat runs checkentry for the new rules before the old ones are
//!   destroyed, so `iptables-restore` of the same rules keeps its entries; deleting the
//!   last rule empties it. A rule whose `--hitcount` needs more stamps than the list
//!   keeps flushes it when added. [`lists`] walks the whole ruleset for this.
//! - At most ip_list_tot entries, the least recently set or updated one evicted;
//!   `--reap` removes that same oldest entry when it is stale; time is jiffies.
//! - Each evaluation but a plain `--rcheck` has side effects (set, update, remove,
//!   reap), so such a match must run exactly where the kernel runs it: after the rule's
//!   earlier matches (the residual program runs after the rule's other tests, which
//!   all come before it) and before any later one, which the rule decompiler therefore
//!   refuses.
//!
//! Refused: `--rttl` (recent_mt() counts the TTL one higher for a packet with an output
//! device and no socket, which depends on where each hook is emulated; without it the
//! TTL an entry keeps is never read, as the /proc files that show it do not exist
//! here); `--hitcount` above 32 (the programs keep 32 stamps per entry); families
//! other than ip and ip6; module parameters the programs cannot follow.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use netlink_proto::expr::Expr as TypedExpr;
use netlink_proto::xt::{strnlen, Blob};
use nftshim_ebpf::recent::{self as r, Params};
use nftshim_ebpf::residual::Insn;
use nftshim_engine::view::{Expr, Rule, RulesetView, Table};

use super::{Decompiled, XtCx};
use crate::compile::Family;

/// XT_RECENT_CHECK, _SET, _UPDATE, _REMOVE (uapi xt_recent.h).
const MODES: [(u8, &str); 4] = [
    (r::CHECK, "--rcheck"),
    (r::SET, "--set"),
    (r::UPDATE, "--update"),
    (r::REMOVE, "--remove"),
];

/// The module parameters and HZ, read once; why lists cannot be kept, if so.
pub fn params() -> Result<Params, String> {
    static PARAMS: OnceLock<Result<Params, String>> = OnceLock::new();
    PARAMS
        .get_or_init(|| {
            let p = Params::read()?;
            if let Some(why) = p.unsupported() {
                return Err(why);
            }
            let hz = r::measure_hz()?;
            if hz != r::HZ {
                return Err(format!(
                    "a kernel with HZ {hz} (the programs count {})",
                    r::HZ
                ));
            }
            Ok(p)
        })
        .clone()
}

/// The list and options of a `struct xt_recent_mtinfo{,_v1}`: seconds u32 @0,
/// hit_count u32 @4, check_set u8 @8, invert u8 @9, name [200] @10, side u8 @210,
/// then v1's mask (16 bytes @212; revision 0 has none: all ones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: Vec<u8>,
    pub seconds: u32,
    pub hit_count: u32,
    pub check_set: u8,
    pub invert: bool,
    pub dest: bool,
    pub mask: [u8; 16],
}

impl Info {
    pub fn parse(rev: u32, b: Blob<'_>) -> Info {
        let name = b.bytes(10, 200);
        let mut mask = [0xff; 16];
        if rev >= 1 {
            mask.copy_from_slice(&b.bytes(212, 16));
        }
        Info {
            name: name[..strnlen(&name)].to_vec(),
            seconds: b.u32(0),
            hit_count: b.u32(4),
            check_set: b.u8(8),
            invert: b.u8(9) != 0,
            dest: b.u8(210) == 2,
            mask,
        }
    }

    fn mode(&self) -> &'static str {
        MODES
            .iter()
            .find(|(bit, _)| self.check_set & bit != 0)
            .map_or("without a mode", |(_, option)| option)
    }
}

/// Whether the match changes its list (set, update, remove, reap): then nothing of
/// the rule may follow it.
pub fn has_side_effects(insns: &[Insn]) -> bool {
    insns.iter().any(|i| {
        matches!(i, Insn::XtRecent { check_set, .. }
            if check_set & (r::SET | r::UPDATE | r::REMOVE | r::REAP) != 0)
    })
}

pub fn recent(cx: &XtCx<'_>, rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    let info = Info::parse(rev, b);
    let what = format!(
        "xt match recent {} (list {})",
        info.mode(),
        String::from_utf8_lossy(&info.name)
    );
    if !matches!(cx.family, Family::Ip | Family::Ip6) {
        return Err(format!(
            "{what} outside the ip and ip6 families is not supported by the eBPF data plane"
        ));
    }
    if info.check_set & r::TTL != 0 {
        return Err(format!(
            "{what} --rttl is not supported by the eBPF data plane (the kernel compares the \
             TTL counted one higher for packets with an output device and no socket, which \
             the programs cannot tell the same way at every hook)"
        ));
    }
    if info.hit_count as usize > r::MAX_STAMPS {
        return Err(format!(
            "{what} --hitcount {} is not supported by the eBPF data plane (at most {})",
            info.hit_count,
            r::MAX_STAMPS
        ));
    }
    params().map_err(|why| format!("{what} is not supported by the eBPF data plane: {why}"))?;
    Ok(Decompiled::Residual(
        Vec::new(),
        vec![Insn::XtRecent {
            list: r::list_key(&info.name),
            check_set: info.check_set & r::CHECK_SET_BITS,
            seconds: info.seconds,
            hit_count: info.hit_count,
            invert: info.invert,
            dest: info.dest,
        }],
    ))
}

/// What the namespace's rules need of one list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListNeed {
    /// The mask of the rule that creates the list if it is new: the first added
    /// (lowest handle) of its rules; `None` when rules of several tables with
    /// different masks could each be it.
    pub mask: Option<[u8; 16]>,
    /// The largest stamp mask of its rules (recent_mt_check()).
    pub nstamps_max_mask: u16,
}

/// Every list the ruleset's rules name, by name: every table (dormant ones too) and
/// every chain (reachable or not), as the kernel's reference counts keep them.
pub fn lists(view: &RulesetView<'_>) -> BTreeMap<Vec<u8>, ListNeed> {
    lists_of(view.tables().iter().flat_map(|t| {
        t.chains
            .iter()
            .flat_map(move |c| c.rules.iter().map(move |r| (t, &**r)))
    }))
}

/// The xt_recent match info of an expression (revision, blob) handed to `f`, if it is
/// one (what [`lists`] reads).
fn recent_info<T>(e: &Expr, f: impl FnOnce(u32, &[u8]) -> T) -> Option<T> {
    if e.name != "match" {
        return None;
    }
    let TypedExpr::Match(m) = TypedExpr::from_data(&e.name, &e.data) else {
        return None;
    };
    if m.ext_name() != Some("recent") {
        return None;
    }
    Some(f(m.rev().unwrap_or(0), m.info()?))
}

/// Whether [`lists`] finds a list in `rule`.
pub fn names_a_list(rule: &Rule) -> bool {
    rule.exprs
        .iter()
        .any(|e| recent_info(e, |_, _| ()).is_some())
}

/// [`lists`] of the rules given (in table, chain and rule order); rules that name no
/// list may be left out.
pub fn lists_of<'a>(
    rules: impl Iterator<Item = (&'a Table, &'a Rule)>,
) -> BTreeMap<Vec<u8>, ListNeed> {
    // name -> (need, (table handle, rule handle) of the creator candidate)
    let mut out: BTreeMap<Vec<u8>, (ListNeed, u64, u64)> = BTreeMap::new();
    for (table, rule) in rules {
        {
            {
                for e in &rule.exprs {
                    let Some(info) = recent_info(e, |rev, data| Info::parse(rev, Blob(data)))
                    else {
                        continue;
                    };
                    let nmask = r::nstamp_mask(info.hit_count);
                    match out.get_mut(&info.name) {
                        None => {
                            out.insert(
                                info.name.clone(),
                                (
                                    ListNeed {
                                        mask: Some(info.mask),
                                        nstamps_max_mask: nmask,
                                    },
                                    table.handle,
                                    rule.handle,
                                ),
                            );
                        }
                        Some((need, t, h)) => {
                            need.nstamps_max_mask = need.nstamps_max_mask.max(nmask);
                            if *t == table.handle {
                                if rule.handle < *h {
                                    *h = rule.handle;
                                    if need.mask.is_some() {
                                        need.mask = Some(info.mask);
                                    }
                                }
                            } else if need.mask != Some(info.mask) {
                                // Handles of two tables do not tell which came first.
                                need.mask = None;
                            }
                        }
                    }
                }
            }
        }
    }
    out.into_iter().map(|(n, (need, _, _))| (n, need)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{decompile_match, Decompiled};
    use crate::compile::{Family, Hook};
    use nftshim_ebpf::residual::Insn;

    /// A revision-1 blob as iptables-nft sends `-m recent`.
    fn blob(check_set: u8, hit_count: u32, name: &str) -> Vec<u8> {
        let mut info = vec![0u8; 232];
        info[0..4].copy_from_slice(&60u32.to_ne_bytes());
        info[4..8].copy_from_slice(&hit_count.to_ne_bytes());
        info[8] = check_set;
        info[10..10 + name.len()].copy_from_slice(name.as_bytes());
        info[210] = 2; // XT_RECENT_DEST
        info[212..228].fill(0xff);
        info
    }

    fn recent(family: Family, info: Vec<u8>) -> Result<Decompiled, String> {
        let cx = super::super::tests::cx(family, Hook::Input, None);
        decompile_match(&cx, &super::super::tests::xt_match("recent", 1, info))
    }

    /// Skips when this machine's xt_recent parameters cannot be read (the module
    /// not loaded): everything is refused then.
    fn params_readable() -> bool {
        match super::params() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("skipped: {e}");
                false
            }
        }
    }

    #[test]
    fn modes_become_the_residual_operation() {
        if !params_readable() {
            return;
        }
        for family in [Family::Ip, Family::Ip6] {
            let d = recent(family, blob(1 | 32, 3, "foo")).unwrap();
            let Decompiled::Residual(ms, insns) = d else {
                panic!("{d:?}")
            };
            assert!(ms.is_empty());
            assert_eq!(
                insns,
                vec![Insn::XtRecent {
                    list: nftshim_ebpf::recent::list_key(b"foo"),
                    check_set: 1 | 32,
                    seconds: 60,
                    hit_count: 3,
                    invert: false,
                    dest: true,
                }]
            );
            assert!(super::has_side_effects(&insns));
        }
        let Ok(Decompiled::Residual(_, check)) = recent(Family::Ip, blob(1, 0, "foo")) else {
            panic!()
        };
        assert!(!super::has_side_effects(&check));
    }

    #[test]
    fn rttl_and_large_hitcounts_are_refused() {
        if !params_readable() {
            return;
        }
        let why = recent(Family::Ip, blob(4 | 16, 0, "foo")).unwrap_err();
        assert!(
            why.starts_with("xt match recent --update (list foo) --rttl"),
            "{why}"
        );
        let why = recent(Family::Ip, blob(1, 33, "foo")).unwrap_err();
        assert!(why.contains("--hitcount 33"), "{why}");
        assert!(recent(Family::Ip, blob(1, 32, "foo")).is_ok());
    }

    #[test]
    fn revision_0_has_an_all_ones_mask() {
        let mut info = vec![0u8; 216];
        info[8] = 2;
        info[10..17].copy_from_slice(b"DEFAULT");
        let i = super::Info::parse(0, netlink_proto::xt::Blob(&info));
        assert_eq!(i.mask, [0xff; 16]);
        assert_eq!(i.name, b"DEFAULT");
        assert!(!i.dest);
    }
}
