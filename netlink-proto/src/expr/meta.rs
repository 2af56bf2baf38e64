//! `meta`: Loads packet metadata (`meta KEY`) into a register, or sets it from one.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Meta key (`enum nft_meta_keys`).
    pub enum MetaKey {
        Len = NFT_META_LEN,
        Protocol = NFT_META_PROTOCOL,
        Priority = NFT_META_PRIORITY,
        Mark = NFT_META_MARK,
        Iif = NFT_META_IIF,
        Oif = NFT_META_OIF,
        Iifname = NFT_META_IIFNAME,
        Oifname = NFT_META_OIFNAME,
        Iiftype = NFT_META_IFTYPE,
        Oiftype = NFT_META_OIFTYPE,
        Skuid = NFT_META_SKUID,
        Skgid = NFT_META_SKGID,
        Nftrace = NFT_META_NFTRACE,
        Rtclassid = NFT_META_RTCLASSID,
        Secmark = NFT_META_SECMARK,
        Nfproto = NFT_META_NFPROTO,
        L4proto = NFT_META_L4PROTO,
        BriIifname = NFT_META_BRI_IIFNAME,
        BriOifname = NFT_META_BRI_OIFNAME,
        Pkttype = NFT_META_PKTTYPE,
        Cpu = NFT_META_CPU,
        Iifgroup = NFT_META_IIFGROUP,
        Oifgroup = NFT_META_OIFGROUP,
        Cgroup = NFT_META_CGROUP,
        Prandom = NFT_META_PRANDOM,
        Secpath = NFT_META_SECPATH,
        Iifkind = NFT_META_IIFKIND,
        Oifkind = NFT_META_OIFKIND,
        BriIifpvid = NFT_META_BRI_IIFPVID,
        BriIifvproto = NFT_META_BRI_IIFVPROTO,
        TimeNs = NFT_META_TIME_NS,
        TimeDay = NFT_META_TIME_DAY,
        TimeHour = NFT_META_TIME_HOUR,
        Sdif = NFT_META_SDIF,
        Sdifname = NFT_META_SDIFNAME,
        BriBroute = crate::extra::NFT_META_BRI_BROUTE,
    }
}

attr_enum! {
    /// `meta` expression attributes.
    pub enum MetaAttr {
        Dreg(Register) = NFTA_META_DREG,
        Key(MetaKey) = NFTA_META_KEY,
        Sreg(Register) = NFTA_META_SREG,
    }
}

expr_struct! {
    /// The `meta` expression.
    pub struct Meta(MetaAttr) = "meta";
}

impl Meta {
    getters! { MetaAttr {
        dreg: Dreg => copy<Register>,
        key: Key => copy<MetaKey>,
        sreg: Sreg => copy<Register>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn l4proto_load_from_iptables() {
        // iptables-nft -p tcp: meta l4proto => reg 1 (KEY sent before DREG).
        let e = elem("24000180090001006d657461000000001400028008000200000000100800010000000001");
        let Expr::Meta(m) = &e.expr else { panic!() };
        assert_eq!(
            m.attrs,
            [
                MetaAttr::Key(MetaKey::L4proto),
                MetaAttr::Dreg(Register::Reg1)
            ]
        );
        assert_eq!(m.sreg(), None);
    }

    #[test]
    fn protocol_load_dumped_by_kernel() {
        // nft list ruleset (ebtables among): meta protocol => reg 1.
        let e = elem("24000100090001006d657461000000001400020008000200000000010800010000000001");
        let Expr::Meta(m) = &e.expr else { panic!() };
        assert_eq!(
            (m.key(), m.dreg()),
            (Some(MetaKey::Protocol), Some(Register::Reg1))
        );
        assert_eq!(MetaKey::from(99), MetaKey::Unknown(99));
    }
}
