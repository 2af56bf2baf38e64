//! The nf_tables side of NETLINK_NETFILTER as data.
//!
//! Layers, from the bottom:
//! - [`attr`]: netlink attributes (TLVs) kept byte-exact, unknown ones included;
//! - [`message`]: one datagram split into netlink messages, the `nfgenmsg` header,
//!   and the replies a kernel sends (ACK/error with extended ACK, DONE);
//! - [`consts`]: every number of the uapi headers, generated from them.
//!
//! Nothing here does I/O and nothing here panics on any input.

pub mod attr;
pub mod consts;
pub mod data;
pub mod expr;
pub mod extra;
pub mod message;
pub mod msg;
pub mod typed;

#[cfg(test)]
mod testutil;

pub use attr::{Attr, AttrExt, ProtoError};
pub use message::{NfGenMsg, NlMsg, NlmsgErr};
