//! libc's own definitions of the functions this library interposes.
//!
//! Every call this library makes to an interposed function must go through here: calling
//! `libc::close` from inside the library would land in our own `close` again. Each symbol
//! is looked up once with `dlsym(RTLD_NEXT)`; [`resolve_all`] runs at load time so that no
//! lookup (which takes the loader's lock) happens later inside a signal handler.

use libc::{c_int, c_uint, c_void, msghdr, size_t, sockaddr, socklen_t, ssize_t};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Address of the next definition of `name` (NUL-terminated), cached in `slot`; 0 if none.
fn resolve(slot: &AtomicUsize, name: &'static str) -> usize {
    let cached = slot.load(Ordering::Acquire);
    if cached != 0 {
        return cached;
    }
    // SAFETY: `name` is a NUL-terminated literal built by the macro below.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    slot.store(found, Ordering::Release);
    found
}

macro_rules! real_functions {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        mod slot {
            use std::sync::atomic::AtomicUsize;
            $( #[allow(non_upper_case_globals)] pub static $name: AtomicUsize = AtomicUsize::new(0); )*
        }
        $(
            /// The next (libc's) definition; -1 with ENOSYS if there is none.
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                let p = resolve(&slot::$name, concat!(stringify!($name), "\0"));
                if p == 0 {
                    crate::errno::set(libc::ENOSYS);
                    return -1;
                }
                // SAFETY: the symbol has this C signature in glibc.
                let f: unsafe extern "C" fn($($ty),*) -> $ret = std::mem::transmute(p);
                f($($arg),*)
            }
        )*
        /// Looks every symbol up now (called from the library's constructor).
        pub fn resolve_all() {
            $( resolve(&slot::$name, concat!(stringify!($name), "\0")); )*
            resolve(&slot_variadic::fcntl, "fcntl\0");
            resolve(&slot_variadic::fcntl64, "fcntl64\0");
            resolve(&slot_variadic::closefrom, "closefrom\0");
        }
    };
}

real_functions! {
    fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int;
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t;
    fn close(fd: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
}

/// Slots of the functions whose C signature the macro cannot express (variadic, void).
#[allow(non_upper_case_globals)]
mod slot_variadic {
    use std::sync::atomic::AtomicUsize;
    pub static fcntl: AtomicUsize = AtomicUsize::new(0);
    pub static fcntl64: AtomicUsize = AtomicUsize::new(0);
    pub static closefrom: AtomicUsize = AtomicUsize::new(0);
}

type Fcntl = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;

/// libc's `fcntl` (variadic: the third argument is passed as the caller passed it).
pub unsafe fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    call_fcntl(&slot_variadic::fcntl, "fcntl\0", fd, cmd, arg)
}

/// libc's `fcntl64`, which programs built with 64-bit file offsets call.
pub unsafe fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    call_fcntl(&slot_variadic::fcntl64, "fcntl64\0", fd, cmd, arg)
}

unsafe fn call_fcntl(
    slot: &AtomicUsize,
    name: &'static str,
    fd: c_int,
    cmd: c_int,
    arg: libc::c_ulong,
) -> c_int {
    let p = resolve(slot, name);
    if p == 0 {
        crate::errno::set(libc::ENOSYS);
        return -1;
    }
    let f: Fcntl = std::mem::transmute(p);
    f(fd, cmd, arg)
}

/// libc's `closefrom` (glibc 2.34+); false if this libc has none.
pub unsafe fn closefrom(low: c_int) -> bool {
    let p = resolve(&slot_variadic::closefrom, "closefrom\0");
    if p == 0 {
        return false;
    }
    let f: unsafe extern "C" fn(c_int) = std::mem::transmute(p);
    f(low);
    true
}
