//! ebtables (`ebt_*`) and arptables (`arpt_*`) extension blobs, named after their C
//! structs. Targets carry an ebtables verdict (`EBT_ACCEPT` -1 ... `EBT_RETURN` -4) in
//! an `int`.

use super::xt_struct;

xt_struct! {
    /// `struct ebt_ip_info` (`--ip-*`).
    EbtIpInfo = 28; {
        tos: u8 @ 16, protocol: u8 @ 17, bitmask: u8 @ 18, invflags: u8 @ 19,
        sport_min: u16 @ 20, sport_max: u16 @ 22, dport_min: u16 @ 24, dport_max: u16 @ 26,
        /// `icmp_type[2]` and `igmp_type[2]` share the place of `sport`, `icmp_code[2]`
        /// follows.
        icmp: [4] @ 20,
    }
}

xt_struct! {
    /// `struct ebt_ip6_info` (`--ip6-*`).
    EbtIp6Info = 76; {
        tclass: u8 @ 64, protocol: u8 @ 65, bitmask: u8 @ 66, invflags: u8 @ 67,
        sport_min: u16 @ 68, sport_max: u16 @ 70, dport_min: u16 @ 72, dport_max: u16 @ 74,
        /// `icmpv6_type[2]` then `icmpv6_code[2]`, in the place of `sport`.
        icmp: [4] @ 68,
    }
}

xt_struct! {
    /// `struct ebt_arp_info` (`--arp-*`).
    EbtArpInfo = 52; { bitmask: u8 @ 48, invflags: u8 @ 49 }
}

xt_struct! {
    /// `struct ebt_vlan_info` (`--vlan-*`).
    EbtVlanInfo = 8; { id: u16 @ 0, prio: u8 @ 2, encap: be16 @ 4, bitmask: u8 @ 6, invflags: u8 @ 7 }
}

xt_struct! {
    /// `struct ebt_802_3_info` (`--802_3-*`).
    Ebt8023Info = 6; { bitmask: u8 @ 4, invflags: u8 @ 5 }
}

xt_struct! {
    /// `struct ebt_mark_m_info` (`--mark`).
    EbtMarkMInfo = 24; { mark: u64 @ 0, mask: u64 @ 8, invert: u8 @ 16, bitmask: u8 @ 17 }
}

xt_struct! {
    /// `struct ebt_pkttype_info` (`--pkttype-type`).
    EbtPkttypeInfo = 2; { pkt_type: u8 @ 0, invert: u8 @ 1 }
}

xt_struct! {
    /// `struct ebt_stp_info` (`--stp-*`).
    EbtStpInfo = 72; { bitmask: u16 @ 68, invflags: u16 @ 70 }
}

xt_struct! {
    /// `struct ebt_mark_t_info` (`-j mark`): the mark operation in the high bits of
    /// `target`, the verdict in its low four.
    EbtMarkTInfo = 16; { mark: u64 @ 0, target: u32 @ 8 }
}

xt_struct! {
    /// `struct ebt_nat_info` (`-j snat`, `-j dnat`).
    EbtNatInfo = 12; { mac: [6] @ 0, target: u32 @ 8 }
}

xt_struct! {
    /// `struct ebt_redirect_info` (`-j redirect`).
    EbtRedirectInfo = 4; { target: u32 @ 0 }
}

xt_struct! {
    /// `struct ebt_log_info` (`--log`).
    EbtLogInfo = 36; { loglevel: u8 @ 0, prefix: [30] @ 1, bitmask: u32 @ 32 }
}

xt_struct! {
    /// `struct ebt_nflog_info` (`--nflog`).
    EbtNflogInfo = 76; { len: u32 @ 0, group: u16 @ 4, threshold: u16 @ 6, flags: u16 @ 8, prefix: [64] @ 12 }
}

xt_struct! {
    /// `struct ebt_arpreply_info` (`-j arpreply`).
    EbtArpreplyInfo = 12; { mac: [6] @ 0, target: u32 @ 8 }
}

xt_struct! {
    /// `struct arpt_mangle` (arptables `-j mangle`).
    ArptMangle = 48; { flags: u8 @ 40, target: u32 @ 44 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_encap_is_big_endian() {
        let v = EbtVlanInfo::parse(&[2, 0, 1, 0, 0x08, 0x00, 5, 0]).unwrap();
        assert_eq!((v.id, v.prio, v.encap, v.bitmask), (2, 1, 0x0800, 5));
        assert!(EbtVlanInfo::parse(&[0; 7]).is_none());
    }
}
