//! Folding what the data plane counted into the counters the ruleset stores (counter
//! expressions, counter objects, base chain counters), so that dumps show it.

use std::collections::HashMap;

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;

use crate::dataplane::{CountDelta, CounterRef};
use crate::state::Ruleset;

/// Adds every delta to its counter; counters that no longer exist (their rule or object
/// was deleted meanwhile) are skipped, as the kernel frees a counter with its rule.
pub fn fold(rs: &mut Ruleset, deltas: &[CountDelta]) {
    if deltas.is_empty() {
        return;
    }
    // Rule handles are unique per table: one index for all lookups of this fold.
    let mut rules: HashMap<(u64, u64), (usize, usize, usize)> = HashMap::new();
    for (ti, t) in rs.tables.iter().enumerate() {
        for (ci, c) in t.chains.iter().enumerate() {
            for (ri, r) in c.rules.iter().enumerate() {
                rules.insert((t.handle, r.handle), (ti, ci, ri));
            }
        }
    }
    for d in deltas {
        match d.counter {
            CounterRef::Rule { table, rule, expr } => {
                let Some(&(ti, ci, ri)) = rules.get(&(table, rule)) else {
                    continue;
                };
                let exprs = crate::state::Rule::exprs_mut(&mut rs.tables[ti].chains[ci].rules[ri]);
                match exprs.get_mut(expr as usize) {
                    Some(e) if e.name == "counter" => add(&mut e.data, d),
                    Some(e) if e.name == "quota" => consume(&mut e.data, d.bytes),
                    _ => {}
                }
            }
            CounterRef::Object { table, object } => {
                let Some(ti) = rs.table_idx_by_handle(table) else {
                    continue;
                };
                if let Some(o) = rs.tables[ti]
                    .objects
                    .iter_mut()
                    .find(|o| o.handle == object && o.obj_type == NFT_OBJECT_COUNTER)
                {
                    add(&mut o.data, d);
                }
            }
            CounterRef::Chain { table, chain } => {
                let Some(ti) = rs.table_idx_by_handle(table) else {
                    continue;
                };
                let Some(ci) = rs.tables[ti].chain_idx_by_handle(chain) else {
                    continue;
                };
                if let Some((p, b)) = rs.tables[ti].chains[ci]
                    .base
                    .as_mut()
                    .and_then(|b| b.counters.as_mut())
                {
                    *p = p.wrapping_add(d.packets);
                    *b = b.wrapping_add(d.bytes);
                }
            }
        }
    }
}

/// NFTA_QUOTA_CONSUMED += `bytes`, at most NFTA_QUOTA_BYTES: the kernel dumps what a
/// quota consumed capped at the quota (nft_quota_do_dump).
fn consume(attrs: &mut Vec<Attr>, bytes: u64) {
    let be64 = |a: &Attr| {
        <[u8; 8]>::try_from(a.value.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    };
    let Some(quota) = attrs
        .iter()
        .find(|a| a.id() == NFTA_QUOTA_BYTES)
        .and_then(be64)
    else {
        return;
    };
    let used = match attrs.iter_mut().find(|a| a.id() == NFTA_QUOTA_CONSUMED) {
        Some(a) => a,
        None => {
            attrs.push(Attr::u64_be(NFTA_QUOTA_CONSUMED, 0));
            attrs.last_mut().expect("just pushed")
        }
    };
    let now = be64(used).unwrap_or(0).saturating_add(bytes).min(quota);
    used.value = now.to_be_bytes().to_vec();
}

/// NFTA_COUNTER_PACKETS / NFTA_COUNTER_BYTES += the delta (64-bit big endian, as the
/// kernel dumps them).
fn add(attrs: &mut [Attr], d: &CountDelta) {
    for a in attrs.iter_mut() {
        let n = match a.id() {
            NFTA_COUNTER_PACKETS => d.packets,
            NFTA_COUNTER_BYTES => d.bytes,
            _ => continue,
        };
        if let Ok(bytes) = <[u8; 8]>::try_from(a.value.as_slice()) {
            a.value = u64::from_be_bytes(bytes)
                .wrapping_add(n)
                .to_be_bytes()
                .to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumed(attrs: &[Attr]) -> u64 {
        let a = attrs
            .iter()
            .find(|a| a.id() == NFTA_QUOTA_CONSUMED)
            .unwrap();
        u64::from_be_bytes(a.value.as_slice().try_into().unwrap())
    }

    #[test]
    fn a_quota_lists_what_it_consumed_capped_at_the_quota() {
        let mut attrs = vec![
            Attr::u64_be(NFTA_QUOTA_BYTES, 150),
            Attr::u64_be(NFTA_QUOTA_CONSUMED, 20),
        ];
        consume(&mut attrs, 100);
        assert_eq!(consumed(&attrs), 120);
        consume(&mut attrs, 100);
        assert_eq!(
            consumed(&attrs),
            150,
            "capped, as nft_quota_do_dump dumps it"
        );
        assert_eq!(attrs.len(), 2);
    }
}
