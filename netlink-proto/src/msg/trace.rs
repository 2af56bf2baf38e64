//! Trace events (`NFT_MSG_TRACE`, multicast group `NFNLGRP_NFTRACE`): one per rule a
//! traced packet walks, plus the final policy.

use crate::consts::*;
use crate::data::VerdictAttr;
use crate::extra::{
    NFTA_TRACE_CT_DIRECTION, NFTA_TRACE_CT_ID, NFTA_TRACE_CT_STATE, NFTA_TRACE_CT_STATUS,
};
use crate::typed::{attr_enum, attr_list, getters, u32_enum, Nest, Str};

u32_enum! {
    /// `enum nft_trace_types`.
    pub enum TraceType {
        Unspec = NFT_TRACETYPE_UNSPEC,
        Policy = NFT_TRACETYPE_POLICY,
        Return = NFT_TRACETYPE_RETURN,
        Rule = NFT_TRACETYPE_RULE,
    }
}

attr_enum! {
    /// `NFTA_TRACE_*`.
    pub enum TraceAttr {
        Table(Str) = NFTA_TRACE_TABLE,
        Chain(Str) = NFTA_TRACE_CHAIN,
        RuleHandle(u64) = NFTA_TRACE_RULE_HANDLE,
        Type(TraceType) = NFTA_TRACE_TYPE,
        Verdict(Nest<VerdictAttr>) = NFTA_TRACE_VERDICT,
        /// Same for every event of one packet.
        Id(u32) = NFTA_TRACE_ID,
        LlHeader(Vec<u8>) = NFTA_TRACE_LL_HEADER,
        NetworkHeader(Vec<u8>) = NFTA_TRACE_NETWORK_HEADER,
        TransportHeader(Vec<u8>) = NFTA_TRACE_TRANSPORT_HEADER,
        Iif(u32) = NFTA_TRACE_IIF,
        Iiftype(u16) = NFTA_TRACE_IIFTYPE,
        Oif(u32) = NFTA_TRACE_OIF,
        Oiftype(u16) = NFTA_TRACE_OIFTYPE,
        Mark(u32) = NFTA_TRACE_MARK,
        Nfproto(u32) = NFTA_TRACE_NFPROTO,
        Policy(u32) = NFTA_TRACE_POLICY,
        CtId(u32) = NFTA_TRACE_CT_ID,
        /// 0 original, 1 reply.
        CtDirection(u8) = NFTA_TRACE_CT_DIRECTION,
        CtStatus(u32) = NFTA_TRACE_CT_STATUS,
        /// `ct state` bits (new, established, ...).
        CtState(u32) = NFTA_TRACE_CT_STATE,
    }
}

attr_list! {
    /// A trace event's attributes.
    pub struct Trace(TraceAttr);
}

impl Trace {
    getters! { TraceAttr {
        table: Table => str,
        chain: Chain => str,
        rule_handle: RuleHandle => copy<u64>,
        trace_type: Type => copy<TraceType>,
        verdict: Verdict => nest<Nest<VerdictAttr>>,
        id: Id => copy<u32>,
        ll_header: LlHeader => bytes,
        network_header: NetworkHeader => bytes,
        transport_header: TransportHeader => bytes,
        iif: Iif => copy<u32>,
        iiftype: Iiftype => copy<u16>,
        oif: Oif => copy<u32>,
        oiftype: Oiftype => copy<u16>,
        mark: Mark => copy<u32>,
        nfproto: Nfproto => copy<u32>,
        policy: Policy => copy<u32>,
        ct_id: CtId => copy<u32>,
        ct_direction: CtDirection => copy<u8>,
        ct_status: CtStatus => copy<u32>,
        ct_state: CtState => copy<u32>,
    } }
}
