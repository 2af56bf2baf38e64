/* SPDX-License-Identifier: GPL-2.0-only */
/* Residual operations that run one xtables match's own walk (net/netfilter/xt_sctp.c,
 * xt_dccp.c), with the reference in src/residual/xt.rs. Where the kernel's match sets
 * par->hotdrop (a malformed header) they give NS_RES_HOTDROP: nft_compat drops the
 * packet. Included by residual.h after its state and helpers. */
#ifndef NFTSHIM_XT_H
#define NFTSHIM_XT_H

/* The end of the datagram as skb->len has it, a frame offset never past the frame. */
NS_INLINE __u32 ns_xt_end(const struct ns_res_state *rs)
{
	return rs->end < rs->frame_len ? rs->end : rs->frame_len;
}

/* NS_RES_XT_HEADER: a later fragment (or no transport header) fails the match
 * (par->fragoff), a header shorter than `len` bytes drops the packet. */
NS_INLINE int ns_res_xt_header(const struct ns_res_state *rs, __u32 len)
{
	if (!rs->has_th || (NS_FEATURE(NS_F_NETDEV_VIEW) && rs->fragoff))
		return 0;
	return rs->th + len > ns_xt_end(rs) ? NS_RES_HOTDROP : 1;
}

/* match_flags(): the first flag test of the chunk's type decides; none passes. */
NS_INLINE int ns_xt_sctp_flags_pass(const struct ns_res_state *rs, __u8 type, __u8 flags)
{
	for (__u32 k = 0; k < 4; k++) {
		if (k >= rs->xs_nflags)
			break;
		if (rs->xs_flags[3 * k] == type)
			return (flags & rs->xs_flags[3 * k + 2]) == rs->xs_flags[3 * k + 1];
	}
	return 1;
}

/* One chunk of match_packet() (bpf_loop callback; `hk`: the hook's context). */
static long ns_xt_sctp_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 off = rs->sc_off;
	if (off + 4 > rs->sc_end || ns_hook_load(hk, off, rs->sc_hdr, 4) < 0) {
		rs->xs_result = NS_RES_HOTDROP;
		return 1;
	}
	__u32 clen = ((__u32)rs->sc_hdr[2] << 8) | rs->sc_hdr[3];
	if (clen == 0) {
		rs->xs_result = NS_RES_HOTDROP;
		return 1;
	}
	off += (clen + 3) & ~3u;
	rs->sc_off = off;
	__u8 type = rs->sc_hdr[0];
	__u8 bit = 1 << (type & 7);
	if (rs->xs_map[(type >> 3) & 31] & bit) {
		int pass = ns_xt_sctp_flags_pass(rs, type, rs->sc_hdr[1]);
		if (rs->xs_kind == 1 && pass) {
			rs->xs_result = 1;
			return 1;
		}
		if (rs->xs_kind == 2 && pass)
			rs->xs_left[(type >> 3) & 31] &= ~bit;
		if (rs->xs_kind == 4 && !pass) {
			rs->xs_result = 0;
			return 1;
		}
	} else if (rs->xs_kind == 4) {
		rs->xs_result = 0;
		return 1;
	}
	if (off < rs->sc_end)
		return 0;
	/* The last chunk: ALL holds when every type was seen, ONLY when none failed. */
	int left = rs->xs_beyond;
	for (__u32 k = 0; k < 32; k++)
		left |= rs->xs_left[k];
	rs->xs_result = rs->xs_kind == 2 ? !left : rs->xs_kind == 4;
	return 1;
}

/* NS_RES_XT_SCTP: match_packet() from the first chunk (after the common header
 * NS_RES_XT_HEADER checked), `!= invert`. */
static __attribute__((noinline)) int ns_res_xt_sctp(struct ns_res_state *rs, const struct ns_res_insn *in,
						    struct ns_hook *hk)
{
	if (!rs->has_th)
		return 0;
	__u32 end = ns_xt_end(rs);
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		rs->xs_map[k] = in->data[k];
		rs->xs_map[k + NS_RES_DATA] = in->data2[k];
		rs->xs_left[k] = in->data[k];
		rs->xs_left[k + NS_RES_DATA] = in->data2[k];
	}
	rs->xs_kind = in->arg;
	rs->xs_beyond = (in->flags >> 1) & 1;
	rs->xs_nflags = 0;
	if (in->count) {
		__u32 idx = in->first;
		struct ns_res_elem *el = bpf_map_lookup_elem(&residual_elems, &idx);
		if (!el || in->count > 4)
			return -1;
		for (__u32 k = 0; k < 12; k++)
			rs->xs_flags[k] = el->from[k];
		rs->xs_nflags = in->count;
	}
	rs->xs_result = -1;
	rs->sc_off = rs->th + 12;
	rs->sc_end = end;
	/* Chunks take at least 4 bytes: one step each, and one to end on. */
	__u32 steps = end > rs->sc_off ? (end - rs->sc_off) / 4 + 2 : 1;
	bpf_loop(steps, ns_xt_sctp_step, hk, 0);
	if (rs->xs_result == NS_RES_HOTDROP)
		return NS_RES_HOTDROP;
	if (rs->xs_result < 0)
		return -1;
	return rs->xs_result != (in->flags & 1);
}

/* dccp_packet_hdr_len() after the generic header, by packet type. */
NS_INLINE __u32 ns_xt_dccp_type_len(__u8 type)
{
	if (type == 2) /* DATA */
		return 0;
	if (type == 3 || type == 4 || type == 5 || type == 6 || type == 8 || type == 9)
		return 8; /* acknowledgement number */
	if (type == 0) /* REQUEST: service code */
		return 4;
	return 12; /* RESPONSE, RESET and the rest */
}

/* One option of dccp_find_option() (bpf_loop callback). */
static long ns_xt_dccp_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 off = rs->xd_off;
	if (off >= rs->xd_end)
		return 1;
	/* The kind, and the length when it is inside the options. */
	__u32 n = off + 1 < rs->xd_end ? 2 : 1;
	if (ns_hook_load(hk, off, rs->xd_op, n) < 0)
		return 1;
	if (rs->xd_op[0] == rs->xd_option) {
		rs->xd_found = 1;
		return 1;
	}
	if (rs->xd_op[0] < 2) {
		rs->xd_off = off + 1;
		return 0;
	}
	if (n < 2)
		return 1;
	rs->xd_off = off + (rs->xd_op[1] ? rs->xd_op[1] : 1);
	return 0;
}

/* NS_RES_XT_DCCP_OPTION: dccp_find_option() on the header (NS_RES_XT_HEADER checked
 * its 12 bytes), `!= invert`. */
static __attribute__((noinline)) int ns_res_xt_dccp_option(struct ns_res_state *rs,
							   const struct ns_res_insn *in,
							   struct ns_hook *hk)
{
	__u32 th = rs->th;
	if (!rs->has_th || th + 12 > rs->hdr_len)
		return 0;
	__u32 doff = (__u32)rs->hdr[(th + 4) & (NS_RES_HDR_MAX - 1)] * 4;
	__u8 b8 = rs->hdr[(th + 8) & (NS_RES_HDR_MAX - 1)];
	__u32 hdrlen = 12 + (b8 & 1 ? 4 : 0) + ns_xt_dccp_type_len((b8 >> 1) & 0xf);
	if (doff < hdrlen)
		return NS_RES_HOTDROP;
	rs->xd_found = 0;
	if (doff > hdrlen) {
		if (th + doff > ns_xt_end(rs))
			return NS_RES_HOTDROP;
		rs->xd_off = th + hdrlen;
		rs->xd_end = th + doff;
		rs->xd_option = in->arg;
		/* Options take at least one byte. */
		bpf_loop(doff - hdrlen + 1, ns_xt_dccp_step, hk, 0);
	}
	return rs->xd_found != (in->flags & 1);
}

/* ipv6_find_hdr()'s results besides a header's offset. */
#define NS_XT6_ENOENT (-1)
#define NS_XT6_EBADMSG (-2)

/* One header of ipv6_find_hdr() with a target (bpf_loop callback). */
static long ns_xt_ipv6_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 start = rs->x6_start, end = ns_xt_end(rs);
	__u8 next = rs->x6_next;
	int found = next == rs->x6_target;
	if (next != 0 && next != 43 && next != 44 && next != 51 && next != 60) {
		rs->x6_found = found ? (__s32)start : NS_XT6_ENOENT;
		return 1;
	}
	/* Routing headers must have 4 bytes, fragment headers their offset. */
	__u32 need = next == 43 || next == 44 ? 4 : 2;
	if (start + need > end || ns_hook_load(hk, start, rs->x6_hp, need) < 0) {
		rs->x6_found = NS_XT6_EBADMSG;
		return 1;
	}
	__u32 hdrlen;
	if (next == 44) {
		/* A later fragment ends the walk, unless it is the header sought. */
		if ((((__u32)rs->x6_hp[2] << 8) | rs->x6_hp[3]) & ~7u) {
			rs->x6_found = found ? (__s32)start : NS_XT6_ENOENT;
			return 1;
		}
		hdrlen = 8;
	} else if (next == 51) {
		hdrlen = ((__u32)rs->x6_hp[1] + 2) * 4;
	} else {
		hdrlen = ((__u32)rs->x6_hp[1] + 1) * 8;
	}
	if (found) {
		rs->x6_found = start;
		return 1;
	}
	rs->x6_next = rs->x6_hp[0];
	rs->x6_start = start + hdrlen;
	return 0;
}

/* ipv6_find_hdr() for the header of type `target` (the datagram's first 7 bytes
 * checked): its frame offset in rs->x6_found, or NS_XT6_ENOENT / NS_XT6_EBADMSG. */
NS_INLINE void ns_xt_ipv6_find(struct ns_res_state *rs, struct ns_hook *hk, __u8 target)
{
	__u32 nh = rs->nh, end = ns_xt_end(rs);
	rs->x6_next = rs->hdr[(nh + 6) & (NS_RES_HDR_MAX - 1)];
	rs->x6_start = nh + 40;
	rs->x6_target = target;
	rs->x6_found = NS_XT6_ENOENT;
	/* Extension headers take at least 8 bytes: one step each, and one to end on. */
	__u32 steps = end > nh + 40 ? (end - nh - 40) / 8 + 2 : 2;
	bpf_loop(steps, ns_xt_ipv6_step, hk, 0);
}

/* NS_RES_XT_IPV6_HEADER: the header's first `len` bytes into dreg; not there: break;
 * an extension header cut short, fewer than `len` bytes, or (flags 1) fewer than its
 * length field says: drop. */
static __attribute__((noinline)) int ns_res_xt_ipv6_header(struct ns_res_state *rs,
							   const struct ns_res_insn *in,
							   struct ns_hook *hk)
{
	__u32 nh = rs->nh, end = ns_xt_end(rs), len = in->len, dreg = in->dreg;
	if (!rs->ipv6 || !nh)
		return 0;
	if (nh + 7 > end || nh + 7 > rs->hdr_len)
		return NS_RES_HOTDROP;
	ns_xt_ipv6_find(rs, hk, in->arg);
	int malformed = in->flags & 2 ? 0 : NS_RES_HOTDROP;
	if (rs->x6_found == NS_XT6_ENOENT)
		return 0;
	if (rs->x6_found < 0)
		return malformed;
	__u32 at = rs->x6_found, off = in->offset;
	if (len == 0 || len > NS_RES_DATA || dreg + len > NS_RES_REGS || off > 255)
		return -1;
	if (at + off + len > end)
		return malformed;
	/* The whole header, as its length field has it (ipv6_optlen). */
	if (in->flags & 1) {
		if (at + 2 > end || ns_hook_load(hk, at, rs->x6_hp, 2) < 0)
			return malformed;
		if (at + ((__u32)rs->x6_hp[1] + 1) * 8 > end)
			return malformed;
	}
	if (ns_hook_load(hk, at + off, rs->tmp, len) < 0)
		return malformed;
	ns_res_clear(rs->regs, dreg, len);
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		rs->regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->tmp[k];
	}
	return 1;
}

/* One option of hbh_mt6()'s strict walk (bpf_loop callback): rs->x6o_result 0 and
 * the walk ends when it fails. */
static long ns_xt_ipv6_option_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 ptr = rs->x6o_ptr, left = rs->x6o_left;
	__u8 want_type = rs->x6o_opts[(2 * i) & 31];
	__u8 want_len = rs->x6o_opts[(2 * i + 1) & 31];
	rs->x6o_result = 0;
	if (left < 1 || ns_hook_load(hk, ptr, rs->x6_hp, 1) < 0)
		return 1;
	if (rs->x6_hp[0] != want_type)
		return 1;
	__u32 optlen = 1;
	if (want_type) {
		if (left < 2 || ns_hook_load(hk, ptr + 1, rs->x6_hp + 1, 1) < 0)
			return 1;
		if (want_len != 0xff && want_len != rs->x6_hp[1])
			return 1;
		optlen = (__u32)rs->x6_hp[1] + 2;
	}
	/* Only the rule's last option may run past the header. */
	if (left < optlen && i + 1 < rs->x6o_n)
		return 1;
	rs->x6o_ptr = ptr + optlen;
	rs->x6o_left = left > optlen ? left - optlen : 0;
	rs->x6o_result = 1;
	return 0;
}

/* NS_RES_XT_IPV6_OPTIONS: hbh_mt6()'s strict walk (ip6t_hbh's --hbh-opts): from
 * byte 2 of the header (found, and whole in the packet, or the rule breaks) the
 * options are the `len` (type, length) pairs of data then data2, in order; length
 * 0xff takes any, Pad1 (type 0) has none. Running out of the header before the rule's
 * options end fails, and so does an option but the last running past it. Reference:
 * ipv6_options_match() in src/residual/xt.rs. */
static __attribute__((noinline)) int ns_res_xt_ipv6_options(struct ns_res_state *rs,
							    const struct ns_res_insn *in,
							    struct ns_hook *hk)
{
	__u32 nh = rs->nh, end = ns_xt_end(rs), n = in->len;
	if (n > 16)
		return -1;
	if (!rs->ipv6 || !nh || nh + 7 > end || nh + 7 > rs->hdr_len)
		return 0;
	ns_xt_ipv6_find(rs, hk, in->arg);
	if (rs->x6_found < 0)
		return 0;
	__u32 at = rs->x6_found;
	if (at + 2 > end || ns_hook_load(hk, at, rs->x6_hp, 2) < 0)
		return 0;
	__u32 hdrlen = ((__u32)rs->x6_hp[1] + 1) * 8;
	if (at + hdrlen > end)
		return 0;
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		rs->x6o_opts[k] = in->data[k];
		rs->x6o_opts[k + NS_RES_DATA] = in->data2[k];
	}
	rs->x6o_ptr = at + 2;
	rs->x6o_left = hdrlen - 2;
	rs->x6o_n = n;
	rs->x6o_result = 1;
	if (n)
		bpf_loop(n, ns_xt_ipv6_option_step, hk, 0);
	return rs->x6o_result;
}

/* NS_RES_XT_SRH_SEGMENT: srh1_mt6()'s previous (index segments left + 1) or next
 * (flags 1: segments left - 1) segment address of the routing header into dreg;
 * none (segments left is the last entry, or 0), no header, or the address past the
 * packet: break. */
static __attribute__((noinline)) int ns_res_xt_srh_segment(struct ns_res_state *rs,
							   const struct ns_res_insn *in,
							   struct ns_hook *hk)
{
	__u32 nh = rs->nh, end = ns_xt_end(rs), dreg = in->dreg;
	if (dreg + 16 > NS_RES_REGS)
		return -1;
	if (!rs->ipv6 || !nh || nh + 7 > end || nh + 7 > rs->hdr_len)
		return 0;
	ns_xt_ipv6_find(rs, hk, 43);
	if (rs->x6_found < 0)
		return 0;
	__u32 at = rs->x6_found;
	if (at + 5 > end || ns_hook_load(hk, at + 3, rs->x6_hp, 2) < 0)
		return 0;
	__u32 left = rs->x6_hp[0], last = rs->x6_hp[1], index;
	if (in->flags & 1) {
		if (left == 0)
			return 0;
		index = left - 1;
	} else {
		if (left == last)
			return 0;
		index = left + 1;
	}
	__u32 off = at + 8 + 16 * index;
	if (off + 16 > end || ns_hook_load(hk, off, rs->tmp, 16) < 0)
		return 0;
	for (__u32 k = 0; k < 16; k++)
		rs->regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->tmp[k];
	return 1;
}

/* NS_RES_HALVES_EQ: two fields loaded side by side compared with each other (ebt_arp's
 * --arp-gratuitous): the `len` bytes at sreg equal the `len` after them, != flags. */
NS_INLINE int ns_res_halves_eq(struct ns_res_state *rs, const struct ns_res_insn *in)
{
	__u32 sreg = in->sreg, len = in->len, diff = 0;
	if (len == 0 || len > NS_RES_DATA || sreg + 2 * len > NS_RES_REGS)
		return -1;
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		diff |= rs->regs[(sreg + k) & (NS_RES_REGS - 1)] ^
			rs->regs[(sreg + len + k) & (NS_RES_REGS - 1)];
	}
	return (diff == 0) != (in->flags & 1);
}

#endif
