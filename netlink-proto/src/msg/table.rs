//! Tables: `NFT_MSG_{NEW,GET,DEL,DESTROY}TABLE`.

use crate::consts::*;
use crate::typed::{attr_enum, attr_list, getters, Str};

attr_enum! {
    /// `NFTA_TABLE_*`.
    pub enum TableAttr {
        Name(Str) = NFTA_TABLE_NAME,
        /// `NFT_TABLE_F_DORMANT`, `NFT_TABLE_F_OWNER`, ...
        Flags(u32) = NFTA_TABLE_FLAGS,
        /// Number of chains (dumps only).
        Use(u32) = NFTA_TABLE_USE,
        Handle(u64) = NFTA_TABLE_HANDLE,
        Userdata(Vec<u8>) = NFTA_TABLE_USERDATA,
        /// Netlink port id of the owning socket (`NFT_TABLE_F_OWNER`).
        Owner(u32) = NFTA_TABLE_OWNER,
    }
}

attr_list! {
    /// A table message's attributes.
    pub struct Table(TableAttr);
}

impl Table {
    getters! { TableAttr {
        name: Name => str,
        flags: Flags => copy<u32>,
        use_count: Use => copy<u32>,
        handle: Handle => copy<u64>,
        userdata: Userdata => bytes,
        owner: Owner => copy<u32>,
    } }
}
