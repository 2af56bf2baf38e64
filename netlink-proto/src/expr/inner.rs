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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    // nft 1.0.6 cannot write `inner` expressions: built here, checked to re-read.
    #[test]
    fn built_inner_with_payload_roundtrips() {
        use crate::expr::{payload, ExprElem};
        use crate::typed::AttrValue;
        let p = Expr::Payload(payload::Payload::new(vec![payload::PayloadAttr::Base(
            payload::PayloadBase::Inner,
        )]));
        let i = Inner::new(vec![
            InnerAttr::Num(0),
            InnerAttr::Type(crate::extra::NFT_INNER_VXLAN),
            InnerAttr::Flags(crate::extra::NFT_INNER_NH),
            InnerAttr::Hdrsize(8),
            InnerAttr::Expr(ExprElem::new(p.clone())),
        ]);
        let a = ExprElem::new(Expr::Inner(i)).encode(crate::consts::NFTA_LIST_ELEM);
        let mut bytes = Vec::new();
        a.emit(&mut bytes);
        let back = elem(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let Expr::Inner(i) = &back.expr else { panic!() };
        assert_eq!(i.expr().map(|x| &x.expr), Some(&p));
        assert_eq!(i.hdrsize(), Some(8));
    }
}
