//! `immediate`: Loads constant data into a register; into the verdict register for `accept`, `jump` and friends.

use super::expr_struct;
use crate::consts::*;
use crate::data::Data;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `immediate` expression attributes.
    pub enum ImmediateAttr {
        Dreg(Register) = NFTA_IMMEDIATE_DREG,
        Data(Data) = NFTA_IMMEDIATE_DATA,
    }
}

expr_struct! {
    /// The `immediate` expression.
    pub struct Immediate(ImmediateAttr) = "immediate";
}

impl Immediate {
    getters! { ImmediateAttr {
        dreg: Dreg => copy<Register>,
        data: Data => nest<Data>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::VerdictCode;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn value_into_register() {
        // nft -f - ('meta nftrace set 1'): immediate reg 1 0x01.
        let e = elem("2c0001800e000100696d6d6564696174650000001800028008000100000000010c0002800500010001000000");
        let Expr::Immediate(i) = &e.expr else {
            panic!()
        };
        assert_eq!(i.dreg(), Some(Register::Reg1));
        assert_eq!(i.data().unwrap().value_bytes(), Some(&[1u8][..]));
    }

    #[test]
    fn drop_verdict() {
        // iptables-nft -A INPUT ... -j DROP: immediate reg 0 drop.
        let e = elem("300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c0002800800010000000000");
        let Expr::Immediate(i) = &e.expr else {
            panic!()
        };
        assert_eq!(i.dreg(), Some(Register::Verdict));
        assert_eq!(i.data().unwrap().verdict_code(), Some(VerdictCode::Drop));
    }
}
