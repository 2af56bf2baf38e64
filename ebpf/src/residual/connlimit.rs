//! The reference of xt_connlimit's hotdrop (net/netfilter/xt_connlimit.c): a packet
//! without a connection is counted by the tuple nf_ct_get_tuplepr() takes from its
//! headers, and when it cannot take one the match drops the packet. nf_ct_get_tuple()
//! reads the ports (4 bytes) of TCP, UDP, UDP-Lite and SCTP and the 8-byte ICMP or
//! ICMPv6 header, whatever the family; other protocols need no bytes. A packet with a
//! connection had its tuple taken by conntrack from the same bytes, so the connection
//! need not be asked.

use super::{Headers, Insn, MetaValues, Outcome};

/// Runs [`Insn::XtConnlimitTuple`] (`None`: another operation).
pub(super) fn step(insn: &Insn, h: &Headers, m: &MetaValues) -> Option<Outcome> {
    if *insn != Insn::XtConnlimitTuple {
        return None;
    }
    Some(match (m.l4proto, h.transport) {
        // An IPv6 extension header chain that cannot be walked.
        (None, _) => Outcome::Drops,
        // A later fragment stands for the kernel's reassembled datagram, whose headers
        // its first fragment has.
        (Some(_), None) => Outcome::Holds,
        (Some(protocol), Some(th)) => {
            let need = match protocol {
                6 | 17 | 136 | 132 => 4,
                1 | 58 => 8,
                _ => 0,
            };
            if th + need > h.network.len() {
                Outcome::Drops
            } else {
                Outcome::Holds
            }
        }
    })
}
