//! Residual programs in the kernel with BPF_PROG_TEST_RUN: random register programs
//! (payload and meta loads, masks, shifts, byte order, cmp, range, lookups) on random
//! packets whose other header bytes (ttl, tos, TCP flags, sequence, window, ...) are
//! varied, against the reference evaluator ([`ResidualProgram::holds`]).

mod common;

use common::{gen, load_or_skip, Frag, L3Spec, L4Spec, PacketSpec};
use nftshim_ebpf::fields::PacketFields;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{Counter, LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{
    CmpOp, Headers, Insn, MetaKey, PayloadBase, ResidualProgram, MAX_ELEMS,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Byte values packets and constants are drawn from, so that tests often hold.
const BYTES: [u8; 7] = [0x00, 0x01, 0x02, 0x12, 0x40, 0x80, 0xff];

fn byte() -> impl Strategy<Value = u8> {
    select(&BYTES[..])
}

fn bytes(len: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(byte(), len)
}

/// A test on the `len` bytes at register 0.
fn test_insn(len: usize) -> impl Strategy<Value = Insn> {
    let op = select(
        &[
            CmpOp::Eq,
            CmpOp::Neq,
            CmpOp::Lt,
            CmpOp::Lte,
            CmpOp::Gt,
            CmpOp::Gte,
        ][..],
    );
    prop_oneof![
        (op, bytes(len)).prop_map(|(op, data)| Insn::Cmp { sreg: 0, op, data }),
        (any::<bool>(), bytes(len), bytes(len)).prop_map(|(negated, a, b)| {
            let (from, to) = if a <= b { (a, b) } else { (b, a) };
            Insn::Range {
                sreg: 0,
                negated,
                from,
                to,
            }
        }),
        (any::<bool>(), vec((bytes(len), bytes(len)), 0..4)).prop_map(move |(negated, els)| {
            Insn::Lookup {
                sreg: 0,
                len: len as u8,
                negated,
                elements: els
                    .into_iter()
                    .map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
                    .collect(),
            }
        }),
        // xt_multiport's --ports: a second key beside the first (or the same). The
        // program writes the second key's register first (residual() below): a
        // register no operation wrote holds whatever the last program left there,
        // and nf_tables refuses loads from registers not written before.
        (
            any::<bool>(),
            select(&[0u8, 16, 32][..]),
            vec((bytes(len), bytes(len)), 0..4)
        )
            .prop_map(move |(negated, sreg2, els)| Insn::LookupEither {
                sreg: 0,
                sreg2,
                len: len as u8,
                negated,
                elements: els
                    .into_iter()
                    .map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
                    .collect(),
            }),
    ]
}

/// A load into register 0 and how many bytes it leaves there.
fn load() -> impl Strategy<Value = (Vec<Insn>, usize)> {
    let payload = (any::<bool>(), 0u16..44, 1usize..=4).prop_map(|(th, offset, len)| {
        let base = if th {
            PayloadBase::Transport
        } else {
            PayloadBase::Network
        };
        (
            vec![Insn::Payload {
                base,
                offset,
                len: len as u8,
                dreg: 0,
            }],
            len,
        )
    });
    let meta = select(
        &[
            (MetaKey::Len, 4),
            (MetaKey::Protocol, 2),
            (MetaKey::NfProto, 1),
            (MetaKey::L4Proto, 1),
            (MetaKey::Mark, 4),
        ][..],
    )
    .prop_map(|(key, len)| (vec![Insn::Meta { key, dreg: 0 }], len));
    // A 16-byte load (an IPv6 address's worth) compared at once.
    let wide = (0u16..24).prop_map(|offset| {
        (
            vec![Insn::Payload {
                base: PayloadBase::Network,
                offset,
                len: 16,
                dreg: 0,
            }],
            16,
        )
    });
    let exthdr = (
        select(&[0u8, 43, 44, 51, 60, 135, 6, 17, 58][..]),
        0u8..10,
        1u8..=4,
        any::<bool>(),
    )
        .prop_map(|(header, offset, len, present)| {
            let insn = Insn::Ipv6Exthdr {
                header,
                offset,
                len,
                dreg: 0,
                present,
            };
            (vec![insn], if present { 1 } else { len as usize })
        });
    let tcpopt = (
        select(&[0u8, 1, 2, 3, 4, 5, 8, 30, 0xff][..]),
        0u8..4,
        1u8..=4,
        any::<bool>(),
    )
        .prop_map(|(kind, offset, len, present)| {
            let insn = Insn::TcpOption {
                kind,
                offset,
                len,
                dreg: 0,
                present,
            };
            (vec![insn], if present { 1 } else { len as usize })
        });
    prop_oneof![6 => payload, 3 => meta, 1 => wide, 2 => exthdr, 3 => tcpopt]
}

/// TCP option bytes: kinds, lengths (sane and not) and padding.
const OPTION_BYTES: [u8; 9] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x0a, 0x1e, 0xff];

/// Inserts `options` (a multiple of 4 bytes) after the 20-byte TCP header at frame
/// offset `th`, fixing the data offset and the IP length.
fn add_tcp_options(frame: &mut Vec<u8>, l3: usize, v6: bool, th: usize, options: &[u8]) {
    let n = options.len();
    frame.splice(th + 20..th + 20, options.iter().copied());
    frame[th + 12] = (((20 + n) / 4) as u8) << 4 | (frame[th + 12] & 0xf);
    let at = if v6 { l3 + 4 } else { l3 + 2 };
    let len = u16::from_be_bytes([frame[at], frame[at + 1]]) + n as u16;
    frame[at..at + 2].copy_from_slice(&len.to_be_bytes());
}

/// What may come between the load and the test.
fn transform(len: usize) -> impl Strategy<Value = Vec<Insn>> {
    let l = len as u8;
    let mask = (bytes(len), bytes(len)).prop_map(move |(mask, xor)| {
        vec![Insn::Bitwise {
            sreg: 0,
            dreg: 0,
            len: l,
            mask,
            xor,
        }]
    });
    let mut options: Vec<BoxedStrategy<Vec<Insn>>> = vec![Just(vec![]).boxed(), mask.boxed()];
    if len <= 4 {
        options.push(
            (any::<bool>(), 1u8..32)
                .prop_map(move |(left, by)| {
                    vec![Insn::Shift {
                        sreg: 0,
                        dreg: 0,
                        len: l,
                        left,
                        by,
                    }]
                })
                .boxed(),
        );
    }
    if len % 2 == 0 {
        let sizes: Vec<u8> = [2u8, 4]
            .into_iter()
            .filter(|s| len % *s as usize == 0)
            .collect();
        options.push(
            select(sizes)
                .prop_map(move |size| {
                    vec![Insn::Byteorder {
                        sreg: 0,
                        dreg: 0,
                        len: l,
                        size,
                    }]
                })
                .boxed(),
        );
    }
    proptest::strategy::Union::new(options)
}

fn residual() -> impl Strategy<Value = ResidualProgram> {
    let step = load().prop_flat_map(|(insns, len)| {
        (transform(len), test_insn(len), bytes(len)).prop_map(move |(t, test, xor)| {
            let mut all = insns.clone();
            all.extend(t);
            if let Insn::LookupEither { sreg2, len, .. } = &test {
                if *sreg2 != 0 {
                    // The second key: the first with some bits flipped.
                    all.push(Insn::Bitwise {
                        sreg: 0,
                        dreg: *sreg2,
                        len: *len,
                        mask: vec![0xff; *len as usize],
                        xor,
                    });
                }
            }
            all.push(test);
            all
        })
    });
    vec(step, 1..3).prop_map(|steps| ResidualProgram {
        insns: steps.into_iter().flatten().collect(),
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    let action = select(&[Action::Accept, Action::Drop, Action::Continue][..]);
    let indexed = prop_oneof![
        Just(None),
        Just(Some(Test::L4Proto(vec![6]))),
        Just(Some(Test::L4Proto(vec![17, 58]))),
    ];
    (indexed, residual(), action).prop_map(|(indexed, program, action)| {
        let mut matches: Vec<Match> = indexed.into_iter().map(Match::is).collect();
        matches.push(Match::is(Test::Residual(program)));
        Rule::new(matches, action)
    })
}

/// Frame offsets of bytes the parser ignores (so the spec's fields stay right): IP
/// tos/id/ttl/checksum, IPv6 flow label and hop limit, transport bytes after the ports.
fn mutable_offsets(spec: &PacketSpec, frame: &[u8]) -> Vec<usize> {
    let l3 = 14 + 4 * spec.vlans as usize;
    let mut out = Vec::new();
    match &spec.l3 {
        L3Spec::V4 { frag, l4, .. } => {
            out.extend([1, 4, 5, 8, 10, 11].map(|o| l3 + o));
            if *frag != Frag::Later {
                let th = l3 + (frame[l3] & 0xf) as usize * 4;
                out.extend(l4_offsets(l4).into_iter().map(|o| th + o));
            }
        }
        L3Spec::V6 { .. } => out.extend([1, 2, 3, 7].map(|o| l3 + o)),
        L3Spec::Arp => {}
    }
    out.retain(|&o| o < frame.len());
    out
}

fn l4_offsets(l4: &L4Spec) -> Vec<usize> {
    match l4 {
        L4Spec::Tcp { .. } => (4..20).collect(),
        L4Spec::Udp { .. } => vec![4, 5, 6, 7],
        L4Spec::Icmp { .. } => vec![2, 3, 6, 7],
        L4Spec::Other(_) => (0..8).collect(),
    }
}

/// The bytes residual programs read, found in the frame independently of the BPF
/// parser: the datagram, and its transport header where the kernel has one.
fn headers(spec: &PacketSpec, frame: &[u8], fields: &PacketFields) -> Option<Headers> {
    let l3 = 14 + 4 * spec.vlans as usize;
    let network = frame[l3..].to_vec();
    let (transport, protocol) = match &spec.l3 {
        L3Spec::Arp => return None,
        L3Spec::V4 { frag, .. } => (
            (*frag != Frag::Later).then(|| (network[0] & 0xf) as usize * 4),
            0x0800,
        ),
        L3Spec::V6 { frag, .. } => {
            let mut nh = network[6];
            let mut off = 40;
            // nf_tables' walk stops at AH, the transport header it reports.
            while matches!(nh, 0 | 43 | 60 | 44) {
                let next = network[off];
                off += match nh {
                    44 => 8,
                    _ => (network[off + 1] as usize + 1) * 8,
                };
                nh = next;
            }
            let known = fields.l4proto.is_some() && *frag != Frag::Later;
            (known.then_some(off), 0x86dd)
        }
    };
    Some(Headers {
        network,
        transport,
        protocol,
        ..Default::default()
    })
}

type Edits = Vec<(prop::sample::Index, u8)>;

fn packet() -> impl Strategy<Value = (PacketSpec, Edits, Vec<u8>)> {
    let options = (0usize..=10).prop_flat_map(|words| vec(select(&OPTION_BYTES[..]), words * 4));
    (
        gen::packet(),
        vec((any::<prop::sample::Index>(), byte()), 0..6),
        options,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn residual_programs_agree_with_the_reference(
        rules in vec(rule(), 1..5),
        scope in select(&[L3Scope::Inet, L3Scope::Netdev][..]),
        policy in select(&[Verdict::Accept, Verdict::Drop][..]),
        packets in vec(packet(), 24),
    ) {
        let program = Program::single(Chain { scope, policy, rules });
        let compiled = compile_program(&program).unwrap();
        let Some(loaded) = load_or_skip(&compiled, LoadOptions::default()) else {
            return Ok(());
        };
        let mut reference = Reference::new(&program).unwrap();
        let mut counters = vec![Counter::default(); compiled.ncounters()];
        for (spec, edits, options) in packets {
            let mut frame = spec.frame();
            // TCP options, where the transport header is there.
            let l3 = 14 + 4 * spec.vlans as usize;
            let plain = spec.fields(0, 0, 0);
            if let (Some(6), Some(h)) = (plain.l4proto, headers(&spec, &frame, &plain)) {
                if let Some(th) = h.transport {
                    let v6 = matches!(spec.l3, L3Spec::V6 { .. });
                    add_tcp_options(&mut frame, l3, v6, l3 + th, &options);
                }
            }
            let offsets = mutable_offsets(&spec, &frame);
            if !offsets.is_empty() {
                for (index, value) in &edits {
                    frame[offsets[index.index(offsets.len())]] = *value;
                }
            }
            for (hook, iif, mark) in [("XDP", common::check::LOOPBACK, 0), ("TC", spec.iif, spec.mark)] {
                let mut fields = spec.fields(iif, 0, mark);
                fields.headers = headers(&spec, &frame, &fields);
                fields.len = (frame.len() - l3) as u32;
                let want = reference.evaluate(&fields).unwrap();
                for &i in &want.counted {
                    counters[i].packets += 1;
                    counters[i].bytes += fields.len as u64;
                }
                let got = if hook == "XDP" {
                    loaded.run_xdp(&frame, 1).unwrap()
                } else {
                    let meta = SkbMeta { mark, ingress_ifindex: iif, ifindex: 0 };
                    loaded.run_tc(&frame, meta, 1).unwrap()
                };
                prop_assert_eq!(
                    got.verdict, want.verdict,
                    "{} verdict for {:?} frame {:02x?} (reference counted {:?})",
                    hook, spec, frame, want.counted
                );
            }
        }
        prop_assert_eq!(loaded.counters().unwrap(), counters, "per-rule counters");
    }
}

#[test]
fn a_lookup_longer_than_the_bpf_scan_is_refused() {
    let program = ResidualProgram {
        insns: vec![
            Insn::Meta {
                key: MetaKey::L4Proto,
                dreg: 0,
            },
            Insn::Lookup {
                sreg: 0,
                len: 1,
                negated: false,
                elements: vec![(vec![1], vec![1]); MAX_ELEMS + 1],
            },
        ],
    };
    let chain = Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![Rule::new(
            vec![Match::is(Test::Residual(program))],
            Action::Drop,
        )],
    };
    assert!(compile_program(&Program::single(chain)).is_err());
}
