//! `-m connbytes` (net/netfilter/xt_connbytes.c). connbytes_mt(): no connection, or a
//! connection without counters (created before accounting was on), matches nothing;
//! otherwise the packets, bytes or bytes per packet (0 without packets) of the
//! original direction, the reply direction or both are tested against
//! `from <= what <= to`, or, when `to < from`, `what < to || what > from`. The data
//! plane's tracker keeps the same per-direction counters (nft's `ct packets/bytes/
//! avgpkt`), and loading the rule turns accounting on for later connections, as the
//! match's checkentry does.
//!
//! With any protocol, as nft's `ct packets/bytes/avgpkt` are read: the counters are
//! the tracker's, with its known differences (docs/conformance.md: a fragmented
//! datagram's bytes; SCTP and GRE tracked generically). TCP counts as nf_conntrack
//! counts it: a SYN retransmitted before any reply is not counted (bpf/lib/conntrack.h).

use netlink_proto::xt::Blob;
use nftshim_ebpf::residual::{CtKey, Insn};

use super::super::residual::SCRATCH;
use super::Decompiled;

/// `struct xt_connbytes_info`: from u64 @0, to u64 @8, what u8 @16 (packets 0, bytes 1,
/// avgpkt 2), direction u8 @17 (original 0, reply 1, both 2).
pub fn connbytes(b: Blob<'_>) -> Result<Decompiled, String> {
    let (from, to, what, direction) = (b.u64(0), b.u64(8), b.u8(16), b.u8(17));
    let both = match direction {
        0 | 1 => false,
        2 => true,
        d => return Err(format!("xt match connbytes with direction {d}")),
    };
    let key = match what {
        0 => CtKey::Packets { both },
        1 => CtKey::Bytes { both },
        2 => CtKey::Avgpkt { both },
        w => return Err(format!("xt match connbytes counting {w}")),
    };
    let range = |lo: u64, hi: u64| (lo.to_be_bytes().to_vec(), hi.to_be_bytes().to_vec());
    let elements = if to >= from {
        vec![range(from, to)]
    } else {
        let mut e = Vec::new();
        if to > 0 {
            e.push(range(0, to - 1));
        }
        if from < u64::MAX {
            e.push(range(from + 1, u64::MAX));
        }
        e
    };
    if elements.is_empty() {
        return Ok(Decompiled::Never);
    }
    Ok(Decompiled::Residual(
        vec![],
        vec![
            Insn::Ct {
                key: CtKey::HasCounters,
                reply: false,
                len: 1,
                dreg: SCRATCH,
            },
            Insn::Ct {
                key,
                reply: direction == 1,
                len: 8,
                dreg: SCRATCH,
            },
            // The counters load in host order; ranges compare bytes as memcmp does.
            Insn::Byteorder {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len: 8,
                size: 8,
            },
            Insn::Lookup {
                sreg: SCRATCH,
                len: 8,
                negated: false,
                elements,
            },
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cx, xt_match};
    use super::super::{decompile_match, Decompiled};
    use super::*;
    use crate::compile::{Family, Hook};

    fn connbytes(from: u64, to: u64, what: u8, direction: u8) -> Result<Decompiled, String> {
        connbytes_for(&[17], from, to, what, direction)
    }

    fn connbytes_for(
        protocols: &[u8],
        from: u64,
        to: u64,
        what: u8,
        direction: u8,
    ) -> Result<Decompiled, String> {
        let l4: std::collections::BTreeSet<u8> = protocols.iter().copied().collect();
        let mut info = vec![0u8; 24];
        info[..8].copy_from_slice(&from.to_ne_bytes());
        info[8..16].copy_from_slice(&to.to_ne_bytes());
        info[16] = what;
        info[17] = direction;
        let cx = cx(
            Family::Ip,
            Hook::Forward,
            (!protocols.is_empty()).then_some(&l4),
        );
        let m = xt_match("connbytes", 0, info);
        decompile_match(&cx, &m)
    }

    /// The key and direction read, and the ranges tested.
    fn parts(d: Decompiled) -> (CtKey, bool, Vec<(u64, u64)>) {
        let Decompiled::Residual(ms, insns) = d else {
            panic!("not residual: {d:?}")
        };
        assert!(ms.is_empty());
        let [Insn::Ct {
            key: CtKey::HasCounters,
            ..
        }, Insn::Ct { key, reply, .. }, Insn::Byteorder { size: 8, .. }, Insn::Lookup {
            elements,
            negated: false,
            ..
        }] = &insns[..]
        else {
            panic!("{insns:?}")
        };
        let n = |b: &Vec<u8>| u64::from_be_bytes(b[..8].try_into().unwrap());
        (
            *key,
            *reply,
            elements.iter().map(|(lo, hi)| (n(lo), n(hi))).collect(),
        )
    }

    #[test]
    fn keys_directions_and_ranges() {
        // --connbytes 0:1000 --connbytes-mode packets --connbytes-dir original
        assert_eq!(
            parts(connbytes(0, 1000, 0, 0).unwrap()),
            (CtKey::Packets { both: false }, false, vec![(0, 1000)])
        );
        // bytes, reply
        assert_eq!(
            parts(connbytes(10, 20, 1, 1).unwrap()),
            (CtKey::Bytes { both: false }, true, vec![(10, 20)])
        );
        // avgpkt, both
        assert_eq!(
            parts(connbytes(0, u64::MAX, 2, 2).unwrap()),
            (CtKey::Avgpkt { both: true }, false, vec![(0, u64::MAX)])
        );
        // to < from: below to or above from.
        assert_eq!(
            parts(connbytes(100, 5, 0, 2).unwrap()).2,
            vec![(0, 4), (101, u64::MAX)]
        );
        assert_eq!(
            parts(connbytes(100, 0, 0, 2).unwrap()).2,
            vec![(101, u64::MAX)]
        );
        assert!(connbytes(0, 1, 3, 0).is_err());
        assert!(connbytes(0, 1, 0, 3).is_err());
    }

    #[test]
    fn with_any_protocol_or_none() {
        for protocols in [&[136][..], &[], &[6], &[1], &[17, 6], &[132]] {
            let (key, _, ranges) = parts(connbytes_for(protocols, 0, 1000, 0, 0).unwrap());
            assert_eq!(key, CtKey::Packets { both: false });
            assert_eq!(ranges, vec![(0, 1000)]);
        }
    }
}
