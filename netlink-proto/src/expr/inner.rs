//! `inner`: runs one expression against the inner packet of a tunnel (VXLAN, GENEVE).

use crate::extra::*;
use crate::typed::{attr_enum, getters};

use super::{expr_struct, ExprElem};

attr_enum! {
    /// `inner` expression attributes.
    pub enum InnerAttr {
        Num(u32) = NFTA_INNER_NUM,
        /// Tunnel type (`NFT_INNER_VXLAN`, `NFT_INNER_GENEVE`).
        Type(u32) = NFTA_INNER_TYPE,
        /// Which inner headers to parse (`NFT_INNER_LL`, `_NH`, `_TH`, `_HDRSIZE`).
        Flags(u32) = NFTA_INNER_FLAGS,
        Hdrsize(u32) = NFTA_INNER_HDRSIZE,
        /// The expression evaluated on the inner packet.
        Expr(ExprElem) = NFTA_INNER_EXPR,
    }
}

expr_struct! {
    /// The `inner` expression.
    pub struct Inner(InnerAttr) = "inner";
}

impl Inner {
    getters! { InnerAttr {
        num: Num => copy<u32>,
        inner_type: Type => copy<u32>,
        flags: Flags => copy<u32>,
        hdrsize: Hdrsize => copy<u32>,
        expr: Expr => nest<ExprElem>,
    } }
}
