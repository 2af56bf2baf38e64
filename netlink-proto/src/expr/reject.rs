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
