//! `match` and `target`: xtables extensions run by nf_tables (`nft_compat`), as
//! iptables-nft sends them for everything it cannot express natively (`-m comment`,
//! `-m multiport`, `-j REJECT`, `-j LOG`, ...). INFO is the extension's raw
//! `struct xt_*_info`, which `iptables -S` decodes again from the dump, so it must come
//! back byte for byte.

use crate::consts::*;
use crate::typed::{attr_enum, getters, Str};

use super::expr_struct;

attr_enum! {
    /// `match` expression attributes (`NFTA_MATCH_*`).
    pub enum MatchAttr {
        Name(Str) = NFTA_MATCH_NAME,
        Rev(u32) = NFTA_MATCH_REV,
        Info(Vec<u8>) = NFTA_MATCH_INFO,
    }
}

expr_struct! {
    /// An xtables match.
    pub struct Match(MatchAttr) = "match";
}

impl Match {
    getters! { MatchAttr {
        ext_name: Name => str,
        rev: Rev => copy<u32>,
        info: Info => bytes,
    } }
}

attr_enum! {
    /// `target` expression attributes (`NFTA_TARGET_*`).
    pub enum TargetAttr {
        Name(Str) = NFTA_TARGET_NAME,
        Rev(u32) = NFTA_TARGET_REV,
        Info(Vec<u8>) = NFTA_TARGET_INFO,
    }
}

expr_struct! {
    /// An xtables target.
    pub struct Target(TargetAttr) = "target";
}

impl Target {
    getters! { TargetAttr {
        ext_name: Name => str,
        rev: Rev => copy<u32>,
        info: Info => bytes,
    } }
}
