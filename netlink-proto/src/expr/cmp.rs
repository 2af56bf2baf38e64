//! `cmp`: Compares a register with constant data; breaks the rule when false.

use super::expr_struct;
use crate::consts::*;
use crate::data::Data;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Comparison (`enum nft_cmp_ops`).
    pub enum CmpOp {
        Eq = NFT_CMP_EQ,
        Neq = NFT_CMP_NEQ,
        Lt = NFT_CMP_LT,
        Lte = NFT_CMP_LTE,
        Gt = NFT_CMP_GT,
        Gte = NFT_CMP_GTE,
    }
}

attr_enum! {
    /// `cmp` expression attributes.
    pub enum CmpAttr {
        Sreg(Register) = NFTA_CMP_SREG,
        Op(CmpOp) = NFTA_CMP_OP,
        Data(Data) = NFTA_CMP_DATA,
    }
}

expr_struct! {
    /// The `cmp` expression.
    pub struct Cmp(CmpAttr) = "cmp";
}

impl Cmp {
    getters! { CmpAttr {
        sreg: Sreg => copy<Register>,
        op: Op => copy<CmpOp>,
        data: Data => nest<Data>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn equal_to_tcp() {
        // iptables-nft -p tcp: cmp eq reg 1 0x06.
        let e = elem("2c00018008000100636d700020000280080001000000000108000200000000000c0003800500010006000000");
        let Expr::Cmp(c) = &e.expr else { panic!() };
        assert_eq!((c.sreg(), c.op()), (Some(Register::Reg1), Some(CmpOp::Eq)));
        assert_eq!(c.data().unwrap().value_bytes(), Some(&[6u8][..]));
    }

    #[test]
    fn equal_to_port_22() {
        // iptables-nft --dport 22: cmp eq reg 1 0x0016 (network order).
        let e = elem("2c00018008000100636d700020000280080001000000000108000200000000000c0003800600010000160000");
        let Expr::Cmp(c) = &e.expr else { panic!() };
        assert_eq!(c.data().unwrap().value_bytes(), Some(&[0u8, 22][..]));
    }
}
