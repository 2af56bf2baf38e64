//! `synproxy`: SYN proxy. Also the data of synproxy objects.

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `synproxy` expression attributes.
    pub enum SynproxyAttr {
        Mss(u16) = NFTA_SYNPROXY_MSS,
        Wscale(u8) = NFTA_SYNPROXY_WSCALE,
        Flags(u32) = NFTA_SYNPROXY_FLAGS,
    }
}

expr_struct! {
    /// The `synproxy` expression.
    pub struct Synproxy(SynproxyAttr) = "synproxy";
}

impl Synproxy {
    getters! { SynproxyAttr {
        mss: Mss => copy<u16>,
        wscale: Wscale => copy<u8>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn synproxy_statement() {
        // nft add rule inet t input tcp dport 80 synproxy mss 1460 wscale 7 timestamp sack-perm
        let e = elem("300001800d00010073796e70726f7879000000001c0002800600010005b400000500020007000000080003000000000f");
        let Expr::Synproxy(s) = &e.expr else { panic!() };
        assert_eq!((s.mss(), s.wscale()), (Some(1460), Some(7)));
        // NF_SYNPROXY_OPT_MSS | _WSCALE | _SACK_PERM | _TIMESTAMP
        assert_eq!(s.flags(), Some(0x0f));
    }
}
