//! Rule expressions (`NFTA_RULE_EXPRESSIONS`, set and element expressions, dynset and
//! inner sub-expressions).
//!
//! On the wire one expression is a nest holding `NFTA_EXPR_NAME` (a string) and
//! `NFTA_EXPR_DATA` (a nest whose attributes depend on the name). [`Expr`] dispatches
//! on the name to one typed struct per expression type; a name this crate does not know
//! keeps its data attributes raw ([`Expr::Other`]). [`ExprElem`] adds the framing (flag
//! bits of the nests, whether DATA was present) so that the whole nest re-emits exactly;
//! a nest that is not framed as `[NAME, DATA?]` is kept whole as [`ExprItem::Other`].

use netlink_packet_core::{NLA_F_NESTED, NLA_TYPE_MASK};

use crate::attr::{parse_attrs, Attr};
use crate::consts::{NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_LIST_ELEM};
use crate::typed::{exact, AttrItem, AttrValue, Nest};

pub mod bitwise;
pub mod byteorder;
pub mod cmp;
pub mod compat;
pub mod connlimit;
pub mod counter;
pub mod ct;
pub mod dup;
pub mod dynset;
pub mod exthdr;
pub mod fib;
pub mod flow_offload;
pub mod fwd;
pub mod hash;
pub mod immediate;
pub mod inner;
pub mod last;
pub mod limit;
pub mod log;
pub mod lookup;
pub mod masq;
pub mod meta;
pub mod nat;
pub mod notrack;
pub mod numgen;
pub mod objref;
pub mod osf;
pub mod payload;
pub mod queue;
pub mod quota;
pub mod range;
pub mod redir;
pub mod reject;
pub mod rt;
pub mod socket;
pub mod synproxy;
pub mod tproxy;
pub mod tunnel;
pub mod xfrm;

/// Declares the struct of one expression type: its typed attribute list and its name.
macro_rules! expr_struct {
    ($(#[$meta:meta])* pub struct $name:ident($attr:ident) = $ename:expr;) => {
        $crate::typed::attr_list! { $(#[$meta])* pub struct $name($attr); }
        impl $name {
            /// The `NFTA_EXPR_NAME` of this expression type.
            pub const NAME: &'static str = $ename;
        }
    };
}
pub(crate) use expr_struct;

macro_rules! exprs {
    ($( $(#[$vmeta:meta])* $variant:ident($ty:ty) ),* $(,)?) => {
        /// One expression, dispatched on its name.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Expr {
            $( $(#[$vmeta])* $variant($ty), )*
            /// An expression type this crate does not model: name and raw data attributes.
            Other { name: String, attrs: Vec<Attr> },
        }

        impl Expr {
            /// The expression's `NFTA_EXPR_NAME`.
            pub fn name(&self) -> &str {
                match self {
                    $( Expr::$variant(_) => <$ty>::NAME, )*
                    Expr::Other { name, .. } => name,
                }
            }

            /// Reads the data attributes of an expression called `name`.
            pub fn from_data(name: &str, data: &[Attr]) -> Expr {
                $( if name == <$ty>::NAME { return Expr::$variant(<$ty>::from_attrs(data)); } )*
                Expr::Other { name: name.to_string(), attrs: data.to_vec() }
            }

            /// The `NFTA_EXPR_DATA` attributes as they go on the wire.
            pub fn data_attrs(&self) -> Vec<Attr> {
                match self {
                    $( Expr::$variant(e) => e.to_attrs(), )*
                    Expr::Other { attrs, .. } => attrs.clone(),
                }
            }

            /// Data attributes this crate could not type (for any expression type).
            pub fn untyped_attrs(&self) -> Vec<&Attr> {
                match self {
                    $( Expr::$variant(e) => e.others().collect(), )*
                    Expr::Other { attrs, .. } => attrs.iter().collect(),
                }
            }
        }
    };
}

exprs! {
    Payload(payload::Payload),
    Meta(meta::Meta),
    Cmp(cmp::Cmp),
    Bitwise(bitwise::Bitwise),
    Byteorder(byteorder::Byteorder),
    Immediate(immediate::Immediate),
    Lookup(lookup::Lookup),
    Range(range::Range),
    Ct(ct::Ct),
    Counter(counter::Counter),
    Limit(limit::Limit),
    Log(log::Log),
    Reject(reject::Reject),
    Nat(nat::Nat),
    Masq(masq::Masq),
    Redir(redir::Redir),
    Queue(queue::Queue),
    Dynset(dynset::Dynset),
    Objref(objref::Objref),
    Fib(fib::Fib),
    Socket(socket::Socket),
    Connlimit(connlimit::Connlimit),
    Quota(quota::Quota),
    Hash(hash::Hash),
    Numgen(numgen::Numgen),
    Exthdr(exthdr::Exthdr),
    Rt(rt::Rt),
    Dup(dup::Dup),
    Fwd(fwd::Fwd),
    Notrack(notrack::Notrack),
    Tproxy(tproxy::Tproxy),
    Osf(osf::Osf),
    Xfrm(xfrm::Xfrm),
    Synproxy(synproxy::Synproxy),
    FlowOffload(flow_offload::FlowOffload),
    Last(last::Last),
    Inner(inner::Inner),
    Tunnel(tunnel::Tunnel),
    /// xtables match (`NFTA_MATCH_*`), as iptables-nft sends it.
    Match(compat::Match),
    /// xtables target (`NFTA_TARGET_*`), as iptables-nft sends it.
    Target(compat::Target),
}

/// One expression with its framing: the nest holding `NFTA_EXPR_NAME` and
/// `NFTA_EXPR_DATA`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprElem {
    pub expr: Expr,
    /// Flag bits of the enclosing nest's type word.
    pub flags: u16,
    /// Flag bits of `NFTA_EXPR_DATA`; `None` when it was absent (the kernel dumps no
    /// DATA for expressions without a dump function, e.g. `notrack`). With `None` and
    /// data attributes present, DATA is written without flags.
    pub data_flags: Option<u16>,
}

impl ExprElem {
    /// Framed as libnftnl sends it: both nests flagged `NLA_F_NESTED`.
    pub fn new(expr: Expr) -> Self {
        ExprElem {
            expr,
            flags: NLA_F_NESTED,
            data_flags: Some(NLA_F_NESTED),
        }
    }
    /// Framed as the kernel dumps it: no nest flags.
    pub fn plain(expr: Expr) -> Self {
        ExprElem {
            expr,
            flags: 0,
            data_flags: Some(0),
        }
    }
}

impl AttrValue for ExprElem {
    fn decode(attr: &Attr) -> Option<Self> {
        crate::typed::nested(|| Self::decode_here(attr))
    }

    fn encode(&self, id: u16) -> Attr {
        let mut children = vec![Attr::strz(NFTA_EXPR_NAME, self.expr.name())];
        let data = self.expr.data_attrs();
        if self.data_flags.is_some() || !data.is_empty() {
            let mut value = Vec::new();
            crate::attr::emit_attrs(&data, &mut value);
            children.push(Attr {
                kind: NFTA_EXPR_DATA | self.data_flags.unwrap_or(0),
                value,
            });
        }
        let mut value = Vec::new();
        crate::attr::emit_attrs(&children, &mut value);
        Attr {
            kind: id | self.flags,
            value,
        }
    }
}

impl ExprElem {
    fn decode_here(attr: &Attr) -> Option<Self> {
        let children = parse_attrs(&attr.value).ok()?;
        let (name_attr, data_attr) = match children.as_slice() {
            [n] => (n, None),
            [n, d] => (n, Some(d)),
            _ => return None,
        };
        if name_attr.kind != NFTA_EXPR_NAME {
            return None;
        }
        let name = String::decode(name_attr)?;
        let (data, data_flags) = match data_attr {
            None => (Vec::new(), None),
            Some(d) if d.id() == NFTA_EXPR_DATA => {
                (parse_attrs(&d.value).ok()?, Some(d.kind & !NLA_TYPE_MASK))
            }
            Some(_) => return None,
        };
        Some(ExprElem {
            expr: Expr::from_data(&name, &data),
            flags: attr.kind & !NLA_TYPE_MASK,
            data_flags,
        })
    }
}

/// One member of an expression list: a well-framed `NFTA_LIST_ELEM` expression, or an
/// attribute kept raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprItem {
    Expr(ExprElem),
    Other(Attr),
}

impl AttrItem for ExprItem {
    fn from_attr(attr: &Attr) -> Self {
        if attr.id() == NFTA_LIST_ELEM {
            if let Some(e) = ExprElem::decode(attr).and_then(|e| exact(ExprItem::Expr(e), attr)) {
                return e;
            }
        }
        ExprItem::Other(attr.clone())
    }
    fn to_attr(&self) -> Attr {
        match self {
            ExprItem::Expr(e) => e.encode(NFTA_LIST_ELEM),
            ExprItem::Other(a) => a.clone(),
        }
    }
}

/// An expression list (`NFTA_RULE_EXPRESSIONS`, `NFTA_SET_EXPRESSIONS`, ...).
pub type ExprList = Nest<ExprItem>;

impl Nest<ExprItem> {
    /// A list framed as libnftnl sends it.
    pub fn from_exprs(exprs: impl IntoIterator<Item = Expr>) -> Self {
        Nest::new(
            exprs
                .into_iter()
                .map(|e| ExprItem::Expr(ExprElem::new(e)))
                .collect(),
        )
    }
    /// The typed expressions, in order (raw members left out).
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.items.iter().filter_map(|i| match i {
            ExprItem::Expr(e) => Some(&e.expr),
            ExprItem::Other(_) => None,
        })
    }
    /// True when every member is a well-framed expression.
    pub fn all_framed(&self) -> bool {
        self.items.iter().all(|i| matches!(i, ExprItem::Expr(_)))
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::testutil::hex;

    /// Parses one `NFTA_LIST_ELEM` from hex, checks it is typed and re-emits exactly.
    pub fn elem(hex_str: &str) -> ExprElem {
        let bytes = hex(hex_str);
        let attrs = parse_attrs(&bytes).expect("attribute");
        assert_eq!(attrs.len(), 1, "one attribute expected");
        let item = ExprItem::from_attr(&attrs[0]);
        let mut out = Vec::new();
        item.to_attr().emit(&mut out);
        assert_eq!(out, bytes, "re-emitted bytes differ");
        match item {
            ExprItem::Expr(e) => {
                assert!(
                    e.expr.untyped_attrs().is_empty(),
                    "untyped attributes: {:?}",
                    e.expr.untyped_attrs()
                );
                e
            }
            ExprItem::Other(a) => panic!("expression not typed: {a:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_keeps_data_raw() {
        let data = vec![Attr::u32_be(1, 5), Attr::strz(2, "x")];
        let elem = ExprElem::new(Expr::from_data("frobnicate", &data));
        let a = elem.encode(NFTA_LIST_ELEM);
        let back = ExprItem::from_attr(&a);
        assert_eq!(back, ExprItem::Expr(elem));
        match back {
            ExprItem::Expr(e) => {
                assert_eq!(e.expr.name(), "frobnicate");
                assert_eq!(e.expr.untyped_attrs().len(), 2);
            }
            ExprItem::Other(_) => unreachable!(),
        }
    }

    fn list_elem(children: &[Attr]) -> Attr {
        let mut v = Vec::new();
        crate::attr::emit_attrs(children, &mut v);
        Attr::new(NFTA_LIST_ELEM | NLA_F_NESTED, v)
    }

    #[test]
    fn badly_framed_elements_stay_raw() {
        let name = Attr::strz(NFTA_EXPR_NAME, "cmp");
        let data = Attr::nested(NFTA_EXPR_DATA, &[Attr::u32_be(1, 1)]);
        for a in [
            list_elem(&[data.clone(), name.clone()]), // DATA before NAME
            list_elem(&[name.clone(), data.clone(), Attr::u32_be(3, 0)]), // a third attribute
            list_elem(&[Attr::new(NFTA_EXPR_NAME, b"cmp".to_vec()), data.clone()]), // no NUL
            list_elem(&[name.clone(), Attr::new(NFTA_EXPR_DATA, vec![1, 2, 3])]), // DATA not attributes
            Attr::new(NFTA_LIST_ELEM, vec![9]), // not attributes at all
        ] {
            let item = ExprItem::from_attr(&a);
            assert!(matches!(item, ExprItem::Other(_)), "{a:?}: {item:?}");
            assert_eq!(item.to_attr(), a);
        }
        // The well-framed form of the same is typed.
        assert!(matches!(
            ExprItem::from_attr(&list_elem(&[name, data])),
            ExprItem::Expr(_)
        ));
    }

    #[test]
    fn hostile_nesting_stays_raw_past_the_depth_limit() {
        // dynset in dynset in ... 3000 levels, near the 64 KiB attribute limit. Parsed
        // on a small stack: past MAX_TYPED_DEPTH the rest must stay raw, not recurse.
        let mut a = list_elem(&[Attr::strz(NFTA_EXPR_NAME, "counter")]);
        for _ in 0..3000 {
            let mut data = Vec::new();
            Attr::new(crate::consts::NFTA_DYNSET_EXPR, a.value.clone()).emit(&mut data);
            a = list_elem(&[
                Attr::strz(NFTA_EXPR_NAME, "dynset"),
                Attr::new(NFTA_EXPR_DATA, data),
            ]);
        }
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let item = ExprItem::from_attr(&a);
                assert_eq!(item.to_attr(), a);
                matches!(item, ExprItem::Expr(_))
            })
            .unwrap();
        assert!(
            handle.join().expect("no stack overflow"),
            "the outer levels are typed"
        );
    }

    #[test]
    fn data_less_expression_roundtrips() {
        // `notrack` as the kernel dumps it: NAME only, no DATA.
        let a = Attr::new(NFTA_LIST_ELEM, {
            let mut v = Vec::new();
            Attr::strz(NFTA_EXPR_NAME, "notrack").emit(&mut v);
            v
        });
        let item = ExprItem::from_attr(&a);
        match &item {
            ExprItem::Expr(e) => {
                assert_eq!(e.data_flags, None);
                assert!(matches!(e.expr, Expr::Notrack(_)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(item.to_attr(), a);
    }
}
