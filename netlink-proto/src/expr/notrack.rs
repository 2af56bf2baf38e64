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

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn no_data_at_all() {
        // nft -f - ('notrack'): libnftnl sends no DATA either.
        let e = elem("100001800c0001006e6f747261636b00");
        assert!(matches!(e.expr, Expr::Notrack(_)));
        assert_eq!(e.data_flags, None);
    }
}
