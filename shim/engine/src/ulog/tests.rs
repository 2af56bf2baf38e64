//! Answers to listener requests, as the kernel (6.18) gave them to a raw
//! NETLINK_NETFILTER socket in a fresh namespace.

use super::*;
use crate::{Netns, NoDataplane};

const REQ: u16 = 1;
const ACK: u16 = 4;
const CONFIG: u16 = (SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;

fn caller(portid: u32) -> Caller {
    Caller {
        portid,
        pid: 1,
        comm: "listener".into(),
        ext_ack: false,
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

fn msg(msg_type: u16, flags: u16, family: u8, group: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![family, 0];
    body.extend_from_slice(&group.to_be_bytes());
    body.extend_from_slice(&attrs.concat());
    let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&body);
    m
}

fn cmd(c: u8) -> Vec<u8> {
    attr(NFULA_CFG_CMD, &[c])
}

fn mode(copy_mode: u8, range: u32) -> Vec<u8> {
    let mut v = range.to_be_bytes().to_vec();
    v.extend_from_slice(&[copy_mode, 0]);
    attr(NFULA_CFG_MODE, &v)
}

/// The errno of the one answer (0 for an ACK), or None without an answer.
fn answer(ns: &mut Netns, portid: u32, m: &[u8]) -> Option<i32> {
    let out = ns.handle_datagram(&caller(portid), m, &mut NoDataplane);
    assert!(out.unicast.len() <= 1, "one answer at most");
    out.unicast.first().map(|r| {
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 2, "an NLMSG_ERROR");
        -i32::from_ne_bytes([r[16], r[17], r[18], r[19]])
    })
}

fn config(ns: &mut Netns, portid: u32, family: u8, group: u16, attrs: &[Vec<u8>]) -> i32 {
    answer(ns, portid, &msg(CONFIG, REQ | ACK, family, group, attrs)).expect("an ACK")
}

#[test]
fn bind_and_ownership() {
    let mut ns = Netns::new();
    assert_eq!(
        config(&mut ns, 10, 0, 5, &[mode(NFULNL_COPY_PACKET, 100)]),
        ENODEV
    );
    assert_eq!(
        config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_UNBIND)]),
        ENODEV
    );
    assert_eq!(config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]), 0);
    assert_eq!(
        config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]),
        EBUSY
    );
    // Another socket may neither bind nor configure the group.
    assert_eq!(
        config(&mut ns, 11, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]),
        EPERM
    );
    assert_eq!(
        config(&mut ns, 11, 0, 5, &[mode(NFULNL_COPY_PACKET, 1)]),
        EPERM
    );
    // Unknown commands: ENOTSUPP, after the ownership check.
    assert_eq!(config(&mut ns, 10, 0, 5, &[cmd(9)]), ENOTSUPP);
    assert_eq!(config(&mut ns, 11, 0, 5, &[cmd(9)]), EPERM);
    assert_eq!(config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_UNBIND)]), 0);
    assert_eq!(
        config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_UNBIND)]),
        ENODEV
    );
    assert_eq!(config(&mut ns, 11, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]), 0);
    assert_eq!(ns.nflog.get(5).map(|i| i.peer_portid), Some(11));
}

#[test]
fn closing_the_socket_releases_its_groups() {
    let mut ns = Netns::new();
    assert_eq!(config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]), 0);
    assert_eq!(config(&mut ns, 12, 0, 6, &[cmd(NFULNL_CFG_CMD_BIND)]), 0);
    ns.socket_closed(10, &mut NoDataplane);
    assert!(ns.nflog.get(5).is_none());
    assert!(ns.nflog.get(6).is_some());
    assert_eq!(config(&mut ns, 11, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]), 0);
}

#[test]
fn configuration() {
    let mut ns = Netns::new();
    // Bind and mode in one message; copy range 0 means the maximum.
    let bind = [cmd(NFULNL_CFG_CMD_BIND), mode(NFULNL_COPY_PACKET, 0)];
    assert_eq!(config(&mut ns, 10, 0, 7, &bind), 0);
    let defaults = Instance::new(10);
    assert_eq!(ns.nflog.get(7), Some(&defaults));
    // An unknown copy mode and a too small buffer size are ignored, not refused.
    assert_eq!(config(&mut ns, 10, 0, 7, &[mode(7, 100)]), 0);
    let nlbufsiz = attr(NFULA_CFG_NLBUFSIZ, &100u32.to_be_bytes());
    assert_eq!(config(&mut ns, 10, 0, 7, &[nlbufsiz]), 0);
    assert_eq!(ns.nflog.get(7), Some(&defaults));
    let set = [
        mode(NFULNL_COPY_PACKET, 0x20000),
        attr(NFULA_CFG_TIMEOUT, &0u32.to_be_bytes()),
        attr(NFULA_CFG_QTHRESH, &1u32.to_be_bytes()),
        attr(NFULA_CFG_NLBUFSIZ, &65536u32.to_be_bytes()),
        attr(NFULA_CFG_FLAGS, &(NFULNL_CFG_F_SEQ | 8).to_be_bytes()),
    ];
    assert_eq!(config(&mut ns, 10, 0, 7, &set), 0);
    let want = Instance {
        copy_range: COPY_RANGE_MAX,
        flushtimeout: 0,
        qthreshold: 1,
        nlbufsiz: 65536,
        flags: NFULNL_CFG_F_SEQ | 8,
        ..defaults.clone()
    };
    assert_eq!(ns.nflog.get(7), Some(&want));
    assert_eq!(config(&mut ns, 10, 0, 7, &[mode(NFULNL_COPY_META, 100)]), 0);
    assert_eq!(
        ns.nflog.get(7).map(|i| (i.copy_mode, i.copy_range)),
        Some((1, 0))
    );
    // Conntrack attributes: EOPNOTSUPP, and nothing of the message applies.
    let ct = [
        attr(NFULA_CFG_QTHRESH, &5u32.to_be_bytes()),
        attr(NFULA_CFG_FLAGS, &NFULNL_CFG_F_CONNTRACK.to_be_bytes()),
    ];
    assert_eq!(config(&mut ns, 10, 0, 7, &ct), EOPNOTSUPP);
    assert_eq!(ns.nflog.get(7).map(|i| i.qthreshold), Some(1));
}

#[test]
fn malformed_and_other_messages() {
    let mut ns = Netns::new();
    // Attributes shorter than their policy: ERANGE.
    assert_eq!(
        config(
            &mut ns,
            10,
            0,
            5,
            &[attr(NFULA_CFG_MODE, &[0, 0, 0, 100, 2])]
        ),
        ERANGE
    );
    assert_eq!(
        config(&mut ns, 10, 0, 5, &[attr(NFULA_CFG_TIMEOUT, &[0, 0])]),
        ERANGE
    );
    assert_eq!(
        config(&mut ns, 10, 0, 6, &[attr(NFULA_CFG_CMD, &[])]),
        ERANGE
    );
    // Attributes above NFULA_CFG_MAX are ignored.
    assert_eq!(
        config(
            &mut ns,
            10,
            0,
            6,
            &[cmd(NFULNL_CFG_CMD_BIND), attr(7, b"abcd")]
        ),
        0
    );
    // PF_BIND/PF_UNBIND: families up to NFPROTO_NUMPROTO.
    assert_eq!(config(&mut ns, 10, 2, 0, &[cmd(NFULNL_CFG_CMD_PF_BIND)]), 0);
    assert_eq!(
        config(&mut ns, 10, 2, 0, &[cmd(NFULNL_CFG_CMD_PF_UNBIND)]),
        0
    );
    assert_eq!(
        config(&mut ns, 10, 200, 0, &[cmd(NFULNL_CFG_CMD_PF_BIND)]),
        EINVAL
    );
    // Packets come from the kernel only; other message types do not exist.
    let packet = msg((SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET, REQ | ACK, 0, 5, &[]);
    assert_eq!(answer(&mut ns, 10, &packet), Some(ENOTSUPP));
    let other = msg((SUBSYS_ULOG << 8) | 2, REQ | ACK, 0, 5, &[]);
    assert_eq!(answer(&mut ns, 10, &other), Some(EINVAL));
    // Without NLM_F_ACK a success is silent.
    let bind = msg(CONFIG, REQ, 0, 8, &[cmd(NFULNL_CFG_CMD_BIND)]);
    assert_eq!(answer(&mut ns, 10, &bind), None);
    assert!(ns.nflog.get(8).is_some());
}

/// `__instance_destroy` flushes what the instance queued to its listener: the queued
/// datagram comes before the unbind's ACK; a closed socket's queue is dropped.
#[test]
fn unbind_sends_the_queue_before_its_ack() {
    let mut ns = Netns::new();
    assert_eq!(config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]), 0);
    let pkt = packet::LogPacket {
        family: 2,
        hook: 0,
        group: 5,
        prefix: Vec::new(),
        copy_len: None,
        qthreshold: 0,
        hw_protocol: 0x0800,
        indev: Some(2),
        outdev: None,
        mark: 0,
        hw: None,
        timestamp: None,
        uid_gid: None,
        len: 4,
        data: vec![0x45, 0, 0, 4],
    };
    let now = std::time::Instant::now();
    assert!(ns.nflog_mut().log_packet(&pkt, now).is_empty());
    let unbind = msg(CONFIG, REQ | ACK, 0, 5, &[cmd(NFULNL_CFG_CMD_UNBIND)]);
    let out = ns.handle_datagram(&caller(10), &unbind, &mut NoDataplane);
    assert_eq!(out.unicast.len(), 2);
    assert_eq!(
        u16::from_ne_bytes([out.unicast[0][4], out.unicast[0][5]]),
        0x0400
    );
    assert_eq!(
        u16::from_ne_bytes([out.unicast[1][4], out.unicast[1][5]]),
        2
    );
    assert_eq!(ns.nflog_mut().next_deadline(), None);

    assert_eq!(config(&mut ns, 10, 0, 5, &[cmd(NFULNL_CFG_CMD_BIND)]), 0);
    assert!(ns.nflog_mut().log_packet(&pkt, now).is_empty());
    ns.nflog_mut().socket_closed(10);
    assert_eq!(ns.nflog_mut().next_deadline(), None);
    assert!(ns.nflog_mut().log_packet(&pkt, now).is_empty());
}
