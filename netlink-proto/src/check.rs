//! Self-check of the model on arbitrary input, shared by the property tests and the
//! cargo-fuzz target: split a datagram, type every message (and with it every
//! expression), write each back, and compare with what came in.

use crate::message::split_datagram;
use crate::msg::{NftBody, NftMessage};

/// A message whose re-emitted bytes differ from the original.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Index of the message in the datagram.
    pub index: usize,
    pub original: Vec<u8>,
    pub emitted: Vec<u8>,
}

/// What [`roundtrip_datagram`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// nfnetlink messages read.
    pub messages: usize,
    /// Of those, the ones that stayed [`NftBody::Unknown`].
    pub untyped: usize,
    /// Expressions read, in rules, sets, elements and nested in other expressions.
    pub exprs: usize,
}

/// Parses and re-emits every message of `buf`. Never panics; returns the first message
/// that does not come back byte for byte.
pub fn roundtrip_datagram(buf: &[u8]) -> Result<Summary, Mismatch> {
    let (msgs, _tail) = split_datagram(buf);
    let mut summary = Summary::default();
    for (index, msg) in msgs.iter().enumerate() {
        let Some(m) = NftMessage::parse(msg) else {
            continue;
        };
        summary.messages += 1;
        if matches!(m.body, NftBody::Unknown { .. }) {
            summary.untyped += 1;
        }
        summary.exprs += count_exprs(&m);
        // The message as split: header (length recomputed the same way), payload,
        // zero padding up to 4 bytes.
        let original = msg.to_bytes();
        let emitted = m.to_bytes();
        if emitted != original {
            return Err(Mismatch {
                index,
                original,
                emitted,
            });
        }
    }
    Ok(summary)
}

fn count_exprs(m: &NftMessage) -> usize {
    use crate::msg::set::SetAttr;
    use crate::msg::setelem::SetElemAttr;
    if let Some(r) = m.body.rule() {
        return r.exprs().count();
    }
    if let Some(s) = m.body.set() {
        return s
            .attrs
            .iter()
            .map(|a| match a {
                SetAttr::Expr(_) => 1,
                SetAttr::Expressions(l) => l.exprs().count(),
                _ => 0,
            })
            .sum();
    }
    if let Some(l) = m.body.set_elems() {
        return l
            .elems()
            .flat_map(|e| e.items.iter())
            .map(|a| match a {
                SetElemAttr::Expr(_) => 1,
                SetElemAttr::Expressions(l) => l.exprs().count(),
                _ => 0,
            })
            .sum();
    }
    0
}
