//! `hash`: Jenkins or symmetric hash of a register, modulo a value.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum, Str};

u32_enum! {
    /// Hash function (`enum nft_hash_types`).
    pub enum HashType {
        Jenkins = NFT_HASH_JENKINS,
        Sym = NFT_HASH_SYM,
    }
}

attr_enum! {
    /// `hash` expression attributes.
    pub enum HashAttr {
        Sreg(Register) = NFTA_HASH_SREG,
        Dreg(Register) = NFTA_HASH_DREG,
        Len(u32) = NFTA_HASH_LEN,
        Modulus(u32) = NFTA_HASH_MODULUS,
        Seed(u32) = NFTA_HASH_SEED,
        Offset(u32) = NFTA_HASH_OFFSET,
        Type(HashType) = NFTA_HASH_TYPE,
        SetName(Str) = NFTA_HASH_SET_NAME,
        SetId(u32) = NFTA_HASH_SET_ID,
    }
}

expr_struct! {
    /// The `hash` expression.
    pub struct Hash(HashAttr) = "hash";
}

impl Hash {
    getters! { HashAttr {
        sreg: Sreg => copy<Register>,
        dreg: Dreg => copy<Register>,
        len: Len => copy<u32>,
        modulus: Modulus => copy<u32>,
        seed: Seed => copy<u32>,
        offset: Offset => copy<u32>,
        hash_type: Type => copy<HashType>,
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
    fn symhash() {
        // nft add rule arp test-arp output 'queue to symhash mod 65536'
        let e = elem("34000180090001006861736800000000240002800800020000000001080004000001000008000600000000000800070000000001");
        let Expr::Hash(h) = &e.expr else { panic!() };
        assert_eq!(
            (h.dreg(), h.modulus(), h.offset()),
            (Some(Register::Reg1), Some(65536), Some(0))
        );
        assert_eq!(h.hash_type(), Some(HashType::Sym));
    }
}
