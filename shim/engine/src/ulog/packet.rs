//! NFULNL_MSG_PACKET: what nfnetlink_log sends a group's listener when a rule logs a
//! packet to it (`nfulnl_log_packet`, `__build_packet_message`, `__nfulnl_send` in
//! net/netfilter/nfnetlink_log.c). The data plane reports the packet ([`LogPacket`]);
//! the instance queues its message in a buffer sized as the kernel's skb would be,
//! and sends the buffer as one datagram when the queue reaches its threshold, when
//! the next message would not fit, when the flush timer fires, or when the instance
//! goes away. More than one message in a datagram ends with NLMSG_DONE.

use std::time::{Duration, Instant};

use super::{Instance, NFULNL_CFG_F_SEQ, NFULNL_CFG_F_SEQ_GLOBAL, NFULNL_COPY_PACKET, SUBSYS_ULOG};

const NFULNL_MSG_PACKET: u16 = 0;
const NLMSG_DONE: u16 = 3;

const NFULA_PACKET_HDR: u16 = 1;
const NFULA_MARK: u16 = 2;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_HWADDR: u16 = 8;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_UID: u16 = 11;
const NFULA_SEQ: u16 = 12;
const NFULA_SEQ_GLOBAL: u16 = 13;
const NFULA_GID: u16 = 14;
const NFULA_HWTYPE: u16 = 15;
const NFULA_HWHEADER: u16 = 16;
const NFULA_HWLEN: u16 = 17;

/// The kernel's HZ here (CONFIG_HZ=250): the flush timeout is counted in jiffies.
const HZ: u64 = 250;
/// `sizeof(struct skb_shared_info)`, cache-aligned, on this x86-64 kernel.
const SKB_SHINFO: usize = 320;
/// `SMP_CACHE_BYTES`.
const CACHE_BYTES: usize = 64;
/// `KMALLOC_MAX_CACHE_SIZE` (two pages): larger heads are whole page orders.
const KMALLOC_MAX_CACHE_SIZE: usize = 8192;
const PAGE_SIZE: usize = 4096;

/// The link-layer part of a message: the input device's type and header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwInfo {
    /// `dev->type` (ARPHRD_*).
    pub hwtype: u16,
    /// `dev->hard_header_len` bytes from the MAC header.
    pub header: Vec<u8>,
    /// What `dev_parse_header` gave (the source address), if anything.
    pub addr: Option<Vec<u8>>,
}

/// One packet a rule logged to a group (`nfulnl_log_packet`'s arguments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPacket {
    /// `pf`: nfgenmsg's family (NFPROTO_IPV4/IPV6; an inet chain gives the packet's).
    pub family: u8,
    /// `hooknum`.
    pub hook: u8,
    pub group: u16,
    /// The prefix without its NUL (NFULA_PREFIX always comes: nf_log_packet formats
    /// one, empty or not).
    pub prefix: Vec<u8>,
    /// The rule's copy length when it has NF_LOG_F_COPY_LEN.
    pub copy_len: Option<u32>,
    /// The rule's queue threshold (0: the instance's).
    pub qthreshold: u16,
    /// `skb->protocol` (host order value of the big-endian field).
    pub hw_protocol: u16,
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    pub mark: u32,
    /// With an input device and a MAC header.
    pub hw: Option<HwInfo>,
    /// NFULA_TIMESTAMP (the kernel gives one at prerouting, input and forward):
    /// seconds and microseconds.
    pub timestamp: Option<(u64, u64)>,
    /// NFULA_UID/GID: the sending socket file's fsuid/fsgid.
    pub uid_gid: Option<(u32, u32)>,
    /// `skb->len`: bytes from the network header on.
    pub len: u32,
    /// The packet from its network header on, at least as far as the copy goes.
    pub data: Vec<u8>,
}

/// An instance's queued messages (`inst->skb`, `inst->qlen`, its timer).
#[derive(Clone, Debug, Default)]
pub struct Queue {
    buf: Vec<u8>,
    /// What is left of the buffer's room (`skb_tailroom`).
    tailroom: usize,
    qlen: u32,
    /// When the flush timer fires, if it runs.
    deadline: Option<Instant>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.qlen == 0 && self.buf.is_empty()
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn nla_total(payload: usize) -> usize {
    align4(4 + payload)
}

fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(align4(buf.len()), 0);
}

/// The room `alloc_skb(n)` gives: the head is rounded up to a kmalloc size, and the
/// shared info sits at its end.
pub fn skb_room(n: usize) -> usize {
    let head = n.div_ceil(CACHE_BYTES) * CACHE_BYTES + SKB_SHINFO;
    let alloc = if head > KMALLOC_MAX_CACHE_SIZE {
        head.div_ceil(PAGE_SIZE).next_power_of_two() * PAGE_SIZE
    } else {
        // 96 and 192 are kmalloc sizes too, yet far below any head here.
        head.next_power_of_two()
    };
    alloc - SKB_SHINFO
}

/// `data_len` of `nfulnl_log_packet`: the payload bytes the message carries.
fn data_len(inst: &Instance, pkt: &LogPacket) -> Option<u32> {
    if inst.copy_mode != NFULNL_COPY_PACKET {
        return None;
    }
    let mut n = inst.copy_range;
    if let Some(c) = pkt.copy_len {
        n = n.min(c);
    }
    Some(n.min(pkt.len))
}

/// The bytes of the packet the message for `inst` needs (what the data plane must
/// have captured).
pub fn payload_needed(inst: &Instance, pkt: &LogPacket) -> usize {
    data_len(inst, pkt).unwrap_or(0) as usize
}

/// The kernel's estimate of a message's size, which decides whether it still fits
/// the queued buffer (an upper bound, not the message's length).
fn size_estimate(inst: &Instance, pkt: &LogPacket) -> usize {
    let plen = pkt.prefix.len() + 1;
    let mut size = align4(16 + 4) // nlmsghdr + nfgenmsg
        + nla_total(4) // packet header
        + 4 * nla_total(4) // in/out ifindex, physin/physout (CONFIG_BRIDGE_NETFILTER)
        + 3 * nla_total(4) // mark, uid, gid
        + nla_total(plen)
        + nla_total(12) // struct nfulnl_msg_packet_hw
        + nla_total(16) // struct nfulnl_msg_packet_timestamp
        + nla_total(4); // NLMSG_DONE
    if let Some(hw) = &pkt.hw {
        size += nla_total(hw.header.len()) + 2 * nla_total(2);
    }
    if inst.flags & NFULNL_CFG_F_SEQ != 0 {
        size += nla_total(4);
    }
    if inst.flags & NFULNL_CFG_F_SEQ_GLOBAL != 0 {
        size += nla_total(4);
    }
    if let Some(n) = data_len(inst, pkt) {
        size += nla_total(n as usize);
    }
    size
}

/// `__build_packet_message`: one NFULNL_MSG_PACKET message.
pub fn build_message(
    inst: &Instance,
    group: u16,
    pkt: &LogPacket,
    seq: Option<u32>,
    global_seq: Option<u32>,
) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m.extend_from_slice(&[pkt.family, 0]);
    m.extend_from_slice(&group.to_be_bytes());
    let mut hdr = pkt.hw_protocol.to_be_bytes().to_vec();
    hdr.extend_from_slice(&[pkt.hook, 0]);
    put_attr(&mut m, NFULA_PACKET_HDR, &hdr);
    let mut prefix = pkt.prefix.clone();
    prefix.push(0);
    put_attr(&mut m, NFULA_PREFIX, &prefix);
    if let Some(i) = pkt.indev {
        put_attr(&mut m, NFULA_IFINDEX_INDEV, &i.to_be_bytes());
    }
    if let Some(o) = pkt.outdev {
        put_attr(&mut m, NFULA_IFINDEX_OUTDEV, &o.to_be_bytes());
    }
    if pkt.mark != 0 {
        put_attr(&mut m, NFULA_MARK, &pkt.mark.to_be_bytes());
    }
    if let Some(hw) = &pkt.hw {
        if let Some(addr) = hw.addr.as_ref().filter(|a| !a.is_empty()) {
            // struct nfulnl_msg_packet_hw: __be16 hw_addrlen, u16 pad, u8 hw_addr[8].
            let mut phw = vec![0u8; 12];
            phw[..2].copy_from_slice(&(addr.len() as u16).to_be_bytes());
            let n = addr.len().min(8);
            phw[4..4 + n].copy_from_slice(&addr[..n]);
            put_attr(&mut m, NFULA_HWADDR, &phw);
        }
        put_attr(&mut m, NFULA_HWTYPE, &hw.hwtype.to_be_bytes());
        put_attr(&mut m, NFULA_HWLEN, &(hw.header.len() as u16).to_be_bytes());
        put_attr(&mut m, NFULA_HWHEADER, &hw.header);
    }
    if let Some((sec, usec)) = pkt.timestamp {
        let mut ts = sec.to_be_bytes().to_vec();
        ts.extend_from_slice(&usec.to_be_bytes());
        put_attr(&mut m, NFULA_TIMESTAMP, &ts);
    }
    if let Some((uid, gid)) = pkt.uid_gid {
        put_attr(&mut m, NFULA_UID, &uid.to_be_bytes());
        put_attr(&mut m, NFULA_GID, &gid.to_be_bytes());
    }
    if let Some(s) = seq {
        put_attr(&mut m, NFULA_SEQ, &s.to_be_bytes());
    }
    if let Some(s) = global_seq {
        put_attr(&mut m, NFULA_SEQ_GLOBAL, &s.to_be_bytes());
    }
    if let Some(n) = data_len(inst, pkt).filter(|&n| n > 0) {
        let n = (n as usize).min(pkt.data.len());
        put_attr(&mut m, NFULA_PAYLOAD, &pkt.data[..n]);
    }
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    let kind = (SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m
}

/// `__nfulnl_send`: the queued buffer as one datagram (NLMSG_DONE after more than
/// one message), and the queue empty again with no timer.
fn take_datagram(q: &mut Queue) -> Option<Vec<u8>> {
    let qlen = q.qlen;
    let mut buf = std::mem::take(&mut q.buf);
    *q = Queue::default();
    if buf.is_empty() {
        return None;
    }
    if qlen > 1 {
        // nlmsg_put(NLMSG_DONE, sizeof(struct nfgenmsg)): its payload is not written
        // by the kernel; zeros here.
        let start = buf.len();
        buf.resize(start + 20, 0);
        buf[start..start + 4].copy_from_slice(&20u32.to_ne_bytes());
        buf[start + 4..start + 6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
    }
    Some(buf)
}

/// The flush timer's period: `flushtimeout * HZ / 100` jiffies.
fn flush_delay(flushtimeout: u32) -> Duration {
    let jiffies = u64::from(flushtimeout) * HZ / 100;
    Duration::from_nanos(jiffies * (1_000_000_000 / HZ))
}

/// What one instance keeps besides its configuration: its local sequence number and
/// its queue.
#[derive(Clone, Debug, Default)]
pub struct InstanceState {
    pub seq: u32,
    pub queue: Queue,
}

/// `nfulnl_log_packet` for an instance: queues the message, and returns the datagrams
/// that go to its listener now.
pub fn log_packet(
    inst: &Instance,
    group: u16,
    st: &mut InstanceState,
    global_seq: &mut u32,
    pkt: &LogPacket,
    now: Instant,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let size = size_estimate(inst, pkt);
    let mut qthreshold = inst.qthreshold;
    if pkt.qthreshold != 0 && qthreshold > u32::from(pkt.qthreshold) {
        qthreshold = u32::from(pkt.qthreshold);
    }
    if !st.queue.is_empty() && size > st.queue.tailroom {
        out.extend(take_datagram(&mut st.queue));
    }
    if st.queue.is_empty() {
        st.queue.tailroom = skb_room((inst.nlbufsiz as usize).max(size));
    }
    st.queue.qlen += 1;
    let seq = (inst.flags & NFULNL_CFG_F_SEQ != 0).then(|| {
        let s = st.seq;
        st.seq = st.seq.wrapping_add(1);
        s
    });
    let gseq = (inst.flags & NFULNL_CFG_F_SEQ_GLOBAL != 0).then(|| {
        *global_seq = global_seq.wrapping_add(1);
        *global_seq
    });
    let msg = build_message(inst, group, pkt, seq, gseq);
    st.queue.tailroom = st.queue.tailroom.saturating_sub(msg.len());
    st.queue.buf.extend_from_slice(&msg);
    if st.queue.qlen >= qthreshold {
        out.extend(take_datagram(&mut st.queue));
    } else if st.queue.deadline.is_none() {
        st.queue.deadline = Some(now + flush_delay(inst.flushtimeout));
    }
    out
}

/// The timer fired (or the instance goes): what is queued goes out.
pub fn flush(st: &mut InstanceState) -> Option<Vec<u8>> {
    take_datagram(&mut st.queue)
}

/// When the instance's flush timer fires, if it runs.
pub fn deadline(st: &InstanceState) -> Option<Instant> {
    st.queue.deadline
}
