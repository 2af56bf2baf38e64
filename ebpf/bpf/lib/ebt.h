/* SPDX-License-Identifier: GPL-2.0-only */
/* What ebtables' matches (net/bridge/netfilter/ebt_*.c, run by nft_compat in bridge
 * chains) read that nf_tables' expressions do not, for residual programs: a header
 * field whose place a length field gives, ebt_ip6's walk to the upper-layer header,
 * and skb->pkt_type. They read with skb_header_pointer() from skb->data, the network
 * header at every bridge hook, to skb->len: here frame offsets from rs->nh (the
 * netdev view's 14) to rs->end (the frame's end). ebt_802_3 reads the MAC header. Included by residual.h; the Rust
 * reference is src/residual.rs (src/residual/ebt.rs). */
#ifndef NFTSHIM_EBT_H
#define NFTSHIM_EBT_H

enum ns_res_ebt_op {
	/* arg: index byte; data[0] mask, data[1] scale; offset, len, dreg */
	NS_RES_PAYLOAD_INDEXED = 28,
	/* flags: 1 the header type, else len bytes at offset in the header; dreg */
	NS_RES_IP6_SKIP_EXTHDR = 29,
	NS_RES_PKTTYPE = 30, /* skb->pkt_type (1 byte) into dreg */
	/* arg: index byte; data[0] mask, data[1] offset if set, data[2] if clear; len, dreg */
	NS_RES_LINK_CHOICE = 31,
};

/* Copies len (<= 16) bytes at frame offset `at` into dreg from the header copy; 0 when
 * the packet (or the copy) does not have them. */
NS_INLINE int ns_ebt_copy(struct ns_res_state *rs, __u32 at, __u32 len, __u32 dreg)
{
	if (len == 0 || len > NS_RES_DATA || dreg + len > NS_RES_REGS)
		return -1;
	if (at + len > rs->end || at + len > rs->hdr_len)
		return 0;
	ns_res_clear(rs->regs, dreg, len);
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		rs->regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->hdr[(at + k) & (NS_RES_HDR_MAX - 1)];
	}
	return 1;
}

/* NS_RES_PAYLOAD_INDEXED: len bytes at nh + offset + scale * (byte `arg` & mask). */
NS_INLINE int ns_ebt_payload_indexed(struct ns_res_state *rs, const struct ns_res_insn *in)
{
	__u32 nh = rs->nh;
	if (!nh || nh + in->arg + 1 > rs->end || nh + in->arg + 1 > rs->hdr_len)
		return 0;
	__u32 b = rs->hdr[(nh + in->arg) & (NS_RES_HDR_MAX - 1)] & in->data[0];
	return ns_ebt_copy(rs, nh + in->offset + in->data[1] * b, in->len, in->dreg);
}

/* One header of ipv6_skip_exthdr() (bpf_loop callback, `hk` the hook's context),
 * reading the packet itself: the walk has no bound but the packet. State: rs->sc_off
 * the header's frame offset, rs->sc_type its type; rs->sc_at 1 when the walk ended
 * there, rs->sc_len 1 when it failed (-1). */
static long ns_ebt_skip_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u8 next = rs->sc_type;
	if (!(next == 0 || next == 43 || next == 44 || next == 51 || next == 59 || next == 60)) {
		rs->sc_at = 1;
		return 1;
	}
	__u32 off = rs->sc_off;
	if (next == 59 || off + 2 > rs->end ||
	    ns_hook_load(hk, off, rs->sc_hdr, 2) < 0) {
		rs->sc_len = 1;
		return 1;
	}
	__u32 hdrlen;
	if (next == 44) {
		if (off + 4 > rs->end || ns_hook_load(hk, off + 2, rs->sc_hdr + 2, 2) < 0) {
			rs->sc_len = 1;
			return 1;
		}
		if (((((__u32)rs->sc_hdr[2] << 8) | rs->sc_hdr[3]) & ~7u) != 0) {
			rs->sc_at = 1; /* a later fragment: the walk stops on its header */
			return 1;
		}
		hdrlen = 8;
	} else if (next == 51) {
		hdrlen = ((__u32)rs->sc_hdr[1] + 2) * 4;
	} else {
		hdrlen = ((__u32)rs->sc_hdr[1] + 1) * 8;
	}
	rs->sc_type = rs->sc_hdr[0];
	rs->sc_off = off + hdrlen;
	return 0;
}

/* NS_RES_IP6_SKIP_EXTHDR: ebt_ip6's ipv6_skip_exthdr(skb, 40, &nexthdr). 1 go on,
 * 0 break, -1 error. */
static __attribute__((noinline)) int ns_ebt_ip6_skip(struct ns_res_state *rs, const struct ns_res_insn *in,
						      struct ns_hook *hk)
{
	__u32 nh = rs->nh, dreg = in->dreg, len = in->len;
	if (!nh || nh + 40 > rs->end || nh + 40 > rs->hdr_len)
		return 0;
	rs->sc_type = rs->hdr[(nh + 6) & (NS_RES_HDR_MAX - 1)];
	rs->sc_off = nh + 40;
	rs->sc_at = 0;
	rs->sc_len = 0;
	/* Every header takes at least 8 bytes: one step each, and one to end on. */
	__u32 steps = rs->end > nh + 40 ? (rs->end - nh - 40) / 8 + 2 : 2;
	bpf_loop(steps, ns_ebt_skip_step, hk, 0);
	if (!rs->sc_at || rs->sc_len)
		return 0;
	if (in->flags & 1) {
		if (dreg + 4 > NS_RES_REGS)
			return -1;
		ns_res_clear(rs->regs, dreg, 1);
		rs->regs[dreg & (NS_RES_REGS - 1)] = rs->sc_type;
		return 1;
	}
	if (len == 0 || len > NS_RES_DATA || dreg + len > NS_RES_REGS)
		return -1;
	__u32 at = rs->sc_off + in->offset;
	if (at + len > rs->end || ns_hook_load(hk, at, rs->tmp, len) < 0)
		return 0;
	ns_res_clear(rs->regs, dreg, len);
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		rs->regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->tmp[k];
	}
	return 1;
}

/* NS_RES_PKTTYPE. */
NS_INLINE int ns_ebt_pkttype(struct ns_res_state *rs, const struct ns_res_insn *in)
{
	__u32 dreg = in->dreg;
	if (dreg + 4 > NS_RES_REGS)
		return -1;
	ns_res_clear(rs->regs, dreg, 1);
	rs->regs[dreg & (NS_RES_REGS - 1)] = rs->pkt_type;
	return 1;
}

/* NS_RES_LINK_CHOICE: len bytes of the frame (from the MAC header) at data[1] when
 * its byte `arg` has a bit of data[0] set, else at data[2]. */
NS_INLINE int ns_ebt_link_choice(struct ns_res_state *rs, const struct ns_res_insn *in)
{
	__u32 frame = rs->frame_len < rs->hdr_len ? rs->frame_len : rs->hdr_len;
	__u32 dreg = in->dreg, len = in->len;
	if (len == 0 || len > NS_RES_DATA || dreg + len > NS_RES_REGS)
		return -1;
	if (in->arg + 1 > frame)
		return 0;
	__u8 b = rs->hdr[in->arg & (NS_RES_HDR_MAX - 1)];
	__u32 at = (b & in->data[0]) ? in->data[1] : in->data[2];
	if (at + len > frame)
		return 0;
	ns_res_clear(rs->regs, dreg, len);
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		rs->regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->hdr[(at + k) & (NS_RES_HDR_MAX - 1)];
	}
	return 1;
}

#endif
