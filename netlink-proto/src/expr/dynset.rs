//! `dynset`: adds, updates or deletes a set element from the packet path
//! (`add @set { ip saddr }`, `update @meter { ... limit ... }`), optionally with
//! per-element expressions.

use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum, Str};

use super::{expr_struct, ExprElem, ExprList};

u32_enum! {
    /// What to do with the element (`enum nft_dynset_ops`).
    pub enum DynsetOp {
        Add = NFT_DYNSET_OP_ADD,
        Update = NFT_DYNSET_OP_UPDATE,
        Delete = NFT_DYNSET_OP_DELETE,
    }
}

attr_enum! {
    /// `dynset` expression attributes.
    pub enum DynsetAttr {
        SetName(Str) = NFTA_DYNSET_SET_NAME,
        SetId(u32) = NFTA_DYNSET_SET_ID,
        Op(DynsetOp) = NFTA_DYNSET_OP,
        SregKey(Register) = NFTA_DYNSET_SREG_KEY,
        SregData(Register) = NFTA_DYNSET_SREG_DATA,
        Timeout(u64) = NFTA_DYNSET_TIMEOUT,
        /// One expression attached to the new element.
        Expr(ExprElem) = NFTA_DYNSET_EXPR,
        Flags(u32) = NFTA_DYNSET_FLAGS,
        /// Several expressions attached to the new element.
        Expressions(ExprList) = NFTA_DYNSET_EXPRESSIONS,
    }
}

expr_struct! {
    /// The `dynset` expression.
    pub struct Dynset(DynsetAttr) = "dynset";
}

impl Dynset {
    getters! { DynsetAttr {
        set_name: SetName => str,
        set_id: SetId => copy<u32>,
        op: Op => copy<DynsetOp>,
        sreg_key: SregKey => copy<Register>,
        sreg_data: SregData => copy<Register>,
        timeout: Timeout => copy<u64>,
        expr: Expr => nest<ExprElem>,
        flags: Flags => copy<u32>,
        expressions: Expressions => nest<ExprList>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn add_to_set_as_sent_and_dumped() {
        // nft -f - ('add @dyn { ip saddr }')
        let e = elem("340001800b00010064796e736574000024000280080004000000000108000300000000000800010064796e000800020000000005");
        let Expr::Dynset(d) = &e.expr else { panic!() };
        assert_eq!(
            (d.sreg_key(), d.op(), d.set_name(), d.set_id()),
            (
                Some(Register::Reg1),
                Some(DynsetOp::Add),
                Some("dyn"),
                Some(5)
            )
        );
        // nft -a list ruleset: the kernel adds TIMEOUT 0 and FLAGS 0.
        let e = elem("400001000b00010064796e736574000030000200080004000000000108000300000000000800010064796e000c00060000000000000000000800090000000000");
        let Expr::Dynset(d) = &e.expr else { panic!() };
        assert_eq!((d.timeout(), d.flags(), d.expr()), (Some(0), Some(0), None));
    }

    #[test]
    fn nested_expression_roundtrips() {
        use crate::expr::{limit, ExprElem};
        use crate::typed::AttrValue;
        let inner = Expr::Limit(limit::Limit::new(vec![
            limit::LimitAttr::Rate(10),
            limit::LimitAttr::Unit(1),
        ]));
        let d = Dynset::new(vec![
            DynsetAttr::SetName("m".into()),
            DynsetAttr::Expr(ExprElem::new(inner.clone())),
        ]);
        let a = ExprElem::new(Expr::Dynset(d)).encode(crate::consts::NFTA_LIST_ELEM);
        let mut bytes = Vec::new();
        a.emit(&mut bytes);
        let e = elem(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let Expr::Dynset(d) = &e.expr else { panic!() };
        assert_eq!(d.expr().map(|x| &x.expr), Some(&inner));
    }
}
