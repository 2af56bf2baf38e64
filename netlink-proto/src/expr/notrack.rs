//! `notrack`: Marks the packet untracked. Has no attributes; the kernel dumps it without DATA.

use super::expr_struct;
use crate::typed::attr_enum;

attr_enum! {
    /// `notrack` expression attributes.
    pub enum NotrackAttr {}
}

expr_struct! {
    /// The `notrack` expression.
    pub struct Notrack(NotrackAttr) = "notrack";
}
