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

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn comment_match_and_reject_target() {
        // iptables-nft -A INPUT -p tcp -m tcp --dport 22 -m comment --comment foo
        let mut hex_str = String::from("2c0101800a0001006d617463680000001c0102800c000100636f6d6d656e7400080002000000000004010300666f6f00");
        hex_str.push_str(&"00".repeat(252));
        let e = elem(&hex_str);
        let Expr::Match(m) = &e.expr else { panic!() };
        assert_eq!((m.ext_name(), m.rev()), (Some("comment"), Some(0)));
        assert_eq!(m.info().map(<[u8]>::len), Some(256));
        // ip6tables-nft -A INPUT -p tcp -j REJECT --reject-with tcp-reset
        let e = elem("340001800b0001007461726765740000240002800b00010052454a454354000008000200000000000c0003000600000000000000");
        let Expr::Target(t) = &e.expr else { panic!() };
        assert_eq!((t.ext_name(), t.rev()), (Some("REJECT"), Some(0)));
        // struct ip6t_reject_info: with = IP6T_TCP_RESET (6), host order.
        assert_eq!(t.info(), Some(&[6u8, 0, 0, 0, 0, 0, 0, 0][..]));
    }
}
