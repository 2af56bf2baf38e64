//! `bitwise`: `dreg = (sreg & mask) ^ xor`, or a shift / boolean operation with DATA or SREG2.

use super::expr_struct;
use crate::consts::*;
use crate::data::Data;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Operation (`enum nft_bitwise_ops`).
    pub enum BitwiseOp {
        MaskXor = NFT_BITWISE_MASK_XOR,
        Lshift = NFT_BITWISE_LSHIFT,
        Rshift = NFT_BITWISE_RSHIFT,
        And = crate::extra::NFT_BITWISE_AND,
        Or = crate::extra::NFT_BITWISE_OR,
        Xor = crate::extra::NFT_BITWISE_XOR,
    }
}

attr_enum! {
    /// `bitwise` expression attributes.
    pub enum BitwiseAttr {
        Sreg(Register) = NFTA_BITWISE_SREG,
        Dreg(Register) = NFTA_BITWISE_DREG,
        Len(u32) = NFTA_BITWISE_LEN,
        Mask(Data) = NFTA_BITWISE_MASK,
        Xor(Data) = NFTA_BITWISE_XOR,
        Op(BitwiseOp) = NFTA_BITWISE_OP,
        Data(Data) = NFTA_BITWISE_DATA,
        Sreg2(Register) = crate::extra::NFTA_BITWISE_SREG2,
    }
}

expr_struct! {
    /// The `bitwise` expression.
    pub struct Bitwise(BitwiseAttr) = "bitwise";
}

impl Bitwise {
    getters! { BitwiseAttr {
        sreg: Sreg => copy<Register>,
        dreg: Dreg => copy<Register>,
        len: Len => copy<u32>,
        mask: Mask => nest<Data>,
        xor: Xor => nest<Data>,
        op: Op => copy<BitwiseOp>,
        data: Data => nest<Data>,
        sreg2: Sreg2 => copy<Register>,
    } }
}
