//! `-m connlabel` (net/netfilter/xt_connlabel.c). connlabel_mt(): without a connection,
//! or with one that has no labels extension, it answers `invert`; a connection whose
//! label bit is set answers `!invert`; otherwise `--set` sets the bit and answers
//! `!invert`, and a test answers `invert`.
//!
//! Enforced as the tracker's label bits ([`Test::CtLabel`], `bpf/lib/stmts.h`): a
//! connection gets the labels extension when it is created while some rule of the
//! namespace uses labels (`ct_labels`, written with every generation, as
//! nf_connlabels_get() counts such rules); `--set` sets the bit on it, including on the
//! connection's first, unconfirmed packet, and later rules and packets see it. `--set`
//! is a match with a side effect: like a quota, it must be the rule's last match.

use netlink_proto::xt::Blob;
use nftshim_ebpf::ir::{Match, Test};

use super::Decompiled;

/// XT_CONNLABEL_OP_INVERT, XT_CONNLABEL_OP_SET (uapi xt_connlabel.h).
const OP_INVERT: u16 = 1;
const OP_SET: u16 = 2;

/// `struct xt_connlabel_mtinfo`: bit u16 @0, options u16 @2.
pub fn connlabel(b: Blob<'_>) -> Result<Decompiled, String> {
    let (bit, options) = (b.u16(0), b.u16(2));
    if options & !(OP_INVERT | OP_SET) != 0 {
        return Err(format!("xt match connlabel with options {options:#x}"));
    }
    // connlabel_mt_check() refuses bits past XT_CONNLABEL_MAXBIT (127).
    let bit = u8::try_from(bit)
        .ok()
        .filter(|b| *b <= 127)
        .ok_or_else(|| format!("xt match connlabel with label bit {bit}"))?;
    let set = options & OP_SET != 0;
    let m = Match {
        test: Test::CtLabel { bit, set },
        negated: options & OP_INVERT != 0,
    };
    Ok(if set {
        Decompiled::Stateful(m)
    } else {
        Decompiled::Matches(vec![m])
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decompile_match, Decompiled, XtCx};
    use crate::compile::{Family, Hook};
    use netlink_proto::expr::compat::{Match as XtMatch, MatchAttr};
    use nftshim_ebpf::ir::{Match, Test};

    fn connlabel(bit: u16, options: u16) -> Result<Decompiled, String> {
        let mut info = vec![0u8; 8];
        info[..2].copy_from_slice(&bit.to_ne_bytes());
        info[2..4].copy_from_slice(&options.to_ne_bytes());
        let cx = XtCx {
            family: Family::Inet,
            hook: Hook::Input,
            families: 3,
            l4protos: None,
            view: None,
        };
        let m = XtMatch::new(vec![
            MatchAttr::Name("connlabel".into()),
            MatchAttr::Rev(0),
            MatchAttr::Info(info),
        ]);
        decompile_match(&cx, &m)
    }

    #[test]
    fn a_label_test_reads_the_bit_and_set_is_stateful() {
        let m = |bit, set, negated| Match {
            test: Test::CtLabel { bit, set },
            negated,
        };
        assert_eq!(
            connlabel(40, 0),
            Ok(Decompiled::Matches(vec![m(40, false, false)]))
        );
        assert_eq!(
            connlabel(127, 1),
            Ok(Decompiled::Matches(vec![m(127, false, true)]))
        );
        assert_eq!(
            connlabel(41, 2),
            Ok(Decompiled::Stateful(m(41, true, false)))
        );
        assert_eq!(
            connlabel(41, 3),
            Ok(Decompiled::Stateful(m(41, true, true)))
        );
        assert!(connlabel(128, 0).is_err());
        assert!(connlabel(1, 4).is_err());
    }
}
