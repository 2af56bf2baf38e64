//! Netlink attributes, kept as they came: the type word with its flags, and the value bytes.
//!
//! Typed views (tables, chains, expressions, ...) are built on top of [`Attr`] lists, so
//! an attribute nobody here understands still goes back out byte for byte.

use netlink_packet_core::{NlasIterator, NLA_F_NESTED, NLA_TYPE_MASK};

/// Why bytes could not be read as netlink data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("malformed attribute at offset {offset}")]
    BadAttr { offset: usize },
    #[error("attribute {kind} has {len} bytes, expected {expected}")]
    BadLength { kind: u16, len: usize, expected: usize },
    #[error("missing attribute {0}")]
    Missing(u16),
    #[error("{0}")]
    Invalid(&'static str),
}

/// One netlink attribute. `kind` is the raw type word, `NLA_F_NESTED` and
/// `NLA_F_NET_BYTEORDER` included, so that re-encoding is exact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attr {
    pub kind: u16,
    pub value: Vec<u8>,
}

/// Rounds a length up to the 4-byte netlink alignment.
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

impl Attr {
    pub fn new(kind: u16, value: impl Into<Vec<u8>>) -> Self {
        Attr { kind, value: value.into() }
    }

    /// A nested attribute; sets `NLA_F_NESTED` as libnftnl and the kernel do.
    pub fn nested(kind: u16, children: &[Attr]) -> Self {
        let mut value = Vec::new();
        emit_attrs(children, &mut value);
        Attr { kind: kind | NLA_F_NESTED, value }
    }

    pub fn u8(kind: u16, v: u8) -> Self {
        Attr::new(kind, vec![v])
    }
    pub fn u16_be(kind: u16, v: u16) -> Self {
        Attr::new(kind, v.to_be_bytes().to_vec())
    }
    pub fn u32_be(kind: u16, v: u32) -> Self {
        Attr::new(kind, v.to_be_bytes().to_vec())
    }
    pub fn u64_be(kind: u16, v: u64) -> Self {
        Attr::new(kind, v.to_be_bytes().to_vec())
    }
    /// A NUL-terminated string, as `mnl_attr_put_strz` writes it.
    pub fn strz(kind: u16, s: &str) -> Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        Attr::new(kind, v)
    }

    /// The attribute number without flags.
    pub fn id(&self) -> u16 {
        self.kind & NLA_TYPE_MASK
    }
    pub fn is_nested(&self) -> bool {
        self.kind & NLA_F_NESTED != 0
    }

    pub fn as_u8(&self) -> Option<u8> {
        (self.value.len() == 1).then(|| self.value[0])
    }
    pub fn as_u16_be(&self) -> Option<u16> {
        Some(u16::from_be_bytes(self.value.as_slice().try_into().ok()?))
    }
    pub fn as_u32_be(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.value.as_slice().try_into().ok()?))
    }
    pub fn as_u64_be(&self) -> Option<u64> {
        Some(u64::from_be_bytes(self.value.as_slice().try_into().ok()?))
    }
    /// The string up to the first NUL, as the kernel's `nla_strscpy` reads it.
    pub fn as_str(&self) -> Option<&str> {
        let end = self.value.iter().position(|&b| b == 0).unwrap_or(self.value.len());
        std::str::from_utf8(&self.value[..end]).ok()
    }
    /// The string bytes up to the first NUL (names need not be UTF-8 on the wire).
    pub fn str_bytes(&self) -> &[u8] {
        let end = self.value.iter().position(|&b| b == 0).unwrap_or(self.value.len());
        &self.value[..end]
    }

    /// The attributes nested inside this one. Bytes after the last whole attribute are
    /// ignored, as the kernel's deprecated (non-strict) parser does.
    pub fn children(&self) -> Result<Vec<Attr>, ProtoError> {
        parse_attrs(&self.value)
    }

    /// Bytes this attribute takes on the wire, padding included.
    pub fn wire_len(&self) -> usize {
        align4(4 + self.value.len())
    }

    /// Appends the attribute: header, value, zero padding.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let len = 4 + self.value.len();
        // Longer values cannot be framed; callers build attributes from parsed ones or
        // from bounded data, so clamp rather than panic.
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        out.extend_from_slice(&len16.to_ne_bytes());
        out.extend_from_slice(&self.kind.to_ne_bytes());
        out.extend_from_slice(&self.value[..usize::from(len16) - 4]);
        out.resize(out.len() + (align4(len) - len), 0);
    }
}

/// Reads a list of attributes. A malformed attribute ends the list with an error.
pub fn parse_attrs(buf: &[u8]) -> Result<Vec<Attr>, ProtoError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    for nla in NlasIterator::new(buf) {
        let nla = nla.map_err(|_| ProtoError::BadAttr { offset })?;
        let kind = u16::from_ne_bytes([buf[offset + 2], buf[offset + 3]]);
        out.push(Attr { kind, value: nla.value().to_vec() });
        offset += align4(usize::from(nla.length()));
    }
    Ok(out)
}

/// Reads attributes the way the kernel's non-strict `nla_parse` does: stops quietly at
/// the first one that does not fit and reports how many bytes were left over.
pub fn parse_attrs_lenient(buf: &[u8]) -> (Vec<Attr>, usize) {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while buf.len().saturating_sub(offset) >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[offset], buf[offset + 1]]));
        if len < 4 || len > buf.len() - offset {
            break;
        }
        let kind = u16::from_ne_bytes([buf[offset + 2], buf[offset + 3]]);
        out.push(Attr { kind, value: buf[offset + 4..offset + len].to_vec() });
        offset = offset.saturating_add(align4(len));
    }
    (out, buf.len().saturating_sub(offset))
}

pub fn emit_attrs(attrs: &[Attr], out: &mut Vec<u8>) {
    for a in attrs {
        a.emit(out);
    }
}

/// Look-ups on an attribute list, by attribute number (flags ignored). The kernel keeps
/// the last of duplicated attributes, so these do too.
pub trait AttrExt {
    fn get(&self, id: u16) -> Option<&Attr>;
    fn has(&self, id: u16) -> bool {
        self.get(id).is_some()
    }
    fn get_u8(&self, id: u16) -> Option<u8> {
        self.get(id)?.as_u8()
    }
    fn get_u16_be(&self, id: u16) -> Option<u16> {
        self.get(id)?.as_u16_be()
    }
    fn get_u32_be(&self, id: u16) -> Option<u32> {
        self.get(id)?.as_u32_be()
    }
    fn get_u64_be(&self, id: u16) -> Option<u64> {
        self.get(id)?.as_u64_be()
    }
    fn get_str(&self, id: u16) -> Option<&str> {
        self.get(id)?.as_str()
    }
    fn get_bytes(&self, id: u16) -> Option<&[u8]> {
        Some(&self.get(id)?.value)
    }
    fn get_nested(&self, id: u16) -> Option<Result<Vec<Attr>, ProtoError>> {
        Some(self.get(id)?.children())
    }
}

impl AttrExt for [Attr] {
    fn get(&self, id: u16) -> Option<&Attr> {
        self.iter().rev().find(|a| a.id() == id)
    }
}

impl AttrExt for Vec<Attr> {
    fn get(&self, id: u16) -> Option<&Attr> {
        AttrExt::get(self.as_slice(), id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strz_and_u32_roundtrip() {
        let attrs = vec![Attr::strz(1, "filter"), Attr::u32_be(2, 7), Attr::nested(3, &[Attr::u8(1, 9)])];
        let mut buf = Vec::new();
        emit_attrs(&attrs, &mut buf);
        assert_eq!(buf.len() % 4, 0);
        let back = parse_attrs(&buf).unwrap();
        assert_eq!(back, attrs);
        assert_eq!(back.get_str(1), Some("filter"));
        assert_eq!(back.get_u32_be(2), Some(7));
        assert_eq!(back.get_nested(3).unwrap().unwrap().get_u8(1), Some(9));
    }

    #[test]
    fn truncated_attr_is_an_error() {
        assert!(parse_attrs(&[8, 0, 1, 0, 0]).is_err());
        assert!(parse_attrs(&[2, 0, 1, 0]).is_err());
        let (attrs, left) = parse_attrs_lenient(&[8, 0, 1, 0, 1, 2, 3, 4, 9, 0]);
        assert_eq!(attrs.len(), 1);
        assert_eq!(left, 2);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_attrs(&buf);
            let _ = parse_attrs_lenient(&buf);
        }

        #[test]
        fn emitted_lists_roundtrip(list in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8)) {
            let attrs: Vec<Attr> = list.into_iter().map(|(k, v)| Attr::new(k, v)).collect();
            let mut buf = Vec::new();
            emit_attrs(&attrs, &mut buf);
            prop_assert_eq!(parse_attrs(&buf).unwrap(), attrs.clone());
            let mut again = Vec::new();
            emit_attrs(&parse_attrs(&buf).unwrap(), &mut again);
            prop_assert_eq!(again, buf);
        }
    }
}
