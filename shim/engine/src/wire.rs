//! Building the kernel's replies: nfnetlink messages, ACK/error records, DONE, and the
//! packing of dump messages into records.

use crate::msg::SUBSYS_NFTABLES;
use netlink_proto::attr::{align4, emit_attrs, Attr};
use netlink_proto::extra::*;

/// Dump parts are packed into records of at most this many bytes (readers use buffers of
/// at least 8 KiB for dumps); one message is never split.
pub const DUMP_RECORD_MAX: usize = 8192;
/// `NLMSG_GOODSIZE` on x86-64 (one page minus skb overhead): notifications are batched
/// into records of this size, as `nft_commit_notify` does.
pub const NLMSG_GOODSIZE: usize = 3776;

/// A request message as it arrived: header fields and the whole message bytes.
#[derive(Clone, Copy, Debug)]
pub struct Req<'a> {
    pub bytes: &'a [u8],
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
}

impl<'a> Req<'a> {
    /// Reads the header of a message known to hold at least `NLMSG_HDRLEN` bytes.
    pub fn new(bytes: &'a [u8]) -> Self {
        Req {
            bytes,
            msg_type: u16::from_ne_bytes([bytes[4], bytes[5]]),
            flags: u16::from_ne_bytes([bytes[6], bytes[7]]),
            seq: u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }
    /// `nlmsg_len` as declared.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        u32::from_ne_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]) as usize
    }
    pub fn payload(&self) -> &'a [u8] {
        let end = self.len().min(self.bytes.len());
        &self.bytes[NLMSG_HDRLEN.min(end)..end]
    }
    pub fn family(&self) -> u8 {
        self.payload().first().copied().unwrap_or(0)
    }
    /// The attributes after `nfgenmsg`.
    pub fn attr_bytes(&self) -> &'a [u8] {
        self.payload().get(4..).unwrap_or(&[])
    }
}

/// Appends one netlink message (header, payload, padding) to `out`.
pub fn put_msg(
    out: &mut Vec<u8>,
    msg_type: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    payload: &[u8],
) {
    let len = NLMSG_HDRLEN + payload.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&msg_type.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&portid.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (align4(len) - len), 0);
}

/// An nf_tables message (`nfnl_msg_put`): header, `nfgenmsg` with `res_id`, attributes.
pub fn nft_msg(
    event: u16,
    flags: u16,
    seq: u32,
    portid: u32,
    family: u8,
    res_id: u16,
    attrs: &[Attr],
) -> Vec<u8> {
    let mut payload = vec![family, NFNETLINK_V0];
    payload.extend_from_slice(&res_id.to_be_bytes());
    emit_attrs(attrs, &mut payload);
    let mut out = Vec::with_capacity(NLMSG_HDRLEN + payload.len() + 3);
    put_msg(
        &mut out,
        (SUBSYS_NFTABLES << 8) | event,
        flags,
        seq,
        portid,
        &payload,
    );
    out
}

/// How the sending socket wants ACKs, from its socket options.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckOpts {
    pub portid: u32,
    pub ext_ack: bool,
    pub cap_ack: bool,
}

/// `netlink_ack`: an NLMSG_ERROR record for `req`. `err` is positive errno or 0.
/// `bad_attr` is the offset of the offending attribute from the start of `req`.
pub fn ack(opts: AckOpts, req: &Req<'_>, err: i32, bad_attr: Option<u32>) -> Vec<u8> {
    ack_ext(opts, req, &crate::errno::MsgErr::at(err, bad_attr))
}

/// `netlink_ack` with the whole extended ACK: message, offset, policy.
pub fn ack_ext(opts: AckOpts, req: &Req<'_>, e: &crate::errno::MsgErr) -> Vec<u8> {
    let (err, bad_attr) = (e.errno, e.bad_attr);
    let mut flags = 0u16;
    let capped = err == 0 || opts.cap_ack;
    if capped {
        flags |= NLM_F_CAPPED;
    }
    let mut tlvs = Vec::new();
    if opts.ext_ack {
        if let Some(m) = e.msg {
            tlvs.push(strz(NLMSGERR_ATTR_MSG, m.as_bytes()));
        }
    }
    if opts.ext_ack && err != 0 {
        if let Some(off) = bad_attr {
            if (off as usize) < req.len() {
                tlvs.push(Attr::new(NLMSGERR_ATTR_OFFS, off.to_ne_bytes().to_vec()));
            }
        }
        if let Some(desc) = e.policy.and_then(crate::nla::describe) {
            // NLMSGERR_ATTR_POLICY, opened with `nla_nest_start`.
            let mut n = nest(4, &desc);
            n.kind |= 0x8000;
            tlvs.push(n);
        }
    }
    if !tlvs.is_empty() {
        flags |= NLM_F_ACK_TLVS;
    }
    let mut payload = Vec::new();
    payload.extend_from_slice(&(-err).to_ne_bytes());
    // The request header as it was sent.
    payload.extend_from_slice(&req.bytes[..NLMSG_HDRLEN]);
    if !capped {
        payload.extend_from_slice(req.payload());
        payload.resize(align4(payload.len()), 0);
    }
    emit_attrs(&tlvs, &mut payload);
    let mut out = Vec::new();
    put_msg(&mut out, NLMSG_ERROR, flags, req.seq, opts.portid, &payload);
    out
}

/// `NLMSG_DONE` closing a dump: an int 0 payload, `NLM_F_MULTI`.
pub fn done(seq: u32, portid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put_msg(
        &mut out,
        NLMSG_DONE,
        NLM_F_MULTI,
        seq,
        portid,
        &0i32.to_ne_bytes(),
    );
    out
}

/// Packs messages into records of at most `max` bytes, never splitting a message.
pub fn pack(messages: Vec<Vec<u8>>, max: usize) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for m in messages {
        if !cur.is_empty() && cur.len() + m.len() > max {
            records.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(&m);
    }
    if !cur.is_empty() {
        records.push(cur);
    }
    records
}

/// Attribute helpers for building replies.
pub fn strz(kind: u16, s: &[u8]) -> Attr {
    let mut v = s.to_vec();
    v.push(0);
    Attr::new(kind, v)
}
pub fn be32(kind: u16, v: u32) -> Attr {
    Attr::u32_be(kind, v)
}
pub fn be64(kind: u16, v: u64) -> Attr {
    Attr::u64_be(kind, v)
}
/// A nest as the kernel's `nla_nest_start_noflag` writes it: no `NLA_F_NESTED`.
pub fn nest(kind: u16, children: &[Attr]) -> Attr {
    let mut value = Vec::new();
    emit_attrs(children, &mut value);
    Attr::new(kind, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_ack_echoes_request_and_offset() {
        let mut req = Vec::new();
        put_msg(
            &mut req,
            0x0a06,
            0x0c01,
            1,
            0,
            &[2, 0, 0, 0, 6, 0, 1, 0, b't', 0, 0, 0],
        );
        let r = Req::new(&req);
        let opts = AckOpts {
            portid: 77,
            ext_ack: true,
            cap_ack: false,
        };
        let a = ack(opts, &r, 2, Some(20));
        assert_eq!(u16::from_ne_bytes([a[4], a[5]]), NLMSG_ERROR);
        assert_eq!(u16::from_ne_bytes([a[6], a[7]]), NLM_F_ACK_TLVS);
        assert_eq!(&a[12..16], &77u32.to_ne_bytes());
        assert_eq!(&a[16..20], &(-2i32).to_ne_bytes());
        assert_eq!(&a[20..20 + req.len()], &req[..]);
        assert_eq!(&a[a.len() - 4..], &20u32.to_ne_bytes());
        // A plain ACK is capped and carries no TLVs.
        let ok = ack(opts, &r, 0, Some(20));
        assert_eq!(ok.len(), 16 + 4 + 16);
        assert_eq!(u16::from_ne_bytes([ok[6], ok[7]]), NLM_F_CAPPED);
    }

    #[test]
    fn packing_never_splits() {
        let recs = pack(
            vec![vec![0; 5000], vec![0; 5000], vec![0; 100]],
            DUMP_RECORD_MAX,
        );
        assert_eq!(
            recs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            vec![5000, 5100]
        );
    }
}
