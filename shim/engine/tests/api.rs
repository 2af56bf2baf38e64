//! The engine's API as the daemon uses it: callers without CAP_NET_ADMIN, NETLINK_CAP_ACK,
//! data plane checks and refusals, the committed view, echo and multicast, and
//! persistence of the whole state.

use std::sync::{Arc, Mutex};

use nftshim_engine::{Caller, Dataplane, DataplaneError, Netns, NoDataplane, RulesetView};

const REQ: u16 = 1;
const ACK: u16 = 4;
const ECHO: u16 = 8;
const DUMP: u16 = 0x300;
const CREATE: u16 = 0x400;
const APPEND: u16 = 0x800;

fn caller() -> Caller {
    Caller {
        portid: 77,
        pid: 1234,
        comm: "nft".into(),
        ext_ack: true,
        cap_ack: false,
        net_admin: true,
        private_cgroupns: false,
        netns_private_userns: false,
    }
}

fn attr(kind: u16, v: &[u8]) -> Vec<u8> {
    let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(v);
    a.resize((a.len() + 3) & !3, 0);
    a
}

fn strz(kind: u16, s: &str) -> Vec<u8> {
    attr(kind, &[s.as_bytes(), b"\0"].concat())
}

fn nest(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | 0x8000, &children.concat())
}

fn msg(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body = attrs.concat();
    let mut m = ((20 + body.len()) as u32).to_ne_bytes().to_vec();
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0]);
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(&body);
    m
}

fn nft(t: u16) -> u16 {
    (10 << 8) | t
}

fn batch(msgs: &[Vec<u8>]) -> Vec<u8> {
    let n = msgs.len() as u32;
    [
        msg(0x10, REQ, 0, 0, 10, &[]),
        msgs.concat(),
        msg(0x11, REQ, n + 1, 0, 10, &[]),
    ]
    .concat()
}

fn table(seq: u32, name: &str) -> Vec<u8> {
    msg(nft(0), REQ, seq, 2, 0, &[strz(1, name)])
}

fn chain(seq: u32, table: &str, name: &str) -> Vec<u8> {
    msg(
        nft(3),
        REQ | CREATE,
        seq,
        2,
        0,
        &[strz(1, table), strz(3, name)],
    )
}

/// A rule with one expression: `counter` or `reject`.
fn rule(seq: u32, flags: u16, table: &str, chain: &str, expr: &str) -> Vec<u8> {
    // reject: NFTA_REJECT_TYPE NFT_REJECT_TCP_RST.
    let data = if expr == "reject" {
        vec![attr(1, &1u32.to_be_bytes())]
    } else {
        vec![]
    };
    let e = nest(1, &[strz(1, expr), nest(2, &data)]);
    msg(
        nft(6),
        REQ | CREATE | APPEND | flags,
        seq,
        2,
        0,
        &[strz(1, table), strz(2, chain), nest(4, &[e])],
    )
}

/// (type, flags, error) of every message in the records.
fn summary(records: &[Vec<u8>]) -> Vec<(u16, u16, i32)> {
    let mut out = Vec::new();
    for r in records {
        let mut pos = 0;
        while pos + 16 <= r.len() {
            let len = u32::from_ne_bytes(r[pos..pos + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes([r[pos + 4], r[pos + 5]]);
            let fl = u16::from_ne_bytes([r[pos + 6], r[pos + 7]]);
            let err = if ty == 2 {
                i32::from_ne_bytes(r[pos + 16..pos + 20].try_into().unwrap())
            } else {
                0
            };
            out.push((ty, fl, err));
            pos += (len + 3) & !3;
        }
    }
    out
}

fn dump_all(ns: &mut Netns) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for t in [1u16, 4, 7, 10, 19, 23] {
        out.extend(
            ns.handle_datagram(
                &caller(),
                &msg(nft(t), REQ | DUMP, 9, 0, 0, &[]),
                &mut NoDataplane,
            )
            .unicast,
        );
    }
    out
}

#[test]
fn without_net_admin_the_first_message_gets_eperm() {
    let mut ns = Netns::new();
    let c = Caller {
        net_admin: false,
        ..caller()
    };
    let out = ns.handle_datagram(&c, &batch(&[table(1, "t")]), &mut NoDataplane);
    assert_eq!(summary(&out.unicast), vec![(2, 0, -1)]);
    assert!(out.multicast.is_empty());
    assert_eq!(ns.genid(), 1);
}

#[test]
fn cap_ack_leaves_the_request_out_of_errors() {
    let mut ns = Netns::new();
    let get = msg(nft(1), REQ, 5, 2, 0, &[strz(1, "nosuch")]);
    let full = ns
        .handle_datagram(&caller(), &get, &mut NoDataplane)
        .unicast;
    let capped = ns
        .handle_datagram(
            &Caller {
                cap_ack: true,
                ..caller()
            },
            &get,
            &mut NoDataplane,
        )
        .unicast;
    assert_eq!(summary(&full)[0].2, -2);
    assert_eq!(summary(&capped), vec![(2, 0x100 | 0x200, -2)]);
    assert!(capped[0].len() < full[0].len());
}

#[test]
fn generation_starts_at_one_and_counts_commits() {
    let mut ns = Netns::new();
    assert_eq!(ns.genid(), 1);
    ns.handle_datagram(&caller(), &batch(&[table(1, "t")]), &mut NoDataplane);
    assert_eq!(ns.genid(), 2);
    // A batch that changes nothing commits nothing.
    ns.handle_datagram(&caller(), &batch(&[table(1, "t")]), &mut NoDataplane);
    assert_eq!(ns.genid(), 2);
    ns.handle_datagram(&caller(), &batch(&[chain(1, "t", "c")]), &mut NoDataplane);
    assert_eq!(ns.genid(), 3);
    let gen = ns
        .handle_datagram(
            &caller(),
            &msg(nft(16), REQ, 3, 0, 0, &[]),
            &mut NoDataplane,
        )
        .unicast;
    assert_eq!(u16::from_be_bytes([gen[0][18], gen[0][19]]), 3);
}

/// Records what it was asked and refuses rules with `reject`.
#[derive(Clone, Default)]
struct Recorder {
    applied: Arc<Mutex<Vec<usize>>>,
}

fn rules_in(view: &RulesetView<'_>) -> usize {
    view.tables()
        .iter()
        .flat_map(|t| t.chains.iter())
        .map(|c| c.rules.len())
        .sum()
}

impl Dataplane for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn enforces(&self) -> bool {
        true
    }
    fn check(&self, proposed: &RulesetView<'_>) -> Result<(), DataplaneError> {
        let reject = proposed
            .tables()
            .iter()
            .flat_map(|t| t.chains.iter())
            .flat_map(|c| c.rules.iter())
            .any(|r| r.exprs.iter().any(|e| e.name == "reject"));
        if reject {
            return Err(DataplaneError {
                errno: 95,
                reason: "reject is not enforceable here".into(),
            });
        }
        Ok(())
    }
    fn apply(&mut self, committed: &RulesetView<'_>) {
        self.applied.lock().unwrap().push(rules_in(committed));
    }
}

#[test]
fn dataplane_checks_before_commit_and_applies_after() {
    let mut ns = Netns::new();
    let mut dp = Recorder::default();
    ns.handle_datagram(
        &caller(),
        &batch(&[
            table(1, "t"),
            chain(2, "t", "c"),
            rule(3, 0, "t", "c", "counter"),
        ]),
        &mut dp,
    );
    assert_eq!(*dp.applied.lock().unwrap(), vec![1]);
    assert_eq!(ns.genid(), 2);

    let out = ns.handle_datagram(
        &caller(),
        &batch(&[
            rule(1, 0, "t", "c", "counter"),
            rule(2, 0, "t", "c", "reject"),
        ]),
        &mut dp,
    );
    // The refusal aborts the batch; like a kernel commit error it names the first message.
    assert_eq!(summary(&out.unicast), vec![(2, 0, -95)]);
    assert_eq!(
        u32::from_ne_bytes(out.unicast[0][28..32].try_into().unwrap()),
        1,
        "error for seq 1"
    );
    assert!(out.multicast.is_empty());
    assert_eq!(ns.genid(), 2);
    assert_eq!(rules_in(&ns.view()), 1);
    assert_eq!(*dp.applied.lock().unwrap(), vec![1]);
}

#[test]
fn echo_goes_to_the_sender_and_skips_it_in_the_group() {
    let mut ns = Netns::new();
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[msg(nft(0), REQ | ECHO, 1, 2, 0, &[strz(1, "t")])]),
        &mut NoDataplane,
    );
    // NEWTABLE, then NEWGEN (the first message asked for an echo), each by unicast too.
    assert_eq!(
        summary(&out.unicast)
            .iter()
            .map(|m| m.0)
            .collect::<Vec<_>>(),
        vec![nft(0), nft(15)]
    );
    assert_eq!(out.multicast.len(), 2);
    assert!(out.multicast.iter().all(|(g, _)| *g == 7));
    assert_eq!(out.multicast_skip_portid, vec![Some(77), Some(77)]);
    let quiet = ns.handle_datagram(&caller(), &batch(&[chain(1, "t", "c")]), &mut NoDataplane);
    assert!(quiet.unicast.is_empty());
    assert_eq!(quiet.multicast_skip_portid, vec![None, None]);
}

#[test]
fn acks_only_when_asked_or_failing() {
    let mut ns = Netns::new();
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[
            table(1, "t"),
            msg(
                nft(3),
                REQ | CREATE | ACK,
                2,
                2,
                0,
                &[strz(1, "t"), strz(3, "c")],
            ),
            chain(3, "nosuch", "c"),
        ]),
        &mut NoDataplane,
    );
    assert_eq!(summary(&out.unicast), vec![(2, 0x100, 0), (2, 0x200, -2)]);
    assert_eq!(ns.genid(), 1, "a failing message aborts the whole batch");
}

#[test]
fn persisted_state_lists_and_continues_identically() {
    let mut ns = Netns::new();
    ns.handle_datagram(
        &caller(),
        &batch(&[
            table(1, "t"),
            chain(2, "t", "c"),
            rule(3, 0, "t", "c", "counter"),
            rule(4, 0, "t", "c", "counter"),
        ]),
        &mut NoDataplane,
    );
    // A failed batch still uses up handles, as in the kernel.
    ns.handle_datagram(
        &caller(),
        &batch(&[rule(1, 0, "t", "c", "counter"), chain(2, "nosuch", "x")]),
        &mut NoDataplane,
    );
    let json = ns.to_persisted();
    let text = serde_json::to_string(&json).unwrap();
    let mut back = Netns::from_persisted(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back.genid(), ns.genid());
    assert_eq!(dump_all(&mut back), dump_all(&mut ns));
    let next = batch(&[rule(1, ECHO, "t", "c", "counter")]);
    let a = ns.handle_datagram(&caller(), &next, &mut NoDataplane);
    let b = back.handle_datagram(&caller(), &next, &mut NoDataplane);
    assert_eq!(a.unicast, b.unicast);
    assert_eq!(dump_all(&mut back), dump_all(&mut ns));
    // Handles: 1 the chain, 2 and 3 the rules, 4 taken by the failed batch, 5 the new rule.
    let rules: Vec<u64> = back.view().tables()[0].chains[0]
        .rules
        .iter()
        .map(|r| r.handle)
        .collect();
    assert_eq!(rules, vec![2, 3, 5]);
}

#[test]
fn state_changed_reports_what_must_be_saved() {
    let mut ns = Netns::new();
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[table(1, "t"), chain(2, "t", "c")]),
        &mut NoDataplane,
    );
    assert!(out.state_changed, "a commit");
    let out = ns.handle_datagram(
        &caller(),
        &msg(nft(1), REQ | DUMP, 1, 0, 0, &[]),
        &mut NoDataplane,
    );
    assert!(!out.state_changed, "a dump");
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[rule(1, 0, "t", "c", "counter"), chain(2, "nosuch", "x")]),
        &mut NoDataplane,
    );
    assert_eq!(ns.genid(), 2);
    assert!(out.state_changed, "an aborted batch that used up a handle");
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[chain(1, "nosuch", "x")]),
        &mut NoDataplane,
    );
    assert!(!out.state_changed, "an aborted batch that changed nothing");
    ns.handle_datagram(
        &caller(),
        &batch(&[rule(1, 0, "t", "c", "counter")]),
        &mut NoDataplane,
    );
    // NFT_MSG_GETRULE_RESET.
    let out = ns.handle_datagram(
        &caller(),
        &msg(nft(25), REQ | DUMP, 1, 0, 0, &[]),
        &mut NoDataplane,
    );
    assert!(out.state_changed, "a counter reset");
}

#[test]
fn closing_the_owner_socket_drops_its_tables() {
    const OWNER: u32 = 2;
    const PERSIST: u32 = 4;
    let mut ns = Netns::new();
    let owned = |seq: u32, name: &str, flags: u32| {
        msg(
            nft(0),
            REQ,
            seq,
            2,
            0,
            &[strz(1, name), attr(2, &flags.to_be_bytes())],
        )
    };
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[
            owned(1, "mine", OWNER),
            owned(2, "kept", OWNER | PERSIST),
            table(3, "other"),
        ]),
        &mut NoDataplane,
    );
    assert_eq!(summary(&out.unicast), vec![]);
    let genid = ns.genid();
    let applied = Arc::new(Mutex::new(0));
    struct Count(Arc<Mutex<u32>>);
    impl Dataplane for Count {
        fn name(&self) -> &'static str {
            "count"
        }
        fn enforces(&self) -> bool {
            false
        }
        fn apply(&mut self, _: &RulesetView<'_>) {
            *self.0.lock().unwrap() += 1;
        }
    }
    assert!(!ns.socket_closed(caller().portid + 1, &mut Count(applied.clone())));
    assert!(ns.socket_closed(caller().portid, &mut Count(applied.clone())));
    assert_eq!(*applied.lock().unwrap(), 1);
    assert_eq!(ns.genid(), genid, "no new generation");
    let names: Vec<(String, u32)> = ns
        .view()
        .tables()
        .iter()
        .map(|t| (t.name.clone(), t.flags))
        .collect();
    assert_eq!(
        names,
        vec![("kept".to_string(), PERSIST), ("other".to_string(), 0)]
    );
}

/// Scale check (run with `--ignored --release`): a kube-proxy-sized ruleset.
#[test]
#[ignore]
fn large_rulesets_stay_fast() {
    let mut ns = Netns::new();
    let t0 = std::time::Instant::now();
    let mut msgs = vec![table(1, "t")];
    let mut seq = 2;
    for i in 0..2000 {
        msgs.push(chain(seq, "t", &format!("c{i}")));
        seq += 1;
    }
    for i in 0..20000 {
        msgs.push(rule(seq, 0, "t", &format!("c{}", i % 2000), "counter"));
        seq += 1;
    }
    let out = ns.handle_datagram(&caller(), &batch(&msgs), &mut NoDataplane);
    assert!(out.unicast.is_empty());
    eprintln!("load 2000 chains, 20000 rules: {:?}", t0.elapsed());
    let t1 = std::time::Instant::now();
    let dumped: usize = dump_all(&mut ns).iter().map(|r| r.len()).sum();
    eprintln!("dump everything ({dumped} bytes): {:?}", t1.elapsed());
    let t2 = std::time::Instant::now();
    for i in 0..50 {
        ns.handle_datagram(
            &caller(),
            &batch(&[rule(1, 0, "t", &format!("c{i}"), "counter")]),
            &mut NoDataplane,
        );
    }
    eprintln!("50 single-rule batches: {:?}", t2.elapsed());
}

/// Hands out what a data plane counted, once.
struct Counted(Vec<nftshim_engine::CountDelta>);

impl Dataplane for Counted {
    fn name(&self) -> &'static str {
        "counted"
    }
    fn enforces(&self) -> bool {
        true
    }
    fn take_counts(&mut self) -> Vec<nftshim_engine::CountDelta> {
        std::mem::take(&mut self.0)
    }
}

/// NFTA_COUNTER_PACKETS and NFTA_COUNTER_BYTES of the rule's first expression.
fn rule_counter(ns: &Netns) -> (u64, u64) {
    let t = &ns.view().tables()[0];
    let e = &t.chains[0].rules[0].exprs[0];
    let get = |id: u16| {
        e.data
            .iter()
            .find(|a| a.id() == id)
            .map(|a| u64::from_be_bytes(a.value.as_slice().try_into().unwrap()))
            .unwrap()
    };
    (get(2), get(1))
}

#[test]
fn dumps_show_what_the_dataplane_counted_and_resets_zero_it() {
    use nftshim_engine::{CountDelta, CounterRef};
    let mut ns = Netns::new();
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[
            table(1, "t"),
            chain(2, "t", "c"),
            rule(3, 0, "t", "c", "counter"),
        ]),
        &mut NoDataplane,
    );
    assert_eq!(summary(&out.unicast), vec![]);
    let t = &ns.view().tables()[0];
    let counter = CounterRef::Rule {
        table: t.handle,
        rule: t.chains[0].rules[0].handle,
        expr: 0,
    };
    let gone = CounterRef::Rule {
        table: t.handle,
        rule: 999,
        expr: 0,
    };
    let deltas = |packets, bytes| {
        vec![
            CountDelta {
                counter,
                packets,
                bytes,
            },
            CountDelta {
                counter: gone,
                packets: 1,
                bytes: 1,
            },
        ]
    };
    // The persisted state shows every change of the counter: rules keep their JSON
    // between commits, and a changed counter must not list the old one.
    let persisted_counter = |ns: &Netns| {
        let restored = Netns::from_persisted(ns.to_persisted()).expect("state restores");
        rule_counter(&restored)
    };
    assert_eq!(persisted_counter(&ns), (0, 0));
    // A table dump does not read counters; a rule dump does.
    let mut dp = Counted(deltas(3, 252));
    ns.handle_datagram(&caller(), &msg(nft(1), REQ | DUMP, 8, 0, 0, &[]), &mut dp);
    assert_eq!(rule_counter(&ns), (0, 0));
    let out = ns.handle_datagram(&caller(), &msg(nft(7), REQ | DUMP, 9, 0, 0, &[]), &mut dp);
    let want: Vec<u8> = [attr(1, &252u64.to_be_bytes()), attr(2, &3u64.to_be_bytes())].concat();
    assert!(
        out.unicast
            .iter()
            .any(|r| r.windows(want.len()).any(|w| w == want)),
        "the dump carries bytes 252 packets 3"
    );
    assert_eq!(rule_counter(&ns), (3, 252));
    assert_eq!(persisted_counter(&ns), (3, 252));
    // GETRULE_RESET: what was counted until now, then zero.
    let mut dp = Counted(deltas(2, 168));
    ns.handle_datagram(&caller(), &msg(nft(25), REQ | DUMP, 10, 0, 0, &[]), &mut dp);
    assert_eq!(rule_counter(&ns), (0, 0));
    assert_eq!(persisted_counter(&ns), (0, 0));
    let mut dp = Counted(deltas(1, 84));
    ns.handle_datagram(&caller(), &msg(nft(7), REQ | DUMP, 11, 0, 0, &[]), &mut dp);
    assert_eq!(rule_counter(&ns), (1, 84));
    assert_eq!(persisted_counter(&ns), (1, 84));
}

/// A rule's persisted form follows a rename of the chain it jumps to (rules keep their
/// JSON between commits; the rename rewrites the jump).
#[test]
fn persisted_jumps_follow_a_renamed_chain() {
    let jump_to = |target: &str| {
        // immediate: DREG 0 (verdict), DATA { VERDICT { CODE NFT_JUMP, CHAIN target } }.
        let verdict = nest(2, &[attr(1, &(-3i32).to_be_bytes()), strz(2, target)]);
        let e = nest(
            1,
            &[
                strz(1, "immediate"),
                nest(2, &[attr(1, &0u32.to_be_bytes()), nest(2, &[verdict])]),
            ],
        );
        msg(
            nft(6),
            REQ | CREATE | APPEND,
            4,
            2,
            0,
            &[strz(1, "t"), strz(2, "a"), nest(4, &[e])],
        )
    };
    let mut ns = Netns::new();
    let out = ns.handle_datagram(
        &caller(),
        &batch(&[
            table(1, "t"),
            chain(2, "t", "a"),
            chain(3, "t", "b"),
            jump_to("b"),
        ]),
        &mut NoDataplane,
    );
    assert_eq!(summary(&out.unicast), vec![]);
    let before = ns.to_persisted();
    let b = &ns.view().tables()[0].chains[1];
    assert_eq!(b.name, "b");
    let rename = msg(
        nft(3),
        REQ,
        5,
        2,
        0,
        &[strz(1, "t"), attr(2, &b.handle.to_be_bytes()), strz(3, "c")],
    );
    let out = ns.handle_datagram(&caller(), &batch(&[rename]), &mut NoDataplane);
    assert_eq!(summary(&out.unicast), vec![]);
    let restored = Netns::from_persisted(ns.to_persisted()).expect("state restores");
    let jump = |n: &Netns| n.view().tables()[0].chains[0].rules[0].exprs.clone();
    assert_eq!(jump(&restored), jump(&ns));
    assert_ne!(ns.to_persisted(), before, "the rename is persisted");
}
