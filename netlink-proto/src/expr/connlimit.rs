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

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn ct_count() {
        // nft add rule inet test-inet output 'ct count 3'
        let e = elem(
            "280001800e000100636f6e6e6c696d69740000001400028008000100000000030800020000000000",
        );
        let Expr::Connlimit(c) = &e.expr else {
            panic!()
        };
        assert_eq!((c.count(), c.flags()), (Some(3), Some(0)));
    }
}
