//! `reject`: Drops the packet and answers with an ICMP error or a TCP reset.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Reply kind (`enum nft_reject_types`).
    pub enum RejectType {
        IcmpUnreach = NFT_REJECT_ICMP_UNREACH,
        TcpRst = NFT_REJECT_TCP_RST,
        IcmpxUnreach = NFT_REJECT_ICMPX_UNREACH,
    }
}

attr_enum! {
    /// `reject` expression attributes.
    pub enum RejectAttr {
        Type(RejectType) = NFTA_REJECT_TYPE,
        IcmpCode(u8) = NFTA_REJECT_ICMP_CODE,
    }
}

expr_struct! {
    /// The `reject` expression.
    pub struct Reject(RejectAttr) = "reject";
}

impl Reject {
    getters! { RejectAttr {
        reject_type: Type => copy<RejectType>,
        icmp_code: IcmpCode => copy<u8>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn icmp_host_unreachable_and_tcp_reset() {
        // nft add rule inet test-inet input 'reject with icmp host-unreachable'
        let e = elem("240001800b00010072656a65637400001400028008000100000000000500020001000000");
        let Expr::Reject(r) = &e.expr else { panic!() };
        assert_eq!(
            (r.reject_type(), r.icmp_code()),
            (Some(RejectType::IcmpUnreach), Some(1))
        );
        // nft list ruleset: 'reject with tcp reset'.
        let e = elem("1c0001000b00010072656a65637400000c0002000800010000000001");
        let Expr::Reject(r) = &e.expr else { panic!() };
        assert_eq!(
            (r.reject_type(), r.icmp_code()),
            (Some(RejectType::TcpRst), None)
        );
    }
}
