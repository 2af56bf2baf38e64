//! xt_string's search (net/netfilter/xt_string.c with lib/ts_kmp.c): the reference
//! for bpf/lib/xt_string.h.
//!
//! string_mt() asks skb_find_text() for the pattern in the skb's bytes from
//! `from_offset` on (offsets count from skb->data: the network header at the IP
//! hooks) and accepts the first occurrence the algorithm reports only when it ends by
//! `to_offset` (`ret + patlen <= to - from`). KMP reports the leftmost occurrence (the
//! one that ends first) and keeps its state across the skb's blocks, so the match
//! holds exactly when an occurrence starts at `from` or later and ends by
//! `min(to, skb->len)`. With `--icase` both the pattern (at init) and the text go
//! through the kernel's toupper(), which also maps Latin-1 lower-case letters.

/// The kernel's toupper() (lib/ctype.c's table: 'a'..='z' and 0xdf..=0xff but 0xf7
/// are lower case, made upper by subtracting 32).
pub fn kernel_toupper(c: u8) -> u8 {
    if c.is_ascii_lowercase() || (c >= 0xdf && c != 0xf7) {
        c - 32
    } else {
        c
    }
}

/// Longest pattern (XT_STRING_MAX_PATTERN_SIZE).
pub const MAX_PATTERN: usize = 128;

/// One `-m string --algo kmp` match.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct XtString {
    pub from: u16,
    pub to: u16,
    /// 1..=128 bytes, already through [`kernel_toupper`] with `icase`.
    pub pattern: Vec<u8>,
    pub icase: bool,
    pub invert: bool,
}

impl XtString {
    /// Whether the pattern occurs in `datagram` (skb->data to skb->len) as
    /// skb_find_text() finds it, before the inversion.
    pub fn found(&self, datagram: &[u8]) -> bool {
        let n = self.pattern.len();
        let end = usize::from(self.to).min(datagram.len());
        let from = usize::from(self.from);
        if n == 0 || from + n > end {
            return false;
        }
        datagram[from..end].windows(n).any(|w| {
            w.iter().zip(&self.pattern).all(|(&t, &p)| {
                let t = if self.icase { kernel_toupper(t) } else { t };
                t == p
            })
        })
    }

    /// kmp_init()'s prefix table of the (already upper-cased) pattern: entry `q` is
    /// the length of the longest proper prefix of `pattern[..=q]` that is also its
    /// suffix. The BPF side runs kmp_find() with it.
    pub fn kmp_prefix_table(&self) -> Vec<u8> {
        let p = &self.pattern;
        let mut table = vec![0u8; p.len()];
        let mut k = 0usize;
        for q in 1..p.len() {
            while k > 0 && p[k] != p[q] {
                k = usize::from(table[k - 1]);
            }
            if p[k] == p[q] {
                k += 1;
            }
            table[q] = k as u8;
        }
        table
    }

    /// The match's result.
    pub fn holds(&self, datagram: &[u8]) -> bool {
        self.found(datagram) != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pattern: &[u8], from: u16, to: u16, icase: bool) -> XtString {
        XtString {
            from,
            to,
            pattern: if icase {
                pattern.iter().map(|&c| kernel_toupper(c)).collect()
            } else {
                pattern.to_vec()
            },
            icase,
            invert: false,
        }
    }

    #[test]
    fn an_occurrence_must_start_at_from_and_end_by_to() {
        let text = b"xxtestyy";
        assert!(s(b"test", 0, 65535, false).found(text));
        assert!(s(b"test", 2, 6, false).found(text));
        assert!(!s(b"test", 3, 65535, false).found(text));
        assert!(!s(b"test", 0, 5, false).found(text));
        assert!(!s(b"testyyz", 0, 65535, false).found(text));
        // A later occurrence inside the window still counts.
        assert!(s(b"ab", 1, 6, false).found(b"abxxab"));
    }

    #[test]
    fn the_prefix_table_is_kmps() {
        assert_eq!(s(b"abab", 0, 9, false).kmp_prefix_table(), vec![0, 0, 1, 2]);
        assert_eq!(
            s(b"aabaaab", 0, 9, false).kmp_prefix_table(),
            vec![0, 1, 0, 1, 2, 2, 3]
        );
        assert_eq!(s(b"abc", 0, 9, false).kmp_prefix_table(), vec![0, 0, 0]);
    }

    #[test]
    fn icase_uses_the_kernels_latin1_toupper() {
        assert!(s(b"TeSt", 0, 100, true).found(b"..test.."));
        assert!(!s(b"TeSt", 0, 100, false).found(b"..test.."));
        // 0xff (y diaeresis) upper-cases to 0xdf; 0xf7 (division sign) stays.
        assert_eq!(kernel_toupper(0xff), 0xdf);
        assert_eq!(kernel_toupper(0xdf), 0xbf);
        assert_eq!(kernel_toupper(0xf7), 0xf7);
        assert_eq!(kernel_toupper(0xe0), 0xc0);
        assert_eq!(kernel_toupper(b'z'), b'Z');
        assert_eq!(kernel_toupper(b'{'), b'{');
        // toupper() is not idempotent there: 0xff -> 0xdf -> 0xbf.
        assert!(s(&[0xff], 0, 10, true).found(&[0xff]));
        assert!(!s(&[0xff], 0, 10, true).found(&[0xdf]));
        assert!(s(&[0xbf], 0, 10, true).found(&[0xdf]));
    }
}
