//! `limit`: Rate limit (token bucket). Also the data of limit objects.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// What is limited (`enum nft_limit_type`).
    pub enum LimitType {
        Pkts = NFT_LIMIT_PKTS,
        PktBytes = NFT_LIMIT_PKT_BYTES,
    }
}

attr_enum! {
    /// `limit` expression attributes.
    pub enum LimitAttr {
        Rate(u64) = NFTA_LIMIT_RATE,
        Unit(u64) = NFTA_LIMIT_UNIT,
        Burst(u32) = NFTA_LIMIT_BURST,
        Type(LimitType) = NFTA_LIMIT_TYPE,
        Flags(u32) = NFTA_LIMIT_FLAGS,
    }
}

expr_struct! {
    /// The `limit` expression.
    pub struct Limit(LimitAttr) = "limit";
}

impl Limit {
    getters! { LimitAttr {
        rate: Rate => copy<u64>,
        unit: Unit => copy<u64>,
        burst: Burst => copy<u32>,
        limit_type: Type => copy<LimitType>,
        flags: Flags => copy<u32>,
    } }
}
