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
//! Element changes are commits, which recompile.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use nftshim_engine::view::{ElemData, Expr, Rule, RulesetView, Table};

use super::sets;

/// The position of the rule's lookup that expands: a map lookup (one with a
/// destination register), or a lookup in a concatenated interval set.
fn expanded_lookup(
    view: &RulesetView<'_>,
    table: &Table,
    exprs: &[Expr],
) -> Result<Option<usize>, String> {
    let mut found = None;
    for (i, e) in exprs.iter().enumerate() {
        if e.name != "lookup" {
            continue;
        }
        let expands = attr(e, NFTA_LOOKUP_DREG).is_some()
            || view.set_of(table, e).is_some_and(sets::is_concat_interval);
        if !expands {
            continue;
        }
        match found {
            None => found = Some(i),
            // Two set lookups (no data), as ebtables-nft's `--among-src` and
            // `--among-dst` are: the second expands in each rule of the first (see
            // [`expand_rule`]).
            Some(first) if is_set_lookup(&exprs[first]) && is_set_lookup(e) => {}
            Some(_) => return Err("several map lookups in one rule are not supported".into()),
        }
    }
    Ok(found)
}

/// A lookup that only tests membership (no destination register).
fn is_set_lookup(e: &Expr) -> bool {
    attr(e, NFTA_LOOKUP_DREG).is_none()
}

/// The most rules one rule may expand to when two set lookups expand: a packet's keys
/// are in at most one element of each set, so at most one of the rules matches, but
/// every rule costs a rule slot.
pub const MAX_DOUBLE_EXPANSION: usize = 4096;

/// One element's rule, and where the expressions standing for the lookup are: the
/// lookup at `at` became `width` expressions (key tests, and a map's data).
pub struct Expanded {
    pub rule: Rule,
    pub at: usize,
    pub width: usize,
}

impl Expanded {
    /// The index in the original rule of the expression at `index` here.
    pub fn original_index(&self, index: usize) -> usize {
        if index < self.at {
            index
        } else if index < self.at + self.width {
            self.at
        } else {
            index + 1 - self.width
        }
    }
}

/// The rules `rule`'s lookup expands to, one per element; None when it has none to
/// expand. With two set lookups only the first expands here: each of its rules still
/// has the second, which the caller expands in turn (the rules per pair of elements:
/// the keys are in at most one element of each set, so exactly the pair rule of the
/// elements holding them matches, as both lookups do).
pub fn expand_rule(
    view: &RulesetView<'_>,
    table: &Table,
    rule: &Rule,
) -> Result<Option<Vec<Expanded>>, String> {
    let Some(at) = expanded_lookup(view, table, &rule.exprs)? else {
        return Ok(None);
    };
    let lookup = &rule.exprs[at];
    let set = view
        .set_of(table, lookup)
        .ok_or("lookup of a map that does not exist")?;
    let dreg = attr(lookup, NFTA_LOOKUP_DREG);
    if dreg.is_some() && set.flags & NFT_SET_MAP == 0 {
        return Err(format!("set {}: a lookup with data on a set", set.name));
    }
    let inverted = attr(lookup, NFTA_LOOKUP_FLAGS)
        .and_then(|a| a.value.get(..4))
        .is_some_and(|f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]) & NFT_LOOKUP_F_INV != 0);
    if inverted {
        // Not in any element: a conjunction of one test per element. A box of single
        // values is one key, whose negation is one comparison of the whole key.
        if dreg.is_none() && sets::is_concat_interval(set) {
            let sreg = attr(lookup, NFTA_LOOKUP_SREG).ok_or("lookup without source register")?;
            if let Some(keys) = single_keys(set)? {
                let mut exprs = rule.exprs[..at].to_vec();
                exprs.extend(keys.iter().map(|k| key_differs(&sreg.value, k)));
                exprs.extend_from_slice(&rule.exprs[at + 1..]);
                return Ok(Some(vec![expanded(rule, exprs, at, keys.len())]));
            }
        }
        // Not in any element: a conjunction, which rules per element cannot say.
        return Err(format!(
            "set {}: a negated lookup in a concatenated interval set is not supported by the \
             eBPF data plane",
            set.name
        ));
    }
    let sreg = attr(lookup, NFTA_LOOKUP_SREG).ok_or("map lookup without source register")?;
    let elements: Vec<(Vec<Expr>, Option<&ElemData>)> = if sets::is_concat_interval(set) {
        let first = register32(sreg).ok_or("lookup with an invalid source register")?;
        sets::element_boxes(set)?
            .into_iter()
            .map(|(fields, data)| {
                let mut reg = first;
                let mut tests = Vec::new();
                for ((lo, hi), &len) in fields.iter().zip(&set.field_len) {
                    tests.push(key_test(&register_attr(reg), lo, hi));
                    reg += len.div_ceil(4);
                }
                (tests, data)
            })
            .collect()
    } else {
        sets::element_ranges(set)?
            .into_iter()
            .map(|((lo, hi), data)| (vec![key_test(&sreg.value, &lo, &hi)], data))
            .collect()
    };
    let mut rules = Vec::new();
    for (tests, data) in elements {
        let width = tests.len();
        let mut exprs = rule.exprs[..at].to_vec();
        exprs.extend(tests);
        let rest = &rule.exprs[at + 1..];
        let (dreg, data) = match (dreg, data) {
            (None, _) => {
                // A set: the element's key tests are the lookup.
                exprs.extend_from_slice(rest);
                rules.push(expanded(rule, exprs, at, width));
                continue;
            }
            (Some(dreg), Some(data)) => (dreg, data),
            (Some(_), None) => return Err(format!("map {}: element without data", set.name)),
        };
        if matches!(data, ElemData::Verdict { code, .. } if *code as i32 == NFT_CONTINUE) {
            // `continue`: the rule decides nothing, as one without a verdict.
            exprs.extend_from_slice(rest);
            rules.push(expanded(rule, exprs, at, width));
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
        // A verdict ends the rule: what follows the lookup (`vmap { ... } counter`)
        // runs only for `continue` elements.
        if matches!(data, ElemData::Value(_)) {
            exprs.extend_from_slice(rest);
        }
        rules.push(expanded(rule, exprs, at, width + 1));
    }
    Ok(Some(rules))
}

fn expanded(rule: &Rule, exprs: Vec<Expr>, at: usize, width: usize) -> Expanded {
    Expanded {
        rule: rule.with_exprs(exprs),
        at,
        width,
    }
}

/// The whole keys (fields padded to 32 bits, as in the registers) of a concatenated
/// interval set whose every element is a single value in every field; None when one
/// is a range.
fn single_keys(set: &nftshim_engine::view::Set) -> Result<Option<Vec<Vec<u8>>>, String> {
    let mut keys = Vec::new();
    for (fields, _) in sets::element_boxes(set)? {
        let mut key = Vec::new();
        for ((lo, hi), &len) in fields.iter().zip(&set.field_len) {
            if lo != hi {
                return Ok(None);
            }
            key.extend_from_slice(lo);
            key.resize(key.len() + (len as usize).div_ceil(4) * 4 - lo.len(), 0);
        }
        keys.push(key);
    }
    Ok(Some(keys))
}

/// `KEY != key` over the whole concatenated key in registers from `sreg`.
fn key_differs(sreg: &[u8], key: &[u8]) -> Expr {
    Expr {
        name: "cmp".into(),
        data: vec![
            Attr::new(NFTA_CMP_SREG, sreg.to_vec()),
            Attr::u32_be(NFTA_CMP_OP, NFT_CMP_NEQ),
            value(NFTA_CMP_DATA, key),
        ],
    }
}

/// `KEY == lo` or `lo <= KEY <= hi`, KEY in register `sreg` (its attribute value).
fn key_test(sreg: &[u8], lo: &[u8], hi: &[u8]) -> Expr {
    if lo == hi {
        Expr {
            name: "cmp".into(),
            data: vec![
                Attr::new(NFTA_CMP_SREG, sreg.to_vec()),
                Attr::u32_be(NFTA_CMP_OP, NFT_CMP_EQ),
                value(NFTA_CMP_DATA, lo),
            ],
        }
    } else {
        Expr {
            name: "range".into(),
            data: vec![
                Attr::new(NFTA_RANGE_SREG, sreg.to_vec()),
                Attr::u32_be(NFTA_RANGE_OP, NFT_RANGE_EQ),
                value(NFTA_RANGE_FROM_DATA, lo),
                value(NFTA_RANGE_TO_DATA, hi),
            ],
        }
    }
}

/// The 32-bit register (`NFT_REG32_00` + n) a register attribute names, as the kernel's
/// nft_parse_register reads it (the 16-byte `NFT_REG_1..4` start at 32-bit ones).
fn register32(reg: &Attr) -> Option<u32> {
    let v = u32::from_be_bytes(reg.value.get(..4)?.try_into().ok()?);
    match v {
        1..=4 => Some(NFT_REG32_00 + (v - 1) * 4),
        v if (NFT_REG32_00..=NFT_REG32_15).contains(&v) => Some(v),
        _ => None,
    }
}

/// A register attribute's value for a 32-bit register.
fn register_attr(reg: u32) -> Vec<u8> {
    reg.to_be_bytes().to_vec()
}

/// `NFTA_*_DATA { NFTA_DATA_VALUE bytes }`.
fn value(kind: u16, bytes: &[u8]) -> Attr {
    Attr::nested(kind, &[Attr::new(NFTA_DATA_VALUE, bytes.to_vec())])
}

fn attr(e: &Expr, kind: u16) -> Option<&Attr> {
    e.data.iter().find(|a| a.id() == kind)
}
