//! The calling thread's `errno`.

pub fn set(e: i32) {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = e }
}

pub fn get() -> i32 {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

/// Sets errno and returns the C failure value (-1) in the caller's return type.
pub fn fail<T: From<i8>>(e: i32) -> T {
    set(e);
    T::from(-1)
}
