//! xt_u32 (net/netfilter/xt_u32.c): the reference for bpf/lib/xt_u32.h.
//!
//! u32_match_it() runs each test in turn (all must hold): it reads the big-endian
//! word at the test's first location number (an offset from skb->data, the network
//! header at the IP hooks), applies the location steps (`&`, `<<`, `>>`, and `@`,
//! which adds the value to `at` and reads the word at `at + number`), then asks
//! whether the value lies in one of the test's ranges. A read past skb->len, or an
//! overflow of `at`, makes the whole match false; u32_mt() then applies the
//! inversion.

/// XT_U32_MAXSIZE + 1: tests, locations and values per test.
pub const MAX_SIZE: usize = 11;

/// `enum xt_u32_ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum U32Op {
    And,
    LeftShift,
    RightShift,
    At,
}

impl U32Op {
    /// A location element's `nextop`; other values are steps the kernel's switch
    /// does nothing for.
    pub fn from_nextop(op: u8) -> Option<Self> {
        match op {
            0 => Some(Self::And),
            1 => Some(Self::LeftShift),
            2 => Some(Self::RightShift),
            3 => Some(Self::At),
            _ => None,
        }
    }
}

/// One `&&` operand: `start` is location 0's number (read whatever nnums says),
/// `steps` locations 1..nnums that do something, `ranges` the values (min, max).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct U32Test {
    pub start: u32,
    pub steps: Vec<(U32Op, u32)>,
    pub ranges: Vec<(u32, u32)>,
}

/// One `-m u32 --u32 ...` match.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct XtU32 {
    pub tests: Vec<U32Test>,
    pub invert: bool,
}

fn word(d: &[u8], at: u32) -> u32 {
    let at = at as usize;
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

impl XtU32 {
    /// What checkentry lets through (shifts below 32 included) and the BPF side
    /// encodes: at most [`MAX_SIZE`] tests, steps and ranges.
    pub fn fits(&self) -> bool {
        self.tests.len() <= MAX_SIZE
            && self.tests.iter().all(|t| {
                t.steps.len() < MAX_SIZE
                    && t.ranges.len() <= MAX_SIZE
                    && t.steps.iter().all(|&(op, n)| {
                        !matches!(op, U32Op::LeftShift | U32Op::RightShift) || n < 32
                    })
            })
    }

    /// u32_match_it() on `datagram` (skb->data to skb->len).
    pub fn match_it(&self, datagram: &[u8]) -> bool {
        let len = datagram.len().min(u32::MAX as usize) as u32;
        for t in &self.tests {
            let mut at: u32 = 0;
            if len < 4 || t.start > len - 4 {
                return false;
            }
            let mut val = word(datagram, t.start);
            for &(op, number) in &t.steps {
                match op {
                    U32Op::And => val &= number,
                    U32Op::LeftShift => val <<= number,
                    U32Op::RightShift => val >>= number,
                    U32Op::At => {
                        let Some(next) = at.checked_add(val) else {
                            return false;
                        };
                        at = next;
                        let pos = number;
                        if at.checked_add(4).is_none() || len < at + 4 || pos > len - at - 4 {
                            return false;
                        }
                        val = word(datagram, at + pos);
                    }
                }
            }
            if !t.ranges.iter().any(|&(min, max)| min <= val && val <= max) {
                return false;
            }
        }
        true
    }

    /// u32_mt(): the match, inverted with `invert`.
    pub fn holds(&self, datagram: &[u8]) -> bool {
        self.match_it(datagram) != self.invert
    }

    /// The BPF side's elements (`struct ns_res_elem`, 32 bytes each): per test a
    /// start, its steps and its ranges, each an element whose byte 0 is the kind
    /// ([`ELEM_START`] ..) and bytes 4-7 the number or minimum, 8-11 the maximum
    /// (host order).
    pub fn elements(&self) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        let mut push = |kind: u8, a: u32, b: u32| {
            let mut e = [0u8; 32];
            e[0] = kind;
            e[4..8].copy_from_slice(&a.to_ne_bytes());
            e[8..12].copy_from_slice(&b.to_ne_bytes());
            out.push(e);
        };
        for t in &self.tests {
            push(ELEM_START, t.start, 0);
            for &(op, n) in &t.steps {
                let kind = match op {
                    U32Op::And => ELEM_AND,
                    U32Op::LeftShift => ELEM_LEFTSH,
                    U32Op::RightShift => ELEM_RIGHTSH,
                    U32Op::At => ELEM_AT,
                };
                push(kind, n, 0);
            }
            for &(min, max) in &t.ranges {
                push(ELEM_RANGE, min, max);
            }
        }
        out
    }
}

/// Element kinds (`NS_U32_*`, bpf/lib/xt_u32.h).
pub const ELEM_START: u8 = 1;
pub const ELEM_AND: u8 = 2;
pub const ELEM_LEFTSH: u8 = 3;
pub const ELEM_RIGHTSH: u8 = 4;
pub const ELEM_AT: u8 = 5;
pub const ELEM_RANGE: u8 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    fn test(start: u32, steps: &[(U32Op, u32)], ranges: &[(u32, u32)]) -> U32Test {
        U32Test {
            start,
            steps: steps.to_vec(),
            ranges: ranges.to_vec(),
        }
    }

    /// The iptables man page's examples on a TCP/IPv4 datagram.
    #[test]
    fn man_page_examples() {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[9] = 6;
        p[20..22].copy_from_slice(&1234u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        // "6 & 0xFF = 6": protocol TCP.
        let tcp = XtU32 {
            tests: vec![test(6, &[(U32Op::And, 0xff)], &[(6, 6)])],
            invert: false,
        };
        assert!(tcp.holds(&p));
        // "0 >> 22 & 0x3C @ 0 >> 16 = 80": destination port via the header length.
        let dport = |port: u32| XtU32 {
            tests: vec![test(
                0,
                &[
                    (U32Op::RightShift, 22),
                    (U32Op::And, 0x3c),
                    (U32Op::At, 0),
                    (U32Op::RightShift, 16),
                ],
                &[(port, port)],
            )],
            invert: false,
        };
        assert!(!dport(80).holds(&p));
        assert!(dport(1234).holds(&p));
        let mut inv = dport(1234);
        inv.invert = true;
        assert!(!inv.holds(&p));
        // Past the end: false, and so true inverted.
        let far = XtU32 {
            tests: vec![test(37, &[], &[(0, u32::MAX)])],
            invert: true,
        };
        assert!(far.holds(&p));
        assert!(far.holds(&p[..3]));
        let last = XtU32 {
            tests: vec![test(36, &[], &[(0, u32::MAX)])],
            invert: true,
        };
        assert!(!last.holds(&p));
        // `at` overflowing fails.
        let wrap = XtU32 {
            tests: vec![test(
                0,
                &[(U32Op::And, 0), (U32Op::At, 0), (U32Op::At, 0)],
                &[(0, u32::MAX)],
            )],
            invert: false,
        };
        assert!(wrap.holds(&[0u8; 8]));
        assert!(!wrap.holds(&[0xffu8; 8]));
        // No tests: holds; a test without values: fails.
        assert!(XtU32 {
            tests: vec![],
            invert: false
        }
        .holds(&[]));
        assert!(!XtU32 {
            tests: vec![test(0, &[], &[])],
            invert: false
        }
        .holds(&p));
    }
}
