//! `-m connlabel` (net/netfilter/xt_connlabel.c). connlabel_mt(): without a connection,
//! or with one that has no labels extension, it answers `invert`; a connection whose
//! label bit is set answers `!invert`; otherwise `--set` sets the bit and answers
//! `!invert`, and a test answers `invert`.
//!
//! Without `--set`: no connection the data plane tracks ever has a label bit set,
//! because nothing that sets one is accepted (`--set` and nft's `ct label set` are
//! refused; there is no ctnetlink to set labels from userspace), so the bit test fails
//! on every packet and the match answers `invert`. nft's `ct label` reads 0 on the same
//! grounds (bpf/lib/ct_keys.h).
//!
//! `--set` is refused: it needs per-connection label bits, set by the rule as the
//! kernel sets them (including on the connection's first, unconfirmed packet), and the
//! labels extension that only connections created while a label rule is loaded get.

use netlink_proto::xt::Blob;

use super::Decompiled;

/// XT_CONNLABEL_OP_INVERT, XT_CONNLABEL_OP_SET (uapi xt_connlabel.h).
const OP_INVERT: u16 = 1;
const OP_SET: u16 = 2;

/// `struct xt_connlabel_mtinfo`: bit u16 @0, options u16 @2.
pub fn connlabel(b: Blob<'_>) -> Result<Decompiled, String> {
    let options = b.u16(2);
    if options & !(OP_INVERT | OP_SET) != 0 {
        return Err(format!("xt match connlabel with options {options:#x}"));
    }
    if options & OP_SET != 0 {
        return Err(
            "xt match connlabel --set is not supported by the eBPF data plane (the tracker \
             keeps no label bits)"
                .into(),
        );
    }
    // No label bit is ever set: the test fails, the match answers `invert`.
    Ok(if options & OP_INVERT != 0 {
        Decompiled::Always
    } else {
        Decompiled::Never
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decompile_match, Decompiled, XtCx};
    use crate::compile::{Family, Hook};
    use netlink_proto::expr::compat::{Match, MatchAttr};

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
        let m = Match::new(vec![
            MatchAttr::Name("connlabel".into()),
            MatchAttr::Rev(0),
            MatchAttr::Info(info),
        ]);
        decompile_match(&cx, &m)
    }

    #[test]
    fn a_label_test_never_holds_and_its_inversion_always() {
        assert_eq!(connlabel(40, 0), Ok(Decompiled::Never));
        assert_eq!(connlabel(127, 1), Ok(Decompiled::Always));
    }

    #[test]
    fn setting_a_label_is_refused() {
        for options in [2, 3] {
            let why = connlabel(41, options).unwrap_err();
            assert!(why.contains("connlabel --set"), "{why}");
        }
    }

    #[test]
    fn unknown_options_are_refused() {
        assert!(connlabel(1, 4).is_err());
    }
}
