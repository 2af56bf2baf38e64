//! CONNSECMARK is accepted as a no-op (dataplane/src/compile/xt/connsecmark.rs) only
//! because nothing in an nftshimd namespace can set a secmark. These rulesets put
//! CONNSECMARK next to each way nf_tables has of setting one (xt SECMARK, `meta secmark
//! set`, a secmark object through `objref`, `ct secmark set`): each must be refused.
//! If one ever becomes enforced, CONNSECMARK must become a real copy first.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use nftshim_dataplane::compile::{decompile, kernel_ct};
use nftshim_engine::Netns;
use serde_json::{json, Value};

fn hex(attrs: &[Attr]) -> String {
    let mut out = Vec::new();
    for a in attrs {
        a.emit(&mut out);
    }
    out.iter().map(|b| format!("{b:02x}")).collect()
}

fn expr(name: &str, attrs: &[Attr]) -> Value {
    json!({ "name": name, "data": hex(attrs) })
}

fn target(name: &str, rev: u32, info: Vec<u8>) -> Value {
    expr(
        "target",
        &[
            Attr::strz(NFTA_TARGET_NAME, name),
            Attr::u32_be(NFTA_TARGET_REV, rev),
            Attr::new(NFTA_TARGET_INFO, info),
        ],
    )
}

/// `-j CONNSECMARK --save` (struct xt_connsecmark_target_info: mode 1).
fn connsecmark() -> Value {
    target("CONNSECMARK", 0, vec![1, 0, 0, 0, 0, 0, 0, 0])
}

/// An ip table "mangle" with one PREROUTING chain holding these rules (one expression
/// list each), and a secmark object "s".
fn state(rules: Vec<Vec<Value>>) -> Value {
    let rules: Vec<Value> = rules
        .into_iter()
        .enumerate()
        .map(|(i, exprs)| {
            json!({ "handle": i as u64 + 2, "exprs": exprs, "udata": null, "compat": null })
        })
        .collect();
    json!({
        "counters": { "chain_id": 0, "hgen": { "1": 20 }, "table_handle": 1 },
        "genid": 2,
        "validate_sticky": false,
        "ruleset": { "tables": [{
            "family": NFPROTO_IPV4, "flags": 0, "flowtables": [], "handle": 1,
            "name": "mangle", "owner": 0, "sets": [], "udata": null,
            "objects": [{
                "name": "s", "handle": 15, "obj_type": NFT_OBJECT_SECMARK,
                "data": hex(&[Attr::strz(NFTA_SECMARK_CTX, "system_u:object_r:x_t:s0")]),
                "udata": null
            }],
            "chains": [{
                "base": { "chain_type": "filter", "counters": null, "devices": [],
                          "hooknum": 0, "policy": 1, "priority": -150 },
                "bound": false, "flags": 1, "handle": 1, "name": "PREROUTING",
                "rules": rules
            }]
        }]}
    })
}

fn load(rules: Vec<Vec<Value>>) -> Netns {
    Netns::from_persisted(state(rules)).expect("engine state")
}

#[test]
fn connsecmark_is_a_no_op_that_turns_tracking_on() {
    let ns = load(vec![vec![connsecmark()]]);
    let view = ns.view();
    let program = decompile(&view).expect("CONNSECMARK is accepted");
    // Nothing to do: no match, no statement (the rule may be left out altogether).
    assert!(program.chains[0]
        .rules
        .iter()
        .all(|r| r.matches.is_empty() && r.statements.is_empty()));
    // connsecmark_tg_check() takes nf_ct_netns_get(NFPROTO_IPV4): the programs track.
    assert_eq!(kernel_ct::versions(&view), 1);
    assert_ne!(program.kernel_conntrack, 0);
}

#[test]
fn secmark_setters_stay_refused_next_to_connsecmark() {
    let immediate = expr(
        "immediate",
        &[
            Attr::u32_be(NFTA_IMMEDIATE_DREG, 1),
            Attr::nested(
                NFTA_IMMEDIATE_DATA,
                &[Attr::new(NFTA_DATA_VALUE, 7u32.to_ne_bytes().to_vec())],
            ),
        ],
    );
    let mut secmark_info = vec![0u8; 264];
    secmark_info[0] = 1; // SECMARK_MODE_SEL
    secmark_info[8..15].copy_from_slice(b"x_t:s0\0");
    let setters: Vec<(&str, Vec<Value>)> = vec![
        (
            "xt SECMARK rev 0",
            vec![target("SECMARK", 0, secmark_info.clone())],
        ),
        ("xt SECMARK rev 1", vec![target("SECMARK", 1, secmark_info)]),
        (
            "meta secmark set",
            vec![
                immediate.clone(),
                expr(
                    "meta",
                    &[
                        Attr::u32_be(NFTA_META_KEY, NFT_META_SECMARK),
                        Attr::u32_be(NFTA_META_SREG, 1),
                    ],
                ),
            ],
        ),
        (
            "meta secmark set (object)",
            vec![expr(
                "objref",
                &[
                    Attr::u32_be(NFTA_OBJREF_IMM_TYPE, NFT_OBJECT_SECMARK),
                    Attr::strz(NFTA_OBJREF_IMM_NAME, "s"),
                ],
            )],
        ),
        (
            "ct secmark set",
            vec![
                immediate,
                expr(
                    "ct",
                    &[
                        Attr::u32_be(NFTA_CT_KEY, NFT_CT_SECMARK),
                        Attr::u32_be(NFTA_CT_SREG, 1),
                    ],
                ),
            ],
        ),
    ];
    for (what, setter) in setters {
        let ns = load(vec![setter, vec![connsecmark()]]);
        let got = decompile(&ns.view());
        let Err(e) = got else {
            panic!("{what} is accepted by the eBPF data plane: CONNSECMARK is no longer a no-op");
        };
        // Refused for the setter (handle 2), not for CONNSECMARK (handle 3).
        let e = e.to_string();
        assert!(e.contains("(handle 2)"), "{what}: {e}");
    }
}
