//! The machinery every typed attribute enum is built from.
//!
//! The rule all of it follows: an attribute is read into a typed variant only when
//! writing that variant back gives the very same bytes (type word with its flags, value,
//! padding). Anything else (an unknown number, a `u32` sent with 8 bytes, a string
//! without its NUL, a nest with trailing garbage) stays an `Other(Attr)`, in place. So
//! `parse` then `emit` is the identity on every input, and a typed value is always what
//! was on the wire.

use std::fmt::Debug;
use std::ops::Deref;

use netlink_packet_core::{NLA_F_NESTED, NLA_TYPE_MASK};

use crate::attr::{parse_attrs, Attr};

/// An element of an attribute list that can always be read (falling back to a raw
/// [`Attr`]) and written back exactly.
pub trait AttrItem: Sized + Clone + Debug + PartialEq {
    /// Reads one attribute; never fails, unknown or odd attributes are kept raw.
    fn from_attr(attr: &Attr) -> Self;
    /// The attribute as it goes on the wire.
    fn to_attr(&self) -> Attr;

    /// Reads a whole list, in wire order.
    fn from_attrs(attrs: &[Attr]) -> Vec<Self> {
        attrs.iter().map(Self::from_attr).collect()
    }
}

impl AttrItem for Attr {
    fn from_attr(attr: &Attr) -> Self {
        attr.clone()
    }
    fn to_attr(&self) -> Attr {
        self.clone()
    }
}

/// Writes a typed list as attributes.
pub fn to_attrs<T: AttrItem>(items: &[T]) -> Vec<Attr> {
    items.iter().map(AttrItem::to_attr).collect()
}

/// Writes a typed list as wire bytes.
pub fn emit_items<T: AttrItem>(items: &[T], out: &mut Vec<u8>) {
    for item in items {
        item.to_attr().emit(out);
    }
}

/// The value type of one typed variant: how to read it from an attribute and how to
/// write it back under a given attribute number. `decode` may be loose; the caller
/// checks that `encode` reproduces the attribute before it keeps the typed form.
pub trait AttrValue: Sized {
    fn decode(attr: &Attr) -> Option<Self>;
    fn encode(&self, id: u16) -> Attr;
}

impl AttrValue for u8 {
    fn decode(attr: &Attr) -> Option<Self> {
        attr.as_u8()
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::u8(id, *self)
    }
}

/// `u16` attributes are big-endian in nf_tables (`nla_put_be16`).
impl AttrValue for u16 {
    fn decode(attr: &Attr) -> Option<Self> {
        attr.as_u16_be()
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::u16_be(id, *self)
    }
}

/// `u32` attributes are big-endian in nf_tables (`nla_put_be32`).
impl AttrValue for u32 {
    fn decode(attr: &Attr) -> Option<Self> {
        attr.as_u32_be()
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::u32_be(id, *self)
    }
}

/// A `u32` in host byte order, for the rare attributes the kernel reads with
/// `nla_get_u32` (e.g. `NFTA_CT_EXPECT_TIMEOUT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostU32(pub u32);

impl AttrValue for HostU32 {
    fn decode(attr: &Attr) -> Option<Self> {
        Some(HostU32(u32::from_ne_bytes(
            attr.value.as_slice().try_into().ok()?,
        )))
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::new(id, self.0.to_ne_bytes().to_vec())
    }
}

/// Signed big-endian 32-bit values (hook priorities).
impl AttrValue for i32 {
    fn decode(attr: &Attr) -> Option<Self> {
        attr.as_u32_be().map(|v| v as i32)
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::u32_be(id, *self as u32)
    }
}

/// `u64` attributes are big-endian in nf_tables (`nla_put_be64`).
impl AttrValue for u64 {
    fn decode(attr: &Attr) -> Option<Self> {
        attr.as_u64_be()
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::u64_be(id, *self)
    }
}

/// A UTF-8 string with exactly one trailing NUL, as `mnl_attr_put_strz` and the
/// kernel's `nla_put_string` write it.
impl AttrValue for String {
    fn decode(attr: &Attr) -> Option<Self> {
        let (last, body) = attr.value.split_last()?;
        if *last != 0 || body.contains(&0) {
            return None;
        }
        String::from_utf8(body.to_vec()).ok()
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::strz(id, self)
    }
}

/// A string attribute: UTF-8 text, sent with a trailing NUL (`mnl_attr_put_strz`,
/// `nla_put_string`) or without one (`mnl_attr_put_str`; nft does this for object
/// names in `objref`). The kernel reads both the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Str {
    pub text: String,
    /// Written with one trailing NUL.
    pub nul: bool,
}

impl Str {
    /// A NUL-terminated string, the usual form.
    pub fn new(text: impl Into<String>) -> Self {
        Str {
            text: text.into(),
            nul: true,
        }
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str::new(s)
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str::new(s)
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl std::fmt::Display for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl AttrValue for Str {
    fn decode(attr: &Attr) -> Option<Self> {
        let (body, nul) = match attr.value.split_last() {
            Some((0, body)) => (body, true),
            _ => (attr.value.as_slice(), false),
        };
        if body.contains(&0) {
            return None;
        }
        Some(Str {
            text: String::from_utf8(body.to_vec()).ok()?,
            nul,
        })
    }
    fn encode(&self, id: u16) -> Attr {
        if self.nul {
            Attr::strz(id, &self.text)
        } else {
            Attr::new(id, self.text.as_bytes().to_vec())
        }
    }
}

/// Opaque bytes (user data, raw xt blobs, packet headers).
impl AttrValue for Vec<u8> {
    fn decode(attr: &Attr) -> Option<Self> {
        Some(attr.value.clone())
    }
    fn encode(&self, id: u16) -> Attr {
        Attr::new(id, self.clone())
    }
}

/// A nested attribute: its children, typed, and the flag bits of its type word as sent.
/// libnftnl sets `NLA_F_NESTED` on every nest; the kernel's dumps mostly do not
/// (`nla_nest_start_noflag`). Both forms are kept so each re-emits as it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nest<T> {
    pub items: Vec<T>,
    /// High bits of the type word (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
    pub flags: u16,
}

impl<T> Nest<T> {
    /// A nest flagged `NLA_F_NESTED`, as libnftnl builds it.
    pub fn new(items: Vec<T>) -> Self {
        Nest {
            items,
            flags: NLA_F_NESTED,
        }
    }
    /// A nest without flags, as the kernel dumps it.
    pub fn plain(items: Vec<T>) -> Self {
        Nest { items, flags: 0 }
    }
}

impl<T> Deref for Nest<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

/// How deep typed nests may go. The kernel validates at most 10 levels of nested
/// policies; the deepest real message (a set element's dynset expression's data's
/// verdict) is far below this. Deeper nests stay raw, so that a hostile message of
/// thousands of levels (e.g. dynset in dynset in ...) cannot exhaust the stack.
pub const MAX_TYPED_DEPTH: u32 = 32;

thread_local! {
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f` one typed nesting level deeper; None (keep raw) past [`MAX_TYPED_DEPTH`].
pub fn nested<R>(f: impl FnOnce() -> Option<R>) -> Option<R> {
    let depth = DEPTH.with(|d| d.get());
    if depth >= MAX_TYPED_DEPTH {
        return None;
    }
    DEPTH.with(|d| d.set(depth + 1));
    let r = f();
    DEPTH.with(|d| d.set(depth));
    r
}

impl<T: AttrItem> AttrValue for Nest<T> {
    fn decode(attr: &Attr) -> Option<Self> {
        nested(|| {
            let children = parse_attrs(&attr.value).ok()?;
            Some(Nest {
                items: T::from_attrs(&children),
                flags: attr.kind & !NLA_TYPE_MASK,
            })
        })
    }
    fn encode(&self, id: u16) -> Attr {
        let mut value = Vec::new();
        emit_items(&self.items, &mut value);
        Attr {
            kind: id | self.flags,
            value,
        }
    }
}

/// Keeps `candidate` only if it writes back exactly as `attr`.
pub fn exact<T: AttrItem>(candidate: T, attr: &Attr) -> Option<T> {
    (candidate.to_attr() == *attr).then_some(candidate)
}

/// One member of a list of nests (set elements, concatenation fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListElem<T> {
    /// A nest of typed attributes. `id` is the attribute number it came with: normally
    /// `NFTA_LIST_ELEM`, but libnftnl numbers set elements 1, 2, 3, ... and the kernel
    /// does not look at the number there.
    Elem { id: u16, nest: Nest<T> },
    /// Not a nest of attributes; kept as it came.
    Other(Attr),
}

impl<T> ListElem<T> {
    /// An `NFTA_LIST_ELEM` nest.
    pub fn new(nest: Nest<T>) -> Self {
        ListElem::Elem {
            id: crate::consts::NFTA_LIST_ELEM,
            nest,
        }
    }
    /// The element's attributes, if it is a nest.
    pub fn elem(&self) -> Option<&Nest<T>> {
        match self {
            ListElem::Elem { nest, .. } => Some(nest),
            ListElem::Other(_) => None,
        }
    }
}

impl<T: AttrItem> AttrItem for ListElem<T> {
    fn from_attr(attr: &Attr) -> Self {
        if let Some(nest) = Nest::<T>::decode(attr) {
            if let Some(e) = exact(
                ListElem::Elem {
                    id: attr.id(),
                    nest,
                },
                attr,
            ) {
                return e;
            }
        }
        ListElem::Other(attr.clone())
    }
    fn to_attr(&self) -> Attr {
        match self {
            ListElem::Elem { id, nest } => nest.encode(*id),
            ListElem::Other(a) => a.clone(),
        }
    }
}

/// Declares an attribute enum: one typed variant per known attribute number, plus
/// `Other(Attr)`, with exact [`AttrItem`] reading and writing.
macro_rules! attr_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $id:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
            /// Kept as it came: an unknown attribute, or one whose value would not
            /// re-encode to the same bytes.
            Other($crate::attr::Attr),
        }

        impl $crate::typed::AttrItem for $name {
            #[allow(unreachable_code, unused_variables)]
            fn from_attr(attr: &$crate::attr::Attr) -> Self {
                let id = attr.id();
                $(
                    if id == $id {
                        if let Some(v) = <$ty as $crate::typed::AttrValue>::decode(attr) {
                            if let Some(t) = $crate::typed::exact($name::$variant(v), attr) {
                                return t;
                            }
                        }
                    }
                )*
                $name::Other(attr.clone())
            }
            fn to_attr(&self) -> $crate::attr::Attr {
                match self {
                    $( $name::$variant(v) => $crate::typed::AttrValue::encode(v, $id), )*
                    $name::Other(a) => a.clone(),
                }
            }
        }

        impl $name {
            /// The attribute number (flags left out).
            pub fn id(&self) -> u16 {
                match self {
                    $( $name::$variant(_) => $id, )*
                    $name::Other(a) => a.id(),
                }
            }
        }
    };
}
pub(crate) use attr_enum;

/// Declares a `u32` enumeration (keys, operators, types) with an `Unknown(u32)` escape,
/// conversions both ways, and big-endian [`AttrValue`] coding.
macro_rules! u32_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $val:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this model has no name for.
            Unknown(u32),
        }

        impl From<u32> for $name {
            fn from(v: u32) -> Self {
                $( if v == ($val) as u32 { return $name::$variant; } )*
                $name::Unknown(v)
            }
        }

        impl From<$name> for u32 {
            fn from(v: $name) -> u32 {
                match v {
                    $( $name::$variant => ($val) as u32, )*
                    $name::Unknown(v) => v,
                }
            }
        }

        impl $crate::typed::AttrValue for $name {
            fn decode(attr: &$crate::attr::Attr) -> Option<Self> {
                attr.as_u32_be().map($name::from)
            }
            fn encode(&self, id: u16) -> $crate::attr::Attr {
                $crate::attr::Attr::u32_be(id, u32::from(*self))
            }
        }
    };
}
pub(crate) use u32_enum;

/// Declares a struct holding a typed attribute list, with list conversions.
macro_rules! attr_list {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($attr:ident);) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        $vis struct $name {
            /// The attributes in wire order.
            pub attrs: Vec<$attr>,
        }

        impl $name {
            pub fn new(attrs: Vec<$attr>) -> Self {
                $name { attrs }
            }
            /// Reads a list of raw attributes.
            pub fn from_attrs(attrs: &[$crate::attr::Attr]) -> Self {
                $name { attrs: <$attr as $crate::typed::AttrItem>::from_attrs(attrs) }
            }
            /// The attributes as they go on the wire.
            pub fn to_attrs(&self) -> Vec<$crate::attr::Attr> {
                $crate::typed::to_attrs(&self.attrs)
            }
            /// Attributes nobody here could type, in wire order.
            pub fn others(&self) -> impl Iterator<Item = &$crate::attr::Attr> {
                self.attrs.iter().filter_map(|a| match a {
                    $attr::Other(o) => Some(o),
                    #[allow(unreachable_patterns)]
                    _ => None,
                })
            }
        }
    };
}
pub(crate) use attr_list;

/// Accessors for the last typed occurrence of an attribute (the kernel, too, keeps the
/// last of duplicated attributes). `copy<T>` returns `Option<T>`, `str` `Option<&str>`,
/// `bytes` `Option<&[u8]>`, `nest<T>` `Option<&T>`. The list is `self.attrs`, or the
/// field named after `in`.
macro_rules! getters {
    ($enum:ident { $( $(#[$m:meta])* $fn:ident: $variant:ident => $how:ident $(<$ret:ty>)? ),* $(,)? }) => {
        $( $crate::typed::getter!($enum, attrs, $(#[$m])* $fn, $variant, $how $(<$ret>)?); )*
    };
    ($enum:ident in $field:ident { $( $(#[$m:meta])* $fn:ident: $variant:ident => $how:ident $(<$ret:ty>)? ),* $(,)? }) => {
        $( $crate::typed::getter!($enum, $field, $(#[$m])* $fn, $variant, $how $(<$ret>)?); )*
    };
}
pub(crate) use getters;

macro_rules! getter {
    ($enum:ident, $field:ident, $(#[$m:meta])* $fn:ident, $variant:ident, copy<$ret:ty>) => {
        $(#[$m])*
        // `len` here is an attribute (NFTA_*_LEN), not a collection length.
        #[allow(clippy::len_without_is_empty)]
        pub fn $fn(&self) -> Option<$ret> {
            #[allow(unreachable_patterns)]
            self.$field.iter().rev().find_map(|a| match a { $enum::$variant(v) => Some(*v), _ => None })
        }
    };
    ($enum:ident, $field:ident, $(#[$m:meta])* $fn:ident, $variant:ident, str) => {
        $(#[$m])*
        pub fn $fn(&self) -> Option<&str> {
            #[allow(unreachable_patterns)]
            self.$field.iter().rev().find_map(|a| match a { $enum::$variant(v) => Some(v.as_str()), _ => None })
        }
    };
    ($enum:ident, $field:ident, $(#[$m:meta])* $fn:ident, $variant:ident, bytes) => {
        $(#[$m])*
        pub fn $fn(&self) -> Option<&[u8]> {
            #[allow(unreachable_patterns)]
            self.$field.iter().rev().find_map(|a| match a { $enum::$variant(v) => Some(v.as_slice()), _ => None })
        }
    };
    ($enum:ident, $field:ident, $(#[$m:meta])* $fn:ident, $variant:ident, nest<$ret:ty>) => {
        $(#[$m])*
        pub fn $fn(&self) -> Option<&$ret> {
            #[allow(unreachable_patterns)]
            self.$field.iter().rev().find_map(|a| match a { $enum::$variant(v) => Some(v), _ => None })
        }
    };
}
pub(crate) use getter;

#[cfg(test)]
#[allow(dead_code)]
mod tests {
    use super::*;

    attr_enum! {
        enum Demo {
            Name(Str) = 1,
            Num(u32) = 2,
            Inner(Nest<Demo>) = 3,
        }
    }

    #[test]
    fn exact_values_are_typed() {
        assert_eq!(Demo::from_attr(&Attr::strz(1, "x")), Demo::Name("x".into()));
        // Without its NUL a string is still typed, and stays without.
        let bare = Attr::new(1, b"x".to_vec());
        assert_eq!(
            Demo::from_attr(&bare),
            Demo::Name(Str {
                text: "x".into(),
                nul: false
            })
        );
        assert_eq!(Demo::from_attr(&bare).to_attr(), bare);
        assert_eq!(Demo::from_attr(&Attr::u32_be(2, 7)), Demo::Num(7));
        let n = Attr::nested(3, &[Attr::u32_be(2, 1)]);
        assert_eq!(
            Demo::from_attr(&n),
            Demo::Inner(Nest::new(vec![Demo::Num(1)]))
        );
        let plain = Attr::new(3, n.value.clone());
        assert_eq!(
            Demo::from_attr(&plain),
            Demo::Inner(Nest::plain(vec![Demo::Num(1)]))
        );
        assert_eq!(Demo::from_attr(&plain).to_attr(), plain);
    }

    #[test]
    fn inexact_values_stay_raw() {
        for a in [
            Attr::new(1, b"x\0\0".to_vec()),               // two NULs
            Attr::new(1, vec![0xff, 0]),                   // not UTF-8
            Attr::new(2, vec![0, 0, 0, 0, 0, 0, 0, 1]),    // u32 sent as 8 bytes
            Attr::new(2 | 0x4000, vec![0, 0, 0, 1]),       // byte-order flag kept
            Attr::new(3, vec![8, 0, 2, 0, 0, 0, 0, 1, 9]), // nest with a trailing byte
            Attr::new(9, vec![1, 2, 3]),                   // unknown number
        ] {
            let d = Demo::from_attr(&a);
            assert_eq!(d, Demo::Other(a.clone()));
            assert_eq!(d.to_attr(), a);
        }
    }

    #[test]
    fn nest_keeps_inner_raw_children() {
        let inner = vec![Attr::new(2, vec![1]), Attr::strz(1, "a")];
        let n = Attr::nested(3, &inner);
        let d = Demo::from_attr(&n);
        match &d {
            Demo::Inner(nest) => {
                assert_eq!(nest.items[0], Demo::Other(Attr::new(2, vec![1])));
                assert_eq!(nest.items[1], Demo::Name("a".into()));
            }
            other => panic!("not typed: {other:?}"),
        }
        assert_eq!(d.to_attr(), n);
    }
}
