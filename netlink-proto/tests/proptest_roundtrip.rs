//! Property tests over the same entry point as the cargo-fuzz target
//! (`netlink_proto::check::roundtrip_datagram`): random attribute trees inside every
//! message type round-trip byte for byte, and random bytes never panic.

use netlink_packet_core::NLA_F_NESTED;
use netlink_proto::attr::emit_attrs;
use netlink_proto::check::roundtrip_datagram;
use netlink_proto::consts::{NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_LIST_ELEM};
use netlink_proto::msg::{parse_datagram, NftMessage, Parsed};
use netlink_proto::{Attr, NfGenMsg, NlMsg};
use proptest::prelude::*;

/// Expression names, so that random expression nests hit the typed dispatch.
const EXPR_NAMES: &[&str] = &[
    "payload",
    "meta",
    "cmp",
    "bitwise",
    "byteorder",
    "immediate",
    "lookup",
    "range",
    "ct",
    "counter",
    "limit",
    "log",
    "reject",
    "nat",
    "masq",
    "redir",
    "queue",
    "dynset",
    "objref",
    "fib",
    "socket",
    "connlimit",
    "quota",
    "hash",
    "numgen",
    "exthdr",
    "rt",
    "dup",
    "fwd",
    "notrack",
    "tproxy",
    "osf",
    "xfrm",
    "synproxy",
    "flow_offload",
    "last",
    "inner",
    "tunnel",
    "match",
    "target",
    "nosuchexpr",
];

/// Message types: every nf_tables one, batch delimiters, compat, and a stranger.
fn msg_type() -> impl Strategy<Value = u16> {
    prop_oneof![
        (0u16..=34).prop_map(|t| 0x0a00 | t),
        Just(0x10),
        Just(0x11),
        Just(0x0b00),
        Just(0x0101)
    ]
}

/// Values that look like what typed attributes hold (and some that nearly do).
fn leaf_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        any::<u8>().prop_map(|v| vec![v]),
        any::<u16>().prop_map(|v| v.to_be_bytes().to_vec()),
        any::<u32>().prop_map(|v| v.to_be_bytes().to_vec()),
        any::<u64>().prop_map(|v| v.to_be_bytes().to_vec()),
        "[a-z]{0,6}".prop_map(|s| {
            let mut v = s.into_bytes();
            v.push(0);
            v
        }),
        "[a-z]{1,6}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

/// A flag word: mostly none or NESTED, sometimes the byte-order flag.
fn flags() -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(0u16), 4 => Just(NLA_F_NESTED), 1 => Just(0x4000u16)]
}

fn attr_tree() -> impl Strategy<Value = Attr> {
    let leaf = (0u16..=21, flags(), leaf_value()).prop_map(|(id, f, v)| Attr::new(id | f, v));
    leaf.prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            // A nest of anything.
            (
                0u16..=21,
                flags(),
                proptest::collection::vec(inner.clone(), 0..6)
            )
                .prop_map(|(id, f, kids)| {
                    let mut v = Vec::new();
                    emit_attrs(&kids, &mut v);
                    Attr::new(id | f, v)
                }),
            // An expression: NAME, then DATA holding anything.
            (
                flags(),
                proptest::sample::select(EXPR_NAMES),
                flags(),
                proptest::collection::vec(inner.clone(), 0..5)
            )
                .prop_map(|(f, name, df, kids)| {
                    let mut data = Vec::new();
                    emit_attrs(&kids, &mut data);
                    let mut v = Vec::new();
                    emit_attrs(
                        &[
                            Attr::strz(NFTA_EXPR_NAME, name),
                            Attr::new(NFTA_EXPR_DATA | df, data),
                        ],
                        &mut v,
                    );
                    Attr::new(NFTA_LIST_ELEM | f, v)
                }),
            // A list of expressions or elements.
            (0u16..=21, flags(), proptest::collection::vec(inner, 0..4)).prop_map(
                |(id, f, kids)| {
                    let mut v = Vec::new();
                    emit_attrs(&kids, &mut v);
                    Attr::new(id | f, v)
                }
            ),
        ]
    })
}

fn message() -> impl Strategy<Value = NlMsg> {
    (
        msg_type(),
        any::<u16>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(attr_tree(), 0..8),
    )
        .prop_map(|(t, flags, seq, family, res_id, attrs)| {
            NlMsg::nf(
                t,
                flags,
                seq,
                0,
                NfGenMsg {
                    family,
                    version: 0,
                    res_id,
                },
                &attrs,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_attribute_trees_roundtrip(msgs in proptest::collection::vec(message(), 1..4)) {
        let mut datagram = Vec::new();
        for m in &msgs {
            m.emit(&mut datagram);
        }
        let summary = roundtrip_datagram(&datagram).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(summary.messages, msgs.len());
        // Typed messages rebuilt from their typed parts alone still give the bytes.
        let (parsed, _) = parse_datagram(&datagram);
        for (p, m) in parsed.iter().zip(&msgs) {
            match p {
                Parsed::Nft(n) => prop_assert_eq!(n.to_nlmsg(), m.clone()),
                Parsed::Other(o) => prop_assert!(false, "not parsed: {:?}", o),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = roundtrip_datagram(&buf);
    }

    #[test]
    fn random_payloads_behind_valid_headers_roundtrip(t in msg_type(), payload in proptest::collection::vec(any::<u8>(), 4..400)) {
        // Past the header, any bytes: typed when they can be, raw when not, exact always.
        let m = NlMsg::new(t, 0, 0, 0, payload);
        let parsed = NftMessage::parse(&m).expect("nfnetlink message");
        prop_assert_eq!(parsed.to_nlmsg(), m);
    }
}
