//! `-m string` (net/netfilter/xt_string.c): a search of the packet's bytes from the
//! network header (skb->data at the IP hooks) for a pattern, between `--from` and
//! `--to`, optionally ignoring case; a residual operation of the data plane's own
//! ([`XtString`], bpf/lib/xt_string.h).
//!
//! Only `--algo kmp` is enforced: ts_kmp finds an occurrence wherever the skb's
//! blocks (linear part, page fragments) split it, so its result depends on the bytes
//! alone. ts_bm searches each block on its own and misses an occurrence spread over
//! two of them; the data plane cannot see how the kernel's skb is split, so `--algo
//! bm` is refused (as `fsm`, which the kernel does not have).

use netlink_proto::xt::{strnlen, Blob};
use nftshim_ebpf::residual::{kernel_toupper, Insn, XtString, XT_STRING_MAX_PATTERN};

use super::Decompiled;

const XT_STRING_FLAG_INVERT: u8 = 0x01;
const XT_STRING_FLAG_IGNORECASE: u8 = 0x02;

/// `struct xt_string_info` (revision 1): from_offset u16 @0, to_offset u16 @2, algo
/// char[16] @4, pattern char[128] @20, patlen u8 @148, flags u8 @149.
pub fn string(b: Blob<'_>) -> Result<Decompiled, String> {
    let (from, to) = (b.u16(0), b.u16(2));
    let algo = b.bytes(4, 16);
    let algo = &algo[..strnlen(&algo)];
    let (patlen, flags) = (usize::from(b.u8(148)), b.u8(149));
    if algo != b"kmp" {
        return Err(format!(
            "xt match string --algo {} is not supported by the eBPF data plane (only kmp \
             finds a match whatever blocks the kernel's skb is made of)",
            String::from_utf8_lossy(algo)
        ));
    }
    // checkentry refuses an empty or too long pattern and from > to.
    if patlen == 0 || patlen > XT_STRING_MAX_PATTERN || from > to {
        return Err("xt match string with an invalid pattern or range".into());
    }
    let icase = flags & XT_STRING_FLAG_IGNORECASE != 0;
    let mut pattern = b.bytes(20, patlen);
    if icase {
        // kmp_init() stores the pattern upper-cased.
        pattern.iter_mut().for_each(|c| *c = kernel_toupper(*c));
    }
    Ok(Decompiled::Residual(
        vec![],
        vec![Insn::XtString(XtString {
            from,
            to,
            pattern,
            icase,
            invert: flags & XT_STRING_FLAG_INVERT != 0,
        })],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(algo: &[u8], pattern: &[u8], from: u16, to: u16, flags: u8) -> Vec<u8> {
        let mut b = vec![0u8; 160];
        b[0..2].copy_from_slice(&from.to_ne_bytes());
        b[2..4].copy_from_slice(&to.to_ne_bytes());
        b[4..4 + algo.len()].copy_from_slice(algo);
        b[20..20 + pattern.len()].copy_from_slice(pattern);
        b[148] = pattern.len() as u8;
        b[149] = flags;
        b
    }

    #[test]
    fn kmp_is_a_search_bm_is_refused() {
        let b = info(b"kmp", b"test", 0, 65535, XT_STRING_FLAG_INVERT);
        assert_eq!(
            string(Blob(&b)),
            Ok(Decompiled::Residual(
                vec![],
                vec![Insn::XtString(XtString {
                    from: 0,
                    to: 65535,
                    pattern: b"test".to_vec(),
                    icase: false,
                    invert: true,
                })]
            ))
        );
        let b = info(b"kmp", b"Te\xffst", 10, 200, XT_STRING_FLAG_IGNORECASE);
        let Ok(Decompiled::Residual(_, insns)) = string(Blob(&b)) else {
            panic!()
        };
        assert_eq!(
            insns,
            vec![Insn::XtString(XtString {
                from: 10,
                to: 200,
                pattern: b"TE\xdfST".to_vec(),
                icase: true,
                invert: false,
            })]
        );
        let e = string(Blob(&info(b"bm", b"test", 0, 65535, 0))).unwrap_err();
        assert!(e.contains("string --algo bm"), "{e}");
    }
}
