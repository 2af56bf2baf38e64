//! `socket`: Loads data of the socket the packet belongs to.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Socket key (`enum nft_socket_keys`).
    pub enum SocketKey {
        Transparent = NFT_SOCKET_TRANSPARENT,
        Mark = NFT_SOCKET_MARK,
        Wildcard = NFT_SOCKET_WILDCARD,
        Cgroupv2 = NFT_SOCKET_CGROUPV2,
    }
}

attr_enum! {
    /// `socket` expression attributes.
    pub enum SocketAttr {
        Key(SocketKey) = NFTA_SOCKET_KEY,
        Dreg(Register) = NFTA_SOCKET_DREG,
        Level(u32) = NFTA_SOCKET_LEVEL,
    }
}

expr_struct! {
    /// The `socket` expression.
    pub struct Socket(SocketAttr) = "socket";
}

impl Socket {
    getters! { SocketAttr {
        key: Key => copy<SocketKey>,
        dreg: Dreg => copy<Register>,
        level: Level => copy<u32>,
    } }
}
