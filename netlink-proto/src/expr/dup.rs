//! `dup`: Duplicates the packet to an address / device.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `dup` expression attributes.
    pub enum DupAttr {
        SregAddr(Register) = NFTA_DUP_SREG_ADDR,
        SregDev(Register) = NFTA_DUP_SREG_DEV,
    }
}

expr_struct! {
    /// The `dup` expression.
    pub struct Dup(DupAttr) = "dup";
}

impl Dup {
    getters! { DupAttr {
        sreg_addr: SregAddr => copy<Register>,
        sreg_dev: SregDev => copy<Register>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn dup_to_address() {
        // nft add rule ip6 test-ip6 input 'dup to abcd::1'
        let e = elem("1800018008000100647570000c0002800800010000000001");
        let Expr::Dup(d) = &e.expr else { panic!() };
        assert_eq!((d.sreg_addr(), d.sreg_dev()), (Some(Register::Reg1), None));
    }
}
