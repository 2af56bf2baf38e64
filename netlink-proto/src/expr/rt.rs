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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn classid() {
        // nft add rule inet test-inet output 'rt classid "cosmos"'
        let e = elem("2000018007000100727400001400028008000200000000000800010000000001");
        let Expr::Rt(r) = &e.expr else { panic!() };
        assert_eq!(
            (r.key(), r.dreg()),
            (Some(RtKey::Classid), Some(Register::Reg1))
        );
    }
}
