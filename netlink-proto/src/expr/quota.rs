//! `quota`: Byte quota. Also the data of quota objects.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `quota` expression attributes.
    pub enum QuotaAttr {
        Bytes(u64) = NFTA_QUOTA_BYTES,
        Flags(u32) = NFTA_QUOTA_FLAGS,
        Consumed(u64) = NFTA_QUOTA_CONSUMED,
    }
}

expr_struct! {
    /// The `quota` expression.
    pub struct Quota(QuotaAttr) = "quota";
}

impl Quota {
    getters! { QuotaAttr {
        bytes: Bytes => copy<u64>,
        flags: Flags => copy<u32>,
        consumed: Consumed => copy<u64>,
    } }
}
