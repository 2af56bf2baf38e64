//! `struct sockaddr_nl` in and out of application memory, with the kernel's checks.

use std::mem::size_of;

use libc::{sockaddr, sockaddr_nl, socklen_t};

pub const SOCKADDR_NL_LEN: usize = size_of::<sockaddr_nl>();

/// Reads an address given to bind/connect/sendto: (nl_pid, nl_groups).
///
/// # Safety
/// `addr` must be null or point at `len` readable bytes.
pub unsafe fn read(addr: *const sockaddr, len: socklen_t) -> Result<(u32, u32), i32> {
    if addr.is_null() {
        return Err(libc::EFAULT);
    }
    if (len as usize) < SOCKADDR_NL_LEN {
        return Err(libc::EINVAL);
    }
    let nl = std::ptr::read_unaligned(addr.cast::<sockaddr_nl>());
    if i32::from(nl.nl_family) != libc::AF_NETLINK {
        return Err(libc::EINVAL);
    }
    Ok((nl.nl_pid, nl.nl_groups))
}

/// The address family of what `addr` points at, if at least that much was given.
///
/// # Safety
/// `addr` must be null or point at `len` readable bytes.
pub unsafe fn family(addr: *const sockaddr, len: socklen_t) -> Option<i32> {
    if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    Some(i32::from(std::ptr::read_unaligned(
        addr.cast::<libc::sa_family_t>(),
    )))
}

/// Writes `{AF_NETLINK, pid, groups}` as the kernel's move_addr_to_user does: at most
/// `*len` bytes, and `*len` set to the full size.
///
/// # Safety
/// `addr` must point at `*len` writable bytes; `len` must be valid or null.
pub unsafe fn write(
    addr: *mut sockaddr,
    len: *mut socklen_t,
    pid: u32,
    groups: u32,
) -> Result<(), i32> {
    if len.is_null() {
        return Err(libc::EFAULT);
    }
    let room = *len as i32;
    if room < 0 {
        return Err(libc::EINVAL);
    }
    let n = (room as usize).min(SOCKADDR_NL_LEN);
    if n > 0 {
        if addr.is_null() {
            return Err(libc::EFAULT);
        }
        let bytes = encode(pid, groups);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr.cast::<u8>(), n);
    }
    *len = SOCKADDR_NL_LEN as socklen_t;
    Ok(())
}

/// The 12 bytes of a sockaddr_nl.
pub fn encode(pid: u32, groups: u32) -> [u8; SOCKADDR_NL_LEN] {
    let mut b = [0u8; SOCKADDR_NL_LEN];
    b[0..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    b[4..8].copy_from_slice(&pid.to_ne_bytes());
    b[8..12].copy_from_slice(&groups.to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_truncates_like_the_kernel_and_reports_full_length() {
        let mut buf = [0xffu8; 16];
        let mut len: socklen_t = 6;
        unsafe { write(buf.as_mut_ptr().cast(), &mut len, 0x01020304, 9).unwrap() };
        assert_eq!(len, 12);
        assert_eq!(&buf[..6], &encode(0x01020304, 9)[..6]);
        assert_eq!(buf[6], 0xff);
        let mut len: socklen_t = 64;
        unsafe { write(buf.as_mut_ptr().cast(), &mut len, 7, 0).unwrap() };
        assert_eq!(len, 12);
        assert_eq!(&buf[..12], &encode(7, 0));
    }

    #[test]
    fn read_checks_length_and_family() {
        let good = encode(5, 64);
        assert_eq!(unsafe { read(good.as_ptr().cast(), 12) }, Ok((5, 64)));
        assert_eq!(unsafe { read(good.as_ptr().cast(), 11) }, Err(libc::EINVAL));
        let mut bad = good;
        bad[0] = libc::AF_UNIX as u8;
        assert_eq!(unsafe { read(bad.as_ptr().cast(), 12) }, Err(libc::EINVAL));
        assert_eq!(unsafe { read(std::ptr::null(), 12) }, Err(libc::EFAULT));
    }
}
