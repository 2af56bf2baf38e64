//! Named sets in the map builder: set ids, and the map entries an element becomes
//! (bpf/lib/sets.h). Used at build time for the initial elements and by the loader to
//! add or remove elements at run time.

use std::collections::BTreeMap;

use ipnet::{Ipv4Net, Ipv6Net};

use super::BuildError;
use crate::ir::{PortRange, Program, SetElement, SetField, SetKey};

/// One entry of the set maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetEntry {
    /// `set_v4`: the prefix under the set id.
    V4 { set: u32, net: Ipv4Net },
    /// `set_v6`.
    V6 { set: u32, net: Ipv6Net },
    /// `set_port`: the first `len` bits of `port`.
    Port { set: u32, port: u16, len: u8 },
    /// `set_val`.
    Value { set: u32, value: u32 },
}

/// A set of the program: its id in the maps and key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetInfo {
    pub id: u32,
    pub key: SetKey,
}

/// Set names to ids (the order of [`Program::sets`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetIds(pub BTreeMap<String, SetInfo>);

impl SetIds {
    pub(super) fn new(program: &Program) -> Self {
        SetIds(
            program
                .sets
                .iter()
                .enumerate()
                .map(|(id, (name, set))| {
                    (
                        name.clone(),
                        SetInfo {
                            id: id as u32,
                            key: set.key,
                        },
                    )
                })
                .collect(),
        )
    }

    /// The id of the set a rule looks `field` up in, if the set exists and fits.
    pub(super) fn lookup(
        &self,
        rule: usize,
        field: SetField,
        name: &str,
    ) -> Result<u32, BuildError> {
        let info = self.0.get(name).ok_or_else(|| BuildError::UnknownSet {
            rule,
            set: name.to_string(),
        })?;
        if info.key != field.key() {
            return Err(BuildError::SetKeyMismatch {
                rule,
                set: name.to_string(),
            });
        }
        Ok(info.id)
    }
}

/// The map entries of one element of set `set`.
pub fn entries(set: u32, element: &SetElement) -> Vec<SetEntry> {
    match *element {
        SetElement::Ipv4(net) => vec![SetEntry::V4 {
            set,
            net: net.trunc(),
        }],
        SetElement::Ipv6(net) => vec![SetEntry::V6 {
            set,
            net: net.trunc(),
        }],
        SetElement::Port(range) => port_prefixes(range)
            .into_iter()
            .map(|(port, len)| SetEntry::Port { set, port, len })
            .collect(),
        SetElement::Proto(p) => vec![SetEntry::Value {
            set,
            value: p as u32,
        }],
        SetElement::U32(value) => vec![SetEntry::Value { set, value }],
    }
}

/// The fewest prefixes (value, length in bits) covering exactly `range`; none for an
/// empty range.
pub fn port_prefixes(range: PortRange) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (range.first as u32, range.last as u32);
    while lo <= hi {
        // The largest aligned block starting at lo that stays within hi.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros() as u8));
        lo += size;
    }
    out
}

/// Checks that every element fits its set's key; the initial entries of all sets.
pub(super) fn initial_entries(
    program: &Program,
    ids: &SetIds,
) -> Result<Vec<SetEntry>, BuildError> {
    let mut out = Vec::new();
    for (name, set) in &program.sets {
        let id = ids.0[name].id;
        for element in &set.elements {
            if element.key() != set.key {
                return Err(BuildError::SetElementMismatch { set: name.clone() });
            }
            out.extend(entries(id, element));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(prefixes: &[(u16, u8)]) -> Vec<u32> {
        let mut ports: Vec<u32> = prefixes
            .iter()
            .flat_map(|&(p, len)| {
                let size = 1u32 << (16 - len);
                p as u32..p as u32 + size
            })
            .collect();
        ports.sort_unstable();
        ports
    }

    #[test]
    fn port_ranges_become_exact_prefix_covers() {
        for (a, b) in [
            (0, 65535),
            (0, 0),
            (80, 80),
            (1024, 65535),
            (1, 65534),
            (22, 1023),
            (8000, 8080),
        ] {
            let prefixes = port_prefixes(PortRange::new(a, b));
            assert_eq!(
                covered(&prefixes),
                (a as u32..=b as u32).collect::<Vec<_>>(),
                "{a}-{b}"
            );
            assert!(prefixes.len() <= 30, "{a}-{b}: {prefixes:?}");
        }
        assert_eq!(port_prefixes(PortRange::new(0, 65535)), [(0, 0)]);
        assert_eq!(port_prefixes(PortRange::new(5, 4)), []);
    }
}
