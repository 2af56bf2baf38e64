//! `xfrm`: Loads IPsec (xfrm) state data.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// xfrm key (`enum nft_xfrm_keys`).
    pub enum XfrmKey {
        Unspec = NFT_XFRM_KEY_UNSPEC,
        DaddrIp4 = NFT_XFRM_KEY_DADDR_IP4,
        DaddrIp6 = NFT_XFRM_KEY_DADDR_IP6,
        SaddrIp4 = NFT_XFRM_KEY_SADDR_IP4,
        SaddrIp6 = NFT_XFRM_KEY_SADDR_IP6,
        Reqid = NFT_XFRM_KEY_REQID,
        Spi = NFT_XFRM_KEY_SPI,
    }
}

attr_enum! {
    /// `xfrm` expression attributes.
    pub enum XfrmAttr {
        Dreg(Register) = NFTA_XFRM_DREG,
        Key(XfrmKey) = NFTA_XFRM_KEY,
        Dir(u8) = NFTA_XFRM_DIR,
        Spnum(u32) = NFTA_XFRM_SPNUM,
    }
}

expr_struct! {
    /// The `xfrm` expression.
    pub struct Xfrm(XfrmAttr) = "xfrm";
}

impl Xfrm {
    getters! { XfrmAttr {
        dreg: Dreg => copy<Register>,
        key: Key => copy<XfrmKey>,
        dir: Dir => copy<u8>,
        spnum: Spnum => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn ipsec_in_daddr() {
        // nft add rule inet ipsec-inet ipsec-forw 'ipsec in ip6 daddr dead::beef'
        let e = elem("34000180090001007866726d00000000240002800800020000000002050003000000000008000400000000000800010000000001");
        let Expr::Xfrm(x) = &e.expr else { panic!() };
        assert_eq!(
            (x.key(), x.dir(), x.spnum(), x.dreg()),
            (
                Some(XfrmKey::DaddrIp6),
                Some(0),
                Some(0),
                Some(Register::Reg1)
            )
        );
    }
}
