//! xt_NFLOG (`-j NFLOG --nflog-group G --nflog-prefix P --nflog-size S
//! --nflog-threshold Q`): nflog_tg() logs through nf_log_packet with an
//! NF_LOG_TYPE_ULOG loginfo (NF_LOG_F_COPY_LEN only with XT_NFLOG_F_COPY_LEN: the
//! legacy `--nflog-range` sets the length alone, which nfnetlink_log ignores) and
//! returns XT_CONTINUE. See `compile::nflog` for where it is enforced.

use netlink_proto::xt::{strnlen, Blob};

use super::{Decompiled, XtCx};

/// XT_NFLOG_F_COPY_LEN.
const XT_NFLOG_F_COPY_LEN: u16 = 0x1;

/// `struct xt_nflog_info`: len u32 @0, group u16 @4, threshold u16 @6, flags u16 @8,
/// pad u16 @10, prefix char[64] @12.
pub fn nflog(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    if b.0.len() < 76 {
        return Err("xt target NFLOG with a short info".into());
    }
    let raw = b.bytes(12, 64);
    let prefix = &raw[..strnlen(&raw)];
    let copy_len = (b.u16(8) & XT_NFLOG_F_COPY_LEN != 0).then(|| b.u32(0));
    crate::compile::nflog::statement(cx.family, cx.hook, b.u16(4), prefix, copy_len, b.u16(6))
        .map(Decompiled::Statement)
}
