//! `objref`: Applies a named stateful object, by name or through a map.

use super::expr_struct;
use crate::consts::*;
use crate::data::ObjType;
use crate::data::Register;
use crate::typed::{attr_enum, getters, Str};

attr_enum! {
    /// `objref` expression attributes.
    pub enum ObjrefAttr {
        ImmType(ObjType) = NFTA_OBJREF_IMM_TYPE,
        ImmName(Str) = NFTA_OBJREF_IMM_NAME,
        SetSreg(Register) = NFTA_OBJREF_SET_SREG,
        SetName(Str) = NFTA_OBJREF_SET_NAME,
        SetId(u32) = NFTA_OBJREF_SET_ID,
    }
}

expr_struct! {
    /// The `objref` expression.
    pub struct Objref(ObjrefAttr) = "objref";
}

impl Objref {
    getters! { ObjrefAttr {
        imm_type: ImmType => copy<ObjType>,
        imm_name: ImmName => str,
        set_sreg: SetSreg => copy<Register>,
        set_name: SetName => str,
        set_id: SetId => copy<u32>,
    } }
}
