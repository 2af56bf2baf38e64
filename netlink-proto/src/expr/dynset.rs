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
