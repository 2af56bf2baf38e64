//! The nf_tables side of NETLINK_NETFILTER as data: everything nft 1.0.6 and
//! iptables-nft 1.8.9 send, and everything the kernel answers, typed, and written back
//! byte for byte.
//!
//! # Layers, from the bottom
//! - [`attr`]: netlink attributes (TLVs) as they came: type word with its flags, value.
//! - [`message`]: a datagram split into netlink messages, the `nfgenmsg` header, and
//!   the replies a kernel builds (ACK/error with extended ACK, DONE).
//! - [`consts`], [`extra`]: the uapi numbers (generated, plus what newer kernels and
//!   other headers add).
//! - [`typed`]: how typed attributes are built on [`Attr`]: one enum per attribute set,
//!   a typed variant per known attribute, and `Other(Attr)` for the rest. A value is
//!   typed only when writing it back gives the same bytes (a `u32` with exactly 4 bytes,
//!   a string with its NUL or without as sent, a nest with the `NLA_F_NESTED` flag or
//!   without as sent...). Anything else stays raw, in place.
//! - [`data`]: values many messages share: registers, verdicts, `NFTA_DATA_*` nests.
//! - [`expr`]: rule expressions, one module per type, dispatched on `NFTA_EXPR_NAME`
//!   ([`expr::Expr`]); unknown names keep their attributes raw.
//! - [`msg`]: whole messages, one module per family (table, chain, rule, set, set
//!   element, object, flowtable, generation, trace, batch, compat), and
//!   [`msg::NftMessage`], which reads any nfnetlink message and writes it back.
//! - [`check`]: parse-and-re-emit of a whole datagram, the entry point of the property
//!   tests and of the cargo-fuzz target in `fuzz/`.
//!
//! Nothing here does I/O and nothing here panics on any input. For every input,
//! `NftMessage::parse` then `to_bytes` gives the same message bytes (padding inside a
//! nest is the one thing not kept typed: such a nest stays raw).
//!
//! # Why not `netlink-packet-netfilter`
//! Its `nftables` module (0.4.0, checked) types six expressions (bitwise, cmp,
//! immediate, lookup, meta, payload); counter, ct, range, nat, reject, log, limit,
//! dynset, the xtables `match`/`target` iptables-nft depends on and the rest are raw
//! attribute lists, and so are objects, flowtables and trace events; it has no model
//! of the compat revision query. Unknown attributes are kept (as `Other(DefaultNla)`),
//! but the typed ones are re-encoded from their values, which changes bytes a client
//! compares: every list element and typed nest is written with `NLA_F_NESTED` (kernel
//! dumps carry none), strings regain a NUL nft did not send (`objref` and ct helper
//! names), libnftnl's numbered set elements (1, 2, 3, ... instead of
//! `NFTA_LIST_ELEM`) drop out of typing, and an attribute of unexpected length fails
//! the whole message. A byte-exact stand-in for the kernel needs the rule above
//! instead, applied to every attribute.

pub mod attr;
pub mod check;
pub mod consts;
pub mod data;
pub mod expr;
pub mod extra;
pub mod message;
pub mod msg;
pub mod typed;
pub mod xt;

#[cfg(test)]
mod testutil;

pub use attr::{Attr, AttrExt, ProtoError};
pub use message::{NfGenMsg, NlMsg, NlmsgErr};
pub use msg::{NftBody, NftMessage};
