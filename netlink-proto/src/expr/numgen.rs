//! `numgen`: Incremental or random number generator.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum, Str};

u32_enum! {
    /// Generator kind (`enum nft_ng_types`).
    pub enum NgType {
        Incremental = NFT_NG_INCREMENTAL,
        Random = NFT_NG_RANDOM,
    }
}

attr_enum! {
    /// `numgen` expression attributes.
    pub enum NumgenAttr {
        Dreg(Register) = NFTA_NG_DREG,
        Modulus(u32) = NFTA_NG_MODULUS,
        Type(NgType) = NFTA_NG_TYPE,
        Offset(u32) = NFTA_NG_OFFSET,
        SetName(Str) = NFTA_NG_SET_NAME,
        SetId(u32) = NFTA_NG_SET_ID,
    }
}

expr_struct! {
    /// The `numgen` expression.
    pub struct Numgen(NumgenAttr) = "numgen";
}

impl Numgen {
    getters! { NumgenAttr {
        dreg: Dreg => copy<Register>,
        modulus: Modulus => copy<u32>,
        ng_type: Type => copy<NgType>,
        offset: Offset => copy<u32>,
        set_name: SetName => str,
        set_id: SetId => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn incremental() {
        // nft add rule arp test-arp output 'queue flags bypass to numgen inc mod 65536'
        let e = elem("340001800b0001006e756d67656e0000240002800800010000000001080002000001000008000300000000000800040000000000");
        let Expr::Numgen(n) = &e.expr else { panic!() };
        assert_eq!(
            (n.dreg(), n.modulus(), n.ng_type(), n.offset()),
            (
                Some(Register::Reg1),
                Some(65536),
                Some(NgType::Incremental),
                Some(0)
            )
        );
    }
}
