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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn host_to_network() {
        // nft add rule inet test-inet output 'ct expiration != {33-55, 66-88}'
        let e = elem("400001800e000100627974656f726465720000002c00028008000100000000010800020000000001080003000000000108000400000000040800050000000004");
        let Expr::Byteorder(b) = &e.expr else {
            panic!()
        };
        assert_eq!(
            (b.sreg(), b.dreg()),
            (Some(Register::Reg1), Some(Register::Reg1))
        );
        assert_eq!(b.op(), Some(ByteorderOp::Hton));
        assert_eq!((b.len(), b.size()), (Some(4), Some(4)));
    }
}
