//! Writes the namespace's mirror of the IPv4 local routing table (Facts::addrtype_v4,
//! read by runtime/rtnl.rs) into the shared `addrtype_v4` LPM trie that address type
//! lookups (xt_addrtype, nft_fib `type`; bpf/lib/addrtype.h) read. The worker syncs it
//! before every switch to programs, and so after every route, address or link event
//! that changed the table (the rebuild that follows such an event switches).
//! Packets between the kernel's change and this write see the previous table; so do
//! those that pinned links run while no nftshimd runs (until the next worker's first
//! switch). When the table comes to hold what the mirror cannot follow (see
//! `check_addrtype`), the rebuild is refused and the map keeps the previous table.

use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData};
use nftshim_ebpf::addrtype::{value, Route};

/// Makes the map at `pin` hold exactly `routes`; the number of entries written.
pub fn sync(pin: &Path, routes: &[Route]) -> Result<u64, String> {
    let data = MapData::from_pin(pin).map_err(|e| e.to_string())?;
    let mut trie: LpmTrie<MapData, [u8; 4], [u32; 2]> =
        LpmTrie::try_from(Map::LpmTrie(data)).map_err(|e| e.to_string())?;
    let want: BTreeMap<(u32, [u8; 4]), [u32; 2]> = routes
        .iter()
        .map(|r| ((r.len as u32, r.addr), value(r)))
        .collect();
    let mut have = BTreeMap::new();
    for kv in trie.iter() {
        let (k, v) = kv.map_err(|e| e.to_string())?;
        have.insert((k.prefix_len(), k.data()), v);
    }
    let mut writes = 0;
    // Updates before removals: a prefix whose entry changes is never missing.
    for (&(len, addr), v) in &want {
        if have.get(&(len, addr)) != Some(v) {
            trie.insert(&Key::new(len, addr), *v, 0)
                .map_err(|e| e.to_string())?;
            writes += 1;
        }
    }
    for &(len, addr) in have.keys() {
        if !want.contains_key(&(len, addr)) {
            trie.remove(&Key::new(len, addr))
                .map_err(|e| e.to_string())?;
            writes += 1;
        }
    }
    Ok(writes)
}
