//! Netlink framing for NETLINK_NETFILTER: datagrams, messages, `nfgenmsg`, and the
//! error/ACK and DONE replies.

use netlink_packet_core::{NetlinkBuffer, NetlinkHeader};

use crate::attr::{align4, emit_attrs, parse_attrs_lenient, Attr, ProtoError};
use crate::extra::*;

/// One netlink message: the header as sent, and the payload after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NlMsg {
    pub header: NetlinkHeader,
    pub payload: Vec<u8>,
}

/// How reading a datagram ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatagramTail {
    /// Every byte belonged to a whole message.
    Clean,
    /// `n` bytes at the end did not form a message (short header, or a length field that
    /// points past the datagram or below the header size).
    Malformed { offset: usize, len: usize },
}

impl NlMsg {
    pub fn new(message_type: u16, flags: u16, seq: u32, port: u32, payload: Vec<u8>) -> Self {
        let mut header = NetlinkHeader::default();
        header.message_type = message_type;
        header.flags = flags;
        header.sequence_number = seq;
        header.port_number = port;
        header.length = (NLMSG_HDRLEN + payload.len()) as u32;
        NlMsg { header, payload }
    }

    pub fn msg_type(&self) -> u16 {
        self.header.message_type
    }
    pub fn flags(&self) -> u16 {
        self.header.flags
    }
    pub fn seq(&self) -> u32 {
        self.header.sequence_number
    }
    /// Subsystem byte of an nfnetlink message type (`NFNL_SUBSYS_ID`).
    pub fn subsys(&self) -> u8 {
        (self.header.message_type >> 8) as u8
    }
    /// Message byte of an nfnetlink message type (`NFNL_MSG_TYPE`).
    pub fn subsys_msg(&self) -> u8 {
        (self.header.message_type & 0xff) as u8
    }

    /// The `nfgenmsg` header, if the payload has one.
    pub fn nfgen(&self) -> Option<NfGenMsg> {
        NfGenMsg::parse(&self.payload)
    }
    /// Attributes after the `nfgenmsg` header, read as the kernel reads them, plus how
    /// many trailing bytes were not attributes.
    pub fn nf_attrs(&self) -> (Vec<Attr>, usize) {
        match self.payload.get(NfGenMsg::LEN..) {
            Some(rest) => parse_attrs_lenient(rest),
            None => (Vec::new(), 0),
        }
    }

    /// Appends the message, header length recomputed and padded to 4 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let len = NLMSG_HDRLEN + self.payload.len();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&self.header.message_type.to_ne_bytes());
        out.extend_from_slice(&self.header.flags.to_ne_bytes());
        out.extend_from_slice(&self.header.sequence_number.to_ne_bytes());
        out.extend_from_slice(&self.header.port_number.to_ne_bytes());
        out.extend_from_slice(&self.payload);
        out.resize(out.len() + (align4(len) - len), 0);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(align4(NLMSG_HDRLEN + self.payload.len()));
        self.emit(&mut v);
        v
    }

    /// An nfnetlink message: `nfgenmsg` then attributes.
    pub fn nf(message_type: u16, flags: u16, seq: u32, port: u32, gen: NfGenMsg, attrs: &[Attr]) -> Self {
        let mut payload = gen.to_bytes().to_vec();
        emit_attrs(attrs, &mut payload);
        NlMsg::new(message_type, flags, seq, port, payload)
    }
}

/// Splits one datagram into messages, as `netlink_rcv_skb` walks it.
pub fn split_datagram(buf: &[u8]) -> (Vec<NlMsg>, DatagramTail) {
    let mut msgs = Vec::new();
    let mut offset = 0usize;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let Ok(nb) = NetlinkBuffer::new_checked(rest) else {
            return (msgs, DatagramTail::Malformed { offset, len: rest.len() });
        };
        let len = nb.length() as usize;
        let mut header = NetlinkHeader::default();
        header.length = nb.length();
        header.message_type = nb.message_type();
        header.flags = nb.flags();
        header.sequence_number = nb.sequence_number();
        header.port_number = nb.port_number();
        msgs.push(NlMsg { header, payload: rest[NLMSG_HDRLEN..len].to_vec() });
        offset = offset.saturating_add(align4(len));
    }
    (msgs, DatagramTail::Clean)
}

/// `struct nfgenmsg`: family, version, and `res_id` (big-endian on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NfGenMsg {
    pub family: u8,
    pub version: u8,
    pub res_id: u16,
}

impl NfGenMsg {
    pub const LEN: usize = 4;

    pub fn new(family: u8, res_id: u16) -> Self {
        NfGenMsg { family, version: NFNETLINK_V0, res_id }
    }
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let b = buf.get(..4)?;
        Some(NfGenMsg { family: b[0], version: b[1], res_id: u16::from_be_bytes([b[2], b[3]]) })
    }
    pub fn to_bytes(self) -> [u8; 4] {
        let r = self.res_id.to_be_bytes();
        [self.family, self.version, r[0], r[1]]
    }
}

/// An `NLMSG_ERROR` reply: errno 0 is an ACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NlmsgErr {
    /// Negative errno, or 0.
    pub error: i32,
    /// The header of the message being answered.
    pub request: NetlinkHeader,
    /// The request's payload, echoed when the error is not capped.
    pub request_payload: Vec<u8>,
    /// Extended ACK attributes (`NLMSGERR_ATTR_*`).
    pub ext: Vec<Attr>,
}

impl NlmsgErr {
    /// Builds the reply the kernel's `netlink_ack` builds. `cap_ack` is NETLINK_CAP_ACK;
    /// the payload is echoed only for errors; `bad_attr_offset` is the byte offset of the
    /// offending attribute from the start of the request message (NLMSGERR_ATTR_OFFS),
    /// sent only when the socket asked for extended ACKs.
    pub fn reply(error: i32, request: &NlMsg, cap_ack: bool, ext_ack: bool, bad_attr_offset: Option<u32>) -> NlMsg {
        let mut flags = 0u16;
        let echo = error != 0 && !cap_ack;
        if !echo {
            flags |= NLM_F_CAPPED;
        }
        let mut ext = Vec::new();
        if ext_ack && error != 0 {
            if let Some(off) = bad_attr_offset {
                if (off as usize) < NLMSG_HDRLEN + request.payload.len() {
                    ext.push(Attr::new(NLMSGERR_ATTR_OFFS, off.to_ne_bytes().to_vec()));
                }
            }
        }
        if !ext.is_empty() {
            flags |= NLM_F_ACK_TLVS;
        }
        let mut payload = Vec::new();
        payload.extend_from_slice(&error.to_ne_bytes());
        let echoed: &[u8] = if echo { &request.payload } else { &[] };
        let len = (NLMSG_HDRLEN + echoed.len()) as u32;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&request.header.message_type.to_ne_bytes());
        payload.extend_from_slice(&request.header.flags.to_ne_bytes());
        payload.extend_from_slice(&request.header.sequence_number.to_ne_bytes());
        payload.extend_from_slice(&request.header.port_number.to_ne_bytes());
        payload.extend_from_slice(echoed);
        payload.resize(align4(payload.len()), 0);
        emit_attrs(&ext, &mut payload);
        NlMsg::new(NLMSG_ERROR, flags, request.seq(), request.header.port_number, payload)
    }

    /// Reads an `NLMSG_ERROR` payload.
    pub fn parse(msg: &NlMsg) -> Result<Self, ProtoError> {
        let p = &msg.payload;
        if p.len() < 4 + NLMSG_HDRLEN {
            return Err(ProtoError::Truncated { need: 4 + NLMSG_HDRLEN, have: p.len() });
        }
        let error = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
        let (inner, _) = split_datagram(&p[4..]);
        let (request, request_payload, used) = match inner.into_iter().next() {
            Some(m) if msg.flags() & NLM_F_CAPPED == 0 => {
                let used = align4(m.header.length as usize);
                (m.header, m.payload, used)
            }
            Some(m) => (m.header, Vec::new(), NLMSG_HDRLEN),
            None => {
                let mut h = NetlinkHeader::default();
                let b = &p[4..4 + NLMSG_HDRLEN];
                h.length = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                h.message_type = u16::from_ne_bytes([b[4], b[5]]);
                h.flags = u16::from_ne_bytes([b[6], b[7]]);
                h.sequence_number = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                h.port_number = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]);
                (h, Vec::new(), NLMSG_HDRLEN)
            }
        };
        let ext = match p.get(4 + used..) {
            Some(rest) if msg.flags() & NLM_F_ACK_TLVS != 0 => parse_attrs_lenient(rest).0,
            _ => Vec::new(),
        };
        Ok(NlmsgErr { error, request, request_payload, ext })
    }
}

/// `NLMSG_DONE` ending a dump: payload is an int, 0.
pub fn done(seq: u32, port: u32, res_id_payload: Option<NfGenMsg>) -> NlMsg {
    let payload = match res_id_payload {
        // nfnetlink dumps end with a DONE that carries nfgenmsg (nfnl_fill_hdr in netlink_dump_done)
        Some(g) => g.to_bytes().to_vec(),
        None => 0i32.to_ne_bytes().to_vec(),
    };
    NlMsg::new(NLMSG_DONE, NLM_F_MULTI, seq, port, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nf_message_roundtrip() {
        let m = NlMsg::nf(0x0a00, NLM_F_REQUEST | NLM_F_CREATE, 3, 0, NfGenMsg::new(2, 0), &[Attr::strz(1, "t")]);
        let bytes = m.to_bytes();
        let (msgs, tail) = split_datagram(&bytes);
        assert_eq!(tail, DatagramTail::Clean);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].nfgen(), Some(NfGenMsg::new(2, 0)));
        assert_eq!(msgs[0].nf_attrs().0, vec![Attr::strz(1, "t")]);
        assert_eq!(msgs[0].to_bytes(), bytes);
    }

    #[test]
    fn error_reply_carries_offset() {
        let req = NlMsg::nf(0x0a06, NLM_F_REQUEST, 9, 0, NfGenMsg::new(2, 0), &[Attr::strz(1, "t")]);
        let err = NlmsgErr::reply(-2, &req, false, true, Some(20));
        let parsed = NlmsgErr::parse(&err).unwrap();
        assert_eq!(parsed.error, -2);
        assert_eq!(parsed.request.sequence_number, 9);
        assert_eq!(parsed.request_payload, req.payload);
        assert_eq!(parsed.ext, vec![Attr::new(NLMSGERR_ATTR_OFFS, 20u32.to_ne_bytes().to_vec())]);
    }

    proptest! {
        #[test]
        fn any_datagram_splits_without_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (msgs, _) = split_datagram(&buf);
            for m in &msgs {
                let _ = m.nfgen();
                let _ = m.nf_attrs();
                let _ = NlmsgErr::parse(m);
            }
        }
    }
}
