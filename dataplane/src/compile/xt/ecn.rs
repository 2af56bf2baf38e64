//! ipt_ECN (`-j ECN`, mangle table, IPv4): ecn_tg() runs set_ect_ip() for
//! `--ecn-ip-ect` (IPT_ECN_OP_SET_IP), then set_ect_tcp() for the TCP options
//! (`--ecn-tcp-remove`, `--ecn-tcp-cwr`, `--ecn-tcp-ece`).
//!
//! set_ect_ip() writes the ECN bits of the TOS byte only when they differ, with
//! csum_replace2() on the header checksum: exactly `-j TOS --set-tos ect/0x03`, the
//! same header write (see header_targets.rs).
//!
//! The TCP options stay refused: set_ect_tcp() reads the 20 bytes at ip_hdrlen()
//! whether or not the packet is a later fragment (it then rewrites the fragment's
//! payload bytes 12-13 and 16-17), and answers NF_DROP, after the rule's counter,
//! when they are not all there. The data plane's transport header writes break the
//! rule on both, so they cannot reproduce it.

use netlink_proto::xt::Blob;

use super::header_targets::network_write;
use super::{version, Decompiled, XtCx};
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
    let (operation, ip_ect) = (b.u8(0), b.u8(1));
    if operation & (IPT_ECN_OP_SET_ECE | IPT_ECN_OP_SET_CWR) != 0 {
        return Err(
            "xt target ECN --ecn-tcp-remove/--ecn-tcp-cwr/--ecn-tcp-ece is not supported by \
             the eBPF data plane (ecn_tg() rewrites later fragments' payload as a TCP header \
             and drops packets whose TCP header is cut short)"
                .into(),
        );
    }
    if operation & IPT_ECN_OP_SET_IP == 0 {
        // Nothing to do: XT_CONTINUE.
        return Ok(Decompiled::Always);
    }
    // The TOS byte's ECN bits become ip_ect's (checkentry keeps it within the mask).
    Ok(network_write(
        V4,
        1,
        &[!IPT_ECN_IP_MASK],
        &[ip_ect & IPT_ECN_IP_MASK],
    ))
}

#[cfg(test)]
mod tests {
    use super::super::header_targets::tos;
    use super::super::tests::cx;
    use super::super::{Family, Hook};
    use super::*;

    fn ecn_info(operation: u8, ip_ect: u8, tcp: u8) -> Result<Decompiled, String> {
        ecn(
            &cx(Family::Ip, Hook::Postrouting, None),
            Blob(&[operation, ip_ect, tcp]),
        )
    }

    /// `--ecn-ip-ect N` is `-j TOS --set-tos N/0x03`'s write.
    #[test]
    fn ip_ect_is_the_tos_write_of_the_ecn_bits() {
        let c = cx(Family::Ip, Hook::Postrouting, None);
        for ect in 0..=3u8 {
            let want = tos(&c, Blob(&[ect, 0x03])).unwrap();
            assert_eq!(ecn_info(IPT_ECN_OP_SET_IP, ect, 0), Ok(want));
        }
        assert_eq!(ecn_info(0, 0, 0), Ok(Decompiled::Always));
    }

    #[test]
    fn tcp_operations_refused() {
        for op in [0x30, 0x31, 0x10, 0x20] {
            let e = ecn_info(op, 0, 0).unwrap_err();
            assert!(e.contains("ECN --ecn-tcp-remove"), "{e}");
        }
        let e = ecn(
            &cx(Family::Ip6, Hook::Postrouting, None),
            Blob(&[IPT_ECN_OP_SET_IP, 1, 0]),
        )
        .unwrap_err();
        assert!(e.contains("ECN"), "{e}");
    }
}
