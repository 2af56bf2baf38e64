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

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn flow_add() {
        // nft -f - ('flow add @ft', in a batch this kernel rejects: no flowtable support)
        let e = elem("2400018011000100666c6f775f6f66666c6f6164000000000c0002800700010066740000");
        let Expr::FlowOffload(f) = &e.expr else {
            panic!()
        };
        assert_eq!(f.table_name(), Some("ft"));
    }
}
