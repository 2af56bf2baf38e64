//! Stateful objects: `NFT_MSG_{NEW,GET,DEL,DESTROY}OBJ`, `NFT_MSG_GETOBJ_RESET`.
//!
//! What `NFTA_OBJ_DATA` holds depends on `NFTA_OBJ_TYPE`, so an object is read in two
//! steps: the type first, then the data with the attribute enum of that type.

use crate::attr::Attr;
use crate::consts::*;
use crate::data::ObjType;
use crate::expr::{
    connlimit::ConnlimitAttr, counter::CounterAttr, limit::LimitAttr, quota::QuotaAttr,
    synproxy::SynproxyAttr,
};
use crate::typed::{attr_enum, exact, getters, AttrItem, AttrValue, HostU32, Nest, Str};

attr_enum! {
    /// `NFTA_CT_HELPER_*`.
    pub enum CtHelperAttr {
        /// Helper name (`ftp`, `sip`, ...).
        Name(Str) = NFTA_CT_HELPER_NAME,
        L3proto(u16) = NFTA_CT_HELPER_L3PROTO,
        L4proto(u8) = NFTA_CT_HELPER_L4PROTO,
    }
}

attr_enum! {
    /// `NFTA_CT_TIMEOUT_*`. The policy nest is numbered per layer 4 protocol
    /// (`CTA_TIMEOUT_TCP_*`, ...), so its members stay raw.
    pub enum CtTimeoutAttr {
        L3proto(u16) = NFTA_CT_TIMEOUT_L3PROTO,
        L4proto(u8) = NFTA_CT_TIMEOUT_L4PROTO,
        Data(Nest<Attr>) = NFTA_CT_TIMEOUT_DATA,
    }
}

attr_enum! {
    /// `NFTA_CT_EXPECT_*`.
    pub enum CtExpectAttr {
        L3proto(u16) = NFTA_CT_EXPECT_L3PROTO,
        L4proto(u8) = NFTA_CT_EXPECT_L4PROTO,
        Dport(u16) = NFTA_CT_EXPECT_DPORT,
        /// Milliseconds, in host byte order (the kernel reads it with `nla_get_u32`).
        Timeout(HostU32) = NFTA_CT_EXPECT_TIMEOUT,
        Size(u8) = NFTA_CT_EXPECT_SIZE,
    }
}

attr_enum! {
    /// `NFTA_SECMARK_*`.
    pub enum SecmarkAttr {
        Ctx(Str) = NFTA_SECMARK_CTX,
    }
}

/// `NFTA_OBJ_DATA`, typed by the object type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjData {
    Counter(Nest<CounterAttr>),
    Quota(Nest<QuotaAttr>),
    Limit(Nest<LimitAttr>),
    Connlimit(Nest<ConnlimitAttr>),
    CtHelper(Nest<CtHelperAttr>),
    CtTimeout(Nest<CtTimeoutAttr>),
    CtExpect(Nest<CtExpectAttr>),
    Synproxy(Nest<SynproxyAttr>),
    Secmark(Nest<SecmarkAttr>),
    /// Tunnel objects, unknown types, or data read without knowing the type.
    Raw(Nest<Attr>),
}

impl ObjData {
    /// Reads `NFTA_OBJ_DATA` for an object of type `obj_type`.
    pub fn decode_as(obj_type: ObjType, attr: &Attr) -> Option<ObjData> {
        Some(match obj_type {
            ObjType::Counter => ObjData::Counter(Nest::decode(attr)?),
            ObjType::Quota => ObjData::Quota(Nest::decode(attr)?),
            ObjType::Limit => ObjData::Limit(Nest::decode(attr)?),
            ObjType::Connlimit => ObjData::Connlimit(Nest::decode(attr)?),
            ObjType::CtHelper => ObjData::CtHelper(Nest::decode(attr)?),
            ObjType::CtTimeout => ObjData::CtTimeout(Nest::decode(attr)?),
            ObjType::CtExpect => ObjData::CtExpect(Nest::decode(attr)?),
            ObjType::Synproxy => ObjData::Synproxy(Nest::decode(attr)?),
            ObjType::Secmark => ObjData::Secmark(Nest::decode(attr)?),
            _ => ObjData::Raw(Nest::decode(attr)?),
        })
    }
}

impl AttrValue for ObjData {
    /// Without the object type only the raw form can be read; [`Obj::from_attrs`]
    /// retypes it.
    fn decode(attr: &Attr) -> Option<Self> {
        Some(ObjData::Raw(Nest::decode(attr)?))
    }
    fn encode(&self, id: u16) -> Attr {
        match self {
            ObjData::Counter(n) => n.encode(id),
            ObjData::Quota(n) => n.encode(id),
            ObjData::Limit(n) => n.encode(id),
            ObjData::Connlimit(n) => n.encode(id),
            ObjData::CtHelper(n) => n.encode(id),
            ObjData::CtTimeout(n) => n.encode(id),
            ObjData::CtExpect(n) => n.encode(id),
            ObjData::Synproxy(n) => n.encode(id),
            ObjData::Secmark(n) => n.encode(id),
            ObjData::Raw(n) => n.encode(id),
        }
    }
}

attr_enum! {
    /// `NFTA_OBJ_*`.
    pub enum ObjAttr {
        Table(Str) = NFTA_OBJ_TABLE,
        Name(Str) = NFTA_OBJ_NAME,
        Type(ObjType) = NFTA_OBJ_TYPE,
        Data(ObjData) = NFTA_OBJ_DATA,
        /// Number of references in dumps.
        Use(u32) = NFTA_OBJ_USE,
        Handle(u64) = NFTA_OBJ_HANDLE,
        Userdata(Vec<u8>) = NFTA_OBJ_USERDATA,
    }
}

/// An object message's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Obj {
    /// The attributes in wire order.
    pub attrs: Vec<ObjAttr>,
}

impl Obj {
    pub fn new(attrs: Vec<ObjAttr>) -> Self {
        Obj { attrs }
    }

    /// Reads a list of raw attributes; DATA is typed after the (last) TYPE.
    pub fn from_attrs(attrs: &[Attr]) -> Self {
        let obj_type = attrs
            .iter()
            .rev()
            .find(|a| a.id() == NFTA_OBJ_TYPE)
            .and_then(|a| a.as_u32_be())
            .map(ObjType::from);
        let attrs = attrs
            .iter()
            .map(|a| {
                if let (true, Some(t)) = (a.id() == NFTA_OBJ_DATA, obj_type) {
                    if let Some(typed) =
                        ObjData::decode_as(t, a).and_then(|d| exact(ObjAttr::Data(d), a))
                    {
                        return typed;
                    }
                }
                ObjAttr::from_attr(a)
            })
            .collect();
        Obj { attrs }
    }

    /// The attributes as they go on the wire.
    pub fn to_attrs(&self) -> Vec<Attr> {
        crate::typed::to_attrs(&self.attrs)
    }

    /// Attributes nobody here could type, in wire order.
    pub fn others(&self) -> impl Iterator<Item = &Attr> {
        self.attrs.iter().filter_map(|a| match a {
            ObjAttr::Other(o) => Some(o),
            _ => None,
        })
    }

    getters! { ObjAttr {
        table: Table => str,
        name: Name => str,
        obj_type: Type => copy<ObjType>,
        data: Data => nest<ObjData>,
        use_count: Use => copy<u32>,
        handle: Handle => copy<u64>,
        userdata: Userdata => bytes,
    } }
}
