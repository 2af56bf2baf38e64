//! xtables extension blobs: the `struct xt_*_info` (and `ipt_*`, `ip6t_*`, `ebt_*`,
//! `arpt_*`) that iptables-nft puts in `NFTA_MATCH_INFO` / `NFTA_TARGET_INFO`.
//!
//! The blobs are C structs in host byte order with the layout of this machine (x86_64,
//! as the kernel and iptables are built here); sizes and offsets below were taken with
//! `sizeof`/`offsetof` from the uapi headers. Each model reads the fields that the
//! kernel's `checkentry` looks at; the blob itself is kept as sent, since
//! `iptables -S` decodes it again from the dump.
//!
//! Module per concern: [`matches`] (packet and connection matches), [`targets`],
//! [`bridge`] (ebtables and arptables extensions).

pub mod bridge;
pub mod matches;
pub mod targets;

/// `XT_ALIGN`: extension data is padded to the alignment of `struct _xt_align` (8).
pub const fn xt_align(n: usize) -> usize {
    (n + 7) & !7
}

/// Reads host-order fields at fixed offsets; out of range reads give zero (models
/// check the length before reading).
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a>(pub &'a [u8]);

impl<'a> Blob<'a> {
    fn array<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        if let Some(s) = self.0.get(off..off + N) {
            a.copy_from_slice(s);
        }
        a
    }

    pub fn u8(&self, off: usize) -> u8 {
        self.0.get(off).copied().unwrap_or(0)
    }

    pub fn u16(&self, off: usize) -> u16 {
        u16::from_ne_bytes(self.array(off))
    }

    /// A `__be16` field.
    pub fn be16(&self, off: usize) -> u16 {
        u16::from_be_bytes(self.array(off))
    }

    pub fn u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.array(off))
    }

    pub fn u64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.array(off))
    }

    /// `len` raw bytes (a `char[len]` field, an address...).
    pub fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        self.0
            .get(off..off + len)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| vec![0; len])
    }
}

/// `strnlen` of a `char[N]` field.
pub fn strnlen(field: &[u8]) -> usize {
    field.iter().position(|&b| b == 0).unwrap_or(field.len())
}

/// Declares a blob model: a struct of named fields read at fixed offsets, its C size,
/// and `parse`, which refuses a blob shorter than that size.
macro_rules! xt_struct {
    ($(#[$m:meta])* $name:ident = $size:expr; { $($(#[$fm:meta])* $field:ident : $ty:tt @ $off:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: xt_struct!(@ty $ty)),* }

        impl $name {
            /// `sizeof` of the C struct (the kernel's matchsize/targetsize).
            pub const SIZE: usize = $size;

            /// `None` if `blob` is shorter than the struct.
            #[allow(unused_variables)]
            pub fn parse(blob: &[u8]) -> Option<Self> {
                if blob.len() < Self::SIZE {
                    return None;
                }
                let b = $crate::xt::Blob(blob);
                Some(Self { $($field: xt_struct!(@read b, $ty, $off)),* })
            }
        }
    };
    (@ty u8) => { u8 };
    (@ty u16) => { u16 };
    (@ty be16) => { u16 };
    (@ty u32) => { u32 };
    (@ty u64) => { u64 };
    (@ty [$n:expr]) => { Vec<u8> };
    (@read $b:ident, u8, $off:expr) => { $b.u8($off) };
    (@read $b:ident, u16, $off:expr) => { $b.u16($off) };
    (@read $b:ident, be16, $off:expr) => { $b.be16($off) };
    (@read $b:ident, u32, $off:expr) => { $b.u32($off) };
    (@read $b:ident, u64, $off:expr) => { $b.u64($off) };
    (@read $b:ident, [$n:expr], $off:expr) => { $b.bytes($off, $n) };
}
pub(crate) use xt_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_and_reads() {
        assert_eq!(
            (xt_align(0), xt_align(1), xt_align(8), xt_align(13)),
            (0, 8, 8, 16)
        );
        let b = Blob(&[1, 2, 3, 4, 5]);
        assert_eq!(b.u8(0), 1);
        assert_eq!(b.u16(0), u16::from_ne_bytes([1, 2]));
        assert_eq!(b.be16(0), 0x0102);
        assert_eq!(b.u32(4), 0, "out of range reads are zero, not a panic");
        assert_eq!(b.bytes(3, 4), vec![0; 4]);
        assert_eq!(strnlen(b"ab\0c"), 2);
        assert_eq!(strnlen(b"abc"), 3);
    }
}
