//! Thin, safe wrappers over the system calls the daemon needs and that neither std nor
//! tokio offer: namespace ioctls, netns cookies, SCM_RIGHTS, peer credentials.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libc::c_int;

/// `SO_NETNS_COOKIE` (asm-generic/socket.h): the 64-bit id of a socket's namespace, never
/// reused while the system runs (unlike nsfs inode numbers).
pub const SO_NETNS_COOKIE: c_int = 71;
/// `SO_PEERPIDFD` (Linux 6.5): a pidfd for the peer of a Unix socket.
pub const SO_PEERPIDFD: c_int = 77;
/// `NS_GET_USERNS` = `_IO(0xb7, 0x1)`: fd of the user namespace owning a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)`: the `CLONE_NEW*` type of a namespace fd.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
/// `SIOCGSKNS` (linux/sockios.h): a socket's network namespace as an fd.
const SIOCGSKNS: libc::c_ulong = 0x894C;

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Identity of an inode: what tells two namespace files apart at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeId {
    pub dev: u64,
    pub ino: u64,
}

pub fn fstat_id(fd: BorrowedFd<'_>) -> io::Result<InodeId> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fd is valid for the borrow, st is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so st is initialised.
    let st = unsafe { st.assume_init() };
    Ok(InodeId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// `stat` following links: for `/proc/PID/ns/*` this is the namespace's nsfs inode.
pub fn stat_id(path: &Path) -> io::Result<InodeId> {
    let m = std::fs::metadata(path)?;
    Ok(InodeId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// The `CLONE_NEW*` type of a namespace fd; an error for anything that is not one.
pub fn ns_type(fd: BorrowedFd<'_>) -> io::Result<c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) })
}

/// The user namespace that owns the namespace `fd` refers to.
pub fn ns_owner_userns(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd.
    let r = cvt(unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_USERNS) })?;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

pub fn setns(fd: BorrowedFd<'_>, nstype: c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed fd.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

fn getsockopt_raw<T: Copy>(fd: RawFd, level: c_int, name: c_int) -> io::Result<T> {
    let mut val = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: val has room for len bytes.
    cvt(unsafe { libc::getsockopt(fd, level, name, val.as_mut_ptr().cast(), &mut len) })?;
    if len as usize != size_of::<T>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: zero-initialised and fully written by the kernel.
    Ok(unsafe { val.assume_init() })
}

fn setsockopt_int(fd: RawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: value outlives the call; the length matches.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const c_int).cast(),
            size_of::<c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The namespace cookie of the network namespace the calling thread is in.
/// The namespace cookie of the namespace `sock` was created in.
pub fn socket_netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    getsockopt_raw::<u64>(sock.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE)
}

/// The network namespace `sock` was created in (`SIOCGSKNS`; needs CAP_NET_ADMIN over it).
pub fn socket_netns(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    let r = cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS) })?;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

pub fn current_netns_cookie() -> io::Result<u64> {
    // SAFETY: plain syscall; the result is checked and wrapped at once.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just created and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    getsockopt_raw::<u64>(sock.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE)
}

/// `(SO_DOMAIN, SO_TYPE)` of a socket.
pub fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<(c_int, c_int)> {
    let raw = fd.as_raw_fd();
    Ok((
        getsockopt_raw::<c_int>(raw, libc::SOL_SOCKET, libc::SO_DOMAIN)?,
        getsockopt_raw::<c_int>(raw, libc::SOL_SOCKET, libc::SO_TYPE)?,
    ))
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: plain fcntl calls.
    let flags = cvt(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
    cvt(unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

pub fn send_buffer_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    getsockopt_raw::<c_int>(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF)
        .map(|v| v.max(0) as usize)
}

/// Sets the send buffer past `wmem_max` (needs CAP_NET_ADMIN), falling back to SO_SNDBUF.
/// The kernel doubles `bytes`, as for every SO_*BUF option.
pub fn force_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let v = bytes.min(c_int::MAX as usize) as c_int;
    setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v)
        .or_else(|_| setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, v))
}

/// Bytes written into a Unix socket that its peer has not read yet (SIOCOUTQ).
pub fn unread_output(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// One non-blocking send of a whole datagram; never raises SIGPIPE.
pub fn send_nonblocking(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for its length.
        let r = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match cvt_size(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Length of the next datagram without consuming it (0 at end of stream).
pub fn peek_datagram_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: a zero-length buffer; MSG_TRUNC makes the kernel report the real length.
    cvt_size(unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    })
}

/// A datagram as received, with the file descriptors that came with it.
#[derive(Debug)]
pub struct Datagram {
    pub len: usize,
    pub fds: Vec<OwnedFd>,
    /// The data or the descriptors did not all fit (MSG_TRUNC / MSG_CTRUNC).
    pub truncated: bool,
}

/// Most descriptors accepted with one record (Hello carries two).
pub const MAX_FDS: usize = 4;

/// Receives one datagram into `buf`, taking ownership of passed descriptors.
pub fn recv_with_fds(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Datagram> {
    // Room for one SCM_RIGHTS header and MAX_FDS ints, suitably aligned.
    let mut cmsg_buf = [0u64; 16];
    let cmsg_len = unsafe { libc::CMSG_SPACE((MAX_FDS * size_of::<c_int>()) as u32) } as usize;
    debug_assert!(cmsg_len <= std::mem::size_of_val(&cmsg_buf));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below is valid for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_len;
    let n = loop {
        // SAFETY: msg points to live buffers.
        let r = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        match cvt_size(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    // SAFETY: standard cmsg walk over the buffer the kernel filled in.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let payload = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..payload / size_of::<c_int>() {
                    let raw = std::ptr::read_unaligned(data.cast::<c_int>().add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Datagram {
        len: n,
        fds,
        truncated: msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0,
    })
}

pub fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    getsockopt_raw::<libc::ucred>(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED)
}

/// A pidfd for the connecting process; it pins the pid so it cannot be reused unnoticed.
pub fn peer_pidfd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let raw = getsockopt_raw::<c_int>(fd.as_raw_fd(), libc::SOL_SOCKET, SO_PEERPIDFD)?;
    // SAFETY: the kernel just installed this fd for us.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether the process behind a pidfd still exists (running or zombie: its pid is not
/// free for reuse either way).
pub fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: signal 0 only checks existence and permission.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
