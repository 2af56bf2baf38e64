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
