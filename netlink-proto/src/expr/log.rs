//! `log`: Logs the packet (syslog, or nflog group).

use super::expr_struct;
use crate::consts::*;
use crate::typed::{attr_enum, getters, Str};

attr_enum! {
    /// `log` expression attributes.
    pub enum LogAttr {
        Group(u16) = NFTA_LOG_GROUP,
        Prefix(Str) = NFTA_LOG_PREFIX,
        Snaplen(u32) = NFTA_LOG_SNAPLEN,
        Qthreshold(u16) = NFTA_LOG_QTHRESHOLD,
        Level(u32) = NFTA_LOG_LEVEL,
        Flags(u32) = NFTA_LOG_FLAGS,
    }
}

expr_struct! {
    /// The `log` expression.
    pub struct Log(LogAttr) = "log";
}

impl Log {
    getters! { LogAttr {
        group: Group => copy<u16>,
        prefix: Prefix => str,
        snaplen: Snaplen => copy<u32>,
        qthreshold: Qthreshold => copy<u16>,
        level: Level => copy<u32>,
        flags: Flags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn plain_log_and_nflog_group() {
        // nft add rule ip test-ip4 input 'icmp id 1245 log': empty data.
        let e = elem("10000180080001006c6f670004000280");
        let Expr::Log(l) = &e.expr else { panic!() };
        assert!(l.attrs.is_empty());
        // iptables-nft -S after -j NFLOG --nflog-group 1: the kernel dumps GROUP.
        let e = elem("18000100080001006c6f67000c0002000600010000010000");
        let Expr::Log(l) = &e.expr else { panic!() };
        assert_eq!((l.group(), l.prefix()), (Some(1), None));
    }
}
