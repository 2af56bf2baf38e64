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
