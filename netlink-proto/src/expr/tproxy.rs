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
