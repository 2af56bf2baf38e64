//! x_tables extensions reached through nft_compat's `match` and `target` expressions:
//! which exist in this kernel (per family), the generic checks of `xt_check_match` /
//! `xt_check_target` (size, table, hooks, protocol) and the `->checkentry` of the
//! common extensions, which may also rewrite the info blob (what later dumps show).
//!
//! The table in `xt_table.rs` was measured on this kernel by `tools/xtprobe.py` (the
//! kernel logs each generic check it refuses). The checkentry functions follow the
//! kernel sources of the extensions, for x86_64 struct layouts and CONFIG_HZ=250.

use netlink_proto::extra::{NFPROTO_ARP, NFPROTO_BRIDGE, NFPROTO_IPV4, NFPROTO_IPV6};

use crate::errno::*;

const ERANGE_: i32 = ERANGE;
const EDOM: i32 = 33;
const EPROTO: i32 = 71;

/// One registered extension. `family` 0 is NFPROTO_UNSPEC: every family finds it.
#[derive(Debug)]
pub struct Ext {
    pub family: u8,
    pub target: bool,
    pub name: &'static str,
    pub rev: u8,
    /// `XT_ALIGN(matchsize)` / `XT_ALIGN(targetsize)`; 0 for ebt_among's "any size"
    /// (which `nft_match_select_ops` refuses).
    pub size: u16,
    pub table: Option<&'static str>,
    pub proto: u16,
    pub hooks: u32,
}

include!("xt_table.rs");

/// `xt_find_match` / `xt_find_target`: the family's own registration, else the
/// family-independent one.
pub fn find(family: u8, name: &[u8], rev: u32, target: bool) -> Option<&'static Ext> {
    let hit = |f: u8| {
        EXTS.iter().find(|e| {
            e.family == f
                && e.target == target
                && e.name.as_bytes() == name
                && u32::from(e.rev) == rev
        })
    };
    hit(family).or_else(|| hit(0))
}

/// `xt_find_revision`: the best revision (`match_revfn`/`target_revfn`: the family's
/// list, then, if the revision was not there, NFPROTO_UNSPEC's), or the errno.
pub fn find_revision(family: u8, name: &[u8], rev: u32, target: bool) -> Result<u32, i32> {
    let mut best: Option<u32> = None;
    let mut scan = |f: u8| {
        let mut have = false;
        for e in EXTS
            .iter()
            .filter(|e| e.family == f && e.target == target && e.name.as_bytes() == name)
        {
            best = Some(best.map_or(u32::from(e.rev), |b| b.max(u32::from(e.rev))));
            have |= u32::from(e.rev) == rev;
        }
        have
    };
    let mut have = scan(family);
    if !have {
        have = scan(0);
    }
    match (best, have) {
        (None, _) => Err(ENOENT),
        (Some(_), false) => Err(93), // EPROTONOSUPPORT
        (Some(b), true) => Ok(b),
    }
}

/// The rate estimator of a name, if one exists: its interval and ewma_log.
pub type RateestLookup<'a> = dyn Fn(&[u8]) -> Option<(i8, u8)> + 'a;

/// What `nft_match_set_mtchk_param` / `nft_target_set_tgchk_param` hand the checks.
pub struct CheckCx<'a> {
    pub family: u8,
    /// `par->table`: the nf_tables table's name.
    pub table: &'a str,
    /// `1 << hooknum` of a base chain, 0 for a regular chain.
    pub hook_mask: u32,
    /// NFTA_RULE_COMPAT: the rule's layer 4 protocol (ebtables: ethertype as stored
    /// in a host-order u16) and whether it is inverted.
    pub proto: u16,
    pub inv: bool,
    /// The rate estimator of that name, if one exists (RATEEST targets create them):
    /// its interval and ewma_log.
    pub rateest: &'a RateestLookup<'a>,
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// `nft_match_select_ops`/`nft_target_select_ops` past the lookup plus
/// `xt_check_match`/`xt_check_target`: the stored info blob or the errno.
pub fn check(ext: &Ext, cx: &CheckCx<'_>, info: &[u8]) -> Result<Vec<u8>, i32> {
    // `match->matchsize > nla_len(INFO)`, then XT_ALIGN(nla_len) == XT_ALIGN(size).
    // Only the aligned size is known here (clients send that): a shorter info of the
    // same alignment is taken, and padded as the kernel pads its copy.
    if ext.size == 0 || info.is_empty() || align8(info.len()) != usize::from(ext.size) {
        return Err(EINVAL);
    }
    if let Some(t) = ext.table {
        if t != cx.table {
            return Err(EINVAL);
        }
    }
    // NFPROTO_UNSPEC implies NF_INET_* hooks: ARP tables take only explicit ARP ones.
    if cx.family == NFPROTO_ARP && ext.family != NFPROTO_ARP {
        return Err(EINVAL);
    }
    if ext.hooks != 0 && cx.hook_mask & !ext.hooks != 0 {
        return Err(EINVAL);
    }
    if ext.proto != 0 && (ext.proto != cx.proto || cx.inv) {
        return Err(EINVAL);
    }
    let mut buf = info.to_vec();
    buf.resize(usize::from(ext.size), 0);
    checkentry(ext, cx, &mut buf)?;
    if let Some(user) = usersize(ext) {
        for b in &mut buf[user..] {
            *b = 0;
        }
    }
    Ok(buf)
}

/// `.usersize`: dumps show only this much of the blob, zeros after it (kernel-private
/// state lives there).
fn usersize(ext: &Ext) -> Option<usize> {
    let n = match (ext.target, ext.name, ext.rev) {
        (false, "limit", _) => 8,
        (false, "hashlimit", 1) => 48,
        (false, "hashlimit", 2) => 296,
        (false, "hashlimit", 3) => 304,
        (false, "quota", _) => 16,
        (false, "statistic", _) => 16,
        (false, "connlimit", _) => 24,
        (false, "rateest", _) => 56,
        (false, "string", _) => 152,
        (false, "cgroup", 1) => 4104,
        (false, "cgroup", 2) => 520,
        (false, "bpf", _) => 520,
        (false, "nfacct", _) => 32,
        (true, "RATEEST", _) => 24,
        (true, "CT", 0) => 32,
        (true, "CT", _) => 64,
        (true, "IDLETIMER", 0) => 32,
        (true, "IDLETIMER", _) => 40,
        (true, "TEE", _) => 32,
        (true, "DNPT" | "SNPT", _) => 34,
        _ => return None,
    };
    Some(n.min(usize::from(ext.size)))
}

fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn i32_at(b: &[u8], off: usize) -> i32 {
    u32_at(b, off) as i32
}

fn cstr_at(b: &[u8], off: usize, len: usize) -> &[u8] {
    let s = b.get(off..(off + len).min(b.len())).unwrap_or(&[]);
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    &s[..end]
}

/// xt_rateest_tg_checkentry(): `struct xt_rateest_target_info` (name[16] @0, interval
/// s8 @16, ewma_log u8 @17). An estimator of that name is shared only if both
/// parameters are given and are its own; a new one takes gen_new_estimator()'s
/// bounds (interval -2..=3, i.e. 250 ms to 8 s; ewma_log 1..=30).
fn rateest_target(cx: &CheckCx<'_>, b: &[u8]) -> Result<(), i32> {
    let name = b.get(..16).unwrap_or(&[]);
    ok_if(name.contains(&0), ENAMETOOLONG)?;
    let (interval, ewma_log) = (u8_at(b, 16) as i8, u8_at(b, 17));
    match (cx.rateest)(cstr_at(b, 0, 16)) {
        Some(params) => ok_if(
            (interval, ewma_log) != (0, 0) && params == (interval, ewma_log),
            EINVAL,
        ),
        None => ok_if(
            (-2..=3).contains(&interval) && (1..31).contains(&ewma_log),
            EINVAL,
        ),
    }
}

fn ok_if(cond: bool, errno: i32) -> Result<(), i32> {
    if cond {
        Ok(())
    } else {
        Err(errno)
    }
}

const IPPROTO_ICMP: u16 = 1;
const IPPROTO_IGMP: u16 = 2;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const IPPROTO_DCCP: u16 = 33;
const IPPROTO_ICMPV6: u16 = 58;
const IPPROTO_SCTP: u16 = 132;
const IPPROTO_UDPLITE: u16 = 136;

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;

/// `nf_ct_netns_get`: conntrack exists for IPv4/IPv6 (and inet); this kernel has no
/// nf_conntrack_bridge (measured: EPROTO), other families have none.
fn ct_get(family: u8) -> Result<(), i32> {
    match family {
        NFPROTO_IPV4 | NFPROTO_IPV6 | netlink_proto::extra::NFPROTO_INET => Ok(()),
        _ => Err(EPROTO),
    }
}

/// ebtables ethertype as `nft_match_set_mtchk_param` stores it: the host-order u16
/// of NFTA_RULE_COMPAT_PROTO compared with `htons(ETH_P_*)`.
fn eth_is(cx: &CheckCx<'_>, eth_p: u16) -> bool {
    cx.proto == u16::from_ne_bytes(eth_p.to_be_bytes())
}

/// `ebt_invalid_target`: a standard ebtables verdict (-1 .. -4).
fn ebt_valid_verdict(v: i32) -> bool {
    (-4..0).contains(&v)
}

/// `user2credits` of xt_limit / ebt_limit with HZ=250 (CREDITS_PER_JIFFY 128).
fn user2credits(user: u32) -> u32 {
    const HZ: u32 = 250;
    const CPJ: u32 = 128;
    const SCALE: u32 = 10000;
    if user > u32::MAX / (HZ * CPJ) {
        (user / SCALE).wrapping_mul(HZ * CPJ)
    } else {
        (user * HZ * CPJ) / SCALE
    }
}

fn limit_ok(avg: u32, burst: u32) -> bool {
    burst != 0 && user2credits(avg.wrapping_mul(burst)) >= user2credits(avg)
}

/// `xt_ct_tg_check`: a conntrack template, with a helper and a timeout policy that
/// must exist for the rule's protocol (`-p`, not inverted).
fn ct_target(rev: u8, cx: &CheckCx<'_>, b: &[u8]) -> Result<(), i32> {
    const NOTRACK: u16 = 1;
    if u16_at(b, 0) & NOTRACK != 0 {
        return Ok(());
    }
    ct_get(cx.family)?;
    let proto = if cx.inv { 0 } else { cx.proto };
    let helper = b.get(12..28).unwrap_or(&[]);
    if helper.first().is_some_and(|&c| c != 0) {
        ok_if(helper.contains(&0), ENAMETOOLONG)?;
        let found = u8::try_from(proto)
            .is_ok_and(|p| p != 0 && crate::obj::ct_helper_exists(cstr_at(b, 12, 16), p));
        ok_if(found, ENOENT)?;
    }
    let timeout = if rev == 0 {
        &[][..]
    } else {
        b.get(28..60).unwrap_or(&[])
    };
    if timeout.first().is_some_and(|&c| c != 0) {
        ok_if(timeout.contains(&0), ENAMETOOLONG)?;
        ok_if(proto != 0, EINVAL)?;
        // Timeout policies live in nfnetlink_cttimeout, which no namespace here has.
        return Err(ENOENT);
    }
    Ok(())
}

/// `xt_check_proc_name`: the name of a table that gets a /proc file.
fn check_proc_name(name: &[u8]) -> Result<(), i32> {
    let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    ok_if(len != 0, EINVAL)?;
    ok_if(len != name.len(), ENAMETOOLONG)?;
    let name = &name[..len];
    ok_if(
        name != b"." && name != b".." && !name.contains(&b'/'),
        EINVAL,
    )
}

/// `hashlimit_mt_check{,_v1,_v2}` up to the rate checks: the table name, the
/// timers, the size caps (revision 3 keeps the capped values in the rule, as the
/// kernel checks its info in place; older revisions check a copy), masks and mode.
fn hashlimit(rev: u8, family: u8, b: &mut [u8]) -> Result<(), i32> {
    // (name length, offsets of mode, size, max, gc_interval, expire, srcmask)
    let (name_len, mode, size, max, gc, expire, srcmask) = match rev {
        1 => (16, 16, 28, 32, 36, 40, 44),
        _ => (
            255,
            272,
            276,
            280,
            284,
            288,
            if rev == 2 { 292 } else { 296 },
        ),
    };
    check_proc_name(b.get(..name_len).unwrap_or(&[]))?;
    ok_if(u32_at(b, gc) != 0 && u32_at(b, expire) != 0, EINVAL)?;
    const MAX_SIZE: u32 = 1 << 20;
    if rev == 3 {
        for off in [size, max] {
            if u32_at(b, off) > MAX_SIZE {
                if let Some(field) = b.get_mut(off..off + 4) {
                    field.copy_from_slice(&MAX_SIZE.to_ne_bytes());
                }
            }
        }
    }
    let bits = if family == NFPROTO_IPV4 { 32 } else { 128 };
    ok_if(
        u8_at(b, srcmask) <= bits && u8_at(b, srcmask + 1) <= bits,
        EINVAL,
    )?;
    // XT_HASHLIMIT_ALL.
    ok_if(u32_at(b, mode) & !0x7f == 0, EINVAL)
}

/// NF_NAT_RANGE_MAP_IPS.
const MAP_IPS: u32 = 1;

fn checkentry(ext: &Ext, cx: &CheckCx<'_>, b: &mut [u8]) -> Result<(), i32> {
    let fam = cx.family;
    match (ext.target, ext.name) {
        // ---- matches ----
        (false, "tcp") => ok_if(u8_at(b, 11) & !0x0f == 0, EINVAL),
        (false, "udp" | "udplite") => ok_if(u8_at(b, 8) & !0x03 == 0, EINVAL),
        (false, "icmp" | "icmp6") => ok_if(u8_at(b, 3) & !0x01 == 0, EINVAL),
        (false, "multiport") => {
            let flags = u8_at(b, 0);
            let count = u8_at(b, 1);
            let proto_ok = matches!(
                cx.proto,
                IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
            ) && !cx.inv;
            ok_if(proto_ok && flags <= 2 && count <= 15, EINVAL)
        }
        (false, "limit") if ext.family != NFPROTO_BRIDGE => {
            ok_if(limit_ok(u32_at(b, 0), u32_at(b, 4)), ERANGE_)
        }
        (false, "statistic") => ok_if(u16_at(b, 0) <= 1 && u16_at(b, 2) & !1 == 0, EINVAL),
        (false, "quota") => ok_if(u32_at(b, 0) & !1 == 0, EINVAL),
        (false, "cpu") => ok_if(u32_at(b, 4) & !1 == 0, EINVAL),
        (false, "dscp") => ok_if(u8_at(b, 0) <= 0x3f, EDOM),
        (false, "string") => {
            let (from, to) = (u16_at(b, 0), u16_at(b, 2));
            ok_if(from <= to, EINVAL)?;
            ok_if(u8_at(b, 4 + 15) == 0, EINVAL)?;
            let patlen = u8_at(b, 148);
            ok_if(patlen <= 128, EINVAL)?;
            if ext.rev == 1 {
                ok_if(u8_at(b, 149) & !0x03 == 0, EINVAL)?;
            }
            ok_if(patlen != 0, EINVAL)?;
            match cstr_at(b, 4, 16) {
                b"bm" | b"kmp" => Ok(()),
                b"fsm" => ok_if(patlen.is_multiple_of(8), EINVAL),
                _ => Err(ENOENT),
            }
        }
        (false, "addrtype") if ext.rev == 1 => {
            let (src, dst, flags) = (u16_at(b, 0), u16_at(b, 2), u32_at(b, 4));
            // XT_ADDRTYPE_LIMIT_IFACE_IN / _OUT (1 and 2 are the inversions).
            const IN: u32 = 4;
            const OUT: u32 = 8;
            ok_if(!(flags & IN != 0 && flags & OUT != 0), EINVAL)?;
            let pre_in = (1 << NF_INET_PRE_ROUTING) | (1 << NF_INET_LOCAL_IN);
            let post_out = (1 << NF_INET_POST_ROUTING) | (1 << NF_INET_LOCAL_OUT);
            ok_if(!(cx.hook_mask & pre_in != 0 && flags & OUT != 0), EINVAL)?;
            ok_if(!(cx.hook_mask & post_out != 0 && flags & IN != 0), EINVAL)?;
            if fam == NFPROTO_IPV6 {
                let t = src | dst;
                ok_if(
                    t & (1 << 6) == 0 && t < (1 << 8) && t & (1 << 3) == 0,
                    EINVAL,
                )?;
            }
            Ok(())
        }
        (false, "policy") => {
            // `struct xt_policy_info`: four 76-byte elements, then flags and len.
            let (flags, len) = (u16_at(b, 304), u16_at(b, 306));
            const IN: u16 = 1;
            const OUT: u16 = 2;
            let pre_in = (1 << NF_INET_PRE_ROUTING) | (1 << NF_INET_LOCAL_IN);
            let post_out = (1 << NF_INET_POST_ROUTING) | (1 << NF_INET_LOCAL_OUT);
            ok_if(flags & (IN | OUT) != 0, EINVAL)?;
            ok_if(!(cx.hook_mask & pre_in != 0 && flags & OUT != 0), EINVAL)?;
            ok_if(!(cx.hook_mask & post_out != 0 && flags & IN != 0), EINVAL)?;
            ok_if(len <= 4, EINVAL)
        }
        (false, "devgroup") => {
            let flags = u32_at(b, 0);
            const SRC: u32 = 1;
            const DST: u32 = 4;
            let src_hooks =
                (1 << NF_INET_PRE_ROUTING) | (1 << NF_INET_LOCAL_IN) | (1 << NF_INET_FORWARD);
            let dst_hooks =
                (1 << NF_INET_FORWARD) | (1 << NF_INET_LOCAL_OUT) | (1 << NF_INET_POST_ROUTING);
            ok_if(flags & !0x0f == 0, EINVAL)?;
            ok_if(
                !(flags & SRC != 0 && cx.hook_mask & !src_hooks != 0),
                EINVAL,
            )?;
            ok_if(
                !(flags & DST != 0 && cx.hook_mask & !dst_hooks != 0),
                EINVAL,
            )
        }
        (false, "ecn") => {
            let (operation, invert) = (u8_at(b, 0), u8_at(b, 1));
            const MATCH_MASK: u8 = 0xce;
            const ECE_CWR: u8 = 0x10 | 0x20;
            ok_if(
                operation & MATCH_MASK == 0 && invert & MATCH_MASK == 0,
                EINVAL,
            )?;
            ok_if(
                !(operation & ECE_CWR != 0 && (cx.proto != IPPROTO_TCP || cx.inv)),
                EINVAL,
            )
        }
        (false, "u32") => {
            // u32_mt_checkentry(): at most XT_U32_MAXSIZE + 1 tests, locations and
            // values, and no shift by 32 or more. `struct xt_u32`: 11 tests of 180
            // bytes (11 locations of 8: number u32, nextop u8; 11 values of 8; nnums
            // @176, nvalues @177), ntests @1980.
            const MAX: u8 = 11;
            let ntests = u8_at(b, 1980);
            ok_if(ntests <= MAX, EINVAL)?;
            for t in 0..usize::from(ntests) {
                let base = t * 180;
                let nnums = u8_at(b, base + 176);
                ok_if(nnums <= MAX && u8_at(b, base + 177) <= MAX, EINVAL)?;
                for j in 1..usize::from(nnums) {
                    let (number, op) = (u32_at(b, base + 8 * j), u8_at(b, base + 8 * j + 4));
                    // XT_U32_LEFTSH, XT_U32_RIGHTSH
                    ok_if(!(matches!(op, 1 | 2) && number >= 32), EINVAL)?;
                }
            }
            Ok(())
        }
        (false, "recent") => {
            let (seconds, hit_count, check_set) = (u32_at(b, 0), u32_at(b, 4), u8_at(b, 8));
            const SET: u8 = 2;
            const REMOVE: u8 = 8;
            const ACTIONS: u8 = 1 | SET | 4 | REMOVE;
            const MODIFIERS: u8 = 16 | 32;
            const REAP: u8 = 32;
            ok_if(check_set & !(ACTIONS | MODIFIERS) == 0, EINVAL)?;
            ok_if((check_set & ACTIONS).count_ones() == 1, EINVAL)?;
            ok_if(
                !(check_set & (SET | REMOVE) != 0
                    && (seconds != 0 || hit_count != 0 || check_set & MODIFIERS != 0)),
                EINVAL,
            )?;
            ok_if(!(check_set & REAP != 0 && seconds == 0), EINVAL)?;
            // XT_RECENT_MAX_NSTAMPS.
            ok_if(hit_count < 65536, EINVAL)?;
            check_proc_name(b.get(10..210).unwrap_or(&[]))
        }
        (false, "hashlimit") => hashlimit(ext.rev, fam, b),
        (false, "connbytes") => {
            ok_if(u8_at(b, 16) <= 2 && u8_at(b, 17) <= 2, EINVAL)?;
            ct_get(fam)
        }
        (false, "connlabel") => {
            ok_if(u16_at(b, 2) & !0x03 == 0, EINVAL)?;
            ok_if(u16_at(b, 0) < 128, ERANGE_)?;
            ct_get(fam)
        }
        (false, "conntrack" | "state" | "helper" | "connmark" | "cluster" | "connlimit") => {
            ct_get(fam)
        }
        (false, "cgroup") => match ext.rev {
            0 => ok_if(u32_at(b, 4) & !1 == 0, EINVAL),
            _ => {
                let (path, classid) = (u8_at(b, 0), u8_at(b, 1));
                ok_if(
                    !(path != 0 && classid != 0) && (path != 0 || classid != 0),
                    EINVAL,
                )
            }
        },
        // No ipsets or nfacct objects exist in an emulated namespace.
        (false, "set" | "nfacct") => Err(ENOENT),
        (false, "rateest") => {
            let flags = u16_at(b, 32);
            let mode = u16_at(b, 34);
            const ABS: u16 = 1 << 1;
            const REL: u16 = 1 << 2;
            const BPS: u16 = 1 << 4;
            const PPS: u16 = 1 << 5;
            ok_if((flags & (ABS | REL)).count_ones() == 1, EINVAL)?;
            ok_if(flags & (BPS | PPS) != 0, EINVAL)?;
            ok_if((1..=3).contains(&mode), EINVAL)?;
            ok_if((cx.rateest)(cstr_at(b, 0, 16)).is_some(), ENOENT)?;
            if flags & REL != 0 {
                ok_if((cx.rateest)(cstr_at(b, 16, 16)).is_some(), ENOENT)?;
            }
            Ok(())
        }
        // ebtables matches.
        (false, "ip") if fam == NFPROTO_BRIDGE => {
            ok_if(eth_is(cx, 0x0800) && !cx.inv, EINVAL)?;
            let (proto, bitmask, inv) = (u16::from(u8_at(b, 17)), u8_at(b, 18), u8_at(b, 19));
            // EBT_IP_MASK covers every bit.
            const PROTO: u8 = 0x08;
            const SPORT: u8 = 0x10;
            const DPORT: u8 = 0x20;
            const ICMP: u8 = 0x40;
            const IGMP: u8 = 0x80;
            if bitmask & (SPORT | DPORT) != 0 {
                ok_if(inv & PROTO == 0, EINVAL)?;
                ok_if(
                    matches!(
                        proto,
                        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP
                    ),
                    EINVAL,
                )?;
            }
            ok_if(
                !(bitmask & DPORT != 0 && u16_at(b, 24) > u16_at(b, 26)),
                EINVAL,
            )?;
            ok_if(
                !(bitmask & SPORT != 0 && u16_at(b, 20) > u16_at(b, 22)),
                EINVAL,
            )?;
            if bitmask & ICMP != 0 {
                ok_if(inv & PROTO == 0 && proto == IPPROTO_ICMP, EINVAL)?;
                ok_if(
                    u8_at(b, 20) <= u8_at(b, 21) && u8_at(b, 24) <= u8_at(b, 25),
                    EINVAL,
                )?;
            }
            if bitmask & IGMP != 0 {
                ok_if(inv & PROTO == 0 && proto == IPPROTO_IGMP, EINVAL)?;
                ok_if(u8_at(b, 20) <= u8_at(b, 21), EINVAL)?;
            }
            Ok(())
        }
        (false, "ip6") if fam == NFPROTO_BRIDGE => {
            ok_if(eth_is(cx, 0x86dd) && !cx.inv, EINVAL)?;
            let (proto, bitmask, inv) = (u16::from(u8_at(b, 65)), u8_at(b, 66), u8_at(b, 67));
            ok_if(bitmask & !0x7f == 0 && inv & !0x7f == 0, EINVAL)?;
            const PROTO: u8 = 0x08;
            const SPORT: u8 = 0x10;
            const DPORT: u8 = 0x20;
            const ICMP6: u8 = 0x40;
            if bitmask & (SPORT | DPORT) != 0 {
                ok_if(inv & PROTO == 0, EINVAL)?;
                ok_if(
                    matches!(
                        proto,
                        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP
                    ),
                    EINVAL,
                )?;
            }
            ok_if(
                !(bitmask & DPORT != 0 && u16_at(b, 72) > u16_at(b, 74)),
                EINVAL,
            )?;
            ok_if(
                !(bitmask & SPORT != 0 && u16_at(b, 68) > u16_at(b, 70)),
                EINVAL,
            )?;
            if bitmask & ICMP6 != 0 {
                ok_if(inv & PROTO == 0 && proto == IPPROTO_ICMPV6, EINVAL)?;
                ok_if(
                    u8_at(b, 68) <= u8_at(b, 69) && u8_at(b, 72) <= u8_at(b, 73),
                    EINVAL,
                )?;
            }
            Ok(())
        }
        (false, "arp") if fam == NFPROTO_BRIDGE => {
            ok_if(
                (eth_is(cx, 0x0806) || eth_is(cx, 0x8035)) && !cx.inv,
                EINVAL,
            )?;
            Ok(())
        }
        (false, "vlan") if fam == NFPROTO_BRIDGE => {
            ok_if(eth_is(cx, 0x8100), EINVAL)?;
            let bitmask = u8_at(b, 6);
            ok_if(bitmask & !0x07 == 0 && u8_at(b, 7) & !0x07 == 0, EINVAL)?;
            if bitmask & 0x01 != 0 {
                let id = u16_at(b, 0);
                if id != 0 {
                    ok_if(id <= 4096, EINVAL)?;
                    b[6] &= !0x02;
                }
            }
            if b[6] & 0x02 != 0 {
                ok_if(u8_at(b, 2) <= 7, EINVAL)?;
            }
            if bitmask & 0x04 != 0 {
                ok_if(u16::from_be_bytes([u8_at(b, 4), u8_at(b, 5)]) >= 60, EINVAL)?;
            }
            Ok(())
        }
        (false, "802_3") if fam == NFPROTO_BRIDGE => {
            ok_if(u8_at(b, 4) & !0x07 == 0 && u8_at(b, 5) & !0x07 == 0, EINVAL)
        }
        (false, "mark_m") => {
            let bm = u8_at(b, 17);
            ok_if(bm & !0x03 == 0 && bm != 0x03 && bm != 0, EINVAL)
        }
        (false, "pkttype") if ext.family == NFPROTO_BRIDGE => ok_if(u8_at(b, 1) <= 1, EINVAL),
        (false, "limit") => ok_if(limit_ok(u32_at(b, 0), u32_at(b, 4)), EINVAL),

        // ---- targets ----
        (true, "ECN") => {
            // ecn_tg_check(): no match operation bits (IPT_ECN_OP_MASK), ip_ect within
            // IPT_ECN_IP_MASK, and the TCP operations only on `-p tcp` rules.
            let (operation, ip_ect) = (u8_at(b, 0), u8_at(b, 1));
            ok_if(operation & 0xce == 0 && ip_ect & !0x03 == 0, EINVAL)?;
            ok_if(
                !(operation & 0x30 != 0 && (cx.proto != IPPROTO_TCP || cx.inv)),
                EINVAL,
            )
        }
        (true, "RATEEST") => rateest_target(cx, b),
        (true, "REJECT") if fam == NFPROTO_IPV4 => match u32_at(b, 0) {
            4 => Err(EINVAL),
            7 => ok_if(cx.proto == IPPROTO_TCP && !cx.inv, EINVAL),
            _ => Ok(()),
        },
        (true, "REJECT") if fam == NFPROTO_IPV6 => match u32_at(b, 0) {
            5 => Err(EINVAL),
            6 => ok_if(cx.proto == IPPROTO_TCP && !cx.inv, EINVAL),
            _ => Ok(()),
        },
        (true, "LOG") => {
            ok_if(fam == NFPROTO_IPV4 || fam == NFPROTO_IPV6, EINVAL)?;
            ok_if(u8_at(b, 0) < 8, EINVAL)?;
            ok_if(u8_at(b, 31) == 0, EINVAL)
        }
        (true, "NFLOG") => {
            ok_if(u16_at(b, 8) & !0x01 == 0, EINVAL)?;
            ok_if(u8_at(b, 75) == 0, EINVAL)
        }
        (true, "MASQUERADE") if fam == NFPROTO_IPV4 => {
            ok_if(u32_at(b, 4) & MAP_IPS == 0, EINVAL)?;
            ok_if(u32_at(b, 0) == 1, EINVAL)?;
            ct_get(fam)
        }
        (true, "MASQUERADE") => {
            ok_if(u32_at(b, 0) & MAP_IPS == 0, EINVAL)?;
            ct_get(fam)
        }
        (true, "REDIRECT") if fam == NFPROTO_IPV4 => {
            ok_if(u32_at(b, 4) & MAP_IPS == 0, EINVAL)?;
            ok_if(u32_at(b, 0) == 1, EINVAL)?;
            ct_get(fam)
        }
        (true, "REDIRECT") => {
            ok_if(u32_at(b, 0) & MAP_IPS == 0, EINVAL)?;
            ct_get(fam)
        }
        (true, "NETMAP") if fam == NFPROTO_IPV4 => {
            ok_if(u32_at(b, 4) & MAP_IPS != 0, EINVAL)?;
            ok_if(u32_at(b, 0) == 1, EINVAL)?;
            ct_get(fam)
        }
        (true, "NETMAP") => {
            ok_if(u32_at(b, 0) & MAP_IPS != 0, EINVAL)?;
            ct_get(fam)
        }
        (true, "SNAT" | "DNAT") => {
            if ext.rev == 0 {
                ok_if(u32_at(b, 0) == 1, EINVAL)?;
            }
            ct_get(fam)
        }
        (true, "SYNPROXY") => {
            ok_if(cx.proto == IPPROTO_TCP && !cx.inv, EINVAL)?;
            ct_get(fam)
        }
        (true, "CONNMARK" | "CONNSECMARK") => ct_get(fam),
        (true, "CT") => ct_target(ext.rev, cx, b),
        (true, "TPROXY") => ok_if(
            (cx.proto == IPPROTO_TCP || cx.proto == IPPROTO_UDP) && !cx.inv,
            EINVAL,
        ),
        (true, "DNPT" | "SNPT") => {
            let (slen, dlen) = (u8_at(b, 32), u8_at(b, 33));
            ok_if(slen <= 64 && dlen <= 64, EINVAL)?;
            let masked = |off: usize, len: u8| {
                (0..16).all(|i| {
                    let bits = (u32::from(len)).saturating_sub(i as u32 * 8).min(8);
                    let keep = if bits == 0 { 0u8 } else { 0xffu8 << (8 - bits) };
                    u8_at(b, off + i) & !keep == 0
                })
            };
            ok_if(masked(0, slen) && masked(16, dlen), EINVAL)
        }
        (true, "TCPMSS") => {
            let ok_hooks =
                (1 << NF_INET_FORWARD) | (1 << NF_INET_LOCAL_OUT) | (1 << NF_INET_POST_ROUTING);
            ok_if(
                !(u16_at(b, 0) == 0xffff && cx.hook_mask & !ok_hooks != 0),
                EINVAL,
            )
        }
        (true, "TTL" | "HL") => {
            let (mode, v) = (u8_at(b, 0), u8_at(b, 1));
            ok_if(mode <= 2 && !(mode != 0 && v == 0), EINVAL)
        }
        (true, "DSCP") => ok_if(u8_at(b, 0) <= 0x3f, EDOM),
        (true, "NFQUEUE") if ext.rev >= 1 => {
            let (num, total) = (u32::from(u16_at(b, 0)), u32::from(u16_at(b, 2)));
            ok_if(total != 0, EINVAL)?;
            ok_if(total - 1 + num <= 0xffff, ERANGE_)?;
            let flags = u16_at(b, 4);
            ok_if(!(ext.rev == 2 && flags > 1), EINVAL)?;
            ok_if(!(ext.rev == 3 && flags & !0x03 != 0), EINVAL)
        }
        (true, "AUDIT") => ok_if(u8_at(b, 0) <= 2, ERANGE_),
        (true, "CHECKSUM") => {
            let op = u8_at(b, 0);
            ok_if(op & !0x01 == 0 && op != 0, EINVAL)
        }
        (true, "SECMARK") => {
            ok_if(cx.table == "mangle" || cx.table == "security", EINVAL)?;
            ok_if(u8_at(b, 0) == 1, EINVAL)?;
            // No LSM here turns a context into a secid.
            Err(ENOENT)
        }
        (true, "SET") => {
            const INVALID: u16 = 0xffff;
            let idx: &[usize] = match ext.rev {
                0 => &[0, 32],
                1 | 2 => &[0, 4],
                _ => &[0, 4, 8],
            };
            ok_if(idx.iter().all(|&o| u16_at(b, o) == INVALID), ENOENT)
        }
        // ebtables targets (no base-chain bit in the nft hook mask, so RETURN is fine).
        (true, "dnat") => {
            let hm = cx.hook_mask;
            let nat_ok = cx.table == "nat"
                && hm & !((1 << NF_INET_PRE_ROUTING) | (1 << NF_INET_LOCAL_OUT)) == 0;
            let broute_ok = cx.table == "broute" && hm & !(1 << 5) == 0;
            ok_if(nat_ok || broute_ok, EINVAL)?;
            ok_if(ebt_valid_verdict(i32_at(b, 8)), EINVAL)
        }
        (true, "redirect") => {
            let hm = cx.hook_mask;
            let nat_ok = cx.table == "nat" && hm & !(1 << NF_INET_PRE_ROUTING) == 0;
            let broute_ok = cx.table == "broute" && hm & !(1 << 5) == 0;
            ok_if(nat_ok || broute_ok, EINVAL)?;
            ok_if(ebt_valid_verdict(i32_at(b, 0)), EINVAL)
        }
        (true, "snat") => {
            let t = i32_at(b, 8);
            ok_if(ebt_valid_verdict(t | !0xf), EINVAL)?;
            ok_if(((t | 0xf) & !0x10) == !0x10, EINVAL)
        }
        (true, "mark") if fam == NFPROTO_BRIDGE => {
            let t = i32_at(b, 8);
            ok_if(ebt_valid_verdict(t | !0xf), EINVAL)?;
            let op = (t & !0xf) as u32;
            ok_if(
                matches!(op, 0xffff_fff0 | 0xffff_ffe0 | 0xffff_ffd0 | 0xffff_ffc0),
                EINVAL,
            )
        }
        (true, "arpreply") => {
            ok_if(eth_is(cx, 0x0806) && !cx.inv, EINVAL)?;
            ok_if(ebt_valid_verdict(i32_at(b, 8)), EINVAL)
        }
        (true, "log") => {
            ok_if(u32_at(b, 32) & !0x0b == 0, EINVAL)?;
            ok_if(u8_at(b, 0) < 8, EINVAL)?;
            b[30] = 0;
            Ok(())
        }
        (true, "nflog") => {
            ok_if(u16_at(b, 8) == 0, EINVAL)?;
            b[75] = 0;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `nft_match_validate` / `nft_target_validate` for a base chain (`hook`, chain type).
pub fn validate(ext: &Ext, family: u8, hook: u32, chain_type: &str) -> Result<(), i32> {
    if ext.hooks != 0 && (1 << hook) & ext.hooks == 0 {
        return Err(EINVAL);
    }
    if ext.table == Some("nat") {
        let want = if family == NFPROTO_BRIDGE {
            "filter"
        } else {
            "nat"
        };
        if chain_type != want {
            return Err(EINVAL);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions() {
        assert_eq!(find_revision(NFPROTO_IPV4, b"string", 0, false), Err(93));
        assert_eq!(find_revision(NFPROTO_IPV4, b"string", 1, false), Ok(1));
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"nosuch", 0, false),
            Err(ENOENT)
        );
        assert!(find(NFPROTO_BRIDGE, b"802_3", 0, false).is_some());
        assert!(find(NFPROTO_ARP, b"owner", 1, false).is_none());
    }

    #[test]
    fn limit_credits() {
        assert!(limit_ok(10000, 5));
        assert!(!limit_ok(10000, 0));
    }

    /// A RATEEST target shares an existing estimator only with its exact, given
    /// parameters; a new one needs gen_new_estimator()'s bounds and a terminated name.
    #[test]
    fn rateest_target_parameters() {
        let info = |name: &[u8], interval: i8, ewma: u8| {
            let mut b = vec![0u8; 24];
            b[..name.len()].copy_from_slice(name);
            (b[16], b[17]) = (interval as u8, ewma);
            b
        };
        let check = |existing: Option<(i8, u8)>, b: &[u8]| {
            let lookup = move |n: &[u8]| (n == b"RE1").then_some(existing).flatten();
            let cx = CheckCx {
                family: NFPROTO_IPV4,
                table: "filter",
                hook_mask: 0,
                proto: 0,
                inv: false,
                rateest: &lookup,
            };
            rateest_target(&cx, b)
        };
        assert_eq!(check(Some((-2, 1)), &info(b"RE1", -2, 1)), Ok(()));
        assert_eq!(check(Some((-2, 1)), &info(b"RE1", -1, 1)), Err(EINVAL));
        assert_eq!(check(Some((0, 0)), &info(b"RE1", 0, 0)), Err(EINVAL));
        assert_eq!(check(None, &info(b"RE1", 3, 30)), Ok(()));
        assert_eq!(check(None, &info(b"RE1", 4, 2)), Err(EINVAL));
        assert_eq!(check(None, &info(b"RE1", -3, 2)), Err(EINVAL));
        assert_eq!(check(None, &info(b"RE1", 0, 0)), Err(EINVAL));
        assert_eq!(check(None, &info(b"RE1", 0, 31)), Err(EINVAL));
        assert_eq!(check(None, &info(&[b'x'; 16], 0, 2)), Err(ENAMETOOLONG));
    }
}
