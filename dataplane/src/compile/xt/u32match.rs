//! xt_u32 (`-m u32 --u32 ...`, any IP family): u32_match_it()'s tests of words read
//! from the datagram (from the network header, at most skb->len), as one residual
//! operation (Insn::XtU32, bpf/lib/xt_u32.h) whose elements are the tests' steps and
//! ranges; reads past skb->len or an overflow of `at` make the match false, then
//! `invert` applies (see nftshim_ebpf::residual::XtU32).

use nftshim_ebpf::residual::{Insn, U32Op, U32Test, XtU32, XT_U32_MAX_SIZE};

use super::Decompiled;
use netlink_proto::xt::Blob;

/// `struct xt_u32_test`: location[11] (number u32 @0, nextop u8 @4, 8 bytes each),
/// value[11] (min, max u32) @88, nnums u8 @176, nvalues @177; 180 bytes.
const TEST_SIZE: usize = 180;

/// `struct xt_u32`: tests[11], ntests u8 @1980, invert @1981.
pub(super) fn u32_match(b: Blob<'_>) -> Result<Decompiled, String> {
    let (ntests, invert) = (b.u8(1980) as usize, b.u8(1981) != 0);
    if ntests > XT_U32_MAX_SIZE {
        return Err("xt match u32 with more than 11 tests".into());
    }
    let mut tests = Vec::with_capacity(ntests);
    for t in 0..ntests {
        let base = t * TEST_SIZE;
        let (nnums, nvalues) = (b.u8(base + 176) as usize, b.u8(base + 177) as usize);
        if nnums > XT_U32_MAX_SIZE || nvalues > XT_U32_MAX_SIZE {
            return Err("xt match u32 with more than 11 locations or values".into());
        }
        // Location 0's number is read whatever nnums says; its nextop is not.
        let start = b.u32(base);
        let steps = (1..nnums)
            .filter_map(|j| {
                let at = base + 8 * j;
                U32Op::from_nextop(b.u8(at + 4)).map(|op| (op, b.u32(at)))
            })
            .collect();
        let ranges = (0..nvalues)
            .map(|j| (b.u32(base + 88 + 8 * j), b.u32(base + 92 + 8 * j)))
            .collect();
        tests.push(U32Test {
            start,
            steps,
            ranges,
        });
    }
    let u = XtU32 { tests, invert };
    if !u.fits() {
        return Err("xt match u32 shifts by 32 or more".into());
    }
    Ok(Decompiled::Residual(vec![], vec![Insn::XtU32(u)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's locations (number, nextop) and values (min, max).
    type TestSpec<'a> = (&'a [(u32, u8)], &'a [(u32, u32)]);

    fn blob(tests: &[TestSpec<'_>], invert: bool) -> Vec<u8> {
        let mut b = vec![0u8; 1984];
        for (t, (locs, vals)) in tests.iter().enumerate() {
            let base = t * TEST_SIZE;
            for (j, (n, op)) in locs.iter().enumerate() {
                b[base + 8 * j..base + 8 * j + 4].copy_from_slice(&n.to_ne_bytes());
                b[base + 8 * j + 4] = *op;
            }
            for (j, (lo, hi)) in vals.iter().enumerate() {
                b[base + 88 + 8 * j..base + 92 + 8 * j].copy_from_slice(&lo.to_ne_bytes());
                b[base + 92 + 8 * j..base + 96 + 8 * j].copy_from_slice(&hi.to_ne_bytes());
            }
            b[base + 176] = locs.len() as u8;
            b[base + 177] = vals.len() as u8;
        }
        b[1980] = tests.len() as u8;
        b[1981] = invert as u8;
        b
    }

    /// "0x0=0x0&&0x0>>0x16&0x3c@0x0=0x50" and an unknown nextop (a step doing nothing).
    #[test]
    fn blob_to_tests() {
        let b = blob(
            &[
                (&[(0, 0)], &[(0, 0)]),
                (&[(0, 0), (22, 2), (0x3c, 0), (0, 3), (7, 9)], &[(80, 80)]),
            ],
            true,
        );
        let Ok(Decompiled::Residual(m, insns)) = u32_match(Blob(&b)) else {
            panic!("not a residual");
        };
        assert!(m.is_empty());
        let want = XtU32 {
            tests: vec![
                U32Test {
                    start: 0,
                    steps: vec![],
                    ranges: vec![(0, 0)],
                },
                U32Test {
                    start: 0,
                    steps: vec![(U32Op::RightShift, 22), (U32Op::And, 0x3c), (U32Op::At, 0)],
                    ranges: vec![(80, 80)],
                },
            ],
            invert: true,
        };
        assert_eq!(insns, vec![Insn::XtU32(want)]);
    }

    #[test]
    fn checkentry_limits_refused() {
        let mut b = blob(&[(&[(0, 0)], &[(0, 0)])], false);
        b[1980] = 12;
        assert!(u32_match(Blob(&b)).is_err());
        let mut b = blob(&[(&[(0, 0)], &[(0, 0)])], false);
        b[177] = 12;
        assert!(u32_match(Blob(&b)).is_err());
        let b = blob(&[(&[(0, 0), (32, 1)], &[(0, 0)])], false);
        assert!(u32_match(Blob(&b)).is_err());
    }
}
