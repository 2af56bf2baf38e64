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
