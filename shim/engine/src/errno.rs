//! Linux errno values, as the kernel returns them (positive here; negated on the wire).

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EINTR: i32 = 4;
pub const E2BIG: i32 = 7;
pub const EAGAIN: i32 = 11;
pub const ENOMEM: i32 = 12;
pub const EBUSY: i32 = 16;
pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;
pub const EINVAL: i32 = 22;
pub const ENFILE: i32 = 23;
pub const EMFILE: i32 = 24;
pub const EFBIG: i32 = 27;
pub const ENOSPC: i32 = 28;
pub const EMLINK: i32 = 31;
pub const ERANGE: i32 = 34;
pub const ENAMETOOLONG: i32 = 36;
pub const ENOTEMPTY: i32 = 39;
pub const ELOOP: i32 = 40;
pub const ENODATA: i32 = 61;
pub const EOVERFLOW: i32 = 75;
pub const ERESTART: i32 = 85;
pub const EMSGSIZE: i32 = 90;
pub const EOPNOTSUPP: i32 = 95;
pub const EAFNOSUPPORT: i32 = 97;
pub const ENOBUFS: i32 = 105;

/// An error for one message: errno, and the extended ACK the kernel attaches: the
/// offset of the offending attribute from the start of the message (`NL_SET_BAD_ATTR`),
/// a message, and the policy the attribute failed (`NL_SET_ERR_MSG_ATTR_POL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgErr {
    pub errno: i32,
    pub bad_attr: Option<u32>,
    pub msg: Option<&'static str>,
    pub policy: Option<crate::nla::Pol>,
}

impl MsgErr {
    pub fn at(errno: i32, off: Option<u32>) -> Self {
        MsgErr {
            errno,
            bad_attr: off,
            msg: None,
            policy: None,
        }
    }
}

impl From<i32> for MsgErr {
    fn from(errno: i32) -> Self {
        MsgErr {
            errno,
            bad_attr: None,
            msg: None,
            policy: None,
        }
    }
}
