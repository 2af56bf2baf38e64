//! `last`: Remembers when the rule last matched.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `last` expression attributes.
    pub enum LastAttr {
        Set(u32) = NFTA_LAST_SET,
        Msecs(u64) = NFTA_LAST_MSECS,
    }
}

expr_struct! {
    /// The `last` expression.
    pub struct Last(LastAttr) = "last";
}

impl Last {
    getters! { LastAttr {
        set: Set => copy<u32>,
        msecs: Msecs => copy<u64>,
    } }
}
