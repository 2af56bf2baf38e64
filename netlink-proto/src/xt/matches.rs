//! Match blobs (`-m NAME`), named after their C structs.

use super::xt_struct;

// --- connection tracking -------------------------------------------------------

xt_struct! {
    /// `struct xt_conntrack_mtinfo1` (`-m conntrack`, revision 1).
    ConntrackMtinfo1 = 152; {
        l4proto: u16 @ 136, match_flags: u16 @ 146, invert_flags: u16 @ 148, state_mask: u8 @ 150,
    }
}

xt_struct! {
    /// `struct xt_conntrack_mtinfo2` (revision 2: 16-bit state and status masks).
    ConntrackMtinfo2 = 156; {
        l4proto: u16 @ 136, match_flags: u16 @ 146, invert_flags: u16 @ 148, state_mask: u16 @ 150,
    }
}

xt_struct! {
    /// `struct xt_conntrack_mtinfo3` (revision 3: port ranges).
    ConntrackMtinfo3 = 164; {
        l4proto: u16 @ 136, match_flags: u16 @ 146, invert_flags: u16 @ 148, state_mask: u16 @ 150,
    }
}

xt_struct! {
    /// `struct xt_state_info` (`-m state`).
    StateInfo = 4; { statemask: u32 @ 0 }
}

xt_struct! {
    /// `struct xt_connmark_mtinfo1` (`-m connmark`).
    ConnmarkMtinfo1 = 12; { mark: u32 @ 0, mask: u32 @ 4, invert: u8 @ 8 }
}

xt_struct! {
    /// `struct xt_helper_info` (`-m helper`).
    HelperInfo = 36; { invert: u32 @ 0, name: [30] @ 4 }
}

xt_struct! {
    /// `struct xt_connbytes_info` (`-m connbytes`).
    ConnbytesInfo = 24; { what: u8 @ 16, direction: u8 @ 17 }
}

xt_struct! {
    /// `struct xt_connlimit_info` (`-m connlimit`, revision 1).
    ConnlimitInfo = 32; { limit: u32 @ 16, flags: u32 @ 20 }
}

xt_struct! {
    /// `struct xt_connlabel_mtinfo` (`-m connlabel`).
    ConnlabelMtinfo = 4; { bit: u16 @ 0, options: u16 @ 2 }
}

xt_struct! {
    /// `struct xt_cluster_match_info` (`-m cluster`).
    ClusterMatchInfo = 16; { total_nodes: u32 @ 0, node_mask: u32 @ 4, flags: u32 @ 12 }
}

// --- addresses, ports, protocols -----------------------------------------------

xt_struct! {
    /// `struct xt_tcp` (`-m tcp`).
    Tcp = 12; { option: u8 @ 8, flg_mask: u8 @ 9, flg_cmp: u8 @ 10, invflags: u8 @ 11 }
}

xt_struct! {
    /// `struct xt_udp` (`-m udp`, `-m udplite`).
    Udp = 10; { invflags: u8 @ 8 }
}

xt_struct! {
    /// `struct ipt_icmp` / `struct ip6t_icmp` (same layout).
    Icmp = 4; { icmp_type: u8 @ 0, code_min: u8 @ 1, code_max: u8 @ 2, invflags: u8 @ 3 }
}

xt_struct! {
    /// `struct xt_multiport_v1` (`-m multiport`, revision 1).
    MultiportV1 = 48; { flags: u8 @ 0, count: u8 @ 1, invert: u8 @ 47 }
}

xt_struct! {
    /// `struct xt_iprange_mtinfo` (`-m iprange`, revision 1).
    IprangeMtinfo = 68; { flags: u8 @ 64 }
}

xt_struct! {
    /// `struct xt_addrtype_info` (revision 0, IPv4 only).
    AddrtypeInfo = 12; { source: u16 @ 0, dest: u16 @ 2 }
}

xt_struct! {
    /// `struct xt_addrtype_info_v1` (`-m addrtype`, revision 1).
    AddrtypeInfoV1 = 8; { source: u16 @ 0, dest: u16 @ 2, flags: u32 @ 4 }
}

xt_struct! {
    /// `struct xt_pkttype_info`.
    PkttypeInfo = 8; { pkttype: u32 @ 0, invert: u32 @ 4 }
}

xt_struct! {
    /// `struct xt_length_info`.
    LengthInfo = 6; { min: u16 @ 0, max: u16 @ 2, invert: u8 @ 4 }
}

xt_struct! {
    /// `struct xt_mac_info`.
    MacInfo = 12; { srcaddr: [6] @ 0, invert: u32 @ 8 }
}

xt_struct! {
    /// `struct xt_mark_mtinfo1` (`-m mark`, revision 1).
    MarkMtinfo1 = 12; { mark: u32 @ 0, mask: u32 @ 4, invert: u8 @ 8 }
}

xt_struct! {
    /// `struct xt_tos_match_info` (`-m tos`, revision 1).
    TosMatchInfo = 3; { tos_mask: u8 @ 0, tos_value: u8 @ 1, invert: u8 @ 2 }
}

xt_struct! {
    /// `struct xt_dscp_info` (`-m dscp`).
    DscpInfo = 2; { dscp: u8 @ 0, invert: u8 @ 1 }
}

xt_struct! {
    /// `struct xt_ecn_info` (`-m ecn`).
    EcnInfo = 4; { operation: u8 @ 0, invert: u8 @ 1 }
}

xt_struct! {
    /// `struct xt_tcpmss_match_info` (`-m tcpmss`).
    TcpmssMatchInfo = 6; { mss_min: u16 @ 0, mss_max: u16 @ 2, invert: u8 @ 4 }
}

xt_struct! {
    /// `struct xt_sctp_info` (`-m sctp`).
    SctpInfo = 292; { chunk_match_type: u32 @ 264, flags: u32 @ 284, invflags: u32 @ 288 }
}

xt_struct! {
    /// `struct xt_dccp_info` (`-m dccp`).
    DccpInfo = 16; { flags: u16 @ 8, invflags: u16 @ 10 }
}

xt_struct! {
    /// `struct xt_esp` (`-m esp`).
    Esp = 12; { invflags: u8 @ 8 }
}

xt_struct! {
    /// `struct xt_ipcomp` (`-m ipcomp`).
    Ipcomp = 12; { invflags: u8 @ 8 }
}

xt_struct! {
    /// `struct ipt_ah` (`-m ah`, IPv4).
    IptAh = 12; { invflags: u8 @ 8 }
}

xt_struct! {
    /// `struct ip6t_ah` (`-m ah`, IPv6).
    Ip6tAh = 16; { invflags: u8 @ 13 }
}

xt_struct! {
    /// `struct ip6t_frag` (`-m frag`).
    Ip6tFrag = 16; { invflags: u8 @ 13 }
}

xt_struct! {
    /// `struct ip6t_opts` (`-m hbh`, `-m dst`).
    Ip6tOpts = 40; { flags: u8 @ 4, invflags: u8 @ 5 }
}

xt_struct! {
    /// `struct ip6t_mh` (`-m mh`).
    Ip6tMh = 3; { invflags: u8 @ 2 }
}

xt_struct! {
    /// `struct ip6t_ipv6header_info` (`-m ipv6header`).
    Ip6tIpv6headerInfo = 3; { matchflags: u8 @ 0, invflags: u8 @ 1, modeflag: u8 @ 2 }
}

xt_struct! {
    /// `struct ip6t_srh` (`-m srh`, revision 0).
    Ip6tSrh = 10; { mt_flags: u16 @ 6, mt_invflags: u16 @ 8 }
}

xt_struct! {
    /// `struct ip6t_srh1` (`-m srh`, revision 1).
    Ip6tSrh1 = 108; { mt_flags: u16 @ 104, mt_invflags: u16 @ 106 }
}

xt_struct! {
    /// `struct ipt_ttl_info` / `struct ip6t_hl_info` (`-m ttl`, `-m hl`).
    TtlInfo = 2; { mode: u8 @ 0, value: u8 @ 1 }
}

xt_struct! {
    /// `struct xt_u32` (`-m u32`); the counts of test `i` are at `176 + 180 * i`.
    U32 = 1984; { tests: [1980] @ 0, ntests: u8 @ 1980, invert: u8 @ 1981 }
}

impl U32 {
    /// `xt_u32_test`: 11 locations and 11 values of 8 bytes, then the two counts.
    pub const TEST_SIZE: usize = 180;
    pub const MAX_SIZE: u8 = 10;

    /// (nnums, nvalues) of test `i`.
    pub fn counts(&self, i: usize) -> (u8, u8) {
        let at = |off| self.tests.get(off).copied().unwrap_or(0);
        (at(i * Self::TEST_SIZE + 176), at(i * Self::TEST_SIZE + 177))
    }
}

// --- rates, state tables ------------------------------------------------------

xt_struct! {
    /// `struct xt_rateinfo` (`-m limit`).
    Rateinfo = 40; { avg: u32 @ 0, burst: u32 @ 4 }
}

xt_struct! {
    /// `struct xt_hashlimit_mtinfo1` (revision 1: `struct hashlimit_cfg1`, 32-bit rates).
    HashlimitMtinfo1 = 56; {
        name: [16] @ 0, mode: u32 @ 16, avg: u32 @ 20, burst: u32 @ 24,
        gc_interval: u32 @ 36, expire: u32 @ 40, srcmask: u8 @ 44, dstmask: u8 @ 45,
    }
}

xt_struct! {
    /// `struct xt_hashlimit_mtinfo2` (revision 2: `struct hashlimit_cfg2`, 64-bit rates).
    HashlimitMtinfo2 = 304; {
        name: [255] @ 0, avg: u64 @ 256, burst: u64 @ 264, mode: u32 @ 272,
        gc_interval: u32 @ 284, expire: u32 @ 288, srcmask: u8 @ 292, dstmask: u8 @ 293,
    }
}

xt_struct! {
    /// `struct xt_hashlimit_mtinfo3` (revision 3: `struct hashlimit_cfg3`, with interval).
    HashlimitMtinfo3 = 312; {
        name: [255] @ 0, avg: u64 @ 256, burst: u64 @ 264, mode: u32 @ 272,
        gc_interval: u32 @ 284, expire: u32 @ 288, interval: u32 @ 292,
        srcmask: u8 @ 296, dstmask: u8 @ 297,
    }
}

xt_struct! {
    /// `struct xt_recent_mtinfo` (revision 0).
    RecentMtinfo = 212; {
        seconds: u32 @ 0, hit_count: u32 @ 4, check_set: u8 @ 8, invert: u8 @ 9,
        name: [200] @ 10, side: u8 @ 210,
    }
}

xt_struct! {
    /// `struct xt_recent_mtinfo_v1` (revision 1: adds a mask).
    RecentMtinfoV1 = 228; {
        seconds: u32 @ 0, hit_count: u32 @ 4, check_set: u8 @ 8, invert: u8 @ 9,
        name: [200] @ 10, side: u8 @ 210,
    }
}

xt_struct! {
    /// `struct xt_quota_info` (`-m quota`).
    QuotaInfo = 24; { flags: u32 @ 0 }
}

xt_struct! {
    /// `struct xt_statistic_info` (`-m statistic`).
    StatisticInfo = 24; { mode: u16 @ 0, flags: u16 @ 2 }
}

xt_struct! {
    /// `struct xt_rateest_match_info` (`-m rateest`).
    RateestMatchInfo = 72; { name1: [16] @ 0, name2: [16] @ 16, flags: u16 @ 32, mode: u16 @ 34 }
}

// --- sockets, interfaces, misc ----------------------------------------------------

xt_struct! {
    /// `struct xt_comment_info` (`-m comment`).
    CommentInfo = 256; { comment: [256] @ 0 }
}

xt_struct! {
    /// `struct xt_owner_match_info` (`-m owner`).
    OwnerMatchInfo = 20; { match_flags: u8 @ 16, invert: u8 @ 17 }
}

xt_struct! {
    /// `struct xt_physdev_info` (`-m physdev`).
    PhysdevInfo = 66; { invert: u8 @ 64, bitmask: u8 @ 65 }
}

xt_struct! {
    /// `struct xt_socket_mtinfo1` (and 2, 3: same layout, more flags).
    SocketMtinfo = 1; { flags: u8 @ 0 }
}

xt_struct! {
    /// `struct xt_policy_info` (`-m policy`).
    PolicyInfo = 308; { flags: u16 @ 304, len: u16 @ 306 }
}

xt_struct! {
    /// `struct xt_rpfilter_info` (`-m rpfilter`).
    RpfilterInfo = 1; { flags: u8 @ 0 }
}

xt_struct! {
    /// `struct xt_cpu_info` (`-m cpu`).
    CpuInfo = 8; { cpu: u32 @ 0, invert: u32 @ 4 }
}

xt_struct! {
    /// `struct xt_devgroup_info` (`-m devgroup`).
    DevgroupInfo = 20; { flags: u32 @ 0 }
}

xt_struct! {
    /// `struct xt_time_info` (`-m time`).
    TimeInfo = 24; { daytime_start: u32 @ 8, daytime_stop: u32 @ 12, flags: u8 @ 21 }
}

xt_struct! {
    /// `struct xt_string_info` (`-m string`, revision 1).
    StringInfo = 160; {
        from_offset: u16 @ 0, to_offset: u16 @ 2, algo: [16] @ 4, pattern: [128] @ 20,
        patlen: u8 @ 148, flags: u8 @ 149,
    }
}

xt_struct! {
    /// `struct xt_cgroup_info_v0` (`-m cgroup --cgroup`).
    CgroupInfoV0 = 8; { id: u32 @ 0, invert: u32 @ 4 }
}

xt_struct! {
    /// `struct xt_cgroup_info_v1` (path of up to 4096 bytes).
    CgroupInfoV1 = 4112; { has_path: u8 @ 0, has_classid: u8 @ 1, path: [4096] @ 4 }
}

xt_struct! {
    /// `struct xt_cgroup_info_v2` (path of up to 512 bytes).
    CgroupInfoV2 = 528; { has_path: u8 @ 0, has_classid: u8 @ 1, path: [512] @ 4 }
}

xt_struct! {
    /// `struct xt_set_info_match_v0` (`-m set`, revision 0).
    SetInfoMatchV0 = 32; { index: u16 @ 0 }
}

xt_struct! {
    /// `struct xt_set_info_match_v1` / v2 (`struct xt_set_info`: index, dim, flags).
    SetInfoMatchV1 = 4; { index: u16 @ 0, dim: u8 @ 2, flags: u8 @ 3 }
}

xt_struct! {
    /// `struct xt_set_info_match_v3` / v4 (adds packet and byte counters).
    SetInfoMatchV3 = 48; { index: u16 @ 0, dim: u8 @ 2, flags: u8 @ 3 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_blobs_are_refused() {
        assert!(CommentInfo::parse(&[0; 255]).is_none());
        assert!(CommentInfo::parse(&[0; 256]).is_some());
        assert!(MultiportV1::parse(&[]).is_none());
    }

    #[test]
    fn fields_from_recorded_blobs() {
        // iptables-nft -m comment --comment foo
        let mut blob = b"foo".to_vec();
        blob.resize(256, 0);
        assert_eq!(&CommentInfo::parse(&blob).unwrap().comment[..4], b"foo\0");
        // iptables-nft -p tcp -m multiport --dports 80,443: flags DESTINATION, 2 ports
        let mut mp = vec![1u8, 2];
        mp.extend(80u16.to_ne_bytes());
        mp.extend(443u16.to_ne_bytes());
        mp.resize(48, 0);
        let m = MultiportV1::parse(&mp).unwrap();
        assert_eq!((m.flags, m.count, m.invert), (1, 2, 0));
        // iptables-nft -m recent --name x --set (as the kernel dumped it)
        let rec = hex("0000000000000000020078004641554c54");
        let mut rec = rec.clone();
        rec.resize(232, 0);
        let r = RecentMtinfoV1::parse(&rec).unwrap();
        assert_eq!((r.check_set, &r.name[..2]), (2, &b"x\0"[..]));
    }

    #[test]
    fn u32_test_counts() {
        let mut b = vec![0u8; 1984];
        b[176] = 2;
        b[177] = 1;
        b[180 + 176] = 11;
        b[1980] = 2;
        let u = U32::parse(&b).unwrap();
        assert_eq!((u.ntests, u.counts(0), u.counts(1)), (2, (2, 1), (11, 0)));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
