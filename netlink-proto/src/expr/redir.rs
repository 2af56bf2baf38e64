//! `redir`: Redirect to the local machine.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `redir` expression attributes.
    pub enum RedirAttr {
        RegProtoMin(Register) = NFTA_REDIR_REG_PROTO_MIN,
        RegProtoMax(Register) = NFTA_REDIR_REG_PROTO_MAX,
        Flags(u32) = NFTA_REDIR_FLAGS,
    }
}

expr_struct! {
    /// The `redir` expression.
    pub struct Redir(RedirAttr) = "redir";
}

impl Redir {
    getters! { RedirAttr {
        reg_proto_min: RegProtoMin => copy<Register>,
        reg_proto_max: RegProtoMax => copy<Register>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn redirect() {
        // nft list ruleset after '... redirect' (ip6): no attributes, plain nest.
        let e = elem("140001000a000100726564697200000004000200");
        assert!(matches!(&e.expr, Expr::Redir(r) if r.attrs.is_empty()));
        assert_eq!(e.data_flags, Some(0));
    }
}
