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
                let r = std::sync::Arc::make_mut(&mut rs.tables[ti].chains[ci].rules[ri]);
                if let Some(e) = r
                    .exprs
                    .get_mut(expr as usize)
                    .filter(|e| e.name == "counter")
                {
                    add(&mut e.data, d);
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
