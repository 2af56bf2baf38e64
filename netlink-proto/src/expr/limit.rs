//! `limit`: Rate limit (token bucket). Also the data of limit objects.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// What is limited (`enum nft_limit_type`).
    pub enum LimitType {
        Pkts = NFT_LIMIT_PKTS,
        PktBytes = NFT_LIMIT_PKT_BYTES,
    }
}

attr_enum! {
    /// `limit` expression attributes.
    pub enum LimitAttr {
        Rate(u64) = NFTA_LIMIT_RATE,
        Unit(u64) = NFTA_LIMIT_UNIT,
        Burst(u32) = NFTA_LIMIT_BURST,
        Type(LimitType) = NFTA_LIMIT_TYPE,
        Flags(u32) = NFTA_LIMIT_FLAGS,
    }
}

expr_struct! {
    /// The `limit` expression.
    pub struct Limit(LimitAttr) = "limit";
}

impl Limit {
    getters! { LimitAttr {
        rate: Rate => copy<u64>,
        unit: Unit => copy<u64>,
        burst: Burst => copy<u32>,
        limit_type: Type => copy<LimitType>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn byte_rate_from_nft() {
        // nft add rule arp test-arp output 'limit rate 1 kbytes/second'
        let e = elem("3c0001800a0001006c696d69740000002c0002800c00010000000000000004000c000200000000000000000108000400000000010800050000000000");
        let Expr::Limit(l) = &e.expr else { panic!() };
        assert_eq!((l.rate(), l.unit(), l.burst()), (Some(1024), Some(1), None));
        assert_eq!(
            (l.limit_type(), l.flags()),
            (Some(LimitType::PktBytes), Some(0))
        );
    }

    #[test]
    fn packet_rate_dumped_by_kernel() {
        // nft list ruleset: 'limit rate 20/second burst 5 packets'.
        let e = elem("440001000a0001006c696d6974000000340002000c00010000000000000000140c0002000000000000000001080003000000000508000400000000000800050000000000");
        let Expr::Limit(l) = &e.expr else { panic!() };
        assert_eq!(
            (l.rate(), l.unit(), l.burst()),
            (Some(20), Some(1), Some(5))
        );
        assert_eq!(l.limit_type(), Some(LimitType::Pkts));
    }
}
