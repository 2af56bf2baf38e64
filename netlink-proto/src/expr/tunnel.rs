//! `tunnel`: Loads tunnel metadata (`tunnel path`, `tunnel id`).

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `tunnel` expression attributes.
    pub enum TunnelAttr {
        Key(u32) = NFTA_TUNNEL_KEY,
        Dreg(Register) = NFTA_TUNNEL_DREG,
        Mode(u32) = NFTA_TUNNEL_MODE,
    }
}

expr_struct! {
    /// The `tunnel` expression.
    pub struct Tunnel(TunnelAttr) = "tunnel";
}

impl Tunnel {
    getters! { TunnelAttr {
        key: Key => copy<u32>,
        dreg: Dreg => copy<Register>,
        mode: Mode => copy<u32>,
    } }
}
