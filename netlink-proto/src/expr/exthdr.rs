//! `exthdr`: Loads (or writes) IPv6 extension header, IPv4 option, TCP option, SCTP or DCCP chunk data.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Which header family (`enum nft_exthdr_op`).
    pub enum ExthdrOp {
        Ipv6 = NFT_EXTHDR_OP_IPV6,
        Tcpopt = NFT_EXTHDR_OP_TCPOPT,
        Ipv4 = NFT_EXTHDR_OP_IPV4,
        Sctp = NFT_EXTHDR_OP_SCTP,
        Dccp = NFT_EXTHDR_OP_DCCP,
    }
}

attr_enum! {
    /// `exthdr` expression attributes.
    pub enum ExthdrAttr {
        Dreg(Register) = NFTA_EXTHDR_DREG,
        Type(u8) = NFTA_EXTHDR_TYPE,
        Offset(u32) = NFTA_EXTHDR_OFFSET,
        Len(u32) = NFTA_EXTHDR_LEN,
        Flags(u32) = NFTA_EXTHDR_FLAGS,
        Op(ExthdrOp) = NFTA_EXTHDR_OP,
        Sreg(Register) = NFTA_EXTHDR_SREG,
    }
}

expr_struct! {
    /// The `exthdr` expression.
    pub struct Exthdr(ExthdrAttr) = "exthdr";
}

impl Exthdr {
    getters! { ExthdrAttr {
        dreg: Dreg => copy<Register>,
        header_type: Type => copy<u8>,
        offset: Offset => copy<u32>,
        len: Len => copy<u32>,
        flags: Flags => copy<u32>,
        op: Op => copy<ExthdrOp>,
        sreg: Sreg => copy<Register>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn tcp_option_write() {
        // nft add rule inet test-inet input 'tcp option maxseg size set 1360'
        let e = elem("3c0001800b00010065787468647200002c00028008000700000000010500020002000000080003000000000208000400000000020800060000000001");
        let Expr::Exthdr(x) = &e.expr else { panic!() };
        assert_eq!(
            (x.sreg(), x.header_type(), x.op()),
            (Some(Register::Reg1), Some(2), Some(ExthdrOp::Tcpopt))
        );
        assert_eq!((x.offset(), x.len(), x.dreg()), (Some(2), Some(2), None));
    }
}
