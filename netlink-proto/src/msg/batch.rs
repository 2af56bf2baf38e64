//! Batch delimiters: `NFNL_MSG_BATCH_BEGIN` / `_END` (no subsystem byte; the subsystem is
//! in `nfgenmsg.res_id`).

use crate::consts::*;
use crate::typed::{attr_enum, attr_list, getters};

attr_enum! {
    /// `NFNL_BATCH_*`.
    pub enum BatchAttr {
        /// iptables-nft's idea of the current generation; a stale one makes BEGIN fail
        /// with ERESTART.
        GenId(u32) = NFNL_BATCH_GENID,
    }
}

attr_list! {
    /// A batch delimiter's attributes.
    pub struct Batch(BatchAttr);
}

impl Batch {
    getters! { BatchAttr {
        genid: GenId => copy<u32>,
    } }
}
