//! ip6t_srh (`-m srh`, revisions 0 and 1): srh_mt6()/srh1_mt6() find the routing
//! header with ipv6_find_hdr() and fail (6.18.44 does not drop: checked with crafted
//! packets) when it is not there, is malformed, has fewer than the 8 bytes of `struct
//! ipv6_sr_hdr` or fewer than its length field says, is not of type 4, or has more
//! segments left than its last entry; then test its fields in order, and last the
//! segment addresses of revision 1 (`--srh-psid`, `--srh-nsid`: at an index segments
//! left gives, Insn::XtSrhSegment; `--srh-lsid`: the first address) under their masks.

use nftshim_ebpf::residual::{CmpOp, Insn};

use super::{Decompiled, XtCx};
use crate::compile::residual::SCRATCH;
use crate::compile::rule::V6;
use netlink_proto::xt::Blob;

const NEXTHDR_ROUTING: u8 = 43;
const IPV6_SRCRT_TYPE_4: u8 = 4;
const IP6T_SRH_PSID: u16 = 0x0800;
const IP6T_SRH_NSID: u16 = 0x1000;
const IP6T_SRH_LSID: u16 = 0x2000;

/// The header's bytes 0-7 at SCRATCH; bytes 2-5 (type, segments left, last entry,
/// flags) again at SCRATCH + 8; tests work on SCRATCH + 12.
const HDR: u8 = SCRATCH;
const MID: u8 = SCRATCH + 8;
const TMP: u8 = SCRATCH + 12;

/// (flag, byte of the header, comparison): the field tests in srh_mt6()'s order.
const FIELD_TESTS: [(u16, usize, CmpOp); 10] = [
    (0x0001, 0, CmpOp::Eq), // --srh-next-hdr
    (0x0002, 1, CmpOp::Eq), // --srh-hdr-len-eq
    (0x0004, 1, CmpOp::Gt),
    (0x0008, 1, CmpOp::Lt),
    (0x0010, 3, CmpOp::Eq), // --srh-segs-left-eq
    (0x0020, 3, CmpOp::Gt),
    (0x0040, 3, CmpOp::Lt),
    (0x0080, 4, CmpOp::Eq), // --srh-last-entry-eq
    (0x0100, 4, CmpOp::Gt),
    (0x0200, 4, CmpOp::Lt),
];
const IP6T_SRH_TAG: u16 = 0x0400;

fn header(offset: u8, len: u8, dreg: u8) -> Insn {
    Insn::XtIpv6Header {
        header: NEXTHDR_ROUTING,
        len,
        dreg,
        whole: true,
        offset,
        drops: false,
    }
}

/// `(the header word at `word` & mask) op value`: the field's bytes alone in a 4-byte
/// word (memcmp of the word orders as the field does).
fn field_test(word: u8, mask: [u8; 4], op: CmpOp, value: [u8; 4]) -> [Insn; 2] {
    [
        Insn::Bitwise {
            sreg: word,
            dreg: TMP,
            len: 4,
            mask: mask.to_vec(),
            xor: vec![0; 4],
        },
        Insn::Cmp {
            sreg: TMP,
            op,
            data: value.to_vec(),
        },
    ]
}

/// The test passes when `cond != inverted` (NF_SRH_INVF).
fn inverted(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Eq => CmpOp::Neq,
        CmpOp::Neq => CmpOp::Eq,
        CmpOp::Gt => CmpOp::Lte,
        CmpOp::Lte => CmpOp::Gt,
        CmpOp::Lt => CmpOp::Gte,
        CmpOp::Gte => CmpOp::Lt,
    }
}

/// `struct ip6t_srh`: next_hdr u8 @0, hdr_len @1, segs_left @2, last_entry @3, tag
/// u16 @4, mt_flags @6, mt_invflags @8. `struct ip6t_srh1`: the same to the tag,
/// then six addresses (@8, aligned to 4), mt_flags @104, mt_invflags @106.
pub(super) fn srh(cx: &XtCx<'_>, rev: u32, b: Blob<'_>) -> Result<Decompiled, String> {
    if cx.families != V6 {
        return Err("xt match srh outside ip6 tables is not supported".into());
    }
    let (flags, inv) = if rev == 0 {
        (b.u16(6), b.u16(8))
    } else {
        (b.u16(104), b.u16(106))
    };
    let mut insns = vec![
        header(0, 8, HDR),
        header(2, 4, MID),
        // Type 4 and segments left <= last entry: (type, segments left, last entry,
        // flags) in [(4, s, s, 0), (4, s, 255, 255)] for some s.
        Insn::Lookup {
            sreg: MID,
            len: 4,
            negated: false,
            elements: (0..=255u8)
                .map(|s| {
                    (
                        vec![IPV6_SRCRT_TYPE_4, s, s, 0],
                        vec![IPV6_SRCRT_TYPE_4, s, 0xff, 0xff],
                    )
                })
                .collect(),
        },
    ];
    let value = [b.u8(0), b.u8(1), b.u8(2), b.u8(3)];
    for (flag, byte, op) in FIELD_TESTS {
        if flags & flag == 0 {
            continue;
        }
        let op = if inv & flag != 0 { inverted(op) } else { op };
        // Header bytes 0-3 are the first word, 4-7 the second; the info's next_hdr,
        // hdr_len, segs_left and last_entry are bytes 0, 1, 3 and 4 of the header.
        let info = match byte {
            0 => value[0],
            1 => value[1],
            3 => value[2],
            _ => value[3],
        };
        let (word, pos) = if byte < 4 {
            (HDR, byte)
        } else {
            (HDR + 4, byte - 4)
        };
        let (mut mask, mut want) = ([0u8; 4], [0u8; 4]);
        mask[pos] = 0xff;
        want[pos] = info;
        insns.extend(field_test(word, mask, op, want));
    }
    if flags & IP6T_SRH_TAG != 0 {
        let op = if inv & IP6T_SRH_TAG != 0 {
            CmpOp::Neq
        } else {
            CmpOp::Eq
        };
        // `srh->tag == srhinfo->tag`: the two u16s as they lie in memory.
        let tag = b.bytes(4, 2);
        insns.extend(field_test(
            HDR + 4,
            [0, 0, 0xff, 0xff],
            op,
            [0, 0, tag[0], tag[1]],
        ));
    }
    if rev == 1 {
        insns.extend(segment_tests(b, flags, inv));
    }
    Ok(Decompiled::Residual(vec![], insns))
}

/// `--srh-psid`, `--srh-nsid`, `--srh-lsid` in srh1_mt6()'s order: the address (none:
/// the match fails, inverted or not) into SCRATCH, then ipv6_masked_addr_cmp() with
/// the rule's address and mask (`struct ip6t_srh1` @8, @24, @40; masks 48 bytes on).
/// The header's bytes in SCRATCH are not needed past the field tests.
fn segment_tests(b: Blob<'_>, flags: u16, inv: u16) -> Vec<Insn> {
    let mut insns = Vec::new();
    for (i, flag) in [IP6T_SRH_PSID, IP6T_SRH_NSID, IP6T_SRH_LSID]
        .into_iter()
        .enumerate()
    {
        if flags & flag == 0 {
            continue;
        }
        insns.push(match flag {
            IP6T_SRH_PSID => Insn::XtSrhSegment {
                next: false,
                dreg: SCRATCH,
            },
            IP6T_SRH_NSID => Insn::XtSrhSegment {
                next: true,
                dreg: SCRATCH,
            },
            // The last segment is the list's first address.
            _ => header(8, 16, SCRATCH),
        });
        let addr = b.bytes(8 + 16 * i, 16);
        let mask = b.bytes(56 + 16 * i, 16);
        let want: Vec<u8> = addr.iter().zip(&mask).map(|(a, m)| a & m).collect();
        insns.extend([
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len: 16,
                mask: mask.to_vec(),
                xor: vec![0; 16],
            },
            Insn::Cmp {
                sreg: SCRATCH,
                op: if inv & flag != 0 {
                    CmpOp::Neq
                } else {
                    CmpOp::Eq
                },
                data: want,
            },
        ]);
    }
    insns
}
