//! setsockopt/getsockopt on an emulated socket.
//!
//! SOL_NETLINK options are the daemon's business: each set is forwarded and the daemon's
//! answer is what the application gets; on success we mirror the value so that reads
//! (getsockopt, getsockname's group mask) need no round trip. SOL_SOCKET options are
//! the application end's own, except the three that name the socket's kind.

use std::mem::size_of;

use libc::{c_int, c_void, socklen_t};
use nftshim_ipc::{Op, SockOpt};

use crate::emulated::{Emulated, NetlinkState};
use crate::real;

pub const NETLINK_ADD_MEMBERSHIP: c_int = 1;
pub const NETLINK_DROP_MEMBERSHIP: c_int = 2;
pub const NETLINK_LIST_MEMBERSHIPS: c_int = 9;
/// The boolean options the kernel lets one read back (getsockopt).
const READABLE_FLAGS: [c_int; 7] = [
    3,  // NETLINK_PKTINFO
    4,  // NETLINK_BROADCAST_ERROR
    5,  // NETLINK_NO_ENOBUFS
    8,  // NETLINK_LISTEN_ALL_NSID
    10, // NETLINK_CAP_ACK
    11, // NETLINK_EXT_ACK
    12, // NETLINK_GET_STRICT_CHK
];

/// The option's value as the kernel reads it: an int if at least 4 bytes, else 0.
fn int_value(value: &[u8]) -> u32 {
    value
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// Mirrors a SOL_NETLINK option the daemon accepted.
pub fn mirror_netlink_option(state: &mut NetlinkState, name: c_int, value: &[u8]) {
    let val = int_value(value);
    match name {
        NETLINK_ADD_MEMBERSHIP | NETLINK_DROP_MEMBERSHIP => {
            state.groups_sized = true;
            if (1..=32).contains(&val) {
                let bit = 1u32 << (val - 1);
                if name == NETLINK_ADD_MEMBERSHIP {
                    state.groups |= bit;
                } else {
                    state.groups &= !bit;
                }
            }
        }
        n if READABLE_FLAGS.contains(&n) => {
            if val != 0 {
                state.flags |= 1 << n;
            } else {
                state.flags &= !(1 << n);
            }
        }
        _ => {}
    }
}

/// What getsockopt(SOL_NETLINK, name) with a buffer of `room` bytes returns: the bytes to
/// copy out and the length to report (as netlink_getsockopt does).
pub fn read_netlink_option(
    state: &NetlinkState,
    name: c_int,
    room: i32,
) -> Result<(Vec<u8>, u32), i32> {
    if room < 0 {
        return Err(libc::EINVAL);
    }
    if name == NETLINK_LIST_MEMBERSHIPS {
        // NETLINK_NETFILTER has fewer than 32 groups: the bitmap is one u32 once sized.
        if !state.groups_sized {
            return Ok((Vec::new(), 0));
        }
        let bytes = if room >= 4 {
            state.groups.to_ne_bytes().to_vec()
        } else {
            Vec::new()
        };
        return Ok((bytes, 4));
    }
    if !READABLE_FLAGS.contains(&name) {
        return Err(libc::ENOPROTOOPT);
    }
    if room < size_of::<c_int>() as i32 {
        return Err(libc::EINVAL);
    }
    let val: c_int = (state.flags >> name & 1) as c_int;
    Ok((val.to_ne_bytes().to_vec(), 4))
}

/// setsockopt on an emulated socket. Ok(()) or Err(errno).
///
/// # Safety
/// `val` must be null or point at `len` readable bytes.
pub unsafe fn set(
    em: &Emulated,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> Result<(), i32> {
    match level {
        libc::SOL_NETLINK => {
            let value = read_value(val, len)?;
            em.call(
                Op::SetSockOpt,
                &SockOpt {
                    level,
                    name,
                    value: value.clone(),
                }
                .encode(),
            )?;
            mirror_netlink_option(&mut em.state(), name, &value);
            Ok(())
        }
        libc::SOL_SOCKET => {
            if real::setsockopt(fd, level, name, val, len) != 0 {
                return Err(crate::errno::get());
            }
            if name == libc::SO_RCVBUF || name == libc::SO_RCVBUFFORCE {
                // The daemon sizes its end's send buffer after ours; its answer does not
                // change the outcome for the application.
                let value = read_value(val, len)?;
                let _ = em.call(Op::SetSockOpt, &SockOpt { level, name, value }.encode());
            }
            Ok(())
        }
        _ => Err(libc::ENOPROTOOPT),
    }
}

/// getsockopt on an emulated socket. Ok(()) or Err(errno).
///
/// # Safety
/// `val` must point at `*len` writable bytes; `len` must be valid or null.
pub unsafe fn get(
    em: &Emulated,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> Result<(), i32> {
    let kind = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_PROTOCOL) => libc::NETLINK_NETFILTER,
        (libc::SOL_SOCKET, libc::SO_DOMAIN) => libc::AF_NETLINK,
        (libc::SOL_SOCKET, libc::SO_TYPE) => em.sock_type,
        (libc::SOL_SOCKET, _) => {
            if real::getsockopt(fd, level, name, val, len) != 0 {
                return Err(crate::errno::get());
            }
            return Ok(());
        }
        (libc::SOL_NETLINK, _) => {
            let room = room_of(len)?;
            let (bytes, report) = read_netlink_option(&em.state(), name, room)?;
            copy_out(&bytes, val)?;
            *len = report;
            return Ok(());
        }
        _ => return Err(libc::ENOPROTOOPT),
    };
    // sock_getsockopt copies at most the caller's length of an int and reports that.
    let room = room_of(len)?;
    let n = (room as usize).min(size_of::<c_int>());
    copy_out(&kind.to_ne_bytes()[..n], val)?;
    *len = n as socklen_t;
    Ok(())
}

unsafe fn room_of(len: *mut socklen_t) -> Result<i32, i32> {
    if len.is_null() {
        return Err(libc::EFAULT);
    }
    match *len as i32 {
        r if r < 0 => Err(libc::EINVAL),
        r => Ok(r),
    }
}

unsafe fn copy_out(bytes: &[u8], val: *mut c_void) -> Result<(), i32> {
    if bytes.is_empty() {
        return Ok(());
    }
    if val.is_null() {
        return Err(libc::EFAULT);
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), val.cast::<u8>(), bytes.len());
    Ok(())
}

/// The option bytes the kernel would read: at most an int's worth.
unsafe fn read_value(val: *const c_void, len: socklen_t) -> Result<Vec<u8>, i32> {
    let n = (len as usize).min(size_of::<c_int>());
    if n == 0 {
        return Ok(Vec::new());
    }
    if val.is_null() {
        return Err(libc::EFAULT);
    }
    Ok(std::slice::from_raw_parts(val.cast::<u8>(), n).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_follow_add_and_drop() {
        let mut s = NetlinkState::default();
        assert_eq!(
            read_netlink_option(&s, NETLINK_LIST_MEMBERSHIPS, 4),
            Ok((vec![], 0))
        );
        mirror_netlink_option(&mut s, NETLINK_ADD_MEMBERSHIP, &7u32.to_ne_bytes());
        assert_eq!(s.groups, 0x40);
        assert_eq!(
            read_netlink_option(&s, NETLINK_LIST_MEMBERSHIPS, 8),
            Ok((0x40u32.to_ne_bytes().to_vec(), 4))
        );
        assert_eq!(
            read_netlink_option(&s, NETLINK_LIST_MEMBERSHIPS, 2),
            Ok((vec![], 4))
        );
        mirror_netlink_option(&mut s, NETLINK_DROP_MEMBERSHIP, &7u32.to_ne_bytes());
        assert_eq!(s.groups, 0);
    }

    #[test]
    fn flags_read_back_as_ints_and_short_buffers_fail() {
        let mut s = NetlinkState::default();
        mirror_netlink_option(&mut s, 11, &1u32.to_ne_bytes());
        assert_eq!(
            read_netlink_option(&s, 11, 8),
            Ok((1i32.to_ne_bytes().to_vec(), 4))
        );
        assert_eq!(
            read_netlink_option(&s, 10, 4),
            Ok((0i32.to_ne_bytes().to_vec(), 4))
        );
        assert_eq!(read_netlink_option(&s, 11, 2), Err(libc::EINVAL));
        assert_eq!(read_netlink_option(&s, 1, 4), Err(libc::ENOPROTOOPT));
        // A short value reads as 0, as in the kernel.
        mirror_netlink_option(&mut s, 11, &[1, 0]);
        assert_eq!(s.flags >> 11 & 1, 0);
    }
}
