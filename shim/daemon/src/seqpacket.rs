//! Async `SOCK_SEQPACKET` Unix sockets with descriptor passing (tokio has neither).

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::sys::{self, InodeId};

fn sockaddr_un(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// Registers an owned fd with the reactor. Must run inside the runtime.
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open and returns the same fd until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

fn new_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is wrapped at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects a blocking SOCK_SEQPACKET socket to `path` (used to detect a live daemon,
/// and by tests and tools).
pub fn connect_blocking(path: &Path) -> io::Result<OwnedFd> {
    let sock = new_socket()?;
    let (addr, len) = sockaddr_un(path)?;
    // SAFETY: addr is a valid sockaddr_un of length len.
    let r = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = sock.as_raw_fd();
    // SAFETY: clear O_NONBLOCK for a plain blocking client.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        libc::fcntl(raw, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok(sock)
}

#[derive(Debug)]
pub struct SeqPacketListener {
    fd: AsyncFd<OwnedFd>,
    path: PathBuf,
    /// The socket file we created, so we remove only our own at shutdown.
    file: InodeId,
}

impl SeqPacketListener {
    /// Binds at `path`: creates the parent directory, replaces a stale socket (refusing
    /// if a live daemon answers there), and opens the socket to every user (mode 0666),
    /// since unprivileged callers must get their EPERM from the protocol, as from the
    /// kernel.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if connect_blocking(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another daemon is listening on {}", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sock = new_socket()?;
        let (addr, len) = sockaddr_un(path)?;
        // SAFETY: addr is a valid sockaddr_un of length len.
        if unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        // SAFETY: plain syscall.
        if unsafe { libc::listen(sock.as_raw_fd(), 128) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let file = sys::stat_id(path)?;
        Ok(SeqPacketListener {
            fd: register(sock, Interest::READABLE)?,
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn accept(&self) -> io::Result<SeqPacketConn> {
        loop {
            let mut ready = self.fd.readable().await?;
            let r = ready.try_io(|fd| {
                // SAFETY: no address wanted; the new fd is wrapped at once.
                let c = unsafe {
                    libc::accept4(
                        fd.get_ref().as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if c < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    // SAFETY: accept4 returned a fresh fd.
                    Ok(unsafe { OwnedFd::from_raw_fd(c) })
                }
            });
            match r {
                Ok(Ok(fd)) => return SeqPacketConn::new(fd),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up before we got to it: not our problem.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Removes the socket file if it is still the one we created.
    pub fn remove_file(&self) {
        if sys::stat_id(&self.path).ok() == Some(self.file) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the socket");
            }
        }
    }
}

/// One received control record.
#[derive(Debug)]
pub struct Record {
    pub data: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

#[derive(Debug)]
pub enum Received {
    Record(Record),
    /// A record longer than the limit; it was consumed and discarded.
    TooLong(usize),
    /// Descriptors were lost (too many passed): the session cannot be trusted further.
    FdsTruncated,
    Eof,
}

#[derive(Debug)]
pub struct SeqPacketConn {
    fd: AsyncFd<OwnedFd>,
}

impl SeqPacketConn {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        sys::set_nonblocking(fd.as_fd())?;
        Ok(SeqPacketConn {
            fd: register(fd, Interest::READABLE | Interest::WRITABLE)?,
        })
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }

    /// Receives the next record, of at most `max` bytes.
    pub async fn recv(&self, max: usize) -> io::Result<Received> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| Self::recv_now(fd.get_ref(), max)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    fn recv_now(fd: &OwnedFd, max: usize) -> io::Result<Received> {
        let len = sys::peek_datagram_len(fd.as_fd())?;
        // Beyond the limit: read a truncated copy just to take it off the queue.
        let mut buf = vec![0u8; if len > max { 1 } else { len.max(1) }];
        let got = sys::recv_with_fds(fd.as_fd(), &mut buf)?;
        if len > max {
            return Ok(Received::TooLong(len));
        }
        if got.len == 0 && len == 0 {
            return Ok(Received::Eof);
        }
        if got.truncated {
            return Ok(Received::FdsTruncated);
        }
        buf.truncate(got.len);
        Ok(Received::Record(Record {
            data: buf,
            fds: got.fds,
        }))
    }

    pub async fn send(&self, record: &[u8]) -> io::Result<()> {
        loop {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| sys::send_nonblocking(fd.get_ref().as_fd(), record)) {
                Ok(r) => return r.map(drop),
                Err(_would_block) => continue,
            }
        }
    }
}
