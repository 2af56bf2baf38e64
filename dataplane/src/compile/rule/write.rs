//! `payload write` (nft's `ip ttl set`, `tcp dport set`, `ip6 daddr set`, ...): which
//! writes the data plane carries out exactly as nft_payload_set_eval() on 6.18, and
//! the refusals for the others.
//!
//! Accepted: writes of a constant, or of the written field itself masked and xored
//! (nft's read-modify-write of a field that is not whole bytes), to
//! - IPv4 header bytes 0..20 (checksum type inet at offset 10, or none), keeping the
//!   version, header length, total length, fragment bits and protocol;
//! - IPv6 header bytes 0..40 (no checksum type), keeping the version, payload length
//!   and next header;
//! - TCP bytes 0..12, UDP and UDP-Lite bytes 0..8 (checksum type inet at their
//!   checksum, or none), in rules that pin the protocol.
//!
//! Refused: other headers and bytes (they would change how the packet parses, or, for
//! ICMP and SCTP, need checksums the data plane does not compute); in input chains,
//! what the kernel's input route lookup reads (addresses, IPv4 DSCP, IPv6 traffic
//! class and flow label): the data plane runs input chains at TC ingress, before the
//! kernel routes the packet, which would then route the new values (not for rules
//! that only take packets from `lo`, which keep the route of their way out); the IPv4 header
//! checksum itself in prerouting and input (the IP stack checks it after TC, before
//! those hooks); addresses and ports before conntrack (priority -200 and lower at
//! prerouting and output: the kernel would track the new tuple).

use netlink_proto::expr::payload::{Payload, PayloadBase};
use netlink_proto::expr::Expr as TypedExpr;
use nftshim_engine::view::Expr;

use super::{reg_offset, Family, Hook, PayloadWrite, Recent, RuleState, Statement, WriteBase};
use super::{V4, V6};

const CSUM_NONE: u32 = 0;
const CSUM_INET: u32 = 1;
const L4CSUM_PSEUDOHDR: u32 = 1;
/// NF_IP_PRI_CONNTRACK
const PRI_CONNTRACK: i32 = -200;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_UDPLITE: u8 = 136;

impl RuleState<'_, '_> {
    /// Records what `e` did to the registers, for a later payload write's operand.
    pub(super) fn remember(&mut self, e: &Expr) {
        let recent = match TypedExpr::from_data(&e.name, &e.data) {
            TypedExpr::Immediate(i) => match (i.dreg().and_then(|r| r.byte_offset()), i.data()) {
                (Some(dreg), Some(d)) => match d.value_bytes() {
                    Some(data) => Recent::Immediate {
                        dreg,
                        data: data.to_vec(),
                    },
                    None => Recent::Other,
                },
                _ => Recent::Other,
            },
            TypedExpr::Payload(p) if p.sreg().is_none() => {
                let base = match p.base() {
                    Some(PayloadBase::Network) => Some(WriteBase::Network),
                    Some(PayloadBase::Transport) => Some(WriteBase::Transport),
                    _ => None,
                };
                match (base, p.dreg().and_then(|r| r.byte_offset())) {
                    (Some(base), Some(dreg)) => Recent::Load {
                        base,
                        offset: p.offset().unwrap_or(0),
                        len: p.len().unwrap_or(0),
                        dreg,
                    },
                    _ => Recent::Other,
                }
            }
            TypedExpr::Bitwise(b) => {
                let regs = (
                    b.sreg().and_then(|r| r.byte_offset()),
                    b.dreg().and_then(|r| r.byte_offset()),
                );
                let plain = matches!(
                    b.op(),
                    None | Some(netlink_proto::expr::bitwise::BitwiseOp::MaskXor)
                );
                match (
                    regs,
                    b.mask().and_then(|d| d.value_bytes().map(<[u8]>::to_vec)),
                ) {
                    ((Some(sreg), Some(dreg)), Some(mask)) if plain => Recent::Bitwise {
                        sreg,
                        dreg,
                        len: b.len().unwrap_or(0),
                        mask,
                        xor: b
                            .xor()
                            .and_then(|d| d.value_bytes().map(<[u8]>::to_vec))
                            .unwrap_or_default(),
                    },
                    _ => Recent::Other,
                }
            }
            _ => Recent::Other,
        };
        self.recent.push(recent);
    }

    /// The value a write of `len` bytes at `base + offset` takes from register `sreg`:
    /// `(old & mask) ^ xor`.
    fn write_operand(
        &self,
        sreg: u32,
        base: WriteBase,
        offset: u32,
        len: u32,
    ) -> Result<([u8; 16], [u8; 16]), String> {
        let (mut mask, mut xor) = ([0u8; 16], [0u8; 16]);
        let n = len as usize;
        let unsupported = || {
            "payload writes of a value other than a constant or the field itself \
             (masked) are not supported by the eBPF data plane"
                .to_string()
        };
        match self.recent.as_slice() {
            [.., Recent::Immediate { dreg, data }] if *dreg == sreg && data.len() >= n => {
                xor[..n].copy_from_slice(&data[..n]);
            }
            [.., Recent::Load {
                base: lb,
                offset: lo,
                len: ll,
                dreg: ld,
            }, Recent::Bitwise {
                sreg: bs,
                dreg: bd,
                len: bl,
                mask: m,
                xor: x,
            }] if *bd == sreg
                && *bs == *ld
                && (*lb, *lo, *ll, *bl) == (base, offset, len, len)
                && m.len() >= n =>
            {
                mask[..n].copy_from_slice(&m[..n]);
                for (i, b) in x.iter().take(n).enumerate() {
                    xor[i] = *b;
                }
            }
            _ => return Err(unsupported()),
        }
        Ok((mask, xor))
    }

    /// `payload write`: a [`Statement::PayloadSet`], or why not.
    pub(super) fn payload_write(&mut self, p: &Payload) -> Result<(), String> {
        let sreg = reg_offset(p.sreg(), "payload write")?;
        let base = match p.base() {
            Some(PayloadBase::Network) => WriteBase::Network,
            Some(PayloadBase::Transport) => WriteBase::Transport,
            _ => {
                return Err(
                    "payload writes to link-layer or inner headers are not supported by the \
                     eBPF data plane"
                        .into(),
                )
            }
        };
        let (offset, len) = (p.offset().unwrap_or(0), p.len().unwrap_or(0));
        if len == 0 || len > 16 || offset.saturating_add(len) > 255 {
            return Err("payload write of an unusual size or offset".into());
        }
        let csum_type = p.csum_type().unwrap_or(CSUM_NONE);
        let csum_offset = p.csum_offset().unwrap_or(0);
        let csum_flags = p.csum_flags().unwrap_or(0);
        if csum_flags & !L4CSUM_PSEUDOHDR != 0 || csum_offset > 255 {
            return Err("payload write with unknown checksum flags".into());
        }
        if csum_type != CSUM_NONE && csum_type != CSUM_INET {
            return Err("payload write with an unusual checksum field".into());
        }
        let (mask, xor) = self.write_operand(sreg, base, offset, len)?;
        self.header_write(PayloadWrite {
            base,
            offset: offset as u8,
            len: len as u8,
            mask,
            xor,
            csum_inet: csum_type == CSUM_INET,
            csum_offset: csum_offset as u8,
            pseudo_header: csum_flags & L4CSUM_PSEUDOHDR != 0,
            csum_keep_zero: false,
            saturating: None,
        })
    }

    /// A header write (nft's `payload write`, or an xtables target that rewrites a
    /// header as one would): a [`Statement::PayloadSet`] when the data plane carries it
    /// out exactly (see the module doc), or why not.
    pub(in crate::compile) fn header_write(&mut self, w: PayloadWrite) -> Result<(), String> {
        let PayloadWrite {
            base,
            mask,
            xor,
            pseudo_header,
            ..
        } = w;
        let (offset, len) = (u32::from(w.offset), u32::from(w.len));
        let csum_type = if w.csum_inet { CSUM_INET } else { CSUM_NONE };
        let csum_offset = u32::from(w.csum_offset);
        let csum_flags = if pseudo_header { L4CSUM_PSEUDOHDR } else { 0 };
        if len == 0 || len > 16 || offset + len > 255 {
            return Err("payload write of an unusual size or offset".into());
        }
        if w.saturating.is_some_and(|s| u32::from(s.at) >= len) {
            return Err("payload write that adds to a byte it does not write".into());
        }
        // Which bytes the write changes (for some packet).
        let added = w.saturating.map(|s| u32::from(s.at));
        let changes = |at: u32, bits: u8| {
            (offset..offset + len).contains(&at) && {
                let k = (at - offset) as usize;
                mask[k] & bits != bits || xor[k] & bits != 0 || added == Some(at - offset)
            }
        };
        let changes_any = |from: u32, to: u32| (from..to).any(|at| changes(at, 0xff));
        if !matches!(self.ctx.family, Family::Ip | Family::Ip6 | Family::Inet) {
            return Err(
                "payload writes in netdev, bridge and arp chains are not supported by the \
                 eBPF data plane"
                    .into(),
            );
        }
        let tuple = match base {
            WriteBase::Network => {
                // Header size, the bits that decide how the packet parses, whether the
                // checksum field is the one nft uses, the address bytes.
                type Layout = (u32, &'static [(u32, u8)], bool, (u32, u32));
                let (end, structural, csum_ok, addresses): Layout = match self.families {
                    V4 => (
                        20,
                        &[
                            (0, 0xff),
                            (2, 0xff),
                            (3, 0xff),
                            (6, 0xff),
                            (7, 0xff),
                            (9, 0xff),
                        ],
                        csum_type == CSUM_NONE && csum_offset == 0
                            || csum_type == CSUM_INET && csum_offset == 10,
                        (12, 20),
                    ),
                    V6 => (
                        40,
                        &[(0, 0xf0), (4, 0xff), (5, 0xff), (6, 0xff)],
                        csum_type == CSUM_NONE && csum_offset == 0,
                        (8, 40),
                    ),
                    _ => {
                        return Err("payload write to a network header of no one IP version".into())
                    }
                };
                if offset + len > end {
                    return Err(
                        "payload writes to IP options or IPv6 extension headers are not \
                         supported by the eBPF data plane"
                            .into(),
                    );
                }
                if structural.iter().any(|&(at, bits)| changes(at, bits)) {
                    return Err(
                        "payload writes to the IP version, lengths, fragment fields or \
                         protocol are not supported by the eBPF data plane"
                            .into(),
                    );
                }
                if !csum_ok {
                    return Err("payload write with an unusual checksum field".into());
                }
                let addresses = changes_any(addresses.0, addresses.1);
                // What the kernel's input route lookup reads: the addresses, the DSCP
                // (IPv4), the traffic class and flow label (IPv6).
                let routed = addresses
                    || match self.families {
                        V4 => changes(1, 0xfc),
                        _ => changes(0, 0x0f) || changes_any(1, 4),
                    };
                if routed && self.ctx.hook == Hook::Input && !self.only_from_loopback() {
                    return Err(
                        "address, DSCP and flow label writes in input chains are not \
                         supported by the eBPF data plane (it runs them before the kernel \
                         routes the packet)"
                            .into(),
                    );
                }
                if self.families == V4
                    && changes_any(10, 12)
                    && matches!(self.ctx.hook, Hook::Prerouting | Hook::Input)
                {
                    return Err(
                        "IPv4 header checksum writes in prerouting and input chains are not \
                         supported by the eBPF data plane (it runs them before the IP stack \
                         checks the checksum)"
                            .into(),
                    );
                }
                addresses
            }
            WriteBase::Transport => {
                let proto = match &self.l4protos {
                    Some(p) if p.len() == 1 => p.iter().next().copied(),
                    _ => None,
                };
                let (end, csum_at) = match proto {
                    Some(IPPROTO_TCP) => (12, 16),
                    Some(IPPROTO_UDP | IPPROTO_UDPLITE) => (8, 6),
                    _ => {
                        return Err(
                            "payload writes to transport headers other than TCP, UDP and \
                             UDP-Lite are not supported by the eBPF data plane"
                                .into(),
                        )
                    }
                };
                if offset + len > end {
                    return Err(
                        "payload writes past the TCP acknowledgment number or the UDP header \
                         are not supported by the eBPF data plane"
                            .into(),
                    );
                }
                let csum_ok = csum_flags == 0
                    && (csum_type == CSUM_NONE && csum_offset == 0
                        || csum_type == CSUM_INET && csum_offset == csum_at);
                if !csum_ok {
                    return Err("payload write with an unusual checksum field".into());
                }
                changes_any(0, 4)
            }
        };
        if tuple
            && matches!(self.ctx.hook, Hook::Prerouting | Hook::Output)
            && self.ctx.priority.is_none_or(|p| p <= PRI_CONNTRACK)
        {
            return Err(
                "address and port writes before conntrack (priority -200 or lower) are not \
                 supported by the eBPF data plane"
                    .into(),
            );
        }
        self.effects.push(Statement::PayloadSet(w));
        self.statements = true;
        Ok(())
    }
}

impl RuleState<'_, '_> {
    /// Whether a match so far limits the rule to packets that came in on loopback
    /// (`iif "lo"`, `iifname "lo"`). Those keep the route they were sent with
    /// (loopback_xmit keeps skb->dst; ip_rcv_finish and ip6_rcv_finish route only
    /// packets without one), so nothing routes a header written at lo's TC ingress.
    fn only_from_loopback(&self) -> bool {
        use super::{IfNamePattern, SymMatch};
        use nftshim_ebpf::ir::{Match, Test};
        const LOOPBACK_IFINDEX: u32 = 1;
        let lo = IfNamePattern {
            bytes: {
                let mut name = vec![0u8; 16];
                name[..2].copy_from_slice(b"lo");
                name
            },
        };
        self.matches.iter().any(|m| match m {
            SymMatch::Ir(Match {
                test: Test::Iif(indexes),
                negated: false,
            }) => !indexes.is_empty() && indexes.iter().all(|&i| i == LOOPBACK_IFINDEX),
            SymMatch::IfName {
                output: false,
                patterns,
                negated: false,
            } => !patterns.is_empty() && patterns.iter().all(|p| *p == lo),
            _ => false,
        })
    }
}
