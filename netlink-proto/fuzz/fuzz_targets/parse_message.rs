//! Any datagram: split it, type every message and every expression in it, write each
//! back. Must not panic, and every message must come back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(m) = netlink_proto::check::roundtrip_datagram(data) {
        panic!("message {} does not round-trip:\n  in:  {:02x?}\n  out: {:02x?}", m.index, m.original, m.emitted);
    }
});
