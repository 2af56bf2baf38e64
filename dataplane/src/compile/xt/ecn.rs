//! ipt_ECN (`-j ECN`, mangle table, IPv4): ecn_tg() runs set_ect_ip() for
//! `--ecn-ip-ect` (IPT_ECN_OP_SET_IP), then, when the IPv4 header's protocol is TCP,
//! set_ect_tcp() for the TCP options (`--ecn-tcp-remove`, `--ecn-tcp-cwr`,
//! `--ecn-tcp-ece`).
//!
//! set_ect_ip() writes the ECN bits of the TOS byte only when they differ, with
//! csum_replace2() on the header checksum: exactly `-j TOS --set-tos ect/0x03`, the
//! same header write (see header_targets.rs), refused where such a write is (input
//! chains, mangle OUTPUT: the TOS byte is part of the route).
//!
//! set_ect_tcp() reads the 20 bytes at ip_hdrlen() whether or not the packet is a
//! later fragment (it then rewrites the fragment's payload bytes 13 and 16-17), and
//! answers NF_DROP, after the rule's counter, when they are not all there: the
//! statement [`Statement::EcnTcp`] (bpf/lib/xt_ecn.h) does the same. TCP flags decide
//! neither routes nor connection tuples, so it may run in every chain, mangle OUTPUT
//! included.

use netlink_proto::xt::Blob;
use nftshim_ebpf::ir::{EcnTcp, Statement};

use super::header_targets::network_write_spec;
use super::{version, Decompiled, XtCx, IPPROTO_TCP};
use crate::compile::rule::V4;

const IPT_ECN_OP_SET_IP: u8 = 0x01;
const IPT_ECN_OP_SET_ECE: u8 = 0x10;
const IPT_ECN_OP_SET_CWR: u8 = 0x20;
const IPT_ECN_IP_MASK: u8 = 0x03;

/// `struct ipt_ECN_info`: operation u8 @0, ip_ect @1, proto.tcp (ece bit 0, cwr bit
/// 1) @2.
pub(super) fn ecn(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if version(cx, "ECN")? != V4 {
        return Err("xt target ECN outside ip tables is not supported".into());
    }
    let (operation, ip_ect, tcp) = (b.u8(0), b.u8(1), b.u8(2));
    let tcp_ops = operation & (IPT_ECN_OP_SET_ECE | IPT_ECN_OP_SET_CWR) != 0;
    // checkentry wants `-p tcp` for them; the data plane must know the rule sees TCP
    // packets only (the statement itself reads the IPv4 header's protocol).
    if tcp_ops
        && !cx
            .l4protos
            .is_some_and(|p| p.len() == 1 && p.contains(&IPPROTO_TCP))
    {
        return Err("xt target ECN's TCP operations without -p tcp are not supported".into());
    }
    let statement = Statement::EcnTcp(EcnTcp {
        ece: (operation & IPT_ECN_OP_SET_ECE != 0).then_some(tcp & 1 != 0),
        cwr: (operation & IPT_ECN_OP_SET_CWR != 0).then_some(tcp & 2 != 0),
    });
    if operation & IPT_ECN_OP_SET_IP == 0 {
        return Ok(if tcp_ops {
            Decompiled::Statement(statement)
        } else {
            // Nothing to do: XT_CONTINUE.
            Decompiled::Always
        });
    }
    // The TOS byte's ECN bits become ip_ect's (checkentry keeps it within the mask).
    let w = network_write_spec(V4, 1, &[!IPT_ECN_IP_MASK], &[ip_ect & IPT_ECN_IP_MASK]);
    Ok(if tcp_ops {
        Decompiled::WriteThenStatement(w, statement)
    } else {
        Decompiled::Write(w)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::header_targets::tos;
    use super::super::tests::cx;
    use super::super::{Family, Hook};
    use super::*;

    fn ecn_info(
        protos: Option<&BTreeSet<u8>>,
        operation: u8,
        ip_ect: u8,
        tcp: u8,
    ) -> Result<Decompiled, String> {
        let mut c = cx(Family::Ip, Hook::Postrouting, None);
        c.l4protos = protos;
        ecn(&c, Blob(&[operation, ip_ect, tcp]))
    }

    /// `--ecn-ip-ect N` is `-j TOS --set-tos N/0x03`'s write.
    #[test]
    fn ip_ect_is_the_tos_write_of_the_ecn_bits() {
        let c = cx(Family::Ip, Hook::Postrouting, None);
        for ect in 0..=3u8 {
            let want = tos(&c, Blob(&[ect, 0x03])).unwrap();
            assert_eq!(ecn_info(None, IPT_ECN_OP_SET_IP, ect, 0), Ok(want));
        }
        assert_eq!(ecn_info(None, 0, 0, 0), Ok(Decompiled::Always));
    }

    /// `--ecn-tcp-remove` (both bits to 0), `--ecn-tcp-cwr 1`, `--ecn-tcp-ece 0`, and
    /// with `--ecn-ip-ect` the TOS write first.
    #[test]
    fn tcp_operations() {
        let tcp = BTreeSet::from([IPPROTO_TCP]);
        let st = |ece, cwr| Statement::EcnTcp(EcnTcp { ece, cwr });
        assert_eq!(
            ecn_info(Some(&tcp), 0x30, 0, 0),
            Ok(Decompiled::Statement(st(Some(false), Some(false))))
        );
        assert_eq!(
            ecn_info(Some(&tcp), 0x20, 0, 2),
            Ok(Decompiled::Statement(st(None, Some(true))))
        );
        assert_eq!(
            ecn_info(Some(&tcp), 0x10, 0, 2),
            Ok(Decompiled::Statement(st(Some(false), None)))
        );
        let c = cx(Family::Ip, Hook::Postrouting, None);
        let Decompiled::Write(w) = tos(&c, Blob(&[1, 0x03])).unwrap() else {
            panic!("not a write");
        };
        assert_eq!(
            ecn_info(Some(&tcp), 0x31, 1, 1),
            Ok(Decompiled::WriteThenStatement(
                w,
                st(Some(true), Some(false))
            ))
        );
    }

    /// mangle OUTPUT is a route chain: the TCP operations keep the route, the write
    /// of the TOS byte's ECN bits does not (nf_route_table_hook4() compares the byte).
    #[test]
    fn route_chains_take_the_tcp_operations_only() {
        use crate::compile::{keeps_the_route, Family as F};
        let tcp = BTreeSet::from([IPPROTO_TCP]);
        let Ok(Decompiled::WriteThenStatement(w, st)) = ecn_info(Some(&tcp), 0x31, 1, 1) else {
            panic!("not a write and a statement");
        };
        assert!(keeps_the_route(F::Ip, &st));
        assert!(!keeps_the_route(F::Ip, &Statement::PayloadSet(w)));
    }

    #[test]
    fn tcp_operations_need_tcp_and_ipv4() {
        let udp = BTreeSet::from([17]);
        let both = BTreeSet::from([IPPROTO_TCP, 17]);
        for protos in [None, Some(&udp), Some(&both)] {
            let e = ecn_info(protos, 0x30, 0, 0).unwrap_err();
            assert!(e.contains("-p tcp"), "{e}");
        }
        let e = ecn(
            &cx(Family::Ip6, Hook::Postrouting, None),
            Blob(&[IPT_ECN_OP_SET_IP, 1, 0]),
        )
        .unwrap_err();
        assert!(e.contains("ECN"), "{e}");
    }
}
