//! xtables extensions run by `nft_compat` (the `match` and `target` expressions
//! iptables-nft, ip6tables-nft, ebtables-nft and arptables-nft send): which ones this
//! daemon supports, the NFNL_SUBSYS_NFT_COMPAT revision query, and the checks the
//! kernel makes when a rule with one is added (`nft_*_select_ops`, `nft_parse_compat`,
//! `xt_check_match`/`xt_check_target` and the extension's `checkentry`) and when the
//! table is validated at commit (`nft_*_validate`).
//!
//! The registry lists, per (name, revision), the families, the C struct size, and the
//! table, hook and protocol restrictions of the kernel's `struct xt_match`/`xt_target`
//! (6.18, this machine: revisions and families were read from the kernel's own answers
//! to the revision query). Extensions the kernel has but this registry does not model
//! are refused: the revision query answers ENOENT as for an unknown extension, and a
//! rule using one anyway gets EOPNOTSUPP, this daemon's "cannot do that".
//!
//! Not modelled: state shared between rules that the kernel keeps outside the ruleset
//! (hashlimit and recent tables of the same name with other settings, ipset indexes,
//! conntrack timeout policies); those checks accept what iptables sends.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use netlink_proto::extra::{NFPROTO_ARP, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6};
use netlink_proto::xt::bridge::*;
use netlink_proto::xt::matches::*;
use netlink_proto::xt::targets::*;
use netlink_proto::xt::{strnlen, xt_align};

use crate::errno::*;
use crate::state::{BaseChain, Expr, Table};

pub(crate) const EPROTONOSUPPORT: i32 = 93;
const EDOM: i32 = 33;

// Hook bits (the same numbers for the inet, bridge and arp families' first hooks).
const PRE: u32 = 1 << 0;
const IN: u32 = 1 << 1;
const FWD: u32 = 1 << 2;
const OUT: u32 = 1 << 3;
const POST: u32 = 1 << 4;
/// ebtables' `NF_BR_NUMHOOKS` bit: "also valid in user-defined chains".
const BR_USER: u32 = 1 << 6;
const BR_BROUTING: u32 = 1 << 5;

// Family bits of the registry.
const F4: u8 = 1;
const F6: u8 = 2;
const FB: u8 = 4;
const FA: u8 = 8;
const F46: u8 = F4 | F6;
const ANY: u8 = F4 | F6 | FB | FA;

const IPPROTO_ICMP: u16 = 1;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const IPPROTO_DCCP: u16 = 33;
const IPPROTO_ESP: u16 = 50;
const IPPROTO_AH: u16 = 51;
const IPPROTO_ICMPV6: u16 = 58;
const IPPROTO_COMP: u16 = 108;
const IPPROTO_SCTP: u16 = 132;
const IPPROTO_MH: u16 = 135;
const IPPROTO_UDPLITE: u16 = 136;
const IPPROTO_IGMP: u8 = 2;

/// What an extension's checks see (`struct xt_mtchk_param` / `xt_tgchk_param` with
/// the entry nft_compat fakes from NFTA_RULE_COMPAT).
pub struct Par<'a> {
    pub family: u8,
    /// The nf_tables table's name (iptables-nft uses the xtables names).
    pub table: &'a str,
    /// `1 << hooknum` of a base chain, 0 in a user chain.
    pub hook_mask: u32,
    /// The rule's layer 4 protocol (ethertype in the bridge family) and its inversion.
    pub proto: u16,
    pub inv: bool,
    pub rev: u8,
    /// Every table of the namespace (for state the kernel keeps per namespace, such as
    /// rate estimators).
    pub tables: &'a [Table],
}

type Check = fn(&Par<'_>, &[u8]) -> Result<(), i32>;

/// One `struct xt_match` / `struct xt_target` registration.
struct Ext {
    name: &'static str,
    rev: u8,
    fams: u8,
    /// `matchsize`/`targetsize`; `None` for ebtables' variable-size `among`.
    size: Option<usize>,
    table: Option<&'static str>,
    hooks: u32,
    proto: u16,
    check: Option<Check>,
    /// What checkentry writes back into the blob (and so into dumps).
    rewrite: Option<fn(&mut [u8])>,
}

const fn ext(name: &'static str, rev: u8, fams: u8, size: usize) -> Ext {
    Ext {
        name,
        rev,
        fams,
        size: Some(size),
        table: None,
        hooks: 0,
        proto: 0,
        check: None,
        rewrite: None,
    }
}

impl Ext {
    const fn check(mut self, f: Check) -> Ext {
        self.check = Some(f);
        self
    }
    const fn rewrite(mut self, f: fn(&mut [u8])) -> Ext {
        self.rewrite = Some(f);
        self
    }
    const fn table(mut self, t: &'static str) -> Ext {
        self.table = Some(t);
        self
    }
    const fn hooks(mut self, h: u32) -> Ext {
        self.hooks = h;
        self
    }
    const fn proto(mut self, p: u16) -> Ext {
        self.proto = p;
        self
    }
}

fn fam_bit(family: u8) -> u8 {
    match family {
        NFPROTO_IPV4 => F4,
        NFPROTO_IPV6 => F6,
        NFPROTO_BRIDGE => FB,
        NFPROTO_ARP => FA,
        _ => 0,
    }
}

const MATCHES: &[Ext] = &[
    ext("addrtype", 0, F4, AddrtypeInfo::SIZE),
    ext("addrtype", 1, F46, AddrtypeInfoV1::SIZE).check(addrtype_v1),
    ext("ah", 0, F4, IptAh::SIZE).proto(IPPROTO_AH).check(ah4),
    ext("ah", 0, F6, Ip6tAh::SIZE).check(ah6),
    ext("cgroup", 0, ANY, CgroupInfoV0::SIZE)
        .hooks(OUT | POST | IN)
        .check(cgroup_v0),
    ext("cgroup", 1, ANY, CgroupInfoV1::SIZE)
        .hooks(OUT | POST | IN)
        .check(cgroup_v1),
    ext("cgroup", 2, ANY, CgroupInfoV2::SIZE)
        .hooks(OUT | POST | IN)
        .check(cgroup_v2),
    ext("cluster", 0, F46, ClusterMatchInfo::SIZE).check(cluster),
    ext("comment", 0, ANY, CommentInfo::SIZE),
    ext("connbytes", 0, ANY, ConnbytesInfo::SIZE).check(connbytes),
    ext("connlabel", 0, ANY, ConnlabelMtinfo::SIZE).check(connlabel),
    ext("connlimit", 1, F46, ConnlimitInfo::SIZE),
    ext("connmark", 1, ANY, ConnmarkMtinfo1::SIZE),
    ext("conntrack", 1, ANY, ConntrackMtinfo1::SIZE),
    ext("conntrack", 2, ANY, ConntrackMtinfo2::SIZE),
    ext("conntrack", 3, ANY, ConntrackMtinfo3::SIZE),
    ext("cpu", 0, ANY, CpuInfo::SIZE).check(cpu),
    ext("dccp", 0, F46, DccpInfo::SIZE)
        .proto(IPPROTO_DCCP)
        .check(dccp),
    ext("devgroup", 0, ANY, DevgroupInfo::SIZE).check(devgroup),
    ext("dscp", 0, F46, DscpInfo::SIZE).check(dscp_mt),
    ext("dst", 0, F6, Ip6tOpts::SIZE).check(opts),
    ext("ecn", 0, F46, EcnInfo::SIZE).check(ecn_mt),
    ext("esp", 0, F46, Esp::SIZE).proto(IPPROTO_ESP).check(esp),
    ext("frag", 0, F6, Ip6tFrag::SIZE).check(frag),
    ext("hashlimit", 1, F46, HashlimitMtinfo1::SIZE).check(hashlimit_v1),
    ext("hashlimit", 2, F46, HashlimitMtinfo2::SIZE).check(hashlimit_v2),
    ext("hashlimit", 3, F46, HashlimitMtinfo3::SIZE)
        .check(hashlimit_v3)
        .rewrite(hashlimit_v3_caps),
    ext("hbh", 0, F6, Ip6tOpts::SIZE).check(opts),
    ext("helper", 0, ANY, HelperInfo::SIZE),
    ext("hl", 0, F6, TtlInfo::SIZE),
    ext("icmp", 0, F4, Icmp::SIZE)
        .proto(IPPROTO_ICMP)
        .check(icmp),
    ext("icmp6", 0, F6, Icmp::SIZE)
        .proto(IPPROTO_ICMPV6)
        .check(icmp),
    ext("ipcomp", 0, F46, Ipcomp::SIZE)
        .proto(IPPROTO_COMP)
        .check(ipcomp),
    ext("iprange", 1, F46, IprangeMtinfo::SIZE),
    ext("ipv6header", 0, F6, Ip6tIpv6headerInfo::SIZE).check(ipv6header),
    ext("length", 0, F46, LengthInfo::SIZE),
    ext("limit", 0, ANY, Rateinfo::SIZE).check(limit),
    ext("mac", 0, F46, MacInfo::SIZE).hooks(PRE | IN | FWD),
    ext("mark", 1, ANY, MarkMtinfo1::SIZE),
    ext("mh", 0, F6, Ip6tMh::SIZE).proto(IPPROTO_MH).check(mh),
    ext("multiport", 1, F46, MultiportV1::SIZE).check(multiport),
    ext("owner", 1, F46, OwnerMatchInfo::SIZE)
        .hooks(OUT | POST)
        .check(owner),
    ext("physdev", 0, F46, PhysdevInfo::SIZE).check(physdev),
    ext("pkttype", 0, ANY, PkttypeInfo::SIZE),
    ext("policy", 0, F46, PolicyInfo::SIZE).check(policy),
    ext("quota", 0, ANY, QuotaInfo::SIZE).check(quota),
    ext("rateest", 0, ANY, RateestMatchInfo::SIZE).check(rateest),
    ext("recent", 0, F46, RecentMtinfo::SIZE).check(recent),
    ext("recent", 1, F46, RecentMtinfoV1::SIZE).check(recent),
    ext("rpfilter", 0, F46, RpfilterInfo::SIZE)
        .hooks(PRE)
        .check(rpfilter),
    ext("sctp", 0, F46, SctpInfo::SIZE)
        .proto(IPPROTO_SCTP)
        .check(sctp),
    ext("set", 0, F4, SetInfoMatchV0::SIZE),
    ext("set", 1, F46, SetInfoMatchV1::SIZE),
    ext("set", 2, F46, SetInfoMatchV1::SIZE),
    ext("set", 3, F46, SetInfoMatchV3::SIZE),
    ext("set", 4, F46, SetInfoMatchV3::SIZE),
    ext("socket", 0, F4, 0).hooks(PRE | IN),
    ext("socket", 1, F46, SocketMtinfo::SIZE)
        .hooks(PRE | IN)
        .check(socket),
    ext("socket", 2, F46, SocketMtinfo::SIZE)
        .hooks(PRE | IN)
        .check(socket),
    ext("socket", 3, F46, SocketMtinfo::SIZE)
        .hooks(PRE | IN)
        .check(socket),
    ext("srh", 0, F6, Ip6tSrh::SIZE).check(srh_v0),
    ext("srh", 1, F6, Ip6tSrh1::SIZE).check(srh_v1),
    ext("state", 0, ANY, StateInfo::SIZE),
    ext("statistic", 0, ANY, StatisticInfo::SIZE).check(statistic),
    ext("string", 1, ANY, StringInfo::SIZE).check(string),
    ext("tcp", 0, F46, Tcp::SIZE).proto(IPPROTO_TCP).check(tcp),
    ext("tcpmss", 0, F46, TcpmssMatchInfo::SIZE).proto(IPPROTO_TCP),
    ext("time", 0, ANY, TimeInfo::SIZE).check(time),
    ext("tos", 1, F46, TosMatchInfo::SIZE),
    ext("ttl", 0, F4, TtlInfo::SIZE),
    ext("u32", 0, ANY, U32::SIZE).check(u32_mt),
    ext("udp", 0, F46, Udp::SIZE).proto(IPPROTO_UDP).check(udp),
    ext("udplite", 0, F46, Udp::SIZE)
        .proto(IPPROTO_UDPLITE)
        .check(udp),
    // ebtables
    ext("802_3", 0, FB, Ebt8023Info::SIZE).check(ebt_802_3),
    ext("arp", 0, FB, EbtArpInfo::SIZE).check(ebt_arp),
    ext("ip", 0, FB, EbtIpInfo::SIZE).check(ebt_ip),
    ext("ip6", 0, FB, EbtIp6Info::SIZE).check(ebt_ip6),
    ext("mark_m", 0, FB, EbtMarkMInfo::SIZE).check(ebt_mark_m),
    ext("pkttype", 0, FB, EbtPkttypeInfo::SIZE).check(ebt_pkttype),
    ext("stp", 0, FB, EbtStpInfo::SIZE).check(ebt_stp),
    ext("vlan", 0, FB, EbtVlanInfo::SIZE).check(ebt_vlan),
];

const TARGETS: &[Ext] = &[
    ext("AUDIT", 0, ANY, AuditInfo::SIZE).check(audit),
    ext("CHECKSUM", 0, F46, ChecksumInfo::SIZE)
        .table("mangle")
        .check(checksum),
    ext("CLASSIFY", 0, F46, ClassifyInfo::SIZE).hooks(OUT | FWD | POST),
    // arptables: NF_ARP_OUT (1) and NF_ARP_FORWARD (2).
    ext("CLASSIFY", 0, FA, ClassifyInfo::SIZE).hooks(IN | FWD),
    ext("CONNMARK", 1, F46, ConnmarkTginfo1::SIZE),
    ext("CONNMARK", 2, F46, ConnmarkTginfo2::SIZE),
    ext("CONNSECMARK", 0, F46, ConnsecmarkInfo::SIZE).check(connsecmark),
    ext("CT", 0, F46, CtTargetInfo::SIZE)
        .table("raw")
        .check(ct_v0),
    ext("CT", 1, F46, CtTargetInfoV1::SIZE)
        .table("raw")
        .check(ct_v1),
    ext("CT", 2, F46, CtTargetInfoV1::SIZE)
        .table("raw")
        .check(ct_v2),
    ext("DNAT", 0, F4, NatIpv4MultiRangeCompat::SIZE)
        .table("nat")
        .hooks(PRE | OUT)
        .check(nat_v0),
    ext("DNAT", 1, ANY, NatRange::SIZE)
        .table("nat")
        .hooks(PRE | OUT),
    ext("DNAT", 2, ANY, NatRange2::SIZE)
        .table("nat")
        .hooks(PRE | OUT),
    ext("DNPT", 0, F6, NptTginfo::SIZE)
        .table("mangle")
        .hooks(PRE | OUT)
        .check(npt),
    ext("DSCP", 0, F46, DscpTgInfo::SIZE)
        .table("mangle")
        .check(dscp_tg),
    ext("ECN", 0, F4, EcnTgInfo::SIZE)
        .table("mangle")
        .check(ecn_tg),
    ext("HL", 0, F6, TtlTgInfo::SIZE)
        .table("mangle")
        .check(ttl_tg),
    ext("HMARK", 0, F46, HmarkInfo::SIZE).check(hmark),
    ext("IDLETIMER", 0, F46, IdletimerInfo::SIZE).check(idletimer),
    ext("IDLETIMER", 1, F46, IdletimerInfoV1::SIZE).check(idletimer),
    ext("LOG", 0, F46, LogInfo::SIZE).check(log),
    ext("MARK", 2, F4 | F6 | FA, MarkTginfo2::SIZE),
    ext("MASQUERADE", 0, F4, NatIpv4MultiRangeCompat::SIZE)
        .table("nat")
        .hooks(POST)
        .check(masquerade4),
    ext("MASQUERADE", 0, F6, NatRange::SIZE)
        .table("nat")
        .hooks(POST)
        .check(masquerade6),
    ext("NETMAP", 0, F4, NatIpv4MultiRangeCompat::SIZE)
        .table("nat")
        .hooks(PRE | POST | OUT | IN)
        .check(netmap4),
    ext("NETMAP", 0, F6, NatRange::SIZE)
        .table("nat")
        .hooks(PRE | POST | OUT | IN)
        .check(netmap6),
    ext("NFLOG", 0, F46, NflogInfo::SIZE).check(nflog),
    ext("NFQUEUE", 0, ANY, NfqInfo::SIZE),
    ext("NFQUEUE", 1, ANY, NfqInfoV1::SIZE).check(nfqueue),
    ext("NFQUEUE", 2, ANY, NfqInfoV3::SIZE).check(nfqueue),
    ext("NFQUEUE", 3, ANY, NfqInfoV3::SIZE).check(nfqueue),
    ext("NOTRACK", 0, F46, 0).table("raw"),
    ext("RATEEST", 0, F46, RateestTargetInfo::SIZE).check(rateest_tg),
    ext("REDIRECT", 0, F4, NatIpv4MultiRangeCompat::SIZE)
        .table("nat")
        .hooks(PRE | OUT)
        .check(masquerade4),
    ext("REDIRECT", 0, F6, NatRange::SIZE)
        .table("nat")
        .hooks(PRE | OUT)
        .check(masquerade6),
    ext("REJECT", 0, F4, RejectInfo::SIZE)
        .table("filter")
        .hooks(IN | FWD | OUT)
        .check(reject4),
    ext("REJECT", 0, F6, RejectInfo::SIZE)
        .table("filter")
        .hooks(IN | FWD | OUT)
        .check(reject6),
    ext("SECMARK", 0, F46, SecmarkTargetInfo::SIZE).check(secmark),
    ext("SECMARK", 1, F46, SecmarkTargetInfo::SIZE).check(secmark),
    ext("SET", 0, F4, SetInfoTargetV0::SIZE),
    ext("SET", 1, F46, SetInfoTargetV1::SIZE),
    ext("SET", 2, F46, SetInfoTargetV2::SIZE),
    ext("SET", 3, F46, SetInfoTargetV3::SIZE),
    ext("SNAT", 0, F4, NatIpv4MultiRangeCompat::SIZE)
        .table("nat")
        .hooks(POST | IN)
        .check(nat_v0),
    ext("SNAT", 1, ANY, NatRange::SIZE)
        .table("nat")
        .hooks(POST | IN),
    ext("SNAT", 2, ANY, NatRange2::SIZE)
        .table("nat")
        .hooks(POST | IN),
    ext("SNPT", 0, F6, NptTginfo::SIZE)
        .table("mangle")
        .hooks(IN | POST)
        .check(npt),
    ext("SYNPROXY", 0, F46, SynproxyInfo::SIZE)
        .hooks(IN | FWD)
        .proto(IPPROTO_TCP),
    ext("TCPMSS", 0, F46, TcpmssInfo::SIZE)
        .proto(IPPROTO_TCP)
        .check(tcpmss),
    ext("TCPOPTSTRIP", 0, F46, TcpoptstripInfo::SIZE)
        .table("mangle")
        .proto(IPPROTO_TCP),
    ext("TEE", 1, F46, TeeTginfo::SIZE)
        .table("mangle")
        .check(tee),
    ext("TOS", 1, F46, TosTargetInfo::SIZE).table("mangle"),
    ext("TPROXY", 0, F4, TproxyInfo::SIZE)
        .table("mangle")
        .hooks(PRE)
        .check(tproxy),
    ext("TPROXY", 1, F46, TproxyInfoV1::SIZE)
        .table("mangle")
        .hooks(PRE)
        .check(tproxy),
    ext("TRACE", 0, F46, 0).table("raw"),
    ext("TTL", 0, F4, TtlTgInfo::SIZE)
        .table("mangle")
        .check(ttl_tg),
    // ebtables
    ext("arpreply", 0, FB, EbtArpreplyInfo::SIZE)
        .table("nat")
        .hooks(BR_USER | PRE)
        .check(ebt_arpreply),
    ext("dnat", 0, FB, EbtNatInfo::SIZE)
        .hooks(BR_USER | PRE | OUT | BR_BROUTING)
        .check(ebt_dnat),
    ext("log", 0, FB, EbtLogInfo::SIZE)
        .check(ebt_log)
        .rewrite(|b| terminate(b, 1 + 30)),
    ext("mark", 0, FB, EbtMarkTInfo::SIZE).check(ebt_mark),
    ext("nflog", 0, FB, EbtNflogInfo::SIZE)
        .check(ebt_nflog)
        .rewrite(|b| terminate(b, 12 + 64)),
    ext("redirect", 0, FB, EbtRedirectInfo::SIZE)
        .hooks(BR_USER | PRE | BR_BROUTING)
        .check(ebt_redirect),
    ext("snat", 0, FB, EbtNatInfo::SIZE)
        .table("nat")
        .hooks(BR_USER | POST)
        .check(ebt_snat),
    // arptables
    ext("mangle", 0, FA, ArptMangle::SIZE).check(arpt_mangle),
];

/// Extensions this kernel has that the registry does not model (from its answers to
/// the revision query): refused with EOPNOTSUPP rather than ENOENT.
const KERNEL_ONLY_MATCHES: &[&str] = &["bpf", "l2tp", "nfacct", "osf", "realm", "among"];
const KERNEL_ONLY_TARGETS: &[&str] = &[];

fn registry(target: bool) -> &'static [Ext] {
    if target {
        TARGETS
    } else {
        MATCHES
    }
}

/// `xt_find_revision` over the extensions this daemon supports: the best revision
/// registered for `family`, ENOENT for an unknown name, EPROTONOSUPPORT for a known
/// name without that revision.
pub fn find_revision(family: u8, name: &[u8], rev: u32, target: bool) -> Result<u32, i32> {
    let bit = fam_bit(family);
    let mut best: Option<u32> = None;
    let mut have = false;
    for e in registry(target) {
        if e.name.as_bytes() != name || e.fams & bit == 0 {
            continue;
        }
        best = Some(best.map_or(u32::from(e.rev), |b| b.max(u32::from(e.rev))));
        have |= u32::from(e.rev) == rev;
    }
    match best {
        None => Err(ENOENT),
        Some(_) if !have => Err(EPROTONOSUPPORT),
        Some(b) => Ok(b),
    }
}

fn lookup(family: u8, name: &str, rev: u8, target: bool) -> Result<&'static Ext, i32> {
    let bit = fam_bit(family);
    registry(target)
        .iter()
        .find(|e| e.name == name && e.rev == rev && e.fams & bit != 0)
        .ok_or_else(|| {
            let kernel_only = if target {
                KERNEL_ONLY_TARGETS
            } else {
                KERNEL_ONLY_MATCHES
            };
            if bit != 0 && kernel_only.contains(&name) {
                EOPNOTSUPP
            } else {
                ENOENT
            }
        })
}

/// `nft_parse_compat`: (protocol, inverted) of NFTA_RULE_COMPAT, as sent.
fn parse_rule_compat(compat: Option<&[Attr]>) -> Result<(u16, bool), i32> {
    let Some(attrs) = compat else {
        return Ok((0, false));
    };
    let get = |id: u16| {
        attrs
            .iter()
            .rev()
            .find(|a| a.kind & 0x3fff == id)
            .map(|a| a.value.as_slice())
    };
    let be32 = |v: &[u8]| -> Result<u32, i32> {
        let b: [u8; 4] = v.try_into().map_err(|_| ERANGE)?;
        Ok(u32::from_be_bytes(b))
    };
    let (Some(proto), Some(flags)) = (get(NFTA_RULE_COMPAT_PROTO), get(NFTA_RULE_COMPAT_FLAGS))
    else {
        return Err(EINVAL);
    };
    let (proto, flags) = (be32(proto)?, be32(flags)?);
    if flags & !NFT_RULE_COMPAT_F_INV != 0 {
        return Err(EINVAL);
    }
    let proto = u16::try_from(proto).map_err(|_| EINVAL)?;
    Ok((proto, flags & NFT_RULE_COMPAT_F_INV != 0))
}

/// The (name, revision, info) of a stored match or target expression.
fn parts(e: &Expr) -> Option<(String, u32, &[u8])> {
    let (n, r, i) = if e.name == "match" {
        (NFTA_MATCH_NAME, NFTA_MATCH_REV, NFTA_MATCH_INFO)
    } else if e.name == "target" {
        (NFTA_TARGET_NAME, NFTA_TARGET_REV, NFTA_TARGET_INFO)
    } else {
        return None;
    };
    let get = |id: u16| e.data.iter().find(|a| a.kind & 0x3fff == id);
    let name = get(n)?.value.as_slice();
    let name = String::from_utf8_lossy(&name[..strnlen(name)]).into_owned();
    let rev = u32::from_be_bytes(get(r)?.value.get(..4)?.try_into().ok()?);
    Some((name, rev, get(i)?.value.as_slice()))
}

/// What a rule's compat expressions are checked against.
pub struct RuleCtx<'a> {
    pub family: u8,
    pub table: &'a str,
    /// The rule's chain, if it is a base chain.
    pub base: Option<&'a BaseChain>,
    /// NFTA_RULE_COMPAT's attributes, if the rule has one.
    pub compat: Option<&'a [Attr]>,
    /// Every table of the namespace, as the transaction has it so far.
    pub tables: &'a [Table],
}

/// `nft_match_init` / `nft_target_init` for every match and target of a new rule
/// (already parsed into `exprs`), in order. Each accepted INFO is stored as the
/// kernel keeps it: the struct's bytes, zero-padded to `XT_ALIGN` (what dumps return).
/// On error: the index of the offending expression and the errno.
pub fn check_rule(cx: &RuleCtx<'_>, exprs: &mut [Expr]) -> Result<(), (usize, i32)> {
    for (i, e) in exprs.iter_mut().enumerate() {
        let target = e.name == "target";
        let Some((name, rev, info)) = parts(e) else {
            continue;
        };
        let x = check_one(cx, &name, rev, info, target).map_err(|err| (i, err))?;
        let info_id = if target {
            NFTA_TARGET_INFO
        } else {
            NFTA_MATCH_INFO
        };
        if let Some(a) = e.data.iter_mut().find(|a| a.kind & 0x3fff == info_id) {
            if let Some(size) = x.size {
                a.value.resize(size, 0);
                a.value.resize(xt_align(size), 0);
            }
            if let Some(rewrite) = x.rewrite {
                rewrite(&mut a.value);
            }
        }
    }
    Ok(())
}

/// One expression: its registration on success.
fn check_one(
    cx: &RuleCtx<'_>,
    name: &str,
    rev: u32,
    info: &[u8],
    target: bool,
) -> Result<&'static Ext, i32> {
    // nft_*_select_ops
    let rev = u8::try_from(rev).map_err(|_| EINVAL)?;
    if target && (name == "ERROR" || name.is_empty() || name == "standard") {
        return Err(EINVAL);
    }
    let x = lookup(cx.family, name, rev, target)?;
    if x.size.is_some_and(|s| s > info.len()) {
        return Err(EINVAL);
    }
    // nft_*_init
    let (proto, inv) = parse_rule_compat(cx.compat)?;
    let par = Par {
        family: cx.family,
        table: cx.table,
        hook_mask: cx.base.map_or(0, |b| 1 << b.hooknum),
        proto,
        inv,
        rev,
        tables: cx.tables,
    };
    // xt_check_match / xt_check_target
    if let Some(s) = x.size {
        if xt_align(s) != xt_align(info.len()) {
            return Err(EINVAL);
        }
    }
    if x.table.is_some_and(|t| t != par.table) {
        return Err(EINVAL);
    }
    if x.hooks != 0 && par.hook_mask & !x.hooks != 0 {
        return Err(EINVAL);
    }
    if x.proto != 0 && (x.proto != par.proto || par.inv) {
        return Err(EINVAL);
    }
    if let Some(check) = x.check {
        check(&par, info)?;
    }
    Ok(x)
}

/// `nft_match_validate` / `nft_target_validate` for a rule reached from base chain
/// `base` of a `family` table.
pub fn validate(e: &Expr, family: u8, base: &BaseChain) -> Result<(), i32> {
    let Some((name, rev, _)) = parts(e) else {
        return Ok(());
    };
    if !matches!(
        family,
        NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET | NFPROTO_BRIDGE | NFPROTO_ARP
    ) {
        return Err(EOPNOTSUPP);
    }
    let hook = 1u32.checked_shl(base.hooknum).unwrap_or(0);
    if hook & (PRE | IN | FWD | OUT | POST) == 0 {
        return Err(EOPNOTSUPP);
    }
    let Ok(rev) = u8::try_from(rev) else {
        return Ok(());
    };
    let Ok(x) = lookup(family, &name, rev, e.name == "target") else {
        return Ok(());
    };
    if x.hooks != 0 && hook & x.hooks == 0 {
        return Err(EINVAL);
    }
    if x.table == Some("nat") {
        let wanted = if family == NFPROTO_BRIDGE {
            "filter"
        } else {
            "nat"
        };
        if base.chain_type != wanted {
            return Err(EINVAL);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// checkentry of each extension. `parse` cannot fail after the size checks above; the
// `ok_or(EINVAL)` only keeps these functions total.

fn parse<T>(f: impl FnOnce(&[u8]) -> Option<T>, info: &[u8]) -> Result<T, i32> {
    f(info).ok_or(EINVAL)
}

fn einval_if(cond: bool) -> Result<(), i32> {
    if cond {
        Err(EINVAL)
    } else {
        Ok(())
    }
}

/// `xt_check_proc_name`: names that become /proc files.
fn proc_name(name: &[u8]) -> Result<(), i32> {
    let len = strnlen(name);
    if len == 0 {
        return Err(EINVAL);
    }
    if len == name.len() {
        return Err(ENAMETOOLONG);
    }
    let s = &name[..len];
    einval_if(s == b"." || s == b".." || s.contains(&b'/'))
}

fn addrtype_v1(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const LIMIT_IN: u32 = 0x4;
    const LIMIT_OUT: u32 = 0x8;
    const BROADCAST: u16 = 1 << 3;
    const BLACKHOLE: u16 = 1 << 6;
    const PROHIBIT: u16 = 1 << 8;
    let a = parse(AddrtypeInfoV1::parse, info)?;
    einval_if(a.flags & LIMIT_IN != 0 && a.flags & LIMIT_OUT != 0)?;
    einval_if(par.hook_mask & (PRE | IN) != 0 && a.flags & LIMIT_OUT != 0)?;
    einval_if(par.hook_mask & (POST | OUT) != 0 && a.flags & LIMIT_IN != 0)?;
    if par.family == NFPROTO_IPV6 {
        einval_if((a.source | a.dest) & (BLACKHOLE | PROHIBIT | BROADCAST) != 0)?;
    }
    Ok(())
}

fn ah4(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(IptAh::parse, info)?.invflags & !0x01 != 0)
}

fn ah6(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Ip6tAh::parse, info)?.invflags & !0x07 != 0)
}

fn cgroup_v0(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(CgroupInfoV0::parse, info)?.invert & !1 != 0)
}

fn cgroup_path(has_path: u8, has_classid: u8, path: &[u8]) -> Result<(), i32> {
    einval_if(has_path != 0 && has_classid != 0)?;
    einval_if(has_path == 0 && has_classid == 0)?;
    if has_path != 0 {
        // cgroup_get_from_path on the default (v2) hierarchy, as mounted here.
        let path = String::from_utf8_lossy(&path[..strnlen(path)]).into_owned();
        let rel = path.trim_start_matches('/');
        let exists = !rel.split('/').any(|c| c == "..") && cgroup2_root().join(rel).is_dir();
        einval_if(!exists)?;
    }
    Ok(())
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `.../unified` on
/// hybrid systems).
fn cgroup2_root() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .and_then(|f| f.get(1).map(|m| std::path::PathBuf::from(*m)))
        .unwrap_or_else(|| "/sys/fs/cgroup".into())
}

fn cgroup_v1(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(CgroupInfoV1::parse, info)?;
    cgroup_path(c.has_path, c.has_classid, &c.path)
}

fn cgroup_v2(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(CgroupInfoV2::parse, info)?;
    cgroup_path(c.has_path, c.has_classid, &c.path)
}

fn cluster(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(ClusterMatchInfo::parse, info)?;
    einval_if(c.total_nodes > 32)?;
    if u64::from(c.node_mask) >= 1u64 << c.total_nodes {
        return Err(EDOM);
    }
    Ok(())
}

fn connbytes(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(ConnbytesInfo::parse, info)?;
    einval_if(c.what > 2 || c.direction > 2)
}

fn connlabel(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(ConnlabelMtinfo::parse, info)?;
    einval_if(c.options & !0x3 != 0)?;
    if c.bit >= 128 {
        return Err(ERANGE);
    }
    Ok(())
}

fn cpu(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(CpuInfo::parse, info)?.invert & !1 != 0)
}

fn dccp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let d = parse(DccpInfo::parse, info)?;
    einval_if(d.flags & !0x0f != 0 || d.invflags & !0x0f != 0 || d.invflags & !d.flags != 0)
}

fn devgroup(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const MATCH_SRC: u32 = 1;
    const MATCH_DST: u32 = 4;
    let d = parse(DevgroupInfo::parse, info)?;
    einval_if(d.flags & !0xf != 0)?;
    einval_if(d.flags & MATCH_SRC != 0 && par.hook_mask & !(PRE | IN | FWD) != 0)?;
    einval_if(d.flags & MATCH_DST != 0 && par.hook_mask & !(FWD | OUT | POST) != 0)
}

fn dscp_mt(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    if parse(DscpInfo::parse, info)?.dscp > 0x3f {
        return Err(EDOM);
    }
    Ok(())
}

fn opts(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let o = parse(Ip6tOpts::parse, info)?;
    einval_if(o.invflags & !0x01 != 0 || o.flags & 0x04 != 0)
}

/// The rule matches exactly this protocol, not inverted (`ipt_ip`/`ip6t_ip6` as
/// nft_compat fills it in).
fn is_proto(par: &Par<'_>, proto: u16) -> bool {
    par.proto == proto && !par.inv
}

fn ecn_mt(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const MATCH_MASK: u8 = 0xce;
    let e = parse(EcnInfo::parse, info)?;
    einval_if(e.operation & MATCH_MASK != 0 || e.invert & MATCH_MASK != 0)?;
    einval_if(e.operation & (0x10 | 0x20) != 0 && !is_proto(par, IPPROTO_TCP))
}

fn esp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Esp::parse, info)?.invflags & !0x01 != 0)
}

fn frag(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Ip6tFrag::parse, info)?.invflags & !0x03 != 0)
}

/// `hashlimit_mt_check_common` on a `hashlimit_cfg3` (revisions 1 and 2 converted).
struct HashlimitCfg {
    mode: u32,
    avg: u64,
    burst: u64,
    gc_interval: u32,
    expire: u32,
    interval: u32,
    srcmask: u8,
    dstmask: u8,
}

fn hashlimit_common(par: &Par<'_>, name: &[u8], c: HashlimitCfg) -> Result<(), i32> {
    const ALL: u32 = 0x7f;
    const BYTES: u32 = 1 << 5;
    const RATE_MATCH: u32 = 1 << 6;
    const HZ: u64 = 250;
    proc_name(name)?;
    einval_if(c.gc_interval == 0 || c.expire == 0)?;
    let max_mask = if par.family == NFPROTO_IPV4 { 32 } else { 128 };
    einval_if(c.srcmask > max_mask || c.dstmask > max_mask)?;
    einval_if(c.mode & !ALL != 0)?;
    if c.mode & RATE_MATCH != 0 {
        einval_if(par.rev < 3)?;
        if c.avg == 0 || c.avg > u64::from(u32::MAX) {
            return Err(ERANGE);
        }
        einval_if(c.interval == 0)?;
    } else if c.mode & BYTES != 0 {
        // user2credits_byte: CREDITS_PER_JIFFY_BYTES = POW2_BELOW32(0xFFFFFFFF / HZ).
        let cpj_bytes = pow2_below(0xFFFF_FFFF / HZ);
        einval_if((c.avg.wrapping_mul(HZ * cpj_bytes) >> 32) as u32 == 0)?;
    } else {
        let credits = |user: u64| -> u64 {
            let (scale, cpj) = if par.rev == 1 {
                (10_000u64, pow2_below(0xFFFF_FFFF / (HZ * 86_400)))
            } else {
                (1_000_000u64, pow2_below(u64::MAX / (HZ * 86_400)))
            };
            if scale >= HZ * cpj {
                user / (scale / (HZ * cpj))
            } else {
                user.wrapping_mul(HZ * cpj / scale)
            }
        };
        if c.burst == 0 || credits(c.avg.wrapping_mul(c.burst)) < credits(c.avg) {
            return Err(ERANGE);
        }
    }
    Ok(())
}

/// `POW2_BELOW32`/`POW2_BELOW64`: the largest power of two not above `x` (x > 0).
fn pow2_below(x: u64) -> u64 {
    1u64 << (63 - x.leading_zeros())
}

/// Revision 3 checks the blob's own cfg, capping the table size and maximum in place
/// (`HASHLIMIT_MAX_SIZE`); revisions 1 and 2 cap a copy.
fn hashlimit_v3_caps(b: &mut [u8]) {
    const MAX_SIZE: u32 = 1_048_576;
    for off in [276, 280] {
        if let Some(field) = b.get_mut(off..off + 4) {
            let v = u32::from_ne_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&v.min(MAX_SIZE).to_ne_bytes());
        }
    }
}

/// ebtables' log and nflog terminate the prefix (a `char[]` ending at `end`) in place.
fn terminate(b: &mut [u8], end: usize) {
    if let Some(last) = b.get_mut(end - 1) {
        *last = 0;
    }
}

fn hashlimit_v1(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let h = parse(HashlimitMtinfo1::parse, info)?;
    let cfg = HashlimitCfg {
        mode: h.mode,
        avg: h.avg.into(),
        burst: h.burst.into(),
        gc_interval: h.gc_interval,
        expire: h.expire,
        interval: 0,
        srcmask: h.srcmask,
        dstmask: h.dstmask,
    };
    hashlimit_common(par, &h.name, cfg)
}

fn hashlimit_v2(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let h = parse(HashlimitMtinfo2::parse, info)?;
    let cfg = HashlimitCfg {
        mode: h.mode,
        avg: h.avg,
        burst: h.burst,
        gc_interval: h.gc_interval,
        expire: h.expire,
        interval: 0,
        srcmask: h.srcmask,
        dstmask: h.dstmask,
    };
    hashlimit_common(par, &h.name, cfg)
}

fn hashlimit_v3(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let h = parse(HashlimitMtinfo3::parse, info)?;
    let cfg = HashlimitCfg {
        mode: h.mode,
        avg: h.avg,
        burst: h.burst,
        gc_interval: h.gc_interval,
        expire: h.expire,
        interval: h.interval,
        srcmask: h.srcmask,
        dstmask: h.dstmask,
    };
    hashlimit_common(par, &h.name, cfg)
}

fn icmp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Icmp::parse, info)?.invflags & !0x01 != 0)
}

fn ipcomp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Ipcomp::parse, info)?.invflags & !0x03 != 0)
}

fn ipv6header(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let h = parse(Ip6tIpv6headerInfo::parse, info)?;
    einval_if(h.modeflag == 0 && h.invflags != 0x00 && h.invflags != 0xff)
}

fn limit(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    // user2credits with HZ 250: CREDITS_PER_JIFFY = POW2_BELOW32(MAX_CPJ) = 128, and
    // the product is taken in 32 bits as the kernel does.
    let credits = |user: u32| -> u64 {
        let user = u64::from(user);
        if user > 0xFFFF_FFFF / (250 * 128) {
            (user / 10_000) * 250 * 128
        } else {
            (user * 250 * 128) / 10_000
        }
    };
    let r = parse(Rateinfo::parse, info)?;
    einval_if(r.burst == 0 || credits(r.avg.wrapping_mul(r.burst)) < credits(r.avg))
}

fn mh(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Ip6tMh::parse, info)?.invflags & !0x01 != 0)
}

fn multiport(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let m = parse(MultiportV1::parse, info)?;
    let proto_ok = matches!(
        par.proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
    ) && !par.inv;
    einval_if(!proto_ok || m.flags > 2 || m.count > 15)
}

fn owner(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(OwnerMatchInfo::parse, info)?.match_flags & !0xf != 0)
}

fn physdev(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const MASK: u8 = 0x1f;
    const OUT_OP: u8 = 0x02;
    const BRIDGED: u8 = 0x04;
    const ISOUT: u8 = 0x10;
    let p = parse(PhysdevInfo::parse, info)?;
    einval_if(p.bitmask & MASK == 0 || p.bitmask & !MASK != 0)?;
    einval_if(
        p.bitmask & (OUT_OP | ISOUT) != 0
            && (p.bitmask & BRIDGED == 0 || p.invert & BRIDGED != 0)
            && par.hook_mask & OUT != 0,
    )
}

fn policy(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const MATCH_IN: u16 = 1;
    const MATCH_OUT: u16 = 2;
    let p = parse(PolicyInfo::parse, info)?;
    einval_if(p.flags & (MATCH_IN | MATCH_OUT) == 0)?;
    einval_if(par.hook_mask & (PRE | IN) != 0 && p.flags & MATCH_OUT != 0)?;
    einval_if(par.hook_mask & (POST | OUT) != 0 && p.flags & MATCH_IN != 0)?;
    einval_if(p.len > 4)
}

fn quota(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(QuotaInfo::parse, info)?.flags & !0x1 != 0)
}

/// The (interval, ewma_log) of the rate estimator `name` (`xt_rateest_lookup`): one
/// exists per namespace while a RATEEST rule of that name does.
fn estimator(tables: &[Table], name: &[u8]) -> Option<(u8, u8)> {
    let name = &name[..strnlen(name)];
    tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.exprs)
        .filter_map(|e| match parts(e) {
            Some((n, 0, info)) if e.name == "target" && n == "RATEEST" => {
                RateestTargetInfo::parse(info)
            }
            _ => None,
        })
        .find(|r| &r.name[..strnlen(&r.name)] == name)
        .map(|r| (r.interval, r.ewma_log))
}

fn rateest(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const ABS: u16 = 2;
    const REL: u16 = 4;
    const BPS: u16 = 16;
    const PPS: u16 = 32;
    let r = parse(RateestMatchInfo::parse, info)?;
    einval_if((r.flags & (ABS | REL)).count_ones() != 1)?;
    einval_if(r.flags & (BPS | PPS) == 0)?;
    einval_if(!matches!(r.mode, 1..=3))?;
    if estimator(par.tables, &r.name1).is_none() {
        return Err(ENOENT);
    }
    if r.flags & REL != 0 && estimator(par.tables, &r.name2).is_none() {
        return Err(ENOENT);
    }
    Ok(())
}

fn rateest_tg(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let r = parse(RateestTargetInfo::parse, info)?;
    if strnlen(&r.name) >= r.name.len() {
        return Err(ENAMETOOLONG);
    }
    if let Some((interval, ewma_log)) = estimator(par.tables, &r.name) {
        // An existing estimator: the parameters must be given, and the same.
        let unset = r.interval == 0 && r.ewma_log == 0;
        return einval_if(unset || (r.interval, r.ewma_log) != (interval, ewma_log));
    }
    // gen_new_estimator: interval -2..=3 (a signed char), ewma_log 1..=30.
    einval_if(!(-2..=3).contains(&(r.interval as i8)) || r.ewma_log == 0 || r.ewma_log >= 31)
}

fn recent(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const CHECK: u8 = 1;
    const SET: u8 = 2;
    const UPDATE: u8 = 4;
    const REMOVE: u8 = 8;
    const TTL: u8 = 16;
    const REAP: u8 = 32;
    const VALID: u8 = 0x3f;
    const MAX_NSTAMPS: u32 = 65_536;
    let r = parse(RecentMtinfo::parse, info)?;
    einval_if(r.check_set & !VALID != 0)?;
    einval_if((r.check_set & (SET | REMOVE | CHECK | UPDATE)).count_ones() != 1)?;
    einval_if(
        r.check_set & (SET | REMOVE) != 0
            && (r.seconds != 0 || r.hit_count != 0 || r.check_set & (TTL | REAP) != 0),
    )?;
    einval_if(r.check_set & REAP != 0 && r.seconds == 0)?;
    einval_if(r.hit_count >= MAX_NSTAMPS)?;
    proc_name(&r.name)
}

fn rpfilter(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(RpfilterInfo::parse, info)?.flags & !0xf != 0)?;
    einval_if(par.table != "mangle" && par.table != "raw")
}

fn sctp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const VALID: u32 = 0x07;
    const CHUNK_TYPES: u32 = 0x04;
    let s = parse(SctpInfo::parse, info)?;
    einval_if(s.flags & !VALID != 0 || s.invflags & !VALID != 0 || s.invflags & !s.flags != 0)?;
    einval_if(s.flags & CHUNK_TYPES != 0 && s.chunk_match_type & 0x7 == 0)
}

fn socket(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let valid: u8 = match par.rev {
        1 => 0x1,
        2 => 0x3,
        _ => 0x7,
    };
    einval_if(parse(SocketMtinfo::parse, info)?.flags & !valid != 0)
}

fn srh_v0(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let s = parse(Ip6tSrh::parse, info)?;
    einval_if(s.mt_flags & !0x7ff != 0 || s.mt_invflags & !0x7ff != 0)
}

fn srh_v1(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let s = parse(Ip6tSrh1::parse, info)?;
    einval_if(s.mt_flags & !0x3fff != 0 || s.mt_invflags & !0x3fff != 0)
}

fn statistic(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let s = parse(StatisticInfo::parse, info)?;
    einval_if(s.mode > 1 || s.flags & !0x1 != 0)
}

fn string(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let s = parse(StringInfo::parse, info)?;
    einval_if(s.from_offset > s.to_offset)?;
    einval_if(s.algo.last() != Some(&0))?;
    einval_if(s.patlen > 128)?;
    einval_if(s.flags & !0x3 != 0)?;
    // textsearch_prepare: the algorithm must exist, the pattern must not be empty.
    let algo = &s.algo[..strnlen(&s.algo)];
    if !matches!(algo, b"bm" | b"kmp" | b"fsm") {
        return Err(ENOENT);
    }
    einval_if(s.patlen == 0)?;
    if algo == b"fsm" {
        fsm_pattern(&s.pattern[..usize::from(s.patlen)])?;
    }
    Ok(())
}

/// `fsm_init`: the pattern is an array of `struct ts_fsm_token` {u16 type, u8 value,
/// u8 recur}; types up to TS_FSM_SPACE (13), recurrences up to TS_FSM_HEAD_IGNORE (4),
/// which only the first of several tokens may use.
fn fsm_pattern(p: &[u8]) -> Result<(), i32> {
    const HEAD_IGNORE: u8 = 4;
    let (n, rest) = (p.len() / 4, p.len() % 4);
    einval_if(rest != 0 || n == 0)?;
    for (i, t) in p.chunks_exact(4).enumerate() {
        let ty = u16::from_ne_bytes([t[0], t[1]]);
        einval_if(ty > 13 || t[3] > HEAD_IGNORE)?;
        einval_if(t[3] == HEAD_IGNORE && (i != 0 || i == n - 1))?;
    }
    Ok(())
}

fn tcp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Tcp::parse, info)?.invflags & !0x0f != 0)
}

fn time(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let t = parse(TimeInfo::parse, info)?;
    if t.daytime_start > 86_399 || t.daytime_stop > 86_399 {
        return Err(EDOM);
    }
    einval_if(t.flags & !0x3 != 0)
}

fn u32_mt(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let u = parse(U32::parse, info)?;
    einval_if(u.ntests > U32::MAX_SIZE + 1)?;
    for i in 0..usize::from(u.ntests) {
        let (nnums, nvalues) = u.counts(i);
        einval_if(nnums > U32::MAX_SIZE + 1 || nvalues > U32::MAX_SIZE + 1)?;
    }
    Ok(())
}

fn udp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(Udp::parse, info)?.invflags & !0x03 != 0)
}

// --- ebtables matches: `e->ethproto` is the ethertype as sent (big endian) ---------

fn ethproto_is(par: &Par<'_>, ethertype: u16) -> bool {
    par.proto == u16::from_ne_bytes(ethertype.to_be_bytes()) && !par.inv
}

/// `ebt_check_range`-style ordered pairs.
fn range_bad(lo: u16, hi: u16) -> bool {
    lo > hi
}

fn port_proto(p: u8) -> bool {
    matches!(
        u16::from(p),
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP
    )
}

fn ebt_ip(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const PROTO: u8 = 0x08;
    const SPORT: u8 = 0x10;
    const DPORT: u8 = 0x20;
    const ICMP: u8 = 0x40;
    const IGMP: u8 = 0x80;
    let i = parse(EbtIpInfo::parse, info)?;
    einval_if(!ethproto_is(par, 0x0800))?;
    if i.bitmask & (DPORT | SPORT) != 0 {
        einval_if(i.invflags & PROTO != 0 || !port_proto(i.protocol))?;
    }
    einval_if(i.bitmask & DPORT != 0 && range_bad(i.dport_min, i.dport_max))?;
    einval_if(i.bitmask & SPORT != 0 && range_bad(i.sport_min, i.sport_max))?;
    if i.bitmask & ICMP != 0 {
        einval_if(i.invflags & PROTO != 0 || u16::from(i.protocol) != IPPROTO_ICMP)?;
        einval_if(i.icmp[0] > i.icmp[1] || i.icmp[2] > i.icmp[3])?;
    }
    if i.bitmask & IGMP != 0 {
        einval_if(i.invflags & PROTO != 0 || i.protocol != IPPROTO_IGMP)?;
        einval_if(i.icmp[0] > i.icmp[1])?;
    }
    Ok(())
}

fn ebt_ip6(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const PROTO: u8 = 0x08;
    const SPORT: u8 = 0x10;
    const DPORT: u8 = 0x20;
    const ICMP6: u8 = 0x40;
    let i = parse(EbtIp6Info::parse, info)?;
    einval_if(!ethproto_is(par, 0x86dd))?;
    einval_if(i.bitmask & !0x7f != 0 || i.invflags & !0x7f != 0)?;
    if i.bitmask & (DPORT | SPORT) != 0 {
        einval_if(i.invflags & PROTO != 0 || !port_proto(i.protocol))?;
    }
    einval_if(i.bitmask & DPORT != 0 && range_bad(i.dport_min, i.dport_max))?;
    einval_if(i.bitmask & SPORT != 0 && range_bad(i.sport_min, i.sport_max))?;
    if i.bitmask & ICMP6 != 0 {
        einval_if(i.invflags & PROTO != 0 || u16::from(i.protocol) != IPPROTO_ICMPV6)?;
        einval_if(i.icmp[0] > i.icmp[1] || i.icmp[2] > i.icmp[3])?;
    }
    Ok(())
}

fn ebt_arp(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    // EBT_ARP_MASK covers all eight bits of bitmask and invflags: only the size counts.
    parse(EbtArpInfo::parse, info)?;
    einval_if(!(ethproto_is(par, 0x0806) || ethproto_is(par, 0x8035)))
}

fn ebt_vlan(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const ID: u8 = 1;
    const PRIO: u8 = 2;
    const ENCAP: u8 = 4;
    let v = parse(EbtVlanInfo::parse, info)?;
    einval_if(par.proto != u16::from_ne_bytes(0x8100u16.to_be_bytes()))?;
    einval_if(v.bitmask & !0x7 != 0 || v.invflags & !0x7 != 0)?;
    einval_if(v.bitmask & ID != 0 && v.id > 4096)?;
    einval_if(v.bitmask & PRIO != 0 && v.prio > 7)?;
    einval_if(v.bitmask & ENCAP != 0 && v.encap < 60)
}

fn ebt_802_3(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let e = parse(Ebt8023Info::parse, info)?;
    einval_if(e.bitmask & !0x7 != 0 || e.invflags & !0x7 != 0)
}

fn ebt_mark_m(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let m = parse(EbtMarkMInfo::parse, info)?;
    einval_if(m.bitmask & !0x3 != 0 || m.bitmask == 0x3 || m.bitmask == 0)
}

fn ebt_pkttype(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(EbtPkttypeInfo::parse, info)?.invert > 1)
}

fn ebt_stp(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let s = parse(EbtStpInfo::parse, info)?;
    einval_if(s.bitmask & !0xfff != 0 || s.invflags & !0xfff != 0 || s.bitmask & 0xfff == 0)
}

// --- targets ------------------------------------------------------------------------

fn audit(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(AuditInfo::parse, info)?.audit_type > 2)
}

fn checksum(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let op = parse(ChecksumInfo::parse, info)?.operation;
    einval_if(op & !0x1 != 0 || op == 0)
}

fn connsecmark(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(par.table != "mangle" && par.table != "security")?;
    einval_if(!matches!(parse(ConnsecmarkInfo::parse, info)?.mode, 1 | 2))
}

/// Conntrack helpers built into this kernel: (name, families, layer 4 protocols).
const HELPERS: &[(&[u8], u8, &[u16])] = &[
    (b"amanda", F46, &[IPPROTO_UDP]),
    (b"ftp", F46, &[IPPROTO_TCP]),
    (b"irc", F4, &[IPPROTO_TCP]),
    (b"netbios-ns", F4, &[IPPROTO_UDP]),
    (b"pptp", F4, &[IPPROTO_TCP]),
    (b"Q.931", F46, &[IPPROTO_TCP]),
    (b"RAS", F46, &[IPPROTO_UDP]),
    (b"sane", F46, &[IPPROTO_TCP]),
    (b"sip", F46, &[IPPROTO_UDP, IPPROTO_TCP]),
    (b"snmp", F4, &[IPPROTO_UDP]),
    (b"tftp", F46, &[IPPROTO_UDP]),
];

/// `xt_ct_tg_check` after the per-revision flag check.
fn ct_common(par: &Par<'_>, flags: u16, helper: &[u8], timeout: Option<&[u8]>) -> Result<(), i32> {
    const NOTRACK: u16 = 1;
    if flags & NOTRACK != 0 {
        return Ok(());
    }
    // xt_ct_find_proto: the rule's protocol, unless inverted.
    let proto = if par.inv { 0 } else { par.proto };
    if helper.first().is_some_and(|&b| b != 0) {
        let len = strnlen(helper);
        if len == helper.len() {
            return Err(ENAMETOOLONG);
        }
        if proto == 0 {
            return Err(ENOENT);
        }
        let bit = fam_bit(par.family);
        let known = HELPERS.iter().any(|(n, fams, protos)| {
            *n == &helper[..len] && fams & bit != 0 && protos.contains(&proto)
        });
        if !known {
            return Err(ENOENT);
        }
    }
    if let Some(t) = timeout.filter(|t| t.first().is_some_and(|&b| b != 0)) {
        if strnlen(t) == t.len() {
            return Err(ENAMETOOLONG);
        }
        // No cttimeout policy exists here (nftshimd has no NFNL_SUBSYS_CTNETLINK_TIMEOUT).
        return Err(if proto == 0 { EINVAL } else { ENOENT });
    }
    Ok(())
}

fn ct_v0(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(CtTargetInfo::parse, info)?;
    einval_if(c.flags & !0x1 != 0)?;
    ct_common(par, c.flags, &c.helper, None)
}

fn ct_v1(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(CtTargetInfoV1::parse, info)?;
    einval_if(c.flags & !0x1 != 0)?;
    ct_common(par, c.flags, &c.helper, Some(&c.timeout))
}

fn ct_v2(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let c = parse(CtTargetInfoV1::parse, info)?;
    einval_if(c.flags & !0x1f != 0)?;
    ct_common(par, c.flags, &c.helper, Some(&c.timeout))
}

fn nat_v0(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(NatIpv4MultiRangeCompat::parse, info)?.rangesize != 1)
}

const NF_NAT_RANGE_MAP_IPS: u32 = 1;

fn masquerade4(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let r = parse(NatIpv4MultiRangeCompat::parse, info)?;
    einval_if(r.flags & NF_NAT_RANGE_MAP_IPS != 0 || r.rangesize != 1)
}

fn masquerade6(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(NatRange::parse, info)?.flags & NF_NAT_RANGE_MAP_IPS != 0)
}

fn netmap4(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let r = parse(NatIpv4MultiRangeCompat::parse, info)?;
    einval_if(r.flags & NF_NAT_RANGE_MAP_IPS == 0 || r.rangesize != 1)
}

fn netmap6(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(NatRange::parse, info)?.flags & NF_NAT_RANGE_MAP_IPS == 0)
}

fn npt(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let n = parse(NptTginfo::parse, info)?;
    einval_if(n.src_pfx_len > 64 || n.dst_pfx_len > 64)?;
    // The bits after the prefix length must be zero.
    let clean = |addr: &[u8], len: u8| {
        addr.iter().enumerate().all(|(i, &b)| {
            let keep = (usize::from(len)).saturating_sub(i * 8).min(8);
            b & !(0xffu8.checked_shl(8 - keep as u32).unwrap_or(0)) == 0
        })
    };
    einval_if(!clean(&n.src_pfx, n.src_pfx_len) || !clean(&n.dst_pfx, n.dst_pfx_len))
}

fn dscp_tg(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    if parse(DscpTgInfo::parse, info)?.dscp > 0x3f {
        return Err(EDOM);
    }
    Ok(())
}

fn ecn_tg(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let e = parse(EcnTgInfo::parse, info)?;
    einval_if(e.operation & 0xce != 0 || e.ip_ect & !0x03 != 0)?;
    einval_if(e.operation & (0x10 | 0x20) != 0 && !is_proto(par, IPPROTO_TCP))
}

fn ttl_tg(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const SET: u8 = 0;
    let t = parse(TtlTgInfo::parse, info)?;
    einval_if(t.mode > 2 || (t.mode != SET && t.value == 0))
}

fn hmark(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const SPI: u32 = 1 << 2;
    const SPI_MASK: u32 = 1 << 3;
    const SPORT: u32 = 1 << 4;
    const DPORT: u32 = 1 << 5;
    const SPORT_MASK: u32 = 1 << 6;
    const DPORT_MASK: u32 = 1 << 7;
    const METHOD_L3: u32 = 1 << 13;
    let h = parse(HmarkInfo::parse, info)?;
    einval_if(h.hmodulus == 0)?;
    einval_if(h.proto_mask != 0 && h.flags & METHOD_L3 != 0)?;
    einval_if(h.flags & SPI_MASK != 0 && h.flags & (SPORT_MASK | DPORT_MASK) != 0)?;
    einval_if(h.flags & SPI != 0 && h.flags & (SPORT | DPORT) != 0)
}

fn idletimer(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let i = parse(IdletimerInfo::parse, info)?;
    einval_if(i.timeout == 0 || i.timeout >= (i32::MAX as u32) / 1000)?;
    let len = strnlen(&i.label);
    einval_if(len == 0 || len == i.label.len())?;
    if par.rev == 1 {
        einval_if(parse(IdletimerInfoV1::parse, info)?.timer_type > 1)?;
    }
    Ok(())
}

fn log(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let l = parse(LogInfo::parse, info)?;
    einval_if(l.level >= 8 || l.prefix.last() != Some(&0))
}

fn nflog(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let n = parse(NflogInfo::parse, info)?;
    einval_if(n.flags & !0x1 != 0 || n.prefix.last() != Some(&0))
}

fn nfqueue(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let q = if par.rev == 1 {
        let v = parse(NfqInfoV1::parse, info)?;
        NfqInfoV3 {
            queuenum: v.queuenum,
            queues_total: v.queues_total,
            flags: 0,
        }
    } else {
        parse(NfqInfoV3::parse, info)?
    };
    einval_if(q.queues_total == 0)?;
    if u32::from(q.queues_total) - 1 + u32::from(q.queuenum) > 0xffff {
        return Err(ERANGE);
    }
    match par.rev {
        2 => einval_if(q.flags > 1),
        3 => einval_if(q.flags & !0x3 != 0),
        _ => Ok(()),
    }
}

fn reject4(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const ECHOREPLY: u32 = 4;
    const TCP_RESET: u32 = 7;
    let with = parse(RejectInfo::parse, info)?.with;
    einval_if(with == ECHOREPLY)?;
    einval_if(with == TCP_RESET && !is_proto(par, IPPROTO_TCP))
}

fn reject6(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const ECHOREPLY: u32 = 5;
    const TCP_RESET: u32 = 6;
    let with = parse(RejectInfo::parse, info)?.with;
    einval_if(with == ECHOREPLY)?;
    einval_if(with == TCP_RESET && !is_proto(par, IPPROTO_TCP))
}

fn secmark(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const MODE_SEL: u8 = 1;
    einval_if(par.table != "mangle" && par.table != "security")?;
    einval_if(parse(SecmarkTargetInfo::parse, info)?.mode != MODE_SEL)?;
    // security_secctx_to_secid finds no context: this kernel has no SELinux policy
    // loaded, and nftshimd none to consult.
    Err(ENOENT)
}

fn tcpmss(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const CLAMP_PMTU: u16 = 0xffff;
    let t = parse(TcpmssInfo::parse, info)?;
    einval_if(t.mss == CLAMP_PMTU && par.hook_mask & !(FWD | OUT | POST) != 0)
}

fn tee(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let t = parse(TeeTginfo::parse, info)?;
    einval_if(t.oif.last() != Some(&0) || t.gw.iter().all(|&b| b == 0))
}

fn tproxy(par: &Par<'_>, _: &[u8]) -> Result<(), i32> {
    einval_if(!(is_proto(par, IPPROTO_TCP) || is_proto(par, IPPROTO_UDP)))
}

// --- ebtables targets: `target` holds an ebtables verdict -------------------------

const EBT_VERDICT_BITS: u32 = 0x0000_000f;

/// `ebt_invalid_target`: not one of EBT_ACCEPT..EBT_RETURN (-1..-4).
fn ebt_invalid_target(t: u32) -> bool {
    let t = t as i32;
    !(-4..0).contains(&t)
}

fn ebt_mark(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let m = parse(EbtMarkTInfo::parse, info)?;
    einval_if(ebt_invalid_target(m.target | !EBT_VERDICT_BITS))?;
    let op = m.target & !EBT_VERDICT_BITS;
    einval_if(!matches!(
        op,
        0xffff_fff0 | 0xffff_ffe0 | 0xffff_ffd0 | 0xffff_ffc0
    ))
}

fn ebt_snat(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const NAT_ARP_BIT: u32 = 0x10;
    let n = parse(EbtNatInfo::parse, info)?;
    einval_if(ebt_invalid_target(n.target | !EBT_VERDICT_BITS))?;
    einval_if((n.target | EBT_VERDICT_BITS) & !NAT_ARP_BIT != !NAT_ARP_BIT)
}

/// The table/hook rule ebtables' dnat and redirect apply in checkentry.
fn ebt_nat_place(par: &Par<'_>, nat_hooks: u32) -> Result<(), i32> {
    let in_nat = par.table == "nat" && par.hook_mask & !nat_hooks == 0;
    let in_broute = par.table == "broute" && par.hook_mask & !BR_BROUTING == 0;
    einval_if(!in_nat && !in_broute)
}

fn ebt_dnat(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let n = parse(EbtNatInfo::parse, info)?;
    ebt_nat_place(par, PRE | OUT)?;
    einval_if(ebt_invalid_target(n.target))
}

fn ebt_redirect(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let r = parse(EbtRedirectInfo::parse, info)?;
    ebt_nat_place(par, PRE)?;
    einval_if(ebt_invalid_target(r.target))
}

fn ebt_arpreply(par: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let r = parse(EbtArpreplyInfo::parse, info)?;
    einval_if(!ethproto_is(par, 0x0806))?;
    einval_if(ebt_invalid_target(r.target))
}

fn ebt_log(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    let l = parse(EbtLogInfo::parse, info)?;
    einval_if(l.bitmask & !0x0b != 0 || l.loglevel >= 8)
}

fn ebt_nflog(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    einval_if(parse(EbtNflogInfo::parse, info)?.flags != 0)
}

fn arpt_mangle(_: &Par<'_>, info: &[u8]) -> Result<(), i32> {
    const XT_CONTINUE: u32 = 0xffff_ffff;
    let m = parse(ArptMangle::parse, info)?;
    einval_if(m.flags & !0x0f != 0 || m.flags & 0x0f == 0)?;
    einval_if(!matches!(m.target, 0 | 1 | XT_CONTINUE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xt(kind: &str, name: &str, rev: u32, info: Vec<u8>) -> Expr {
        let (n, r, i) = if kind == "match" {
            (NFTA_MATCH_NAME, NFTA_MATCH_REV, NFTA_MATCH_INFO)
        } else {
            (NFTA_TARGET_NAME, NFTA_TARGET_REV, NFTA_TARGET_INFO)
        };
        Expr {
            name: kind.into(),
            data: vec![
                Attr::strz(n, name),
                Attr::u32_be(r, rev),
                Attr::new(i, info),
            ],
        }
    }

    fn base(hooknum: u32, chain_type: &str) -> BaseChain {
        BaseChain {
            hooknum,
            priority: 0,
            chain_type: chain_type.into(),
            devices: vec![],
            policy: 1,
            counters: None,
        }
    }

    fn compat(proto: u32, flags: u32) -> Vec<Attr> {
        vec![
            Attr::u32_be(NFTA_RULE_COMPAT_PROTO, proto),
            Attr::u32_be(NFTA_RULE_COMPAT_FLAGS, flags),
        ]
    }

    /// Checks one expression in table `table`, chain hook `hook` (None: user chain).
    fn check(
        family: u8,
        table: &str,
        hook: Option<u32>,
        compat: Option<&[Attr]>,
        e: Expr,
    ) -> Result<Vec<u8>, i32> {
        let b = hook.map(|h| base(h, "filter"));
        let cx = RuleCtx {
            family,
            table,
            base: b.as_ref(),
            compat,
            tables: &[],
        };
        let mut exprs = vec![e];
        check_rule(&cx, &mut exprs).map_err(|(i, err)| {
            assert_eq!(i, 0);
            err
        })?;
        Ok(exprs[0].data[2].value.clone())
    }

    #[test]
    fn revisions_as_this_kernel_answers() {
        assert_eq!(find_revision(NFPROTO_IPV4, b"conntrack", 3, false), Ok(3));
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"conntrack", 0, false),
            Err(EPROTONOSUPPORT)
        );
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"string", 0, false),
            Err(EPROTONOSUPPORT)
        );
        assert_eq!(find_revision(NFPROTO_IPV6, b"addrtype", 1, false), Ok(1));
        assert_eq!(
            find_revision(NFPROTO_IPV6, b"addrtype", 0, false),
            Err(EPROTONOSUPPORT)
        );
        assert_eq!(find_revision(NFPROTO_BRIDGE, b"tcp", 0, false), Err(ENOENT));
        assert_eq!(find_revision(NFPROTO_BRIDGE, b"ip", 0, false), Ok(0));
        assert_eq!(find_revision(NFPROTO_BRIDGE, b"comment", 0, false), Ok(0));
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"MARK", 0, true),
            Err(EPROTONOSUPPORT)
        );
        assert_eq!(find_revision(NFPROTO_ARP, b"MARK", 2, true), Ok(2));
        assert_eq!(find_revision(NFPROTO_BRIDGE, b"MARK", 2, true), Err(ENOENT));
        assert_eq!(find_revision(NFPROTO_IPV4, b"DNAT", 0, true), Ok(2));
        assert_eq!(
            find_revision(NFPROTO_IPV6, b"DNAT", 0, true),
            Err(EPROTONOSUPPORT)
        );
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"CLUSTERIP", 0, true),
            Err(ENOENT)
        );
        // Known to the kernel, not modelled here: refused as an unknown extension.
        assert_eq!(find_revision(NFPROTO_IPV4, b"bpf", 0, false), Err(ENOENT));
    }

    #[test]
    fn generic_checks() {
        let v4 = NFPROTO_IPV4;
        let state = || xt("match", "state", 0, vec![2, 0, 0, 0]);
        // The blob is stored as the kernel dumps it: padded to XT_ALIGN.
        assert_eq!(
            check(v4, "filter", Some(1), None, state()),
            Ok(vec![2, 0, 0, 0, 0, 0, 0, 0])
        );
        // Shorter than the struct; longer than its aligned size.
        let short = xt("match", "state", 0, vec![2, 0, 0]);
        assert_eq!(check(v4, "filter", Some(1), None, short), Err(EINVAL));
        let long = xt("match", "state", 0, vec![0; 9]);
        assert_eq!(check(v4, "filter", Some(1), None, long), Err(EINVAL));
        // Unknown, unknown revision, revision beyond u8, kernel-only, the ERROR target.
        assert_eq!(
            check(v4, "filter", None, None, xt("match", "nosuch", 0, vec![])),
            Err(ENOENT)
        );
        assert_eq!(
            check(
                v4,
                "filter",
                None,
                None,
                xt("match", "state", 1, vec![0; 8])
            ),
            Err(ENOENT)
        );
        assert_eq!(
            check(
                v4,
                "filter",
                None,
                None,
                xt("match", "state", 256, vec![0; 8])
            ),
            Err(EINVAL)
        );
        assert_eq!(
            check(v4, "filter", None, None, xt("match", "bpf", 0, vec![])),
            Err(EOPNOTSUPP)
        );
        assert_eq!(
            check(
                v4,
                "filter",
                None,
                None,
                xt("target", "ERROR", 0, vec![0; 32])
            ),
            Err(EINVAL)
        );
        // NFTA_RULE_COMPAT: both attributes, only the inversion flag, a 16-bit protocol.
        let partial = vec![Attr::u32_be(NFTA_RULE_COMPAT_PROTO, 6)];
        assert_eq!(
            check(v4, "filter", None, Some(&partial), state()),
            Err(EINVAL)
        );
        assert_eq!(
            check(v4, "filter", None, Some(&compat(6, 1)), state()),
            Err(EINVAL)
        );
        assert_eq!(
            check(v4, "filter", None, Some(&compat(0x10000, 0)), state()),
            Err(EINVAL)
        );
        assert!(check(v4, "filter", None, Some(&compat(6, 2)), state()).is_ok());
        // Table, hooks (user chains have none at init), protocol.
        let reject = || xt("target", "REJECT", 0, vec![0; 8]);
        assert_eq!(check(v4, "mangle", None, None, reject()), Err(EINVAL));
        assert!(check(v4, "filter", Some(NF_INET_LOCAL_IN), None, reject()).is_ok());
        assert_eq!(
            check(v4, "filter", Some(NF_INET_PRE_ROUTING), None, reject()),
            Err(EINVAL)
        );
        let mac = || xt("match", "mac", 0, vec![0; 16]);
        assert_eq!(
            check(v4, "filter", Some(NF_INET_LOCAL_OUT), None, mac()),
            Err(EINVAL)
        );
        assert!(check(v4, "filter", None, None, mac()).is_ok());
        let tcp = || xt("match", "tcp", 0, vec![0; 16]);
        assert!(check(v4, "filter", None, Some(&compat(6, 0)), tcp()).is_ok());
        assert_eq!(
            check(v4, "filter", None, Some(&compat(6, 2)), tcp()),
            Err(EINVAL)
        );
        assert_eq!(
            check(v4, "filter", None, Some(&compat(17, 0)), tcp()),
            Err(EINVAL)
        );
        assert_eq!(check(v4, "filter", None, None, tcp()), Err(EINVAL));
    }

    #[test]
    fn checkentry_examples() {
        let v4 = NFPROTO_IPV4;
        let tcp = compat(6, 0);
        // REJECT --reject-with tcp-reset needs -p tcp.
        let reset = || xt("target", "REJECT", 0, vec![7, 0, 0, 0]);
        assert!(check(v4, "filter", None, Some(&tcp), reset()).is_ok());
        assert_eq!(check(v4, "filter", None, None, reset()), Err(EINVAL));
        // multiport: at most 15 ports, a port protocol.
        let mp = |count| {
            let mut b = vec![1u8, count];
            b.resize(48, 0);
            xt("match", "multiport", 1, b)
        };
        assert!(check(v4, "filter", None, Some(&tcp), mp(15)).is_ok());
        assert_eq!(check(v4, "filter", None, Some(&tcp), mp(16)), Err(EINVAL));
        assert_eq!(
            check(v4, "filter", None, Some(&compat(1, 0)), mp(2)),
            Err(EINVAL)
        );
        // dscp above 0x3f is EDOM.
        assert_eq!(
            check(
                v4,
                "filter",
                None,
                None,
                xt("match", "dscp", 0, vec![0x40, 0, 0, 0, 0, 0, 0, 0])
            ),
            Err(EDOM)
        );
        // LOG level and prefix termination.
        let mut log = vec![8u8];
        log.resize(32, 0);
        assert_eq!(
            check(v4, "filter", None, None, xt("target", "LOG", 0, log)),
            Err(EINVAL)
        );
        let mut log = vec![4u8, 0];
        log.resize(32, b'x');
        assert_eq!(
            check(v4, "filter", None, None, xt("target", "LOG", 0, log)),
            Err(EINVAL)
        );
        // SNAT revision 0 wants exactly one range.
        let snat = |n: u8| {
            let mut b = vec![n, 0, 0, 0];
            b.resize(24, 0);
            xt("target", "SNAT", 0, b)
        };
        assert!(check(v4, "nat", None, None, snat(1)).is_ok());
        assert_eq!(check(v4, "nat", None, None, snat(2)), Err(EINVAL));
        assert_eq!(check(v4, "filter", None, None, snat(1)), Err(EINVAL));
        // CT helpers need a protocol they serve; timeout policies do not exist here.
        let ct = |helper: &[u8], timeout: &[u8]| {
            let mut b = vec![0u8; 72];
            b[12..12 + helper.len()].copy_from_slice(helper);
            b[28..28 + timeout.len()].copy_from_slice(timeout);
            xt("target", "CT", 2, b)
        };
        assert!(check(v4, "raw", None, Some(&tcp), ct(b"ftp", b"")).is_ok());
        assert_eq!(
            check(v4, "raw", None, Some(&compat(17, 0)), ct(b"ftp", b"")),
            Err(ENOENT)
        );
        assert_eq!(check(v4, "raw", None, None, ct(b"ftp", b"")), Err(ENOENT));
        assert_eq!(
            check(v4, "raw", None, Some(&tcp), ct(b"", b"t")),
            Err(ENOENT)
        );
        assert_eq!(check(v4, "raw", None, None, ct(b"", b"t")), Err(EINVAL));
        // hashlimit names become /proc files.
        let hl = |name: &[u8]| {
            let mut b = vec![0u8; 312];
            b[..name.len()].copy_from_slice(name);
            b[256] = 1; // avg
            b[264] = 5; // burst
            b[284] = 1; // gc_interval
            b[288] = 1; // expire
            xt("match", "hashlimit", 3, b)
        };
        assert!(check(v4, "filter", None, None, hl(b"web")).is_ok());
        assert_eq!(check(v4, "filter", None, None, hl(b"a/b")), Err(EINVAL));
        assert_eq!(check(v4, "filter", None, None, hl(b"")), Err(EINVAL));
        // ebtables ip: only with -p IPv4 (the ethertype as sent, big endian).
        let ip = || xt("match", "ip", 0, vec![0; 28]);
        let ipv4 = compat(u32::from(u16::from_ne_bytes(0x0800u16.to_be_bytes())), 0);
        assert!(check(NFPROTO_BRIDGE, "filter", None, Some(&ipv4), ip()).is_ok());
        assert_eq!(
            check(NFPROTO_BRIDGE, "filter", None, None, ip()),
            Err(EINVAL)
        );
    }

    #[test]
    fn rate_estimators_come_from_the_ruleset() {
        let est = |name: &[u8], interval: u8, ewma: u8| {
            let mut b = vec![0u8; 32];
            b[..name.len()].copy_from_slice(name);
            b[16] = interval;
            b[17] = ewma;
            xt("target", "RATEEST", 0, b)
        };
        let mut m = vec![0u8; 72];
        m[..2].copy_from_slice(b"E1");
        m[32] = 2 | 16; // ABS | BPS
        m[34] = 1; // EQ
        let rateest = xt("match", "rateest", 0, m);
        let mut table = crate::state::Table {
            name: "filter".into(),
            family: NFPROTO_IPV4,
            flags: 0,
            owner: 0,
            udata: None,
            handle: 1,
            chains: vec![],
            sets: vec![],
            objects: vec![],
            flowtables: vec![],
        };
        let with = |tables: &[Table], e: Expr| {
            let cx = RuleCtx {
                family: NFPROTO_IPV4,
                table: "filter",
                base: None,
                compat: None,
                tables,
            };
            check_rule(&cx, &mut [e]).map_err(|(_, err)| err)
        };
        assert_eq!(
            with(std::slice::from_ref(&table), rateest.clone()),
            Err(ENOENT)
        );
        assert!(with(&[], est(b"E1", 0xfe, 2)).is_ok());
        assert_eq!(with(&[], est(b"E1", 4, 2)), Err(EINVAL), "interval above 3");
        table.chains.push(crate::state::Chain {
            name: "INPUT".into(),
            handle: 2,
            flags: 0,
            base: None,
            udata: None,
            rules: vec![crate::state::Rule {
                handle: 3,
                exprs: vec![est(b"E1", 0xfe, 2)],
                udata: None,
                compat: None,
            }],
            bound: false,
        });
        let tables = std::slice::from_ref(&table);
        assert!(with(tables, rateest).is_ok());
        assert!(with(tables, est(b"E1", 0xfe, 2)).is_ok());
        assert_eq!(
            with(tables, est(b"E1", 0xff, 2)),
            Err(EINVAL),
            "other parameters"
        );
        assert_eq!(with(tables, est(b"E1", 0, 0)), Err(EINVAL), "none given");
    }

    #[test]
    fn validation_at_commit() {
        let masq = xt("target", "MASQUERADE", 0, vec![0; 24]);
        assert!(validate(&masq, NFPROTO_IPV4, &base(NF_INET_POST_ROUTING, "nat")).is_ok());
        assert_eq!(
            validate(&masq, NFPROTO_IPV4, &base(NF_INET_POST_ROUTING, "filter")),
            Err(EINVAL)
        );
        assert_eq!(
            validate(&masq, NFPROTO_IPV4, &base(NF_INET_PRE_ROUTING, "nat")),
            Err(EINVAL)
        );
        let mac = xt("match", "mac", 0, vec![0; 16]);
        assert_eq!(
            validate(&mac, NFPROTO_IPV4, &base(NF_INET_LOCAL_OUT, "filter")),
            Err(EINVAL)
        );
        assert!(validate(&mac, NFPROTO_IPV4, &base(NF_INET_LOCAL_IN, "filter")).is_ok());
        let snat = xt("target", "snat", 0, vec![0; 16]);
        assert!(validate(&snat, NFPROTO_BRIDGE, &base(NF_INET_POST_ROUTING, "filter")).is_ok());
        assert_eq!(
            validate(
                &mac,
                netlink_proto::extra::NFPROTO_NETDEV,
                &base(0, "filter")
            ),
            Err(EOPNOTSUPP)
        );
    }
}
