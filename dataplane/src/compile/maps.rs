//! Maps and verdict maps, compiled by expansion: a rule that looks its key up in a map,
//! `... KEY vmap { k1 : v1, k2 : v2 }` or `meta mark set KEY map { k1 : d1, ... }`,
//! becomes one rule per element, `... KEY == k1 <v1>`, with the element's data put
//! where the lookup would have put it (an `immediate` into the same register).
//!
//! A lookup of a concatenated interval set (`ip saddr . ip daddr { 192.0.2.1 .
//! 10.0.0.1-10.0.0.2 }`, the kernel's pipapo: every field within its own range) expands
//! the same way, to one rule per element testing each field, when no two elements
//! overlap.
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
use nftshim_engine::view::{ElemData, Expr, Rule, RulesetView, Set, Table};

use super::sets;

/// The position of the rule's lookup to expand: of a map (a lookup with a destination
/// register), or of a concatenated interval set.
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
        let concat_intervals = || {
            view.set_of(table, e)
                .is_some_and(|set| matches!(sets::concat_interval_elements(set), Ok(Some(_))))
        };
        if attr(e, NFTA_LOOKUP_DREG).is_some() || concat_intervals() {
            if found.is_some() {
                return Err("several map lookups in one rule are not supported".into());
            }
            found = Some(i);
        }
    }
    Ok(found)
}

/// NFT_REG32_00: registers as 4-byte words (NFT_REG_1..4 are 16 bytes each).
const REG32_00: u32 = 8;
const REG32_15: u32 = 23;

/// The 4-byte register `offset` bytes into the register numbered `reg`.
fn register_at(reg: u32, offset: usize) -> Option<u32> {
    let word = (offset / 4) as u32;
    let base = match reg {
        1..=4 => REG32_00 + (reg - 1) * 4,
        REG32_00..=REG32_15 => reg,
        _ => return None,
    };
    Some(base + word).filter(|r| *r <= REG32_15)
}

/// The tests of a key against one element: `cmp eq` for a single value, else `range`.
fn key_test(sreg: &Attr, lo: &[u8], hi: &[u8]) -> Expr {
    if lo == hi {
        Expr {
            name: "cmp".into(),
            data: vec![
                Attr::new(NFTA_CMP_SREG, sreg.value.clone()),
                Attr::u32_be(NFTA_CMP_OP, NFT_CMP_EQ),
                value(NFTA_CMP_DATA, lo),
            ],
        }
    } else {
        Expr {
            name: "range".into(),
            data: vec![
                Attr::new(NFTA_RANGE_SREG, sreg.value.clone()),
                Attr::u32_be(NFTA_RANGE_OP, NFT_RANGE_EQ),
                value(NFTA_RANGE_FROM_DATA, lo),
                value(NFTA_RANGE_TO_DATA, hi),
            ],
        }
    }
}

/// The elements of the set a lookup reads: the tests of a key against each (one per
/// concatenation field for a concatenated interval set, whose fields are ranges of
/// their own), with the element's data.
fn element_tests<'s>(
    set: &'s Set,
    sreg: &Attr,
) -> Result<Vec<(Vec<Expr>, Option<&'s ElemData>)>, String> {
    if let Some(elems) = sets::concat_interval_elements(set)? {
        let reg = sreg
            .value
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or("lookup with a malformed source register")?;
        return elems
            .into_iter()
            .map(|(fields, data)| {
                let tests = fields
                    .iter()
                    .map(|(offset, (lo, hi))| {
                        let r = register_at(reg, *offset)
                            .ok_or("concatenation past the last register")?;
                        Ok(key_test(&Attr::u32_be(NFTA_CMP_SREG, r), lo, hi))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok((tests, data))
            })
            .collect();
    }
    Ok(sets::element_ranges(set)?
        .into_iter()
        .map(|((lo, hi), data)| (vec![key_test(sreg, &lo, &hi)], data))
        .collect())
}

/// An expanded rule, with the index in the original rule of each of its expressions
/// (the element's tests stand for the lookup).
pub type Expanded = (Rule, Vec<u32>);

/// The indexes in the original rule of `prefix` expressions, `tests` standing for the
/// lookup at `at`, and the expressions after it (`rest` of them, or none).
fn origin(at: usize, tests: usize, rest: Option<usize>) -> Vec<u32> {
    let mut o: Vec<u32> = (0..at as u32).collect();
    o.extend(std::iter::repeat(at as u32).take(tests));
    if let Some(n) = rest {
        o.extend((at + 1..at + 1 + n).map(|i| i as u32));
    }
    o
}

/// The rules `rule`'s map lookup expands to, one per element; None when it has none.
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
    let sreg = attr(lookup, NFTA_LOOKUP_SREG).ok_or("map lookup without source register")?;
    let Some(dreg) = attr(lookup, NFTA_LOOKUP_DREG) else {
        // A concatenated interval set: the rule holds for a key in one of its
        // elements, which do not overlap, so one rule per element is the same.
        let flags = attr(lookup, NFTA_LOOKUP_FLAGS)
            .and_then(|a| a.value.get(..4))
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if flags & NFT_LOOKUP_F_INV != 0 {
            return Err(format!(
                "set {}: a negated lookup of a concatenated interval set is not supported by \
                 the eBPF data plane",
                set.name
            ));
        }
        let mut rules = Vec::new();
        let rest = rule.exprs.len() - at - 1;
        for (tests, _) in element_tests(set, sreg)? {
            let from = origin(at, tests.len(), Some(rest));
            let mut exprs = rule.exprs[..at].to_vec();
            exprs.extend(tests);
            exprs.extend_from_slice(&rule.exprs[at + 1..]);
            rules.push((
                Rule {
                    exprs,
                    ..rule.clone()
                },
                from,
            ));
        }
        return Ok(Some(rules));
    };
    if set.flags & NFT_SET_MAP == 0 {
        return Err(format!("set {}: a lookup with data on a set", set.name));
    }
    let mut rules = Vec::new();
    let rest = rule.exprs.len() - at - 1;
    for (tests, data) in element_tests(set, sreg)? {
        let data = data.ok_or_else(|| format!("map {}: element without data", set.name))?;
        let ntests = tests.len();
        let mut exprs = rule.exprs[..at].to_vec();
        exprs.extend(tests);
        if matches!(data, ElemData::Verdict { code, .. } if *code as i32 == NFT_CONTINUE) {
            // `continue`: the rule decides nothing, as one without a verdict.
            exprs.extend_from_slice(&rule.exprs[at + 1..]);
            rules.push((
                Rule {
                    exprs,
                    ..rule.clone()
                },
                origin(at, ntests, Some(rest)),
            ));
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
        let value = matches!(data, ElemData::Value(_));
        if value {
            exprs.extend_from_slice(&rule.exprs[at + 1..]);
        }
        rules.push((
            Rule {
                exprs,
                ..rule.clone()
            },
            origin(at, ntests + 1, value.then_some(rest)),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanded_expressions_keep_the_index_they_stand_for() {
        // payload, lookup (as two field tests and an immediate), counter.
        assert_eq!(origin(1, 3, Some(1)), vec![0, 1, 1, 1, 2]);
        // A verdict ends the rule at the lookup.
        assert_eq!(origin(2, 2, None), vec![0, 1, 2, 2]);
    }

    #[test]
    fn concatenation_fields_are_consecutive_4_byte_registers() {
        assert_eq!(register_at(1, 0), Some(8));
        assert_eq!(register_at(1, 4), Some(9));
        assert_eq!(register_at(2, 8), Some(14));
        assert_eq!(register_at(9, 12), Some(12));
        assert_eq!(register_at(23, 4), None);
        assert_eq!(register_at(0, 0), None);
    }
}
