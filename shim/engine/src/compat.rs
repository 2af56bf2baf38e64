//! NFNL_SUBSYS_NFT_COMPAT: the xtables revision query iptables-nft makes for each
//! extension (`nfnl_compat_get_rcu` with `xt_find_revision`). The reply names the best
//! revision this kernel has; unknown extensions get ENOENT, unknown revisions of known
//! ones EPROTONOSUPPORT.

use netlink_proto::consts::*;
use netlink_proto::extra::*;
use netlink_proto::extra::{NFNETLINK_V0, NFPROTO_ARP, NFPROTO_BRIDGE, NFPROTO_IPV4, NFPROTO_IPV6};

use crate::errno::*;
use crate::nla::{self, Pol};
use crate::wire::{be32, put_msg, strz, Req};
use crate::{Caller, Output};

const EPROTONOSUPPORT: i32 = 93;

const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NFT_COMPAT_NAME_MAX as usize - 1),
    Pol::U32,
    Pol::U32,
];

/// Families an extension is registered for: every family, IPv4 only, IPv6 only, ARP.
#[derive(Clone, Copy, PartialEq)]
enum Fam {
    Any,
    V4,
    V6,
    V46,
    Arp,
}

/// (name, revisions, families) of the matches built into this kernel.
const MATCHES: &[(&str, &[u8], Fam)] = &[
    ("addrtype", &[0, 1], Fam::V46),
    ("ah", &[0], Fam::V46),
    ("bpf", &[0, 1], Fam::Any),
    ("cgroup", &[0, 1, 2], Fam::Any),
    ("cluster", &[0], Fam::Any),
    ("comment", &[0], Fam::Any),
    ("connbytes", &[0], Fam::Any),
    ("connlabel", &[0], Fam::Any),
    ("connlimit", &[1], Fam::Any),
    ("connmark", &[0, 1], Fam::Any),
    ("conntrack", &[1, 2, 3], Fam::Any),
    ("cpu", &[0], Fam::Any),
    ("dccp", &[0], Fam::Any),
    ("devgroup", &[0], Fam::Any),
    ("dscp", &[0], Fam::Any),
    ("dst", &[0], Fam::V6),
    ("ecn", &[0], Fam::Any),
    ("esp", &[0], Fam::Any),
    ("eui64", &[0], Fam::V6),
    ("frag", &[0], Fam::V6),
    ("hashlimit", &[1, 2, 3], Fam::Any),
    ("hbh", &[0], Fam::V6),
    ("helper", &[0], Fam::Any),
    ("hl", &[0], Fam::V6),
    ("icmp", &[0], Fam::V4),
    ("icmp6", &[0], Fam::V6),
    ("ipcomp", &[0], Fam::Any),
    ("iprange", &[1], Fam::Any),
    ("ipv6header", &[0], Fam::V6),
    ("l2tp", &[0], Fam::Any),
    ("length", &[0], Fam::Any),
    ("limit", &[0], Fam::Any),
    ("mac", &[0], Fam::Any),
    ("mark", &[1], Fam::Any),
    ("mh", &[0], Fam::V6),
    ("multiport", &[1], Fam::Any),
    ("nfacct", &[0], Fam::Any),
    ("osf", &[0], Fam::Any),
    ("owner", &[1], Fam::Any),
    ("physdev", &[0], Fam::Any),
    ("pkttype", &[0], Fam::Any),
    ("policy", &[0], Fam::Any),
    ("quota", &[0], Fam::Any),
    ("rateest", &[0], Fam::Any),
    ("realm", &[0], Fam::V4),
    ("recent", &[0, 1], Fam::Any),
    ("rpfilter", &[0], Fam::V46),
    ("rt", &[0], Fam::V6),
    ("sctp", &[0], Fam::Any),
    ("set", &[0, 1, 2, 3, 4], Fam::Any),
    ("socket", &[1, 2, 3], Fam::Any),
    ("srh", &[0, 1], Fam::V6),
    ("state", &[0], Fam::Any),
    ("statistic", &[0], Fam::Any),
    ("string", &[0], Fam::Any),
    ("tcp", &[0], Fam::Any),
    ("tcpmss", &[0], Fam::Any),
    ("time", &[0], Fam::Any),
    ("tos", &[0, 1], Fam::Any),
    ("ttl", &[0], Fam::V4),
    ("u32", &[0], Fam::Any),
    ("udp", &[0], Fam::Any),
    ("udplite", &[0], Fam::Any),
];

/// (name, revisions, families) of the targets built into this kernel.
const TARGETS: &[(&str, &[u8], Fam)] = &[
    ("AUDIT", &[0], Fam::Any),
    ("CHECKSUM", &[0], Fam::Any),
    ("CLASSIFY", &[0], Fam::Any),
    ("CONNMARK", &[1], Fam::Any),
    ("CONNSECMARK", &[0], Fam::Any),
    ("CT", &[0, 1, 2], Fam::Any),
    ("DNAT", &[0, 1, 2], Fam::Any),
    ("DNPT", &[0], Fam::V6),
    ("DSCP", &[0], Fam::Any),
    ("ECN", &[0], Fam::V4),
    ("HL", &[0], Fam::V6),
    ("HMARK", &[0], Fam::Any),
    ("IDLETIMER", &[0, 1], Fam::Any),
    ("LOG", &[0], Fam::Any),
    ("MARK", &[0, 1, 2], Fam::Any),
    ("MASQUERADE", &[0], Fam::V46),
    ("NETMAP", &[0], Fam::V46),
    ("NFLOG", &[0], Fam::Any),
    ("NFQUEUE", &[0, 1, 2, 3], Fam::Any),
    ("NOTRACK", &[0], Fam::Any),
    ("RATEEST", &[0], Fam::Any),
    ("REDIRECT", &[0], Fam::V46),
    ("REJECT", &[0], Fam::V46),
    ("SECMARK", &[0, 1], Fam::Any),
    ("SET", &[0, 1, 2, 3], Fam::Any),
    ("SNAT", &[0, 1, 2], Fam::Any),
    ("SNPT", &[0], Fam::V6),
    ("SYNPROXY", &[0], Fam::V46),
    ("TCPMSS", &[0], Fam::Any),
    ("TCPOPTSTRIP", &[0], Fam::Any),
    ("TEE", &[1], Fam::Any),
    ("TOS", &[1], Fam::Any),
    ("TPROXY", &[0, 1], Fam::V46),
    ("TRACE", &[0], Fam::Any),
    ("TTL", &[0], Fam::V4),
    ("mangle", &[0], Fam::Arp),
];

fn registered(fam: Fam, family: u8) -> bool {
    match fam {
        Fam::Any => true,
        Fam::V4 => family == NFPROTO_IPV4,
        Fam::V6 => family == NFPROTO_IPV6,
        Fam::V46 => family == NFPROTO_IPV4 || family == NFPROTO_IPV6,
        Fam::Arp => family == NFPROTO_ARP,
    }
}

/// `xt_find_revision`: the best revision, or the errno.
pub fn find_revision(family: u8, name: &[u8], rev: u32, target: bool) -> Result<u32, i32> {
    let table = if target { TARGETS } else { MATCHES };
    let mut best: Option<u32> = None;
    let mut have = false;
    for (n, revs, fam) in table {
        if n.as_bytes() != name || !registered(*fam, family) {
            continue;
        }
        for r in *revs {
            best = Some(best.map_or(u32::from(*r), |b| b.max(u32::from(*r))));
            have |= u32::from(*r) == rev;
        }
    }
    match best {
        None => Err(ENOENT),
        Some(_) if !have => Err(EPROTONOSUPPORT),
        Some(b) => Ok(b),
    }
}

pub fn handle(
    caller: &Caller,
    req: &Req<'_>,
    out: &mut Output,
) -> Result<(), crate::errno::MsgErr> {
    if req.msg_type & 0xff != NFNL_MSG_COMPAT_GET as u16 {
        return Err(EINVAL.into());
    }
    let tb = nla::parse(req.attr_bytes(), 20, POLICY)?;
    let (Some(name), Some(rev), Some(ty)) = (
        tb.get(NFTA_COMPAT_NAME),
        tb.be32(NFTA_COMPAT_REV),
        tb.be32(NFTA_COMPAT_TYPE),
    ) else {
        return Err(EINVAL.into());
    };
    let family = req.family();
    if !matches!(
        family,
        NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_BRIDGE | NFPROTO_ARP
    ) {
        return Err(EINVAL.into());
    }
    let target = ty == 1;
    let best = find_revision(family, name.cstr(), rev, target)?;
    let mut payload = vec![family, NFNETLINK_V0, 0, 0];
    netlink_proto::attr::emit_attrs(
        &[
            strz(NFTA_COMPAT_NAME, name.cstr()),
            be32(NFTA_COMPAT_REV, best),
            be32(NFTA_COMPAT_TYPE, u32::from(target)),
        ],
        &mut payload,
    );
    let flags = if caller.portid != 0 { NLM_F_MULTI } else { 0 };
    let mut msg = Vec::new();
    put_msg(
        &mut msg,
        (crate::msg::SUBSYS_NFT_COMPAT << 8) | u16::from(NFNL_MSG_COMPAT_GET),
        flags,
        req.seq,
        caller.portid,
        &payload,
    );
    out.unicast.push(msg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions() {
        assert_eq!(find_revision(NFPROTO_IPV4, b"conntrack", 3, false), Ok(3));
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"conntrack", 0, false),
            Err(EPROTONOSUPPORT)
        );
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"nosuch", 0, false),
            Err(ENOENT)
        );
        assert_eq!(find_revision(NFPROTO_IPV6, b"icmp", 0, false), Err(ENOENT));
        assert_eq!(find_revision(NFPROTO_IPV4, b"REJECT", 0, true), Ok(0));
    }
}
