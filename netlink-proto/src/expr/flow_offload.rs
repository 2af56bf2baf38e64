//! `flow_offload`: Adds the connection to a flowtable (`flow add @ft`).

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters, Str};

attr_enum! {
    /// `flow_offload` expression attributes.
    pub enum FlowOffloadAttr {
        TableName(Str) = NFTA_FLOW_TABLE_NAME,
    }
}

expr_struct! {
    /// The `flow_offload` expression.
    pub struct FlowOffload(FlowOffloadAttr) = "flow_offload";
}

impl FlowOffload {
    getters! { FlowOffloadAttr {
        table_name: TableName => str,
    } }
}
