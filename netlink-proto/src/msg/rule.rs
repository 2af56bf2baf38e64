//! Rules: `NFT_MSG_{NEW,GET,DEL,DESTROY}RULE`, `NFT_MSG_GETRULE_RESET`.

use crate::consts::*;
use crate::expr::{Expr, ExprList};
use crate::typed::{attr_enum, attr_list, getters, Nest, Str};

attr_enum! {
    /// `NFTA_RULE_COMPAT_*`: the layer 4 protocol and inversion flag iptables-nft
    /// attaches to every rule, for xtables matches that need them.
    pub enum RuleCompatAttr {
        Proto(u32) = NFTA_RULE_COMPAT_PROTO,
        /// `NFT_RULE_COMPAT_F_INV`.
        Flags(u32) = NFTA_RULE_COMPAT_FLAGS,
    }
}

impl Nest<RuleCompatAttr> {
    getters! { RuleCompatAttr in items {
        proto: Proto => copy<u32>,
        flags: Flags => copy<u32>,
    } }
}

attr_enum! {
    /// `NFTA_RULE_*`.
    pub enum RuleAttr {
        Table(Str) = NFTA_RULE_TABLE,
        Chain(Str) = NFTA_RULE_CHAIN,
        Handle(u64) = NFTA_RULE_HANDLE,
        Expressions(ExprList) = NFTA_RULE_EXPRESSIONS,
        Compat(Nest<RuleCompatAttr>) = NFTA_RULE_COMPAT,
        /// Handle of the rule to insert after (append) or before (insert).
        Position(u64) = NFTA_RULE_POSITION,
        /// nft keeps the comment here (TLVs of its own).
        Userdata(Vec<u8>) = NFTA_RULE_USERDATA,
        /// Batch-local id.
        Id(u32) = NFTA_RULE_ID,
        /// Position given as the batch-local id of another new rule.
        PositionId(u32) = NFTA_RULE_POSITION_ID,
        /// Chain given as the batch-local id of a new chain.
        ChainId(u32) = NFTA_RULE_CHAIN_ID,
    }
}

attr_list! {
    /// A rule message's attributes.
    pub struct Rule(RuleAttr);
}

impl Rule {
    getters! { RuleAttr {
        table: Table => str,
        chain: Chain => str,
        handle: Handle => copy<u64>,
        expressions: Expressions => nest<ExprList>,
        compat: Compat => nest<Nest<RuleCompatAttr>>,
        position: Position => copy<u64>,
        userdata: Userdata => bytes,
        id: Id => copy<u32>,
        position_id: PositionId => copy<u32>,
        chain_id: ChainId => copy<u32>,
    } }

    /// The rule's typed expressions in order (raw list members left out).
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.expressions().into_iter().flat_map(|l| l.exprs())
    }
}
