//! Maps and verdict maps, compiled by expansion: a rule that looks its key up in a map,
//! `... KEY vmap { k1 : v1, k2 : v2 }` or `meta mark set KEY map { k1 : d1, ... }`,
//! becomes one rule per element, `... KEY == k1 <v1>`, with the element's data put
//! where the lookup would have put it (an `immediate` into the same register).
//!
//! This is exact because a map's keys are distinct and its intervals do not overlap:
//! a packet's key is in at most one element, so at most one of the element rules can
//! match it, as the lookup finds at most one element; a key in none of them matches
//! none of the rules, as the lookup ends the rule (NFT_BREAK). The expanded rules then
//! go through the ordinary decompiler, so LBVS indexes the keys like any other match.
//! Element changes are commits, which recompile. A verdict ends the rule at the lookup:
//! the expressions after a vmap (`... vmap { ... } counter`) run for `continue`
//! elements only.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use nftshim_engine::view::{ElemData, Expr, Rule, RulesetView, Table};

use super::sets;

/// The position of the rule's map lookup (a lookup with a destination register).
fn map_lookup(exprs: &[Expr]) -> Result<Option<usize>, String> {
    let mut found = None;
    for (i, e) in exprs.iter().enumerate() {
        if e.name == "lookup" && attr(e, NFTA_LOOKUP_DREG).is_some() {
            if found.is_some() {
                return Err("several map lookups in one rule are not supported".into());
            }
            found = Some(i);
        }
    }
    Ok(found)
}

/// The rules `rule`'s map lookup expands to, one per element; None when it has none.
pub fn expand_rule(
    view: &RulesetView<'_>,
    table: &Table,
    rule: &Rule,
) -> Result<Option<Vec<Rule>>, String> {
    let Some(at) = map_lookup(&rule.exprs)? else {
        return Ok(None);
    };
    let lookup = &rule.exprs[at];
    let set = view
        .set_of(table, lookup)
        .ok_or("lookup of a map that does not exist")?;
    if set.flags & NFT_SET_MAP == 0 {
        return Err(format!("set {}: a lookup with data on a set", set.name));
    }
    let sreg = attr(lookup, NFTA_LOOKUP_SREG).ok_or("map lookup without source register")?;
    let dreg = attr(lookup, NFTA_LOOKUP_DREG).ok_or("map lookup without data register")?;
    let mut rules = Vec::new();
    for ((lo, hi), data) in sets::element_ranges(set)? {
        let data = data.ok_or_else(|| format!("map {}: element without data", set.name))?;
        let key_test = if lo == hi {
            Expr {
                name: "cmp".into(),
                data: vec![
                    Attr::new(NFTA_CMP_SREG, sreg.value.clone()),
                    Attr::u32_be(NFTA_CMP_OP, NFT_CMP_EQ),
                    value(NFTA_CMP_DATA, &lo),
                ],
            }
        } else {
            Expr {
                name: "range".into(),
                data: vec![
                    Attr::new(NFTA_RANGE_SREG, sreg.value.clone()),
                    Attr::u32_be(NFTA_RANGE_OP, NFT_RANGE_EQ),
                    value(NFTA_RANGE_FROM_DATA, &lo),
                    value(NFTA_RANGE_TO_DATA, &hi),
                ],
            }
        };
        let mut exprs = rule.exprs[..at].to_vec();
        exprs.push(key_test);
        if matches!(data, ElemData::Verdict { code, .. } if *code as i32 == NFT_CONTINUE) {
            // `continue`: the rule decides nothing, as one without a verdict.
            exprs.extend_from_slice(&rule.exprs[at + 1..]);
            rules.push(Rule {
                exprs,
                ..rule.clone()
            });
            continue;
        }
        let immediate = Expr {
            name: "immediate".into(),
            data: vec![
                Attr::new(NFTA_IMMEDIATE_DREG, dreg.value.clone()),
                match data {
                    ElemData::Value(v) => value(NFTA_IMMEDIATE_DATA, v),
                    ElemData::Verdict { code, chain } => {
                        let mut verdict = vec![Attr::u32_be(NFTA_VERDICT_CODE, *code)];
                        if let Some(c) = chain {
                            verdict.push(Attr::strz(NFTA_VERDICT_CHAIN, c));
                        }
                        Attr::nested(
                            NFTA_IMMEDIATE_DATA,
                            &[Attr::nested(NFTA_DATA_VERDICT, &verdict)],
                        )
                    }
                },
            ],
        };
        exprs.push(immediate);
        // A verdict other than `continue` ends the rule at the lookup (nft_do_chain
        // stops at a verdict), so what follows it runs only for `continue` elements;
        // a value goes on to the expressions that use it.
        if matches!(data, ElemData::Value(_)) {
            exprs.extend_from_slice(&rule.exprs[at + 1..]);
        }
        rules.push(Rule {
            exprs,
            ..rule.clone()
        });
    }
    Ok(Some(rules))
}

/// `NFTA_*_DATA { NFTA_DATA_VALUE bytes }`.
fn value(kind: u16, bytes: &[u8]) -> Attr {
    Attr::nested(kind, &[Attr::new(NFTA_DATA_VALUE, bytes.to_vec())])
}

fn attr(e: &Expr, kind: u16) -> Option<&Attr> {
    e.data.iter().find(|a| a.id() == kind)
}
