//! `ct` keys as residual loads ([`Insn::Ct`]): which keys the data plane reproduces
//! exactly (nft_ct_get_eval() over the tracker's tuples, bpf/lib/ct_keys.h), with the
//! register length the kernel gives each (nft_ct_get_init()), and why the others are
//! refused.

use netlink_proto::expr::ct::CtKey;
use nftshim_ebpf::residual::{CtKey as ResKey, Insn};

use super::Family;

/// IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY.
const DIR_REPLY: u8 = 1;

/// The residual load of `ct [direction] key` into residual register `dreg` in a chain
/// of `family`, and the bytes it writes; `Err` says why the data plane refuses it.
pub fn load(
    key: CtKey,
    direction: Option<u8>,
    family: Family,
    dreg: u8,
) -> Result<(Insn, u32), String> {
    let unsupported = |why: &str| {
        Err(format!(
            "ct {key:?} is not supported by the eBPF data plane: {why}"
        ))
    };
    // The kernel's register length; whether the key needs a direction (true), takes
    // none (false) or either (None).
    let (res_key, len, needs_direction) =
        match key {
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
                let len = match family {
                    Family::Ip => 4,
                    Family::Ip6 => 16,
                    // 16-byte registers of which an IPv4 connection writes 4: the kernel
                    // leaves the other 12 as earlier rules left them.
                    _ => {
                        return unsupported(
                            "in inet tables the kernel copies 4 bytes of an IPv4 connection's \
                         address into a 16-byte register",
                        )
                    }
                };
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
            CtKey::Pkts | CtKey::Bytes | CtKey::Avgpkt => return unsupported(
                "it needs per-direction accounting (nf_conntrack_acct, which loading this rule \
                 turns on in the kernel for connections created from then on); the tracker \
                 keeps no counters",
            ),
            CtKey::Id => {
                return unsupported(
                    "the kernel's id is a keyed hash of its conntrack object, not reproducible",
                )
            }
            other => return unsupported(&format!("key {other:?} cannot be read")),
        };
    let reply = match (direction, needs_direction) {
        (None, Some(true)) => return Err(format!("ct {key:?} without a direction")),
        (Some(_), Some(false)) => return Err(format!("ct {key:?} with a direction")),
        (Some(d), _) if d > DIR_REPLY => return Err(format!("ct direction {d}")),
        (d, _) => d == Some(DIR_REPLY),
    };
    Ok((
        Insn::Ct {
            key: res_key,
            reply,
            len: len as u8,
            dreg,
        },
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_keys_need_a_direction_and_take_the_kernels_length() {
        let (insn, len) = load(CtKey::ProtoDst, Some(1), Family::Inet, 4).unwrap();
        assert_eq!(
            insn,
            Insn::Ct {
                key: ResKey::ProtoDst,
                reply: true,
                len: 2,
                dreg: 4
            }
        );
        assert_eq!(len, 2);
        assert!(load(CtKey::ProtoDst, None, Family::Inet, 0).is_err());
        assert!(load(CtKey::Direction, Some(0), Family::Inet, 0).is_err());
        assert_eq!(load(CtKey::Src, Some(0), Family::Ip6, 0).unwrap().1, 16);
    }

    #[test]
    fn keys_that_cannot_be_exact_are_refused_with_the_reason() {
        for key in [CtKey::Expiration, CtKey::Bytes, CtKey::Id] {
            let err = load(key, None, Family::Ip, 0).unwrap_err();
            assert!(
                err.contains("not supported by the eBPF data plane"),
                "{err}"
            );
        }
        assert!(load(CtKey::Src, Some(0), Family::Inet, 0)
            .unwrap_err()
            .contains("inet"));
    }
}
