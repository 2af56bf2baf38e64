//! `ct` keys as residual loads ([`Insn::Ct`]): which keys the data plane reproduces
//! exactly (nft_ct_get_eval() over the tracker's tuples, bpf/lib/ct_keys.h), with the
//! register length the kernel gives each (nft_ct_get_init()), and why the others are
//! refused. Counters (packets, bytes, avgpkt) come from the tracker's accounting, which
//! a program reading them turns on (`CompiledProgram::enables_ct_acct`).

use netlink_proto::expr::ct::CtKey;
use nftshim_ebpf::residual::{CtKey as ResKey, Insn};

use super::Family;

/// IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY.
const DIR_REPLY: u8 = 1;

/// What a `ct` load writes into the registers.
#[derive(Debug, PartialEq, Eq)]
pub struct CtLoad {
    pub insn: Insn,
    /// The register length the kernel gives the expression.
    pub len: u32,
    /// The leading bytes it writes on every packet: `ct saddr`/`daddr` of an IPv4
    /// connection fill 4 of 16 bytes in inet tables and leave the rest as they were.
    pub written: u32,
}

/// The kernel's register length for `key`, and whether it needs a direction (true),
/// takes none (false) or either (None); `Err`: why the data plane refuses the key.
fn shape(key: CtKey, family: Family) -> Result<(ResKey, u32, Option<bool>), String> {
    let unsupported = |why: &str| {
        Err(format!(
            "ct {key:?} is not supported by the eBPF data plane: {why}"
        ))
    };
    Ok(match key {
        CtKey::State => (ResKey::State, 4, Some(false)),
        CtKey::Status => (ResKey::Status, 4, Some(false)),
        CtKey::Mark => (ResKey::Mark, 4, Some(false)),
        CtKey::Direction => (ResKey::Direction, 1, Some(false)),
        CtKey::Helper => (ResKey::Helper, 16, Some(false)),
        CtKey::Labels => (ResKey::Labels, 16, Some(false)),
        // The same in both tuples: the kernel takes them with or without a direction.
        CtKey::L3protocol => (ResKey::L3Protocol, 1, None),
        CtKey::Protocol => (ResKey::Protocol, 1, None),
        CtKey::ProtoSrc => (ResKey::ProtoSrc, 2, Some(true)),
        CtKey::ProtoDst => (ResKey::ProtoDst, 2, Some(true)),
        CtKey::SrcIp => (ResKey::SrcIp, 4, Some(true)),
        CtKey::DstIp => (ResKey::DstIp, 4, Some(true)),
        CtKey::SrcIp6 => (ResKey::SrcIp6, 16, Some(true)),
        CtKey::DstIp6 => (ResKey::DstIp6, 16, Some(true)),
        CtKey::Zone => (ResKey::Zone, 2, None),
        CtKey::Src | CtKey::Dst => {
            let len = if family == Family::Ip { 4 } else { 16 };
            let k = if key == CtKey::Src {
                ResKey::Src
            } else {
                ResKey::Dst
            };
            (k, len, Some(true))
        }
        CtKey::Expiration => {
            return unsupported(
                "the time left follows per-protocol timeouts the tracker does not all model \
                 (SCTP, GRE states) and the kernel's jiffies",
            )
        }
        // Of one direction, or of both without one; 8 bytes, host order.
        CtKey::Pkts => (ResKey::Packets { both: false }, 8, None),
        CtKey::Bytes => (ResKey::Bytes { both: false }, 8, None),
        CtKey::Avgpkt => (ResKey::Avgpkt { both: false }, 8, None),
        CtKey::Id => {
            return unsupported(
                "the kernel's id is a keyed hash of its conntrack object, not reproducible",
            )
        }
        other => return unsupported(&format!("key {other:?} cannot be read")),
    })
}

/// The residual load of `ct [direction] key` into residual register `dreg` in a chain
/// of `family` (`v6_only`: the rule sees IPv6 packets only, so IPv6 connections only);
/// `Err` says why the data plane refuses it.
pub fn load(
    key: CtKey,
    direction: Option<u8>,
    family: Family,
    v6_only: bool,
    dreg: u8,
) -> Result<CtLoad, String> {
    let (mut res_key, len, needs_direction) = shape(key, family)?;
    let reply = match (direction, needs_direction) {
        (None, Some(true)) => return Err(format!("ct {key:?} without a direction")),
        (Some(_), Some(false)) => return Err(format!("ct {key:?} with a direction")),
        (Some(d), _) if d > DIR_REPLY => return Err(format!("ct direction {d}")),
        (d, _) => d == Some(DIR_REPLY),
    };
    res_key = match (res_key, direction) {
        (ResKey::Packets { .. }, None) => ResKey::Packets { both: true },
        (ResKey::Bytes { .. }, None) => ResKey::Bytes { both: true },
        (ResKey::Avgpkt { .. }, None) => ResKey::Avgpkt { both: true },
        (k, _) => k,
    };
    // An address of the connection's family: in inet tables an IPv4 connection's 4
    // bytes, the register's other 12 left as earlier rules left them.
    let written = match res_key {
        ResKey::Src | ResKey::Dst if family == Family::Inet && !v6_only => 4,
        _ => len,
    };
    Ok(CtLoad {
        insn: Insn::Ct {
            key: res_key,
            reply,
            len: len as u8,
            dreg,
        },
        len,
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_keys_need_a_direction_and_take_the_kernels_length() {
        let l = load(CtKey::ProtoDst, Some(1), Family::Inet, false, 4).unwrap();
        assert_eq!(
            l.insn,
            Insn::Ct {
                key: ResKey::ProtoDst,
                reply: true,
                len: 2,
                dreg: 4
            }
        );
        assert_eq!((l.len, l.written), (2, 2));
        assert!(load(CtKey::ProtoDst, None, Family::Inet, false, 0).is_err());
        assert!(load(CtKey::Direction, Some(0), Family::Inet, false, 0).is_err());
        assert!(load(CtKey::Protocol, None, Family::Ip, false, 0).is_ok());
        assert_eq!(
            load(CtKey::Src, Some(0), Family::Ip6, true, 0).unwrap().len,
            16
        );
    }

    #[test]
    fn counters_read_one_direction_or_both_as_eight_bytes() {
        let l = load(CtKey::Bytes, Some(0), Family::Ip, false, 4).unwrap();
        assert_eq!(
            l.insn,
            Insn::Ct {
                key: ResKey::Bytes { both: false },
                reply: false,
                len: 8,
                dreg: 4
            }
        );
        let l = load(CtKey::Avgpkt, None, Family::Inet, false, 0).unwrap();
        assert_eq!(
            l.insn,
            Insn::Ct {
                key: ResKey::Avgpkt { both: true },
                reply: false,
                len: 8,
                dreg: 0
            }
        );
        assert_eq!((l.len, l.written), (8, 8));
        let l = load(CtKey::Pkts, Some(1), Family::Ip6, true, 0).unwrap();
        assert!(matches!(
            l.insn,
            Insn::Ct {
                key: ResKey::Packets { both: false },
                reply: true,
                ..
            }
        ));
    }

    #[test]
    fn inet_addresses_are_known_only_as_far_as_every_connection_writes_them() {
        let l = load(CtKey::Src, Some(0), Family::Inet, false, 0).unwrap();
        assert_eq!((l.len, l.written), (16, 4));
        let l = load(CtKey::Dst, Some(1), Family::Inet, true, 0).unwrap();
        assert_eq!((l.len, l.written), (16, 16));
        assert_eq!(
            load(CtKey::Src, Some(0), Family::Ip, false, 0).unwrap().len,
            4
        );
    }

    #[test]
    fn keys_that_cannot_be_exact_are_refused_with_the_reason() {
        for key in [CtKey::Expiration, CtKey::Id] {
            let err = load(key, None, Family::Ip, false, 0).unwrap_err();
            assert!(
                err.contains("not supported by the eBPF data plane"),
                "{err}"
            );
        }
    }
}
