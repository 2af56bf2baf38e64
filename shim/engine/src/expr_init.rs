//! The checks of expression types the kernel does before and while initialising an
//! expression, in its order: `->select_ops` (run for every expression of a rule before
//! any `->init`), then `->init` with the registers it loads and stores.
//!
//! Registers: `nft_validate_register_load`/`_store` bound them (EINVAL below
//! NFT_REG_1, ERANGE past the 80 bytes of data registers), and since 6.13 a rule may
//! only load 32-bit registers an earlier expression of the same rule stored
//! (`ctx->reg_inited`, ENODATA).

use netlink_proto::consts::*;
use netlink_proto::extra::{NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV};

use crate::errno::*;
use crate::expr::parse_reg;
use crate::nla::{self, Nla, Pol, Tb};

const EAFNOSUPPORT: i32 = 97;
const ENODATA: i32 = 61;

const NFT_BITWISE_AND: u32 = 3;
const NFT_BITWISE_OR: u32 = 4;
const NFT_BITWISE_XOR: u32 = 5;
const NFTA_BITWISE_SREG2: u16 = 8;
const NFTA_TUNNEL_KEY: u16 = 1;
const NFTA_TUNNEL_DREG: u16 = 2;
const NFTA_TUNNEL_MODE: u16 = 3;
/// NF_NAT_RANGE_MASK.
const NAT_RANGE_MASK: u32 = 0x7f;
/// NF_LOG_MASK.
const LOG_MASK: u32 = 0x2f;
const NFT_LOGLEVEL_AUDIT: u32 = 8;

/// `ctx->reg_inited`: which 32-bit registers the rule's expressions stored so far.
#[derive(Default, Clone, Copy, Debug)]
pub struct Regs {
    inited: u32,
}

impl Regs {
    /// `nft_parse_register_load` of `attr` (an NFTA_*_SREG) for `len` bytes.
    pub fn load(&self, attr: Option<Nla<'_>>, len: u32) -> Result<u32, i32> {
        let reg = parse_reg(be32(attr))?;
        if reg < 4 || len == 0 {
            return Err(EINVAL);
        }
        if reg * 4 + len > 80 {
            return Err(ERANGE);
        }
        let n = len.div_ceil(4);
        for r in reg..reg + n {
            if self.inited & (1 << r) == 0 {
                return Err(ENODATA);
            }
        }
        Ok(reg)
    }

    /// `nft_parse_register_store` of a value of `len` bytes.
    pub fn store(&mut self, attr: Option<Nla<'_>>, len: u32) -> Result<u32, i32> {
        let reg = parse_reg(be32(attr))?;
        if reg == 0 {
            // The verdict register takes verdicts only.
            return Err(EINVAL);
        }
        if reg < 4 || len == 0 {
            return Err(EINVAL);
        }
        if reg * 4 + len > 80 {
            return Err(ERANGE);
        }
        for r in reg..reg + len.div_ceil(4) {
            self.inited |= 1 << r;
        }
        Ok(reg)
    }
}

fn be32(a: Option<Nla<'_>>) -> u32 {
    a.filter(|a| a.value.len() >= 4).map_or(0, |a| a.be32())
}

fn req(tb: &Tb<'_>, ids: &[u16]) -> Result<(), i32> {
    if ids.iter().all(|&i| tb.has(i)) {
        Ok(())
    } else {
        Err(EINVAL)
    }
}

/// `nft_parse_u32_check`.
fn u32_check(a: Option<Nla<'_>>, max: u32) -> Result<u32, i32> {
    let v = be32(a);
    if v > max {
        Err(ERANGE)
    } else {
        Ok(v)
    }
}

/// `nft_data_init` for a value of at most 16 bytes (and exactly `len` if not 0).
pub fn value(a: Option<Nla<'_>>, len: u32) -> Result<u32, i32> {
    let a = a.ok_or(EINVAL)?;
    let tb = nla::parse_nested(&a, &[Pol::Any, Pol::Bin(0), Pol::Nested]).map_err(|e| e.errno)?;
    let v = tb.get(NFTA_DATA_VALUE).ok_or(EINVAL)?;
    let n = v.value.len() as u32;
    if n == 0 {
        return Err(EINVAL);
    }
    if n > 16 {
        return Err(EOVERFLOW);
    }
    if len != 0 && n != len {
        return Err(EINVAL);
    }
    Ok(n)
}

fn value_bytes<'a>(a: Nla<'a>) -> &'a [u8] {
    nla::parse_nested(&a, &[Pol::Any, Pol::Bin(0), Pol::Nested])
        .ok()
        .and_then(|tb| tb.get(NFTA_DATA_VALUE))
        .map_or(&[], |v| v.value)
}

/// `->select_ops`: checks made while the rule's expressions are parsed, before any of
/// them is initialised.
pub fn select(family: u8, name: &str, tb: &Tb<'_>) -> Result<(), i32> {
    match name {
        "cmp" => {
            req(tb, &[NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA])?;
            if be32(tb.get(NFTA_CMP_OP)) > NFT_CMP_GTE {
                return Err(EINVAL);
            }
            value(tb.get(NFTA_CMP_DATA), 0).map(|_| ())
        }
        "bitwise" => {
            req(
                tb,
                &[NFTA_BITWISE_LEN, NFTA_BITWISE_SREG, NFTA_BITWISE_DREG],
            )?;
            u32_check(tb.get(NFTA_BITWISE_LEN), 255).map(|_| ())
        }
        "payload" => {
            req(
                tb,
                &[NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN],
            )?;
            if be32(tb.get(NFTA_PAYLOAD_BASE)) > NFT_PAYLOAD_INNER_HEADER {
                return Err(EOPNOTSUPP);
            }
            if tb.has(NFTA_PAYLOAD_SREG) {
                return if tb.has(NFTA_PAYLOAD_DREG) {
                    Err(EINVAL)
                } else {
                    Ok(())
                };
            }
            if !tb.has(NFTA_PAYLOAD_DREG) {
                return Err(EINVAL);
            }
            u32_check(tb.get(NFTA_PAYLOAD_OFFSET), 255)?;
            u32_check(tb.get(NFTA_PAYLOAD_LEN), 255).map(|_| ())
        }
        "meta" | "ct" => {
            let (key, dreg, sreg) = if name == "meta" {
                (NFTA_META_KEY, NFTA_META_DREG, NFTA_META_SREG)
            } else {
                (NFTA_CT_KEY, NFTA_CT_DREG, NFTA_CT_SREG)
            };
            req(tb, &[key])?;
            match (tb.has(dreg), tb.has(sreg)) {
                (true, false) | (false, true) => Ok(()),
                _ => Err(EINVAL),
            }
        }
        "exthdr" => {
            let Some(op) = tb.get(NFTA_EXTHDR_OP) else {
                return Ok(());
            };
            let (s, d) = (tb.has(NFTA_EXTHDR_SREG), tb.has(NFTA_EXTHDR_DREG));
            if s && d {
                return Err(EOPNOTSUPP);
            }
            match op.be32() {
                NFT_EXTHDR_OP_TCPOPT => Ok(()),
                NFT_EXTHDR_OP_IPV6 | NFT_EXTHDR_OP_SCTP if d => Ok(()),
                NFT_EXTHDR_OP_IPV4 if family != NFPROTO_IPV6 && d => Ok(()),
                _ => Err(EOPNOTSUPP),
            }
        }
        "hash" => match tb.get(NFTA_HASH_TYPE).map(|a| a.be32()) {
            None | Some(NFT_HASH_JENKINS) | Some(NFT_HASH_SYM) => Ok(()),
            Some(_) => Err(EOPNOTSUPP),
        },
        "numgen" => {
            req(tb, &[NFTA_NG_DREG, NFTA_NG_MODULUS, NFTA_NG_TYPE])?;
            match be32(tb.get(NFTA_NG_TYPE)) {
                NFT_NG_INCREMENTAL | NFT_NG_RANDOM => Ok(()),
                _ => Err(EINVAL),
            }
        }
        "limit" => match tb.get(NFTA_LIMIT_TYPE).map(|a| a.be32()) {
            None | Some(NFT_LIMIT_PKTS) | Some(NFT_LIMIT_PKT_BYTES) => Ok(()),
            Some(_) => Err(EOPNOTSUPP),
        },
        "fwd" => {
            if tb.has(NFTA_FWD_SREG_ADDR) || tb.has(NFTA_FWD_SREG_DEV) {
                Ok(())
            } else {
                Err(EOPNOTSUPP)
            }
        }
        "objref" => {
            let map = tb.has(NFTA_OBJREF_SET_SREG)
                && (tb.has(NFTA_OBJREF_SET_NAME) || tb.has(NFTA_OBJREF_SET_ID));
            let imm = tb.has(NFTA_OBJREF_IMM_NAME) && tb.has(NFTA_OBJREF_IMM_TYPE);
            if map || imm {
                Ok(())
            } else {
                Err(EOPNOTSUPP)
            }
        }
        _ => Ok(()),
    }
}

/// `->init` checks and register use of the expression types that have no further
/// handling in `expr`. Returns Ok for the others.
pub fn init(family: u8, name: &str, tb: &Tb<'_>, regs: &mut Regs) -> Result<(), i32> {
    match name {
        "cmp" => {
            let len = value(tb.get(NFTA_CMP_DATA), 0)?;
            regs.load(tb.get(NFTA_CMP_SREG), len).map(|_| ())
        }
        "bitwise" => bitwise(tb, regs),
        "byteorder" => {
            req(
                tb,
                &[
                    NFTA_BYTEORDER_SREG,
                    NFTA_BYTEORDER_DREG,
                    NFTA_BYTEORDER_LEN,
                    NFTA_BYTEORDER_SIZE,
                    NFTA_BYTEORDER_OP,
                ],
            )?;
            match be32(tb.get(NFTA_BYTEORDER_OP)) {
                NFT_BYTEORDER_NTOH | NFT_BYTEORDER_HTON => {}
                _ => return Err(EINVAL),
            }
            let size = u32_check(tb.get(NFTA_BYTEORDER_SIZE), 255)?;
            if !matches!(size, 2 | 4 | 8) {
                return Err(EINVAL);
            }
            let len = u32_check(tb.get(NFTA_BYTEORDER_LEN), 255)?;
            if len % size != 0 {
                return Err(EINVAL);
            }
            regs.load(tb.get(NFTA_BYTEORDER_SREG), len)?;
            regs.store(tb.get(NFTA_BYTEORDER_DREG), len).map(|_| ())
        }
        "range" => {
            req(
                tb,
                &[
                    NFTA_RANGE_SREG,
                    NFTA_RANGE_OP,
                    NFTA_RANGE_FROM_DATA,
                    NFTA_RANGE_TO_DATA,
                ],
            )?;
            let len = value(tb.get(NFTA_RANGE_FROM_DATA), 0)?;
            value(tb.get(NFTA_RANGE_TO_DATA), len)?;
            regs.load(tb.get(NFTA_RANGE_SREG), len)?;
            match u32_check(tb.get(NFTA_RANGE_OP), 255)? {
                NFT_RANGE_EQ | NFT_RANGE_NEQ => Ok(()),
                _ => Err(EINVAL),
            }
        }
        "ct" => ct(family, tb, regs),
        "exthdr" => exthdr(tb, regs),
        "hash" => {
            if tb.get(NFTA_HASH_TYPE).map(|a| a.be32()) == Some(NFT_HASH_SYM) {
                req(tb, &[NFTA_HASH_DREG, NFTA_HASH_MODULUS])?;
            } else {
                req(
                    tb,
                    &[
                        NFTA_HASH_SREG,
                        NFTA_HASH_DREG,
                        NFTA_HASH_LEN,
                        NFTA_HASH_MODULUS,
                    ],
                )?;
                let len = u32_check(tb.get(NFTA_HASH_LEN), 255)?;
                if len == 0 {
                    return Err(ERANGE);
                }
                regs.load(tb.get(NFTA_HASH_SREG), len)?;
            }
            modulus(
                be32(tb.get(NFTA_HASH_OFFSET)),
                be32(tb.get(NFTA_HASH_MODULUS)),
            )?;
            regs.store(tb.get(NFTA_HASH_DREG), 4).map(|_| ())
        }
        "numgen" => {
            modulus(be32(tb.get(NFTA_NG_OFFSET)), be32(tb.get(NFTA_NG_MODULUS)))?;
            regs.store(tb.get(NFTA_NG_DREG), 4).map(|_| ())
        }
        "fib" => {
            req(tb, &[NFTA_FIB_DREG, NFTA_FIB_RESULT, NFTA_FIB_FLAGS])?;
            let f = be32(tb.get(NFTA_FIB_FLAGS));
            let (sd, io) = (
                u32::from(NFTA_FIB_F_SADDR | NFTA_FIB_F_DADDR),
                u32::from(NFTA_FIB_F_IIF | NFTA_FIB_F_OIF),
            );
            let all = sd | io | u32::from(NFTA_FIB_F_MARK | NFTA_FIB_F_PRESENT);
            if f == 0 || f & !all != 0 || f & sd == sd || f & io == io || f & sd == 0 {
                return Err(EINVAL);
            }
            let len = match be32(tb.get(NFTA_FIB_RESULT)) {
                NFT_FIB_RESULT_OIF if f & u32::from(NFTA_FIB_F_OIF) == 0 => 4,
                NFT_FIB_RESULT_OIFNAME if f & u32::from(NFTA_FIB_F_OIF) == 0 => 16,
                NFT_FIB_RESULT_ADDRTYPE => 4,
                _ => return Err(EINVAL),
            };
            regs.store(tb.get(NFTA_FIB_DREG), len).map(|_| ())
        }
        "socket" => {
            req(tb, &[NFTA_SOCKET_DREG, NFTA_SOCKET_KEY])?;
            if !matches!(family, NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET) {
                return Err(EOPNOTSUPP);
            }
            let len = match be32(tb.get(NFTA_SOCKET_KEY)) {
                NFT_SOCKET_TRANSPARENT | NFT_SOCKET_WILDCARD => 1,
                NFT_SOCKET_MARK => 4,
                NFT_SOCKET_CGROUPV2 => {
                    let level = tb.get(NFTA_SOCKET_LEVEL).ok_or(EINVAL)?;
                    if level.be32() > 255 {
                        return Err(EOPNOTSUPP);
                    }
                    8
                }
                _ => return Err(EOPNOTSUPP),
            };
            regs.store(tb.get(NFTA_SOCKET_DREG), len).map(|_| ())
        }
        "osf" => {
            req(tb, &[NFTA_OSF_DREG])?;
            if let Some(t) = tb.get(NFTA_OSF_TTL) {
                if t.u8() > 2 {
                    return Err(EINVAL);
                }
            }
            if let Some(f) = tb.get(NFTA_OSF_FLAGS) {
                if f.be32() != 1 {
                    return Err(EINVAL);
                }
            }
            regs.store(tb.get(NFTA_OSF_DREG), 16).map(|_| ())
        }
        "rt" => {
            req(tb, &[NFTA_RT_KEY, NFTA_RT_DREG])?;
            let len = match be32(tb.get(NFTA_RT_KEY)) {
                NFT_RT_CLASSID | NFT_RT_NEXTHOP4 => 4,
                NFT_RT_NEXTHOP6 => 16,
                NFT_RT_TCPMSS => 2,
                NFT_RT_XFRM => 1,
                _ => return Err(EOPNOTSUPP),
            };
            regs.store(tb.get(NFTA_RT_DREG), len).map(|_| ())
        }
        "xfrm" => {
            req(tb, &[NFTA_XFRM_KEY, NFTA_XFRM_DIR, NFTA_XFRM_DREG])?;
            if !matches!(family, NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET) {
                return Err(EOPNOTSUPP);
            }
            let len = match be32(tb.get(NFTA_XFRM_KEY)) {
                NFT_XFRM_KEY_REQID | NFT_XFRM_KEY_SPI => 4,
                NFT_XFRM_KEY_DADDR_IP4 | NFT_XFRM_KEY_SADDR_IP4 => 4,
                NFT_XFRM_KEY_DADDR_IP6 | NFT_XFRM_KEY_SADDR_IP6 => 16,
                _ => return Err(EINVAL),
            };
            if tb.get(NFTA_XFRM_DIR).map_or(0, |d| d.u8()) > 1 {
                return Err(EINVAL);
            }
            if be32(tb.get(NFTA_XFRM_SPNUM)) >= 6 {
                return Err(ERANGE);
            }
            regs.store(tb.get(NFTA_XFRM_DREG), len).map(|_| ())
        }
        "tproxy" => {
            let (addr, port) = (tb.get(NFTA_TPROXY_REG_ADDR), tb.get(NFTA_TPROXY_REG_PORT));
            if !tb.has(NFTA_TPROXY_FAMILY) || (addr.is_none() && port.is_none()) {
                return Err(EINVAL);
            }
            let f = be32(tb.get(NFTA_TPROXY_FAMILY));
            match family {
                NFPROTO_IPV4 | NFPROTO_IPV6 if f != u32::from(family) => return Err(EINVAL),
                NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET => {}
                _ => return Err(EOPNOTSUPP),
            }
            if f == 0 && addr.is_some() {
                return Err(EINVAL);
            }
            let alen = match f {
                x if x == u32::from(NFPROTO_IPV4) => 4,
                x if x == u32::from(NFPROTO_IPV6) => 16,
                0 => 0,
                _ => return Err(EOPNOTSUPP),
            };
            if addr.is_some() {
                regs.load(addr, alen)?;
            }
            if port.is_some() {
                regs.load(port, 2)?;
            }
            Ok(())
        }
        "nat" => {
            let (amin, pmin) = (
                tb.get(NFTA_NAT_REG_ADDR_MIN),
                tb.get(NFTA_NAT_REG_PROTO_MIN),
            );
            if !tb.has(NFTA_NAT_TYPE) || (amin.is_none() && pmin.is_none()) {
                return Err(EINVAL);
            }
            if be32(tb.get(NFTA_NAT_TYPE)) > 1 {
                return Err(EOPNOTSUPP);
            }
            let f = tb.get(NFTA_NAT_FAMILY).ok_or(EINVAL)?.be32();
            if family != NFPROTO_INET && f != u32::from(family) {
                return Err(EOPNOTSUPP);
            }
            let alen = match f {
                x if x == u32::from(NFPROTO_IPV4) => 4,
                x if x == u32::from(NFPROTO_IPV6) => 16,
                _ if amin.is_some() => return Err(EAFNOSUPPORT),
                _ => 0,
            };
            if amin.is_some() {
                regs.load(amin, alen)?;
                if tb.has(NFTA_NAT_REG_ADDR_MAX) {
                    regs.load(tb.get(NFTA_NAT_REG_ADDR_MAX), alen)?;
                }
            }
            if pmin.is_some() {
                regs.load(pmin, 2)?;
                if tb.has(NFTA_NAT_REG_PROTO_MAX) {
                    regs.load(tb.get(NFTA_NAT_REG_PROTO_MAX), 2)?;
                }
            }
            if be32(tb.get(NFTA_NAT_FLAGS)) & !NAT_RANGE_MASK != 0 {
                return Err(EOPNOTSUPP);
            }
            Ok(())
        }
        "masq" | "redir" => {
            let (flags, min, max) = if name == "masq" {
                (
                    NFTA_MASQ_FLAGS,
                    NFTA_MASQ_REG_PROTO_MIN,
                    NFTA_MASQ_REG_PROTO_MAX,
                )
            } else {
                (
                    NFTA_REDIR_FLAGS,
                    NFTA_REDIR_REG_PROTO_MIN,
                    NFTA_REDIR_REG_PROTO_MAX,
                )
            };
            if be32(tb.get(flags)) & !NAT_RANGE_MASK != 0 {
                return Err(EINVAL);
            }
            if tb.has(min) {
                regs.load(tb.get(min), 2)?;
                if tb.has(max) {
                    regs.load(tb.get(max), 2)?;
                }
            }
            Ok(())
        }
        "dup" => {
            if family == NFPROTO_NETDEV {
                req(tb, &[NFTA_DUP_SREG_DEV])?;
                return regs.load(tb.get(NFTA_DUP_SREG_DEV), 4).map(|_| ());
            }
            req(tb, &[NFTA_DUP_SREG_ADDR])?;
            let alen = if family == NFPROTO_IPV6 { 16 } else { 4 };
            regs.load(tb.get(NFTA_DUP_SREG_ADDR), alen)?;
            if tb.has(NFTA_DUP_SREG_DEV) {
                regs.load(tb.get(NFTA_DUP_SREG_DEV), 4)?;
            }
            Ok(())
        }
        "fwd" => {
            if tb.has(NFTA_FWD_SREG_ADDR) {
                req(
                    tb,
                    &[NFTA_FWD_SREG_DEV, NFTA_FWD_SREG_ADDR, NFTA_FWD_NFPROTO],
                )?;
                let alen = match be32(tb.get(NFTA_FWD_NFPROTO)) {
                    x if x == u32::from(NFPROTO_IPV4) => 4,
                    x if x == u32::from(NFPROTO_IPV6) => 16,
                    _ => return Err(EOPNOTSUPP),
                };
                regs.load(tb.get(NFTA_FWD_SREG_DEV), 4)?;
                return regs.load(tb.get(NFTA_FWD_SREG_ADDR), alen).map(|_| ());
            }
            req(tb, &[NFTA_FWD_SREG_DEV])?;
            regs.load(tb.get(NFTA_FWD_SREG_DEV), 4).map(|_| ())
        }
        "tunnel" => {
            req(tb, &[NFTA_TUNNEL_KEY, NFTA_TUNNEL_DREG])?;
            let len = match be32(tb.get(NFTA_TUNNEL_KEY)) {
                NFT_TUNNEL_PATH => 1,
                NFT_TUNNEL_ID => 4,
                _ => return Err(EOPNOTSUPP),
            };
            if let Some(m) = tb.get(NFTA_TUNNEL_MODE) {
                if m.be32() > NFT_TUNNEL_MODE_TX {
                    return Err(EOPNOTSUPP);
                }
            }
            regs.store(tb.get(NFTA_TUNNEL_DREG), len).map(|_| ())
        }
        "reject" => {
            let ty = tb.get(NFTA_REJECT_TYPE).ok_or(EINVAL)?.be32();
            match ty {
                NFT_REJECT_ICMP_UNREACH | NFT_REJECT_ICMPX_UNREACH => {
                    let code = tb.get(NFTA_REJECT_ICMP_CODE).ok_or(EINVAL)?.u8();
                    if ty == NFT_REJECT_ICMPX_UNREACH
                        && u32::from(code) > NFT_REJECT_ICMPX_ADMIN_PROHIBITED
                    {
                        return Err(EINVAL);
                    }
                    Ok(())
                }
                NFT_REJECT_TCP_RST => Ok(()),
                _ => Err(EINVAL),
            }
        }
        "log" => {
            if tb.has(NFTA_LOG_LEVEL) && tb.has(NFTA_LOG_GROUP) {
                return Err(EINVAL);
            }
            if tb.has(NFTA_LOG_GROUP) {
                if tb.has(NFTA_LOG_FLAGS) {
                    return Err(EINVAL);
                }
                return Ok(());
            }
            if tb
                .get(NFTA_LOG_LEVEL)
                .is_some_and(|l| l.be32() > NFT_LOGLEVEL_AUDIT)
            {
                return Err(EINVAL);
            }
            if be32(tb.get(NFTA_LOG_FLAGS)) & !LOG_MASK != 0 {
                return Err(EINVAL);
            }
            Ok(())
        }
        "quota" => {
            let bytes = tb.get(NFTA_QUOTA_BYTES).ok_or(EINVAL)?.be64();
            if bytes > i64::MAX as u64 {
                return Err(EOVERFLOW);
            }
            if let Some(c) = tb.get(NFTA_QUOTA_CONSUMED) {
                if c.be64() > bytes {
                    return Err(EINVAL);
                }
            }
            if be32(tb.get(NFTA_QUOTA_FLAGS)) & !NFT_QUOTA_F_INV != 0 {
                return Err(EINVAL);
            }
            Ok(())
        }
        "limit" => {
            req(tb, &[NFTA_LIMIT_RATE, NFTA_LIMIT_UNIT])?;
            Ok(())
        }
        "connlimit" => req(tb, &[NFTA_CONNLIMIT_COUNT]),
        _ => Ok(()),
    }
}

/// `nft_jhash_init`/`nft_ng_*_init`: a modulus that is not 0 and does not wrap.
fn modulus(offset: u32, modulus: u32) -> Result<(), i32> {
    if modulus < 1 {
        return Err(ERANGE);
    }
    if offset.wrapping_add(modulus - 1) < offset {
        return Err(EOVERFLOW);
    }
    Ok(())
}

fn bitwise(tb: &Tb<'_>, regs: &mut Regs) -> Result<(), i32> {
    let len = u32_check(tb.get(NFTA_BITWISE_LEN), 255)?;
    regs.load(tb.get(NFTA_BITWISE_SREG), len)?;
    regs.store(tb.get(NFTA_BITWISE_DREG), len)?;
    let op = match tb.get(NFTA_BITWISE_OP) {
        Some(a) => a.be32(),
        None => NFT_BITWISE_MASK_XOR,
    };
    let (mask, xor, data, sreg2) = (
        tb.has(NFTA_BITWISE_MASK),
        tb.has(NFTA_BITWISE_XOR),
        tb.has(NFTA_BITWISE_DATA),
        tb.has(NFTA_BITWISE_SREG2),
    );
    match op {
        NFT_BITWISE_MASK_XOR => {
            if data || sreg2 || !mask || !xor {
                return Err(EINVAL);
            }
            value(tb.get(NFTA_BITWISE_MASK), len)?;
            value(tb.get(NFTA_BITWISE_XOR), len).map(|_| ())
        }
        NFT_BITWISE_LSHIFT | NFT_BITWISE_RSHIFT => {
            if mask || xor || sreg2 || !data {
                return Err(EINVAL);
            }
            let d = tb.get(NFTA_BITWISE_DATA);
            value(d, 4)?;
            let b = value_bytes(d.ok_or(EINVAL)?);
            let shift = b
                .get(..4)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if shift >= 32 {
                return Err(EINVAL);
            }
            Ok(())
        }
        NFT_BITWISE_AND | NFT_BITWISE_OR | NFT_BITWISE_XOR => {
            if mask || xor || data == sreg2 {
                return Err(EINVAL);
            }
            if data {
                value(tb.get(NFTA_BITWISE_DATA), len).map(|_| ())
            } else {
                regs.load(tb.get(NFTA_BITWISE_SREG2), len).map(|_| ())
            }
        }
        _ => Err(EOPNOTSUPP),
    }
}

fn ct(family: u8, tb: &Tb<'_>, regs: &mut Regs) -> Result<(), i32> {
    let key = be32(tb.get(NFTA_CT_KEY));
    let dir = tb.has(NFTA_CT_DIRECTION);
    let no_dir = |len: u32| if dir { Err(EINVAL) } else { Ok(len) };
    let need_dir = |len: u32| if dir { Ok(len) } else { Err(EINVAL) };
    if tb.has(NFTA_CT_SREG) {
        let len = match key {
            NFT_CT_MARK | NFT_CT_EVENTMASK | NFT_CT_SECMARK => no_dir(4)?,
            NFT_CT_LABELS => no_dir(16)?,
            NFT_CT_ZONE => 2,
            _ => return Err(EOPNOTSUPP),
        };
        if dir && tb.get(NFTA_CT_DIRECTION).map_or(0, |d| d.u8()) > 1 {
            return Err(EINVAL);
        }
        return regs.load(tb.get(NFTA_CT_SREG), len).map(|_| ());
    }
    let len = match key {
        NFT_CT_DIRECTION => no_dir(1)?,
        NFT_CT_STATE | NFT_CT_STATUS | NFT_CT_MARK | NFT_CT_SECMARK | NFT_CT_EXPIRATION => {
            no_dir(4)?
        }
        NFT_CT_LABELS | NFT_CT_HELPER => no_dir(16)?,
        NFT_CT_L3PROTOCOL | NFT_CT_PROTOCOL => 1,
        NFT_CT_SRC | NFT_CT_DST => {
            need_dir(0)?;
            match family {
                NFPROTO_IPV4 => 4,
                NFPROTO_IPV6 | NFPROTO_INET => 16,
                _ => return Err(EAFNOSUPPORT),
            }
        }
        NFT_CT_SRC_IP | NFT_CT_DST_IP => need_dir(4)?,
        NFT_CT_SRC_IP6 | NFT_CT_DST_IP6 => need_dir(16)?,
        NFT_CT_PROTO_SRC | NFT_CT_PROTO_DST => need_dir(2)?,
        NFT_CT_BYTES | NFT_CT_PKTS | NFT_CT_AVGPKT => 8,
        NFT_CT_ZONE => 2,
        NFT_CT_ID => no_dir(4)?,
        _ => return Err(EOPNOTSUPP),
    };
    if dir && tb.get(NFTA_CT_DIRECTION).map_or(0, |d| d.u8()) > 1 {
        return Err(EINVAL);
    }
    regs.store(tb.get(NFTA_CT_DREG), len).map(|_| ())
}

fn exthdr(tb: &Tb<'_>, regs: &mut Regs) -> Result<(), i32> {
    let op = tb.get(NFTA_EXTHDR_OP).map(|a| a.be32());
    let tcp = op == Some(NFT_EXTHDR_OP_TCPOPT);
    if tcp && tb.has(NFTA_EXTHDR_SREG) {
        // `nft_exthdr_tcp_set_init`.
        req(
            tb,
            &[
                NFTA_EXTHDR_SREG,
                NFTA_EXTHDR_TYPE,
                NFTA_EXTHDR_OFFSET,
                NFTA_EXTHDR_LEN,
            ],
        )?;
        if tb.has(NFTA_EXTHDR_DREG) || tb.has(NFTA_EXTHDR_FLAGS) {
            return Err(EINVAL);
        }
        let offset = u32_check(tb.get(NFTA_EXTHDR_OFFSET), 255)?;
        let len = u32_check(tb.get(NFTA_EXTHDR_LEN), 255)?;
        if offset < 2 || !matches!(len, 2 | 4) {
            return Err(EOPNOTSUPP);
        }
        return regs.load(tb.get(NFTA_EXTHDR_SREG), len).map(|_| ());
    }
    if tcp && !tb.has(NFTA_EXTHDR_DREG) {
        // `nft_exthdr_tcp_strip_init`.
        for id in [
            NFTA_EXTHDR_SREG,
            NFTA_EXTHDR_DREG,
            NFTA_EXTHDR_FLAGS,
            NFTA_EXTHDR_OFFSET,
            NFTA_EXTHDR_LEN,
        ] {
            if tb.has(id) {
                return Err(EINVAL);
            }
        }
        return req(tb, &[NFTA_EXTHDR_TYPE]);
    }
    req(
        tb,
        &[
            NFTA_EXTHDR_DREG,
            NFTA_EXTHDR_TYPE,
            NFTA_EXTHDR_OFFSET,
            NFTA_EXTHDR_LEN,
        ],
    )?;
    u32_check(tb.get(NFTA_EXTHDR_OFFSET), 255)?;
    let len = u32_check(tb.get(NFTA_EXTHDR_LEN), 255)?;
    if let Some(f) = tb.get(NFTA_EXTHDR_FLAGS) {
        let f = u32_check(Some(f), 255)?;
        if f & !NFT_EXTHDR_F_PRESENT != 0 {
            return Err(EINVAL);
        }
    }
    regs.store(tb.get(NFTA_EXTHDR_DREG), len)?;
    if op == Some(NFT_EXTHDR_OP_IPV4) {
        // `nft_exthdr_ipv4_init`: IPOPT_SSRR, IPOPT_LSRR, IPOPT_RR, IPOPT_RA.
        let ty = tb.get(NFTA_EXTHDR_TYPE).map_or(0, |t| t.u8());
        if !matches!(ty, 137 | 131 | 7 | 148) {
            return Err(EOPNOTSUPP);
        }
    }
    Ok(())
}
