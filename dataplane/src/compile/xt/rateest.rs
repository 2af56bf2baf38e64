//! `-j RATEEST` (net/netfilter/xt_RATEEST.c) and `-m rateest`
//! (net/netfilter/xt_rateest.c).
//!
//! xt_rateest_tg() adds skb->len and one packet to its estimator's counters and lets
//! the packet go on: exactly what the rule's counter counts, so the target is one more
//! counter of the rule ([`RateestUse::Counts`]), whose deltas the runtime's estimator
//! timer (runtime/rateest.rs) turns into rates as net/core/gen_estimator.c does, per
//! namespace and by name, and writes to the shared `rateest_rates` map. The match reads
//! that map and compares as xt_rateest_mt() does (residual operation
//! [`Insn::XtRateest`]). An estimator lives while a RATEEST target or a rateest match
//! of the namespace's programs names it, as the kernel's reference count keeps it.

use netlink_proto::xt::{strnlen, Blob};
use nftshim_ebpf::rateest::MATCH_REL;
use nftshim_ebpf::residual::Insn;
use nftshim_engine::CounterRef;

use super::super::residual::SCRATCH;
use super::{Decompiled, XtCx};
use crate::compile::Family;

/// An estimator as a rule uses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateestUse {
    /// A RATEEST target: what `counter` counts goes to the estimator `name`, made with
    /// `interval` and `ewma_log` (the same for every target sharing it, as
    /// xt_rateest_tg_checkentry() requires).
    Counts {
        name: [u8; 16],
        interval: i8,
        ewma_log: u8,
        counter: CounterRef,
    },
    /// A rateest match reads the estimator `name`.
    Reads { name: [u8; 16] },
}

/// The estimator's name as the kernel compares it (strcmp): the bytes before the
/// first NUL, zero-padded.
fn name_at(b: Blob<'_>, off: usize) -> [u8; 16] {
    let field = b.bytes(off, 16);
    let mut name = [0u8; 16];
    let n = strnlen(&field).min(16);
    name[..n].copy_from_slice(&field[..n]);
    name
}

/// IP hooks only: their counters count skb->len from the network header, as the
/// target does there.
fn ip_family(cx: &XtCx<'_>, what: &str) -> Result<(), String> {
    match cx.family {
        Family::Ip | Family::Ip6 | Family::Inet => Ok(()),
        _ => Err(format!(
            "xt {what} outside the ip, ip6 and inet families is not supported by the eBPF data plane"
        )),
    }
}

/// `struct xt_rateest_target_info`: name[16] @0, interval s8 @16, ewma_log u8 @17.
pub fn rateest_target(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    ip_family(cx, "target RATEEST")?;
    Ok(Decompiled::RateestCount {
        name: name_at(b, 0),
        interval: b.u8(16) as i8,
        ewma_log: b.u8(17),
    })
}

/// `struct xt_rateest_match_info`: name1[16] @0, name2[16] @16, flags u16 @32, mode
/// u16 @34, bps1, pps1, bps2, pps2 u32 @36..52 (checkentry took the flags and mode).
pub fn rateest_match(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    ip_family(cx, "match rateest")?;
    let flags = b.u16(32);
    let mode = b.u16(34);
    if flags > 0x3f || !(1..=3).contains(&mode) {
        return Err(format!(
            "xt match rateest with flags {flags:#x} and mode {mode} is not supported"
        ));
    }
    let name2 = if flags & MATCH_REL != 0 {
        name_at(b, 16)
    } else {
        [0; 16]
    };
    Ok(Decompiled::Residual(
        Vec::new(),
        vec![
            Insn::Immediate {
                dreg: SCRATCH,
                data: b.bytes(36, 16),
            },
            Insn::XtRateest {
                sreg: SCRATCH,
                name1: name_at(b, 0),
                name2,
                flags,
                mode,
            },
        ],
    ))
}

/// The estimators a rule's residual operations read.
pub fn reads(insns: &[Insn]) -> impl Iterator<Item = RateestUse> + '_ {
    insns.iter().flat_map(|i| match i {
        Insn::XtRateest {
            name1,
            name2,
            flags,
            ..
        } => {
            let second = (flags & MATCH_REL != 0).then_some(RateestUse::Reads { name: *name2 });
            vec![RateestUse::Reads { name: *name1 }]
                .into_iter()
                .chain(second)
                .collect::<Vec<_>>()
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cx, xt_match};
    use super::super::{decompile_match, decompile_target, Decompiled};
    use crate::compile::{Family, Hook};
    use netlink_proto::expr::compat::TargetAttr;
    use nftshim_ebpf::residual::Insn;

    fn name(s: &str) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..s.len()].copy_from_slice(s.as_bytes());
        n
    }

    /// `-m rateest --rateest-delta --rateest1 RE1 --rateest-pps1 0 --rateest-lt
    /// --rateest-pps2 42 --rateest2 RE2` as iptables-nft sends it.
    #[test]
    fn relative_delta_match() {
        let mut info = vec![0u8; 72];
        info[..3].copy_from_slice(b"RE1");
        info[16..19].copy_from_slice(b"RE2");
        // REL | DELTA | PPS; mode LT.
        info[32..34].copy_from_slice(&(4u16 | 8 | 32).to_ne_bytes());
        info[34..36].copy_from_slice(&2u16.to_ne_bytes());
        info[48..52].copy_from_slice(&42u32.to_ne_bytes());
        // Bytes after the NUL do not make another name.
        info[4] = b'x';
        let c = cx(Family::Ip, Hook::Input, None);
        let d = decompile_match(&c, &xt_match("rateest", 0, info)).unwrap();
        let Decompiled::Residual(ms, insns) = d else {
            panic!("{d:?}")
        };
        assert!(ms.is_empty());
        let mut consts = vec![0u8; 16];
        consts[12..].copy_from_slice(&42u32.to_ne_bytes());
        assert_eq!(
            insns,
            vec![
                Insn::Immediate {
                    dreg: super::SCRATCH,
                    data: consts
                },
                Insn::XtRateest {
                    sreg: super::SCRATCH,
                    name1: name("RE1"),
                    name2: name("RE2"),
                    flags: 4 | 8 | 32,
                    mode: 2,
                }
            ]
        );
        assert_eq!(super::reads(&insns).count(), 2);
    }

    #[test]
    fn absolute_match_ignores_the_second_name() {
        let mut info = vec![0u8; 72];
        info[..3].copy_from_slice(b"RE1");
        info[16..19].copy_from_slice(b"RE9");
        info[32..34].copy_from_slice(&(2u16 | 16).to_ne_bytes());
        info[34..36].copy_from_slice(&3u16.to_ne_bytes());
        let c = cx(Family::Ip6, Hook::Output, None);
        let Ok(Decompiled::Residual(_, insns)) = decompile_match(&c, &xt_match("rateest", 0, info))
        else {
            panic!()
        };
        assert!(matches!(insns[1], Insn::XtRateest { name2, .. } if name2 == [0; 16]));
        assert_eq!(super::reads(&insns).count(), 1);
    }

    #[test]
    fn target_names_its_estimator() {
        let mut info = vec![0u8; 32];
        info[..3].copy_from_slice(b"RE1");
        info[16] = (-2i8) as u8;
        info[17] = 1;
        let c = cx(Family::Ip, Hook::Forward, None);
        let t = netlink_proto::expr::compat::Target::new(vec![
            TargetAttr::Name("RATEEST".into()),
            TargetAttr::Rev(0),
            TargetAttr::Info(info),
        ]);
        assert_eq!(
            decompile_target(&c, &t),
            Ok(Decompiled::RateestCount {
                name: name("RE1"),
                interval: -2,
                ewma_log: 1
            })
        );
        let arp = cx(Family::Arp, Hook::Input, None);
        assert!(decompile_target(&arp, &t).is_err());
    }
}
