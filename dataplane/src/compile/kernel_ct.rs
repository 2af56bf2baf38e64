//! Whether the kernel would have connection tracking on, per IP version, for the
//! namespace's ruleset. nf_conntrack registers its hooks in a namespace only while
//! something holds nf_ct_netns_get() for that family: in nf_tables the `ct` expression
//! (every key, get and set), ct helper/timeout/expectation objects, connlimit, NAT,
//! masquerade, redirect, synproxy and flow offload; in nft_compat the checkentry of
//! conntrack, state, connmark, CONNMARK, connbytes, connlabel, connlimit, helper,
//! cluster, CT (not `--notrack`), CONNSECMARK, SYNPROXY and the NAT targets. An inet
//! table holds both versions; a bridge one both as well (nf_ct_netns_get(NFPROTO_BRIDGE)
//! takes the inet hooks too). Rules hold it from their creation, whatever chain or
//! table state: dormant tables and unreachable regular chains count.
//!
//! Conservative where the kernel's answer is not certain (netdev and arp tables with
//! such expressions, `objref`, `dynset`, sets with stateful expressions): they count
//! as tracking both versions. A caller that needs "off" gets it only when nothing of
//! the kind is in the ruleset.

use netlink_proto::consts::{
    NFPROTO_IPV4, NFPROTO_IPV6, NFTA_MATCH_NAME, NFTA_TARGET_NAME, NFT_OBJECT_CONNLIMIT,
    NFT_OBJECT_CT_EXPECT, NFT_OBJECT_CT_HELPER, NFT_OBJECT_CT_TIMEOUT, NFT_OBJECT_SYNPROXY,
};
use nftshim_engine::view::{Expr, Rule, Table};
use nftshim_engine::RulesetView;

use super::rule::{V4, V6};

/// nf_tables expressions whose init takes nf_ct_netns_get() (or may: `objref`,
/// `dynset` reach objects and set expressions of any kind).
const NFT_EXPRS: &[&str] = &[
    "ct",
    "connlimit",
    "nat",
    "masq",
    "redir",
    "synproxy",
    "flow_offload",
    "notrack",
    "objref",
    "dynset",
];

/// xtables extensions whose checkentry takes nf_ct_netns_get().
const XT_EXTS: &[&str] = &[
    "conntrack",
    "state",
    "connmark",
    "CONNMARK",
    "connbytes",
    "connlabel",
    "connlimit",
    "helper",
    "cluster",
    "CT",
    "NOTRACK",
    "CONNSECMARK",
    "SYNPROXY",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
    "NETMAP",
    "ipvs",
];

/// Whether one expression turns tracking on.
fn tracks(e: &Expr) -> bool {
    let name_attr = match e.name.as_str() {
        "match" => NFTA_MATCH_NAME,
        "target" => NFTA_TARGET_NAME,
        other => return NFT_EXPRS.contains(&other),
    };
    e.data
        .iter()
        .find(|a| a.id() == name_attr)
        .and_then(|a| std::str::from_utf8(a.str_bytes()).ok())
        // An unreadable name: assume the worst.
        .is_none_or(|n| XT_EXTS.contains(&n))
}

/// Whether one rule turns tracking on.
pub fn rule_tracks(r: &Rule) -> bool {
    r.exprs.iter().any(tracks)
}

/// The IP versions (`V4 | V6` bits) the kernel would track connections of.
pub fn versions(view: &RulesetView<'_>) -> u8 {
    versions_with(view, |t| {
        t.chains
            .iter()
            .flat_map(|c| &c.rules)
            .any(|r| rule_tracks(r))
    })
}

/// [`versions`], with `rules_track` telling whether a rule of a table turns tracking on
/// (an earlier scan knows).
pub fn versions_with(view: &RulesetView<'_>, rules_track: impl Fn(&Table) -> bool) -> u8 {
    let mut on = 0;
    for t in view.tables() {
        let versions = match u32::from(t.family) {
            NFPROTO_IPV4 => V4,
            NFPROTO_IPV6 => V6,
            _ => V4 | V6,
        };
        if on & versions == versions {
            continue;
        }
        let objects = t.objects.iter().any(|o| {
            matches!(
                o.obj_type,
                NFT_OBJECT_CT_HELPER
                    | NFT_OBJECT_CT_TIMEOUT
                    | NFT_OBJECT_CT_EXPECT
                    | NFT_OBJECT_CONNLIMIT
                    | NFT_OBJECT_SYNPROXY
            )
        });
        let sets = t
            .sets
            .iter()
            .any(|s| !s.exprs.is_empty() || s.elems.iter().any(|e| !e.exprs.is_empty()));
        if objects || sets || rules_track(t) {
            on |= versions;
        }
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_proto::attr::Attr;

    fn expr(name: &str, ext: Option<&str>) -> Expr {
        let data = match (name, ext) {
            ("match", Some(n)) => vec![Attr::strz(NFTA_MATCH_NAME, n)],
            ("target", Some(n)) => vec![Attr::strz(NFTA_TARGET_NAME, n)],
            _ => Vec::new(),
        };
        Expr {
            name: name.into(),
            data,
        }
    }

    #[test]
    fn the_expressions_that_take_nf_ct_netns_get() {
        assert!(tracks(&expr("ct", None)));
        assert!(tracks(&expr("nat", None)));
        assert!(tracks(&expr("match", Some("state"))));
        assert!(tracks(&expr("target", Some("CONNSECMARK"))));
        assert!(tracks(&expr("target", Some("CT"))));
        // hmark_tg_check() takes nothing: HMARK alone leaves tracking off.
        assert!(!tracks(&expr("target", Some("HMARK"))));
        assert!(!tracks(&expr("match", Some("mark"))));
        assert!(!tracks(&expr("match", Some("socket"))));
        assert!(!tracks(&expr("payload", None)));
        assert!(!tracks(&expr("meta", None)));
    }
}
