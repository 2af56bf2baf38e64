//! `-m recent` (net/netfilter/xt_recent.c): refused by the eBPF data plane, with a
//! reason naming the mode and the list. What enforcing it exactly takes (checked
//! against the 6.18 kernel here; docs/xt_recent.md has the details and a design):
//!
//! - A list is per network namespace and per NAME only: ip and ip6 rules of one name
//!   share it (entries keyed by family and masked address), and its mask is the one of
//!   the rule that created it (later rules' `--mask` is ignored).
//! - It lives while any rule of that name exists: nft_compat runs checkentry for the
//!   new rules before the old ones are destroyed, so `iptables-restore` of the same
//!   rules keeps its entries; deleting the last rule empties it. A rule whose
//!   `--hitcount` needs more stamps than the list keeps flushes it when added.
//! - At most ip_list_tot (100 here) entries, the least recently set or updated one
//!   evicted; `--reap` removes that same oldest entry when it is stale.
//! - Time is jiffies (HZ 250 here), the `--seconds` window `time_after()` on them.
//! - Each evaluation has side effects (set, update, remove, reap), so the match must
//!   run exactly where the kernel runs it: after the rule's earlier matches, before
//!   its later ones, once per packet and hook; TTL (`--rttl`) is counted one higher
//!   when the packet has an output device and no socket of the namespace.
//!
//! The data plane keeps no such per-namespace, per-name state shared by its programs,
//! so every mode is refused; no mode's answer is independent of that state.

use netlink_proto::xt::{strnlen, Blob};

/// XT_RECENT_CHECK, _SET, _UPDATE, _REMOVE (uapi xt_recent.h).
const MODES: [(u8, &str); 4] = [
    (1, "--rcheck"),
    (2, "--set"),
    (4, "--update"),
    (8, "--remove"),
];

/// `struct xt_recent_mtinfo{,_v1}`: seconds u32 @0, hit_count u32 @4, check_set u8 @8,
/// invert u8 @9, name [200] @10, side u8 @210 (then v1's mask).
pub fn recent(b: Blob<'_>) -> Result<super::Decompiled, String> {
    let check_set = b.u8(8);
    let mode = MODES
        .iter()
        .find(|(bit, _)| check_set & bit != 0)
        .map_or("without a mode", |(_, option)| option);
    let name = b.bytes(10, 200);
    let name = String::from_utf8_lossy(&name[..strnlen(&name)]);
    Err(format!(
        "xt match recent {mode} (list {name}) is not supported by the eBPF data plane \
         (its lists are per-namespace state shared by every rule of that name, ip and \
         ip6 alike, kept across rule replacements, with LRU eviction and jiffies \
         timestamps; the data plane keeps no such state)"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{decompile_match, Decompiled};
    use crate::compile::{Family, Hook};

    /// A revision-1 blob as iptables-nft sends `-m recent`.
    fn recent(family: Family, check_set: u8, name: &str) -> Result<Decompiled, String> {
        let mut info = vec![0u8; 232];
        info[4..8].copy_from_slice(&8u32.to_ne_bytes());
        info[8] = check_set;
        info[10..10 + name.len()].copy_from_slice(name.as_bytes());
        info[210] = 1; // XT_RECENT_SOURCE
        info[212..228].fill(0xff);
        let cx = super::super::tests::cx(family, Hook::Input, None);
        decompile_match(&cx, &super::super::tests::xt_match("recent", 1, info))
    }

    #[test]
    fn every_mode_is_refused_naming_it_and_the_list() {
        for (check_set, option) in [
            (1, "--rcheck"),
            (2, "--set"),
            (4 | 16, "--update"),
            (8, "--remove"),
        ] {
            for family in [Family::Ip, Family::Ip6] {
                let why = recent(family, check_set, "foo").unwrap_err();
                assert!(
                    why.starts_with(&format!("xt match recent {option} (list foo)")),
                    "{why}"
                );
            }
        }
    }

    #[test]
    fn revision_0_is_refused_too() {
        let mut info = vec![0u8; 216];
        info[8] = 2;
        info[10..17].copy_from_slice(b"DEFAULT");
        let cx = super::super::tests::cx(Family::Ip, Hook::Output, None);
        let why =
            decompile_match(&cx, &super::super::tests::xt_match("recent", 0, info)).unwrap_err();
        assert!(
            why.starts_with("xt match recent --set (list DEFAULT)"),
            "{why}"
        );
    }
}
