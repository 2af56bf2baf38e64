//! The engine must never panic, whatever a client sends: random datagrams, and real
//! nft datagrams (from the kernel captures) with bytes flipped, truncated or spliced.

use std::path::Path;

use nftshim_engine::{Caller, Netns, NoDataplane};
use proptest::prelude::*;

fn caller() -> Caller {
    Caller {
        portid: 4242,
        pid: 4242,
        comm: "fuzz".into(),
        ext_ack: true,
        cap_ack: false,
        net_admin: true,
        private_cgroupns: false,
        netns_private_userns: false,
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every datagram nft and iptables sent in the captures, in order.
fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        for c in v["commands"].as_array().unwrap() {
            for ex in c["exchanges"].as_array().unwrap() {
                out.push(unhex(ex["send"].as_str().unwrap()));
            }
        }
    }
    out
}

/// A namespace with some state, so that mutated messages meet existing objects.
fn seeded(corpus: &[Vec<u8>]) -> Netns {
    let mut ns = Netns::new();
    for d in corpus.iter().take(400) {
        ns.handle_datagram(&caller(), d, &mut NoDataplane);
    }
    ns
}

/// Checks the framing of every record the engine produced.
fn well_formed(records: &[Vec<u8>]) {
    for r in records {
        assert!(r.len() >= 16, "record shorter than a header");
        let mut pos = 0;
        while pos < r.len() {
            let len = u32::from_ne_bytes(r[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(
                len >= 16 && pos + len <= r.len(),
                "message overruns its record"
            );
            pos += (len + 3) & !3;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_datagrams(d in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut ns = Netns::new();
        let out = ns.handle_datagram(&caller(), &d, &mut NoDataplane);
        well_formed(&out.unicast);
    }

    #[test]
    fn random_batches(body in proptest::collection::vec(any::<u8>(), 0..400), ty in 0u16..40, flags in any::<u16>()) {
        // A well-formed BEGIN, then a message with a valid header and random payload.
        let mut d = vec![20, 0, 0, 0, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10];
        let len = 16 + body.len();
        d.extend_from_slice(&(len as u32).to_ne_bytes());
        d.extend_from_slice(&((10u16 << 8) | ty).to_ne_bytes());
        d.extend_from_slice(&flags.to_ne_bytes());
        d.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(&body);
        d.resize((d.len() + 3) & !3, 0);
        d.extend_from_slice(&[20, 0, 0, 0, 0x11, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10]);
        let mut ns = Netns::new();
        let out = ns.handle_datagram(&caller(), &d, &mut NoDataplane);
        well_formed(&out.unicast);
    }
}

#[test]
fn short_messages_and_deep_nests() {
    let mut ns = Netns::new();
    // A BEGIN whose declared length stops before nfgenmsg.
    let d = [
        16u8, 0, 0, 0, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
    ];
    well_formed(&ns.handle_datagram(&caller(), &d, &mut NoDataplane).unicast);
    // A rule whose expression data nests 10,000 levels deep.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        let len = (4 + inner.len()) as u16;
        let mut n = len.to_ne_bytes().to_vec();
        n.extend_from_slice(&(0x8001u16).to_ne_bytes());
        n.extend_from_slice(&inner);
        inner = n;
        if inner.len() > 60_000 {
            break;
        }
    }
    let attr = |kind: u16, v: &[u8]| {
        let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(v);
        a.resize((a.len() + 3) & !3, 0);
        a
    };
    let expr = attr(
        0x8001,
        &[attr(1, b"counter\0"), attr(0x8002, &inner)].concat(),
    );
    let attrs = [attr(1, b"t\0"), attr(2, b"c\0"), attr(0x8004, &expr)].concat();
    let mut msg = ((20 + attrs.len()) as u32).to_ne_bytes().to_vec();
    msg.extend_from_slice(&[6, 10, 0x01, 0x0c, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
    msg.extend_from_slice(&attrs);
    let table = [
        vec![
            28u8, 0, 0, 0, 0, 10, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
        ],
        attr(1, b"t\0"),
    ]
    .concat();
    let chain = [
        vec![
            36u8, 0, 0, 0, 3, 10, 1, 4, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
        ],
        attr(1, b"t\0"),
        attr(3, b"c\0"),
    ]
    .concat();
    let begin = [
        20u8, 0, 0, 0, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
    ];
    let end = [
        20u8, 0, 0, 0, 0x11, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
    ];
    let d = [&begin[..], &table, &chain, &msg, &end].concat();
    well_formed(&ns.handle_datagram(&caller(), &d, &mut NoDataplane).unicast);
}

#[test]
fn mutated_captures_never_panic() {
    let corpus = corpus();
    assert!(corpus.len() > 100);
    let base = seeded(&corpus);
    let persisted = base.to_persisted();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 3000,
        ..ProptestConfig::default()
    });
    let strategy = (
        0..corpus.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        any::<u16>(),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(i, flips, cut, splice)| {
            let mut d = corpus[i].clone();
            for (pos, byte) in flips {
                if !d.is_empty() {
                    let p = pos % d.len();
                    d[p] ^= byte;
                }
            }
            if splice {
                let other = &corpus[(i + 1) % corpus.len()];
                d.extend_from_slice(other);
            }
            let keep = d.len() - (usize::from(cut) % (d.len() / 4 + 1));
            d.truncate(keep);
            let mut ns = Netns::from_persisted(persisted.clone()).unwrap();
            let out = ns.handle_datagram(&caller(), &d, &mut NoDataplane);
            well_formed(&out.unicast);
            // Dumps of whatever state resulted must still work.
            let dump = [
                20u8, 0, 0, 0, 7, 10, 1, 3, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            well_formed(
                &ns.handle_datagram(&caller(), &dump, &mut NoDataplane)
                    .unicast,
            );
            Ok(())
        })
        .unwrap();
}
