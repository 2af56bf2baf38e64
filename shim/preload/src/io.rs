//! Sending and receiving on an emulated socket.
//!
//! Sending forwards the datagram to the daemon and blocks until it answers `Done`; by
//! then every reply is in the application's socket (or queued in the daemon), exactly as
//! the kernel has queued its replies when `sendmsg` returns. Receiving is the native
//! read of the application's end, plus the netlink source address and one `Sync` when a
//! non-blocking read finds nothing.

use libc::{c_int, c_void, iovec, msghdr, sockaddr, socklen_t, ssize_t};
use nftshim_ipc::Op;

use crate::emulated::{errno_of_status, Emulated};
use crate::{real, sockaddr as nladdr};

/// Sends one datagram gathered from `iov` to the daemon. Ok is the byte count.
///
/// # Safety
/// `iov` entries must point at readable memory; `name` at `namelen` bytes when non-zero.
pub unsafe fn send(
    em: &Emulated,
    iov: &[iovec],
    name: *const sockaddr,
    namelen: socklen_t,
) -> Result<ssize_t, i32> {
    // As the kernel: a null name is no name, whatever its length says.
    let (dst_pid, _dst_groups) = if namelen != 0 && !name.is_null() {
        nladdr::read(name, namelen)?
    } else {
        let s = em.state();
        (s.dst_pid, s.dst_groups)
    };
    // Another socket as destination: no such peer exists for the kernel of this socket.
    // (A group destination also reaches the kernel, which is all we serve.)
    if dst_pid != 0 {
        return Err(libc::ECONNREFUSED);
    }
    let total = iov
        .iter()
        .try_fold(0usize, |acc, v| acc.checked_add(v.iov_len))
        .ok_or(libc::EINVAL)?;
    let mut datagram = Vec::new();
    datagram
        .try_reserve_exact(total)
        .map_err(|_| libc::ENOBUFS)?;
    for v in iov {
        if v.iov_len == 0 {
            continue;
        }
        if v.iov_base.is_null() {
            return Err(libc::EFAULT);
        }
        datagram.extend_from_slice(std::slice::from_raw_parts(
            v.iov_base.cast::<u8>(),
            v.iov_len,
        ));
    }
    let status = em.control().request(&datagram)?;
    if status < 0 {
        return Err(errno_of_status(status));
    }
    // The kernel autobinds an unbound socket on its first send.
    em.state().bound = true;
    Ok(status as ssize_t)
}

/// Sends `len` bytes at `buf` (send/sendto/write).
///
/// # Safety
/// As [`send`].
pub unsafe fn send_buf(
    em: &Emulated,
    buf: *const c_void,
    len: usize,
    name: *const sockaddr,
    namelen: socklen_t,
) -> Result<ssize_t, i32> {
    let iov = iovec {
        iov_base: buf as *mut c_void,
        iov_len: len,
    };
    send(em, std::slice::from_ref(&iov), name, namelen)
}

/// recvmsg on the application's end, with a netlink source address.
///
/// # Safety
/// `msg` must be a valid msghdr as for recvmsg(2).
pub unsafe fn recv_msg(
    em: &Emulated,
    fd: c_int,
    msg: *mut msghdr,
    flags: c_int,
) -> Result<ssize_t, i32> {
    if msg.is_null() {
        return Err(libc::EFAULT);
    }
    // The socketpair's own (empty) address must not reach the application.
    let name = (*msg).msg_name;
    let namelen = (*msg).msg_namelen;
    (*msg).msg_name = std::ptr::null_mut();
    (*msg).msg_namelen = 0;
    let got = read_with_sync(em, flags, |f| real::recvmsg(fd, msg, f));
    (*msg).msg_name = name;
    (*msg).msg_namelen = namelen;
    let n = got?;
    if !name.is_null() {
        nladdr::write(name.cast(), &mut (*msg).msg_namelen, 0, 0)?;
    }
    Ok(n)
}

/// recvfrom on the application's end, with a netlink source address.
///
/// # Safety
/// As recvfrom(2).
pub unsafe fn recv_from(
    em: &Emulated,
    fd: c_int,
    buf: *mut c_void,
    len: usize,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> Result<ssize_t, i32> {
    let n = read_with_sync(em, flags, |f| {
        real::recvfrom(fd, buf, len, f, std::ptr::null_mut(), std::ptr::null_mut())
    })?;
    if !addr.is_null() {
        nladdr::write(addr, alen, 0, 0)?;
    }
    Ok(n)
}

/// Runs `read(flags)`; if it finds nothing in non-blocking mode, asks the daemon whether
/// it still held replies back (a full socket) and, if it just delivered some, reads once
/// more without blocking.
fn read_with_sync(
    em: &Emulated,
    flags: c_int,
    read: impl Fn(c_int) -> ssize_t,
) -> Result<ssize_t, i32> {
    let n = read(flags);
    if n >= 0 {
        return Ok(n);
    }
    let e = crate::errno::get();
    if e != libc::EAGAIN && e != libc::EWOULDBLOCK {
        return Err(e);
    }
    match em.call(Op::Sync, &[]) {
        Ok(1) => {}
        _ => return Err(e),
    }
    let n = read(flags | libc::MSG_DONTWAIT);
    if n >= 0 {
        Ok(n)
    } else {
        Err(crate::errno::get())
    }
}
