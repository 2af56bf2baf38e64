//! `immediate`: Loads constant data into a register; into the verdict register for `accept`, `jump` and friends.

use super::expr_struct;
use crate::consts::*;
use crate::data::Data;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `immediate` expression attributes.
    pub enum ImmediateAttr {
        Dreg(Register) = NFTA_IMMEDIATE_DREG,
        Data(Data) = NFTA_IMMEDIATE_DATA,
    }
}

expr_struct! {
    /// The `immediate` expression.
    pub struct Immediate(ImmediateAttr) = "immediate";
}

impl Immediate {
    getters! { ImmediateAttr {
        dreg: Dreg => copy<Register>,
        data: Data => nest<Data>,
    } }
}
