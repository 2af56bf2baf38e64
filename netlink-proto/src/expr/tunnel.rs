//! `tunnel`: Loads tunnel metadata (`tunnel path`, `tunnel id`).

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `tunnel` expression attributes.
    pub enum TunnelAttr {
        Key(u32) = NFTA_TUNNEL_KEY,
        Dreg(Register) = NFTA_TUNNEL_DREG,
        Mode(u32) = NFTA_TUNNEL_MODE,
    }
}

expr_struct! {
    /// The `tunnel` expression.
    pub struct Tunnel(TunnelAttr) = "tunnel";
}

impl Tunnel {
    getters! { TunnelAttr {
        key: Key => copy<u32>,
        dreg: Dreg => copy<Register>,
        mode: Mode => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    // nft 1.0.6 cannot write `tunnel` expressions: built here, checked to re-read.
    #[test]
    fn built_tunnel_roundtrips() {
        use crate::data::Register;
        use crate::expr::ExprElem;
        use crate::typed::AttrValue;
        let t = Tunnel::new(vec![
            TunnelAttr::Key(crate::consts::NFT_TUNNEL_ID),
            TunnelAttr::Dreg(Register::Reg1),
        ]);
        let a = ExprElem::new(Expr::Tunnel(t)).encode(crate::consts::NFTA_LIST_ELEM);
        let mut bytes = Vec::new();
        a.emit(&mut bytes);
        let back = elem(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let Expr::Tunnel(t) = &back.expr else {
            panic!()
        };
        assert_eq!((t.key(), t.dreg()), (Some(1), Some(Register::Reg1)));
    }
}
