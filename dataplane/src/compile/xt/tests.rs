//! Blobs as iptables-nft 1.8.9 sends them (layouts of the x86_64 uapi structs), and
//! the IR each must become.

use super::*;
use netlink_proto::expr::compat::{MatchAttr, TargetAttr};
use nftshim_ebpf::ir::ct_status;
use nftshim_ebpf::residual::{SctpChunkMatch, SctpChunks};

pub(super) fn xt_match(name: &str, rev: u32, info: Vec<u8>) -> XtMatch {
    XtMatch::new(vec![
        MatchAttr::Name(name.into()),
        MatchAttr::Rev(rev),
        MatchAttr::Info(info),
    ])
}

pub(super) fn xt_target(name: &str, rev: u32, info: Vec<u8>) -> XtTarget {
    XtTarget::new(vec![
        TargetAttr::Name(name.into()),
        TargetAttr::Rev(rev),
        TargetAttr::Info(info),
    ])
}

/// A zeroed blob of `size` bytes with fields written at their offsets.
struct Info(Vec<u8>);

impl Info {
    fn new(size: usize) -> Self {
        Info(vec![0; size])
    }
    fn put(mut self, off: usize, bytes: &[u8]) -> Self {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
        self
    }
    fn u8(self, off: usize, v: u8) -> Self {
        self.put(off, &[v])
    }
    fn u16(self, off: usize, v: u16) -> Self {
        self.put(off, &v.to_ne_bytes())
    }
    fn u32(self, off: usize, v: u32) -> Self {
        self.put(off, &v.to_ne_bytes())
    }
}

fn protos(p: &[u8]) -> BTreeSet<u8> {
    p.iter().copied().collect()
}

pub(super) fn cx<'a>(family: Family, hook: Hook, l4: Option<&'a BTreeSet<u8>>) -> XtCx<'a> {
    XtCx {
        family,
        hook,
        families: if family == Family::Ip6 { V6 } else { V4 },
        l4protos: l4,
        view: None,
    }
}

fn m(c: &XtCx<'_>, name: &str, rev: u32, info: Info) -> Result<Decompiled, String> {
    decompile_match(c, &xt_match(name, rev, info.0))
}

fn t(c: &XtCx<'_>, name: &str, rev: u32, info: Info) -> Result<Decompiled, String> {
    decompile_target(c, &xt_target(name, rev, info.0))
}

fn input() -> XtCx<'static> {
    cx(Family::Ip, Hook::Input, None)
}

/// `-m conntrack` revision 3 with these flags, inverted flags, state and status masks.
fn conntrack3(flags: u16, inv: u16, state: u16, status: u16) -> Info {
    Info::new(168)
        .u16(146, flags)
        .u16(148, inv)
        .u16(150, state)
        .u16(152, status)
}

#[test]
fn conntrack_states() {
    let c = input();
    use ct_state::*;
    // --ctstate RELATED,ESTABLISHED
    assert_eq!(
        m(&c, "conntrack", 3, conntrack3(1, 0, 0b110, 0)),
        Ok(one(Test::CtState(ESTABLISHED | RELATED), false))
    );
    // ! --ctstate NEW,INVALID: every other state, untracked included.
    assert_eq!(
        m(&c, "conntrack", 3, conntrack3(1, 1, 0b1001, 0)),
        Ok(one(Test::CtState(ESTABLISHED | RELATED | UNTRACKED), false))
    );
    // --ctstate UNTRACKED is xt_conntrack's bit 8.
    assert_eq!(
        m(&c, "conntrack", 3, conntrack3(1, 0, 1 << 8, 0)),
        Ok(one(Test::CtState(UNTRACKED), false))
    );
    // --ctstate DNAT: no connection is NATed here.
    assert_eq!(
        m(&c, "conntrack", 3, conntrack3(1, 0, 1 << 7, 0)),
        Ok(Decompiled::Never)
    );
    // ! --ctstate SNAT: every state.
    assert_eq!(
        m(&c, "conntrack", 3, conntrack3(1, 1, 1 << 6, 0)),
        Ok(one(
            Test::CtState(INVALID | ESTABLISHED | RELATED | NEW | UNTRACKED),
            false
        ))
    );
    // Revision 1: 8-bit masks at 150 and 151.
    let rev1 = Info::new(152).u16(146, 1).u8(150, 0b1000);
    assert_eq!(
        m(&c, "conntrack", 1, rev1),
        Ok(one(Test::CtState(NEW), false))
    );
    // -m state --state INVALID,UNTRACKED (xt_state's untracked bit is 6).
    assert_eq!(
        m(&c, "state", 0, Info::new(8).u32(0, 1 | 1 << 6)),
        Ok(one(Test::CtState(INVALID | UNTRACKED), false))
    );
}

#[test]
fn conntrack_status_and_refused_options() {
    let c = input();
    // --ctstatus ASSURED
    assert_eq!(
        m(&c, "conntrack", 3, conntrack3(1 << 6, 0, 0, 4)),
        Ok(Decompiled::Matches(vec![Match::is(Test::CtStatus(
            ct_status::ASSURED
        ))]))
    );
    // --ctstate NEW --ctstatus ! SEEN_REPLY
    assert_eq!(
        m(&c, "conntrack", 3, conntrack3(1 | 1 << 6, 1 << 6, 8, 2)),
        Ok(Decompiled::Matches(vec![
            Match::is(Test::CtState(ct_state::NEW)),
            Match::not(Test::CtStatus(ct_status::SEEN_REPLY))
        ]))
    );
    // --ctstate INVALID,ESTABLISHED --ctstatus ASSURED: "invalid, or assured".
    assert!(m(&c, "conntrack", 3, conntrack3(1 | 1 << 6, 0, 3, 4)).is_err());
    // --ctproto tcp, --ctdir ORIGINAL: not kept by the tracker.
    let e = m(&c, "conntrack", 3, conntrack3(1 << 1, 0, 0, 0)).unwrap_err();
    assert!(e.contains("--ctproto"), "{e}");
    assert!(m(&c, "conntrack", 3, conntrack3(1 << 12, 0, 0, 0)).is_err());
}

#[test]
fn comment_holds_always() {
    let info = Info::new(256).put(0, b"admin ports");
    assert_eq!(m(&input(), "comment", 0, info), Ok(Decompiled::Always));
}

/// `-m multiport` revision 1: flags, the ports (a range: pflags on its start).
fn multiport_info(flags: u8, ports: &[u16], ranges: &[usize], invert: bool) -> Info {
    let mut i = Info::new(48).u8(0, flags).u8(1, ports.len() as u8);
    for (k, p) in ports.iter().enumerate() {
        i = i.u16(2 + 2 * k, *p);
    }
    for &k in ranges {
        i = i.u8(32 + k, 1);
    }
    i.u8(47, invert as u8)
}

#[test]
fn multiport_ports_ranges_and_inversion() {
    let tcp = protos(&[6]);
    let c = cx(Family::Ip, Hook::Input, Some(&tcp));
    // --dports 22,80,1000:1010
    assert_eq!(
        m(
            &c,
            "multiport",
            1,
            multiport_info(1, &[22, 80, 1000, 1010], &[2], false)
        ),
        Ok(one(
            Test::Dport(vec![
                PortRange::new(22, 22),
                PortRange::new(80, 80),
                PortRange::new(1000, 1010)
            ]),
            false
        ))
    );
    // ! --sports 5:9
    assert_eq!(
        m(&c, "multiport", 1, multiport_info(0, &[5, 9], &[0], true)),
        Ok(one(Test::Sport(vec![PortRange::new(5, 9)]), true))
    );
    // ! --ports 53,1024:65535: both ports loaded, a lookup of either.
    assert_eq!(
        m(
            &c,
            "multiport",
            1,
            multiport_info(2, &[53, 1024, 65535], &[1], true)
        ),
        Ok(Decompiled::Residual(
            vec![],
            vec![
                Insn::Payload {
                    base: PayloadBase::Transport,
                    offset: 0,
                    len: 2,
                    dreg: SCRATCH,
                },
                Insn::Payload {
                    base: PayloadBase::Transport,
                    offset: 2,
                    len: 2,
                    dreg: SCRATCH + 4,
                },
                Insn::LookupEither {
                    sreg: SCRATCH,
                    sreg2: SCRATCH + 4,
                    len: 2,
                    negated: true,
                    elements: vec![(vec![0, 53], vec![0, 53]), (vec![4, 0], vec![0xff, 0xff])],
                },
            ]
        ))
    );
    // Unknown flags stay refused.
    assert!(m(&c, "multiport", 1, multiport_info(3, &[22], &[], false)).is_err());
    // Without a protocol dependency the IR's ports would not be what it reads.
    assert!(m(
        &input(),
        "multiport",
        1,
        multiport_info(1, &[22], &[], false)
    )
    .is_err());
}

#[test]
fn tcp_and_udp_ports_and_flags() {
    let tcp = protos(&[6]);
    let c = cx(Family::Ip, Hook::Input, Some(&tcp));
    // -p tcp ! --dport 22 (compat form): spts 0:65535, dpts 22:22, invflags 2.
    let info = Info::new(16).u16(2, 0xffff).u16(4, 22).u16(6, 22).u8(11, 2);
    assert_eq!(
        m(&c, "tcp", 0, info),
        Ok(Decompiled::Matches(vec![
            Match::is(Test::Sport(vec![PortRange::new(0, 0xffff)])),
            Match::not(Test::Dport(vec![PortRange::new(22, 22)])),
        ]))
    );
    // --syn: flags SYN of SYN,RST,ACK,FIN, tested on the header byte.
    let syn = Info::new(16)
        .u16(2, 0xffff)
        .u16(6, 0xffff)
        .u8(9, 0x17)
        .u8(10, 0x02);
    let Ok(Decompiled::Residual(ms, insns)) = m(&c, "tcp", 0, syn) else {
        panic!()
    };
    assert!(ms.is_empty());
    assert_eq!(
        insns.last(),
        Some(&Insn::Cmp {
            sreg: SCRATCH,
            op: CmpOp::Eq,
            data: vec![2]
        })
    );
    // --tcp-option 2: refused.
    let opt = Info::new(16).u16(2, 0xffff).u16(6, 0xffff).u8(8, 2);
    assert!(m(&c, "tcp", 0, opt).is_err());
    // -p udp --sport 5:6 under a udp dependency, and not under tcp's.
    let udp = protos(&[17]);
    let cu = cx(Family::Ip, Hook::Input, Some(&udp));
    let info = || Info::new(16).u16(0, 5).u16(2, 6).u16(6, 0xffff).u8(8, 1);
    assert_eq!(
        m(&cu, "udp", 0, info()),
        Ok(Decompiled::Matches(vec![
            Match::not(Test::Sport(vec![PortRange::new(5, 6)])),
            Match::is(Test::Dport(vec![PortRange::new(0, 0xffff)])),
        ]))
    );
    assert!(m(&c, "udp", 0, info()).is_err());
}

#[test]
fn icmp_type_and_code() {
    let icmp = protos(&[1]);
    let c = cx(Family::Ip, Hook::Input, Some(&icmp));
    let lookup = |negated, lo: [u8; 2], hi: [u8; 2]| Insn::Lookup {
        sreg: SCRATCH,
        len: 2,
        negated,
        elements: vec![(lo.to_vec(), hi.to_vec())],
    };
    // --icmp-type echo-request: type 8, codes 0..255: the indexed type.
    assert_eq!(
        m(&c, "icmp", 0, Info::new(8).u8(0, 8).u8(2, 0xff)),
        Ok(one(Test::IcmpType(vec![8]), false))
    );
    // --icmp-type 3/0:3 (not an iptables spelling, but a valid blob): type and code.
    let Ok(Decompiled::Residual(_, insns)) =
        m(&c, "icmp", 0, Info::new(8).u8(0, 3).u8(1, 0).u8(2, 3))
    else {
        panic!()
    };
    assert_eq!(insns[1], lookup(false, [3, 0], [3, 3]));
    // ! --icmp-type 3/1
    let Ok(Decompiled::Residual(_, insns)) = m(
        &c,
        "icmp",
        0,
        Info::new(8).u8(0, 3).u8(1, 1).u8(2, 1).u8(3, 1),
    ) else {
        panic!()
    };
    assert_eq!(insns[1], lookup(true, [3, 1], [3, 1]));
    // ! --icmp-type any: never.
    assert_eq!(
        m(&c, "icmp", 0, Info::new(8).u8(0, 0xff).u8(2, 0xff).u8(3, 1)),
        Ok(Decompiled::Never)
    );
    // icmp6 needs an ip6 table.
    assert!(m(&c, "icmp6", 0, Info::new(8).u8(0, 128)).is_err());
}

#[test]
fn marks_and_connmarks() {
    let c = input();
    // -m mark ! --mark 1/0xff
    assert_eq!(
        m(&c, "mark", 1, Info::new(16).u32(0, 1).u32(4, 0xff).u8(8, 1)),
        Ok(one(
            Test::Mark {
                mask: 0xff,
                values: vec![1]
            },
            true
        ))
    );
    // A value with bits outside the mask is never equal.
    assert_eq!(
        m(&c, "mark", 1, Info::new(16).u32(0, 0x100).u32(4, 0xff)),
        Ok(Decompiled::Never)
    );
    // -m connmark ! --mark 0x100/0xff: every packet with a connection.
    assert_eq!(
        m(
            &c,
            "connmark",
            1,
            Info::new(16).u32(0, 0x100).u32(4, 0xff).u8(8, 1)
        ),
        Ok(Decompiled::Matches(vec![has_connection()]))
    );
    assert_eq!(
        m(&c, "connmark", 1, Info::new(16).u32(0, 1).u32(4, 3)),
        Ok(one(
            Test::CtMark {
                mask: 3,
                values: vec![1]
            },
            false
        ))
    );
}

#[test]
fn iprange_and_length() {
    let c = input();
    // --src-range 10.0.0.0-10.0.0.255 ! --dst-range 1.2.3.4-1.2.3.4
    let info = Info::new(72)
        .put(0, &[10, 0, 0, 0])
        .put(16, &[10, 0, 0, 255])
        .put(32, &[1, 2, 3, 4])
        .put(48, &[1, 2, 3, 4])
        .u8(64, 1 | 2 | 0x20);
    assert_eq!(
        m(&c, "iprange", 1, info),
        Ok(Decompiled::Matches(vec![
            Match::is(Test::IpSaddr(vec!["10.0.0.0/24".parse().unwrap()])),
            Match::not(Test::IpDaddr(vec!["1.2.3.4/32".parse().unwrap()])),
        ]))
    );
    // --length 100:200 (IPv4 total length, big endian in the header).
    let Ok(Decompiled::Residual(_, insns)) =
        m(&c, "length", 0, Info::new(8).u16(0, 100).u16(2, 200))
    else {
        panic!()
    };
    assert_eq!(
        insns[1],
        Insn::Lookup {
            sreg: SCRATCH,
            len: 2,
            negated: false,
            elements: vec![(vec![0, 100], vec![0, 200])]
        }
    );
    // IPv6 --length 20:60: payload lengths 65516..65535 (wrapped) and 0..20.
    let c6 = cx(Family::Ip6, Hook::Input, None);
    let Ok(Decompiled::Residual(_, insns)) =
        m(&c6, "length", 0, Info::new(8).u16(0, 20).u16(2, 60))
    else {
        panic!()
    };
    let Insn::Lookup { elements, .. } = &insns[1] else {
        panic!()
    };
    assert_eq!(
        elements,
        &vec![
            (vec![0xff, 0xec], vec![0xff, 0xff]),
            (vec![0, 0], vec![0, 20])
        ]
    );
}

#[test]
fn ttl_hop_limit_and_helper() {
    // -m ttl --ttl-lt 5
    let Ok(Decompiled::Residual(ms, insns)) = m(&input(), "ttl", 0, Info::new(8).u8(0, 2).u8(1, 5))
    else {
        panic!()
    };
    assert!(ms.is_empty());
    assert_eq!(
        insns,
        vec![
            Insn::Payload {
                base: PayloadBase::Network,
                offset: 8,
                len: 1,
                dreg: SCRATCH
            },
            Insn::Cmp {
                sreg: SCRATCH,
                op: CmpOp::Lt,
                data: vec![5]
            }
        ]
    );
    // -m hl --hl-gt 5 reads the hop limit; not in an ip table.
    let c6 = cx(Family::Ip6, Hook::Input, None);
    let Ok(Decompiled::Residual(_, insns)) = m(&c6, "hl", 0, Info::new(8).u8(0, 3).u8(1, 5)) else {
        panic!()
    };
    assert!(matches!(insns[0], Insn::Payload { offset: 7, .. }));
    assert!(m(&input(), "hl", 0, Info::new(8)).is_err());
    // -m helper --helper ftp: no connection has a master here.
    let ftp = || Info::new(40).put(4, b"ftp");
    assert_eq!(m(&input(), "helper", 0, ftp()), Ok(Decompiled::Never));
    assert_eq!(
        m(&input(), "helper", 0, ftp().u32(0, 1)),
        Ok(Decompiled::Always)
    );
}

#[test]
fn refused_matches() {
    let c = input();
    let e = m(&c, "limit", 0, Info::new(40)).unwrap_err();
    assert!(e.contains("limit"), "{e}");
    // IPv6 --src-type LOCAL needs a route lookup in the full routing tables.
    let c6 = cx(Family::Ip6, Hook::Input, None);
    assert!(m(&c6, "addrtype", 1, Info::new(8).u8(0, 4)).is_err());
    // mac is enforced at input (mac_source_reads_the_received_mac_header), not here.
    let output = cx(Family::Ip, Hook::Output, None);
    assert!(m(&output, "mac", 0, Info::new(16)).is_err());
}

#[test]
fn reject_codes_per_family_and_hook() {
    let v4 = |with| t(&input(), "REJECT", 0, Info::new(8).u32(0, with));
    assert_eq!(
        v4(3),
        Ok(Decompiled::Verdict(Action::Reject(Reject::Icmp(3))))
    );
    assert_eq!(
        v4(7),
        Ok(Decompiled::Verdict(Action::Reject(Reject::TcpReset)))
    );
    assert_eq!(
        v4(8),
        Ok(Decompiled::Verdict(Action::Reject(Reject::Icmp(13))))
    );
    assert_eq!(
        v4(6),
        Ok(Decompiled::Verdict(Action::Reject(Reject::Icmp(10))))
    );
    let c6 = cx(Family::Ip6, Hook::Input, None);
    let v6 = |with| t(&c6, "REJECT", 0, Info::new(8).u32(0, with));
    assert_eq!(
        v6(1),
        Ok(Decompiled::Verdict(Action::Reject(Reject::Icmp(1))))
    );
    assert_eq!(
        v6(6),
        Ok(Decompiled::Verdict(Action::Reject(Reject::TcpReset)))
    );
    assert_eq!(
        v6(7),
        Ok(Decompiled::Verdict(Action::Reject(Reject::Icmp(5))))
    );
    // Forwarded packets: routed back by the egress program (port unreachable).
    let fwd = cx(Family::Ip, Hook::Forward, None);
    assert_eq!(
        t(&fwd, "REJECT", 0, Info::new(8).u32(0, 3)),
        Ok(Decompiled::Verdict(Action::Reject(Reject::Icmp(3))))
    );
    // Prerouting: the kernel's ICMP error comes from the route toward the sender.
    let pre = cx(Family::Ip, Hook::Prerouting, None);
    assert!(t(&pre, "REJECT", 0, Info::new(8).u32(0, 3)).is_err());
}

#[test]
fn log_mark_and_connmark_targets() {
    let c = input();
    // -j LOG --log-prefix "marked " --log-level 6 --log-tcp-sequence
    let log = Info::new(32).u8(0, 6).u8(1, 1).put(2, b"marked ");
    assert_eq!(
        t(&c, "LOG", 0, log),
        Ok(Decompiled::Statement(Statement::Log {
            prefix: "6/1/marked ".into()
        }))
    );
    // --log-uid: the socket, known at TC egress, not at input (early demux's).
    assert!(t(&c, "LOG", 0, Info::new(32).u8(1, 8)).is_err());
    let out = cx(Family::Ip, Hook::Output, None);
    assert_eq!(
        t(&out, "LOG", 0, Info::new(32).u8(0, 4).u8(1, 8)),
        Ok(Decompiled::Statement(Statement::Log {
            prefix: "4/8/".into()
        }))
    );
    // -j MARK --set-xmark 1/3
    assert_eq!(
        t(&out, "MARK", 2, Info::new(8).u32(0, 1).u32(4, 3)),
        Ok(Decompiled::Statement(Statement::SetMark {
            and: !3,
            xor: 1
        }))
    );
    // Not at input: TC marks before routing.
    assert!(t(&c, "MARK", 2, Info::new(8).u32(0, 1).u32(4, 3)).is_err());
    let connmark = |ctmark, ctmask, nfmask, mode| {
        Info::new(16)
            .u32(0, ctmark)
            .u32(4, ctmask)
            .u32(8, nfmask)
            .u8(14, mode)
    };
    // --set-mark 4, --save-mark, --restore-mark
    assert_eq!(
        t(&c, "CONNMARK", 2, connmark(4, !0, 0, 0)),
        Ok(Decompiled::Statement(Statement::SetCtMark {
            and: 0,
            xor: 4
        }))
    );
    assert_eq!(
        t(&c, "CONNMARK", 2, connmark(0, !0, !0, 1)),
        Ok(Decompiled::Statement(Statement::SetCtMarkFromMark {
            and: !0,
            xor: 0
        }))
    );
    assert_eq!(
        t(&out, "CONNMARK", 2, connmark(0, 0xff, !0, 2)),
        Ok(Decompiled::Statement(Statement::SetMarkFromCtMark {
            and: 0xff,
            xor: 0
        }))
    );
    // --save-mark --mask 0xff keeps the rest of the ct mark.
    assert_eq!(
        t(&c, "CONNMARK", 2, connmark(0, 0xff, 0xff, 1)),
        Ok(Decompiled::Statement(Statement::MarkMerge(MarkMerge {
            to_ct: true,
            keep: !0xff,
            and: 0xff,
            left: true,
            by: 0
        })))
    );
    // --restore-mark --nfmask 0xfffffff keeps the mark's top nibble; not at input.
    let restore = || connmark(0, !0, 0xfff_ffff, 2);
    assert_eq!(
        t(&out, "CONNMARK", 2, restore()),
        Ok(Decompiled::Statement(Statement::MarkMerge(MarkMerge {
            to_ct: false,
            keep: 0xf000_0000,
            and: !0,
            left: true,
            by: 0
        })))
    );
    assert!(t(&c, "CONNMARK", 2, restore()).is_err());
    // --save-mark --right-shift-mark 8 (shift_dir 1 @12, shift_bits @13).
    assert_eq!(
        t(
            &c,
            "CONNMARK",
            2,
            connmark(0, 0xff, 0xff00, 1).u8(12, 1).u8(13, 8)
        ),
        Ok(Decompiled::Statement(Statement::MarkMerge(MarkMerge {
            to_ct: true,
            keep: !0xff,
            and: 0xff00,
            left: false,
            by: 8
        })))
    );
    // --set-xmark 0x10/0xff --left-shift-mark 4 (shift_dir 0).
    assert_eq!(
        t(&c, "CONNMARK", 2, connmark(0x10, 0xff, 0, 0).u8(13, 4)),
        Ok(Decompiled::Statement(Statement::MarkShift(MarkShift {
            from_ct: true,
            to_ct: true,
            and: !0xff,
            xor: 0x10,
            left: true,
            by: 4,
            post: 0
        })))
    );
}

#[test]
fn classify_sets_the_priority_at_egress_hooks_only() {
    // -j CLASSIFY --set-class 1:10 (priority 0x0001000a)
    let info = || Info::new(4).u32(0, 0x0001_000a);
    for hook in [Hook::Output, Hook::Forward, Hook::Postrouting] {
        for family in [Family::Ip, Family::Ip6] {
            assert_eq!(
                t(&cx(family, hook, None), "CLASSIFY", 0, info()),
                Ok(Decompiled::Statement(Statement::SetPriority(0x0001_000a)))
            );
        }
    }
    assert!(t(&input(), "CLASSIFY", 0, info()).is_err());
    assert!(t(
        &cx(Family::Ip, Hook::Prerouting, None),
        "CLASSIFY",
        0,
        info()
    )
    .is_err());
}

#[test]
fn refused_targets() {
    let c = input();
    for name in ["MASQUERADE", "SNAT", "DNAT", "REDIRECT"] {
        let e = t(&c, name, 0, Info::new(24)).unwrap_err();
        assert!(e.contains("NAT"), "{e}");
    }
    for name in ["TCPMSS", "CHECKSUM", "NFLOG", "NOTRACK", "SECMARK"] {
        assert!(t(&c, name, 0, Info::new(8)).is_err(), "{name}");
    }
}

#[test]
fn ct_target_with_only_event_masks_is_a_no_op() {
    let c = cx(Family::Ip, Hook::Prerouting, None);
    // --ctevents new,related (ct_events @4), --expevents new (exp_events @8).
    let events = |size| Info::new(size).u32(4, 0b11).u32(8, 1);
    assert_eq!(t(&c, "CT", 0, events(40)), Ok(Decompiled::Always));
    assert_eq!(t(&c, "CT", 1, events(72)), Ok(Decompiled::Always));
    assert_eq!(t(&c, "CT", 2, events(72)), Ok(Decompiled::Always));
    // --notrack, --zone, a zone direction, --helper, --timeout.
    let refused = [
        (0, events(40).put(0, &[1, 0]), "--notrack"),
        (2, events(72).put(2, &[1, 0]), "--zone"),
        (2, events(72).put(0, &[4, 0]), "--zone"),
        (0, events(40).put(12, b"ftp\0"), "--helper"),
        (1, events(72).put(28, b"t\0"), "--timeout"),
    ];
    for (rev, info, what) in refused {
        let e = t(&c, "CT", rev, info).unwrap_err();
        assert!(e.contains(what), "{e}");
    }
}

#[test]
fn connsecmark_is_a_no_op() {
    let c = cx(Family::Ip6, Hook::Forward, None);
    for mode in [1, 2] {
        assert_eq!(
            t(&c, "CONNSECMARK", 0, Info::new(1).put(0, &[mode])),
            Ok(Decompiled::Always)
        );
    }
}

#[test]
fn hmark_ct_needs_the_ruleset_and_the_packet_tuple_is_an_ipv4_mark_statement() {
    // --hmark-tuple ct (flag 1 << 12 @40), --hmark-mod 42 (@52), offset 1 (@56),
    // --hmark-src-prefix 24 (@0), --hmark-rnd 4 (@48), proto mask 0xffff (@44).
    let info = |flags: u32| {
        Info::new(60)
            .put(0, &[255, 255, 255, 0])
            .put(16, &[255; 4])
            .put(32, &[255; 4])
            .u32(40, flags)
            .put(44, &[0xff, 0xff])
            .u32(48, 4)
            .u32(52, 42)
            .u32(56, 1)
    };
    // Without the ruleset, whether the kernel tracks is unknown.
    assert!(t(&input(), "HMARK", 0, info(1 << 12)).is_err());
    let fwd = cx(Family::Ip, Hook::Forward, None);
    assert_eq!(
        t(&fwd, "HMARK", 0, info(0)),
        Ok(Decompiled::Statement(Statement::Hmark(
            nftshim_ebpf::ir::Hmark {
                src_mask: [255, 255, 255, 0],
                dst_mask: [255; 4],
                port_mask: [255; 4],
                port_set: [0; 4],
                l3: false,
                proto_mask: 0xff,
                rnd: 4,
                modulus: 42,
                offset: 1,
            }
        )))
    );
    // A mark set in input chains (policy routing), and IPv6's header walk: refused.
    assert!(t(&input(), "HMARK", 0, info(0)).is_err());
    let e = t(&cx(Family::Ip6, Hook::Forward, None), "HMARK", 0, info(0)).unwrap_err();
    assert!(e.contains("ipv6"), "{e}");
}

#[test]
fn mac_source_reads_the_received_mac_header() {
    let info = |invert: u32| Info::new(12).put(0, &[0x42, 1, 2, 3, 4, 5]).u32(8, invert);
    let insns = |op| {
        vec![
            Insn::Payload {
                base: PayloadBase::LinkLayerUntagged,
                offset: 6,
                len: 6,
                dreg: SCRATCH,
            },
            Insn::Cmp {
                sreg: SCRATCH,
                op,
                data: vec![0x42, 1, 2, 3, 4, 5],
            },
        ]
    };
    assert_eq!(
        m(&input(), "mac", 0, info(0)),
        Ok(Decompiled::EthernetResidual(insns(CmpOp::Eq)))
    );
    assert_eq!(
        m(&cx(Family::Ip6, Hook::Prerouting, None), "mac", 0, info(1)),
        Ok(Decompiled::EthernetResidual(insns(CmpOp::Neq)))
    );
    let fwd = m(&cx(Family::Ip, Hook::Forward, None), "mac", 0, info(0));
    assert!(fwd.unwrap_err().contains("not supported"));
}

// --- sctp and dccp: the transport header, then tests in the kernel's order -------------

fn header12() -> Insn {
    Insn::XtTransportHeader { len: 12 }
}

fn port(offset: u16, lo: u16, hi: u16, negated: bool) -> [Insn; 2] {
    [
        Insn::Payload {
            base: PayloadBase::Transport,
            offset,
            len: 2,
            dreg: SCRATCH,
        },
        Insn::Range {
            sreg: SCRATCH,
            negated,
            from: lo.to_be_bytes().to_vec(),
            to: hi.to_be_bytes().to_vec(),
        },
    ]
}

/// `struct xt_sctp_info` with ports (dpts first), flags and invflags.
fn sctp_info(dpts: [u16; 2], spts: [u16; 2], flags: u32, inv: u32) -> Info {
    Info::new(292)
        .u16(0, dpts[0])
        .u16(2, dpts[1])
        .u16(4, spts[0])
        .u16(6, spts[1])
        .u32(284, flags)
        .u32(288, inv)
}

#[test]
fn sctp_ports_and_chunk_types() {
    let sctp = protos(&[132]);
    let c = cx(Family::Ip, Hook::Input, Some(&sctp));
    // --dport 80:90
    assert_eq!(
        m(&c, "sctp", 0, sctp_info([80, 90], [0, 0xffff], 2, 0)),
        Ok(Decompiled::Residual(
            vec![],
            [vec![header12()], port(2, 80, 90, false).to_vec()].concat()
        ))
    );
    // ! --sport 5 --chunk-types only DATA:Be,INIT (types 0 and 1; DATA's flags & 3
    // must be 3).
    let info = sctp_info([0, 0xffff], [5, 5], 1 | 4, 1)
        .u32(8, 0b11)
        .u32(264, 4)
        .put(268, &[0, 3, 3])
        .u32(280, 1);
    let mut map = [0u8; 32];
    map[0] = 0b11;
    assert_eq!(
        m(&c, "sctp", 0, info),
        Ok(Decompiled::Residual(
            vec![],
            [
                vec![header12()],
                port(0, 5, 5, true).to_vec(),
                vec![Insn::XtSctpChunks(SctpChunks {
                    kind: SctpChunkMatch::Only,
                    invert: false,
                    map,
                    map_beyond: false,
                    flags: vec![(0, 3, 3)],
                })]
            ]
            .concat()
        ))
    );
    // ! --chunk-types all I_FORWARD_TSN (type 194: word 6, bit 2); a stray bit past
    // type 255 in the kernel's map.
    let info = sctp_info([0, 0xffff], [0, 0xffff], 4, 4)
        .u32(8 + 4 * 6, 1 << 2)
        .u32(8 + 4 * 40, 1)
        .u32(264, 2);
    let mut map = [0u8; 32];
    map[194 / 8] = 1 << (194 % 8);
    assert_eq!(
        m(&c, "sctp", 0, info),
        Ok(Decompiled::Residual(
            vec![],
            vec![
                header12(),
                Insn::XtSctpChunks(SctpChunks {
                    kind: SctpChunkMatch::All,
                    invert: true,
                    map,
                    map_beyond: true,
                    flags: vec![],
                })
            ]
        ))
    );
    // A match type of two bits: the walk runs, nothing matches.
    let Ok(Decompiled::Residual(_, insns)) = m(
        &c,
        "sctp",
        0,
        sctp_info([0, 0xffff], [0, 0xffff], 4, 0).u32(264, 3),
    ) else {
        panic!("not a residual program");
    };
    assert!(matches!(&insns[1], Insn::XtSctpChunks(c) if c.kind == SctpChunkMatch::Other));
    // No options: only the header is read (a short one drops the packet).
    assert_eq!(
        m(&c, "sctp", 0, sctp_info([0, 0xffff], [0, 0xffff], 0, 0)),
        Ok(Decompiled::Residual(vec![], vec![header12()]))
    );
    // Five flag tests: more than the struct has.
    assert!(m(
        &c,
        "sctp",
        0,
        sctp_info([0, 0xffff], [0, 0xffff], 4, 0)
            .u32(264, 1)
            .u32(280, 5)
    )
    .is_err());
    // Without `-p sctp` the ports the IR reads could be another protocol's.
    assert!(m(&input(), "sctp", 0, sctp_info([80, 90], [0, 0xffff], 2, 0)).is_err());
}

/// `struct xt_dccp_info`.
fn dccp_info(dpts: [u16; 2], spts: [u16; 2], flags: u16, inv: u16) -> Info {
    Info::new(16)
        .u16(0, dpts[0])
        .u16(2, dpts[1])
        .u16(4, spts[0])
        .u16(6, spts[1])
        .u16(8, flags)
        .u16(10, inv)
}

#[test]
fn dccp_ports_types_and_options() {
    let dccp = protos(&[33]);
    let c = cx(Family::Ip6, Hook::Forward, Some(&dccp));
    // --sport 1:2 ! --dport 9
    assert_eq!(
        m(&c, "dccp", 0, dccp_info([9, 9], [1, 2], 3, 2)),
        Ok(Decompiled::Residual(
            vec![],
            [
                vec![header12()],
                port(0, 1, 2, false).to_vec(),
                port(2, 9, 9, true).to_vec()
            ]
            .concat()
        ))
    );
    // ! --dccp-types REQUEST,DATA --dccp-option 4: the type is bits 1..5 of byte 8.
    let info = dccp_info([0, 0xffff], [0, 0xffff], 4 | 8, 4)
        .u16(12, 1 << 0 | 1 << 2)
        .u8(14, 4);
    assert_eq!(
        m(&c, "dccp", 0, info),
        Ok(Decompiled::Residual(
            vec![],
            vec![
                header12(),
                Insn::Payload {
                    base: PayloadBase::Transport,
                    offset: 8,
                    len: 1,
                    dreg: SCRATCH,
                },
                Insn::Bitwise {
                    sreg: SCRATCH,
                    dreg: SCRATCH,
                    len: 1,
                    mask: vec![0x1e],
                    xor: vec![0],
                },
                Insn::Lookup {
                    sreg: SCRATCH,
                    len: 1,
                    negated: true,
                    elements: vec![(vec![0], vec![0]), (vec![4], vec![4])],
                },
                Insn::XtDccpOption {
                    option: 4,
                    invert: false,
                },
            ]
        ))
    );
    assert!(m(&input(), "dccp", 0, dccp_info([9, 9], [1, 2], 3, 0)).is_err());
}

// --- ah, mh, frag ------------------------------------------------------------------

#[test]
fn ah_spi_range() {
    let ah = protos(&[51]);
    let c = cx(Family::Ip, Hook::Forward, Some(&ah));
    // ! --ahspi 7:9
    assert_eq!(
        m(&c, "ah", 0, Info::new(12).u32(0, 7).u32(4, 9).u8(8, 1)),
        Ok(Decompiled::Residual(
            vec![],
            vec![
                Insn::XtTransportHeader { len: 12 },
                Insn::Payload {
                    base: PayloadBase::Transport,
                    offset: 4,
                    len: 4,
                    dreg: SCRATCH,
                },
                Insn::Range {
                    sreg: SCRATCH,
                    negated: true,
                    from: vec![0, 0, 0, 7],
                    to: vec![0, 0, 0, 9],
                },
            ]
        ))
    );
    assert!(m(&input(), "ah", 0, Info::new(12)).is_err());
    // ip6t_ah is another struct (and walks extension headers).
    let c6 = cx(Family::Ip6, Hook::Input, Some(&ah));
    assert!(m(&c6, "ah", 0, Info::new(20)).is_err());
}

#[test]
fn ipcomp_cpi_range_in_both_families() {
    let comp = protos(&[108]);
    // --ipcompspi 18: the 16-bit CPI compared as a 32-bit number.
    for family in [Family::Ip, Family::Ip6] {
        let c = cx(family, Hook::Input, Some(&comp));
        let Ok(Decompiled::Residual(ms, insns)) =
            m(&c, "ipcomp", 0, Info::new(12).u32(0, 18).u32(4, 18))
        else {
            panic!("not a residual program");
        };
        assert!(ms.is_empty());
        assert_eq!(insns[0], Insn::XtTransportHeader { len: 4 });
        assert_eq!(
            insns[2],
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len: 4,
                mask: vec![0, 0, 0xff, 0xff],
                xor: vec![0; 4],
            }
        );
        assert_eq!(
            insns[3],
            Insn::Range {
                sreg: SCRATCH,
                negated: false,
                from: vec![0, 0, 0, 18],
                to: vec![0, 0, 0, 18],
            }
        );
    }
    // A CPI above 65535 is never reached, and the protocol must be ipcomp.
    assert!(m(&input(), "ipcomp", 0, Info::new(12)).is_err());
}

#[test]
fn mh_type_after_its_payload_protocol() {
    let mh = protos(&[135]);
    let c = cx(Family::Ip6, Hook::Input, Some(&mh));
    let Ok(Decompiled::Residual(ms, insns)) = m(&c, "mh", 0, Info::new(3).put(0, &[4, 123, 0]))
    else {
        panic!("not a residual program");
    };
    assert!(ms.is_empty());
    assert_eq!(insns[0], Insn::XtTransportHeader { len: 6 });
    assert_eq!(
        insns[2],
        Insn::XtDropUnless {
            sreg: SCRATCH,
            data: vec![59]
        }
    );
    assert_eq!(
        insns[4],
        Insn::Range {
            sreg: SCRATCH,
            negated: false,
            from: vec![4],
            to: vec![123]
        }
    );
    assert!(m(&cx(Family::Ip6, Hook::Input, None), "mh", 0, Info::new(3)).is_err());
}

#[test]
fn frag_id_and_flags() {
    let c = cx(Family::Ip6, Hook::Input, None);
    // ! --fragid 1 ! --fraglen 42 --fragres --fragfirst: the length is never tested.
    let info = Info::new(16)
        .u32(0, 1)
        .u32(4, 1)
        .u32(8, 42)
        .u8(12, 0x01 | 0x02 | 0x04 | 0x08)
        .u8(13, 0x01 | 0x02);
    let tmp = SCRATCH + 8;
    let test = |mask: [u8; 4], value: [u8; 4]| {
        vec![
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: tmp,
                len: 4,
                mask: mask.to_vec(),
                xor: vec![0; 4],
            },
            Insn::Cmp {
                sreg: tmp,
                op: CmpOp::Eq,
                data: value.to_vec(),
            },
        ]
    };
    assert_eq!(
        m(&c, "frag", 0, info),
        Ok(Decompiled::Residual(
            vec![],
            [
                vec![
                    Insn::XtIpv6Header {
                        header: 44,
                        len: 8,
                        dreg: SCRATCH,
                        whole: false,
                        offset: 0,
                        drops: true,
                    },
                    Insn::Range {
                        sreg: SCRATCH + 4,
                        negated: true,
                        from: vec![0, 0, 0, 1],
                        to: vec![0, 0, 0, 1],
                    },
                ],
                test([0, 0xff, 0, 0x06], [0; 4]),
                test([0, 0, 0xff, 0xf8], [0; 4]),
            ]
            .concat()
        ))
    );
    // --fragmore --fraglast: both flag tests, which no packet passes.
    let Ok(Decompiled::Residual(_, insns)) =
        m(&c, "frag", 0, Info::new(16).u32(4, u32::MAX).u8(12, 0x30))
    else {
        panic!("not a residual program");
    };
    assert_eq!(
        insns[2..],
        [test([0, 0, 0, 1], [0, 0, 0, 1]), test([0, 0, 0, 1], [0; 4])].concat()
    );
    assert!(m(&input(), "frag", 0, Info::new(16)).is_err());
}

#[test]
fn hbh_and_dst_length() {
    let c = cx(Family::Ip6, Hook::Input, None);
    let len_test = |from: Vec<u8>, to: Vec<u8>, negated: bool| {
        vec![
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH + 4,
                len: 2,
                mask: vec![0, 0xff],
                xor: vec![0, 0],
            },
            Insn::Range {
                sreg: SCRATCH + 4,
                negated,
                from,
                to,
            },
        ]
    };
    let header = |h| Insn::XtIpv6Header {
        header: h,
        len: 2,
        dreg: SCRATCH,
        whole: true,
        offset: 0,
        drops: true,
    };
    // -m dst ! --dst-len 16: length field 1.
    assert_eq!(
        m(&c, "dst", 0, Info::new(40).u32(0, 16).u8(4, 1).u8(5, 1)),
        Ok(Decompiled::Residual(
            vec![],
            [vec![header(60)], len_test(vec![0, 1], vec![0, 1], true)].concat()
        ))
    );
    // -m hbh --hbh-len 42: no header is 42 bytes long.
    assert_eq!(
        m(&c, "hbh", 0, Info::new(40).u32(0, 42).u8(4, 1)),
        Ok(Decompiled::Residual(
            vec![],
            [vec![header(0)], len_test(vec![0, 1], vec![0, 0], false)].concat()
        ))
    );
    // -m hbh: the header is there (and whole).
    assert_eq!(
        m(&c, "hbh", 0, Info::new(40)),
        Ok(Decompiled::Residual(vec![], vec![header(0)]))
    );
    // --hbh-opts 1:2,0,5 (iptables: 5 is any length): walked in order.
    let opts = Info::new(40)
        .u8(4, 2)
        .u16(6, 0x0102)
        .u16(8, 0x0000)
        .u16(10, 0x05ff)
        .u8(38, 3);
    assert_eq!(
        m(&c, "hbh", 0, opts),
        Ok(Decompiled::Residual(
            vec![],
            vec![
                header(0),
                Insn::XtIpv6Options {
                    header: 0,
                    opts: vec![(1, 2), (0, 0), (5, 0xff)],
                },
            ]
        ))
    );
    // More options than opts[] holds: refused.
    assert!(m(&c, "hbh", 0, Info::new(40).u8(4, 2).u8(38, 17)).is_err());
    assert!(m(&input(), "dst", 0, Info::new(40)).is_err());
}

#[test]
fn srh_fields_in_order() {
    let c = cx(Family::Ip6, Hook::Forward, None);
    // Revision 1: ! --srh-next-hdr 17 --srh-segs-left-gt 1 --srh-tag 0x1234.
    let info = Info::new(108)
        .u8(0, 17)
        .u8(2, 1)
        .put(4, &[0x12, 0x34])
        .u16(104, 0x0001 | 0x0020 | 0x0400)
        .u16(106, 0x0001);
    let Ok(Decompiled::Residual(ms, insns)) = m(&c, "srh", 1, info) else {
        panic!("not a residual program");
    };
    assert!(ms.is_empty());
    // The header twice (bytes 0-7, then 2-5), type 4 and segments left <= last entry.
    assert!(matches!(
        insns[0],
        Insn::XtIpv6Header {
            header: 43,
            len: 8,
            whole: true,
            offset: 0,
            drops: false,
            ..
        }
    ));
    assert!(matches!(
        insns[1],
        Insn::XtIpv6Header {
            offset: 2,
            len: 4,
            ..
        }
    ));
    let Insn::Lookup { elements, .. } = &insns[2] else {
        panic!("no type and segments test");
    };
    assert_eq!(elements.len(), 256);
    assert_eq!(elements[3], (vec![4, 3, 3, 0], vec![4, 3, 0xff, 0xff]));
    let cmp = |i: usize| match &insns[i] {
        Insn::Cmp { op, data, .. } => (*op, data.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(cmp(4), (CmpOp::Neq, vec![17, 0, 0, 0]));
    assert_eq!(cmp(6), (CmpOp::Gt, vec![0, 0, 0, 1]));
    assert_eq!(cmp(8), (CmpOp::Eq, vec![0, 0, 0x12, 0x34]));
    assert_eq!(insns.len(), 9);
    // --srh-nsid fd00::/16 ! --srh-lsid ::1/128: after the type and segments test.
    let info = Info::new(108)
        .put(24, &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9])
        .put(72, &[0xff, 0xff])
        .put(40, &[[0; 15].as_slice(), &[1]].concat())
        .put(88, &[0xff; 16])
        .u16(104, 0x1000 | 0x2000)
        .u16(106, 0x2000);
    let Ok(Decompiled::Residual(_, insns)) = m(&c, "srh", 1, info) else {
        panic!("not a residual program");
    };
    let mut nsid_mask = vec![0; 16];
    nsid_mask[..2].copy_from_slice(&[0xff, 0xff]);
    let mut nsid = vec![0; 16];
    nsid[0] = 0xfd;
    let mut lsid = vec![0; 16];
    lsid[15] = 1;
    assert_eq!(
        insns[3..],
        [
            Insn::XtSrhSegment {
                next: true,
                dreg: SCRATCH,
            },
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len: 16,
                mask: nsid_mask,
                xor: vec![0; 16],
            },
            Insn::Cmp {
                sreg: SCRATCH,
                op: CmpOp::Eq,
                data: nsid,
            },
            Insn::XtIpv6Header {
                header: 43,
                len: 16,
                dreg: SCRATCH,
                whole: true,
                offset: 8,
                drops: false,
            },
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH,
                len: 16,
                mask: vec![0xff; 16],
                xor: vec![0; 16],
            },
            Insn::Cmp {
                sreg: SCRATCH,
                op: CmpOp::Neq,
                data: lsid,
            },
        ]
    );
    // Revision 0: flags at 6, ! --srh-hdr-len-lt 8 (the hdr_len byte 1).
    let Ok(Decompiled::Residual(_, insns)) = m(
        &c,
        "srh",
        0,
        Info::new(10).u8(1, 8).u16(6, 0x0008).u16(8, 0x0008),
    ) else {
        panic!("not a residual program");
    };
    assert!(matches!(&insns[4], Insn::Cmp { op: CmpOp::Gte, data, .. } if data == &[0, 8, 0, 0]));
}
