//! `objref`: Applies a named stateful object, by name or through a map.

use super::expr_struct;
use crate::consts::*;
use crate::data::ObjType;
use crate::data::Register;
use crate::typed::{attr_enum, getters, Str};

attr_enum! {
    /// `objref` expression attributes.
    pub enum ObjrefAttr {
        ImmType(ObjType) = NFTA_OBJREF_IMM_TYPE,
        ImmName(Str) = NFTA_OBJREF_IMM_NAME,
        SetSreg(Register) = NFTA_OBJREF_SET_SREG,
        SetName(Str) = NFTA_OBJREF_SET_NAME,
        SetId(u32) = NFTA_OBJREF_SET_ID,
    }
}

expr_struct! {
    /// The `objref` expression.
    pub struct Objref(ObjrefAttr) = "objref";
}

impl Objref {
    getters! { ObjrefAttr {
        imm_type: ImmType => copy<ObjType>,
        imm_name: ImmName => str,
        set_sreg: SetSreg => copy<Register>,
        set_name: SetName => str,
        set_id: SetId => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn named_counter_and_unterminated_quota_name() {
        // nft -f - ('counter name cnt')
        let e = elem("240001800b0001006f626a726566000014000280080001000000000107000200636e7400");
        let Expr::Objref(o) = &e.expr else { panic!() };
        assert_eq!(
            (o.imm_type(), o.imm_name()),
            (Some(ObjType::Counter), Some("cnt"))
        );
        // nft add rule ... 'quota name "qt1"': nft sends the quoted name without NUL.
        let e = elem("240001800b0001006f626a72656600001400028008000100000000020700020071743100");
        let Expr::Objref(o) = &e.expr else { panic!() };
        assert_eq!(
            (o.imm_type(), o.imm_name()),
            (Some(ObjType::Quota), Some("qt1"))
        );
        assert!(matches!(&o.attrs[1], ObjrefAttr::ImmName(s) if !s.nul));
    }
}
