//! The address type lookup (xt_addrtype, nft_fib `type`) in the kernel with
//! BPF_PROG_TEST_RUN: the BPF program reads the mirror of the local routing table from
//! `addrtype_v4` (as the runtime leaves it) and answers as __inet_dev_addr_type()
//! does, with and without a device; the reference (nftshim_ebpf::addrtype) agrees on
//! every address, mask and device.

mod common;

use aya::maps::lpm_trie::{Key, LpmTrie};
use common::frames::{self, addr};
use common::load_or_skip;
use nftshim_ebpf::addrtype::{self, Route};
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{
    AddrDev, AddrTypeOut, CmpOp, Headers, Insn, PayloadBase, ResidualProgram,
};

const SCRATCH: u8 = 48;

/// One rule: the type of the source (`saddr`) or destination address, tested against
/// `mask`, or stored and compared with `eq`; DROP, policy accept.
fn program(saddr: bool, dev: AddrDev, mask: u16, invert: bool, eq: Option<u8>) -> Program {
    let mut insns = vec![Insn::Payload {
        base: PayloadBase::Network,
        offset: if saddr { 12 } else { 16 },
        len: 4,
        dreg: SCRATCH,
    }];
    match eq {
        None => insns.push(Insn::AddrType {
            sreg: SCRATCH,
            dev,
            out: AddrTypeOut::Test { mask, invert },
        }),
        Some(t) => {
            insns.push(Insn::AddrType {
                sreg: SCRATCH,
                dev,
                out: AddrTypeOut::Store { dreg: SCRATCH + 4 },
            });
            insns.push(Insn::Cmp {
                sreg: SCRATCH + 4,
                op: CmpOp::Eq,
                data: (t as u32).to_ne_bytes().to_vec(),
            });
        }
    }
    Program::single(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules: vec![Rule::new(
            vec![Match::is(Test::Residual(ResidualProgram { insns }))],
            Action::Drop,
        )],
    })
}

fn route(a: [u8; 4], len: u8, rtype: u8, oif: u32) -> Route {
    Route {
        addr: a,
        len,
        rtype,
        oif,
    }
}

#[test]
fn address_types_agree_with_the_reference() {
    let table = vec![
        route([10, 0, 0, 0], 8, addrtype::RTN_LOCAL, 1),
        route([10, 1, 0, 0], 16, addrtype::RTN_UNICAST, 0),
        route([10, 1, 0, 255], 32, addrtype::RTN_BROADCAST, 3),
        route([192, 168, 7, 7], 32, addrtype::RTN_ANYCAST, 4),
        route([127, 0, 0, 0], 8, addrtype::RTN_LOCAL, 1),
    ];
    let addrs = [
        "10.2.3.4",
        "10.1.2.3",
        "10.1.0.255",
        "192.168.7.7",
        "192.168.7.8",
        "127.0.0.1",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "8.8.8.8",
    ];
    let Some(mut loaded) = load_or_skip(
        &compile_program(&program(true, AddrDev::None, 4, false, None)).expect("compiles"),
        LoadOptions::default(),
    ) else {
        return;
    };
    {
        let mut trie: LpmTrie<_, [u8; 4], [u32; 2]> =
            LpmTrie::try_from(loaded.ebpf_mut().map_mut(addrtype::MAP).unwrap()).unwrap();
        for r in &table {
            trie.insert(&Key::new(r.len as u32, r.addr), addrtype::value(r), 0)
                .unwrap();
        }
    }
    let (mut drops, mut total) = (0, 0);
    let masks = [1u16 << 2, 1 << 1, 1 << 3, 1 << 4 | 1 << 5, !(1 << 2)];
    let cases = masks
        .iter()
        .flat_map(|&m| [(m, false, None), (m, true, None)])
        .chain((1..=5).map(|t| (0, false, Some(t))));
    for (mask, invert, eq) in cases {
        for dev in [AddrDev::None, AddrDev::In] {
            for saddr in [true, false] {
                let p = program(saddr, dev, mask, invert, eq);
                loaded
                    .patch(
                        &compile_program(&p).expect("compiles"),
                        LoadOptions::default(),
                    )
                    .expect("same constants");
                for a in addrs {
                    for iif in [1, 3, 9] {
                        let (s, d) = if saddr {
                            (addr(a), addr("10.9.9.9"))
                        } else {
                            (addr("10.9.9.9"), addr(a))
                        };
                        let frame = frames::udp(s, d, 9, 53);
                        let mut fields = frames::fields_of(&frame, iif, 0);
                        let network = frame[14..].to_vec();
                        fields.headers = Some(Headers {
                            transport: Some(20),
                            network,
                            protocol: 0x0800,
                            addrtype: table.clone(),
                            iif,
                            ..Default::default()
                        });
                        let eval = Reference::new(&p).unwrap().evaluate(&fields).unwrap();
                        let meta = SkbMeta {
                            ingress_ifindex: iif,
                            ..SkbMeta::default()
                        };
                        let run = loaded.run_tc(&frame, meta, 1).unwrap();
                        assert_eq!(
                            run.verdict, eval.verdict,
                            "{a} saddr {saddr} dev {dev:?} iif {iif} mask {mask:#x} invert {invert} eq {eq:?}"
                        );
                        drops += (run.verdict == Verdict::Drop) as u32;
                        total += 1;
                    }
                }
            }
        }
    }
    assert!(
        drops > total / 10 && drops < total * 9 / 10,
        "{drops} of {total}"
    );
}
