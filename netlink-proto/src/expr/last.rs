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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    // nft 1.0.6 has no `last` statement, so there are no recorded bytes: this checks
    // the typed form against the layout the kernel dumps (SET u32, MSECS u64).
    #[test]
    fn built_last_roundtrips() {
        use crate::expr::ExprElem;
        use crate::typed::AttrValue;
        let e = ExprElem::plain(Expr::Last(Last::new(vec![
            LastAttr::Set(1),
            LastAttr::Msecs(1500),
        ])));
        let a = e.encode(crate::consts::NFTA_LIST_ELEM);
        assert_eq!(
            &a.value[16..],
            [8, 0, 1, 0, 0, 0, 0, 1, 12, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5, 220]
        );
        let mut bytes = Vec::new();
        a.emit(&mut bytes);
        let back = elem(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(back, e);
    }
}
