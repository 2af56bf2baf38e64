//! `masq`: Masquerade: source NAT to the outgoing interface's address.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `masq` expression attributes.
    pub enum MasqAttr {
        Flags(u32) = NFTA_MASQ_FLAGS,
        RegProtoMin(Register) = NFTA_MASQ_REG_PROTO_MIN,
        RegProtoMax(Register) = NFTA_MASQ_REG_PROTO_MAX,
    }
}

expr_struct! {
    /// The `masq` expression.
    pub struct Masq(MasqAttr) = "masq";
}

impl Masq {
    getters! { MasqAttr {
        flags: Flags => copy<u32>,
        reg_proto_min: RegProtoMin => copy<Register>,
        reg_proto_max: RegProtoMax => copy<Register>,
    } }
}

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn masquerade() {
        // nft add rule ip test-ip4 postrouting '... masquerade': no attributes.
        let e = elem("14000180090001006d6173710000000004000280");
        let Expr::Masq(m) = &e.expr else { panic!() };
        assert!(m.attrs.is_empty() && m.flags().is_none());
    }
}
