//! ebtables-nft's compat expressions in bridge chains: the ebt_* matches and targets
//! (net/bridge/netfilter/ebt_*.c) nft_compat runs there, back to residual programs
//! and IR, with the kernel's semantics.
//!
//! The matches read with skb_header_pointer() from skb->data, which is the network
//! header at every bridge hook, up to skb->len: residual network loads in the netdev
//! view bridge rules run in (frame offset 14 to the frame's end, at the ports' TC
//! ingress and egress alike). Each match is a conjunction of "return false" tests, so
//! it is one residual program: a failed test or a load the packet does not have stops
//! it. A blob field not set in the match's `bitmask` is not tested, as the kernel
//! does not (but for ebt_ip6's addresses, which the kernel always compares).

use netlink_proto::xt::Blob;
use nftshim_ebpf::ir::{Action, Statement, Test};
use nftshim_ebpf::residual::{CmpOp, Insn, PayloadBase};

use super::{one, Decompiled, XtCx};
use crate::compile::residual::SCRATCH;
use crate::compile::rule::mark_set_allowed;
use crate::compile::Hook;

/// The four scratch registers.
const S0: u8 = SCRATCH;
const S1: u8 = SCRATCH + 4;

/// `-m NAME` in a bridge chain.
pub fn decompile_match(
    cx: &XtCx<'_>,
    name: &str,
    rev: u32,
    b: Blob<'_>,
) -> Result<Decompiled, String> {
    match (name, rev) {
        ("ip", 0) => ip(b),
        ("ip6", 0) => ip6(b),
        ("arp", 0) => arp(b),
        ("vlan", 0) => vlan(b),
        ("pkttype", 0) => pkttype(cx, b),
        ("mark_m", 0) => mark_m(b),
        ("802_3", 0) => llc(b),
        _ => Err(format!(
            "ebt match {name} (revision {rev}) is not supported by the eBPF data plane"
        )),
    }
}

/// `-j NAME` in a bridge chain.
pub fn decompile_target(
    cx: &XtCx<'_>,
    name: &str,
    rev: u32,
    b: Blob<'_>,
) -> Result<Decompiled, String> {
    match (name, rev) {
        ("mark", 0) => mark_target(cx, b),
        ("redirect" | "snat" | "dnat", _) => Err(format!(
            "ebt target {name} (NAT) is not supported by the eBPF data plane"
        )),
        _ => Err(format!(
            "ebt target {name} (revision {rev}) is not supported by the eBPF data plane"
        )),
    }
}

/// A residual program under construction.
#[derive(Default)]
struct Prog(Vec<Insn>);

impl Prog {
    fn load(&mut self, offset: u16, len: u8, dreg: u8) {
        self.0.push(Insn::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg,
        });
    }

    /// Holds whatever `len` bytes at `reg` are: the load before it must only succeed.
    fn present(&mut self, reg: u8, len: usize) {
        self.0.push(Insn::Range {
            sreg: reg,
            negated: false,
            from: vec![0; len],
            to: vec![0xff; len],
        });
    }

    /// `reg & mask == value`, or `!=` with `invert`.
    fn masked_eq(&mut self, reg: u8, mask: &[u8], value: &[u8], invert: bool) {
        if mask.iter().any(|&m| m != 0xff) {
            self.0.push(Insn::Bitwise {
                sreg: reg,
                dreg: reg,
                len: mask.len() as u8,
                mask: mask.to_vec(),
                xor: vec![0; mask.len()],
            });
        }
        self.eq(reg, value, invert);
    }

    fn eq(&mut self, reg: u8, value: &[u8], invert: bool) {
        self.0.push(Insn::Cmp {
            sreg: reg,
            op: if invert { CmpOp::Neq } else { CmpOp::Eq },
            data: value.to_vec(),
        });
    }

    /// `from <= reg <= to` (big-endian bytes), or outside with `invert`.
    fn range(&mut self, reg: u8, from: &[u8], to: &[u8], invert: bool) {
        self.0.push(Insn::Range {
            sreg: reg,
            negated: invert,
            from: from.to_vec(),
            to: to.to_vec(),
        });
    }

    fn done(self) -> Decompiled {
        Decompiled::Residual(Vec::new(), self.0)
    }
}

/// `FWINV(cond, bit)` of the kernel: the test fails when `cond` != inverted.
fn inv(invflags: u8, bit: u8) -> bool {
    invflags & bit != 0
}

/// ICMP (type, code) in `[t0, t1] x [c0, c1]`, as ranges of the two bytes read as one
/// big-endian key: one range when the codes are all, else one per type.
fn type_code_ranges(t: (u8, u8), c: (u8, u8)) -> Vec<(Vec<u8>, Vec<u8>)> {
    if c == (0, 0xff) {
        return vec![(vec![t.0, 0], vec![t.1, 0xff])];
    }
    (t.0..=t.1)
        .map(|ty| (vec![ty, c.0], vec![ty, c.1]))
        .collect()
}

// --- ebt_ip ---------------------------------------------------------------------------

const EBT_IP_SOURCE: u8 = 0x01;
const EBT_IP_DEST: u8 = 0x02;
const EBT_IP_TOS: u8 = 0x04;
const EBT_IP_PROTO: u8 = 0x08;
const EBT_IP_SPORT: u8 = 0x10;
const EBT_IP_DPORT: u8 = 0x20;
const EBT_IP_ICMP: u8 = 0x40;
const EBT_IP_IGMP: u8 = 0x80;

/// `struct ebt_ip_info`: saddr @0, daddr @4, smsk @8, dmsk @12 (network order), tos @16,
/// protocol @17, bitmask @18, invflags @19, sport[2] (host order) or icmp_type[2] or
/// igmp_type[2] @20, dport[2] or icmp_code[2] @24. ebt_ip_mt(): the IPv4 header's 20
/// bytes; the ports, ICMP type/code or IGMP type at `ihl * 4` (4 bytes there), only
/// with a protocol and not in a later fragment.
fn ip(b: Blob<'_>) -> Result<Decompiled, String> {
    let (bits, invf) = (b.u8(18), b.u8(19));
    let mut p = Prog::default();
    p.load(16, 4, S0);
    p.present(S0, 4);
    if bits & EBT_IP_TOS != 0 {
        p.load(1, 1, S0);
        p.eq(S0, &[b.u8(16)], inv(invf, EBT_IP_TOS));
    }
    for (bit, addr, mask, at) in [(EBT_IP_SOURCE, 0, 8, 12u16), (EBT_IP_DEST, 4, 12, 16)] {
        if bits & bit != 0 {
            // (field & mask) != addr: an address with bits outside the mask never
            // equals, which the masked compare reproduces.
            p.load(at, 4, S0);
            p.masked_eq(S0, &b.bytes(mask, 4), &b.bytes(addr, 4), inv(invf, bit));
        }
    }
    if bits & EBT_IP_PROTO != 0 {
        p.load(9, 1, S0);
        p.eq(S0, &[b.u8(17)], inv(invf, EBT_IP_PROTO));
        if bits & (EBT_IP_SPORT | EBT_IP_DPORT | EBT_IP_ICMP | EBT_IP_IGMP) != 0 {
            // Not a later fragment.
            p.load(6, 2, S0);
            p.masked_eq(S0, &[0x1f, 0xff], &[0, 0], false);
            let at_ihl = |offset: u16, len: u8, dreg: u8| Insn::PayloadIndexed {
                index: 0,
                mask: 0x0f,
                scale: 4,
                offset,
                len,
                dreg,
            };
            p.0.push(at_ihl(0, 4, S0));
            p.present(S0, 4);
            ports(
                &mut p,
                &b,
                bits,
                invf,
                [EBT_IP_SPORT, EBT_IP_DPORT],
                20,
                at_ihl,
            );
            if bits & EBT_IP_ICMP != 0 {
                p.0.push(at_ihl(0, 2, S1));
                icmp_test(&mut p, &b, 20, 24, inv(invf, EBT_IP_ICMP))?;
            }
            if bits & EBT_IP_IGMP != 0 {
                p.0.push(at_ihl(0, 1, S1));
                let (lo, hi) = (b.u8(20), b.u8(21));
                p.range(S1, &[lo], &[hi], inv(invf, EBT_IP_IGMP));
            }
        }
    }
    Ok(p.done())
}

/// The port tests of ebt_ip / ebt_ip6: `[lo, hi]` (host order u16 pairs at `at` for
/// sport, `at + 4` for dport) against the transport header's bytes 0-1 / 2-3.
fn ports(
    p: &mut Prog,
    b: &Blob<'_>,
    bits: u8,
    invf: u8,
    [sport, dport]: [u8; 2],
    at: usize,
    load: impl Fn(u16, u8, u8) -> Insn,
) {
    for (bit, field, offset) in [(dport, at + 4, 2u16), (sport, at, 0)] {
        if bits & bit != 0 {
            p.0.push(load(offset, 2, S1));
            let (lo, hi) = (b.u16(field), b.u16(field + 2));
            p.range(S1, &lo.to_be_bytes(), &hi.to_be_bytes(), inv(invf, bit));
        }
    }
}

/// ICMP type range at `types`, code range at `codes`, against the (type, code) bytes in
/// S1: the kernel inverts the whole "type and code in range".
fn icmp_test(
    p: &mut Prog,
    b: &Blob<'_>,
    types: usize,
    codes: usize,
    invert: bool,
) -> Result<(), String> {
    let t = (b.u8(types), b.u8(types + 1));
    let c = (b.u8(codes), b.u8(codes + 1));
    if t.0 > t.1 || c.0 > c.1 {
        // An empty range: no packet is in it.
        let never = vec![(vec![1, 0], vec![0, 0])];
        return lookup(p, never, invert);
    }
    lookup(p, type_code_ranges(t, c), invert)
}

fn lookup(p: &mut Prog, elements: Vec<(Vec<u8>, Vec<u8>)>, negated: bool) -> Result<(), String> {
    if elements.len() > nftshim_ebpf::residual::MAX_ELEMS {
        return Err("ebt icmp type/code ranges: too many ranges for the eBPF data plane".into());
    }
    p.0.push(Insn::Lookup {
        sreg: S1,
        len: 2,
        negated,
        elements,
    });
    Ok(())
}

// --- ebt_ip6 --------------------------------------------------------------------------

const EBT_IP6_SOURCE: u8 = 0x01;
const EBT_IP6_DEST: u8 = 0x02;
const EBT_IP6_TCLASS: u8 = 0x04;
const EBT_IP6_PROTO: u8 = 0x08;
const EBT_IP6_SPORT: u8 = 0x10;
const EBT_IP6_DPORT: u8 = 0x20;
const EBT_IP6_ICMP6: u8 = 0x40;

/// `struct ebt_ip6_info`: saddr @0, daddr @16, smsk @32, dmsk @48, tclass @64,
/// protocol @65, bitmask @66, invflags @67, sport[2] or icmpv6_type[2] @68, dport[2] or
/// icmpv6_code[2] @72. ebt_ip6_mt(): the IPv6 header's 40 bytes; the addresses are
/// compared under their masks whatever the bitmask says (ipv6_masked_addr_cmp); the
/// protocol is the header ipv6_skip_exthdr() stops at, and the ports or ICMPv6 type and
/// code are its first 4 bytes (no fragment test).
fn ip6(b: Blob<'_>) -> Result<Decompiled, String> {
    let (bits, invf) = (b.u8(66), b.u8(67));
    let mut p = Prog::default();
    p.load(36, 4, S0);
    p.present(S0, 4);
    if bits & EBT_IP6_TCLASS != 0 {
        // ipv6_get_dsfield(): bits 4..12 of the first two bytes.
        let tc = b.u8(64);
        p.load(0, 2, S0);
        p.masked_eq(
            S0,
            &[0x0f, 0xf0],
            &[tc >> 4, tc << 4],
            inv(invf, EBT_IP6_TCLASS),
        );
    }
    for (bit, addr, mask, at) in [(EBT_IP6_SOURCE, 0, 32, 8u16), (EBT_IP6_DEST, 16, 48, 24)] {
        let (a, m) = (b.bytes(addr, 16), b.bytes(mask, 16));
        let want: Vec<u8> = a.iter().zip(&m).map(|(a, m)| a & m).collect();
        let invert = inv(invf, bit);
        if m.iter().all(|&x| x == 0) {
            // Every address compares equal under an empty mask.
            if invert {
                return Ok(Decompiled::Never);
            }
            continue;
        }
        p.load(at, 16, S0);
        p.masked_eq(S0, &m, &want, invert);
    }
    if bits & EBT_IP6_PROTO != 0 {
        let skip = |offset: u8, len: u8, dreg: u8, nexthdr: bool| Insn::Ip6SkipExthdr {
            offset,
            len,
            dreg,
            nexthdr,
        };
        p.0.push(skip(0, 1, S0, true));
        p.eq(S0, &[b.u8(65)], inv(invf, EBT_IP6_PROTO));
        if bits & (EBT_IP6_SPORT | EBT_IP6_DPORT | EBT_IP6_ICMP6) != 0 {
            p.0.push(skip(0, 4, S0, false));
            p.present(S0, 4);
            ports(
                &mut p,
                &b,
                bits,
                invf,
                [EBT_IP6_SPORT, EBT_IP6_DPORT],
                68,
                |o, l, d| skip(o as u8, l, d, false),
            );
            if bits & EBT_IP6_ICMP6 != 0 {
                p.0.push(skip(0, 2, S1, false));
                icmp_test(&mut p, &b, 68, 72, inv(invf, EBT_IP6_ICMP6))?;
            }
        }
    }
    Ok(p.done())
}

// --- ebt_arp --------------------------------------------------------------------------

const EBT_ARP_OPCODE: u8 = 0x01;
const EBT_ARP_HTYPE: u8 = 0x02;
const EBT_ARP_PTYPE: u8 = 0x04;
const EBT_ARP_SRC_IP: u8 = 0x08;
const EBT_ARP_DST_IP: u8 = 0x10;
const EBT_ARP_SRC_MAC: u8 = 0x20;
const EBT_ARP_DST_MAC: u8 = 0x40;
const EBT_ARP_GRAT: u8 = 0x80;

/// `struct ebt_arp_info` (network order): htype @0, ptype @2, opcode @4, saddr @8,
/// smsk @12, daddr @16, dmsk @20, smaddr @24, smmsk @30, dmaddr @36, dmmsk @42,
/// bitmask @48, invflags @49. ebt_arp_mt(): the ARP header's 8 bytes; IP addresses
/// (only with `ar_pln` 4 and `ar_pro` IPv4) after `ar_hln` bytes of sender address; MAC
/// addresses only with `ar_hln` 6 and `ar_hrd` Ethernet.
fn arp(b: Blob<'_>) -> Result<Decompiled, String> {
    let (bits, invf) = (b.u8(48), b.u8(49));
    let mut p = Prog::default();
    p.load(4, 4, S0);
    p.present(S0, 4);
    for (bit, field, at) in [
        (EBT_ARP_OPCODE, 4, 6u16),
        (EBT_ARP_HTYPE, 0, 0),
        (EBT_ARP_PTYPE, 2, 2),
    ] {
        if bits & bit != 0 {
            p.load(at, 2, S0);
            p.eq(S0, &b.bytes(field, 2), inv(invf, bit));
        }
    }
    if bits & (EBT_ARP_SRC_IP | EBT_ARP_DST_IP | EBT_ARP_GRAT) != 0 {
        p.load(5, 1, S0);
        p.eq(S0, &[4], false);
        p.load(2, 2, S0);
        p.eq(S0, &[0x08, 0x00], false);
        // 8 + ar_hln and 8 + 2 * ar_hln + 4: both must be in the packet.
        let after_hln = |scale: u8, offset: u16, dreg: u8| Insn::PayloadIndexed {
            index: 4,
            mask: 0xff,
            scale,
            offset,
            len: 4,
            dreg,
        };
        let (src, dst) = (after_hln(1, 8, S0), after_hln(2, 12, S0));
        p.0.push(src.clone());
        p.present(S0, 4);
        p.0.push(dst.clone());
        p.present(S0, 4);
        for (bit, addr, mask, load) in [
            (EBT_ARP_SRC_IP, 8, 12, src.clone()),
            (EBT_ARP_DST_IP, 16, 20, dst),
        ] {
            if bits & bit != 0 {
                // info->addr != (field & mask)
                p.0.push(load);
                p.masked_eq(S0, &b.bytes(mask, 4), &b.bytes(addr, 4), inv(invf, bit));
            }
        }
        if bits & EBT_ARP_GRAT != 0 {
            // The sender's address at S0, the target's right after it (S1).
            p.0.push(src);
            p.0.push(after_hln(2, 12, S1));
            p.0.push(Insn::HalvesEq {
                sreg: S0,
                len: 4,
                negated: inv(invf, EBT_ARP_GRAT),
            });
        }
    }
    if bits & (EBT_ARP_SRC_MAC | EBT_ARP_DST_MAC) != 0 {
        p.load(4, 1, S0);
        p.eq(S0, &[6], false);
        p.load(0, 2, S0);
        p.eq(S0, &[0, 1], false);
        for (bit, addr, mask) in [(EBT_ARP_SRC_MAC, 24, 30), (EBT_ARP_DST_MAC, 36, 42)] {
            if bits & bit == 0 {
                continue;
            }
            if bit == EBT_ARP_SRC_MAC {
                p.load(8, 6, S0);
            } else {
                // 8 + ar_hln (6) + ar_pln.
                p.0.push(Insn::PayloadIndexed {
                    index: 5,
                    mask: 0xff,
                    scale: 1,
                    offset: 14,
                    len: 6,
                    dreg: S0,
                });
            }
            // Equal under the mask: (field ^ addr) & mask == 0.
            let m = b.bytes(mask, 6);
            let want: Vec<u8> = b
                .bytes(addr, 6)
                .iter()
                .zip(&m)
                .map(|(a, m)| a & m)
                .collect();
            p.masked_eq(S0, &m, &want, inv(invf, bit));
        }
    }
    Ok(p.done())
}

// --- ebt_vlan -------------------------------------------------------------------------

const EBT_VLAN_ID: u8 = 0x01;
const EBT_VLAN_PRIO: u8 = 0x02;
const EBT_VLAN_ENCAP: u8 = 0x04;

/// `struct ebt_vlan_info`: id u16 @0, prio u8 @2, encap be16 @4, bitmask @6, invflags
/// @7. ebt_vlan_mt() takes the TCI and encapsulated protocol from the skb's accelerated
/// tag and skb->protocol, or else from the 4 bytes at the network header: exactly the
/// link-layer bytes 14..18 nft_payload reads with the accelerated tag put back.
fn vlan(b: Blob<'_>) -> Result<Decompiled, String> {
    let (bits, invf) = (b.u8(6), b.u8(7));
    let mut p = Prog::default();
    p.0.push(Insn::Payload {
        base: PayloadBase::LinkLayer,
        offset: 14,
        len: 4,
        dreg: S0,
    });
    p.present(S0, 4);
    let copy = |p: &mut Prog, mask: [u8; 4]| {
        p.0.push(Insn::Bitwise {
            sreg: S0,
            dreg: S1,
            len: 4,
            mask: mask.to_vec(),
            xor: vec![0; 4],
        })
    };
    // A value the TCI's field cannot hold never equals it.
    if bits & EBT_VLAN_ID != 0 {
        let id = b.u16(0);
        if id <= 0xfff {
            copy(&mut p, [0x0f, 0xff, 0, 0]);
            p.eq(
                S1,
                &[(id >> 8) as u8, id as u8, 0, 0],
                inv(invf, EBT_VLAN_ID),
            );
        } else if !inv(invf, EBT_VLAN_ID) {
            return Ok(Decompiled::Never);
        }
    }
    if bits & EBT_VLAN_PRIO != 0 {
        let prio = b.u8(2);
        if prio <= 7 {
            copy(&mut p, [0xe0, 0, 0, 0]);
            p.eq(S1, &[prio << 5, 0, 0, 0], inv(invf, EBT_VLAN_PRIO));
        } else if !inv(invf, EBT_VLAN_PRIO) {
            return Ok(Decompiled::Never);
        }
    }
    if bits & EBT_VLAN_ENCAP != 0 {
        let encap = b.be16(4).to_be_bytes();
        copy(&mut p, [0, 0, 0xff, 0xff]);
        p.eq(S1, &[0, 0, encap[0], encap[1]], inv(invf, EBT_VLAN_ENCAP));
    }
    Ok(p.done())
}

// --- ebt_802_3 -----------------------------------------------------------------------

const EBT_802_3_SAP: u8 = 0x01;
const EBT_802_3_TYPE: u8 = 0x02;
/// The DSAP and SSAP of SNAP frames, the only ones whose type `--802_3-type` tests.
const CHECK_TYPE: u8 = 0xaa;

/// `struct ebt_802_3_info`: sap @0, type be16 @2, bitmask @4, invflags @5.
/// ebt_802_3_mt() reads the LLC header after the MAC header (skb_mac_header(), the
/// frame's own bytes): DSAP @14, SSAP @15, control @16; the SNAP type at 20 after a
/// one-byte (UI: control & 3) control field, else at 22 (`struct hdr_ni`'s padding).
/// Known difference: the kernel reads those bytes without a length check, past the end
/// of a frame shorter than 17 (SAP) or 24 bytes; here such a frame fails the match.
fn llc(b: Blob<'_>) -> Result<Decompiled, String> {
    let (sap, bits, invf) = (b.u8(0), b.u8(4), b.u8(5));
    let mut p = Prog::default();
    let link = |offset: u16, len: u8| Insn::Payload {
        base: PayloadBase::LinkLayerUntagged,
        offset,
        len,
        dreg: S0,
    };
    if bits & EBT_802_3_SAP != 0 {
        for at in [15, 14] {
            p.0.push(link(at, 1));
            p.eq(S0, &[sap], inv(invf, EBT_802_3_SAP));
        }
    }
    if bits & EBT_802_3_TYPE != 0 {
        p.0.push(link(14, 2));
        p.eq(S0, &[CHECK_TYPE, CHECK_TYPE], false);
        p.0.push(Insn::LinkChoice {
            index: 16,
            mask: 0x03,
            offset_set: 20,
            offset_clear: 22,
            len: 2,
            dreg: S0,
        });
        p.eq(S0, &b.be16(2).to_be_bytes(), inv(invf, EBT_802_3_TYPE));
    }
    Ok(p.done())
}

// --- ebt_pkttype, ebt_mark_m, ebt_mark --------------------------------------------------

/// `struct ebt_pkttype_info`: pkt_type @0, invert @1. `skb->pkt_type == pkt_type`, which
/// TC sees as the hook did, but at prerouting: br_handle_frame() makes a frame for the
/// bridge device's address PACKET_HOST after the port's TC ingress.
fn pkttype(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if cx.hook == Hook::Prerouting {
        return Err(
            "ebt match pkttype in bridge prerouting chains is not supported by the eBPF \
             data plane (the bridge sets PACKET_HOST after the port's TC ingress)"
                .into(),
        );
    }
    let mut p = Prog::default();
    p.0.push(Insn::PktType { dreg: S0 });
    p.eq(S0, &[b.u8(0)], b.u8(1) != 0);
    Ok(p.done())
}

const EBT_MARK_OR: u8 = 0x02;

/// `struct ebt_mark_m_info`: mark u64 @0, mask u64 @8, invert @16, bitmask @17.
/// `(mark & mask) == mark`, or with EBT_MARK_OR `(mark & mask) != 0`; skb->mark is 32
/// bits wide.
fn mark_m(b: Blob<'_>) -> Result<Decompiled, String> {
    let (mark, mask, invert) = (b.u64(0), b.u64(8) as u32, b.u8(16) != 0);
    if b.u8(17) & EBT_MARK_OR != 0 {
        if mask == 0 {
            return Ok(if invert {
                Decompiled::Always
            } else {
                Decompiled::Never
            });
        }
        return Ok(one(
            Test::Mark {
                mask,
                values: vec![0],
            },
            !invert,
        ));
    }
    if mark > u64::from(u32::MAX) || (mark as u32) & !mask != 0 {
        return Ok(if invert {
            Decompiled::Always
        } else {
            Decompiled::Never
        });
    }
    Ok(one(
        Test::Mark {
            mask,
            values: vec![mark as u32],
        },
        invert,
    ))
}

const MARK_SET_VALUE: u32 = 0xffff_fff0;
const MARK_OR_VALUE: u32 = 0xffff_ffe0;
const MARK_AND_VALUE: u32 = 0xffff_ffd0;
const MARK_XOR_VALUE: u32 = 0xffff_ffc0;

/// `struct ebt_mark_t_info`: mark u64 @0, target int @8: the operation in its high
/// bits, the ebtables verdict (EBT_ACCEPT -1 ... EBT_RETURN -4) in its low four.
/// ebt_mark_tg() sets skb->mark (32 bits of `mark`) and returns the verdict, which
/// nft_compat's bridge target turns into accept, drop, continue or return.
fn mark_target(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    mark_set_allowed(cx.hook)?;
    let (value, target) = (b.u64(0) as u32, b.u32(8));
    let statement = match target & !0xf {
        MARK_SET_VALUE => Statement::SetMark { and: 0, xor: value },
        MARK_OR_VALUE => Statement::SetMark {
            and: !value,
            xor: value,
        },
        MARK_AND_VALUE => Statement::SetMark { and: value, xor: 0 },
        MARK_XOR_VALUE => Statement::SetMark {
            and: u32::MAX,
            xor: value,
        },
        _ => return Err("ebt target mark with an unknown operation".into()),
    };
    let verdict = match (target | !0xf) as i32 {
        -1 => Action::Accept,
        -2 => Action::Drop,
        -3 => return Ok(Decompiled::Statement(statement)),
        -4 => Action::Return,
        v => return Err(format!("ebt target mark with verdict {v}")),
    };
    Ok(Decompiled::StatementVerdict(statement, verdict))
}

#[cfg(test)]
mod tests;
