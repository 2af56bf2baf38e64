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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ulog::{Instance, Instances, NFULNL_COPY_META, QTHRESH_DEFAULT};

    fn instance() -> Instance {
        Instance::new(11)
    }

    fn packet(group: u16, len: usize) -> LogPacket {
        LogPacket {
            family: 2,
            hook: 0,
            group,
            prefix: b"pfx".to_vec(),
            copy_len: None,
            qthreshold: 0,
            hw_protocol: 0x0800,
            indev: Some(3),
            outdev: None,
            mark: 0,
            hw: Some(HwInfo {
                hwtype: 1,
                header: vec![0xaa; 14],
                addr: Some(vec![1, 2, 3, 4, 5, 6]),
            }),
            timestamp: Some((1, 2)),
            uid_gid: None,
            len: len as u32,
            data: (0..len).map(|i| i as u8).collect(),
        }
    }

    /// (type, value) of each attribute after the nfgenmsg.
    fn attrs(m: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 20;
        while off + 4 <= m.len() {
            let len = u16::from_ne_bytes([m[off], m[off + 1]]) as usize;
            let kind = u16::from_ne_bytes([m[off + 2], m[off + 3]]);
            out.push((kind, m[off + 4..off + len].to_vec()));
            off += align4(len);
        }
        out
    }

    /// Messages of a datagram: (type, length).
    fn messages(d: &[u8]) -> Vec<(u16, usize)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off + 16 <= d.len() {
            let len = u32::from_ne_bytes(d[off..off + 4].try_into().unwrap()) as usize;
            out.push((u16::from_ne_bytes([d[off + 4], d[off + 5]]), len));
            off += align4(len);
        }
        assert_eq!(off, d.len(), "messages fill the datagram");
        out
    }

    #[test]
    fn message_has_the_kernels_header_and_attributes_in_order() {
        let mut p = packet(7, 40);
        p.mark = 0x2a;
        let m = build_message(&instance(), 7, &p, Some(4), Some(9));
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0400);
        assert_eq!(&m[6..16], &[0; 10], "flags, seq and port id are 0");
        assert_eq!(
            &m[16..20],
            &[2, 0, 0, 7],
            "family, version, group (big endian)"
        );
        let mut hw = vec![0, 6, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0];
        hw.truncate(12);
        let want: Vec<(u16, Vec<u8>)> = vec![
            (NFULA_PACKET_HDR, vec![8, 0, 0, 0]),
            (NFULA_PREFIX, b"pfx\0".to_vec()),
            (NFULA_IFINDEX_INDEV, vec![0, 0, 0, 3]),
            (NFULA_MARK, vec![0, 0, 0, 0x2a]),
            (NFULA_HWADDR, hw),
            (NFULA_HWTYPE, vec![0, 1]),
            (NFULA_HWLEN, vec![0, 14]),
            (NFULA_HWHEADER, vec![0xaa; 14]),
            (
                NFULA_TIMESTAMP,
                [1u64.to_be_bytes(), 2u64.to_be_bytes()].concat(),
            ),
            (NFULA_SEQ, vec![0, 0, 0, 4]),
            (NFULA_SEQ_GLOBAL, vec![0, 0, 0, 9]),
            (NFULA_PAYLOAD, (0..40).collect()),
        ];
        assert_eq!(attrs(&m), want);
    }

    #[test]
    fn payload_follows_copy_mode_range_and_the_rules_length() {
        let p = packet(7, 100);
        let payload = |inst: &Instance, p: &LogPacket| {
            attrs(&build_message(inst, 7, p, None, None))
                .into_iter()
                .find(|(k, _)| *k == NFULA_PAYLOAD)
                .map(|(_, v)| v.len())
        };
        let mut inst = instance();
        assert_eq!(payload(&inst, &p), Some(100));
        inst.set_mode(NFULNL_COPY_PACKET, 30);
        assert_eq!(payload(&inst, &p), Some(30));
        let rule_len = LogPacket {
            copy_len: Some(10),
            ..p.clone()
        };
        assert_eq!(payload(&inst, &rule_len), Some(10));
        let zero = LogPacket {
            copy_len: Some(0),
            ..p.clone()
        };
        assert_eq!(payload(&inst, &zero), None, "no empty payload attribute");
        inst.set_mode(NFULNL_COPY_META, 0);
        assert_eq!(payload(&inst, &p), None);
        // No prefix given by the rule: still one NUL.
        let bare = LogPacket {
            prefix: Vec::new(),
            ..p
        };
        let a = attrs(&build_message(&inst, 7, &bare, None, None));
        assert!(a.contains(&(NFULA_PREFIX, vec![0])));
        assert!(
            !a.iter().any(|(k, _)| *k == NFULA_MARK),
            "mark 0 is left out"
        );
    }

    #[test]
    fn skb_room_is_what_alloc_skb_gives() {
        // NLMSG_GOODSIZE fills a page; a page more rounds up to kmalloc-8k, and the
        // 128 KiB maximum to 64 pages.
        assert_eq!(skb_room(3776), 3776);
        assert_eq!(skb_room(3777), 8192 - 320);
        assert_eq!(skb_room(8192 - 320), 8192 - 320);
        assert_eq!(skb_room(131072), 262144 - 320);
    }

    #[test]
    fn queue_goes_out_at_the_threshold_or_when_the_timer_fires() {
        let mut groups = Instances::default();
        groups.groups.insert(7, instance());
        assert_eq!(groups.get(7).unwrap().qthreshold, QTHRESH_DEFAULT);
        let t0 = Instant::now();
        // Nobody listens to group 8: nothing, not even a queue.
        assert!(groups.log_packet(&packet(8, 20), t0).is_empty());
        assert!(groups.log_packet(&packet(7, 20), t0).is_empty());
        assert!(groups.log_packet(&packet(7, 20), t0).is_empty());
        // The default timeout, 100 hundredths: 250 jiffies.
        assert_eq!(groups.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(groups
            .flush_expired(t0 + Duration::from_millis(999))
            .is_empty());
        let out = groups.flush_expired(t0 + Duration::from_secs(1));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 11, "to the listener's port id");
        let m = messages(&out[0].1);
        assert_eq!(
            m.iter().map(|x| x.0).collect::<Vec<_>>(),
            [0x0400, 0x0400, 3]
        );
        assert_eq!(m[2].1, 20, "NLMSG_DONE with an nfgenmsg");
        assert_eq!(groups.next_deadline(), None);

        // The rule's threshold, lower than the instance's, sends the third at once;
        // a lone message has no NLMSG_DONE.
        let mut ruled = packet(7, 20);
        ruled.qthreshold = 3;
        assert!(groups.log_packet(&ruled, t0).is_empty());
        assert!(groups.log_packet(&ruled, t0).is_empty());
        let out = groups.log_packet(&ruled, t0);
        assert_eq!(messages(&out[0].1).len(), 4);
        groups.groups.get_mut(&7).unwrap().qthreshold = 1;
        let out = groups.log_packet(&packet(7, 20), t0);
        assert_eq!(messages(&out[0].1), [(0x0400, out[0].1.len())]);
    }

    #[test]
    fn a_message_that_does_not_fit_sends_the_queue_first() {
        let mut groups = Instances::default();
        groups.groups.insert(7, instance());
        let t0 = Instant::now();
        // Each about 1.5 KB: the default buffer (3776 bytes) holds two.
        let mut sent = Vec::new();
        for _ in 0..5 {
            sent.extend(groups.log_packet(&packet(7, 1400), t0));
        }
        assert_eq!(sent.len(), 2);
        for (_, d) in &sent {
            assert!(d.len() <= 3776, "{}", d.len());
            assert_eq!(messages(d).len(), 3, "two messages and NLMSG_DONE");
        }
        // One larger than the buffer gets a buffer of its own size.
        let big = groups.log_packet(&packet(7, 6000), t0);
        assert_eq!(big.len(), 1, "the fifth message goes out first");
        let out = groups.flush_expired(t0 + Duration::from_secs(1));
        assert_eq!(messages(&out[0].1).len(), 1);
        assert!(out[0].1.len() > 6000);
    }

    #[test]
    fn sequence_numbers_count_per_instance_and_per_namespace() {
        let mut groups = Instances::default();
        for g in [1, 2] {
            let mut i = instance();
            i.qthreshold = 1;
            i.flags = NFULNL_CFG_F_SEQ | NFULNL_CFG_F_SEQ_GLOBAL;
            groups.groups.insert(g, i);
        }
        let t0 = Instant::now();
        let seqs = |d: &[u8]| {
            let a = attrs(d);
            let get = |k| a.iter().find(|(t, _)| *t == k).map(|(_, v)| v.clone());
            (get(NFULA_SEQ).unwrap(), get(NFULA_SEQ_GLOBAL).unwrap())
        };
        let mut got = Vec::new();
        for g in [1, 2, 1] {
            let out = groups.log_packet(&packet(g, 8), t0);
            got.push(seqs(&out[0].1));
        }
        assert_eq!(
            got,
            [
                (vec![0, 0, 0, 0], vec![0, 0, 0, 1]),
                (vec![0, 0, 0, 0], vec![0, 0, 0, 2]),
                (vec![0, 0, 0, 1], vec![0, 0, 0, 3]),
            ]
        );
    }
}
