//! `osf`: Passive OS fingerprinting.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `osf` expression attributes.
    pub enum OsfAttr {
        Dreg(Register) = NFTA_OSF_DREG,
        Ttl(u8) = NFTA_OSF_TTL,
        Flags(u32) = NFTA_OSF_FLAGS,
    }
}

expr_struct! {
    /// The `osf` expression.
    pub struct Osf(OsfAttr) = "osf";
}

impl Osf {
    getters! { OsfAttr {
        dreg: Dreg => copy<Register>,
        ttl: Ttl => copy<u8>,
        flags: Flags => copy<u32>,
    } }
}
