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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn transparent() {
        // nft add rule inet sockin sockchain 'socket transparent 0'
        let e = elem("2c0001800b000100736f636b657400001c000280080001000000000008000200000000010800030000000000");
        let Expr::Socket(s) = &e.expr else { panic!() };
        assert_eq!(
            (s.key(), s.dreg(), s.level()),
            (Some(SocketKey::Transparent), Some(Register::Reg1), Some(0))
        );
    }
}
