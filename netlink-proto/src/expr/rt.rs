//! `rt`: Loads routing data (`rt KEY`).

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Routing key (`enum nft_rt_keys`).
    pub enum RtKey {
        Classid = NFT_RT_CLASSID,
        Nexthop4 = NFT_RT_NEXTHOP4,
        Nexthop6 = NFT_RT_NEXTHOP6,
        Tcpmss = NFT_RT_TCPMSS,
        Xfrm = NFT_RT_XFRM,
    }
}

attr_enum! {
    /// `rt` expression attributes.
    pub enum RtAttr {
        Dreg(Register) = NFTA_RT_DREG,
        Key(RtKey) = NFTA_RT_KEY,
    }
}

expr_struct! {
    /// The `rt` expression.
    pub struct Rt(RtAttr) = "rt";
}

impl Rt {
    getters! { RtAttr {
        dreg: Dreg => copy<Register>,
        key: Key => copy<RtKey>,
    } }
}
