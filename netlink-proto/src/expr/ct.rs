//! `ct`: Loads conntrack data (`ct KEY`) into a register, or sets it from one.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Conntrack key (`enum nft_ct_keys`).
    pub enum CtKey {
        State = NFT_CT_STATE,
        Direction = NFT_CT_DIRECTION,
        Status = NFT_CT_STATUS,
        Mark = NFT_CT_MARK,
        Secmark = NFT_CT_SECMARK,
        Expiration = NFT_CT_EXPIRATION,
        Helper = NFT_CT_HELPER,
        L3protocol = NFT_CT_L3PROTOCOL,
        Src = NFT_CT_SRC,
        Dst = NFT_CT_DST,
        Protocol = NFT_CT_PROTOCOL,
        ProtoSrc = NFT_CT_PROTO_SRC,
        ProtoDst = NFT_CT_PROTO_DST,
        Labels = NFT_CT_LABELS,
        Pkts = NFT_CT_PKTS,
        Bytes = NFT_CT_BYTES,
        Avgpkt = NFT_CT_AVGPKT,
        Zone = NFT_CT_ZONE,
        Eventmask = NFT_CT_EVENTMASK,
        SrcIp = NFT_CT_SRC_IP,
        DstIp = NFT_CT_DST_IP,
        SrcIp6 = NFT_CT_SRC_IP6,
        DstIp6 = NFT_CT_DST_IP6,
        Id = NFT_CT_ID,
    }
}

attr_enum! {
    /// `ct` expression attributes.
    pub enum CtAttr {
        Dreg(Register) = NFTA_CT_DREG,
        Key(CtKey) = NFTA_CT_KEY,
        Direction(u8) = NFTA_CT_DIRECTION,
        Sreg(Register) = NFTA_CT_SREG,
    }
}

expr_struct! {
    /// The `ct` expression.
    pub struct Ct(CtAttr) = "ct";
}

impl Ct {
    getters! { CtAttr {
        dreg: Dreg => copy<Register>,
        key: Key => copy<CtKey>,
        direction: Direction => copy<u8>,
        sreg: Sreg => copy<Register>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn state_load() {
        // nft -f - ('ct state new'): ct state => reg 1.
        let e = elem("2000018007000100637400001400028008000200000000000800010000000001");
        let Expr::Ct(c) = &e.expr else { panic!() };
        assert_eq!(
            (c.key(), c.dreg(), c.direction()),
            (Some(CtKey::State), Some(Register::Reg1), None)
        );
        let dumped = elem("2000010007000100637400001400020008000100000000010800020000000000");
        let Expr::Ct(d) = &dumped.expr else { panic!() };
        assert_eq!(
            d.attrs,
            [CtAttr::Dreg(Register::Reg1), CtAttr::Key(CtKey::State)]
        );
    }
}
