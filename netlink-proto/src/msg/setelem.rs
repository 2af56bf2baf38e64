//! Set elements: `NFT_MSG_{NEW,GET,DEL,DESTROY}SETELEM`, `NFT_MSG_GETSETELEM_RESET`.

use crate::consts::*;
use crate::data::Data;
use crate::expr::{ExprElem, ExprList};
use crate::typed::{attr_enum, attr_list, getters, ListElem, Nest, Str};

attr_enum! {
    /// `NFTA_SET_ELEM_*`: one element.
    pub enum SetElemAttr {
        Key(Data) = NFTA_SET_ELEM_KEY,
        /// Map data: a value or a verdict.
        Data(Data) = NFTA_SET_ELEM_DATA,
        /// `NFT_SET_ELEM_INTERVAL_END`, `NFT_SET_ELEM_CATCHALL`.
        Flags(u32) = NFTA_SET_ELEM_FLAGS,
        /// Timeout in ms.
        Timeout(u64) = NFTA_SET_ELEM_TIMEOUT,
        /// Time left in ms (dumps; nft also sends it when restoring).
        Expiration(u64) = NFTA_SET_ELEM_EXPIRATION,
        /// nft keeps element comments here.
        Userdata(Vec<u8>) = NFTA_SET_ELEM_USERDATA,
        Expr(ExprElem) = NFTA_SET_ELEM_EXPR,
        /// Name of the object an object map points to.
        Objref(Str) = NFTA_SET_ELEM_OBJREF,
        /// End of a range (concatenated interval sets).
        KeyEnd(Data) = NFTA_SET_ELEM_KEY_END,
        Expressions(ExprList) = NFTA_SET_ELEM_EXPRESSIONS,
    }
}

/// One element's attributes.
pub type SetElem = Nest<SetElemAttr>;

impl Nest<SetElemAttr> {
    getters! { SetElemAttr in items {
        key: Key => nest<Data>,
        data: Data => nest<Data>,
        flags: Flags => copy<u32>,
        timeout: Timeout => copy<u64>,
        expiration: Expiration => copy<u64>,
        userdata: Userdata => bytes,
        expr: Expr => nest<ExprElem>,
        objref: Objref => str,
        key_end: KeyEnd => nest<Data>,
        expressions: Expressions => nest<ExprList>,
    } }
}

attr_enum! {
    /// `NFTA_SET_ELEM_LIST_*`: which set, and its elements.
    pub enum SetElemListAttr {
        Table(Str) = NFTA_SET_ELEM_LIST_TABLE,
        Set(Str) = NFTA_SET_ELEM_LIST_SET,
        Elements(Nest<ListElem<SetElemAttr>>) = NFTA_SET_ELEM_LIST_ELEMENTS,
        /// The set by its batch-local id (anonymous sets).
        SetId(u32) = NFTA_SET_ELEM_LIST_SET_ID,
    }
}

attr_list! {
    /// A set element message's attributes.
    pub struct SetElemList(SetElemListAttr);
}

impl SetElemList {
    getters! { SetElemListAttr {
        table: Table => str,
        set: Set => str,
        elements: Elements => nest<Nest<ListElem<SetElemAttr>>>,
        set_id: SetId => copy<u32>,
    } }

    /// The well-formed elements, in order, across every ELEMENTS attribute.
    pub fn elems(&self) -> impl Iterator<Item = &SetElem> {
        self.attrs
            .iter()
            .filter_map(|a| match a {
                SetElemListAttr::Elements(n) => Some(n.items.iter()),
                _ => None,
            })
            .flatten()
            .filter_map(ListElem::elem)
    }
}
