//! `-m cgroup` (net/netfilter/xt_cgroup.c): the cgroup of the packet's socket.
//!
//! Revisions 1 and 2 (`cgroup_mt_v1`/`_v2`) hold when skb->sk is a full socket of the
//! namespace and then, with `--path`, when its cgroup (v2) descends from the cgroup
//! the path named when the rule was added (`^ invert_path`), or, with `--cgroup`, when
//! its net_cls classid is the rule's (`^ invert_classid`). Without such a socket the
//! match fails, inverted or not.
//!
//! Enforced: `--path` of the root cgroup ("/"), of which every cgroup descends: the
//! match is then "has a full socket of the namespace" ([`Insn::XtFullSocket`], TC
//! egress: OUTPUT and POSTROUTING), and `! --path /` never holds, at any hook.
//! Refused: other paths (the kernel resolves them once, in the adding process's
//! cgroup namespace, and keeps that cgroup even when the path later names another),
//! `--cgroup` (no BPF helper reads a socket's net_cls classid; bpf_get_cgroup_classid
//! reads the current task's), revision 0 (`--cgroup` too), and `--path /` in INPUT,
//! where skb->sk is the socket early demux found after TC ingress ran.

use netlink_proto::expr::Expr as TypedExpr;
use netlink_proto::xt::{strnlen, Blob};
use nftshim_ebpf::residual::Insn;

use super::{Decompiled, XtCx};
use crate::compile::Hook;

/// `struct xt_cgroup_info_v1` / `_v2`: has_path u8 @0, has_classid @1, invert_path
/// @2, invert_classid @3, path @4 (4096 bytes in v1, 512 in v2), classid u32 after.
pub fn cgroup(cx: &XtCx<'_>, rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    let path_len = match rev {
        1 => 4096,
        2 => 512,
        _ => {
            return Err(format!(
                "xt match cgroup revision {rev} (--cgroup, a net_cls classid) is not \
                 supported by the eBPF data plane"
            ))
        }
    };
    let (has_path, has_classid, invert_path) = (b.u8(0) != 0, b.u8(1) != 0, b.u8(2) != 0);
    if has_classid || !has_path {
        return Err(
            "xt match cgroup --cgroup (a socket's net_cls classid) is not supported by the \
             eBPF data plane"
                .into(),
        );
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
    match cx.hook {
        Hook::Output | Hook::Postrouting => {
            Ok(Decompiled::Residual(vec![], vec![Insn::XtFullSocket]))
        }
        _ => Err(format!(
            "xt match cgroup --path in {:?} is not supported by the eBPF data plane (the \
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
    fn other_paths_and_classids_are_refused() {
        assert!(decompile(Hook::Output, 2, "/user.slice", false).is_err());
        assert!(decompile(Hook::Output, 2, "/.", true).is_err());
        let mut info = vec![0u8; 528];
        info[1] = 1;
        let cx = cx(Family::Ip6, Hook::Output, None);
        let m = xt_match("cgroup", 2, info);
        assert!(decompile_match(&cx, &m).unwrap_err().contains("--cgroup"));
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
