//! `-m cgroup` (net/netfilter/xt_cgroup.c): the cgroup of the packet's socket.
//!
//! Every revision (`cgroup_mt_v0`/`_v1`/`_v2`) holds only when skb->sk is a full socket
//! of the namespace, and then, with `--path`, when its cgroup (v2) descends from the
//! cgroup the path named when the rule was added (`^ invert_path`), or otherwise when
//! its net_cls classid is the rule's (`^ invert_classid`; revision 0 has only that).
//! Without such a socket the match fails, inverted or not.
//!
//! Enforced at TC egress (OUTPUT and POSTROUTING): `--path` of the root cgroup ("/"),
//! of which every cgroup descends, which is then "has a full socket of the namespace"
//! ([`Insn::XtFullSocket`]), and `--cgroup`, that socket's net_cls classid
//! ([`Insn::XtCgroupClassid`], bpf_skb_cgroup_classid()); `! --path /` never holds, at
//! any hook. Refused: other paths (the kernel resolves them once, in the adding
//! process's cgroup namespace, and keeps that cgroup even when the path later names
//! another), and the socket tests in INPUT, where skb->sk is the socket early demux
//! found after TC ingress ran.

use netlink_proto::expr::Expr as TypedExpr;
use netlink_proto::xt::{strnlen, Blob};
use nftshim_ebpf::residual::Insn;

use super::{Decompiled, XtCx};
use crate::compile::Hook;

/// `struct xt_cgroup_info_v0`: id u32 @0, invert u32 @4 (a classid). `struct
/// xt_cgroup_info_v1` / `_v2`: has_path u8 @0, has_classid @1, invert_path @2,
/// invert_classid @3, path @4 (4096 bytes in v1, 512 in v2), classid u32 after it (v1) or
/// in its place (v2).
pub fn cgroup(cx: &XtCx<'_>, rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    // Revision 2's classid shares the path's bytes (a union); revision 1's follows them.
    let (path_len, classid_at) = match rev {
        0 => return classid(cx, b.u32(0), b.u32(4) != 0),
        1 => (4096, 4100),
        2 => (512, 4),
        _ => return Err(format!("xt match cgroup revision {rev} is not supported")),
    };
    let (has_path, invert_path) = (b.u8(0) != 0, b.u8(2) != 0);
    if !has_path {
        // cgroup_mt_v1/v2 test the classid whenever no path was resolved, also
        // when none was given (then the blob's classid, 0).
        return classid(cx, b.u32(classid_at), b.u8(3) != 0);
    }
    let field = b.bytes(4, path_len);
    let path = &field[..strnlen(&field)];
    // kernfs_walk_and_get() skips empty components: only slashes name the root.
    if !path.iter().all(|&c| c == b'/') {
        return Err(
            "xt match cgroup --path other than \"/\" is not supported by the eBPF data plane \
             (the kernel resolves it once, in the adding process's cgroup namespace)"
                .into(),
        );
    }
    if invert_path {
        // Every full socket's cgroup descends from the root: `^ 1` fails, and without
        // a socket the match fails too.
        return Ok(Decompiled::Never);
    }
    at_egress(cx, "--path", Insn::XtFullSocket)
}

/// `--cgroup`: the socket's net_cls classid.
fn classid(cx: &XtCx<'_>, classid: u32, invert: bool) -> Result<Decompiled, String> {
    at_egress(cx, "--cgroup", Insn::XtCgroupClassid { classid, invert })
}

/// The socket tests run where TC egress sees the socket the hook sees (skb->sk).
fn at_egress(cx: &XtCx<'_>, what: &str, test: Insn) -> Result<Decompiled, String> {
    match cx.hook {
        Hook::Output | Hook::Postrouting => Ok(Decompiled::Residual(vec![], vec![test])),
        _ => Err(format!(
            "xt match cgroup {what} in {:?} is not supported by the eBPF data plane (the \
             socket early demux finds is not known at TC ingress)",
            cx.hook
        )),
    }
}

/// Refuses a `--path` that a process outside the initial cgroup namespace adds: the
/// kernel resolves it below that namespace's root (cgroup_get_from_path), so even "/"
/// names a subtree there, which the data plane's "every full socket" does not test.
pub fn check_adder_cgroupns(exprs: &[nftshim_engine::view::Expr]) -> Result<(), String> {
    for e in exprs {
        let TypedExpr::Match(m) = TypedExpr::from_data(&e.name, &e.data) else {
            continue;
        };
        let names_a_path = m.ext_name() == Some("cgroup")
            && matches!(m.rev(), Some(1 | 2))
            && m.info().is_some_and(|info| Blob(info).u8(0) != 0);
        if names_a_path {
            return Err(
                "xt match cgroup --path added from a private cgroup namespace is not \
                 supported by the eBPF data plane (the kernel resolves it below that \
                 namespace's root)"
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

    fn decompile(hook: Hook, rev: u32, path: &str, invert: bool) -> Result<Decompiled, String> {
        let size = if rev == 1 { 4112 } else { 528 };
        let mut info = vec![0u8; size];
        info[0] = 1;
        info[2] = invert as u8;
        info[4..4 + path.len()].copy_from_slice(path.as_bytes());
        let cx = cx(Family::Ip, hook, None);
        let m = xt_match("cgroup", rev, info);
        decompile_match(&cx, &m)
    }

    #[test]
    fn root_path_is_a_full_socket_test_at_egress() {
        for rev in [1, 2] {
            for hook in [Hook::Output, Hook::Postrouting] {
                assert_eq!(
                    decompile(hook, rev, "/", false),
                    Ok(Decompiled::Residual(vec![], vec![Insn::XtFullSocket]))
                );
            }
            assert!(decompile(Hook::Input, rev, "/", false).is_err());
            // Inverted: never, at every hook.
            for hook in [Hook::Input, Hook::Output, Hook::Postrouting] {
                assert_eq!(decompile(hook, rev, "//", true), Ok(Decompiled::Never));
            }
        }
    }

    #[test]
    fn other_paths_are_refused() {
        assert!(decompile(Hook::Output, 2, "/user.slice", false).is_err());
        assert!(decompile(Hook::Output, 2, "/.", true).is_err());
    }

    #[test]
    fn classids_are_tested_at_egress() {
        let classid = |rev: u32, hook: Hook, id: u32, invert: bool| {
            let info = if rev == 0 {
                [id.to_ne_bytes(), (invert as u32).to_ne_bytes()].concat()
            } else {
                let (at, size) = if rev == 1 { (4100, 4112) } else { (4, 528) };
                let mut info = vec![0u8; size];
                info[1] = 1;
                info[3] = invert as u8;
                info[at..at + 4].copy_from_slice(&id.to_ne_bytes());
                info
            };
            let cx = cx(Family::Ip6, hook, None);
            decompile_match(&cx, &xt_match("cgroup", rev, info))
        };
        for rev in [0, 1, 2] {
            for hook in [Hook::Output, Hook::Postrouting] {
                for invert in [false, true] {
                    assert_eq!(
                        classid(rev, hook, 0x10002, invert),
                        Ok(Decompiled::Residual(
                            vec![],
                            vec![Insn::XtCgroupClassid {
                                classid: 0x10002,
                                invert
                            }]
                        ))
                    );
                }
            }
            let err = classid(rev, Hook::Input, 1, false).unwrap_err();
            assert!(err.contains("--cgroup"), "{err}");
        }
    }

    #[test]
    fn a_path_from_a_private_cgroup_namespace_is_refused() {
        let expr = |info: Vec<u8>| nftshim_engine::view::Expr {
            name: "match".into(),
            data: xt_match("cgroup", 2, info).to_attrs(),
        };
        let mut path = vec![0u8; 528];
        path[0] = 1;
        path[4] = b'/';
        let mut classid = vec![0u8; 528];
        classid[1] = 1;
        assert!(check_adder_cgroupns(&[expr(path)]).is_err());
        assert!(check_adder_cgroupns(&[expr(classid)]).is_ok());
    }
}
