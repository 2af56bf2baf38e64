//! `tproxy`: Transparent proxy to an address/port held in registers.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `tproxy` expression attributes.
    pub enum TproxyAttr {
        Family(u32) = NFTA_TPROXY_FAMILY,
        RegAddr(Register) = NFTA_TPROXY_REG_ADDR,
        RegPort(Register) = NFTA_TPROXY_REG_PORT,
    }
}

expr_struct! {
    /// The `tproxy` expression.
    pub struct Tproxy(TproxyAttr) = "tproxy";
}

impl Tproxy {
    getters! { TproxyAttr {
        family: Family => copy<u32>,
        reg_addr: RegAddr => copy<Register>,
        reg_port: RegPort => copy<Register>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn to_address() {
        // nft add rule inet x y 'meta l4proto 17 tproxy ip to 192.0.2.1'
        let e = elem("240001800b0001007470726f787900001400028008000100000000020800020000000001");
        let Expr::Tproxy(t) = &e.expr else { panic!() };
        assert_eq!(
            (t.family(), t.reg_addr(), t.reg_port()),
            (Some(2), Some(Register::Reg1), None)
        );
    }
}
