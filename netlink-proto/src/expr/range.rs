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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn source_port_range_from_iptables() {
        // iptables-nft -A INPUT -p udp -m udp --sport 1:1023
        let e = elem("3c0001800a00010072616e67650000002c000280080001000000000108000200000000000c00038006000100000100000c0004800600010003ff0000");
        let Expr::Range(r) = &e.expr else { panic!() };
        assert_eq!(
            (r.sreg(), r.op()),
            (Some(Register::Reg1), Some(RangeOp::Eq))
        );
        assert_eq!(r.from_data().unwrap().value_bytes(), Some(&[0u8, 1][..]));
        assert_eq!(r.to_data().unwrap().value_bytes(), Some(&[3u8, 0xff][..]));
    }
}
