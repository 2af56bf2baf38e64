//! `nat`: Source or destination NAT to addresses/ports held in registers.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// NAT direction (`enum nft_nat_types`).
    pub enum NatType {
        Snat = NFT_NAT_SNAT,
        Dnat = NFT_NAT_DNAT,
    }
}

attr_enum! {
    /// `nat` expression attributes.
    pub enum NatAttr {
        Type(NatType) = NFTA_NAT_TYPE,
        Family(u32) = NFTA_NAT_FAMILY,
        RegAddrMin(Register) = NFTA_NAT_REG_ADDR_MIN,
        RegAddrMax(Register) = NFTA_NAT_REG_ADDR_MAX,
        RegProtoMin(Register) = NFTA_NAT_REG_PROTO_MIN,
        RegProtoMax(Register) = NFTA_NAT_REG_PROTO_MAX,
        Flags(u32) = NFTA_NAT_FLAGS,
    }
}

expr_struct! {
    /// The `nat` expression.
    pub struct Nat(NatAttr) = "nat";
}

impl Nat {
    getters! { NatAttr {
        nat_type: Type => copy<NatType>,
        family: Family => copy<u32>,
        reg_addr_min: RegAddrMin => copy<Register>,
        reg_addr_max: RegAddrMax => copy<Register>,
        reg_proto_min: RegProtoMin => copy<Register>,
        reg_proto_max: RegProtoMax => copy<Register>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn snat_to_address() {
        // nft add rule ip test-ip4 postrouting '... snat to 192.168.3.2'
        let e = elem(
            "28000180080001006e6174001c000280080001000000000008000200000000020800030000000001",
        );
        let Expr::Nat(n) = &e.expr else { panic!() };
        assert_eq!((n.nat_type(), n.family()), (Some(NatType::Snat), Some(2)));
        assert_eq!(
            (n.reg_addr_min(), n.reg_addr_max()),
            (Some(Register::Reg1), None)
        );
        // nft list ruleset: the kernel adds ADDR_MAX and FLAGS (NF_NAT_RANGE_MAP_IPS).
        let e = elem("38000100080001006e6174002c00020008000100000000000800020000000002080003000000000108000400000000010800070000000001");
        let Expr::Nat(n) = &e.expr else { panic!() };
        assert_eq!(
            (n.reg_addr_max(), n.flags()),
            (Some(Register::Reg1), Some(1))
        );
    }
}
