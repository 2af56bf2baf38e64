//! Target blobs (`-j NAME`), named after their C structs.

use super::xt_struct;

xt_struct! {
    /// `struct ipt_reject_info` / `struct ip6t_reject_info` (`-j REJECT`): an enum,
    /// numbered per family.
    RejectInfo = 4; { with: u32 @ 0 }
}

xt_struct! {
    /// `struct xt_log_info` (`-j LOG`).
    LogInfo = 32; { level: u8 @ 0, logflags: u8 @ 1, prefix: [30] @ 2 }
}

xt_struct! {
    /// `struct xt_nflog_info` (`-j NFLOG`).
    NflogInfo = 76; {
        len: u32 @ 0, group: u16 @ 4, threshold: u16 @ 6, flags: u16 @ 8, prefix: [64] @ 12,
    }
}

xt_struct! {
    /// `struct xt_mark_tginfo2` (`-j MARK`, revision 2).
    MarkTginfo2 = 8; { mark: u32 @ 0, mask: u32 @ 4 }
}

xt_struct! {
    /// `struct xt_connmark_tginfo1` (`-j CONNMARK`, revision 1).
    ConnmarkTginfo1 = 16; { ctmark: u32 @ 0, ctmask: u32 @ 4, nfmask: u32 @ 8, mode: u8 @ 12 }
}

xt_struct! {
    /// `struct xt_connmark_tginfo2` (revision 2: adds a shift).
    ConnmarkTginfo2 = 16; {
        ctmark: u32 @ 0, ctmask: u32 @ 4, nfmask: u32 @ 8,
        shift_dir: u8 @ 12, shift_bits: u8 @ 13, mode: u8 @ 14,
    }
}

xt_struct! {
    /// `struct nf_nat_ipv4_multi_range_compat`: IPv4 MASQUERADE, REDIRECT, NETMAP and
    /// SNAT/DNAT revision 0. Addresses and ports are big endian.
    NatIpv4MultiRangeCompat = 20; {
        rangesize: u32 @ 0, flags: u32 @ 4, min_ip: [4] @ 8, max_ip: [4] @ 12,
        min_proto: be16 @ 16, max_proto: be16 @ 18,
    }
}

xt_struct! {
    /// `struct nf_nat_range`: IPv6 MASQUERADE, REDIRECT, NETMAP and SNAT/DNAT revision 1.
    NatRange = 40; { flags: u32 @ 0, min_addr: [16] @ 4, max_addr: [16] @ 20 }
}

xt_struct! {
    /// `struct nf_nat_range2`: SNAT/DNAT revision 2 (adds a base port for shifts).
    NatRange2 = 44; { flags: u32 @ 0, min_addr: [16] @ 4, max_addr: [16] @ 20, base_proto: be16 @ 40 }
}

xt_struct! {
    /// `struct xt_tcpmss_info` (`-j TCPMSS`); 0xffff is `--clamp-mss-to-pmtu`.
    TcpmssInfo = 2; { mss: u16 @ 0 }
}

xt_struct! {
    /// `struct xt_ct_target_info` (`-j CT`, revision 0).
    CtTargetInfo = 40; { flags: u16 @ 0, zone: u16 @ 2, ct_events: u32 @ 4, exp_events: u32 @ 8, helper: [16] @ 12 }
}

xt_struct! {
    /// `struct xt_ct_target_info_v1` (revisions 1 and 2: adds a timeout policy name).
    CtTargetInfoV1 = 72; {
        flags: u16 @ 0, zone: u16 @ 2, ct_events: u32 @ 4, exp_events: u32 @ 8,
        helper: [16] @ 12, timeout: [32] @ 28,
    }
}

xt_struct! {
    /// `struct xt_CHECKSUM_info` (`-j CHECKSUM`).
    ChecksumInfo = 1; { operation: u8 @ 0 }
}

xt_struct! {
    /// `struct xt_DSCP_info` (`-j DSCP`).
    DscpTgInfo = 1; { dscp: u8 @ 0 }
}

xt_struct! {
    /// `struct xt_tos_target_info` (`-j TOS`, revision 1).
    TosTargetInfo = 2; { tos_value: u8 @ 0, tos_mask: u8 @ 1 }
}

xt_struct! {
    /// `struct ipt_TTL_info` / `struct ip6t_HL_info` (`-j TTL`, `-j HL`).
    TtlTgInfo = 2; { mode: u8 @ 0, value: u8 @ 1 }
}

xt_struct! {
    /// `struct ipt_ECN_info` (`-j ECN`).
    EcnTgInfo = 3; { operation: u8 @ 0, ip_ect: u8 @ 1 }
}

xt_struct! {
    /// `struct xt_classify_target_info` (`-j CLASSIFY`).
    ClassifyInfo = 4; { priority: u32 @ 0 }
}

xt_struct! {
    /// `struct xt_NFQ_info` (`-j NFQUEUE`, revision 0).
    NfqInfo = 2; { queuenum: u16 @ 0 }
}

xt_struct! {
    /// `struct xt_NFQ_info_v1` (revision 1: a range of queues).
    NfqInfoV1 = 4; { queuenum: u16 @ 0, queues_total: u16 @ 2 }
}

xt_struct! {
    /// `struct xt_NFQ_info_v2` / v3 (revision 2: bypass; revision 3: flags; same place).
    NfqInfoV3 = 6; { queuenum: u16 @ 0, queues_total: u16 @ 2, flags: u16 @ 4 }
}

xt_struct! {
    /// `struct xt_audit_info` (`-j AUDIT`).
    AuditInfo = 1; { audit_type: u8 @ 0 }
}

xt_struct! {
    /// `struct xt_connsecmark_target_info` (`-j CONNSECMARK`).
    ConnsecmarkInfo = 1; { mode: u8 @ 0 }
}

xt_struct! {
    /// `struct xt_tcpoptstrip_target_info` (`-j TCPOPTSTRIP`).
    TcpoptstripInfo = 32; { strip_bmap: [32] @ 0 }
}

xt_struct! {
    /// `struct xt_tproxy_target_info` (`-j TPROXY`, revision 0, IPv4).
    TproxyInfo = 16; { lport: be16 @ 12 }
}

xt_struct! {
    /// `struct xt_tproxy_target_info_v1` (revision 1).
    TproxyInfoV1 = 28; { lport: be16 @ 24 }
}

xt_struct! {
    /// `struct xt_hmark_info` (`-j HMARK`).
    HmarkInfo = 60; { flags: u32 @ 40, proto_mask: u8 @ 44, hmodulus: u32 @ 52 }
}

xt_struct! {
    /// `struct idletimer_tg_info` (`-j IDLETIMER`, revision 0).
    IdletimerInfo = 40; { timeout: u32 @ 0, label: [28] @ 4 }
}

xt_struct! {
    /// `struct idletimer_tg_info_v1` (revision 1: timer type).
    IdletimerInfoV1 = 48; { timeout: u32 @ 0, label: [28] @ 4, timer_type: u8 @ 33 }
}

xt_struct! {
    /// `struct xt_rateest_target_info` (`-j RATEEST`).
    RateestTargetInfo = 32; { name: [16] @ 0, interval: u8 @ 16, ewma_log: u8 @ 17 }
}

xt_struct! {
    /// `struct xt_synproxy_info` (`-j SYNPROXY`).
    SynproxyInfo = 4; { options: u8 @ 0, wscale: u8 @ 1, mss: u16 @ 2 }
}

xt_struct! {
    /// `struct xt_tee_tginfo` (`-j TEE`).
    TeeTginfo = 40; { gw: [16] @ 0, oif: [16] @ 16 }
}

xt_struct! {
    /// `struct ip6t_npt_tginfo` (`-j SNPT`, `-j DNPT`).
    NptTginfo = 36; { src_pfx: [16] @ 0, dst_pfx: [16] @ 16, src_pfx_len: u8 @ 32, dst_pfx_len: u8 @ 33 }
}

xt_struct! {
    /// `struct xt_secmark_target_info` (and `_v1`: same size) (`-j SECMARK`).
    SecmarkTargetInfo = 264; { mode: u8 @ 0, secctx: [256] @ 8 }
}

xt_struct! {
    /// `struct xt_set_info_target_v0` (`-j SET`, revision 0).
    SetInfoTargetV0 = 64; { add_index: u16 @ 0, del_index: u16 @ 32 }
}

xt_struct! {
    /// `struct xt_set_info_target_v1` (revision 1: two `struct xt_set_info`).
    SetInfoTargetV1 = 8; { add_index: u16 @ 0, add_dim: u8 @ 2, del_index: u16 @ 4, del_dim: u8 @ 6 }
}

xt_struct! {
    /// `struct xt_set_info_target_v2` (revision 2: adds flags and a timeout).
    SetInfoTargetV2 = 16; { add_index: u16 @ 0, add_dim: u8 @ 2, del_index: u16 @ 4, del_dim: u8 @ 6 }
}

xt_struct! {
    /// `struct xt_set_info_target_v3` (revision 3: adds a map set).
    SetInfoTargetV3 = 20; { add_index: u16 @ 0, add_dim: u8 @ 2, del_index: u16 @ 4, del_dim: u8 @ 6 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_target_blobs() {
        // ip6tables-nft -p tcp -j REJECT --reject-with tcp-reset (recorded)
        let r = RejectInfo::parse(&[6, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(r.with, 6);
        // iptables-nft -t nat -A POSTROUTING -j SNAT --to-source 1.2.3.4 (kernel dump)
        let snat = [
            1u8, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3, 4, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let n = NatIpv4MultiRangeCompat::parse(&snat).unwrap();
        assert_eq!(
            (n.rangesize, n.flags, n.min_ip.as_slice()),
            (1, 1, &[1u8, 2, 3, 4][..])
        );
        // -j CT --notrack (revision 2)
        let mut ct = vec![3u8, 0];
        ct.resize(72, 0);
        assert_eq!(CtTargetInfoV1::parse(&ct).unwrap().flags, 3);
        assert!(CtTargetInfoV1::parse(&ct[..40]).is_none());
    }
}
