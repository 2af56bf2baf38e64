//! `counter`: Counts packets and bytes. The same attributes describe counter objects and base chain counters.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `counter` expression attributes.
    pub enum CounterAttr {
        Bytes(u64) = NFTA_COUNTER_BYTES,
        Packets(u64) = NFTA_COUNTER_PACKETS,
    }
}

expr_struct! {
    /// The `counter` expression.
    pub struct Counter(CounterAttr) = "counter";
}

impl Counter {
    getters! { CounterAttr {
        bytes: Bytes => copy<u64>,
        packets: Packets => copy<u64>,
    } }
}

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;
    use netlink_packet_core::NLA_F_NESTED;

    #[test]
    fn empty_counter_from_nft_and_zeroed_dump() {
        // nft -f - ('counter'): an empty, flagged DATA nest.
        let sent = elem("140001800c000100636f756e7465720004000280");
        let Expr::Counter(c) = &sent.expr else {
            panic!()
        };
        assert!(c.attrs.is_empty());
        assert_eq!(sent.data_flags, Some(NLA_F_NESTED));
        // arptables-nft -S: the kernel dumps both counts.
        let dumped = elem("2c0001000c000100636f756e746572001c0002000c00010000000000000000000c0002000000000000000000");
        let Expr::Counter(d) = &dumped.expr else {
            panic!()
        };
        assert_eq!((d.bytes(), d.packets()), (Some(0), Some(0)));
    }
}
