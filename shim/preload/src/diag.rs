//! Messages to the application's stderr.

use std::io::Write;

/// Writes one line to stderr; a failing stderr is ignored (never panics).
pub fn say(line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _ = std::io::stderr().write_all(&buf);
}

/// strerror(e), without Rust's " (os error N)" suffix.
pub fn strerror(e: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: the XSI/GNU strerror_r in the libc crate is the XSI one (returns int) and
    // NUL-terminates within the buffer on success.
    if unsafe { libc::strerror_r(e, buf.as_mut_ptr(), buf.len()) } != 0 {
        return format!("error {e}");
    }
    // SAFETY: NUL-terminated by strerror_r.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
