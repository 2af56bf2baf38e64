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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn shift_left_as_nft_sends_and_kernel_dumps_it() {
        // nft add rule inet test-inet output 'ct mark set (meta mark | 0x10) << 8'
        let sent = elem("400001800c00010062697477697365003000028008000100000000010800020000000001080006000000000108000300000000040c0007800800010008000000");
        let Expr::Bitwise(b) = &sent.expr else {
            panic!()
        };
        assert_eq!(
            (b.sreg(), b.dreg(), b.len()),
            (Some(Register::Reg1), Some(Register::Reg1), Some(4))
        );
        assert_eq!(b.op(), Some(BitwiseOp::Lshift));
        assert_eq!(
            b.data().unwrap().value_bytes(),
            Some(&8u32.to_ne_bytes()[..]),
            "shift amount in host order"
        );
        // The kernel dumps LEN before OP; the order is kept.
        let dumped = elem("400001000c00010062697477697365003000020008000100000000010800020000000001080003000000000408000600000000010c0007000800010008000000");
        let Expr::Bitwise(d) = &dumped.expr else {
            panic!()
        };
        assert_eq!(d.attrs[2], BitwiseAttr::Len(4));
        assert_eq!(d.attrs[3], BitwiseAttr::Op(BitwiseOp::Lshift));
        assert_eq!(
            d.data(),
            Some(&crate::typed::Nest::plain(b.data().unwrap().items.clone()))
        );
    }
}
