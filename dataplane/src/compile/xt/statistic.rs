//! `-m statistic` (net/netfilter/xt_statistic.c). `--mode random`: the match holds
//! when `(get_random_u32() & 0x7FFFFFFF) < probability`, inverted by `!`; the data
//! plane draws with bpf_get_prandom_u32(), a uniform u32 as the kernel's is.
//! `--mode nth` counts packets in the match's private state, an atomic counter per
//! rule that checkentry starts at `count`: a per-rule slot of the data plane's shared
//! quota table, kept while the rule exists (see [`nftshim_ebpf::ir::Nth`]).

use netlink_proto::xt::Blob;
use nftshim_ebpf::residual::Insn;

use super::Decompiled;

const XT_STATISTIC_MODE_RANDOM: u16 = 0;
const XT_STATISTIC_MODE_NTH: u16 = 1;
const XT_STATISTIC_INVERT: u16 = 1;

/// `struct xt_statistic_info`: mode u16 @0, flags u16 @2, then random.probability
/// u32 @4, or nth.every @4, nth.packet @8, nth.count @12.
pub fn statistic(b: Blob<'_>) -> Result<Decompiled, String> {
    let (mode, flags) = (b.u16(0), b.u16(2));
    if flags & !XT_STATISTIC_INVERT != 0 {
        return Err(format!("xt match statistic with unknown flags {flags:#x}"));
    }
    let invert = flags & XT_STATISTIC_INVERT != 0;
    match mode {
        XT_STATISTIC_MODE_RANDOM => Ok(Decompiled::Residual(
            vec![],
            vec![Insn::XtRandom {
                probability: b.u32(4),
                invert,
            }],
        )),
        XT_STATISTIC_MODE_NTH => Ok(Decompiled::Nth {
            every: b.u32(4),
            count: b.u32(12),
            negated: invert,
        }),
        _ => Err(format!("xt match statistic with unknown mode {mode}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decompile_match, Decompiled};
    use super::*;
    use crate::compile::{Family, Hook};

    fn statistic(mode: u16, flags: u16, word: u32) -> Result<Decompiled, String> {
        let mut info = vec![0u8; 24];
        info[..2].copy_from_slice(&mode.to_ne_bytes());
        info[2..4].copy_from_slice(&flags.to_ne_bytes());
        info[4..8].copy_from_slice(&word.to_ne_bytes());
        let cx = super::super::tests::cx(Family::Ip6, Hook::Output, None);
        decompile_match(&cx, &super::super::tests::xt_match("statistic", 0, info))
    }

    #[test]
    fn random_mode_draws_against_the_probability() {
        // ! --probability 0.5: iptables sends 0x40000000.
        assert_eq!(
            statistic(0, 1, 0x4000_0000),
            Ok(Decompiled::Residual(
                vec![],
                vec![Insn::XtRandom {
                    probability: 0x4000_0000,
                    invert: true
                }]
            ))
        );
        // ! --every 5 --packet 2: every 4, packet 2, count as sent (0 here).
        assert_eq!(
            statistic(1, 1, 4),
            Ok(Decompiled::Nth {
                every: 4,
                count: 0,
                negated: true
            })
        );
        assert!(statistic(0, 2, 0).is_err());
    }
}
