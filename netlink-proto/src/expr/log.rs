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
