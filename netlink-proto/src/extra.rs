//! Constants that the uapi headers define by expression (so the generator skips them)
//! or that live in headers outside `linux/netfilter/`.

/// `NLMSG_MIN_TYPE`: batch begin, as nfnetlink spells it (no subsystem byte).
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// Batch end.
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
/// The `ingress` hook number of the inet family (`NF_INET_NUMHOOKS`).
pub const NF_INET_INGRESS: u32 = 5;
/// Version byte of `nfgenmsg`.
pub const NFNETLINK_V0: u8 = 0;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const NLMSG_HDRLEN: usize = 16;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_ECHO: u16 = 0x08;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP_FILTERED: u16 = 0x20;
// GET modifiers
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_ATOMIC: u16 = 0x400;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
// NEW modifiers
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
// DELETE modifier
pub const NLM_F_NONREC: u16 = 0x100;
// ACK flags
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Extended ACK attributes (`enum nlmsgerr_attrs`).
pub const NLMSGERR_ATTR_MSG: u16 = 1;
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
pub const NLMSGERR_ATTR_COOKIE: u16 = 3;

/// Netlink socket options (SOL_NETLINK = 270).
pub const SOL_NETLINK: i32 = 270;
pub const NETLINK_ADD_MEMBERSHIP: i32 = 1;
pub const NETLINK_DROP_MEMBERSHIP: i32 = 2;
pub const NETLINK_PKTINFO: i32 = 3;
pub const NETLINK_BROADCAST_ERROR: i32 = 4;
pub const NETLINK_NO_ENOBUFS: i32 = 5;
pub const NETLINK_LISTEN_ALL_NSID: i32 = 8;
pub const NETLINK_LIST_MEMBERSHIPS: i32 = 9;
pub const NETLINK_CAP_ACK: i32 = 10;
pub const NETLINK_EXT_ACK: i32 = 11;
pub const NETLINK_GET_STRICT_CHK: i32 = 12;

/// Address families carried in `nfgenmsg.nfgen_family`.
pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_ARP: u8 = 3;
pub const NFPROTO_NETDEV: u8 = 5;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;

// ---- newer uapi (kernel 6.x) than the headers `consts.rs` was generated from ----
// The running kernel (6.18) knows these; nft 1.0.6 and iptables-nft 1.8.9 do not send
// them, but a kernel dump or a newer client may.

/// Get rules and reset their stateful expressions.
pub const NFT_MSG_GETRULE_RESET: u16 = 25;
pub const NFT_MSG_DESTROYTABLE: u16 = 26;
pub const NFT_MSG_DESTROYCHAIN: u16 = 27;
pub const NFT_MSG_DESTROYRULE: u16 = 28;
pub const NFT_MSG_DESTROYSET: u16 = 29;
pub const NFT_MSG_DESTROYSETELEM: u16 = 30;
pub const NFT_MSG_DESTROYOBJ: u16 = 31;
pub const NFT_MSG_DESTROYFLOWTABLE: u16 = 32;
/// Get set elements and reset their stateful expressions.
pub const NFT_MSG_GETSETELEM_RESET: u16 = 33;

pub const NFT_TABLE_F_PERSIST: u32 = 4;

/// Set backend name (string), dumped by newer kernels.
pub const NFTA_SET_TYPE: u16 = 19;
/// Number of set elements (u32), dumped by newer kernels.
pub const NFTA_SET_COUNT: u16 = 20;

pub const NFTA_BITWISE_SREG2: u16 = 8;
pub const NFT_BITWISE_AND: u32 = 3;
pub const NFT_BITWISE_OR: u32 = 4;
pub const NFT_BITWISE_XOR: u32 = 5;

pub const NFT_PAYLOAD_TUN_HEADER: u32 = 4;
pub const NFT_META_BRI_BROUTE: u32 = 35;

/// The `inner` expression (tunnel payload matching).
pub const NFTA_INNER_UNSPEC: u16 = 0;
pub const NFTA_INNER_NUM: u16 = 1;
pub const NFTA_INNER_TYPE: u16 = 2;
pub const NFTA_INNER_FLAGS: u16 = 3;
pub const NFTA_INNER_HDRSIZE: u16 = 4;
pub const NFTA_INNER_EXPR: u16 = 5;
pub const NFT_INNER_UNSPEC: u32 = 0;
pub const NFT_INNER_VXLAN: u32 = 1;
pub const NFT_INNER_GENEVE: u32 = 2;
pub const NFT_INNER_HDRSIZE: u32 = 1;
pub const NFT_INNER_LL: u32 = 2;
pub const NFT_INNER_NH: u32 = 4;
pub const NFT_INNER_TH: u32 = 8;

/// Conntrack data of a traced packet (kernel 6.x trace events).
pub const NFTA_TRACE_CT_ID: u16 = 18;
pub const NFTA_TRACE_CT_DIRECTION: u16 = 19;
pub const NFTA_TRACE_CT_STATUS: u16 = 20;
pub const NFTA_TRACE_CT_STATE: u16 = 21;

/// A device name prefix (`devices = { "eth*" }`, kernel 6.16+).
pub const NFTA_DEVICE_PREFIX: u16 = 2;
