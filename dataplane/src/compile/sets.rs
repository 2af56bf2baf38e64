//! Constant sets as value ranges, and ranges as what the IR takes (prefixes, port
//! ranges, values).
//!
//! A set is constant between commits when nothing in the packet path changes it: no
//! timeouts, no dynamic updates, not a map. Its elements are part of the ruleset, so
//! every change to them is a commit that recompiles.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use netlink_proto::consts::*;
use nftshim_engine::view::{ElemData, Set};

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

/// The elements of a constant set or map: each one's inclusive range of key bytes and,
/// in a map, its data; or why the set is not constant.
pub fn element_ranges(set: &Set) -> Result<Vec<(ByteRange, Option<&ElemData>)>, String> {
    let name = &set.name;
    let unsupported = NFT_SET_TIMEOUT | NFT_SET_EVAL | NFT_SET_OBJECT;
    if set.flags & unsupported != 0 {
        return Err(format!(
            "set {name}: dynamic, timeout and object sets are not supported by the eBPF data plane"
        ));
    }
    // Concatenated keys compare as whole byte strings only without intervals (with
    // them, each field is a range of its own).
    let concat = set.flags & NFT_SET_CONCAT != 0 || set.field_len.len() > 1;
    let intervals =
        set.flags & NFT_SET_INTERVAL != 0 || set.elems.iter().any(|e| e.key_end.is_some());
    if concat && intervals {
        return Err(format!(
            "set {name}: concatenated interval sets are not supported by the eBPF data plane"
        ));
    }
    if !set.exprs.is_empty() {
        return Err(format!(
            "set {name}: per-element expressions are not supported"
        ));
    }
    let len = set.key_len as usize;
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let mut ranges = Vec::new();
    for e in &set.elems {
        if e.flags & NFT_SET_ELEM_CATCHALL != 0 {
            return Err(format!("set {name}: catch-all elements are not supported"));
        }
        if e.timeout_ms != 0 || e.expires_at_ms.is_some() || !e.exprs.is_empty() {
            return Err(format!(
                "set {name}: elements with timeouts or expressions are not supported"
            ));
        }
        let Some(key) = e.key.clone() else {
            return Err(format!("set {name}: element without key"));
        };
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

/// One element of a concatenated interval set: each field's inclusive range (its
/// offset in the key, and its bytes without the padding to 4), and its data in a map.
pub type FieldRanges<'a> = (Vec<(usize, ByteRange)>, Option<&'a ElemData>);

/// The elements of a constant concatenated interval set (the kernel's pipapo, which
/// matches a key whose every field is within that field's range), or None when the
/// set is not one. Refused when two elements overlap (a key could be in both), so
/// that a key is in at most one element, as in a map.
pub fn concat_interval_elements(set: &Set) -> Result<Option<Vec<FieldRanges<'_>>>, String> {
    let name = &set.name;
    let concat = set.flags & NFT_SET_CONCAT != 0 || set.field_len.len() > 1;
    let intervals =
        set.flags & NFT_SET_INTERVAL != 0 || set.elems.iter().any(|e| e.key_end.is_some());
    if !concat || !intervals {
        return Ok(None);
    }
    let unsupported = NFT_SET_TIMEOUT | NFT_SET_EVAL | NFT_SET_OBJECT;
    if set.flags & unsupported != 0 || !set.exprs.is_empty() {
        return Err(format!(
            "set {name}: dynamic, timeout, object sets and per-element expressions are not \
             supported by the eBPF data plane"
        ));
    }
    // Each field takes its length rounded up to 4 bytes of the key (registers).
    let mut fields = Vec::new();
    let mut off = 0usize;
    for &l in &set.field_len {
        let l = l as usize;
        if l == 0 {
            return Err(format!("set {name}: empty concatenation field"));
        }
        fields.push((off, l));
        off += l.div_ceil(4) * 4;
    }
    if fields.is_empty() || off != set.key_len as usize {
        return Err(format!(
            "set {name}: concatenation fields do not add up to the key length"
        ));
    }
    let mut out: Vec<FieldRanges<'_>> = Vec::new();
    for e in &set.elems {
        if e.flags & NFT_SET_ELEM_CATCHALL != 0 {
            return Err(format!("set {name}: catch-all elements are not supported"));
        }
        if e.timeout_ms != 0 || e.expires_at_ms.is_some() || !e.exprs.is_empty() {
            return Err(format!(
                "set {name}: elements with timeouts or expressions are not supported"
            ));
        }
        let key = e
            .key
            .as_ref()
            .filter(|k| k.len() == off)
            .ok_or_else(|| format!("set {name}: element key of an unexpected length"))?;
        let end = match &e.key_end {
            Some(end) if end.len() == off => end,
            Some(_) => return Err(format!("set {name}: element end of an unexpected length")),
            None => key,
        };
        let ranges: Vec<(usize, ByteRange)> = fields
            .iter()
            .map(|&(at, l)| (at, (key[at..at + l].to_vec(), end[at..at + l].to_vec())))
            .collect();
        if ranges.iter().any(|(_, (lo, hi))| lo > hi) {
            return Err(format!("set {name}: element with an empty field range"));
        }
        let overlaps = |other: &[(usize, ByteRange)]| {
            ranges
                .iter()
                .zip(other)
                .all(|((_, (lo, hi)), (_, (olo, ohi)))| lo <= ohi && olo <= hi)
        };
        if out.iter().any(|(other, _)| overlaps(other)) {
            return Err(format!(
                "set {name}: overlapping concatenated intervals are not supported by the eBPF \
                 data plane"
            ));
        }
        out.push((ranges, e.data.as_ref()));
    }
    Ok(Some(out))
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
    fn concatenated_intervals_are_ranges_per_field_and_must_not_overlap() {
        // 192.0.2.1 . 10.0.0.1-10.0.0.2, then 10.0.0.0-10.0.0.255 . 80-443 (a port
        // padded to 4 bytes).
        let a = (
            vec![192, 0, 2, 1, 10, 0, 0, 1],
            Some(vec![192, 0, 2, 1, 10, 0, 0, 2]),
        );
        let flags = NFT_SET_INTERVAL | NFT_SET_CONCAT;
        let s = set(flags, vec![4, 4], vec![a.clone()]);
        let elems = concat_interval_elements(&s).unwrap().unwrap();
        assert_eq!(
            elems[0].0,
            vec![
                (0, (vec![192, 0, 2, 1], vec![192, 0, 2, 1])),
                (4, (vec![10, 0, 0, 1], vec![10, 0, 0, 2]))
            ]
        );
        let p = set(
            flags,
            vec![4, 2],
            vec![(
                vec![10, 0, 0, 0, 0, 80, 0, 0],
                Some(vec![10, 0, 0, 255, 1, 187, 0, 0]),
            )],
        );
        let elems = concat_interval_elements(&p).unwrap().unwrap();
        assert_eq!(elems[0].0[1], (4, (vec![0, 80], vec![1, 187])));
        // Overlapping in every field: refused; in one field only: both kept.
        let b = (
            vec![192, 0, 2, 1, 10, 0, 0, 2],
            Some(vec![192, 0, 2, 1, 10, 0, 0, 9]),
        );
        assert!(concat_interval_elements(&set(flags, vec![4, 4], vec![a.clone(), b])).is_err());
        let c = (
            vec![192, 0, 2, 2, 10, 0, 0, 1],
            Some(vec![192, 0, 2, 2, 10, 0, 0, 2]),
        );
        let two = set(flags, vec![4, 4], vec![a, c]);
        assert_eq!(concat_interval_elements(&two).unwrap().unwrap().len(), 2);
        // Not concatenated, or without intervals: not such a set.
        let plain = set(NFT_SET_INTERVAL, vec![], vec![]);
        assert_eq!(concat_interval_elements(&plain), Ok(None));
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
