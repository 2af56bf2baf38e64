//! `quota`: Byte quota. Also the data of quota objects.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `quota` expression attributes.
    pub enum QuotaAttr {
        Bytes(u64) = NFTA_QUOTA_BYTES,
        Flags(u32) = NFTA_QUOTA_FLAGS,
        Consumed(u64) = NFTA_QUOTA_CONSUMED,
    }
}

expr_struct! {
    /// The `quota` expression.
    pub struct Quota(QuotaAttr) = "quota";
}

impl Quota {
    getters! { QuotaAttr {
        bytes: Bytes => copy<u64>,
        flags: Flags => copy<u32>,
        consumed: Consumed => copy<u64>,
    } }
}

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn byte_quota() {
        // nft add rule arp test-arp output 'quota 1025 bytes'
        let e = elem("340001800a00010071756f7461000000240002800c00010000000000000004010c00040000000000000000000800020000000000");
        let Expr::Quota(q) = &e.expr else { panic!() };
        assert_eq!(
            (q.bytes(), q.consumed(), q.flags()),
            (Some(1025), Some(0), Some(0))
        );
    }
}
