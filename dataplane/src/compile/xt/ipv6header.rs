//! ip6t_ipv6header (`-m ipv6header`): ipv6header_mt6() walks the extension header
//! chain from the fixed header and sets one bit per header type it meets
//! (Insn::XtIpv6HeaderTypes; the match fails outright, inversions notwithstanding,
//! when fewer than 2 bytes are left for a header), then compares: with `--soft`
//! (modeflag) `!((types ^ matchflags ^ invflags) & matchflags)`, that is
//! `types & matchflags == (matchflags ^ invflags) & matchflags`; else
//! `types == matchflags`, `!=` when invflags (checkentry allows only 0 and 0xff).

use nftshim_ebpf::residual::{CmpOp, Insn};

use super::{Decompiled, XtCx};
use crate::compile::residual::SCRATCH;
use crate::compile::rule::V6;
use netlink_proto::xt::Blob;

/// `struct ip6t_ipv6header_info`: matchflags u8 @0, invflags @1, modeflag @2.
pub(super) fn ipv6header(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if cx.families != V6 {
        return Err("xt match ipv6header outside ip6 tables is not supported".into());
    }
    let (matchflags, invflags, soft) = (b.u8(0), b.u8(1), b.u8(2) != 0);
    let mut insns = vec![Insn::XtIpv6HeaderTypes { dreg: SCRATCH }];
    if soft {
        insns.extend([
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH + 4,
                len: 1,
                mask: vec![matchflags],
                xor: vec![0],
            },
            Insn::Cmp {
                sreg: SCRATCH + 4,
                op: CmpOp::Eq,
                data: vec![(matchflags ^ invflags) & matchflags],
            },
        ]);
    } else {
        insns.push(Insn::Cmp {
            sreg: SCRATCH,
            op: if invflags != 0 { CmpOp::Neq } else { CmpOp::Eq },
            data: vec![matchflags],
        });
    }
    Ok(Decompiled::Residual(vec![], insns))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cx, xt_match};
    use super::super::{decompile_match, Family, Hook};
    use super::*;
    use nftshim_ebpf::residual::{
        ipv6_header_types, Headers, MetaValues, Outcome, ResidualProgram,
    };

    /// An IPv6 datagram: fixed header with `next`, then `rest`.
    fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(rest);
        p
    }

    /// Datagrams whose walks give different type sets (and one the match fails on).
    fn datagrams() -> Vec<Vec<u8>> {
        let hbh = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
        vec![
            ipv6(17, &[0; 8]),
            ipv6(59, &[]),
            ipv6(0, &hbh(59)),
            ipv6(
                0,
                &[hbh(44), vec![6, 0, 0, 1, 0, 0, 0, 5], vec![0; 20]].concat(),
            ),
            ipv6(
                0,
                &[
                    hbh(60),
                    hbh(43),
                    vec![51, 0, 0, 0, 0, 0, 0, 0],
                    vec![50, 1],
                    vec![0; 14],
                ]
                .concat(),
            ),
            ipv6(50, &[0; 8]),
            // ESP with 1 byte left: the match fails.
            ipv6(50, &[0]),
            // A hop-by-hop header longer than the packet: the walk stops on it.
            ipv6(0, &[59, 1, 0, 0, 0, 0, 0, 0]),
        ]
    }

    fn kernel(types: u8, matchflags: u8, invflags: u8, modeflag: u8) -> bool {
        if modeflag != 0 {
            (types ^ matchflags ^ invflags) & matchflags == 0
        } else if invflags != 0 {
            types != matchflags
        } else {
            types == matchflags
        }
    }

    /// Every header set, soft or not, inverted or not: the decompiled program holds
    /// exactly where ipv6header_mt6()'s comparison does.
    #[test]
    fn the_program_compares_as_ipv6header_mt6() {
        let c = cx(Family::Ip6, Hook::Input, None);
        for ip in datagrams() {
            let types = ipv6_header_types(&ip);
            let headers = Headers {
                network: ip.clone(),
                protocol: 0x86dd,
                ..Headers::default()
            };
            for matchflags in 0..=255u8 {
                for (invflags, modeflag) in [(0, 0), (0xff, 0), (0, 1), (0xff, 1), (0x5a, 1)] {
                    let blob = vec![matchflags, invflags, modeflag, 0];
                    let Ok(Decompiled::Residual(m, insns)) =
                        decompile_match(&c, &xt_match("ipv6header", 0, blob))
                    else {
                        panic!("ipv6header not decompiled");
                    };
                    assert!(m.is_empty());
                    let got = ResidualProgram { insns }.run(&headers, &MetaValues::default());
                    let want = types.is_some_and(|t| kernel(t, matchflags, invflags, modeflag));
                    let want = if want {
                        Outcome::Holds
                    } else {
                        Outcome::Breaks
                    };
                    assert_eq!(
                        got, want,
                        "{types:?} {matchflags:#x} {invflags:#x} {modeflag}"
                    );
                }
            }
        }
    }

    #[test]
    fn refused_outside_ip6() {
        let c = cx(Family::Ip, Hook::Input, None);
        let e = decompile_match(&c, &xt_match("ipv6header", 0, vec![0x80, 0, 0, 0])).unwrap_err();
        assert!(e.contains("ipv6header"), "{e}");
    }
}
