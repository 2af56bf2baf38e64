//! `byteorder`: Converts a register between host and network byte order.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Direction (`enum nft_byteorder_ops`).
    pub enum ByteorderOp {
        Ntoh = NFT_BYTEORDER_NTOH,
        Hton = NFT_BYTEORDER_HTON,
    }
}

attr_enum! {
    /// `byteorder` expression attributes.
    pub enum ByteorderAttr {
        Sreg(Register) = NFTA_BYTEORDER_SREG,
        Dreg(Register) = NFTA_BYTEORDER_DREG,
        Op(ByteorderOp) = NFTA_BYTEORDER_OP,
        Len(u32) = NFTA_BYTEORDER_LEN,
        Size(u32) = NFTA_BYTEORDER_SIZE,
    }
}

expr_struct! {
    /// The `byteorder` expression.
    pub struct Byteorder(ByteorderAttr) = "byteorder";
}

impl Byteorder {
    getters! { ByteorderAttr {
        sreg: Sreg => copy<Register>,
        dreg: Dreg => copy<Register>,
        op: Op => copy<ByteorderOp>,
        len: Len => copy<u32>,
        size: Size => copy<u32>,
    } }
}
