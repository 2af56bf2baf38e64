//! The ruleset of one namespace: tables with their chains, rules, sets, objects and
//! flowtables, as the kernel keeps them. Expressions are kept in the form the kernel
//! dumps them (see `expr`), so that listing them needs no further translation.

use netlink_proto::attr::Attr;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Table {
    pub name: String,
    pub family: u8,
    /// `NFT_TABLE_F_*` as the user sees them.
    pub flags: u32,
    /// Port id of the owning socket when `NFT_TABLE_F_OWNER` is set.
    pub owner: u32,
    pub udata: Option<Vec<u8>>,
    pub handle: u64,
    pub chains: Vec<Chain>,
    pub sets: Vec<Set>,
    pub objects: Vec<Obj>,
    pub flowtables: Vec<Flowtable>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Chain {
    pub name: String,
    pub handle: u64,
    /// `NFT_CHAIN_BASE`, `NFT_CHAIN_HW_OFFLOAD`, `NFT_CHAIN_BINDING`.
    pub flags: u32,
    pub base: Option<BaseChain>,
    pub udata: Option<Vec<u8>>,
    /// Shared with earlier generations: a batch clones the ruleset, and a rule it does
    /// not touch is not copied.
    pub rules: Vec<std::sync::Arc<Rule>>,
    /// A binding chain that a rule has taken (`chain->bound`).
    pub bound: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BaseChain {
    pub hooknum: u32,
    pub priority: i32,
    /// "filter", "route" or "nat".
    pub chain_type: String,
    /// Devices of netdev-family (and inet ingress) chains.
    pub devices: Vec<String>,
    /// `NF_ACCEPT` or `NF_DROP`.
    pub policy: u32,
    /// Counters given with NFTA_CHAIN_COUNTERS: (packets, bytes).
    pub counters: Option<(u64, u64)>,
}

/// Expressions are read everywhere but changed only through [`Rule::exprs_mut`], which
/// forgets what [`RuleMemo`] worked out from them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Rule {
    pub handle: u64,
    pub exprs: Vec<Expr>,
    pub udata: Option<Vec<u8>>,
    /// NFTA_RULE_COMPAT as sent (protocol and flags for xt matches); never dumped.
    #[serde(with = "attr_hex::opt")]
    pub compat: Option<Vec<Attr>>,
    #[serde(skip)]
    memo: RuleMemo,
}

/// What is worked out once per rule. Rules are shared (`Arc`) between generations, so
/// a commit to a 10,000-rule chain need not walk, check or serialise the rules it did
/// not change.
#[derive(Clone, Debug, Default)]
struct RuleMemo {
    /// The rule as persisted (JSON text).
    persisted: std::sync::OnceLock<Box<serde_json::value::RawValue>>,
    /// Some expression jumps to or goes to a chain.
    jumps: std::sync::OnceLock<bool>,
    /// No expression's validation depends on the base chain (`validate::context_free`).
    context_free: std::sync::OnceLock<bool>,
}

/// A memo says nothing about the rule that its fields do not.
impl PartialEq for RuleMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The persisted fields of a [`Rule`].
#[derive(Serialize)]
struct RuleFields<'a> {
    handle: u64,
    exprs: &'a [Expr],
    udata: &'a Option<Vec<u8>>,
    #[serde(serialize_with = "attr_hex::opt::serialize_ref")]
    compat: &'a Option<Vec<Attr>>,
}

impl Rule {
    pub fn new(
        handle: u64,
        exprs: Vec<Expr>,
        udata: Option<Vec<u8>>,
        compat: Option<Vec<Attr>>,
    ) -> Rule {
        Rule {
            handle,
            exprs,
            udata,
            compat,
            memo: RuleMemo::default(),
        }
    }

    /// The expressions, to change (counters folded or reset, a jump target renamed);
    /// a rule shared with another generation is copied first.
    pub fn exprs_mut(rule: &mut std::sync::Arc<Rule>) -> &mut Vec<Expr> {
        let r = std::sync::Arc::make_mut(rule);
        r.memo = RuleMemo::default();
        &mut r.exprs
    }

    /// The same rule with other expressions.
    pub fn with_exprs(&self, exprs: Vec<Expr>) -> Rule {
        Rule::new(self.handle, exprs, self.udata.clone(), self.compat.clone())
    }

    /// Whether some expression jumps to or goes to a chain.
    pub fn jumps(&self) -> bool {
        *self.memo.jumps.get_or_init(|| {
            self.exprs
                .iter()
                .any(|e| crate::expr::verdict_chain(e).is_some())
        })
    }

    /// Whether validation can skip the rule in every base chain (no hook or chain-type
    /// restriction, no jump, no map that may yield one).
    pub fn context_free(&self) -> bool {
        *self
            .memo
            .context_free
            .get_or_init(|| self.exprs.iter().all(crate::validate::context_free))
    }

    fn fields(&self) -> RuleFields<'_> {
        RuleFields {
            handle: self.handle,
            exprs: &self.exprs,
            udata: &self.udata,
            compat: &self.compat,
        }
    }
}

/// A rule is serialised once and its JSON kept (persisting a ruleset after each commit
/// otherwise re-encodes every rule of it).
impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(raw) = self.memo.persisted.get() {
            return raw.serialize(s);
        }
        match serde_json::value::to_raw_value(&self.fields()) {
            Ok(raw) => self.memo.persisted.get_or_init(|| raw).serialize(s),
            Err(_) => self.fields().serialize(s),
        }
    }
}

/// One expression: its name and the content of NFTA_EXPR_DATA in the kernel's dump form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Expr {
    pub name: String,
    #[serde(with = "attr_hex")]
    pub data: Vec<Attr>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Set {
    pub name: String,
    pub handle: u64,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub data_type: u32,
    pub data_len: u32,
    pub obj_type: u32,
    pub policy: u32,
    pub size: u32,
    /// Field lengths of a concatenated key (NFTA_SET_DESC_CONCAT).
    pub field_len: Vec<u32>,
    pub timeout_ms: u64,
    pub gc_interval: u32,
    pub udata: Option<Vec<u8>>,
    /// Stateful expressions attached to every element.
    pub exprs: Vec<Expr>,
    pub elems: Vec<Elem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Elem {
    /// Absent only for the catch-all element.
    pub key: Option<Vec<u8>>,
    pub key_end: Option<Vec<u8>>,
    pub data: Option<ElemData>,
    /// `NFT_SET_ELEM_INTERVAL_END`, `NFT_SET_ELEM_CATCHALL`.
    pub flags: u32,
    /// Timeout in ms when the set has `NFT_SET_TIMEOUT`; 0 means never.
    pub timeout_ms: u64,
    /// Wall-clock time (ms since the epoch) at which the element expires, if it does.
    pub expires_at_ms: Option<u64>,
    pub udata: Option<Vec<u8>>,
    pub exprs: Vec<Expr>,
    pub objref: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ElemData {
    Value(Vec<u8>),
    Verdict { code: u32, chain: Option<String> },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Obj {
    pub name: String,
    pub handle: u64,
    pub obj_type: u32,
    /// NFTA_OBJ_DATA content in the kernel's dump form.
    #[serde(with = "attr_hex")]
    pub data: Vec<Attr>,
    pub udata: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Flowtable {
    pub name: String,
    pub handle: u64,
    pub hooknum: u32,
    pub priority: i32,
    pub devices: Vec<String>,
    pub flags: u32,
}

impl Ruleset {
    pub fn table(&self, family: u8, name: &[u8]) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name.as_bytes() == name)
    }
    pub fn table_idx(&self, family: u8, name: &[u8]) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.family == family && t.name.as_bytes() == name)
    }
    pub fn table_by_handle(&self, handle: u64) -> Option<&Table> {
        self.tables.iter().find(|t| t.handle == handle)
    }
    pub fn table_idx_by_handle(&self, handle: u64) -> Option<usize> {
        self.tables.iter().position(|t| t.handle == handle)
    }
}

impl Table {
    pub fn chain(&self, name: &[u8]) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name.as_bytes() == name)
    }
    pub fn chain_idx(&self, name: &[u8]) -> Option<usize> {
        self.chains.iter().position(|c| c.name.as_bytes() == name)
    }
    pub fn chain_idx_by_handle(&self, handle: u64) -> Option<usize> {
        self.chains.iter().position(|c| c.handle == handle)
    }
    pub fn set(&self, name: &[u8]) -> Option<&Set> {
        self.sets.iter().find(|s| s.name.as_bytes() == name)
    }
    pub fn set_idx(&self, name: &[u8]) -> Option<usize> {
        self.sets.iter().position(|s| s.name.as_bytes() == name)
    }
    pub fn obj_idx(&self, name: &[u8], obj_type: u32) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| o.name.as_bytes() == name && o.obj_type == obj_type)
    }
    pub fn flowtable_idx(&self, name: &[u8]) -> Option<usize> {
        self.flowtables
            .iter()
            .position(|f| f.name.as_bytes() == name)
    }
    pub fn has_owner(&self) -> bool {
        self.flags & netlink_proto::consts::NFT_TABLE_F_OWNER != 0
    }
}

impl Chain {
    pub fn is_base(&self) -> bool {
        self.base.is_some()
    }
    pub fn is_binding(&self) -> bool {
        self.flags & netlink_proto::consts::NFT_CHAIN_BINDING != 0
    }
}

impl Set {
    pub fn is_anonymous(&self) -> bool {
        self.flags & netlink_proto::consts::NFT_SET_ANONYMOUS != 0
    }
    /// Elements that are not the catch-all (as `set->nelems` counts them).
    pub fn nelems(&self) -> usize {
        self.elems
            .iter()
            .filter(|e| e.flags & netlink_proto::consts::NFT_SET_ELEM_CATCHALL == 0)
            .count()
    }
}

impl Expr {
    pub fn attr(&self, id: u16) -> Option<&Attr> {
        self.data.iter().rev().find(|a| a.id() == id)
    }
}

/// Attribute lists are persisted as the hex of their wire encoding: exact, and compact.
mod attr_hex {
    use netlink_proto::attr::{emit_attrs, parse_attrs, Attr};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(attrs: &[Attr]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut b = Vec::new();
        emit_attrs(attrs, &mut b);
        let mut s = String::with_capacity(b.len() * 2);
        for x in b {
            s.push(DIGITS[usize::from(x >> 4)] as char);
            s.push(DIGITS[usize::from(x & 15)] as char);
        }
        s
    }

    pub fn decode<E: serde::de::Error>(s: &str) -> Result<Vec<Attr>, E> {
        if !s.len().is_multiple_of(2) {
            return Err(E::custom("odd hex length"));
        }
        let bytes: Result<Vec<u8>, _> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
            .collect();
        let bytes = bytes.map_err(E::custom)?;
        parse_attrs(&bytes).map_err(E::custom)
    }

    pub fn serialize<S: Serializer>(attrs: &[Attr], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(attrs))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Attr>, D::Error> {
        decode(&String::deserialize(d)?)
    }

    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(
            attrs: &Option<Vec<Attr>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match attrs {
                Some(a) => s.serialize_some(&encode(a)),
                None => s.serialize_none(),
            }
        }

        pub fn serialize_ref<S: Serializer>(
            attrs: &&Option<Vec<Attr>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            serialize(attrs, s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Attr>>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(h) => decode(&h).map(Some),
                None => Ok(None),
            }
        }
    }
}
