//! `-m socket` (net/netfilter/xt_socket.c, nf_socket_ipv4.c, nf_socket_ipv6.c): the
//! packet has a socket in the namespace.
//!
//! socket_match() takes skb->sk, else nf_sk_lookup_slow_v4/v6() (TCP and UDP by the
//! packet's tuple, an ICMP(v6) error by the quoted packet's, reversed), and holds when
//! a socket is found that is not a full socket bound to the any address (unless
//! `--nowildcard`). Enforced at TC ingress by [`Insn::XtSocket`], the same lookup
//! through bpf_skc_lookup_tcp()/bpf_sk_lookup_udp() (bpf/lib/xt_socket.h):
//! - PREROUTING: ip_rcv_core() orphans the skb before the hook, so the kernel always
//!   looks the socket up, with the packet's addresses, for this host or not.
//! - INPUT: skb->sk is the socket early demux found, if any: for TCP the established,
//!   timewait or request socket of the packet's tuple, which the lookup finds first;
//!   for unicast UDP (IPv4, IPv6) a connected socket of the exact tuple, bound to the
//!   destination address, so the lookup also finds a socket bound to that address and
//!   the match holds either way. IPv4 UDP multicast differs: udp_v4_early_demux() takes
//!   the one socket the group's filters (ip_mc_sf_allow()) admit, possibly bound to
//!   the any address (wildcard: no match), where the lookup prefers one bound to the
//!   group, filters unseen (match). So `-m socket` without `--nowildcard` is refused
//!   at IPv4 INPUT unless the rule excludes UDP.
//!
//! Refused: `--transparent` (inet_sk_transparent(): no field of struct bpf_sock and no
//! helper at TC reads IP_TRANSPARENT), `--restore-skmark` (the match writes the
//! packet's mark, which the rules after it read).
//!
//! Fragments: xt_socket turns defragmentation on, so the kernel looks the reassembled
//! datagram up by its first fragment's ports; here later fragments (no ports) get the
//! answer their first fragment got (remembered by datagram, bpf/lib/xt_socket.h).
//!
//! Known differences: a later fragment whose first fragment did not reach the match
//! first finds no socket; on an L3 master's (VRF) port the BPF lookup passes the port
//! as sdif, the kernel 0; a reuseport group's SO_ATTACH_REUSEPORT_[CE]BPF program runs
//! on the kernel's TCP lookup (not on BPF's, which selects by hash) and may refuse
//! every socket.

use netlink_proto::xt::Blob;
use nftshim_ebpf::residual::Insn;

use super::super::rule::V4;
use super::{Decompiled, XtCx};
use crate::compile::{Family, Hook};

/// `struct xt_socket_mtinfo1..3` flags (uapi xt_socket.h).
const XT_SOCKET_TRANSPARENT: u8 = 1 << 0;
const XT_SOCKET_NOWILDCARD: u8 = 1 << 1;
const XT_SOCKET_RESTORE_SKMARK: u8 = 1 << 2;

const IPPROTO_UDP: u8 = 17;

/// Revision 0 has no info (no flags); 1..3 `__u8 flags` @0.
pub fn socket(cx: &XtCx<'_>, rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    let flags = if rev == 0 { 0 } else { b.u8(0) };
    if flags & XT_SOCKET_TRANSPARENT != 0 {
        return Err(
            "xt match socket --transparent is not supported by the eBPF data plane (no BPF \
             helper at TC reads a socket's IP_TRANSPARENT)"
                .into(),
        );
    }
    if flags & XT_SOCKET_RESTORE_SKMARK != 0 {
        return Err(
            "xt match socket --restore-skmark is not supported by the eBPF data plane (the \
             match would write the packet's mark)"
                .into(),
        );
    }
    if flags & !XT_SOCKET_NOWILDCARD != 0 {
        return Err(format!("xt match socket with flags {flags:#x}"));
    }
    if !matches!(cx.family, Family::Ip | Family::Ip6) {
        return Err(format!(
            "xt match socket in {:?} chains is not supported by the eBPF data plane",
            cx.family
        ));
    }
    let nowildcard = flags & XT_SOCKET_NOWILDCARD != 0;
    match cx.hook {
        Hook::Prerouting => {}
        Hook::Input => {
            let may_be_udp = cx.l4protos.is_none_or(|p| p.contains(&IPPROTO_UDP));
            if cx.families & V4 != 0 && !nowildcard && may_be_udp {
                return Err(
                    "xt match socket without --nowildcard in IPv4 INPUT is not supported by \
                     the eBPF data plane for UDP (early demux of multicast picks the socket \
                     by the group's filters)"
                        .into(),
                );
            }
        }
        hook => {
            return Err(format!(
                "xt match socket in {hook:?} is not supported by the eBPF data plane"
            ))
        }
    }
    Ok(Decompiled::Residual(
        vec![],
        vec![Insn::XtSocket { nowildcard }],
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::decompile_match;
    use super::*;
    use netlink_proto::expr::compat::{Match as XtMatch, MatchAttr};

    fn decompile(
        family: Family,
        hook: Hook,
        rev: u32,
        flags: u8,
        l4protos: Option<&BTreeSet<u8>>,
    ) -> Result<Decompiled, String> {
        let cx = XtCx {
            family,
            hook,
            families: if family == Family::Ip6 { 2 } else { 1 },
            l4protos,
            view: None,
        };
        let info = if rev == 0 {
            vec![]
        } else {
            vec![flags, 0, 0, 0, 0, 0, 0, 0]
        };
        let m = XtMatch::new(vec![
            MatchAttr::Name("socket".into()),
            MatchAttr::Rev(rev),
            MatchAttr::Info(info),
        ]);
        decompile_match(&cx, &m)
    }

    fn lookup(nowildcard: bool) -> Result<Decompiled, String> {
        Ok(Decompiled::Residual(
            vec![],
            vec![Insn::XtSocket { nowildcard }],
        ))
    }

    #[test]
    fn lookup_at_prerouting_in_both_families() {
        for family in [Family::Ip, Family::Ip6] {
            for rev in 1..=3 {
                assert_eq!(
                    decompile(family, Hook::Prerouting, rev, 0, None),
                    lookup(false)
                );
            }
            assert_eq!(
                decompile(family, Hook::Prerouting, 3, 2, None),
                lookup(true)
            );
        }
        assert_eq!(
            decompile(Family::Ip, Hook::Prerouting, 0, 0, None),
            lookup(false)
        );
    }

    #[test]
    fn input_refuses_ipv4_udp_wildcard_test_only() {
        assert_eq!(
            decompile(Family::Ip6, Hook::Input, 3, 0, None),
            lookup(false)
        );
        assert!(decompile(Family::Ip, Hook::Input, 3, 0, None)
            .unwrap_err()
            .contains("INPUT"));
        let udp = BTreeSet::from([17]);
        let tcp = BTreeSet::from([6]);
        assert!(decompile(Family::Ip, Hook::Input, 3, 0, Some(&udp)).is_err());
        assert_eq!(
            decompile(Family::Ip, Hook::Input, 3, 0, Some(&tcp)),
            lookup(false)
        );
        assert_eq!(decompile(Family::Ip, Hook::Input, 3, 2, None), lookup(true));
    }

    #[test]
    fn transparent_and_restore_skmark_are_refused() {
        for flags in [1, 3, 4, 5, 6, 7] {
            let err = decompile(Family::Ip, Hook::Prerouting, 3, flags, None).unwrap_err();
            assert!(
                err.contains("--transparent") || err.contains("--restore-skmark"),
                "{err}"
            );
        }
        assert!(decompile(Family::Ip, Hook::Forward, 3, 0, None).is_err());
        assert!(decompile(Family::Ip6, Hook::Output, 3, 0, None).is_err());
    }
}
