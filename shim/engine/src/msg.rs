//! Message numbers and limits of kernel 6.18 that the generated uapi constants (older
//! headers) lack.

pub use netlink_proto::consts::{
    NFT_MSG_DELCHAIN, NFT_MSG_DELFLOWTABLE, NFT_MSG_DELOBJ, NFT_MSG_DELRULE, NFT_MSG_DELSET,
    NFT_MSG_DELSETELEM, NFT_MSG_DELTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETFLOWTABLE, NFT_MSG_GETGEN,
    NFT_MSG_GETOBJ, NFT_MSG_GETOBJ_RESET, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM,
    NFT_MSG_GETTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWFLOWTABLE, NFT_MSG_NEWGEN, NFT_MSG_NEWOBJ,
    NFT_MSG_NEWRULE, NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM, NFT_MSG_NEWTABLE,
};

/// `NFT_MSG_MAX`: the number of nf_tables callbacks.
pub use netlink_proto::extra::{NFT_MSG_GETRULE_RESET, NFT_MSG_DESTROYTABLE, NFT_MSG_DESTROYCHAIN, NFT_MSG_DESTROYRULE, NFT_MSG_DESTROYSET, NFT_MSG_DESTROYSETELEM, NFT_MSG_DESTROYOBJ, NFT_MSG_DESTROYFLOWTABLE, NFT_MSG_GETSETELEM_RESET, NFT_TABLE_F_PERSIST, NFTA_SET_TYPE, NFTA_SET_COUNT};

pub const NFT_MSG_COUNT: u16 = 34;

pub const NFT_TABLE_F_MASK: u32 = 7;
/// `NFT_CHAIN_FLAGS`: BASE | HW_OFFLOAD | BINDING.
pub const NFT_CHAIN_FLAGS: u32 = 7;
pub const NFT_OBJECT_MAX: u32 = 10;
/// `NFT_NAME_MAXLEN - 1`: the longest accepted name.
pub const NAME_MAX: usize = 255;
/// `NFT_MODULE_AUTOLOAD_LIMIT`: MODULE_NAME_LEN (56) - sizeof("nft-expr-255-").
pub const MODULE_AUTOLOAD_LIMIT: usize = 42;
pub const USERDATA_MAXLEN: usize = 256;
pub const IFNAMSIZ: usize = 16;
/// `NLMSG_MIN_TYPE`.
pub const NLMSG_MIN_TYPE: u16 = 0x10;

/// The `NFT_MSG_DESTROY*` twin of a delete message, which ignores ENOENT.
pub fn is_destroy(msg: u16) -> bool {
    (NFT_MSG_DESTROYTABLE..=NFT_MSG_DESTROYFLOWTABLE).contains(&msg)
}

/// nfnetlink subsystem numbers, as the high byte of a message type.
pub const SUBSYS_NFTABLES: u16 = 10;
pub const SUBSYS_NFT_COMPAT: u16 = 11;
/// `NFNL_SUBSYS_COUNT`.
pub const SUBSYS_COUNT: u16 = 13;
