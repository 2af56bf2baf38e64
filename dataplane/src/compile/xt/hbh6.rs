//! ip6t_hbh (`-m hbh`, the hop-by-hop options header; `-m dst`, destination
//! options): hbh_mt6() finds the header with ipv6_find_hdr() (not there: no match;
//! an extension header cut short: the packet is dropped, "hotdrop"), drops the packet
//! when its 2 bytes or the length its length field gives are not all there (6.18.44
//! does; checked on this kernel), then tests `--hbh-len`; `--hbh-opts` walks the
//! options in order (Insn::XtIpv6Options, the kernel's strict mode, the only one
//! checkentry accepts).

use nftshim_ebpf::residual::{Insn, IPV6_MAX_OPTS};

use super::{Decompiled, XtCx};
use crate::compile::residual::SCRATCH;
use crate::compile::rule::V6;
use netlink_proto::xt::Blob;

const IP6T_OPTS_LEN: u8 = 0x01;
const IP6T_OPTS_OPTS: u8 = 0x02;
const IP6T_OPTS_INV_LEN: u8 = 0x01;

/// `struct ip6t_opts`: hdrlen u32 @0, flags u8 @4, invflags @5, opts u16[16] @6,
/// optsnr u8 @38. `header` is NEXTHDR_HOP (0) or NEXTHDR_DEST (60).
pub(super) fn options_header(
    cx: &XtCx<'_>,
    b: Blob<'_>,
    name: &str,
    header: u8,
) -> Result<Decompiled, String> {
    if cx.families != V6 {
        return Err(format!(
            "xt match {name} outside ip6 tables is not supported"
        ));
    }
    let (hdrlen, flags, inv) = (b.u32(0), b.u8(4), b.u8(5));
    let optsnr = b.u8(38) as usize;
    if flags & IP6T_OPTS_OPTS != 0 && optsnr > IPV6_MAX_OPTS {
        // The kernel would read past `opts[]`.
        return Err(format!(
            "xt match {name} --{name}-opts with {optsnr} options is not supported"
        ));
    }
    let mut insns = vec![Insn::XtIpv6Header {
        header,
        len: 2,
        dreg: SCRATCH,
        whole: true,
        offset: 0,
        drops: true,
    }];
    if flags & IP6T_OPTS_LEN != 0 {
        // ipv6_optlen() == hdrlen: (length field + 1) * 8, so only multiples of 8
        // from 8 to 2048 can be equal.
        let field = (hdrlen % 8 == 0)
            .then(|| (hdrlen / 8).checked_sub(1))
            .flatten()
            .and_then(|f| u8::try_from(f).ok());
        let negated = inv & IP6T_OPTS_INV_LEN != 0;
        let (from, to) = match field {
            Some(f) => (vec![0, f], vec![0, f]),
            // Never equal: an empty range.
            None => (vec![0, 1], vec![0, 0]),
        };
        // The length field alone (registers are tested from a word's start).
        insns.extend([
            Insn::Bitwise {
                sreg: SCRATCH,
                dreg: SCRATCH + 4,
                len: 2,
                mask: vec![0, 0xff],
                xor: vec![0, 0],
            },
            Insn::Range {
                sreg: SCRATCH + 4,
                negated,
                from,
                to,
            },
        ]);
    }
    if flags & IP6T_OPTS_OPTS != 0 {
        // opts[i]: the type in the high byte, the length (0xff: any) in the low.
        let opts = (0..optsnr)
            .map(|i| {
                let o = b.u16(6 + 2 * i);
                ((o >> 8) as u8, o as u8)
            })
            .collect();
        insns.push(Insn::XtIpv6Options { header, opts });
    }
    Ok(Decompiled::Residual(vec![], insns))
}
