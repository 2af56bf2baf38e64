//! Whole nf_tables messages: header fields, `nfgenmsg`, and the typed attributes of
//! each message family.
//!
//! [`NftMessage::parse`] reads any nfnetlink message; [`NftMessage::to_nlmsg`] writes it
//! back. For every input the round trip is exact: a message type this crate does not
//! model, or a typed form that would not re-emit the same bytes (e.g. non-zero padding
//! between attributes), falls back to [`NftBody::Unknown`] with the payload kept raw.

use crate::attr::{emit_attrs, Attr};
use crate::consts::*;
use crate::extra::*;
use crate::message::{split_datagram, DatagramTail, NfGenMsg, NlMsg};

pub mod batch;
pub mod chain;
pub mod compat;
pub mod flowtable;
pub mod gen;
pub mod obj;
pub mod rule;
pub mod set;
pub mod setelem;
pub mod table;
pub mod trace;

pub use batch::Batch;
pub use chain::Chain;
pub use compat::Compat;
pub use flowtable::Flowtable;
pub use gen::Gen;
pub use obj::Obj;
pub use rule::Rule;
pub use set::Set;
pub use setelem::SetElemList;
pub use table::Table;
pub use trace::Trace;

/// `nlmsg_type` of an nf_tables message.
pub const fn nft_type(msg: u16) -> u16 {
    ((NFNL_SUBSYS_NFTABLES as u16) << 8) | msg
}

/// `nlmsg_type` of the compat revision query and its answer.
pub const NFT_COMPAT_GET_TYPE: u16 = ((NFNL_SUBSYS_NFT_COMPAT as u16) << 8) | NFNL_MSG_COMPAT_GET;

macro_rules! bodies {
    ($( $(#[$m:meta])* $variant:ident($ty:ident) = $msg_type:expr ),* $(,)?) => {
        /// The typed content of a message, by message type.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum NftBody {
            $( $(#[$m])* $variant($ty), )*
            /// A message type not modelled here, or one whose typed form would not
            /// re-emit exactly: the payload after `nfgenmsg`, raw.
            Unknown { msg_type: u16, payload: Vec<u8> },
        }

        impl NftBody {
            /// Reads the attributes of a message of type `msg_type`.
            pub fn from_attrs(msg_type: u16, attrs: &[Attr]) -> Option<NftBody> {
                $( if msg_type == $msg_type { return Some(NftBody::$variant($ty::from_attrs(attrs))); } )*
                None
            }

            /// The message's `nlmsg_type`.
            pub fn msg_type(&self) -> u16 {
                match self {
                    $( NftBody::$variant(_) => $msg_type, )*
                    NftBody::Unknown { msg_type, .. } => *msg_type,
                }
            }

            /// Writes the attributes (or the raw payload) after `nfgenmsg`.
            pub fn emit(&self, out: &mut Vec<u8>) {
                match self {
                    $( NftBody::$variant(b) => emit_attrs(&b.to_attrs(), out), )*
                    NftBody::Unknown { payload, .. } => out.extend_from_slice(payload),
                }
            }
        }
    };
}

bodies! {
    NewTable(Table) = nft_type(NFT_MSG_NEWTABLE),
    GetTable(Table) = nft_type(NFT_MSG_GETTABLE),
    DelTable(Table) = nft_type(NFT_MSG_DELTABLE),
    DestroyTable(Table) = nft_type(NFT_MSG_DESTROYTABLE),
    NewChain(Chain) = nft_type(NFT_MSG_NEWCHAIN),
    GetChain(Chain) = nft_type(NFT_MSG_GETCHAIN),
    DelChain(Chain) = nft_type(NFT_MSG_DELCHAIN),
    DestroyChain(Chain) = nft_type(NFT_MSG_DESTROYCHAIN),
    NewRule(Rule) = nft_type(NFT_MSG_NEWRULE),
    GetRule(Rule) = nft_type(NFT_MSG_GETRULE),
    DelRule(Rule) = nft_type(NFT_MSG_DELRULE),
    GetRuleReset(Rule) = nft_type(NFT_MSG_GETRULE_RESET),
    DestroyRule(Rule) = nft_type(NFT_MSG_DESTROYRULE),
    NewSet(Set) = nft_type(NFT_MSG_NEWSET),
    GetSet(Set) = nft_type(NFT_MSG_GETSET),
    DelSet(Set) = nft_type(NFT_MSG_DELSET),
    DestroySet(Set) = nft_type(NFT_MSG_DESTROYSET),
    NewSetElem(SetElemList) = nft_type(NFT_MSG_NEWSETELEM),
    GetSetElem(SetElemList) = nft_type(NFT_MSG_GETSETELEM),
    DelSetElem(SetElemList) = nft_type(NFT_MSG_DELSETELEM),
    GetSetElemReset(SetElemList) = nft_type(NFT_MSG_GETSETELEM_RESET),
    DestroySetElem(SetElemList) = nft_type(NFT_MSG_DESTROYSETELEM),
    /// Answer to GETGEN, and the event after every commit.
    NewGen(Gen) = nft_type(NFT_MSG_NEWGEN),
    GetGen(Gen) = nft_type(NFT_MSG_GETGEN),
    Trace(Trace) = nft_type(NFT_MSG_TRACE),
    NewObj(Obj) = nft_type(NFT_MSG_NEWOBJ),
    GetObj(Obj) = nft_type(NFT_MSG_GETOBJ),
    DelObj(Obj) = nft_type(NFT_MSG_DELOBJ),
    GetObjReset(Obj) = nft_type(NFT_MSG_GETOBJ_RESET),
    DestroyObj(Obj) = nft_type(NFT_MSG_DESTROYOBJ),
    NewFlowtable(Flowtable) = nft_type(NFT_MSG_NEWFLOWTABLE),
    GetFlowtable(Flowtable) = nft_type(NFT_MSG_GETFLOWTABLE),
    DelFlowtable(Flowtable) = nft_type(NFT_MSG_DELFLOWTABLE),
    DestroyFlowtable(Flowtable) = nft_type(NFT_MSG_DESTROYFLOWTABLE),
    BatchBegin(Batch) = NFNL_MSG_BATCH_BEGIN,
    BatchEnd(Batch) = NFNL_MSG_BATCH_END,
    /// Revision query, and its answer.
    CompatGet(Compat) = NFT_COMPAT_GET_TYPE,
}

impl NftBody {
    /// The table of any table message.
    pub fn table(&self) -> Option<&Table> {
        match self {
            NftBody::NewTable(b)
            | NftBody::GetTable(b)
            | NftBody::DelTable(b)
            | NftBody::DestroyTable(b) => Some(b),
            _ => None,
        }
    }
    /// The chain of any chain message.
    pub fn chain(&self) -> Option<&Chain> {
        match self {
            NftBody::NewChain(b)
            | NftBody::GetChain(b)
            | NftBody::DelChain(b)
            | NftBody::DestroyChain(b) => Some(b),
            _ => None,
        }
    }
    /// The rule of any rule message.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            NftBody::NewRule(b)
            | NftBody::GetRule(b)
            | NftBody::DelRule(b)
            | NftBody::GetRuleReset(b)
            | NftBody::DestroyRule(b) => Some(b),
            _ => None,
        }
    }
    /// The set of any set message.
    pub fn set(&self) -> Option<&Set> {
        match self {
            NftBody::NewSet(b)
            | NftBody::GetSet(b)
            | NftBody::DelSet(b)
            | NftBody::DestroySet(b) => Some(b),
            _ => None,
        }
    }
    /// The element list of any set element message.
    pub fn set_elems(&self) -> Option<&SetElemList> {
        match self {
            NftBody::NewSetElem(b)
            | NftBody::GetSetElem(b)
            | NftBody::DelSetElem(b)
            | NftBody::GetSetElemReset(b)
            | NftBody::DestroySetElem(b) => Some(b),
            _ => None,
        }
    }
    /// The object of any object message.
    pub fn obj(&self) -> Option<&Obj> {
        match self {
            NftBody::NewObj(b)
            | NftBody::GetObj(b)
            | NftBody::DelObj(b)
            | NftBody::GetObjReset(b)
            | NftBody::DestroyObj(b) => Some(b),
            _ => None,
        }
    }
    /// The flowtable of any flowtable message.
    pub fn flowtable(&self) -> Option<&Flowtable> {
        match self {
            NftBody::NewFlowtable(b)
            | NftBody::GetFlowtable(b)
            | NftBody::DelFlowtable(b)
            | NftBody::DestroyFlowtable(b) => Some(b),
            _ => None,
        }
    }
}

/// One nfnetlink message, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftMessage {
    /// `nlmsg_flags` (NLM_F_*).
    pub flags: u16,
    pub seq: u32,
    /// `nlmsg_pid`.
    pub port: u32,
    pub nfgen: NfGenMsg,
    pub body: NftBody,
    /// Bytes after the last whole attribute (the kernel's parser ignores them).
    pub trailing: Vec<u8>,
    /// Non-zero padding bytes between top-level attributes, as `(payload offset, byte)`.
    /// libnftnl does not always clear its buffers, and the kernel ignores padding, but
    /// the round trip keeps them. Empty for anything built here.
    pub padding: Vec<(usize, u8)>,
}

impl NftMessage {
    /// A message with the given header fields and no trailing bytes.
    pub fn new(flags: u16, seq: u32, port: u32, nfgen: NfGenMsg, body: NftBody) -> Self {
        NftMessage {
            flags,
            seq,
            port,
            nfgen,
            body,
            trailing: Vec::new(),
            padding: Vec::new(),
        }
    }

    /// Reads an nfnetlink message. None for netlink control messages (`NLMSG_ERROR`,
    /// `NLMSG_DONE`, ...: types below 16) and for payloads too short for `nfgenmsg`.
    pub fn parse(msg: &NlMsg) -> Option<NftMessage> {
        let msg_type = msg.msg_type();
        if msg_type < NFNL_MSG_BATCH_BEGIN {
            return None;
        }
        let nfgen = msg.nfgen()?;
        let raw_body = || NftBody::Unknown {
            msg_type,
            payload: msg.payload[NfGenMsg::LEN..].to_vec(),
        };
        let header = |body, trailing| NftMessage {
            flags: msg.flags(),
            seq: msg.seq(),
            port: msg.header.port_number,
            nfgen,
            body,
            trailing,
            padding: Vec::new(),
        };
        let (attrs, left) = msg.nf_attrs();
        let Some(body) = NftBody::from_attrs(msg_type, &attrs) else {
            return Some(header(raw_body(), Vec::new()));
        };
        let mut m = header(body, msg.payload[msg.payload.len() - left..].to_vec());
        match padding_diff(&m.payload(), &msg.payload, &attrs) {
            Some(padding) => m.padding = padding,
            None => m = header(raw_body(), Vec::new()),
        }
        Some(m)
    }

    /// The message's `nlmsg_type`.
    pub fn msg_type(&self) -> u16 {
        self.body.msg_type()
    }

    /// `nfgenmsg.nfgen_family`.
    pub fn family(&self) -> u8 {
        self.nfgen.family
    }

    /// The payload: `nfgenmsg`, attributes, trailing bytes.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = self.nfgen.to_bytes().to_vec();
        self.body.emit(&mut p);
        p.extend_from_slice(&self.trailing);
        for &(off, b) in &self.padding {
            if let Some(slot) = p.get_mut(off) {
                *slot = b;
            }
        }
        p
    }

    pub fn to_nlmsg(&self) -> NlMsg {
        NlMsg::new(
            self.msg_type(),
            self.flags,
            self.seq,
            self.port,
            self.payload(),
        )
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_nlmsg().to_bytes()
    }

    /// For BATCH_BEGIN/END: the subsystem the batch is for. libnftnl writes `res_id` in
    /// network order, older versions in host order; both are accepted, as the kernel
    /// does.
    pub fn batch_subsys(&self) -> Option<u8> {
        if !matches!(self.body, NftBody::BatchBegin(_) | NftBody::BatchEnd(_)) {
            return None;
        }
        let r = self.nfgen.res_id;
        if r <= 0xff {
            Some(r as u8)
        } else if r & 0xff == 0 {
            Some((r >> 8) as u8)
        } else {
            None
        }
    }
}

/// Where `emitted` (padding zeroed) and `original` differ, if they differ only in the
/// padding of the top-level attributes `attrs`: the original padding bytes. None when
/// they differ anywhere else (the typed form is then not exact).
fn padding_diff(emitted: &[u8], original: &[u8], attrs: &[Attr]) -> Option<Vec<(usize, u8)>> {
    if emitted.len() != original.len() {
        return None;
    }
    let mut pads = Vec::new();
    let mut off = NfGenMsg::LEN;
    for a in attrs {
        let end = off + 4 + a.value.len();
        off += a.wire_len();
        pads.push(end..off.min(original.len()));
    }
    let mut out = Vec::new();
    for (i, (e, o)) in emitted.iter().zip(original).enumerate() {
        if e != o {
            if !pads.iter().any(|r| r.contains(&i)) {
                return None;
            }
            out.push((i, *o));
        }
    }
    Some(out)
}

/// One message of a datagram: typed if it is an nfnetlink message, else as it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Nft(NftMessage),
    Other(NlMsg),
}

impl Parsed {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Parsed::Nft(m) => m.to_bytes(),
            Parsed::Other(m) => m.to_bytes(),
        }
    }
}

/// Splits a datagram and types every message.
pub fn parse_datagram(buf: &[u8]) -> (Vec<Parsed>, DatagramTail) {
    let (msgs, tail) = split_datagram(buf);
    let parsed = msgs
        .into_iter()
        .map(|m| {
            NftMessage::parse(&m)
                .map(Parsed::Nft)
                .unwrap_or(Parsed::Other(m))
        })
        .collect();
    (parsed, tail)
}

#[cfg(test)]
mod tests;
