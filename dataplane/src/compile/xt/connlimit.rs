//! `-m connlimit` (net/netfilter/xt_connlimit.c, nf_conncount.c). connlimit_mt() counts
//! the connections tracked for the packet's masked source (or destination) address,
//! the packet's own connection (or, without one, the tuple nf_ct_get_tuplepr() takes
//! from its headers) included, and answers `(count > limit) ^ invert` (`--connlimit-upto`
//! is the inverted form). A packet without a connection whose headers give no tuple is
//! dropped (hotdrop).
//!
//! The count is never 0 (the packet's own connection is in it; 0 only when the kernel
//! cannot allocate, and then it drops the packet too), so a limit of 0 is always
//! exceeded and one of 2^32 - 1 never is: those rules are enforced as the constant
//! they are, with the hotdrop ([`Insn::XtConnlimitTuple`]). Any other limit needs the
//! per-address sets of live connections nf_conncount keeps (pruned of closed TCP
//! connections as it walks them, with garbage collection skipped within one jiffy of
//! the last); the data plane keeps none, so such rules are refused.

use netlink_proto::xt::Blob;
use nftshim_ebpf::residual::{CmpOp, Insn};

use super::super::residual::SCRATCH;
use super::Decompiled;

/// XT_CONNLIMIT_INVERT, XT_CONNLIMIT_DADDR (uapi xt_connlimit.h).
const INVERT: u32 = 1;
const DADDR: u32 = 2;

/// `struct xt_connlimit_info` (revision 1): mask 16 bytes @0, limit u32 @16, flags
/// u32 @20.
pub fn connlimit(b: Blob<'_>) -> Result<Decompiled, String> {
    let (limit, flags) = (b.u32(16), b.u32(20));
    if flags & !(INVERT | DADDR) != 0 {
        return Err(format!("xt match connlimit with flags {flags:#x}"));
    }
    let exceeded = match limit {
        0 => true,
        u32::MAX => false,
        _ => {
            return Err(format!(
                "xt match connlimit with a limit of {limit} is not supported by the eBPF \
                 data plane (it keeps no per-address counts of connections; only the \
                 limits 0 and 4294967295, whose answer does not depend on the count)"
            ))
        }
    };
    let mut insns = vec![Insn::XtConnlimitTuple];
    if exceeded == (flags & INVERT != 0) {
        // The answer is false: after the tuple check (which may drop), always break.
        insns.push(Insn::Immediate {
            dreg: SCRATCH,
            data: vec![0],
        });
        insns.push(Insn::Cmp {
            sreg: SCRATCH,
            op: CmpOp::Neq,
            data: vec![0],
        });
    }
    Ok(Decompiled::Residual(vec![], insns))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cx, xt_match};
    use super::super::{decompile_match, Decompiled};
    use super::*;
    use crate::compile::{Family, Hook};
    use nftshim_ebpf::residual::{Headers, MetaValues, Outcome, ResidualProgram};

    fn connlimit(limit: u32, flags: u32) -> Result<Decompiled, String> {
        let mut info = vec![0u8; 32];
        info[..4].copy_from_slice(&[255; 4]);
        info[16..20].copy_from_slice(&limit.to_ne_bytes());
        info[20..24].copy_from_slice(&flags.to_ne_bytes());
        let cx = cx(Family::Ip, Hook::Input, None);
        let m = xt_match("connlimit", 1, info);
        decompile_match(&cx, &m)
    }

    /// The program's outcomes on a whole UDP packet with a connection, and without one
    /// with its 8-byte header whole and cut to 3 bytes.
    fn outcomes(d: &Decompiled) -> (Outcome, Outcome, Outcome) {
        let Decompiled::Residual(ms, insns) = d else {
            panic!("not residual: {d:?}")
        };
        assert!(ms.is_empty());
        let program = ResidualProgram {
            insns: insns.clone(),
        };
        let udp = |len: usize| Headers {
            network: vec![0; 20 + len],
            transport: Some(20),
            ..Headers::default()
        };
        let no_conn = MetaValues {
            l4proto: Some(17),
            nfproto: 2,
            ..MetaValues::default()
        };
        let mut with_conn = no_conn;
        with_conn.ct.state = nftshim_ebpf::ir::ct_state::ESTABLISHED;
        (
            program.run(&udp(8), &with_conn),
            program.run(&udp(8), &no_conn),
            program.run(&udp(3), &no_conn),
        )
    }

    #[test]
    fn limits_whose_answer_does_not_depend_on_the_count() {
        use Outcome::{Breaks, Drops, Holds};
        // --connlimit-above 0, --connlimit-upto 4294967295: always, but the hotdrop.
        for (limit, flags) in [(0, 0), (0, DADDR), (u32::MAX, INVERT)] {
            let d = connlimit(limit, flags).unwrap();
            assert_eq!(outcomes(&d), (Holds, Holds, Drops), "{limit} {flags}");
        }
        // --connlimit-upto 0, --connlimit-above 4294967295: never, but the hotdrop.
        for (limit, flags) in [(0, INVERT), (u32::MAX, 0), (u32::MAX, DADDR)] {
            let d = connlimit(limit, flags).unwrap();
            assert_eq!(outcomes(&d), (Breaks, Breaks, Drops), "{limit} {flags}");
        }
    }

    #[test]
    fn other_limits_are_refused() {
        for limit in [1, 10, u32::MAX - 1] {
            let why = connlimit(limit, 0).unwrap_err();
            assert!(why.contains("connlimit") && why.contains("limit"), "{why}");
        }
        assert!(connlimit(0, 4).is_err());
    }
}
