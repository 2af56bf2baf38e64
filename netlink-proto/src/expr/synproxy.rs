//! `synproxy`: SYN proxy. Also the data of synproxy objects.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `synproxy` expression attributes.
    pub enum SynproxyAttr {
        Mss(u16) = NFTA_SYNPROXY_MSS,
        Wscale(u8) = NFTA_SYNPROXY_WSCALE,
        Flags(u32) = NFTA_SYNPROXY_FLAGS,
    }
}

expr_struct! {
    /// The `synproxy` expression.
    pub struct Synproxy(SynproxyAttr) = "synproxy";
}

impl Synproxy {
    getters! { SynproxyAttr {
        mss: Mss => copy<u16>,
        wscale: Wscale => copy<u8>,
        flags: Flags => copy<u32>,
    } }
}
