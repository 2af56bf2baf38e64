//! Stateful objects: NEWOBJ / DELOBJ / DESTROYOBJ (`nf_tables_newobj`, `_delobj`) for
//! counter, quota, ct helper, limit, connlimit, tunnel, ct timeout, secmark, ct
//! expectation and synproxy objects.

use netlink_proto::attr::Attr;
use netlink_proto::consts::*;
use netlink_proto::extra::*;

use crate::errno::*;
use crate::expr;
use crate::msg::*;
use crate::nla::{self, Nla, Pol};
use crate::state::Obj;
use crate::table;
use crate::txn::{Meta, Msg, MsgErr, MsgResult, TransKind, Txn};
use netlink_proto::extra::{
    NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV,
};

pub const POLICY: &[Pol] = &[
    Pol::Any,
    Pol::Str(NAME_MAX),        // TABLE
    Pol::Str(NAME_MAX),        // NAME
    Pol::U32,                  // TYPE
    Pol::Nested,               // DATA
    Pol::Any,                  // USE
    Pol::U64,                  // HANDLE
    Pol::Any,                  // PAD
    Pol::Bin(USERDATA_MAXLEN), // USERDATA
];

/// An object type: its data policy, the kernel's dump order, and whether it has an
/// `->update` op (re-adding an existing object then updates it).
struct ObjType {
    ty: u32,
    policy: &'static [Pol],
    order: &'static [u16],
    update: bool,
}

const OBJ_TYPES: &[ObjType] = &[
    ObjType {
        ty: NFT_OBJECT_COUNTER,
        policy: &[Pol::Any, Pol::U64, Pol::U64],
        order: &[NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS],
        update: false,
    },
    ObjType {
        ty: NFT_OBJECT_QUOTA,
        policy: &[Pol::Any, Pol::U64, Pol::U32, Pol::Any, Pol::U64],
        order: &[NFTA_QUOTA_BYTES, NFTA_QUOTA_CONSUMED, NFTA_QUOTA_FLAGS],
        update: true,
    },
    ObjType {
        ty: NFT_OBJECT_CT_HELPER,
        policy: &[Pol::Any, Pol::Str(15), Pol::U16, Pol::U8],
        order: &[
            NFTA_CT_HELPER_NAME,
            NFTA_CT_HELPER_L4PROTO,
            NFTA_CT_HELPER_L3PROTO,
        ],
        update: false,
    },
    ObjType {
        ty: NFT_OBJECT_LIMIT,
        policy: &[Pol::Any, Pol::U64, Pol::U64, Pol::U32, Pol::U32, Pol::U32],
        order: &[
            NFTA_LIMIT_RATE,
            NFTA_LIMIT_UNIT,
            NFTA_LIMIT_BURST,
            NFTA_LIMIT_TYPE,
            NFTA_LIMIT_FLAGS,
        ],
        update: true,
    },
    ObjType {
        ty: NFT_OBJECT_CONNLIMIT,
        policy: &[Pol::Any, Pol::U32, Pol::U32],
        order: &[NFTA_CONNLIMIT_COUNT, NFTA_CONNLIMIT_FLAGS],
        update: false,
    },
    ObjType {
        ty: NFT_OBJECT_TUNNEL,
        policy: &[Pol::Any],
        order: &[],
        update: false,
    },
    ObjType {
        ty: NFT_OBJECT_CT_TIMEOUT,
        policy: &[Pol::Any, Pol::U16, Pol::U8, Pol::Nested],
        order: &[
            NFTA_CT_TIMEOUT_L4PROTO,
            NFTA_CT_TIMEOUT_L3PROTO,
            NFTA_CT_TIMEOUT_DATA,
        ],
        update: false,
    },
    ObjType {
        ty: NFT_OBJECT_SECMARK,
        policy: &[Pol::Any, Pol::Str(NFT_SECMARK_CTX_MAXLEN as usize)],
        order: &[NFTA_SECMARK_CTX],
        update: false,
    },
    ObjType {
        ty: NFT_OBJECT_CT_EXPECT,
        policy: &[Pol::Any, Pol::U16, Pol::U8, Pol::U16, Pol::U32, Pol::U8],
        order: &[
            NFTA_CT_EXPECT_L3PROTO,
            NFTA_CT_EXPECT_L4PROTO,
            NFTA_CT_EXPECT_DPORT,
            NFTA_CT_EXPECT_TIMEOUT,
            NFTA_CT_EXPECT_SIZE,
        ],
        update: false,
    },
    ObjType {
        ty: NFT_OBJECT_SYNPROXY,
        policy: &[Pol::Any, Pol::U16, Pol::U8, Pol::U32],
        order: &[NFTA_SYNPROXY_MSS, NFTA_SYNPROXY_WSCALE, NFTA_SYNPROXY_FLAGS],
        update: true,
    },
];

/// Conntrack helpers built into this kernel: (name, layer 4 protocols).
const CT_HELPERS: &[(&str, &[u8])] = &[
    ("amanda", &[17]),
    ("ftp", &[6]),
    ("RAS", &[17]),
    ("Q.931", &[6]),
    ("H.245", &[6]),
    ("irc", &[6]),
    ("netbios-ns", &[17]),
    ("snmp", &[17]),
    ("pptp", &[6]),
    ("sane", &[6]),
    ("sip", &[6, 17]),
    ("tftp", &[17]),
];

/// Whether this kernel has a conntrack helper of that name for that layer 4 protocol.
pub(crate) fn ct_helper_exists(name: &[u8], l4: u8) -> bool {
    CT_HELPERS
        .iter()
        .any(|(n, protos)| n.as_bytes() == name && protos.contains(&l4))
}

fn obj_type(ty: u32) -> Option<&'static ObjType> {
    OBJ_TYPES.iter().find(|t| t.ty == ty)
}

/// `nft_obj_init`: parses the data and applies the type's checks; returns the dump form.
fn init(ty: &ObjType, family: u8, data: &Nla<'_>) -> Result<Vec<Attr>, i32> {
    let tb = nla::parse_nested(data, ty.policy).map_err(|e| e.errno)?;
    let mut attrs: Vec<Attr> = data
        .nested()
        .iter()
        .map(|a| expr::canon_with(a, ty.policy))
        .collect();
    let default = |attrs: &mut Vec<Attr>, a: Attr| {
        if !attrs.iter().any(|x| x.id() == a.id()) {
            attrs.push(a);
        }
    };
    match ty.ty {
        NFT_OBJECT_COUNTER => {
            default(&mut attrs, Attr::u64_be(NFTA_COUNTER_BYTES, 0));
            default(&mut attrs, Attr::u64_be(NFTA_COUNTER_PACKETS, 0));
        }
        NFT_OBJECT_QUOTA => {
            let bytes = tb.be64(NFTA_QUOTA_BYTES).ok_or(EINVAL)?;
            if bytes > i64::MAX as u64 {
                return Err(EOVERFLOW);
            }
            let flags = tb.be32(NFTA_QUOTA_FLAGS).unwrap_or(0);
            if flags & !NFT_QUOTA_F_INV != 0 {
                return Err(EINVAL);
            }
            default(&mut attrs, Attr::u32_be(NFTA_QUOTA_FLAGS, flags));
            default(&mut attrs, Attr::u64_be(NFTA_QUOTA_CONSUMED, 0));
        }
        NFT_OBJECT_CT_HELPER => {
            let name = tb.get(NFTA_CT_HELPER_NAME).ok_or(EINVAL)?;
            let l4 = tb.get(NFTA_CT_HELPER_L4PROTO).ok_or(EINVAL)?.u8();
            if !ct_helper_exists(name.cstr(), l4) {
                return Err(ENOENT);
            }
            // `nft_ct_helper_obj_init`: the helper's family defaults to the table's and
            // must not contradict it; the dump names the families a helper was found for.
            let l3 = match tb.get(NFTA_CT_HELPER_L3PROTO) {
                Some(a) => u8::try_from(a.be16()).map_err(|_| EAFNOSUPPORT)?,
                None => family,
            };
            let dumped = match (l3, family) {
                (NFPROTO_IPV4, NFPROTO_IPV6) | (NFPROTO_IPV6, NFPROTO_IPV4) => return Err(EINVAL),
                (NFPROTO_IPV4 | NFPROTO_IPV6, _) => l3,
                (NFPROTO_NETDEV | NFPROTO_BRIDGE | NFPROTO_INET, _) => NFPROTO_INET,
                _ => return Err(EAFNOSUPPORT),
            };
            attrs.retain(|a| a.id() != NFTA_CT_HELPER_L3PROTO);
            attrs.push(Attr::u16_be(NFTA_CT_HELPER_L3PROTO, u16::from(dumped)));
        }
        NFT_OBJECT_LIMIT => crate::expr_dump::kernel_form("limit", &mut attrs)?,
        NFT_OBJECT_CONNLIMIT => {
            if !tb.has(NFTA_CONNLIMIT_COUNT) {
                return Err(EINVAL);
            }
            crate::expr_dump::kernel_form("connlimit", &mut attrs)?;
        }
        NFT_OBJECT_CT_EXPECT => {
            for id in [
                NFTA_CT_EXPECT_L4PROTO,
                NFTA_CT_EXPECT_DPORT,
                NFTA_CT_EXPECT_TIMEOUT,
                NFTA_CT_EXPECT_SIZE,
            ] {
                if !tb.has(id) {
                    return Err(EINVAL);
                }
            }
            // `nft_ct_expect_obj_init`: l3num defaults to the table's family, and an
            // expectation is for IPv4 or IPv6 only.
            let l3 = tb
                .get(NFTA_CT_EXPECT_L3PROTO)
                .map_or(u16::from(family), |a| a.be16());
            if l3 != u16::from(NFPROTO_IPV4) && l3 != u16::from(NFPROTO_IPV6) {
                return Err(EAFNOSUPPORT);
            }
            default(&mut attrs, Attr::u16_be(NFTA_CT_EXPECT_L3PROTO, l3));
        }
        NFT_OBJECT_CT_TIMEOUT => {
            if !tb.has(NFTA_CT_TIMEOUT_L4PROTO) || !tb.has(NFTA_CT_TIMEOUT_DATA) {
                return Err(EINVAL);
            }
            // `nft_ct_timeout_obj_init`: l3num defaults to the table's family.
            default(
                &mut attrs,
                Attr::u16_be(NFTA_CT_TIMEOUT_L3PROTO, u16::from(family)),
            );
            // `nft_ct_timeout_obj_dump` opens this nest with `nla_nest_start`.
            for a in attrs.iter_mut() {
                if a.id() == NFTA_CT_TIMEOUT_DATA {
                    a.kind |= 0x8000;
                }
            }
        }
        NFT_OBJECT_SECMARK => {
            if !tb.has(NFTA_SECMARK_CTX) {
                return Err(EINVAL);
            }
            // No LSM here turns a context into a secid: `nft_secmark_compute_secid`
            // gets secid 0.
            return Err(ENOENT);
        }
        _ => {}
    }
    if !ty.order.is_empty() {
        let mut out = Vec::new();
        for id in ty.order {
            if let Some(a) = attrs.iter().rev().find(|a| a.id() == *id) {
                out.push(a.clone());
            }
        }
        attrs = out;
    }
    Ok(attrs)
}

pub fn new(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let (Some(ty), Some(name), Some(data)) = (
        m.tb.be32(NFTA_OBJ_TYPE),
        m.tb.get(NFTA_OBJ_NAME),
        m.tb.get(NFTA_OBJ_DATA),
    ) else {
        return Err(EINVAL.into());
    };
    let family = m.meta.family;
    let ti = table::lookup_at(&tx.rs, m.tb.get(NFTA_OBJ_TABLE), family, m.meta.portid)?;
    let t = &tx.rs.tables[ti];
    let table = t.handle;
    if let Some(oi) = t.obj_idx(name.cstr(), ty) {
        if m.meta.flags & NLM_F_EXCL != 0 {
            return Err(MsgErr::at(EEXIST, Some(name.off)));
        }
        if m.meta.flags & NLM_F_REPLACE != 0 {
            return Err(EOPNOTSUPP.into());
        }
        let Some(ot) = obj_type(ty).filter(|o| o.update) else {
            return Ok(());
        };
        let attrs = init(ot, family, &data)?;
        let o = &mut tx.rs.tables[ti].objects[oi];
        o.data = update_data(ty, &o.data, attrs);
        let snapshot = Box::new(o.clone());
        let handle = o.handle;
        tx.push(m.meta, table, TransKind::NewObj { handle, snapshot });
        return Ok(());
    }
    let ot = obj_type(ty).ok_or(MsgErr::from(ENOENT))?;
    let attrs = init(ot, family, &data)?;
    let handle = tx.alloc_handle(table);
    let obj = Obj {
        name: table::name_of(&name),
        handle,
        obj_type: ty,
        data: attrs,
        udata: m.tb.get(NFTA_OBJ_USERDATA).map(|u| u.value.to_vec()),
    };
    let snapshot = Box::new(obj.clone());
    tx.rs.tables[ti].objects.push(obj);
    tx.push(m.meta, table, TransKind::NewObj { handle, snapshot });
    Ok(())
}

/// `->update`: the new limits, keeping what the packet path accumulated (quota use).
fn update_data(ty: u32, old: &[Attr], new: Vec<Attr>) -> Vec<Attr> {
    if ty == NFT_OBJECT_QUOTA {
        let consumed = old.iter().find(|a| a.id() == NFTA_QUOTA_CONSUMED).cloned();
        return new
            .into_iter()
            .map(|a| {
                if a.id() == NFTA_QUOTA_CONSUMED {
                    consumed.clone().unwrap_or(a)
                } else {
                    a
                }
            })
            .collect();
    }
    new
}

pub fn del(tx: &mut Txn<'_>, m: &Msg<'_>) -> MsgResult {
    let Some(ty) = m.tb.be32(NFTA_OBJ_TYPE) else {
        return Err(EINVAL.into());
    };
    if !m.tb.has(NFTA_OBJ_NAME) && !m.tb.has(NFTA_OBJ_HANDLE) {
        return Err(EINVAL.into());
    }
    let family = m.meta.family;
    let ti = table::lookup_at(&tx.rs, m.tb.get(NFTA_OBJ_TABLE), family, m.meta.portid)?;
    let t = &tx.rs.tables[ti];
    let (attr, found) = match m.tb.get(NFTA_OBJ_HANDLE) {
        Some(h) => (
            h,
            t.objects
                .iter()
                .position(|o| o.handle == h.be64() && o.obj_type == ty),
        ),
        None => {
            let n = m.tb.get(NFTA_OBJ_NAME).ok_or(MsgErr::from(EINVAL))?;
            (n, t.obj_idx(n.cstr(), ty))
        }
    };
    let Some(oi) = found else {
        if is_destroy(m.meta.msg_type) {
            return Ok(());
        }
        return Err(MsgErr::at(ENOENT, Some(attr.off)));
    };
    if crate::dump::obj_use(t, &t.objects[oi]) > 0 {
        return Err(MsgErr::at(EBUSY, Some(attr.off)));
    }
    let (table, handle) = (t.handle, t.objects[oi].handle);
    delete(tx, m.meta, table, handle);
    Ok(())
}

/// `nft_delobj`.
pub fn delete(tx: &mut Txn<'_>, meta: Meta, table: u64, handle: u64) {
    let Some(ti) = tx.rs.table_idx_by_handle(table) else {
        return;
    };
    let Some(oi) = tx.rs.tables[ti]
        .objects
        .iter()
        .position(|o| o.handle == handle)
    else {
        return;
    };
    let o = tx.rs.tables[ti].objects.remove(oi);
    tx.push(
        meta,
        table,
        TransKind::DelObj {
            snapshot: Box::new(o),
        },
    );
}

/// Resets what `GETOBJ_RESET` / `GETRULE_RESET` zero: counter values and quota use.
pub fn reset_attrs(name_or_type: ResetKind, data: &mut [Attr]) {
    for a in data.iter_mut() {
        let zero = match name_or_type {
            ResetKind::Counter => a.id() == NFTA_COUNTER_BYTES || a.id() == NFTA_COUNTER_PACKETS,
            ResetKind::Quota => a.id() == NFTA_QUOTA_CONSUMED,
        };
        if zero {
            a.value = vec![0; a.value.len()];
        }
    }
}

#[derive(Clone, Copy)]
pub enum ResetKind {
    Counter,
    Quota,
}
