//! xtables matches' own walks (xt_sctp's `--chunk-types`, xt_dccp's `--dccp-option`,
//! the transport header they, ipt_ah and ip6t_mh read first, mh's payload protocol,
//! ip6t_frag's ipv6_find_hdr(), ip6t_hbh's option walk, ip6t_srh's segment addresses) with BPF_PROG_TEST_RUN at XDP and TC: crafted SCTP,
//! DCCP, AH, MH and IPv6 fragment packets, well-formed and malformed (no chunk, a
//! chunk of length 0, a chunk header or options cut short, a data offset below the
//! header, a header cut short, an extension header cut short, later fragments, more
//! extension headers than the parser walks), each rule's verdict and counters against the
//! reference ([`Reference`], [`ResidualProgram::run`]), and the reference against what
//! the kernel's code gives, hotdrop (the packet dropped, the rule not counted)
//! included.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::load_or_skip;
use nftshim_ebpf::fields::{L3Fields, PacketFields};
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{
    CmpOp, Headers, Insn, Outcome, PayloadBase, ResidualProgram, SctpChunkMatch, SctpChunks,
};

const SCTP: u8 = 132;
const DCCP: u8 = 33;

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 datagram (fragment offset field `frag`) of `payload`.
fn ipv4(proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let tot = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&tot.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]);
    h.extend_from_slice(payload);
    eth(0x0800, &h)
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(payload);
    eth(0x86dd, &h)
}

/// A chunk: type, flags, length field `len` (`None`: the real length), the body,
/// padding to 4 bytes.
fn chunk(kind: u8, flags: u8, len: Option<u16>, body: &[u8]) -> Vec<u8> {
    let real = 4 + body.len() as u16;
    let mut c = vec![kind, flags];
    c.extend_from_slice(&len.unwrap_or(real).to_be_bytes());
    c.extend_from_slice(body);
    while c.len() % 4 != 0 {
        c.push(0);
    }
    c
}

const DATA: u8 = 0;
const INIT: u8 = 1;
const SACK: u8 = 3;
const ABORT: u8 = 6;

/// An SCTP packet 1000 -> 2000 with these chunks.
fn sctp(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 1, 0, 0, 0, 0];
    for c in chunks {
        p.extend_from_slice(c);
    }
    p
}

/// A DCCP header 1000 -> 2000 of packet type `ty` (`x`: extended sequence numbers),
/// data offset `doff` words, and these bytes after the generic header.
fn dccp(ty: u8, x: bool, doff: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![
        0x03,
        0xe8,
        0x07,
        0xd0,
        doff,
        0,
        0,
        0,
        ty << 1 | x as u8,
        0,
        0,
        1,
    ];
    p.extend_from_slice(rest);
    p
}

/// The frames, by name.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let data = |flags| chunk(DATA, flags, None, &[0, 0, 0, 7, 0, 1, 0, 0, 1, 2, 3, 4]);
    let init = || chunk(INIT, 0, None, &[0; 16]);
    let sack = || chunk(SACK, 0, None, &[0; 12]);
    let pad = chunk(0x84, 0, None, &[0xee; 3200 - 4]);
    let mut cut_chunk = sctp(&[data(3)]);
    cut_chunk.extend_from_slice(&[INIT, 0]);
    // DCCP: a REQUEST without options; a DATA with option 35 (length 4) then padding;
    // an ACK with extended sequence numbers (24 header bytes) and options.
    let opts_data = [35, 4, 1, 2];
    let ack_opts = [0, 1, 40, 3, 9, 0, 0, 0];
    vec![
        ("sctp data, init", ipv4(SCTP, 0, &sctp(&[data(3), init()]))),
        ("sctp init", ipv4(SCTP, 0, &sctp(&[init()]))),
        (
            "sctp data, sack, data",
            ipv4(SCTP, 0, &sctp(&[data(2), sack(), data(1)])),
        ),
        (
            "sctp abort T",
            ipv4(SCTP, 0, &sctp(&[chunk(ABORT, 1, None, &[])])),
        ),
        ("sctp no chunks", ipv4(SCTP, 0, &sctp(&[]))),
        (
            "sctp header cut",
            ipv4(SCTP, 0, &[0x03, 0xe8, 0x07, 0xd0, 0, 0]),
        ),
        (
            "sctp data, length 0",
            ipv4(SCTP, 0, &sctp(&[data(3), chunk(SACK, 0, Some(0), &[0; 4])])),
        ),
        ("sctp chunk header cut", ipv4(SCTP, 0, &cut_chunk)),
        (
            "sctp chunk past the end",
            ipv4(
                SCTP,
                0,
                &sctp(&[data(3), chunk(INIT, 0, Some(200), &[0; 4])]),
            ),
        ),
        // The chunk walk reads the whole packet, not only the header copy.
        (
            "sctp padding, init past 2048",
            ipv4(SCTP, 0, &sctp(&[pad, init()])),
        ),
        (
            "sctp later fragment",
            ipv4(SCTP, 3, &sctp(&[chunk(INIT, 0, Some(0), &[])])),
        ),
        ("sctp6 data, init", ipv6(SCTP, &sctp(&[data(3), init()]))),
        ("sctp6 no chunks", ipv6(SCTP, &sctp(&[]))),
        ("dccp request", ipv4(DCCP, 0, &dccp(0, false, 4, &[0; 4]))),
        (
            "dccp data option",
            ipv4(DCCP, 0, &dccp(2, false, 4, &opts_data)),
        ),
        (
            "dccp ack extended",
            ipv4(
                DCCP,
                0,
                &dccp(3, true, 8, &[[0; 12].as_slice(), &ack_opts].concat()),
            ),
        ),
        // Option 5 with length 0 steps one byte on; the last byte is a kind >= 2.
        (
            "dccp data zero length",
            ipv4(DCCP, 0, &dccp(2, false, 5, &[5, 0, 9, 1, 1, 1, 1, 7])),
        ),
        (
            "dccp data offset short",
            ipv4(DCCP, 0, &dccp(4, false, 4, &[0; 8])),
        ),
        (
            "dccp options past the end",
            ipv4(DCCP, 0, &dccp(2, false, 6, &opts_data)),
        ),
        (
            "dccp header cut",
            ipv4(DCCP, 0, &[0x03, 0xe8, 0x07, 0xd0, 4, 0, 0]),
        ),
        (
            "dccp later fragment",
            ipv4(DCCP, 0x10, &dccp(2, false, 2, &[])),
        ),
        (
            "dccp6 data option",
            ipv6(DCCP, &dccp(2, false, 4, &opts_data)),
        ),
        (
            "ah spi 8",
            ipv4(AH, 0, &[6, 1, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0]),
        ),
        ("ah cut", ipv4(AH, 0, &[6, 1, 0, 0, 0, 0, 0, 8])),
        ("ipcomp cpi 18", ipv4(COMP, 0, &[17, 0, 0, 18, 1, 2, 3, 4])),
        ("ipcomp6 cpi 18", ipv6(COMP, &[17, 0, 0, 18, 1, 2, 3, 4])),
        (
            "ipcomp cpi 0x1200",
            ipv4(COMP, 0, &[17, 0, 0x12, 0, 1, 2, 3, 4]),
        ),
        ("ipcomp cut", ipv4(COMP, 0, &[17, 0, 0])),
        ("ipcomp later fragment", ipv4(COMP, 0x10, &[17, 0, 0, 18])),
        ("mh type 5", ipv6(MH, &[59, 0, 5, 0, 0, 0, 0, 0])),
        ("mh type 5 proto udp", ipv6(MH, &[17, 0, 5, 0, 0, 0, 0, 0])),
        ("mh cut", ipv6(MH, &[59, 0, 5, 0])),
        // Fragment headers: id 5, first with more fragments; a later one (offset 32).
        (
            "frag first",
            ipv6(
                FRAG,
                &[[17, 0, 0, 1, 0, 0, 0, 5].as_slice(), &UDP8].concat(),
            ),
        ),
        (
            "frag later",
            ipv6(FRAG, &[17, 0, 1, 0, 0, 0, 0, 5, 1, 2, 3, 4]),
        ),
        // Hop-by-hop, then a fragment header with its reserved byte set.
        (
            "hbh, frag reserved",
            ipv6(
                0,
                &[
                    [FRAG, 0, 1, 4, 0, 0, 0, 0].as_slice(),
                    &[17, 1, 0, 0, 0, 0, 0, 1],
                    &UDP8,
                ]
                .concat(),
            ),
        ),
        ("hbh cut", ipv6(0, &[FRAG])),
        // Destination options of 16 bytes (length field 1), then UDP; the same header
        // with only 8 of its bytes in the packet.
        (
            "dstopts 16",
            ipv6(60, &[[17, 1, 1, 12].as_slice(), &[0; 12], &UDP8].concat()),
        ),
        ("dstopts cut", ipv6(60, &[59, 1, 1, 4, 0, 0, 0, 0])),
        // Segment routing headers (24 bytes: one segment), tag 0x1234.
        (
            "srh",
            ipv6(
                43,
                &[[17, 2, 4, 1, 1, 0, 0x12, 0x34].as_slice(), &[7; 16], &UDP8].concat(),
            ),
        ),
        (
            "srh segments left past the last entry",
            ipv6(
                43,
                &[[17, 2, 4, 2, 1, 0, 0x12, 0x34].as_slice(), &[7; 16], &UDP8].concat(),
            ),
        ),
        (
            "srh type 0",
            ipv6(
                43,
                &[[17, 2, 0, 1, 1, 0, 0x12, 0x34].as_slice(), &[7; 16], &UDP8].concat(),
            ),
        ),
        ("srh cut", ipv6(43, &[17, 2, 4, 1, 1, 0, 0x12, 0x34])),
        // Three segments (0xa0.., 0xa1.., 0xa2..), segments left 1.
        (
            "srh 3 segments",
            ipv6(
                43,
                &[
                    [17, 6, 4, 1, 2, 0, 0, 0].as_slice(),
                    &[0xa0; 16],
                    &[0xa1; 16],
                    &[0xa2; 16],
                    &UDP8,
                ]
                .concat(),
            ),
        ),
        // Last entry 2, segments left 0, one address in the header: the previous
        // segment is read from the bytes after it (UDP and 8 more), or is past the end.
        (
            "srh last entry past the header",
            ipv6(
                43,
                &[
                    [17, 2, 4, 0, 2, 0, 0, 0].as_slice(),
                    &[0xa0; 16],
                    &UDP8,
                    &[0xbb; 8],
                ]
                .concat(),
            ),
        ),
        (
            "srh last entry past the packet",
            ipv6(
                43,
                &[[17, 2, 4, 0, 2, 0, 0, 0].as_slice(), &[0xa0; 16], &UDP8].concat(),
            ),
        ),
        ("frag cut", ipv6(FRAG, &[17, 0, 0, 1, 0, 0])),
        // Hop-by-hop options: PadN of 2 bytes, option 5 with 4 data bytes, two Pad1,
        // option 0xc2 with 1 data byte, Pad1; the same cut after 8 of its 16 bytes.
        ("hbh opts", ipv6(0, &[HBH_OPTS.as_slice(), &UDP8].concat())),
        ("hbh opts cut", ipv6(0, &HBH_OPTS[..8])),
        // Option 5 of 9 data bytes in an 8-byte header; a type in the last byte.
        (
            "hbh option past the end",
            ipv6(0, &[[17, 0, 5, 9, 0, 0, 0, 0].as_slice(), &UDP8].concat()),
        ),
        (
            "hbh type in the last byte",
            ipv6(0, &[[17, 0, 0, 0, 0, 0, 0, 5].as_slice(), &UDP8].concat()),
        ),
        // 15 Pad1, then option 5 with 5 data bytes (24 bytes).
        (
            "hbh pad1s, option",
            ipv6(
                0,
                &[[17, 2].as_slice(), &[0; 15], &[5, 5, 1, 2, 3, 4, 5], &UDP8].concat(),
            ),
        ),
        ("udp6", ipv6(17, &UDP8)),
        // Ten destination options headers before the fragment header.
        ("ten dstopts, frag", {
            let mut p = Vec::new();
            for i in 0..10 {
                p.extend_from_slice(&[if i == 9 { FRAG } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
            }
            p.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 5]);
            p.extend_from_slice(&UDP8);
            ipv6(60, &p)
        }),
    ]
}

const HBH_OPTS: [u8; 16] = [17, 1, 1, 0, 5, 4, 9, 9, 9, 9, 0, 0, 0xc2, 1, 7, 0];
const AH: u8 = 51;
const COMP: u8 = 108;
const MH: u8 = 135;
const FRAG: u8 = 44;
const UDP8: [u8; 8] = [0x9c, 0x40, 0, 9, 0, 8, 0, 0];

fn header() -> Insn {
    Insn::XtTransportHeader { len: 12 }
}

fn chunks(kind: SctpChunkMatch, invert: bool, types: &[u8], flags: Vec<(u8, u8, u8)>) -> Insn {
    let mut map = [0; 32];
    for t in types {
        map[*t as usize / 8] |= 1 << (t % 8);
    }
    Insn::XtSctpChunks(SctpChunks {
        kind,
        invert,
        map,
        map_beyond: false,
        flags,
    })
}

fn option(option: u8, invert: bool) -> Insn {
    Insn::XtDccpOption { option, invert }
}

/// `dport` in [lo, hi], as the extensions' port tests are built.
fn dport(lo: u16, hi: u16) -> Vec<Insn> {
    vec![
        Insn::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: 48,
        },
        Insn::Range {
            sreg: 48,
            negated: false,
            from: lo.to_be_bytes().to_vec(),
            to: hi.to_be_bytes().to_vec(),
        },
    ]
}

/// ip6t_frag's header (8 bytes into the scratch registers) and identification.
fn frag_id(lo: u32, hi: u32) -> Vec<Insn> {
    vec![
        Insn::XtIpv6Header {
            header: FRAG,
            len: 8,
            dreg: 48,
            whole: false,
            offset: 0,
            drops: true,
        },
        Insn::Range {
            sreg: 52,
            negated: false,
            from: lo.to_be_bytes().to_vec(),
            to: hi.to_be_bytes().to_vec(),
        },
    ]
}

/// The first word of the fragment header & mask == value.
fn frag_word(mask: [u8; 4], value: [u8; 4]) -> Vec<Insn> {
    vec![
        Insn::Bitwise {
            sreg: 48,
            dreg: 56,
            len: 4,
            mask: mask.to_vec(),
            xor: vec![0; 4],
        },
        Insn::Cmp {
            sreg: 56,
            op: CmpOp::Eq,
            data: value.to_vec(),
        },
    ]
}

/// ip6t_srh revision 1 with one segment address test: the header's checks, the
/// address (`load`), masked, against `want`.
fn srh_sid(load: Insn, mask: [u8; 16], op: CmpOp, want: [u8; 16]) -> Vec<Insn> {
    let header = |offset, len, dreg| Insn::XtIpv6Header {
        header: 43,
        len,
        dreg,
        whole: true,
        offset,
        drops: false,
    };
    vec![
        header(0, 8, 48),
        header(2, 4, 56),
        Insn::Lookup {
            sreg: 56,
            len: 4,
            negated: false,
            elements: (0..=255u8)
                .map(|s| (vec![4, s, s, 0], vec![4, s, 0xff, 0xff]))
                .collect(),
        },
        load,
        Insn::Bitwise {
            sreg: 48,
            dreg: 48,
            len: 16,
            mask: mask.to_vec(),
            xor: vec![0; 16],
        },
        Insn::Cmp {
            sreg: 48,
            op,
            data: want.to_vec(),
        },
    ]
}

fn prefix(bytes: &[u8]) -> [u8; 16] {
    let mut a = [0; 16];
    a[..bytes.len()].copy_from_slice(bytes);
    a
}

/// ip6t_hbh with `--hbh-opts` (`--dst-opts` for header 60).
fn hbh_opts(header: u8, opts: &[(u8, u8)]) -> Vec<Insn> {
    vec![
        Insn::XtIpv6Header {
            header,
            len: 2,
            dreg: 48,
            whole: true,
            offset: 0,
            drops: true,
        },
        Insn::XtIpv6Options {
            header,
            opts: opts.to_vec(),
        },
    ]
}

/// The programs, by the match they stand for, with their protocol (0: none).
fn programs() -> Vec<(&'static str, u8, Vec<Insn>)> {
    use SctpChunkMatch::*;
    let mut beyond = chunks(All, false, &[DATA], vec![]);
    if let Insn::XtSctpChunks(c) = &mut beyond {
        c.map_beyond = true;
    }
    let with = |insn: Insn| vec![header(), insn];
    vec![
        (
            "sctp --dport 2000",
            SCTP,
            [vec![header()], dport(2000, 2000)].concat(),
        ),
        (
            "sctp any DATA",
            SCTP,
            with(chunks(Any, false, &[DATA], vec![])),
        ),
        (
            "sctp ! any INIT,SACK",
            SCTP,
            with(chunks(Any, true, &[INIT, SACK], vec![])),
        ),
        (
            "sctp all DATA,INIT",
            SCTP,
            with(chunks(All, false, &[DATA, INIT], vec![])),
        ),
        (
            "sctp all DATA,SACK",
            SCTP,
            with(chunks(All, false, &[DATA, SACK], vec![])),
        ),
        (
            "sctp only DATA:Be,SACK",
            SCTP,
            with(chunks(Only, false, &[DATA, SACK], vec![(DATA, 3, 3)])),
        ),
        (
            "sctp only DATA,INIT,SACK",
            SCTP,
            with(chunks(Only, false, &[DATA, INIT, SACK], vec![])),
        ),
        (
            "sctp any DATA:e,ABORT:T",
            SCTP,
            with(chunks(
                Any,
                false,
                &[DATA, ABORT],
                vec![(DATA, 1, 1), (ABORT, 1, 1)],
            )),
        ),
        (
            "sctp any|all DATA",
            SCTP,
            with(chunks(Other, false, &[DATA], vec![])),
        ),
        (
            "sctp ! any|all DATA",
            SCTP,
            with(chunks(Other, true, &[DATA], vec![])),
        ),
        ("sctp all DATA, map past 255", SCTP, with(beyond)),
        ("sctp any INIT, ports", SCTP, {
            let mut p = vec![header()];
            p.extend(dport(2000, 2000));
            p.push(chunks(Any, false, &[INIT], vec![]));
            p
        }),
        (
            "dccp --dport 2000",
            DCCP,
            [vec![header()], dport(2000, 2000)].concat(),
        ),
        ("dccp --dccp-option 35", DCCP, with(option(35, false))),
        ("dccp ! --dccp-option 35", DCCP, with(option(35, true))),
        ("dccp --dccp-option 9", DCCP, with(option(9, false))),
        ("dccp --dccp-option 7", DCCP, with(option(7, false))),
        ("dccp --dccp-option 4", DCCP, with(option(4, false))),
        ("dccp --dccp-option 40", DCCP, with(option(40, false))),
        ("ah --ahspi 8", AH, {
            vec![
                Insn::XtTransportHeader { len: 12 },
                Insn::Payload {
                    base: PayloadBase::Transport,
                    offset: 4,
                    len: 4,
                    dreg: 48,
                },
                Insn::Range {
                    sreg: 48,
                    negated: false,
                    from: vec![0, 0, 0, 8],
                    to: vec![0, 0, 0, 8],
                },
            ]
        }),
        ("ipcomp --ipcompspi 18", COMP, {
            vec![
                Insn::XtTransportHeader { len: 4 },
                Insn::Payload {
                    base: PayloadBase::Transport,
                    offset: 0,
                    len: 4,
                    dreg: 48,
                },
                Insn::Bitwise {
                    sreg: 48,
                    dreg: 48,
                    len: 4,
                    mask: vec![0, 0, 0xff, 0xff],
                    xor: vec![0; 4],
                },
                Insn::Range {
                    sreg: 48,
                    negated: false,
                    from: vec![0, 0, 0, 18],
                    to: vec![0, 0, 0, 18],
                },
            ]
        }),
        ("mh --mh-type 4:123", MH, {
            let load = |offset| Insn::Payload {
                base: PayloadBase::Transport,
                offset,
                len: 1,
                dreg: 48,
            };
            vec![
                Insn::XtTransportHeader { len: 6 },
                load(0),
                Insn::XtDropUnless {
                    sreg: 48,
                    data: vec![59],
                },
                load(2),
                Insn::Range {
                    sreg: 48,
                    negated: false,
                    from: vec![4],
                    to: vec![123],
                },
            ]
        }),
        ("frag --fragid 5", 0, frag_id(5, 5)),
        ("srh ! --srh-next-hdr 6 --srh-tag 0x1234", 0, {
            let header = |offset, len, dreg| Insn::XtIpv6Header {
                header: 43,
                len,
                dreg,
                whole: true,
                offset,
                drops: false,
            };
            let test = |word, mask: [u8; 4], op, data: [u8; 4]| {
                vec![
                    Insn::Bitwise {
                        sreg: word,
                        dreg: 60,
                        len: 4,
                        mask: mask.to_vec(),
                        xor: vec![0; 4],
                    },
                    Insn::Cmp {
                        sreg: 60,
                        op,
                        data: data.to_vec(),
                    },
                ]
            };
            [
                vec![
                    header(0, 8, 48),
                    header(2, 4, 56),
                    Insn::Lookup {
                        sreg: 56,
                        len: 4,
                        negated: false,
                        elements: (0..=255u8)
                            .map(|s| (vec![4, s, s, 0], vec![4, s, 0xff, 0xff]))
                            .collect(),
                    },
                ],
                test(48, [0xff, 0, 0, 0], CmpOp::Neq, [6, 0, 0, 0]),
                test(52, [0, 0, 0xff, 0xff], CmpOp::Eq, [0, 0, 0x12, 0x34]),
            ]
            .concat()
        }),
        (
            "dst --dst-len 16",
            0,
            vec![
                Insn::XtIpv6Header {
                    header: 60,
                    len: 2,
                    dreg: 48,
                    whole: true,
                    offset: 0,
                    drops: true,
                },
                Insn::Bitwise {
                    sreg: 48,
                    dreg: 52,
                    len: 2,
                    mask: vec![0, 0xff],
                    xor: vec![0, 0],
                },
                Insn::Range {
                    sreg: 52,
                    negated: false,
                    from: vec![0, 1],
                    to: vec![0, 1],
                },
            ],
        ),
        (
            "hbh --hbh-opts 1:0,5:4,0,0,194",
            0,
            hbh_opts(0, &[(1, 0), (5, 4), (0, 0), (0, 0), (0xc2, 0xff)]),
        ),
        ("hbh --hbh-opts 1:0,5:3", 0, hbh_opts(0, &[(1, 0), (5, 3)])),
        ("hbh --hbh-opts 5:4", 0, hbh_opts(0, &[(5, 4)])),
        (
            "hbh --hbh-opts 1:0,5:4,0,0,194:1,0,0",
            0,
            hbh_opts(
                0,
                &[(1, 0), (5, 4), (0, 0), (0, 0), (0xc2, 1), (0, 0), (0, 0)],
            ),
        ),
        ("hbh --hbh-opts 5:9", 0, hbh_opts(0, &[(5, 9)])),
        ("hbh --hbh-opts 5:9,0", 0, hbh_opts(0, &[(5, 9), (0, 0)])),
        (
            "hbh --hbh-opts 0,0,0,0,0,5",
            0,
            hbh_opts(0, &[(0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (5, 0xff)]),
        ),
        (
            "hbh --hbh-opts 0 x15,5:5",
            0,
            hbh_opts(0, &[[(0, 0); 15].as_slice(), &[(5, 5)]].concat()),
        ),
        (
            "hbh --hbh-opts 0 x15,5:4",
            0,
            hbh_opts(0, &[[(0, 0); 15].as_slice(), &[(5, 4)]].concat()),
        ),
        ("dst --dst-opts 1:12", 0, hbh_opts(60, &[(1, 12)])),
        (
            "srh --srh-psid a2a2..a2/128",
            0,
            srh_sid(
                Insn::XtSrhSegment {
                    next: false,
                    dreg: 48,
                },
                [0xff; 16],
                CmpOp::Eq,
                [0xa2; 16],
            ),
        ),
        (
            "srh --srh-psid ::/0",
            0,
            srh_sid(
                Insn::XtSrhSegment {
                    next: false,
                    dreg: 48,
                },
                [0; 16],
                CmpOp::Eq,
                [0; 16],
            ),
        ),
        (
            "srh --srh-nsid a0a0::/16",
            0,
            srh_sid(
                Insn::XtSrhSegment {
                    next: true,
                    dreg: 48,
                },
                prefix(&[0xff, 0xff]),
                CmpOp::Eq,
                prefix(&[0xa0, 0xa0]),
            ),
        ),
        (
            "srh ! --srh-lsid a000::/8",
            0,
            srh_sid(
                Insn::XtIpv6Header {
                    header: 43,
                    len: 16,
                    dreg: 48,
                    whole: true,
                    offset: 8,
                    drops: false,
                },
                prefix(&[0xff]),
                CmpOp::Neq,
                prefix(&[0xa0]),
            ),
        ),
        (
            "frag --fragmore",
            0,
            [frag_id(0, u32::MAX), frag_word([0, 0, 0, 1], [0, 0, 0, 1])].concat(),
        ),
        (
            "frag --fragres --fraglast",
            0,
            [
                frag_id(0, u32::MAX),
                frag_word([0, 0xff, 0, 0x06], [0; 4]),
                frag_word([0, 0, 0, 1], [0; 4]),
            ]
            .concat(),
        ),
    ]
}

/// What the IP hooks see of the frames above (no extension headers).
fn fields(frame: &[u8]) -> PacketFields {
    let network = frame[14..].to_vec();
    let protocol = u16::from_be_bytes([frame[12], frame[13]]);
    let mut h = Headers {
        protocol,
        ..Headers::default()
    };
    let (l3, l4proto) = if protocol == 0x0800 {
        let th = (network[0] & 0xf) as usize * 4;
        if u16::from_be_bytes([network[6], network[7]]) & 0x1fff != 0 {
            h.fragment_thoff = Some(th);
        } else {
            h.transport = Some(th);
        }
        let a =
            |o: usize| Ipv4Addr::new(network[o], network[o + 1], network[o + 2], network[o + 3]);
        (
            L3Fields::V4 {
                saddr: a(12),
                daddr: a(16),
            },
            network[9],
        )
    } else {
        // Hop-by-hop, destination options and fragment headers, as the parser walks
        // them (a header cut short: no transport protocol).
        let (mut next, mut off) = (network[6], 40);
        let mut known = true;
        loop {
            match next {
                0 | 60 if network.len() >= off + 2 => {
                    (next, off) = (network[off], off + (network[off + 1] as usize + 1) * 8)
                }
                44 if network.len() >= off + 8 => {
                    let later = u16::from_be_bytes([network[off + 2], network[off + 3]]) & !7;
                    next = network[off];
                    if later != 0 {
                        h.fragment_thoff = Some(0);
                        break;
                    }
                    off += 8;
                }
                0 | 60 | 44 => {
                    known = false;
                    break;
                }
                _ => {
                    h.transport = Some(off);
                    break;
                }
            }
        }
        let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&network[o..o + 16]).unwrap());
        let v6 = L3Fields::V6 {
            saddr: a(8),
            daddr: a(24),
        };
        if !known {
            let len = network.len() as u32;
            h.network = network;
            return PacketFields {
                l3: v6,
                len,
                headers: Some(h),
                ..PacketFields::default()
            };
        }
        (v6, next)
    };
    let later_fragment = h.transport.is_none();
    let ports = h.transport.and_then(|t| network.get(t..t + 4)).map(|p| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    });
    let len = network.len() as u32;
    h.network = network;
    PacketFields {
        l3,
        l4proto: Some(l4proto),
        ports,
        later_fragment,
        len,
        headers: Some(h),
        ..PacketFields::default()
    }
}

/// The program as a rule (after its protocol, if any), then a rule every packet
/// matches.
fn chain(proto: u8, insns: &[Insn]) -> Chain {
    let mut matches = vec![Match::is(Test::Residual(ResidualProgram {
        insns: insns.to_vec(),
    }))];
    if proto != 0 {
        matches.insert(0, Match::is(Test::L4Proto(vec![proto])));
    }
    Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![
            Rule::new(matches, Action::Continue),
            Rule::new(vec![], Action::Continue),
        ],
    }
}

#[test]
fn xt_walks_agree_with_the_reference_at_xdp_and_tc() {
    let mut wrong = Vec::new();
    for (name, proto, insns) in programs() {
        let program = Program::single(chain(proto, &insns));
        let compiled = compile_program(&program).unwrap();
        let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
            return;
        };
        for (frame_name, frame) in frames() {
            let want = Reference::new(&program)
                .unwrap()
                .evaluate(&fields(&frame))
                .unwrap();
            for xdp in [true, false] {
                let before = loaded.counters().unwrap();
                let run = if xdp {
                    loaded.run_xdp(&frame, 1).unwrap()
                } else {
                    let meta = SkbMeta {
                        mark: 0,
                        ingress_ifindex: 0,
                        ifindex: 0,
                    };
                    loaded.run_tc(&frame, meta, 1).unwrap()
                };
                let after = loaded.counters().unwrap();
                let counted: Vec<usize> = (0..2)
                    .filter(|&i| after[i].packets > before[i].packets)
                    .collect();
                let want_counted: Vec<usize> =
                    want.counted.iter().copied().filter(|&i| i < 2).collect();
                if run.verdict != want.verdict || counted != want_counted {
                    wrong.push(format!(
                        "{} `{name}` on {frame_name}: BPF {:?} {counted:?}, reference {:?} \
                         {want_counted:?}",
                        if xdp { "XDP" } else { "TC" },
                        run.verdict,
                        want.verdict,
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What xt_sctp's sctp_mt() and xt_dccp's dccp_mt() give, worked out from their code.
#[test]
fn the_reference_follows_the_kernel_matches() {
    use Outcome::*;
    let frames = frames();
    let programs = programs();
    let outcome = |program: &str, frame: &str| {
        let insns = &programs.iter().find(|(n, ..)| *n == program).unwrap().2;
        let frame = &frames.iter().find(|(n, _)| *n == frame).unwrap().1;
        let p = fields(frame);
        ResidualProgram {
            insns: insns.clone(),
        }
        .run(p.headers.as_ref().unwrap(), &p.meta_values())
    };
    let cases = [
        ("sctp --dport 2000", "sctp data, init", Holds),
        // Only the header is read: malformed chunks do not matter.
        ("sctp --dport 2000", "sctp no chunks", Holds),
        ("sctp --dport 2000", "sctp header cut", Drops),
        ("sctp --dport 2000", "sctp later fragment", Breaks),
        ("sctp any DATA", "sctp data, init", Holds),
        ("sctp any DATA", "sctp init", Breaks),
        // The do-while reads a first chunk: none is there.
        ("sctp any DATA", "sctp no chunks", Drops),
        ("sctp any DATA", "sctp6 no chunks", Drops),
        // ANY returns at DATA, before the chunk of length 0.
        ("sctp any DATA", "sctp data, length 0", Holds),
        ("sctp ! any INIT,SACK", "sctp data, length 0", Drops),
        ("sctp ! any INIT,SACK", "sctp chunk header cut", Drops),
        ("sctp ! any INIT,SACK", "sctp init", Breaks),
        ("sctp ! any INIT,SACK", "sctp abort T", Holds),
        ("sctp all DATA,INIT", "sctp data, init", Holds),
        ("sctp all DATA,INIT", "sctp6 data, init", Holds),
        ("sctp all DATA,INIT", "sctp init", Breaks),
        ("sctp all DATA,SACK", "sctp data, sack, data", Holds),
        ("sctp all DATA,SACK", "sctp chunk past the end", Breaks),
        ("sctp all DATA, map past 255", "sctp data, init", Breaks),
        // DATA flags 2 then 1 against DATA:Be (flags & 3 == 3): the first fails.
        ("sctp only DATA:Be,SACK", "sctp data, sack, data", Breaks),
        ("sctp only DATA,INIT,SACK", "sctp data, sack, data", Holds),
        ("sctp only DATA,INIT,SACK", "sctp abort T", Breaks),
        ("sctp any DATA:e,ABORT:T", "sctp data, sack, data", Holds),
        ("sctp any DATA:e,ABORT:T", "sctp abort T", Holds),
        ("sctp any DATA:e,ABORT:T", "sctp data, init", Holds),
        ("sctp any|all DATA", "sctp data, init", Breaks),
        ("sctp ! any|all DATA", "sctp data, init", Holds),
        ("sctp ! any|all DATA", "sctp no chunks", Drops),
        (
            "sctp any INIT, ports",
            "sctp padding, init past 2048",
            Holds,
        ),
        ("sctp any INIT, ports", "sctp chunk header cut", Drops),
        ("dccp --dport 2000", "dccp request", Holds),
        ("dccp --dport 2000", "dccp header cut", Drops),
        ("dccp --dport 2000", "dccp data offset short", Holds),
        ("dccp --dccp-option 35", "dccp data option", Holds),
        ("dccp --dccp-option 35", "dccp6 data option", Holds),
        ("dccp --dccp-option 35", "dccp request", Breaks),
        ("dccp ! --dccp-option 35", "dccp request", Holds),
        ("dccp --dccp-option 35", "dccp data offset short", Drops),
        (
            "dccp ! --dccp-option 35",
            "dccp options past the end",
            Drops,
        ),
        ("dccp --dccp-option 35", "dccp later fragment", Breaks),
        ("dccp --dccp-option 40", "dccp ack extended", Holds),
        // In "zero length" 9 is read as a kind (5's length 0 steps one byte), and 7,
        // the last byte, is looked at before its missing length.
        ("dccp --dccp-option 9", "dccp data zero length", Holds),
        ("dccp --dccp-option 7", "dccp data zero length", Holds),
        ("dccp --dccp-option 4", "dccp data zero length", Breaks),
        // In the ACK, option 40 (length 3) covers the 9.
        ("dccp --dccp-option 9", "dccp ack extended", Breaks),
        ("ah --ahspi 8", "ah spi 8", Holds),
        ("ah --ahspi 8", "ah cut", Drops),
        ("ipcomp --ipcompspi 18", "ipcomp cpi 18", Holds),
        ("ipcomp --ipcompspi 18", "ipcomp6 cpi 18", Holds),
        // The high byte of the CPI counts: 0x1200 is not 18.
        ("ipcomp --ipcompspi 18", "ipcomp cpi 0x1200", Breaks),
        ("ipcomp --ipcompspi 18", "ipcomp cut", Drops),
        ("ipcomp --ipcompspi 18", "ipcomp later fragment", Breaks),
        ("mh --mh-type 4:123", "mh type 5", Holds),
        ("mh --mh-type 4:123", "mh type 5 proto udp", Drops),
        ("mh --mh-type 4:123", "mh cut", Drops),
        ("frag --fragid 5", "frag first", Holds),
        ("frag --fragid 5", "frag later", Holds),
        ("frag --fragid 5", "udp6", Breaks),
        ("frag --fragid 5", "sctp data, init", Breaks),
        ("frag --fragid 5", "hbh cut", Drops),
        ("frag --fragid 5", "frag cut", Drops),
        ("frag --fragid 5", "ten dstopts, frag", Holds),
        ("frag --fragid 5", "hbh, frag reserved", Breaks),
        ("frag --fragmore", "frag first", Holds),
        ("dst --dst-len 16", "dstopts 16", Holds),
        ("srh ! --srh-next-hdr 6 --srh-tag 0x1234", "srh", Holds),
        (
            "srh ! --srh-next-hdr 6 --srh-tag 0x1234",
            "srh segments left past the last entry",
            Breaks,
        ),
        (
            "srh ! --srh-next-hdr 6 --srh-tag 0x1234",
            "srh type 0",
            Breaks,
        ),
        // ip6t_srh does not drop malformed headers (6.18.44).
        ("srh ! --srh-next-hdr 6 --srh-tag 0x1234", "srh cut", Breaks),
        ("srh ! --srh-next-hdr 6 --srh-tag 0x1234", "hbh cut", Breaks),
        ("srh ! --srh-next-hdr 6 --srh-tag 0x1234", "udp6", Breaks),
        ("dst --dst-len 16", "ten dstopts, frag", Breaks),
        ("dst --dst-len 16", "dstopts cut", Drops),
        ("dst --dst-len 16", "udp6", Breaks),
        ("frag --fragmore", "frag later", Breaks),
        ("frag --fragres --fraglast", "frag later", Holds),
        ("frag --fragres --fraglast", "hbh, frag reserved", Breaks),
        // hbh_mt6()'s strict walk: every option of the rule, in order.
        ("hbh --hbh-opts 1:0,5:4,0,0,194", "hbh opts", Holds),
        ("hbh --hbh-opts 1:0,5:3", "hbh opts", Breaks),
        ("hbh --hbh-opts 5:4", "hbh opts", Breaks),
        // The header ends before the rule's options do.
        ("hbh --hbh-opts 1:0,5:4,0,0,194:1,0,0", "hbh opts", Breaks),
        ("hbh --hbh-opts 1:0,5:4,0,0,194", "hbh opts cut", Drops),
        ("hbh --hbh-opts 1:0,5:4,0,0,194", "udp6", Breaks),
        ("hbh --hbh-opts 1:0,5:4,0,0,194", "dstopts 16", Breaks),
        // The rule's last option may run past the header, no other may.
        ("hbh --hbh-opts 5:9", "hbh option past the end", Holds),
        ("hbh --hbh-opts 5:9,0", "hbh option past the end", Breaks),
        // Option 5 in the header's last byte has no length byte in it.
        (
            "hbh --hbh-opts 0,0,0,0,0,5",
            "hbh type in the last byte",
            Breaks,
        ),
        ("hbh --hbh-opts 0 x15,5:5", "hbh pad1s, option", Holds),
        ("hbh --hbh-opts 0 x15,5:4", "hbh pad1s, option", Breaks),
        ("dst --dst-opts 1:12", "dstopts 16", Holds),
        ("dst --dst-opts 1:12", "hbh opts", Breaks),
        // srh1_mt6(): the previous segment at segments left + 1, the next at - 1, the
        // last at 0; none (segments left is the last entry, or 0) fails, inverted or
        // not; the previous one may lie past the header, not past the packet.
        ("srh --srh-psid a2a2..a2/128", "srh 3 segments", Holds),
        ("srh --srh-psid a2a2..a2/128", "srh", Breaks),
        ("srh --srh-psid ::/0", "srh", Breaks),
        ("srh --srh-psid ::/0", "srh 3 segments", Holds),
        (
            "srh --srh-psid ::/0",
            "srh last entry past the header",
            Holds,
        ),
        (
            "srh --srh-psid a2a2..a2/128",
            "srh last entry past the header",
            Breaks,
        ),
        (
            "srh --srh-psid ::/0",
            "srh last entry past the packet",
            Breaks,
        ),
        ("srh --srh-psid ::/0", "udp6", Breaks),
        ("srh --srh-nsid a0a0::/16", "srh 3 segments", Holds),
        ("srh --srh-nsid a0a0::/16", "srh", Breaks),
        (
            "srh --srh-nsid a0a0::/16",
            "srh last entry past the header",
            Breaks,
        ),
        ("srh ! --srh-lsid a000::/8", "srh 3 segments", Breaks),
        ("srh ! --srh-lsid a000::/8", "srh", Holds),
        ("srh ! --srh-lsid a000::/8", "srh cut", Breaks),
    ];
    for (program, frame, want) in cases {
        assert_eq!(outcome(program, frame), want, "`{program}` on {frame}");
    }
}
