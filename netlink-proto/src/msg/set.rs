//! Sets and maps: `NFT_MSG_{NEW,GET,DEL,DESTROY}SET`.

use crate::consts::*;
use crate::data::ObjType;
use crate::expr::{ExprElem, ExprList};
use crate::extra::{NFTA_SET_COUNT, NFTA_SET_TYPE};
use crate::typed::{attr_enum, attr_list, getters, ListElem, Nest, Str};

attr_enum! {
    /// `NFTA_SET_FIELD_*`: one field of a concatenated key.
    pub enum SetFieldAttr {
        /// Field length in bytes.
        Len(u32) = NFTA_SET_FIELD_LEN,
    }
}

attr_enum! {
    /// `NFTA_SET_DESC_*`: size hint and concatenation layout.
    pub enum SetDescAttr {
        Size(u32) = NFTA_SET_DESC_SIZE,
        Concat(Nest<ListElem<SetFieldAttr>>) = NFTA_SET_DESC_CONCAT,
    }
}

impl Nest<SetDescAttr> {
    getters! { SetDescAttr in items {
        size: Size => copy<u32>,
        concat: Concat => nest<Nest<ListElem<SetFieldAttr>>>,
    } }

    /// Field lengths of a concatenated key, in order; None if absent or not all typed.
    pub fn concat_lens(&self) -> Option<Vec<u32>> {
        self.concat()?
            .items
            .iter()
            .map(|e| {
                e.elem()?.items.iter().rev().find_map(|f| match f {
                    SetFieldAttr::Len(l) => Some(*l),
                    SetFieldAttr::Other(_) => None,
                })
            })
            .collect()
    }
}

attr_enum! {
    /// `NFTA_SET_*`.
    pub enum SetAttr {
        Table(Str) = NFTA_SET_TABLE,
        Name(Str) = NFTA_SET_NAME,
        /// `NFT_SET_ANONYMOUS`, `NFT_SET_CONSTANT`, `NFT_SET_INTERVAL`, `NFT_SET_MAP`, ...
        Flags(u32) = NFTA_SET_FLAGS,
        /// nft's datatype id of the key (informational for the kernel).
        KeyType(u32) = NFTA_SET_KEY_TYPE,
        KeyLen(u32) = NFTA_SET_KEY_LEN,
        /// Data type of a map (`NFT_DATA_VERDICT` for verdict maps).
        DataType(u32) = NFTA_SET_DATA_TYPE,
        DataLen(u32) = NFTA_SET_DATA_LEN,
        Policy(u32) = NFTA_SET_POLICY,
        Desc(Nest<SetDescAttr>) = NFTA_SET_DESC,
        /// Batch-local id (anonymous sets are referenced by it).
        Id(u32) = NFTA_SET_ID,
        /// Default element timeout in ms.
        Timeout(u64) = NFTA_SET_TIMEOUT,
        GcInterval(u32) = NFTA_SET_GC_INTERVAL,
        Userdata(Vec<u8>) = NFTA_SET_USERDATA,
        ObjType(ObjType) = NFTA_SET_OBJ_TYPE,
        Handle(u64) = NFTA_SET_HANDLE,
        Expr(ExprElem) = NFTA_SET_EXPR,
        Expressions(ExprList) = NFTA_SET_EXPRESSIONS,
        /// Backend name, dumped by newer kernels.
        Type(Str) = NFTA_SET_TYPE,
        /// Element count, dumped by newer kernels.
        Count(u32) = NFTA_SET_COUNT,
    }
}

attr_list! {
    /// A set message's attributes.
    pub struct Set(SetAttr);
}

impl Set {
    getters! { SetAttr {
        table: Table => str,
        name: Name => str,
        flags: Flags => copy<u32>,
        key_type: KeyType => copy<u32>,
        key_len: KeyLen => copy<u32>,
        data_type: DataType => copy<u32>,
        data_len: DataLen => copy<u32>,
        policy: Policy => copy<u32>,
        desc: Desc => nest<Nest<SetDescAttr>>,
        id: Id => copy<u32>,
        timeout: Timeout => copy<u64>,
        gc_interval: GcInterval => copy<u32>,
        userdata: Userdata => bytes,
        obj_type: ObjType => copy<ObjType>,
        handle: Handle => copy<u64>,
        expr: Expr => nest<ExprElem>,
        expressions: Expressions => nest<ExprList>,
        backend: Type => str,
        count: Count => copy<u32>,
    } }
}
