//! `fwd`: Forwards the packet to a device (netdev family).

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `fwd` expression attributes.
    pub enum FwdAttr {
        SregDev(Register) = NFTA_FWD_SREG_DEV,
        SregAddr(Register) = NFTA_FWD_SREG_ADDR,
        Nfproto(u32) = NFTA_FWD_NFPROTO,
    }
}

expr_struct! {
    /// The `fwd` expression.
    pub struct Fwd(FwdAttr) = "fwd";
}

impl Fwd {
    getters! { FwdAttr {
        sreg_dev: SregDev => copy<Register>,
        sreg_addr: SregAddr => copy<Register>,
        nfproto: Nfproto => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn fwd_to_device() {
        // nft add rule netdev test-netdev ingress 'fwd to "lo"'
        let e = elem("1800018008000100667764000c0002800800010000000001");
        let Expr::Fwd(f) = &e.expr else { panic!() };
        assert_eq!((f.sreg_dev(), f.nfproto()), (Some(Register::Reg1), None));
    }
}
