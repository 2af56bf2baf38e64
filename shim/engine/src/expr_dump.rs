//! The kernel's dump form of expressions whose `->dump` differs from what nft sends:
//! attribute order, defaults the kernel fills in at `->init`, flags it derives, and
//! attributes it never dumps. Each case mirrors the type's `nft_*_dump` function and
//! was checked against the kernel's own dumps (tests/fixtures).

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;

use crate::errno::*;
use crate::wire::be32;

fn get(attrs: &[Attr], id: u16) -> Option<&Attr> {
    attrs.iter().rev().find(|a| a.id() == id)
}

fn u32_of(attrs: &[Attr], id: u16) -> Option<u32> {
    get(attrs, id)
        .and_then(|a| a.value.get(..4))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_of(attrs: &[Attr], id: u16) -> Option<u64> {
    get(attrs, id)
        .and_then(|a| a.value.get(..8))
        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

fn default(attrs: &mut Vec<Attr>, a: Attr) {
    if get(attrs, a.id()).is_none() {
        attrs.push(a);
    }
}

fn set(attrs: &mut Vec<Attr>, a: Attr) {
    attrs.retain(|x| x.id() != a.id());
    attrs.push(a);
}

fn drop_if_zero(attrs: &mut Vec<Attr>, id: u16) {
    attrs.retain(|a| a.id() != id || a.value.iter().any(|&b| b != 0));
}

/// Keeps the listed attributes, in this order (the dump emits nothing else).
fn order(attrs: &mut Vec<Attr>, ids: &[u16]) {
    let mut out = Vec::new();
    for id in ids {
        if let Some(a) = get(attrs, *id) {
            out.push(a.clone());
        }
    }
    *attrs = out;
}

/// `NF_NAT_RANGE_MAP_IPS`, `NF_NAT_RANGE_PROTO_SPECIFIED`.
const NAT_MAP_IPS: u32 = 1;
const NAT_PROTO_SPECIFIED: u32 = 2;
/// `NFT_LIMIT_PKT_BURST_DEFAULT`.
const LIMIT_PKT_BURST_DEFAULT: u32 = 5;
/// `IP_CT_DIR_MAX`: no direction.
const CT_DIR_NONE: u8 = 2;

/// Rewrites `attrs` (already in dump form attribute by attribute) into the type's dump.
pub fn kernel_form(name: &str, attrs: &mut Vec<Attr>) -> Result<(), i32> {
    match name {
        "cmp" => order(attrs, &[NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA]),
        "bitwise" => {
            default(attrs, be32(NFTA_BITWISE_OP, NFT_BITWISE_MASK_XOR));
            order(
                attrs,
                &[
                    NFTA_BITWISE_SREG,
                    NFTA_BITWISE_DREG,
                    NFTA_BITWISE_LEN,
                    NFTA_BITWISE_OP,
                    NFTA_BITWISE_MASK,
                    NFTA_BITWISE_XOR,
                    NFTA_BITWISE_DATA,
                    8, // NFTA_BITWISE_SREG2
                ],
            );
        }
        "byteorder" => order(
            attrs,
            &[
                NFTA_BYTEORDER_SREG,
                NFTA_BYTEORDER_DREG,
                NFTA_BYTEORDER_OP,
                NFTA_BYTEORDER_LEN,
                NFTA_BYTEORDER_SIZE,
            ],
        ),
        "range" => order(
            attrs,
            &[
                NFTA_RANGE_SREG,
                NFTA_RANGE_OP,
                NFTA_RANGE_FROM_DATA,
                NFTA_RANGE_TO_DATA,
            ],
        ),
        "exthdr" => {
            default(attrs, be32(NFTA_EXTHDR_FLAGS, 0));
            default(attrs, be32(NFTA_EXTHDR_OP, NFT_EXTHDR_OP_IPV6));
            let common = [
                NFTA_EXTHDR_TYPE,
                NFTA_EXTHDR_OFFSET,
                NFTA_EXTHDR_LEN,
                NFTA_EXTHDR_FLAGS,
                NFTA_EXTHDR_OP,
            ];
            let first = if get(attrs, NFTA_EXTHDR_DREG).is_some() {
                Some(NFTA_EXTHDR_DREG)
            } else if get(attrs, NFTA_EXTHDR_SREG).is_some() {
                Some(NFTA_EXTHDR_SREG)
            } else {
                None
            };
            let ids: Vec<u16> = first.into_iter().chain(common).collect();
            order(attrs, &ids);
        }
        "fib" => order(attrs, &[NFTA_FIB_DREG, NFTA_FIB_RESULT, NFTA_FIB_FLAGS]),
        "rt" => order(attrs, &[NFTA_RT_KEY, NFTA_RT_DREG]),
        "xfrm" => {
            default(attrs, Attr::u8(NFTA_XFRM_DIR, 0));
            default(attrs, be32(NFTA_XFRM_SPNUM, 0));
            order(
                attrs,
                &[
                    NFTA_XFRM_DREG,
                    NFTA_XFRM_KEY,
                    NFTA_XFRM_DIR,
                    NFTA_XFRM_SPNUM,
                ],
            );
        }
        "osf" => {
            default(attrs, Attr::u8(NFTA_OSF_TTL, 0));
            default(attrs, be32(NFTA_OSF_FLAGS, 0));
            order(attrs, &[NFTA_OSF_TTL, NFTA_OSF_FLAGS, NFTA_OSF_DREG]);
        }
        "socket" => {
            let key = u32_of(attrs, NFTA_SOCKET_KEY);
            if key == Some(NFT_SOCKET_CGROUPV2) {
                default(attrs, be32(NFTA_SOCKET_LEVEL, 0));
                order(
                    attrs,
                    &[NFTA_SOCKET_KEY, NFTA_SOCKET_DREG, NFTA_SOCKET_LEVEL],
                );
            } else {
                order(attrs, &[NFTA_SOCKET_KEY, NFTA_SOCKET_DREG]);
            }
        }
        "reject" => match u32_of(attrs, NFTA_REJECT_TYPE) {
            Some(NFT_REJECT_ICMP_UNREACH) | Some(NFT_REJECT_ICMPX_UNREACH) => {
                default(attrs, Attr::u8(NFTA_REJECT_ICMP_CODE, 0));
                order(attrs, &[NFTA_REJECT_TYPE, NFTA_REJECT_ICMP_CODE]);
            }
            _ => order(attrs, &[NFTA_REJECT_TYPE]),
        },
        "nat" => {
            let mut flags = u32_of(attrs, NFTA_NAT_FLAGS).unwrap_or(0);
            if let Some(min) = get(attrs, NFTA_NAT_REG_ADDR_MIN).cloned() {
                flags |= NAT_MAP_IPS;
                default(attrs, Attr::new(NFTA_NAT_REG_ADDR_MAX, min.value));
            }
            if let Some(min) = get(attrs, NFTA_NAT_REG_PROTO_MIN).cloned() {
                flags |= NAT_PROTO_SPECIFIED;
                default(attrs, Attr::new(NFTA_NAT_REG_PROTO_MAX, min.value));
            }
            set(attrs, be32(NFTA_NAT_FLAGS, flags));
            drop_if_zero(attrs, NFTA_NAT_FLAGS);
            order(
                attrs,
                &[
                    NFTA_NAT_TYPE,
                    NFTA_NAT_FAMILY,
                    NFTA_NAT_REG_ADDR_MIN,
                    NFTA_NAT_REG_ADDR_MAX,
                    NFTA_NAT_REG_PROTO_MIN,
                    NFTA_NAT_REG_PROTO_MAX,
                    NFTA_NAT_FLAGS,
                ],
            );
        }
        "masq" => {
            if let Some(min) = get(attrs, NFTA_MASQ_REG_PROTO_MIN).cloned() {
                default(attrs, Attr::new(NFTA_MASQ_REG_PROTO_MAX, min.value));
            }
            drop_if_zero(attrs, NFTA_MASQ_FLAGS);
            order(
                attrs,
                &[
                    NFTA_MASQ_FLAGS,
                    NFTA_MASQ_REG_PROTO_MIN,
                    NFTA_MASQ_REG_PROTO_MAX,
                ],
            );
        }
        "redir" => {
            if let Some(min) = get(attrs, NFTA_REDIR_REG_PROTO_MIN).cloned() {
                default(attrs, Attr::new(NFTA_REDIR_REG_PROTO_MAX, min.value));
            }
            drop_if_zero(attrs, NFTA_REDIR_FLAGS);
            order(
                attrs,
                &[
                    NFTA_REDIR_REG_PROTO_MIN,
                    NFTA_REDIR_REG_PROTO_MAX,
                    NFTA_REDIR_FLAGS,
                ],
            );
        }
        "log" => {
            if get(attrs, NFTA_LOG_GROUP).is_some() {
                drop_if_zero(attrs, NFTA_LOG_QTHRESHOLD);
                order(
                    attrs,
                    &[
                        NFTA_LOG_PREFIX,
                        NFTA_LOG_GROUP,
                        NFTA_LOG_SNAPLEN,
                        NFTA_LOG_QTHRESHOLD,
                    ],
                );
            } else {
                default(attrs, be32(NFTA_LOG_LEVEL, NFT_LOGLEVEL_WARNING));
                if u32_of(attrs, NFTA_LOG_LEVEL).is_some_and(|l| l > NFT_LOGLEVEL_AUDIT) {
                    return Err(EINVAL);
                }
                drop_if_zero(attrs, NFTA_LOG_FLAGS);
                order(attrs, &[NFTA_LOG_PREFIX, NFTA_LOG_LEVEL, NFTA_LOG_FLAGS]);
            }
        }
        "ct" => {
            let key = u32_of(attrs, NFTA_CT_KEY).unwrap_or(0);
            let dir = get(attrs, NFTA_CT_DIRECTION)
                .and_then(|a| a.value.first().copied())
                .unwrap_or(CT_DIR_NONE);
            let keeps_dir = match key {
                NFT_CT_SRC | NFT_CT_DST | NFT_CT_SRC_IP | NFT_CT_DST_IP | NFT_CT_SRC_IP6
                | NFT_CT_DST_IP6 | NFT_CT_PROTO_SRC | NFT_CT_PROTO_DST => {
                    get(attrs, NFTA_CT_DREG).is_some()
                }
                NFT_CT_BYTES | NFT_CT_PKTS | NFT_CT_AVGPKT | NFT_CT_ZONE => dir < CT_DIR_NONE,
                _ => false,
            };
            if !keeps_dir {
                attrs.retain(|a| a.id() != NFTA_CT_DIRECTION);
            }
            let first = if get(attrs, NFTA_CT_DREG).is_some() {
                NFTA_CT_DREG
            } else {
                NFTA_CT_SREG
            };
            order(attrs, &[first, NFTA_CT_KEY, NFTA_CT_DIRECTION]);
        }
        "limit" => limit(attrs)?,
        "quota" => {
            let flags = u32_of(attrs, NFTA_QUOTA_FLAGS).unwrap_or(0);
            if flags & !NFT_QUOTA_F_INV != 0 {
                return Err(EINVAL);
            }
            default(attrs, be32(NFTA_QUOTA_FLAGS, 0));
            default(attrs, Attr::u64_be(NFTA_QUOTA_CONSUMED, 0));
            order(
                attrs,
                &[NFTA_QUOTA_BYTES, NFTA_QUOTA_CONSUMED, NFTA_QUOTA_FLAGS],
            );
        }
        "connlimit" => {
            drop_if_zero(attrs, NFTA_CONNLIMIT_FLAGS);
            order(attrs, &[NFTA_CONNLIMIT_COUNT, NFTA_CONNLIMIT_FLAGS]);
        }
        "numgen" => {
            default(attrs, be32(NFTA_NG_OFFSET, 0));
            order(
                attrs,
                &[NFTA_NG_DREG, NFTA_NG_MODULUS, NFTA_NG_TYPE, NFTA_NG_OFFSET],
            );
        }
        "hash" => {
            drop_if_zero(attrs, NFTA_HASH_OFFSET);
            if u32_of(attrs, NFTA_HASH_TYPE) == Some(NFT_HASH_SYM) {
                order(
                    attrs,
                    &[
                        NFTA_HASH_DREG,
                        NFTA_HASH_MODULUS,
                        NFTA_HASH_OFFSET,
                        NFTA_HASH_TYPE,
                    ],
                );
            } else {
                default(attrs, be32(NFTA_HASH_SEED, 0));
                order(
                    attrs,
                    &[
                        NFTA_HASH_SREG,
                        NFTA_HASH_DREG,
                        NFTA_HASH_LEN,
                        NFTA_HASH_MODULUS,
                        NFTA_HASH_SEED,
                        NFTA_HASH_OFFSET,
                        NFTA_HASH_TYPE,
                    ],
                );
            }
        }
        "tproxy" => order(
            attrs,
            &[
                NFTA_TPROXY_FAMILY,
                NFTA_TPROXY_REG_ADDR,
                NFTA_TPROXY_REG_PORT,
            ],
        ),
        "synproxy" => order(
            attrs,
            &[NFTA_SYNPROXY_MSS, NFTA_SYNPROXY_WSCALE, NFTA_SYNPROXY_FLAGS],
        ),
        "dup" => order(attrs, &[NFTA_DUP_SREG_ADDR, NFTA_DUP_SREG_DEV]),
        "fwd" => order(
            attrs,
            &[NFTA_FWD_SREG_DEV, NFTA_FWD_SREG_ADDR, NFTA_FWD_NFPROTO],
        ),
        "match" => order(attrs, &[NFTA_MATCH_NAME, NFTA_MATCH_REV, NFTA_MATCH_INFO]),
        "target" => order(
            attrs,
            &[NFTA_TARGET_NAME, NFTA_TARGET_REV, NFTA_TARGET_INFO],
        ),
        _ => {}
    }
    Ok(())
}

/// `nft_limit_init` (with its overflow checks) and `nft_limit_dump`.
fn limit(attrs: &mut Vec<Attr>) -> Result<(), i32> {
    let (Some(rate), Some(unit)) = (
        u64_of(attrs, NFTA_LIMIT_RATE),
        u64_of(attrs, NFTA_LIMIT_UNIT),
    ) else {
        return Err(EINVAL);
    };
    let ty = u32_of(attrs, NFTA_LIMIT_TYPE).unwrap_or(NFT_LIMIT_PKTS);
    let pkts = ty == NFT_LIMIT_PKTS;
    let flags = u32_of(attrs, NFTA_LIMIT_FLAGS).unwrap_or(0);
    if flags & !NFT_LIMIT_F_INV != 0 {
        return Err(EOPNOTSUPP);
    }
    if rate == 0 {
        return Err(EINVAL);
    }
    let nsecs = unit.checked_mul(1_000_000_000).ok_or(EOVERFLOW)?;
    let mut burst = u32_of(attrs, NFTA_LIMIT_BURST).unwrap_or(0);
    if pkts && burst == 0 {
        burst = LIMIT_PKT_BURST_DEFAULT;
    }
    let rate_with_burst = rate.checked_add(u64::from(burst)).ok_or(EOVERFLOW)?;
    if pkts {
        (nsecs / rate)
            .checked_mul(u64::from(burst))
            .ok_or(EOVERFLOW)?;
    } else {
        nsecs.checked_mul(rate_with_burst).ok_or(EOVERFLOW)?;
    }
    set(attrs, be32(NFTA_LIMIT_BURST, burst));
    default(attrs, be32(NFTA_LIMIT_TYPE, ty));
    default(attrs, be32(NFTA_LIMIT_FLAGS, 0));
    order(
        attrs,
        &[
            NFTA_LIMIT_RATE,
            NFTA_LIMIT_UNIT,
            NFTA_LIMIT_BURST,
            NFTA_LIMIT_TYPE,
            NFTA_LIMIT_FLAGS,
        ],
    );
    Ok(())
}
