//! HMARK `--hmark-tuple ct` is a no-op exactly when the kernel would track no
//! connection of the rule's family (dataplane/src/compile/xt/hmark.rs,
//! kernel_ct.rs): accepted then, refused as soon as anything in the ruleset (any
//! table, dormant ones too) turns tracking on for that family.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use nftshim_dataplane::compile::decompile;
use nftshim_engine::Netns;
use serde_json::{json, Value};

fn hex(attrs: &[Attr]) -> String {
    let mut out = Vec::new();
    for a in attrs {
        a.emit(&mut out);
    }
    out.iter().map(|b| format!("{b:02x}")).collect()
}

fn compat(kind: &str, name: &str, rev: u32, info: Vec<u8>) -> Value {
    let (n, r, i) = if kind == "match" {
        (NFTA_MATCH_NAME, NFTA_MATCH_REV, NFTA_MATCH_INFO)
    } else {
        (NFTA_TARGET_NAME, NFTA_TARGET_REV, NFTA_TARGET_INFO)
    };
    json!({ "name": kind, "data": hex(&[
        Attr::strz(n, name),
        Attr::u32_be(r, rev),
        Attr::new(i, info),
    ]) })
}

/// `-j HMARK --hmark-tuple ct --hmark-mod 42`.
fn hmark_ct() -> Value {
    let mut info = vec![0u8; 60];
    info[40..44].copy_from_slice(&(1u32 << 12).to_ne_bytes());
    info[52..56].copy_from_slice(&42u32.to_ne_bytes());
    compat("target", "HMARK", 0, info)
}

/// `-m state --state NEW` (struct xt_state_info: statemask u32).
fn state_new() -> Value {
    compat("match", "state", 0, 8u32.to_ne_bytes().to_vec())
}

/// A table of `family` with a FORWARD filter chain holding these rules.
fn table(family: u32, name: &str, handle: u64, flags: u32, rules: Vec<Vec<Value>>) -> Value {
    let rules: Vec<Value> = rules
        .into_iter()
        .enumerate()
        .map(|(i, exprs)| {
            json!({ "handle": handle * 100 + i as u64, "exprs": exprs, "udata": null, "compat": null })
        })
        .collect();
    json!({
        "family": family, "flags": flags, "flowtables": [], "handle": handle,
        "name": name, "owner": 0, "sets": [], "udata": null, "objects": [],
        "chains": [{
            "base": { "chain_type": "filter", "counters": null, "devices": [],
                      "hooknum": 2, "policy": 1, "priority": 0 },
            "bound": false, "flags": 1, "handle": handle * 10, "name": "FORWARD",
            "rules": rules
        }]
    })
}

fn accepted(tables: Vec<Value>) -> bool {
    let state = json!({
        "counters": { "chain_id": 0, "hgen": { "1": 1000 }, "table_handle": 10 },
        "genid": 2,
        "validate_sticky": false,
        "ruleset": { "tables": tables }
    });
    let ns = Netns::from_persisted(state).expect("engine state");
    let ok = decompile(&ns.view());
    if let Err(e) = &ok {
        assert!(
            e.to_string().contains("HMARK"),
            "refused for another reason: {e}"
        );
    }
    ok.is_ok()
}

#[test]
fn ct_tuple_is_a_no_op_only_where_the_family_is_not_tracked() {
    let ip = NFPROTO_IPV4;
    let ip6 = NFPROTO_IPV6;
    // Nothing tracks: accepted.
    assert!(accepted(vec![table(
        ip,
        "filter",
        1,
        0,
        vec![vec![hmark_ct()]]
    )]));
    // A state match in the same family, even in a dormant table: refused.
    assert!(!accepted(vec![table(
        ip,
        "filter",
        1,
        0,
        vec![vec![hmark_ct()], vec![state_new()]]
    )]));
    assert!(!accepted(vec![
        table(ip, "filter", 1, 0, vec![vec![hmark_ct()]]),
        table(ip, "other", 2, NFT_TABLE_F_DORMANT, vec![vec![state_new()]]),
    ]));
    // Tracking IPv6 only leaves IPv4's HMARK a no-op, and the other way round.
    assert!(accepted(vec![
        table(ip, "filter", 1, 0, vec![vec![hmark_ct()]]),
        table(ip6, "filter", 2, 0, vec![vec![state_new()]]),
    ]));
    assert!(accepted(vec![
        table(ip, "filter", 1, 0, vec![vec![state_new()]]),
        table(ip6, "filter", 2, 0, vec![vec![hmark_ct()]]),
    ]));
    // An nft `ct` expression in an inet table tracks both.
    let ct_state = json!({ "name": "ct", "data": hex(&[
        Attr::u32_be(NFTA_CT_KEY, 0),
        Attr::u32_be(NFTA_CT_DREG, 1),
    ]) });
    assert!(!accepted(vec![
        table(ip6, "filter", 1, 0, vec![vec![hmark_ct()]]),
        table(
            NFPROTO_INET,
            "t",
            2,
            NFT_TABLE_F_DORMANT,
            vec![vec![ct_state]]
        ),
    ]));
}
