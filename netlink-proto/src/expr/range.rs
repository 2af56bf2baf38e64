//! `range`: Checks that a register lies (or not) within `[from, to]`.

use super::expr_struct;
use crate::consts::*;
use crate::data::Data;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Range operator (`enum nft_range_ops`).
    pub enum RangeOp {
        Eq = NFT_RANGE_EQ,
        Neq = NFT_RANGE_NEQ,
    }
}

attr_enum! {
    /// `range` expression attributes.
    pub enum RangeAttr {
        Sreg(Register) = NFTA_RANGE_SREG,
        Op(RangeOp) = NFTA_RANGE_OP,
        FromData(Data) = NFTA_RANGE_FROM_DATA,
        ToData(Data) = NFTA_RANGE_TO_DATA,
    }
}

expr_struct! {
    /// The `range` expression.
    pub struct Range(RangeAttr) = "range";
}

impl Range {
    getters! { RangeAttr {
        sreg: Sreg => copy<Register>,
        op: Op => copy<RangeOp>,
        from_data: FromData => nest<Data>,
        to_data: ToData => nest<Data>,
    } }
}
