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
