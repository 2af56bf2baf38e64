//! Attribute parsing as the kernel's `nla_parse_deprecated` does it, with policies, and
//! with the byte offset of every attribute from the start of its netlink message, so
//! that errors can point at the offending attribute (`NL_SET_BAD_ATTR`).

use netlink_proto::attr::{align4, Attr};

use crate::errno::*;

/// One attribute inside a message: its type word (flags included), its value, and the
/// offset of its header from the start of the netlink message.
#[derive(Clone, Copy, Debug)]
pub struct Nla<'a> {
    pub kind: u16,
    pub value: &'a [u8],
    pub off: u32,
}

impl<'a> Nla<'a> {
    /// The attribute number without `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER`.
    pub fn id(&self) -> u16 {
        self.kind & 0x3fff
    }
    /// `nla_get_be32`: the first four bytes (policies guarantee at least four).
    pub fn be32(&self) -> u32 {
        read_be(self.value, 4) as u32
    }
    pub fn be64(&self) -> u64 {
        read_be(self.value, 8)
    }
    pub fn u8(&self) -> u8 {
        self.value.first().copied().unwrap_or(0)
    }
    pub fn be16(&self) -> u16 {
        read_be(self.value, 2) as u16
    }
    /// The attributes nested in this one (`nla_for_each_nested`).
    pub fn nested(&self) -> Vec<Nla<'a>> {
        iter_attrs(self.value, self.off + 4)
    }
    /// The string as `nla_strcmp` sees it: one trailing NUL removed.
    pub fn strcmp_bytes(&self) -> &'a [u8] {
        strip_one_nul(self.value)
    }
    /// The string as `nla_strdup` / `nla_strscpy` copy it: up to the first NUL.
    pub fn cstr(&self) -> &'a [u8] {
        let end = self
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.value.len());
        &self.value[..end]
    }
    /// An owned copy, flags included, for storing.
    pub fn to_attr(&self) -> Attr {
        Attr::new(self.kind, self.value.to_vec())
    }
}

fn read_be(v: &[u8], n: usize) -> u64 {
    v.iter()
        .take(n)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

pub fn strip_one_nul(v: &[u8]) -> &[u8] {
    match v.split_last() {
        Some((0, rest)) => rest,
        _ => v,
    }
}

/// `nla_for_each_attr`: stops silently at the first attribute that does not fit.
pub fn iter_attrs(buf: &[u8], base_off: u32) -> Vec<Nla<'_>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while buf.len().saturating_sub(pos) >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[pos], buf[pos + 1]]));
        if len < 4 || len > buf.len() - pos {
            break;
        }
        let kind = u16::from_ne_bytes([buf[pos + 2], buf[pos + 3]]);
        out.push(Nla {
            kind,
            value: &buf[pos + 4..pos + len],
            off: base_off + pos as u32,
        });
        pos += align4(len);
    }
    out
}

/// What a policy allows for one attribute number (`struct nla_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pol {
    /// Not in the policy: accepted without checks.
    Any,
    U8,
    U16,
    U32,
    U64,
    /// NLA_STRING with a maximum length (0: unlimited).
    Str(usize),
    /// NLA_NUL_STRING with a maximum length (0: unlimited): also EINVAL without a NUL
    /// within the first `max + 1` bytes.
    NulStr(usize),
    /// NLA_BINARY with a maximum length (0: unlimited).
    Bin(usize),
    Nested,
    /// NLA_NESTED with a policy for its content.
    NestedPol(&'static [Pol]),
    /// NLA_POLICY_NESTED_ARRAY: every element's content is checked against the policy.
    NestedArray(&'static [Pol]),
    /// NLA_REJECT: the attribute must not be sent.
    Reject,
    /// NLA_POLICY_MAX(NLA_BE32, max): ERANGE above `max`.
    Be32Max(u32),
    /// NLA_UNSPEC with `.len`: ERANGE below that many bytes (a struct's size).
    MinLen(usize),
}

/// Parsed attributes indexed by number: the last of duplicates wins, as in the kernel.
#[derive(Clone, Debug, Default)]
pub struct Tb<'a> {
    slots: Vec<Option<Nla<'a>>>,
}

impl<'a> Tb<'a> {
    pub fn get(&self, id: u16) -> Option<Nla<'a>> {
        self.slots.get(usize::from(id)).copied().flatten()
    }
    pub fn has(&self, id: u16) -> bool {
        self.get(id).is_some()
    }
    pub fn be32(&self, id: u16) -> Option<u32> {
        self.get(id).map(|a| a.be32())
    }
    pub fn be64(&self, id: u16) -> Option<u64> {
        self.get(id).map(|a| a.be64())
    }
    pub fn off(&self, id: u16) -> Option<u32> {
        self.get(id).map(|a| a.off)
    }
}

thread_local! {
    static LEFTOVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The extended ACK message `__nla_validate_parse` leaves when bytes follow the last
/// attribute (parsing still succeeds).
pub const LEFTOVER_MSG: &str = "bytes leftover after parsing attributes";

/// The parse nfnetlink makes of a message's attributes, with the extended ACK: also
/// says whether some level (this one or a nest its policy validates) had bytes left
/// over, which leaves a message in the ACK of a later error.
pub fn parse_msg<'a>(
    buf: &'a [u8],
    base_off: u32,
    policy: &[Pol],
) -> (Result<Tb<'a>, MsgErr>, bool) {
    LEFTOVER.with(|l| l.set(false));
    let r = parse(buf, base_off, policy);
    (r, LEFTOVER.with(|l| l.replace(false)))
}

/// `nla_parse_deprecated(tb, maxtype = policy.len() - 1, ...)`.
pub fn parse<'a>(buf: &'a [u8], base_off: u32, policy: &[Pol]) -> Result<Tb<'a>, MsgErr> {
    parse_depth(buf, base_off, policy, 0)
}

/// Parses the content of a nested attribute.
pub fn parse_nested<'a>(nla: &Nla<'a>, policy: &[Pol]) -> Result<Tb<'a>, MsgErr> {
    parse(nla.value, nla.off + 4, policy)
}

const MAX_POLICY_RECURSION_DEPTH: u32 = 10;

/// The extended ACK message of `validate_nla` failures.
pub const POLICY_MSG: &str = "Attribute failed policy validation";

/// `netlink_policy_dump_write_attr`: a policy as NLMSGERR_ATTR_POLICY describes it
/// (`NL_POLICY_TYPE_ATTR_*`). None for types the kernel does not describe.
pub fn describe(pol: Pol) -> Option<Vec<netlink_proto::attr::Attr>> {
    use netlink_proto::attr::Attr;
    const TYPE: u16 = 1;
    const MIN_VALUE_U: u16 = 4;
    const MAX_VALUE_U: u16 = 5;
    const MAX_LENGTH: u16 = 7;
    let range = |ty: u32, max: u64| {
        vec![
            Attr::new(MIN_VALUE_U, 0u64.to_ne_bytes().to_vec()),
            Attr::new(MAX_VALUE_U, max.to_ne_bytes().to_vec()),
            Attr::new(TYPE, ty.to_ne_bytes().to_vec()),
        ]
    };
    let with_len = |ty: u32, len: usize| {
        let mut v = Vec::new();
        if len > 0 {
            v.push(Attr::new(MAX_LENGTH, (len as u32).to_ne_bytes().to_vec()));
        }
        v.push(Attr::new(TYPE, ty.to_ne_bytes().to_vec()));
        v
    };
    // enum netlink_attribute_type.
    Some(match pol {
        // The kernel's policy dump skips NLA_UNSPEC (and NLA_REJECT).
        Pol::Any | Pol::Reject | Pol::MinLen(_) => return None,
        Pol::U8 => range(2, u64::from(u8::MAX)),
        Pol::U16 => range(3, u64::from(u16::MAX)),
        Pol::U32 => range(4, u64::from(u32::MAX)),
        Pol::Be32Max(max) => range(4, u64::from(max)),
        Pol::U64 => range(5, u64::MAX),
        Pol::Bin(len) => with_len(10, len),
        Pol::Str(len) => with_len(11, len),
        Pol::NulStr(len) => with_len(12, len),
        Pol::Nested | Pol::NestedPol(_) => with_len(13, 0),
        Pol::NestedArray(_) => with_len(14, 0),
    })
}

fn parse_depth<'a>(
    buf: &'a [u8],
    base_off: u32,
    policy: &[Pol],
    depth: u32,
) -> Result<Tb<'a>, MsgErr> {
    if depth >= MAX_POLICY_RECURSION_DEPTH {
        return Err(EINVAL.into());
    }
    let mut tb = Tb {
        slots: vec![None; policy.len().max(1)],
    };
    let attrs = iter_attrs(buf, base_off);
    let used = attrs.last().map_or(0, |a| {
        (a.off - base_off) as usize + align4(4 + a.value.len())
    });
    if used < buf.len() {
        LEFTOVER.with(|l| l.set(true));
    }
    for nla in attrs {
        let id = usize::from(nla.id());
        if id == 0 || id >= policy.len() {
            continue;
        }
        validate(&nla, policy[id], depth).map_err(|e| {
            if e.bad_attr.is_some() {
                e
            } else {
                MsgErr {
                    errno: e.errno,
                    bad_attr: Some(nla.off),
                    msg: Some(POLICY_MSG),
                    policy: Some(policy[id]),
                }
            }
        })?;
        tb.slots[id] = Some(nla);
    }
    Ok(tb)
}

fn validate(nla: &Nla<'_>, pol: Pol, depth: u32) -> Result<(), MsgErr> {
    let len = nla.value.len();
    let min = |n: usize| {
        if len < n {
            Err(MsgErr::from(ERANGE))
        } else {
            Ok(())
        }
    };
    match pol {
        Pol::Any => Ok(()),
        Pol::Reject => Err(EINVAL.into()),
        Pol::U8 => min(1),
        Pol::U16 => min(2),
        Pol::U32 => min(4),
        Pol::Be32Max(max) => {
            min(4)?;
            if nla.be32() > max {
                Err(ERANGE.into())
            } else {
                Ok(())
            }
        }
        Pol::U64 => min(8),
        Pol::MinLen(n) => min(n),
        Pol::NulStr(max) => {
            let minlen = if max > 0 { len.min(max + 1) } else { len };
            if minlen == 0 || !nla.value[..minlen].contains(&0) {
                return Err(EINVAL.into());
            }
            validate(nla, Pol::Str(max), depth)
        }
        Pol::Str(max) => {
            if len < 1 {
                return Err(ERANGE.into());
            }
            if max > 0 && strip_one_nul(nla.value).len() > max {
                return Err(ERANGE.into());
            }
            Ok(())
        }
        Pol::Bin(max) => {
            if max > 0 && len > max {
                Err(ERANGE.into())
            } else {
                Ok(())
            }
        }
        Pol::Nested => nested_len(len),
        Pol::NestedPol(p) => {
            nested_len(len)?;
            if len > 0 {
                parse_depth(nla.value, nla.off + 4, p, depth + 1)?;
            }
            Ok(())
        }
        Pol::NestedArray(p) => {
            nested_len(len)?;
            for entry in iter_attrs(nla.value, nla.off + 4) {
                if entry.value.is_empty() {
                    continue;
                }
                if entry.value.len() < 4 {
                    return Err(MsgErr {
                        msg: Some("Array element too short"),
                        ..MsgErr::at(ERANGE, Some(entry.off))
                    });
                }
                parse_depth(entry.value, entry.off + 4, p, depth + 1)?;
            }
            Ok(())
        }
    }
}

fn nested_len(len: usize) -> Result<(), MsgErr> {
    if len != 0 && len < 4 {
        Err(ERANGE.into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_proto::attr::emit_attrs;

    const POL: &[Pol] = &[
        Pol::Any,
        Pol::Str(4),
        Pol::U32,
        Pol::NestedArray(&[Pol::Any, Pol::U32]),
    ];

    fn bytes(attrs: &[Attr]) -> Vec<u8> {
        let mut v = Vec::new();
        emit_attrs(attrs, &mut v);
        v
    }

    #[test]
    fn offsets_and_last_duplicate_win() {
        let b = bytes(&[Attr::strz(1, "ab"), Attr::u32_be(2, 7), Attr::u32_be(2, 9)]);
        let tb = parse(&b, 20, POL).unwrap();
        assert_eq!(tb.off(1), Some(20));
        assert_eq!(tb.off(2), Some(20 + 8 + 8));
        assert_eq!(tb.be32(2), Some(9));
        assert_eq!(tb.get(1).unwrap().strcmp_bytes(), b"ab");
    }

    #[test]
    fn policy_errors_are_erange() {
        assert_eq!(
            parse(&bytes(&[Attr::strz(1, "abcde")]), 0, POL)
                .unwrap_err()
                .errno,
            ERANGE
        );
        assert!(parse(&bytes(&[Attr::strz(1, "abcd")]), 0, POL).is_ok());
        assert_eq!(
            parse(&bytes(&[Attr::new(2, vec![1, 2])]), 0, POL)
                .unwrap_err()
                .errno,
            ERANGE
        );
        let bad_elem = Attr::nested(3, &[Attr::nested(1, &[Attr::new(1, vec![1])])]);
        assert_eq!(
            parse(&bytes(&[bad_elem]), 0, POL).unwrap_err().errno,
            ERANGE
        );
        // Unknown attribute numbers are ignored.
        assert!(parse(&bytes(&[Attr::new(9, vec![])]), 0, POL).is_ok());
    }

    #[test]
    fn truncated_tail_is_ignored() {
        let mut b = bytes(&[Attr::u32_be(2, 1)]);
        b.extend_from_slice(&[9, 0, 2]);
        assert_eq!(parse(&b, 0, POL).unwrap().be32(2), Some(1));
    }
}
