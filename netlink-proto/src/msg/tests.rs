//! Whole messages recorded from nft 1.0.6, iptables-nft 1.8.9 and the 6.18 kernel
//! (see `tools/capture_fixtures.py`); the command that produced each is quoted.

use super::*;
use crate::data::{device_names, ObjType, VerdictCode};
use crate::expr::Expr;
use crate::message::split_datagram;
use crate::msg::chain::ChainAttr;
use crate::msg::obj::ObjData;
use crate::msg::trace::TraceType;
use crate::testutil::hex;
use crate::typed::{ListElem, Nest};

/// Parses one message, checks it re-emits byte for byte and is not `Unknown`.
fn parse(hex_str: &str) -> NftMessage {
    let bytes = hex(hex_str);
    let (msgs, tail) = split_datagram(&bytes);
    assert_eq!(tail, DatagramTail::Clean);
    assert_eq!(msgs.len(), 1);
    let m = NftMessage::parse(&msgs[0]).expect("an nfnetlink message");
    assert_eq!(m.to_bytes(), bytes, "round trip");
    assert!(
        !matches!(m.body, NftBody::Unknown { .. }),
        "not typed: {m:?}"
    );
    m
}

#[test]
fn new_table_from_nft() {
    // nft -f - (table inet t)
    let m = parse("24000000000a010001000000000000000100000006000100740000000800020000000000");
    assert_eq!(m.msg_type(), 0x0a00);
    assert_eq!(m.flags, NLM_F_REQUEST);
    assert_eq!(m.seq, 1);
    assert_eq!(m.family(), crate::extra::NFPROTO_INET);
    let NftBody::NewTable(t) = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!(t.name(), Some("t"));
    assert_eq!(t.flags(), Some(0));
    assert_eq!(t.handle(), None);
}

#[test]
fn table_dump_from_kernel() {
    // nft list set inet t s4: the kernel's GETTABLE answer.
    let m = parse("38000000000a000000000000a9200000010000020600010074000000080003000000000a0c00040000000000000000010800020000000000");
    assert_eq!(m.port, 0x20a9);
    assert_eq!(m.nfgen.res_id, 2, "res_id carries the generation");
    let NftBody::NewTable(t) = &m.body else {
        panic!()
    };
    assert_eq!(t.name(), Some("t"));
    assert_eq!(t.use_count(), Some(10));
    assert_eq!(t.handle(), Some(1));
    assert_eq!(t.flags(), Some(0));
}

#[test]
fn base_chain_from_nft_and_from_kernel() {
    // nft -f - (chain input { type filter hook input priority filter; policy accept; })
    let sent = parse(
        "50000000030a010403000000000000000100000006000100740000000a000300696e7075740000000b00070066696c746572000008000500000000011400048008000100000000010800020000000000",
    );
    assert_eq!(sent.flags, NLM_F_REQUEST | NLM_F_CREATE);
    let NftBody::NewChain(c) = &sent.body else {
        panic!()
    };
    assert_eq!(
        (c.table(), c.name(), c.chain_type()),
        (Some("t"), Some("input"), Some("filter"))
    );
    assert_eq!(c.policy(), Some(VerdictCode::Accept));
    let hook = c.hook().unwrap();
    assert_eq!(
        hook.flags,
        netlink_packet_core::NLA_F_NESTED,
        "libnftnl flags its nests"
    );
    assert_eq!(
        (hook.hooknum(), hook.priority()),
        (Some(NF_INET_LOCAL_IN), Some(0))
    );

    // nft -a list ruleset: the kernel's dump of the same chain.
    let dumped = parse(
        "6c000000030a020000000000a52000000100000206000100740000000a000300696e7075740000000c0002000000000000000002140004000800010000000001080002000000000008000500000000010b00070066696c746572000008000a00000000010800060000000009",
    );
    let NftBody::NewChain(c) = &dumped.body else {
        panic!()
    };
    assert_eq!(dumped.flags, NLM_F_MULTI);
    assert_eq!(c.handle(), Some(2));
    assert_eq!(
        c.hook().unwrap().flags,
        0,
        "the kernel dumps nests without the flag"
    );
    assert_eq!(c.hook().unwrap().hooknum(), Some(NF_INET_LOCAL_IN));
    assert_eq!(c.flags(), Some(NFT_CHAIN_BASE));
    assert_eq!(c.use_count(), Some(9));
    // Wire order is kept: table, name, handle, hook, policy, type, flags, use.
    let ids: Vec<u16> = c.attrs.iter().map(ChainAttr::id).collect();
    assert_eq!(ids, [1, 3, 2, 4, 5, 7, 10, 6]);
}

#[test]
fn iptables_rule_with_compat_match() {
    // iptables-nft -A INPUT -p tcp -m tcp --dport 22 -m comment --comment foo
    let m = parse(concat!(
        "4c020000060a010c0400000000000000020000000b00010066696c74657200000a000200494e5055540000000c020480",
        "24000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d7000",
        "20000280080001000000000108000200000000000c0003800500010006000000340001800c0001007061796c6f616400",
        "2400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d7000",
        "20000280080001000000000108000200000000000c00038006000100001600002c0101800a0001006d61746368000000",
        "1c0102800c000100636f6d6d656e7400080002000000000004010300666f6f0000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000002c000180",
        "0c000100636f756e746572001c0002800c00010000000000000000000c00020000000000000000001400058008000100",
        "000000060800020000000000",
    ));
    assert_eq!(m.flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND);
    assert_eq!(m.family(), crate::extra::NFPROTO_IPV4);
    let NftBody::NewRule(r) = &m.body else {
        panic!()
    };
    assert_eq!((r.table(), r.chain()), (Some("filter"), Some("INPUT")));
    let names: Vec<&str> = r.exprs().map(Expr::name).collect();
    assert_eq!(names, ["meta", "cmp", "payload", "cmp", "match", "counter"]);
    let Some(Expr::Match(mt)) = r.exprs().nth(4) else {
        panic!()
    };
    assert_eq!((mt.ext_name(), mt.rev()), (Some("comment"), Some(0)));
    let info = mt.info().unwrap();
    assert_eq!(info.len(), 256, "struct xt_comment_info");
    assert_eq!(&info[..4], b"foo\0");
    let compat = r.compat().unwrap();
    assert_eq!((compat.proto(), compat.flags()), (Some(6), Some(0)));
}

#[test]
fn set_with_concatenated_key() {
    // nft -f - (set c { type ipv4_addr . inet_service; flags interval; })
    let m = parse(
        "78000000090a010408000000000000000100000006000100740000000600020063000000080003000000008408000400000001cd080005000000000808000a0000000002200009801c0002800c00018008000100000000040c000180080001000000000214000d00000400000000030800040d0000000100",
    );
    let NftBody::NewSet(s) = &m.body else {
        panic!()
    };
    assert_eq!(s.name(), Some("c"));
    assert_eq!(s.flags(), Some(NFT_SET_INTERVAL | NFT_SET_CONCAT));
    assert_eq!(s.key_len(), Some(8));
    assert_eq!(s.id(), Some(2));
    assert_eq!(s.desc().unwrap().concat_lens(), Some(vec![4, 2]));
    assert_eq!(s.userdata().map(<[u8]>::len), Some(16));
}

#[test]
fn verdict_map_elements_numbered_by_libnftnl() {
    // nft -f - (map m { type ipv4_addr : verdict; elements = { 1.1.1.1 : drop, 2.2.2.2 : jump other } })
    let m = parse(
        "7c0000000c0a01040b00000000000000010000000600010074000000060002006d000000080004000000000350000380200001800c0001800800010001010101100002800c00028008000100000000002c0002800c00018008000100020202021c0002801800028008000100fffffffd0a0002006f74686572000000",
    );
    let NftBody::NewSetElem(l) = &m.body else {
        panic!()
    };
    assert_eq!(
        (l.table(), l.set(), l.set_id()),
        (Some("t"), Some("m"), Some(3))
    );
    // libnftnl numbers the element nests 1, 2; the kernel ignores the number.
    let ids: Vec<u16> = l
        .elements()
        .unwrap()
        .items
        .iter()
        .map(|e| match e {
            ListElem::Elem { id, .. } => *id,
            ListElem::Other(a) => panic!("raw element {a:?}"),
        })
        .collect();
    assert_eq!(ids, [1, 2]);
    let elems: Vec<_> = l.elems().collect();
    assert_eq!(
        elems[0].key().unwrap().value_bytes(),
        Some(&[1, 1, 1, 1][..])
    );
    assert_eq!(
        elems[0].data().unwrap().verdict_code(),
        Some(VerdictCode::Drop)
    );
    assert_eq!(
        elems[1].key().unwrap().value_bytes(),
        Some(&[2, 2, 2, 2][..])
    );
    let v = elems[1].data().unwrap().verdict_attrs().unwrap();
    assert_eq!(
        (v.code(), v.chain()),
        (Some(VerdictCode::Jump), Some("other"))
    );
}

#[test]
fn element_dump_with_comment_from_kernel() {
    // nft -a list ruleset: set e { elements = { 5.5.5.5 comment "hello" } }
    let m = parse("440000000c0a020000000000a52000000100000206000100740000000600020065000000200003001c0001000c00010008000100050505050c000600000668656c6c6f00");
    let NftBody::NewSetElem(l) = &m.body else {
        panic!()
    };
    let e = l.elems().next().unwrap();
    assert_eq!(e.flags, 0);
    assert_eq!(e.key().unwrap().value_bytes(), Some(&[5, 5, 5, 5][..]));
    // nft's comment TLV: type 0 (NFTNL_UDATA_SET_ELEM_COMMENT), length 6, "hello\0".
    assert_eq!(e.userdata(), Some(&b"\x00\x06hello\0"[..]));
}

#[test]
fn generation_answer() {
    // nft -f -: the NEWGEN answer to GETGEN.
    let m = parse(
        "2c0000000f0a0000000000009d200000000000010800010000000001080002000000209d080003006e667400",
    );
    let NftBody::NewGen(g) = &m.body else {
        panic!()
    };
    assert_eq!(m.family(), crate::extra::NFPROTO_UNSPEC);
    assert_eq!(m.nfgen.res_id, 1);
    assert_eq!(g.id(), Some(1));
    assert_eq!(g.proc_pid(), Some(0x209d));
    assert_eq!(g.proc_name(), Some("nft"));
}

#[test]
fn objects_typed_by_their_type() {
    // nft -f - (counter cnt { packets 5 bytes 7 })
    let m = parse("48000000120a0104040000000000000001000000060001007400000008000200636e740008000300000000011c0004800c00010000000000000000070c0002000000000000000005");
    let NftBody::NewObj(o) = &m.body else {
        panic!()
    };
    assert_eq!(
        (o.name(), o.obj_type()),
        (Some("cnt"), Some(ObjType::Counter))
    );
    let Some(ObjData::Counter(c)) = o.data() else {
        panic!("{o:?}")
    };
    assert_eq!(
        c.items,
        [
            crate::expr::counter::CounterAttr::Bytes(7),
            crate::expr::counter::CounterAttr::Packets(5)
        ]
    );

    // nft add ct expectation ip test-ip4 ctexpect1 '{ protocol tcp; dport 1234; timeout 2m; size 12; }'
    let m = parse("60000000120a01040100000000000000020000000d000100746573742d697034000000000e00020063746578706563743100000008000300000000092400048005000200060000000600030004d2000008000400c0d40100050005000c000000");
    let NftBody::NewObj(o) = &m.body else {
        panic!()
    };
    let Some(ObjData::CtExpect(e)) = o.data() else {
        panic!("{o:?}")
    };
    use crate::msg::obj::CtExpectAttr::*;
    assert_eq!(
        e.items,
        [
            L4proto(6),
            Dport(1234),
            Timeout(crate::typed::HostU32(120_000)),
            Size(12)
        ]
    );

    // nft add ct helper ip test-ip4 cthelp1 '{ type "ftp" protocol tcp; }'
    let m = parse("4c000000120a01040100000000000000020000000d000100746573742d697034000000000c000200637468656c70310008000300000000031400048007000100667470000500030006000000");
    let NftBody::NewObj(o) = &m.body else {
        panic!()
    };
    let Some(ObjData::CtHelper(h)) = o.data() else {
        panic!("{o:?}")
    };
    // nft sends the helper name without its NUL (mnl_attr_put_str); it stays so.
    let ftp = crate::typed::Str {
        text: "ftp".into(),
        nul: false,
    };
    assert_eq!(h.items[0], crate::msg::obj::CtHelperAttr::Name(ftp));

    // nft add ct timeout ip test-ip4 cttime1 '{ protocol tcp; policy = { established:122 } ;}'
    let m = parse(concat!(
        "a0000000120a01040100000000000000020000000d000100746573742d697034000000000c000200637474696d6531000800030000000007",
        "6800048005000200060000005c0003800800010000000078080002000000003c080003000000007a0800040000000078080005000000003c",
        "080006000000001e0800070000000078080008000000000a080009000000007808000a000000012c08000b000000012c",
    ));
    let NftBody::NewObj(o) = &m.body else {
        panic!()
    };
    let Some(ObjData::CtTimeout(t)) = o.data() else {
        panic!("{o:?}")
    };
    let crate::msg::obj::CtTimeoutAttr::Data(policy) = &t.items[1] else {
        panic!()
    };
    // Established (CTA_TIMEOUT_TCP_ESTABLISHED = 3) is 122 s; the rest are defaults.
    assert_eq!(policy.items[2], crate::attr::Attr::u32_be(3, 122));
}

#[test]
fn flowtable_as_nft_sends_it() {
    // nft add flowtable inet t ft '{ hook ingress priority filter; devices = { lo }; counter; }'
    let m = parse("4c000000160a01040100000000000000010000000600010074000000070002006674000020000380080001000000000008000200000000000c000380070001006c6f00000800070000000002");
    let NftBody::NewFlowtable(f) = &m.body else {
        panic!()
    };
    assert_eq!(f.name(), Some("ft"));
    assert_eq!(f.flags(), Some(NFT_FLOWTABLE_COUNTER));
    let hook = f.hook().unwrap();
    assert_eq!((hook.num(), hook.priority()), (Some(0), Some(0)));
    assert_eq!(device_names(hook.devs().unwrap()), ["lo"]);
}

#[test]
fn trace_event_from_kernel() {
    // nft monitor, while a traced UDP datagram walks `chain input`.
    let m = parse("58000000110a000000000000000000000100000008000f000000000208000400000000030800060029f667050a000200696e70757400000006000100740000000c00030000000000000000140c00050008000100ffffffff");
    let NftBody::Trace(t) = &m.body else { panic!() };
    assert_eq!(t.nfproto(), Some(crate::consts::NFPROTO_IPV4));
    assert_eq!(t.trace_type(), Some(TraceType::Rule));
    assert_eq!(t.id(), Some(0x29f6_6705));
    assert_eq!(
        (t.table(), t.chain(), t.rule_handle()),
        (Some("t"), Some("input"), Some(20))
    );
    assert_eq!(t.verdict().unwrap().code(), Some(VerdictCode::Continue));
}

#[test]
fn batch_delimiters() {
    // nft: BEGIN with res_id = NFNL_SUBSYS_NFTABLES in network order, no attributes.
    let begin = parse("140000001000010000000000000000000000000a");
    assert!(matches!(begin.body, NftBody::BatchBegin(_)));
    assert_eq!(begin.batch_subsys(), Some(NFNL_SUBSYS_NFTABLES));
    let end = parse("14000000110001001b000000000000000000000a");
    assert!(matches!(end.body, NftBody::BatchEnd(_)));
    assert_eq!(end.seq, 0x1b);
    // iptables-nft: BEGIN carries its generation id.
    let begin = parse("1c0000001000010001000000000000000000000a0800010000000001");
    let NftBody::BatchBegin(b) = &begin.body else {
        panic!()
    };
    assert_eq!(b.genid(), Some(1));
    // Older libnftnl wrote res_id in host order.
    let old = NftMessage::new(
        0,
        0,
        0,
        NfGenMsg {
            family: 0,
            version: 0,
            res_id: 0x0a00,
        },
        NftBody::BatchBegin(Batch::default()),
    );
    assert_eq!(old.batch_subsys(), Some(NFNL_SUBSYS_NFTABLES));
}

#[test]
fn compat_revision_query_and_answer() {
    // iptables-nft -A INPUT -p tcp -m tcp --dport 22 ...: which revision of `tcp`?
    let q = parse(
        "2c000000000b05006f88086b0000000002000000080001007463700008000200000000000800030000000000",
    );
    assert_eq!(q.msg_type(), NFT_COMPAT_GET_TYPE);
    assert_eq!(q.flags, NLM_F_REQUEST | NLM_F_ACK);
    let NftBody::CompatGet(c) = &q.body else {
        panic!()
    };
    assert_eq!(
        (c.name(), c.rev(), c.ext_type()),
        (Some("tcp"), Some(0), Some(0))
    );
    let a = parse(
        "2c000000000b02006f88086ba4e9afe502000000080001007463700008000200000000000800030000000000",
    );
    assert_eq!(a.seq, q.seq);
    assert!(matches!(a.body, NftBody::CompatGet(_)));
}

#[test]
fn garbage_padding_is_kept() {
    // iptables-nft (xt policy test): GETCHAIN whose last string is followed by two
    // uninitialised padding bytes. The kernel ignores them; the round trip keeps them.
    let m = parse(
        "2c000000040a0500000000000000000002000000 0b00010066696c74657200000a000300494e505554004400",
    );
    let NftBody::GetChain(c) = &m.body else {
        panic!()
    };
    assert_eq!(c.name(), Some("INPUT"));
    assert_eq!(m.padding, [(26, 0x44)]);
    // Nothing built here carries padding.
    let rebuilt = NftMessage {
        padding: Vec::new(),
        ..m.clone()
    };
    assert_eq!(&rebuilt.payload()[20..], b"INPUT\0\0\0");
}

#[test]
fn unknown_and_inexact_messages_stay_raw() {
    // A message type of another subsystem.
    let raw = NlMsg::nf(
        0x0101,
        NLM_F_REQUEST,
        1,
        0,
        NfGenMsg::new(2, 0),
        &[Attr::u32_be(1, 1)],
    );
    let m = NftMessage::parse(&raw).unwrap();
    assert_eq!(
        m.body,
        NftBody::Unknown {
            msg_type: 0x0101,
            payload: raw.payload[4..].to_vec()
        }
    );
    assert_eq!(m.to_nlmsg(), raw);
    // Control messages are not nfnetlink messages.
    assert_eq!(NftMessage::parse(&crate::message::done(0, 0, None)), None);
    // A table message whose last attribute is not padded cannot be re-emitted typed.
    let mut payload = NfGenMsg::new(2, 0).to_bytes().to_vec();
    payload.extend_from_slice(&[6, 0, 1, 0, b't', 0]);
    let odd = NlMsg::new(nft_type(NFT_MSG_NEWTABLE), 0, 0, 0, payload.clone());
    let m = NftMessage::parse(&odd).unwrap();
    assert!(matches!(m.body, NftBody::Unknown { .. }));
    assert_eq!(m.payload(), payload);
    // Trailing bytes after the last attribute are kept.
    let mut payload = NfGenMsg::new(2, 0).to_bytes().to_vec();
    Attr::strz(1, "t").emit(&mut payload);
    payload.extend_from_slice(&[1, 2]);
    let m = NftMessage::parse(&NlMsg::new(
        nft_type(NFT_MSG_NEWTABLE),
        0,
        0,
        0,
        payload.clone(),
    ))
    .unwrap();
    let NftBody::NewTable(t) = &m.body else {
        panic!()
    };
    assert_eq!(t.name(), Some("t"));
    assert_eq!(m.trailing, [1, 2]);
    assert_eq!(m.payload(), payload);
}

#[test]
fn built_messages_parse_back() {
    use crate::expr::{cmp, immediate, meta, payload, ExprList};
    use crate::msg::rule::RuleAttr;
    let rule = Rule::new(vec![
        RuleAttr::Table("filter".into()),
        RuleAttr::Chain("INPUT".into()),
        RuleAttr::Expressions(ExprList::from_exprs([
            Expr::Meta(meta::Meta::new(vec![
                meta::MetaAttr::Key(meta::MetaKey::L4proto),
                meta::MetaAttr::Dreg(crate::data::Register::Reg1),
            ])),
            Expr::Cmp(cmp::Cmp::new(vec![
                cmp::CmpAttr::Sreg(crate::data::Register::Reg1),
                cmp::CmpAttr::Op(cmp::CmpOp::Eq),
                cmp::CmpAttr::Data(Nest::value([6])),
            ])),
            Expr::Payload(payload::Payload::new(vec![payload::PayloadAttr::Dreg(
                crate::data::Register::Reg1,
            )])),
            Expr::Immediate(immediate::Immediate::new(vec![
                immediate::ImmediateAttr::Dreg(crate::data::Register::Verdict),
                immediate::ImmediateAttr::Data(Nest::verdict(VerdictCode::Accept, None)),
            ])),
        ])),
    ]);
    let m = NftMessage::new(
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND,
        3,
        0,
        NfGenMsg::new(crate::extra::NFPROTO_IPV4, 0),
        NftBody::NewRule(rule),
    );
    let bytes = m.to_bytes();
    let back = parse(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    assert_eq!(back, m);
}
