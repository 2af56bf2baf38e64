//! `-m owner` (net/netfilter/xt_owner.c): the owner of the packet's socket file.
//!
//! owner_mt() takes skb_to_full_sk(skb) (a request socket's listener; none for a
//! timewait one); without it, without a `struct socket`, or of another namespace,
//! the match holds when `(match ^ invert) == 0`; `! --socket-exists` fails on a
//! socket; a socket without a file (kernel sockets: the namespace's ICMP and TCP
//! control sockets) holds when `((match ^ invert) & (UID | GID)) == 0`; then the
//! file's f_cred: fsuid in `[uid_min, uid_max]`, fsgid (or, with `--suppl-groups`, a
//! supplementary group) in `[gid_min, gid_max]`, each `^ invert`.
//!
//! Enforced at OUTPUT and POSTROUTING (the kernel allows no other hook) by
//! [`Insn::XtOwner`] at TC egress, where skb->sk is still the socket the hooks saw; the
//! credentials are read by bpf/lib/sockcred.h. Refused: other hooks (a regular chain is
//! judged under the hooks that reach it), unknown flag bits, and uid/gid tests in a
//! namespace owned by a user namespace other than the initial one (make_kuid() maps
//! the rule's ids through it; see [`check_netns_userns`]).

use netlink_proto::expr::Expr as TypedExpr;
use netlink_proto::xt::Blob;
use nftshim_ebpf::residual::Insn;

use super::{Decompiled, XtCx};
use crate::compile::Hook;

/// uapi xt_owner.h.
const XT_OWNER_UID: u8 = 1 << 0;
const XT_OWNER_GID: u8 = 1 << 1;
const XT_OWNER_SOCKET: u8 = 1 << 2;
const XT_OWNER_SUPPL_GROUPS: u8 = 1 << 3;
const XT_OWNER_MASK: u8 = XT_OWNER_UID | XT_OWNER_GID | XT_OWNER_SOCKET | XT_OWNER_SUPPL_GROUPS;

/// `struct xt_owner_match_info`: uid_min @0, uid_max @4, gid_min @8, gid_max @12 (u32,
/// host order), match @16, invert @17.
pub fn owner(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    let (match_flags, invert) = (b.u8(16), b.u8(17));
    if (match_flags | invert) & !XT_OWNER_MASK != 0 {
        return Err(format!(
            "xt match owner flags 0x{match_flags:x}/0x{invert:x} are not supported by the \
             eBPF data plane"
        ));
    }
    match cx.hook {
        Hook::Output | Hook::Postrouting => Ok(Decompiled::Residual(
            vec![],
            vec![Insn::XtOwner {
                uid_min: b.u32(0),
                uid_max: b.u32(4),
                gid_min: b.u32(8),
                gid_max: b.u32(12),
                match_flags,
                invert,
            }],
        )),
        _ => Err(format!(
            "xt match owner in {:?} is not supported by the eBPF data plane (the socket is \
             known at TC egress only: OUTPUT and POSTROUTING)",
            cx.hook
        )),
    }
}

/// Refuses uid/gid tests (`-m owner --uid-owner/--gid-owner`) in a namespace whose
/// owning user namespace is not the initial one: owner_mt() compares the file's
/// credentials with make_kuid(net->user_ns, id), which the data plane, comparing the
/// raw ids, does not map.
pub fn check_netns_userns(exprs: &[nftshim_engine::view::Expr]) -> Result<(), String> {
    use netlink_proto::expr::meta::MetaKey;
    for e in exprs {
        let m = match TypedExpr::from_data(&e.name, &e.data) {
            // nft_meta's skuid/skgid map through the namespace's user namespace too.
            TypedExpr::Meta(m) if matches!(m.key(), Some(MetaKey::Skuid | MetaKey::Skgid)) => {
                return Err("meta skuid/skgid in a network namespace owned by a user \
                            namespace other than the initial one is not supported by the \
                            eBPF data plane (the kernel maps the ids through it)"
                    .into())
            }
            TypedExpr::Match(m) => m,
            _ => continue,
        };
        let tests_ids = m.ext_name() == Some("owner")
            && m.info().is_some_and(|info| {
                info.len() > 16 && info[16] & (XT_OWNER_UID | XT_OWNER_GID) != 0
            });
        if tests_ids {
            return Err(
                "xt match owner --uid-owner/--gid-owner in a network namespace owned by a \
                 user namespace other than the initial one is not supported by the eBPF data \
                 plane (the kernel maps the ids through that user namespace)"
                    .into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::decompile_match;
    use super::super::tests::{cx, xt_match};
    use super::*;
    use crate::compile::Family;

    fn info(uid: (u32, u32), gid: (u32, u32), match_flags: u8, invert: u8) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        for (k, v) in [uid.0, uid.1, gid.0, gid.1].into_iter().enumerate() {
            b[4 * k..4 * k + 4].copy_from_slice(&v.to_ne_bytes());
        }
        (b[16], b[17]) = (match_flags, invert);
        b
    }

    #[test]
    fn owner_is_a_residual_test_at_the_egress_hooks() {
        let blob = info((0, 10), (5, 5), XT_OWNER_UID | XT_OWNER_GID, XT_OWNER_GID);
        for hook in [Hook::Output, Hook::Postrouting] {
            let c = cx(Family::Ip, hook, None);
            assert_eq!(
                decompile_match(&c, &xt_match("owner", 1, blob.clone())),
                Ok(Decompiled::Residual(
                    vec![],
                    vec![Insn::XtOwner {
                        uid_min: 0,
                        uid_max: 10,
                        gid_min: 5,
                        gid_max: 5,
                        match_flags: 3,
                        invert: 2
                    }]
                ))
            );
        }
        for hook in [Hook::Input, Hook::Prerouting, Hook::Forward] {
            let c = cx(Family::Ip6, hook, None);
            assert!(decompile_match(&c, &xt_match("owner", 1, blob.clone())).is_err());
        }
        let c = cx(Family::Ip, Hook::Output, None);
        assert!(decompile_match(&c, &xt_match("owner", 1, info((0, 0), (0, 0), 0x10, 0))).is_err());
    }

    #[test]
    fn ids_are_refused_in_a_namespace_of_another_user_namespace() {
        let expr = |info: Vec<u8>| nftshim_engine::view::Expr {
            name: "match".into(),
            data: xt_match("owner", 1, info).to_attrs(),
        };
        assert!(check_netns_userns(&[expr(info((0, 0), (0, 0), XT_OWNER_UID, 0))]).is_err());
        assert!(check_netns_userns(&[expr(info((0, 0), (0, 0), XT_OWNER_GID, 0))]).is_err());
        assert!(check_netns_userns(&[expr(info((0, 0), (0, 0), XT_OWNER_SOCKET, 4))]).is_ok());
    }
}
