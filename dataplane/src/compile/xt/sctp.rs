//! xt_sctp (`-m sctp`): ports and `--chunk-types` as sctp_mt() tests them, in its
//! order: a later fragment fails; a common header cut short drops the packet; the
//! port tests; then match_packet()'s chunk walk, which drops the packet on a chunk
//! header cut short or of length 0 (hotdrop, reproduced by the residual operations).

use nftshim_ebpf::residual::{Insn, SctpChunkMatch, SctpChunks};

use super::{need_protocol, port_test, Decompiled, XtCx};
use netlink_proto::xt::Blob;

const IPPROTO_SCTP: u8 = 132;
const XT_SCTP_SRC_PORTS: u32 = 0x01;
const XT_SCTP_DEST_PORTS: u32 = 0x02;
const XT_SCTP_CHUNK_TYPES: u32 = 0x04;

/// `struct xt_sctp_info`: dpts u16[2] @0, spts @4, chunkmap u32[64] @8 (bit t % 32 of
/// word t / 32; only types up to 255 exist, the rest of the array is never cleared),
/// chunk_match_type u32 @264, flag_info {chunktype, flag, flag_mask}[4] @268,
/// flag_count int @280, flags u32 @284, invflags @288.
pub(super) fn sctp(cx: &XtCx<'_>, b: Blob<'_>) -> Result<Decompiled, String> {
    need_protocol(cx, "sctp", &[IPPROTO_SCTP])?;
    let (flags, inv) = (b.u32(284), b.u32(288));
    // The common header: 12 bytes.
    let mut insns = vec![Insn::XtTransportHeader { len: 12 }];
    if flags & XT_SCTP_SRC_PORTS != 0 {
        insns.extend(port_test(
            0,
            b.u16(4),
            b.u16(6),
            inv & XT_SCTP_SRC_PORTS != 0,
        ));
    }
    if flags & XT_SCTP_DEST_PORTS != 0 {
        insns.extend(port_test(
            2,
            b.u16(0),
            b.u16(2),
            inv & XT_SCTP_DEST_PORTS != 0,
        ));
    }
    if flags & XT_SCTP_CHUNK_TYPES != 0 {
        insns.push(Insn::XtSctpChunks(chunks(
            b,
            inv & XT_SCTP_CHUNK_TYPES != 0,
        )?));
    }
    Ok(Decompiled::Residual(vec![], insns))
}

fn chunks(b: Blob<'_>, invert: bool) -> Result<SctpChunks, String> {
    let mut map = [0u8; 32];
    for (i, byte) in map.iter_mut().enumerate() {
        // Byte i holds types 8i..8i+8: byte i % 4 of word i / 4, host order.
        *byte = b.u32(8 + 4 * (i / 4)).to_le_bytes()[i % 4];
    }
    let map_beyond = (8..64).any(|w| b.u32(8 + 4 * w) != 0);
    let kind = match b.u32(264) {
        1 => SctpChunkMatch::Any,
        2 => SctpChunkMatch::All,
        4 => SctpChunkMatch::Only,
        _ => SctpChunkMatch::Other,
    };
    let count = b.u32(280) as i32;
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= 4)
        .ok_or("xt match sctp with more than 4 chunk flag tests")?;
    let flags = (0..count)
        .map(|i| (b.u8(268 + 3 * i), b.u8(269 + 3 * i), b.u8(270 + 3 * i)))
        .collect();
    Ok(SctpChunks {
        kind,
        invert,
        map,
        map_beyond,
        flags,
    })
}
