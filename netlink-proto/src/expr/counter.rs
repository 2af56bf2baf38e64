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
