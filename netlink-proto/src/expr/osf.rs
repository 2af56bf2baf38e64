//! `osf`: Passive OS fingerprinting.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `osf` expression attributes.
    pub enum OsfAttr {
        Dreg(Register) = NFTA_OSF_DREG,
        Ttl(u8) = NFTA_OSF_TTL,
        Flags(u32) = NFTA_OSF_FLAGS,
    }
}

expr_struct! {
    /// The `osf` expression.
    pub struct Osf(OsfAttr) = "osf";
}

impl Osf {
    getters! { OsfAttr {
        dreg: Dreg => copy<Register>,
        ttl: Ttl => copy<u8>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn os_name() {
        // nft add rule inet osfinet osfchain 'ct mark set osf name map { ... }'
        let e = elem("20000180080001006f7366001400028008000100000000010500020000000000");
        let Expr::Osf(o) = &e.expr else { panic!() };
        assert_eq!(
            (o.dreg(), o.ttl(), o.flags()),
            (Some(Register::Reg1), Some(0), None)
        );
    }
}
