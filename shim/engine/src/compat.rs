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

const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NFT_COMPAT_NAME_MAX as usize - 1),
    Pol::U32,
    Pol::U32,
];

/// `xt_find_revision`: the best revision, or the errno.
pub fn find_revision(family: u8, name: &[u8], rev: u32, target: bool) -> Result<u32, i32> {
    crate::xt::find_revision(family, name, rev, target)
}

pub fn handle(
    caller: &Caller,
    req: &Req<'_>,
    out: &mut Output,
) -> Result<(), crate::errno::MsgErr> {
    if req.msg_type & 0xff != NFNL_MSG_COMPAT_GET {
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
        (crate::msg::SUBSYS_NFT_COMPAT << 8) | NFNL_MSG_COMPAT_GET,
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
        assert_eq!(find_revision(NFPROTO_IPV4, b"conntrack", 0, false), Err(93));
        assert_eq!(
            find_revision(NFPROTO_IPV4, b"nosuch", 0, false),
            Err(ENOENT)
        );
        assert_eq!(find_revision(NFPROTO_IPV6, b"icmp", 0, false), Err(ENOENT));
        assert_eq!(find_revision(NFPROTO_IPV4, b"REJECT", 0, true), Ok(0));
        // The family's own revision answers with the family's best...
        assert_eq!(find_revision(NFPROTO_IPV4, b"SNAT", 0, true), Ok(0));
        // ...a revision only the generic list has, with the best of both.
        assert_eq!(find_revision(NFPROTO_IPV4, b"SNAT", 2, true), Ok(2));
        assert!(crate::xt::find(NFPROTO_IPV6, b"SNAT", 1, true).is_some());
        assert!(crate::xt::find(NFPROTO_IPV6, b"SNAT", 0, true).is_none());
    }
}
