//! `payload`: Loads packet bytes into a register, or (with SREG) writes a register into the packet, fixing checksums.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters, u32_enum};

u32_enum! {
    /// Header a payload offset counts from (`enum nft_payload_bases`).
    pub enum PayloadBase {
        LinkLayer = NFT_PAYLOAD_LL_HEADER,
        Network = NFT_PAYLOAD_NETWORK_HEADER,
        Transport = NFT_PAYLOAD_TRANSPORT_HEADER,
        Inner = NFT_PAYLOAD_INNER_HEADER,
        Tunnel = crate::extra::NFT_PAYLOAD_TUN_HEADER,
    }
}

attr_enum! {
    /// `payload` expression attributes.
    pub enum PayloadAttr {
        Dreg(Register) = NFTA_PAYLOAD_DREG,
        Base(PayloadBase) = NFTA_PAYLOAD_BASE,
        Offset(u32) = NFTA_PAYLOAD_OFFSET,
        Len(u32) = NFTA_PAYLOAD_LEN,
        Sreg(Register) = NFTA_PAYLOAD_SREG,
        CsumType(u32) = NFTA_PAYLOAD_CSUM_TYPE,
        CsumOffset(u32) = NFTA_PAYLOAD_CSUM_OFFSET,
        CsumFlags(u32) = NFTA_PAYLOAD_CSUM_FLAGS,
    }
}

expr_struct! {
    /// The `payload` expression.
    pub struct Payload(PayloadAttr) = "payload";
}

impl Payload {
    getters! { PayloadAttr {
        dreg: Dreg => copy<Register>,
        base: Base => copy<PayloadBase>,
        offset: Offset => copy<u32>,
        len: Len => copy<u32>,
        sreg: Sreg => copy<Register>,
        csum_type: CsumType => copy<u32>,
        csum_offset: CsumOffset => copy<u32>,
        csum_flags: CsumFlags => copy<u32>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;
    use netlink_packet_core::NLA_F_NESTED;

    #[test]
    fn transport_port_load_from_iptables() {
        // iptables-nft -A INPUT -p tcp -m tcp --dport 22: load 2 bytes at transport + 2.
        let e = elem("340001800c0001007061796c6f616400240002800800010000000001080002000000000208000300000000020800040000000002");
        let Expr::Payload(p) = &e.expr else {
            panic!("{e:?}")
        };
        assert_eq!(p.dreg(), Some(Register::Reg1));
        assert_eq!(p.base(), Some(PayloadBase::Transport));
        assert_eq!((p.offset(), p.len()), (Some(2), Some(2)));
        assert_eq!(p.sreg(), None);
        assert_eq!((e.flags, e.data_flags), (NLA_F_NESTED, Some(NLA_F_NESTED)));
    }

    #[test]
    fn raw_payload_dump_from_kernel() {
        // nft list ruleset after `@ll,0,1 1`: the kernel's form, nests without flags.
        let e = elem("340001000c0001007061796c6f616400240002000800010000000001080002000000000008000300000000000800040000000001");
        let Expr::Payload(p) = &e.expr else { panic!() };
        assert_eq!(p.base(), Some(PayloadBase::LinkLayer));
        assert_eq!((p.offset(), p.len()), (Some(0), Some(1)));
        assert_eq!((e.flags, e.data_flags), (0, Some(0)));
    }
}
