//! `connlimit`: Limits the number of connections (`ct count`). Also the data of connlimit objects.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `connlimit` expression attributes.
    pub enum ConnlimitAttr {
        Count(u32) = NFTA_CONNLIMIT_COUNT,
        Flags(u32) = NFTA_CONNLIMIT_FLAGS,
    }
}

expr_struct! {
    /// The `connlimit` expression.
    pub struct Connlimit(ConnlimitAttr) = "connlimit";
}

impl Connlimit {
    getters! { ConnlimitAttr {
        count: Count => copy<u32>,
        flags: Flags => copy<u32>,
    } }
}
