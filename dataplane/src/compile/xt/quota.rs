//! `-m quota` (net/netfilter/xt_quota.c). quota_mt() lets a packet through while the
//! bytes left cover it (and takes them), and once one does not fit, sets what is left
//! to 0 so that no later packet fits either: a packet passes when the bytes of every
//! packet the rule saw, its own included, stay within the quota. That is nft_quota's
//! test (every packet added, over once the total exceeds the quota), which the data
//! plane's quota check does with one counter per rule, kept across program
//! generations as the kernel keeps the match's private state with the rule.
//! `! --quota` inverts the outcome and takes the bytes alike.

use netlink_proto::xt::Blob;

use super::Decompiled;

const XT_QUOTA_INVERT: u32 = 1;

/// `struct xt_quota_info`: flags u32 @0, quota u64 @8.
pub fn quota(b: Blob<'_>) -> Result<Decompiled, String> {
    let flags = b.u32(0);
    if flags & !XT_QUOTA_INVERT != 0 {
        return Err(format!("xt match quota with unknown flags {flags:#x}"));
    }
    Ok(Decompiled::Quota {
        bytes: b.u64(8),
        negated: flags & XT_QUOTA_INVERT != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decompile_match, Decompiled};
    use crate::compile::{Family, Hook};

    fn quota(flags: u32, bytes: u64) -> Result<Decompiled, String> {
        let mut info = vec![0u8; 24];
        info[..4].copy_from_slice(&flags.to_ne_bytes());
        info[8..16].copy_from_slice(&bytes.to_ne_bytes());
        let cx = super::super::tests::cx(Family::Ip6, Hook::Output, None);
        decompile_match(&cx, &super::super::tests::xt_match("quota", 0, info))
    }

    #[test]
    fn quota_and_its_inversion() {
        assert_eq!(
            quota(0, 1000),
            Ok(Decompiled::Quota {
                bytes: 1000,
                negated: false
            })
        );
        assert_eq!(
            quota(1, u64::MAX),
            Ok(Decompiled::Quota {
                bytes: u64::MAX,
                negated: true
            })
        );
        assert!(quota(2, 0).is_err());
    }
}
