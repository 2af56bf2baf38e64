//! `redir`: Redirect to the local machine.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `redir` expression attributes.
    pub enum RedirAttr {
        RegProtoMin(Register) = NFTA_REDIR_REG_PROTO_MIN,
        RegProtoMax(Register) = NFTA_REDIR_REG_PROTO_MAX,
        Flags(u32) = NFTA_REDIR_FLAGS,
    }
}

expr_struct! {
    /// The `redir` expression.
    pub struct Redir(RedirAttr) = "redir";
}

impl Redir {
    getters! { RedirAttr {
        reg_proto_min: RegProtoMin => copy<Register>,
        reg_proto_max: RegProtoMax => copy<Register>,
        flags: Flags => copy<u32>,
    } }
}
