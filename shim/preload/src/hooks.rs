//! The interposed libc functions. Each one asks the registry whether the fd is an
//! emulated socket (lock-free for every other fd) and otherwise calls libc's own.

use std::sync::Arc;

use libc::{c_int, c_uint, c_ulong, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};
use nftshim_ipc::{Bind, Op};

use crate::emulated::{Emulated, OpenError};
use crate::errno::fail;
use crate::{config, diag, io, real, registry, sockaddr as nladdr, sockopt};

/// Result<T, errno> to the C convention.
fn c_ret<T: From<i8>>(r: Result<T, i32>) -> T {
    r.unwrap_or_else(fail)
}

#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    if domain != libc::AF_NETLINK || protocol != libc::NETLINK_NETFILTER {
        return real::socket(domain, ty, protocol);
    }
    let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    if base != libc::SOCK_RAW && base != libc::SOCK_DGRAM {
        return fail(libc::ESOCKTNOSUPPORT);
    }
    let path = config::daemon_socket();
    match Emulated::open(
        &path,
        base,
        ty & libc::SOCK_NONBLOCK != 0,
        ty & libc::SOCK_CLOEXEC != 0,
    ) {
        Ok((fd, em)) => {
            drop(registry::insert(fd, em));
            fd
        }
        Err(OpenError::Failed(e)) => fail(e),
        Err(OpenError::Unreachable(e)) => {
            if config::fallback_to_kernel() {
                return real::socket(domain, ty, protocol);
            }
            diag::say(&format!(
                "nftshim: cannot reach nftshimd at {}: {}; set {}=kernel to use the kernel",
                String::from_utf8_lossy(&path),
                diag::strerror(e),
                nftshim_ipc::ENV_FALLBACK
            ));
            fail(e)
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(em) = registry::lookup(fd) else {
        return real::bind(fd, addr, len);
    };
    c_ret((|| {
        let (pid, groups) = nladdr::read(addr, len)?;
        let port = em.call(Op::Bind, &Bind { pid, groups }.encode())?;
        let mut s = em.state();
        s.port_id = port as u32;
        s.bound = true;
        // netlink_bind replaces the first 32 groups once the socket has a group map.
        if groups != 0 || s.groups_sized {
            s.groups = groups;
            s.groups_sized = true;
        }
        Ok(0)
    })())
}

#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(em) = registry::lookup(fd) else {
        return real::connect(fd, addr, len);
    };
    c_ret((|| {
        if nladdr::family(addr, len) == Some(libc::AF_UNSPEC) {
            let mut s = em.state();
            s.dst_pid = 0;
            s.dst_groups = 0;
            return Ok(0);
        }
        let (pid, groups) = nladdr::read(addr, len)?;
        let mut s = em.state();
        s.dst_pid = pid;
        // The kernel keeps only the lowest group as the destination.
        s.dst_groups = groups & groups.wrapping_neg();
        s.bound = true;
        Ok(0)
    })())
}

#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let Some(em) = registry::lookup(fd) else {
        return real::getsockname(fd, addr, len);
    };
    let s = *em.state();
    let pid = if s.bound { s.port_id } else { 0 };
    c_ret(nladdr::write(addr, len, pid, s.groups).map(|_| 0))
}

#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let Some(em) = registry::lookup(fd) else {
        return real::getpeername(fd, addr, len);
    };
    let s = *em.state();
    c_ret(nladdr::write(addr, len, s.dst_pid, s.dst_groups).map(|_| 0))
}

#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    let Some(em) = registry::lookup(fd) else {
        return real::setsockopt(fd, level, name, val, len);
    };
    c_ret(sockopt::set(&em, fd, level, name, val, len).map(|_| 0))
}

#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    let Some(em) = registry::lookup(fd) else {
        return real::getsockopt(fd, level, name, val, len);
    };
    c_ret(sockopt::get(&em, fd, level, name, val, len).map(|_| 0))
}

#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::sendmsg(fd, msg, flags);
    };
    if msg.is_null() {
        return fail(libc::EFAULT);
    }
    let m = &*msg;
    let iov: &[iovec] = if m.msg_iovlen == 0 || m.msg_iov.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen)
    };
    c_ret(io::send(&em, iov, m.msg_name.cast(), m.msg_namelen))
}

#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::sendto(fd, buf, len, flags, addr, alen);
    };
    let alen = if addr.is_null() { 0 } else { alen };
    c_ret(io::send_buf(&em, buf, len, addr, alen))
}

#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::send(fd, buf, len, flags);
    };
    c_ret(io::send_buf(&em, buf, len, std::ptr::null(), 0))
}

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    if !registry::maybe_emulated(fd) {
        return real::write(fd, buf, len);
    }
    let Some(em) = registry::lookup(fd) else {
        return real::write(fd, buf, len);
    };
    c_ret(io::send_buf(&em, buf, len, std::ptr::null(), 0))
}

#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::recvmsg(fd, msg, flags);
    };
    c_ret(io::recv_msg(&em, fd, msg, flags))
}

#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::recvfrom(fd, buf, len, flags, addr, alen);
    };
    c_ret(io::recv_from(&em, fd, buf, len, flags, addr, alen))
}

#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::recv(fd, buf, len, flags);
    };
    c_ret(io::recv_from(
        &em,
        fd,
        buf,
        len,
        flags,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ))
}

#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    if !registry::maybe_emulated(fd) {
        return real::read(fd, buf, len);
    }
    let Some(em) = registry::lookup(fd) else {
        return real::read(fd, buf, len);
    };
    c_ret(io::recv_from(
        &em,
        fd,
        buf,
        len,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ))
}

/// The _FORTIFY_SOURCE variants: same check as glibc's (abort on a buffer smaller than
/// the length), then our own path.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::__recv_chk(fd, buf, len, buflen, flags);
    };
    if len > buflen {
        libc::abort();
    }
    c_ret(io::recv_from(
        &em,
        fd,
        buf,
        len,
        flags,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ))
}

#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    let Some(em) = registry::lookup(fd) else {
        return real::__recvfrom_chk(fd, buf, len, buflen, flags, addr, alen);
    };
    if len > buflen {
        libc::abort();
    }
    c_ret(io::recv_from(&em, fd, buf, len, flags, addr, alen))
}

#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
) -> ssize_t {
    if !registry::maybe_emulated(fd) {
        return real::__read_chk(fd, buf, len, buflen);
    }
    let Some(em) = registry::lookup(fd) else {
        return real::__read_chk(fd, buf, len, buflen);
    };
    if len > buflen {
        libc::abort();
    }
    c_ret(io::recv_from(
        &em,
        fd,
        buf,
        len,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ))
}

#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if !registry::maybe_emulated(fd) {
        return real::close(fd);
    }
    // Unregister before the number is freed, so a socket() racing with us cannot have
    // its new entry removed. The control connection closes with the last copy.
    let entry = registry::remove(fd);
    let r = real::close(fd);
    let e = crate::errno::get();
    drop(entry);
    crate::errno::set(e);
    r
}

/// After a successful dup of `old` to `new`: `new` now names `old`'s socket (and no
/// longer whatever it named before).
unsafe fn after_dup(old: c_int, new: c_int) {
    let e = crate::errno::get();
    let replaced = registry::remove(new);
    let shared: Option<Arc<Emulated>> = registry::lookup(old);
    if let Some(em) = shared {
        drop(registry::insert(new, em));
    }
    drop(replaced);
    crate::errno::set(e);
}

#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let new = real::dup(fd);
    if new >= 0 && registry::maybe_emulated(fd) {
        after_dup(fd, new);
    }
    new
}

#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let r = real::dup2(old, new);
    if r >= 0 && old != new && (registry::maybe_emulated(old) || registry::maybe_emulated(new)) {
        after_dup(old, new);
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let r = real::dup3(old, new, flags);
    if r >= 0 && (registry::maybe_emulated(old) || registry::maybe_emulated(new)) {
        after_dup(old, new);
    }
    r
}

/// fcntl is variadic in C. On the Linux ABIs we build for, a variadic argument travels
/// as an ordinary one, so receiving it as a third `unsigned long` is exact; it is passed
/// on to libc's fcntl unchanged.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let r = real::fcntl(fd, cmd, arg);
    after_fcntl(fd, cmd, r)
}

#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let r = real::fcntl64(fd, cmd, arg);
    after_fcntl(fd, cmd, r)
}

unsafe fn after_fcntl(fd: c_int, cmd: c_int, r: c_int) -> c_int {
    if r >= 0
        && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC)
        && registry::maybe_emulated(fd)
    {
        after_dup(fd, r);
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let r = real::close_range(first, last, flags);
    if r == 0 && flags as c_uint & libc::CLOSE_RANGE_CLOEXEC == 0 {
        let e = crate::errno::get();
        let first = c_int::try_from(first).unwrap_or(c_int::MAX);
        let last = c_int::try_from(last).unwrap_or(c_int::MAX);
        drop(registry::remove_range(first, last));
        crate::errno::set(e);
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn closefrom(low: c_int) {
    if real::closefrom(low) {
        drop(registry::remove_range(low.max(0), c_int::MAX));
    }
}
