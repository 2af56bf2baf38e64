//! Constant sets as value ranges, and ranges as what the IR takes (prefixes, port
//! ranges, values).
//!
//! A set is constant between commits when nothing in the packet path changes it: no
//! timeouts, no dynamic updates, not a map. Its elements are part of the ruleset, so
//! every change to them is a commit that recompiles.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use netlink_proto::consts::*;
use nftshim_engine::view::{Elem, ElemData, Set};

/// An inclusive range of big-endian key bytes, both ends of the key's length.
pub type ByteRange = (Vec<u8>, Vec<u8>);

/// The key ranges of a constant set, or why it is not one.
pub fn key_ranges(set: &Set, now_ms: Option<u64>) -> Result<Vec<ByteRange>, String> {
    let _ = now_ms;
    if set.flags & NFT_SET_MAP != 0 {
        return Err(format!(
            "set {}: a map used as a set is not supported by the eBPF data plane",
            set.name
        ));
    }
    let mut ranges: Vec<ByteRange> = element_ranges(set)?.into_iter().map(|(r, _)| r).collect();
    ranges.sort();
    Ok(ranges)
}

/// Whether the set's keys are concatenations with a range per field (`flags interval`
/// on `a . b`): [`element_boxes`], not [`element_ranges`], reads them.
pub fn is_concat_interval(set: &Set) -> bool {
    let concat = set.flags & NFT_SET_CONCAT != 0 || set.field_len.len() > 1;
    let intervals =
        set.flags & NFT_SET_INTERVAL != 0 || set.elems.iter().any(|e| e.key_end.is_some());
    concat && intervals
}

/// The elements of a constant set or map: each one's inclusive range of key bytes and,
/// in a map, its data; or why the set is not constant.
pub fn element_ranges(set: &Set) -> Result<Vec<(ByteRange, Option<&ElemData>)>, String> {
    let name = &set.name;
    check_constant(set)?;
    // Concatenated keys compare as whole byte strings only without intervals (with
    // them, each field is a range of its own).
    if is_concat_interval(set) {
        return Err(format!(
            "set {name}: concatenated interval sets are supported by the eBPF data plane \
             only in rules that look them up directly"
        ));
    }
    let len = set.key_len as usize;
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let mut ranges = Vec::new();
    for e in &set.elems {
        let key = constant_key(set, e)?;
        if key.len() != len {
            return Err(format!(
                "set {name}: element key of {} bytes, set keys have {len}",
                key.len()
            ));
        }
        let data = e.data.as_ref();
        if let Some(end) = &e.key_end {
            if end.len() != len {
                return Err(format!("set {name}: element end of unexpected length"));
            }
            ranges.push(((key, end.clone()), data));
        } else if set.flags & NFT_SET_INTERVAL != 0 {
            if e.flags & NFT_SET_ELEM_INTERVAL_END != 0 {
                ends.push(key);
            } else {
                starts.push((key, data));
            }
        } else {
            ranges.push(((key.clone(), key), data));
        }
    }
    // Interval sets as nft sends them: each start is closed by the lowest end marker
    // above it (exclusive); a start without one runs to the top of the key space.
    ends.sort();
    for (start, data) in starts {
        let end = ends.iter().find(|e| **e > start);
        let last = match end {
            Some(e) => match decrement(e) {
                Some(l) => l,
                None => continue,
            },
            None => vec![0xff; len],
        };
        if last >= start {
            ranges.push(((start, last), data));
        }
    }
    Ok(ranges)
}

/// Why the set's elements can change without a commit, if they can.
fn check_constant(set: &Set) -> Result<(), String> {
    let name = &set.name;
    let unsupported = NFT_SET_TIMEOUT | NFT_SET_EVAL | NFT_SET_OBJECT;
    if set.flags & unsupported != 0 {
        return Err(format!(
            "set {name}: dynamic, timeout and object sets are not supported by the eBPF data plane"
        ));
    }
    if !set.exprs.is_empty() {
        return Err(format!(
            "set {name}: per-element expressions are not supported"
        ));
    }
    Ok(())
}

/// The key of an element of a constant set, or why it has none.
fn constant_key(set: &Set, e: &Elem) -> Result<Vec<u8>, String> {
    let name = &set.name;
    if e.flags & NFT_SET_ELEM_CATCHALL != 0 {
        return Err(format!("set {name}: catch-all elements are not supported"));
    }
    if e.timeout_ms != 0 || e.expires_at_ms.is_some() || !e.exprs.is_empty() {
        return Err(format!(
            "set {name}: elements with timeouts or expressions are not supported"
        ));
    }
    e.key
        .clone()
        .ok_or_else(|| format!("set {name}: element without key"))
}

/// An element of a concatenated interval set: each field's inclusive range (of the
/// field's own bytes), and in a map its data.
pub type ElementBox<'s> = (Vec<ByteRange>, Option<&'s ElemData>);

/// Most elements whose pairwise disjointness is checked (a quadratic check).
const MAX_BOXES: usize = 4096;

/// The elements of a constant concatenated interval set (`ip saddr . tcp dport { ... }`
/// with ranges): a range per field. Refused unless no two elements share a key, so
/// that a key is in at most one of them (rules expanded from them then match at most
/// once, as the kernel's lookup finds at most one element).
pub fn element_boxes(set: &Set) -> Result<Vec<ElementBox<'_>>, String> {
    let name = &set.name;
    check_constant(set)?;
    // Each field takes whole 32-bit registers in the key.
    let widths: Vec<usize> = set.field_len.iter().map(|&l| l as usize).collect();
    let stride: usize = widths.iter().map(|w| w.div_ceil(4) * 4).sum();
    if widths.is_empty() || widths.contains(&0) || stride != set.key_len as usize {
        return Err(format!(
            "set {name}: concatenation fields do not make up its key"
        ));
    }
    if set.elems.len() > MAX_BOXES {
        return Err(format!(
            "set {name}: more than {MAX_BOXES} elements in a concatenated interval set"
        ));
    }
    let fields = |key: &[u8]| -> Vec<Vec<u8>> {
        let mut at = 0;
        widths
            .iter()
            .map(|&w| {
                let field = key[at..at + w].to_vec();
                at += w.div_ceil(4) * 4;
                field
            })
            .collect()
    };
    let mut boxes = Vec::new();
    for e in &set.elems {
        let key = constant_key(set, e)?;
        let end = e.key_end.clone().unwrap_or_else(|| key.clone());
        if key.len() != stride || end.len() != stride {
            return Err(format!("set {name}: element key of unexpected length"));
        }
        let ranges: Vec<ByteRange> = fields(&key).into_iter().zip(fields(&end)).collect();
        if ranges.iter().any(|(lo, hi)| lo > hi) {
            return Err(format!("set {name}: element with an empty range"));
        }
        boxes.push((ranges, e.data.as_ref()));
    }
    for (i, (a, _)) in boxes.iter().enumerate() {
        for (b, _) in &boxes[i + 1..] {
            let overlap = a
                .iter()
                .zip(b)
                .all(|((alo, ahi), (blo, bhi))| alo <= bhi && blo <= ahi);
            if overlap {
                return Err(format!(
                    "set {name}: elements that overlap are not supported by the eBPF data plane"
                ));
            }
        }
    }
    Ok(boxes)
}

/// `bytes - 1` as a big-endian number; None below zero.
fn decrement(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut v = bytes.to_vec();
    for b in v.iter_mut().rev() {
        if *b == 0 {
            *b = 0xff;
        } else {
            *b -= 1;
            return Some(v);
        }
    }
    None
}

fn be_u128(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0u128, |acc, &b| (acc << 8) | b as u128)
}

/// The smallest set of prefixes covering `[lo, hi]` in a `bits`-wide space.
fn range_to_prefixes(lo: u128, hi: u128, bits: u32) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    let mut cur = lo;
    loop {
        if cur > hi {
            break;
        }
        // The largest aligned block starting at cur that stays within hi.
        let mut size_bits = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        loop {
            let span_ok = if size_bits >= 128 {
                cur == 0 && hi == u128::MAX
            } else {
                let last = cur + ((1u128 << size_bits) - 1);
                last <= hi && last >= cur
            };
            if span_ok {
                break;
            }
            size_bits -= 1;
        }
        out.push((cur, (bits - size_bits) as u8));
        if size_bits >= 128 {
            break;
        }
        let next = cur.checked_add(1u128 << size_bits);
        match next {
            Some(n) if bits == 128 || n < (1u128 << bits) => cur = n,
            _ => break,
        }
    }
    out
}

pub fn v4_prefixes(ranges: &[ByteRange]) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    for (lo, hi) in ranges {
        for (addr, plen) in range_to_prefixes(be_u128(lo), be_u128(hi), 32) {
            if let Ok(n) = Ipv4Net::new(Ipv4Addr::from(addr as u32), plen) {
                out.push(n);
            }
        }
    }
    out
}

pub fn v6_prefixes(ranges: &[ByteRange]) -> Vec<Ipv6Net> {
    let mut out = Vec::new();
    for (lo, hi) in ranges {
        for (addr, plen) in range_to_prefixes(be_u128(lo), be_u128(hi), 128) {
            if let Ok(n) = Ipv6Net::new(Ipv6Addr::from(addr), plen) {
                out.push(n);
            }
        }
    }
    out
}

/// Inclusive big-endian ranges of small numbers (ports, protocols) as (first, last).
pub fn numeric_ranges(ranges: &[ByteRange]) -> Vec<(u128, u128)> {
    ranges
        .iter()
        .map(|(lo, hi)| (be_u128(lo), be_u128(hi)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftshim_engine::view::Elem;

    fn set(flags: u32, field_len: Vec<u32>, elems: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Set {
        Set {
            name: "s".into(),
            handle: 1,
            flags,
            key_type: 0,
            key_len: 8,
            data_type: 0,
            data_len: 0,
            obj_type: 0,
            policy: 0,
            size: 0,
            field_len,
            timeout_ms: 0,
            gc_interval: 0,
            udata: None,
            exprs: vec![],
            elems: elems
                .into_iter()
                .map(|(key, key_end)| Elem {
                    key: Some(key),
                    key_end,
                    data: None,
                    flags: 0,
                    timeout_ms: 0,
                    expires_at_ms: None,
                    udata: None,
                    exprs: vec![],
                    objref: None,
                })
                .collect(),
        }
    }

    #[test]
    fn concatenated_intervals_are_ranges_per_field_that_must_not_overlap() {
        // 10.0.0.0/8 . 10-23 and 192.168.1.1 . 80: two boxes, a range per field.
        let a = (
            vec![10, 0, 0, 0, 0, 10, 0, 0],
            Some(vec![10, 255, 255, 255, 0, 23, 0, 0]),
        );
        let b = (vec![192, 168, 1, 1, 0, 80, 0, 0], None);
        let boxes = set(
            NFT_SET_INTERVAL | NFT_SET_CONCAT,
            vec![4, 2],
            vec![a.clone(), b],
        );
        let got: Vec<Vec<ByteRange>> = element_boxes(&boxes)
            .unwrap()
            .into_iter()
            .map(|(fields, _)| fields)
            .collect();
        assert_eq!(
            got,
            vec![
                vec![
                    (vec![10, 0, 0, 0], vec![10, 255, 255, 255]),
                    (vec![0, 10], vec![0, 23])
                ],
                vec![
                    (vec![192, 168, 1, 1], vec![192, 168, 1, 1]),
                    (vec![0, 80], vec![0, 80])
                ],
            ]
        );
        // 10.1.0.0/16 . 5-30 surrounds no end of the first but shares keys with it
        // (10.1.0.1 . 20): the kernel takes it; rules per element would match twice.
        let nested = (
            vec![10, 1, 0, 0, 0, 5, 0, 0],
            Some(vec![10, 1, 255, 255, 0, 30, 0, 0]),
        );
        let overlapping = set(
            NFT_SET_INTERVAL | NFT_SET_CONCAT,
            vec![4, 2],
            vec![a, nested],
        );
        assert!(element_boxes(&overlapping).unwrap_err().contains("overlap"));
    }

    #[test]
    fn concatenated_keys_are_exact_values_and_refused_with_intervals() {
        let key = vec![10, 0, 0, 1, 0, 22, 0, 0];
        let exact = set(NFT_SET_ANONYMOUS, vec![4, 2], vec![(key.clone(), None)]);
        assert_eq!(
            key_ranges(&exact, None),
            Ok(vec![(key.clone(), key.clone())])
        );
        let ranged = set(
            NFT_SET_INTERVAL | NFT_SET_CONCAT,
            vec![4, 2],
            vec![(key.clone(), Some(key.clone()))],
        );
        assert!(key_ranges(&ranged, None)
            .unwrap_err()
            .contains("concatenated interval"));
        // Without the flag, an element end is enough to tell.
        let ended = set(0, vec![4, 2], vec![(key.clone(), Some(key))]);
        assert!(key_ranges(&ended, None).is_err());
    }

    #[test]
    fn ranges_become_minimal_prefixes() {
        let r = vec![(vec![10, 0, 0, 1], vec![10, 0, 0, 6])];
        let p: Vec<String> = v4_prefixes(&r).iter().map(|n| n.to_string()).collect();
        assert_eq!(
            p,
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        let all = vec![(vec![0; 4], vec![0xff; 4])];
        assert_eq!(v4_prefixes(&all)[0].to_string(), "0.0.0.0/0");
        let all6 = vec![(vec![0; 16], vec![0xff; 16])];
        assert_eq!(v6_prefixes(&all6)[0].to_string(), "::/0");
        let top = vec![(vec![255, 255, 255, 254], vec![0xff; 4])];
        assert_eq!(v4_prefixes(&top)[0].to_string(), "255.255.255.254/31");
    }

    #[test]
    fn decrement_borrows() {
        assert_eq!(decrement(&[1, 0]), Some(vec![0, 0xff]));
        assert_eq!(decrement(&[0, 0]), None);
    }
}
