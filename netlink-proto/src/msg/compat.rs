//! The xtables compat subsystem (`NFNL_SUBSYS_NFT_COMPAT`): iptables-nft asks which
//! revision of a match or target the kernel has (`NFNL_MSG_COMPAT_GET`), and the
//! answer carries the same attributes.

use crate::consts::*;
use crate::typed::{attr_enum, attr_list, getters, Str};

attr_enum! {
    /// `NFTA_COMPAT_*`.
    pub enum CompatAttr {
        /// Extension name (`comment`, `REJECT`, ...).
        Name(Str) = NFTA_COMPAT_NAME,
        Rev(u32) = NFTA_COMPAT_REV,
        /// 1 for a target, 0 for a match.
        Type(u32) = NFTA_COMPAT_TYPE,
    }
}

attr_list! {
    /// A compat revision query or answer.
    pub struct Compat(CompatAttr);
}

impl Compat {
    getters! { CompatAttr {
        name: Name => str,
        rev: Rev => copy<u32>,
        ext_type: Type => copy<u32>,
    } }
}
