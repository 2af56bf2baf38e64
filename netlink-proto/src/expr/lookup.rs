//! `lookup`: Looks a register up in a set (`@set`, `vmap`, `map`).

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, Str};

attr_enum! {
    /// `lookup` expression attributes.
    pub enum LookupAttr {
        Set(Str) = NFTA_LOOKUP_SET,
        Sreg(Register) = NFTA_LOOKUP_SREG,
        Dreg(Register) = NFTA_LOOKUP_DREG,
        SetId(u32) = NFTA_LOOKUP_SET_ID,
        Flags(u32) = NFTA_LOOKUP_FLAGS,
    }
}

expr_struct! {
    /// The `lookup` expression.
    pub struct Lookup(LookupAttr) = "lookup";
}

impl Lookup {
    getters! { LookupAttr {
        set: Set => str,
        sreg: Sreg => copy<Register>,
        dreg: Dreg => copy<Register>,
        set_id: SetId => copy<u32>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn anonymous_set_by_id_and_named_set_dump() {
        // nft -f - ('ip daddr . tcp dport @c'): sreg 1, set "c", set id 2.
        let sent = elem("2c0001800b0001006c6f6f6b757000001c000280080002000000000106000100630000000800040000000002");
        let Expr::Lookup(l) = &sent.expr else {
            panic!()
        };
        assert_eq!(
            (l.sreg(), l.set(), l.set_id()),
            (Some(Register::Reg1), Some("c"), Some(2))
        );
        assert_eq!(l.flags(), None);
        // nft -a list ruleset: the kernel adds FLAGS 0, no set id.
        let dumped = elem("2c0001000b0001006c6f6f6b757000001c000200060001006300000008000200000000010800050000000000");
        let Expr::Lookup(d) = &dumped.expr else {
            panic!()
        };
        assert_eq!((d.set(), d.set_id(), d.flags()), (Some("c"), None, Some(0)));
    }
}
