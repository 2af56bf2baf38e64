//! `payload`: Loads packet bytes into a register, or (with SREG) writes a register into the packet, fixing checksums.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Header a payload offset counts from (`enum nft_payload_bases`).
    pub enum PayloadBase {
        LinkLayer = NFT_PAYLOAD_LL_HEADER,
        Network = NFT_PAYLOAD_NETWORK_HEADER,
        Transport = NFT_PAYLOAD_TRANSPORT_HEADER,
        Inner = NFT_PAYLOAD_INNER_HEADER,
        Tunnel = crate::extra::NFT_PAYLOAD_TUN_HEADER,
    }
}

attr_enum! {
    /// `payload` expression attributes.
    pub enum PayloadAttr {
        Dreg(Register) = NFTA_PAYLOAD_DREG,
        Base(PayloadBase) = NFTA_PAYLOAD_BASE,
        Offset(u32) = NFTA_PAYLOAD_OFFSET,
        Len(u32) = NFTA_PAYLOAD_LEN,
        Sreg(Register) = NFTA_PAYLOAD_SREG,
        CsumType(u32) = NFTA_PAYLOAD_CSUM_TYPE,
        CsumOffset(u32) = NFTA_PAYLOAD_CSUM_OFFSET,
        CsumFlags(u32) = NFTA_PAYLOAD_CSUM_FLAGS,
    }
}

expr_struct! {
    /// The `payload` expression.
    pub struct Payload(PayloadAttr) = "payload";
}

impl Payload {
    getters! { PayloadAttr {
        dreg: Dreg => copy<Register>,
        base: Base => copy<PayloadBase>,
        offset: Offset => copy<u32>,
        len: Len => copy<u32>,
        sreg: Sreg => copy<Register>,
        csum_type: CsumType => copy<u32>,
        csum_offset: CsumOffset => copy<u32>,
        csum_flags: CsumFlags => copy<u32>,
    } }
}
