/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_u32's tests (u32_match_it(), net/netfilter/xt_u32.c), with the reference
 * XtU32::match_it() in src/residual/u32.rs. Included by residual.h after xt.h. */
#ifndef NFTSHIM_XT_U32_H
#define NFTSHIM_XT_U32_H

/* Element kinds (byte 0 of an element; bytes 4-7 the number or minimum, 8-11 the
 * maximum, host order): each test is a start, its steps, then its ranges. */
#define NS_U32_START 1
#define NS_U32_AND 2
#define NS_U32_LEFTSH 3
#define NS_U32_RIGHTSH 4
#define NS_U32_AT 5
#define NS_U32_RANGE 6
/* XT_U32_MAXSIZE + 1 tests of a start, 10 steps and 11 ranges. */
#define NS_U32_MAX_ELEMS 242

/* One element (bpf_loop callback): rs->u32_result stays 1 while the tests hold, 0
 * when u32_match_it() returns false, -1 on an error. */
static long ns_xt_u32_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 idx = rs->u32_first + (__u32)i;
	struct ns_res_elem *el = bpf_map_lookup_elem(&residual_elems, &idx);
	if (!el) {
		rs->u32_result = -1;
		return 1;
	}
	__u32 num = (__u32)el->from[4] | (__u32)el->from[5] << 8 | (__u32)el->from[6] << 16 |
		    (__u32)el->from[7] << 24;
	__u32 len = rs->u32_len, val = rs->u32_val, at = rs->u32_at, off;
	switch (el->from[0]) {
	case NS_U32_START:
		/* The previous test found its value in none of its ranges. */
		if (rs->u32_open && !rs->u32_in) {
			rs->u32_result = 0;
			return 1;
		}
		rs->u32_open = 1;
		rs->u32_in = 0;
		rs->u32_at = 0;
		if (len < 4 || num > len - 4) {
			rs->u32_result = 0;
			return 1;
		}
		off = num;
		break;
	case NS_U32_AND:
		rs->u32_val = val & num;
		return 0;
	case NS_U32_LEFTSH:
		/* checkentry keeps shifts below 32. */
		rs->u32_val = val << (num & 31);
		return 0;
	case NS_U32_RIGHTSH:
		rs->u32_val = val >> (num & 31);
		return 0;
	case NS_U32_AT:
		if (at + val < at) {
			rs->u32_result = 0;
			return 1;
		}
		at += val;
		rs->u32_at = at;
		if (at + 4 < at || len < at + 4 || num > len - at - 4) {
			rs->u32_result = 0;
			return 1;
		}
		off = at + num;
		break;
	case NS_U32_RANGE: {
		__u32 max = (__u32)el->from[8] | (__u32)el->from[9] << 8 |
			    (__u32)el->from[10] << 16 | (__u32)el->from[11] << 24;
		if (num <= val && val <= max)
			rs->u32_in = 1;
		return 0;
	}
	default:
		rs->u32_result = -1;
		return 1;
	}
	/* off + 4 <= len: the word is in the datagram. The header copy has what earlier
	 * header writes of the chains made of it (the skb gets them after the chains). */
	__u32 at_frame = rs->nh + off;
	if (at_frame + 4 <= rs->hdr_len) {
		rs->u32_val = (__u32)rs->hdr[at_frame & (NS_RES_HDR_MAX - 1)] << 24 |
			      (__u32)rs->hdr[(at_frame + 1) & (NS_RES_HDR_MAX - 1)] << 16 |
			      (__u32)rs->hdr[(at_frame + 2) & (NS_RES_HDR_MAX - 1)] << 8 |
			      (__u32)rs->hdr[(at_frame + 3) & (NS_RES_HDR_MAX - 1)];
		return 0;
	}
	if (ns_hook_load(hk, at_frame, rs->tmp, 4) < 0) {
		rs->u32_result = -1;
		return 1;
	}
	rs->u32_val = (__u32)rs->tmp[0] << 24 | (__u32)rs->tmp[1] << 16 | (__u32)rs->tmp[2] << 8 |
		      (__u32)rs->tmp[3];
	return 0;
}

/* NS_RES_XT_U32: u32_mt(), the tests at elements [first, first + count), flags bit 0
 * the inversion. 1 holds, 0 breaks, -1 error. */
static __attribute__((noinline)) int ns_res_xt_u32(struct ns_res_state *rs,
						   const struct ns_res_insn *in, struct ns_hook *hk)
{
	if (!rs || !in || in->count > NS_U32_MAX_ELEMS)
		return -1;
	/* skb->len from the network header, within the frame. */
	__u32 len = rs->len, end = ns_xt_end(rs);
	if (rs->nh > end)
		return -1;
	if (rs->nh + len > end)
		len = end - rs->nh;
	rs->u32_first = in->first;
	rs->u32_len = len;
	rs->u32_val = 0;
	rs->u32_at = 0;
	rs->u32_open = 0;
	rs->u32_in = 0;
	rs->u32_result = 1;
	bpf_loop(in->count, ns_xt_u32_step, hk, 0);
	int r = rs->u32_result;
	if (r < 0)
		return -1;
	if (r > 0 && rs->u32_open && !rs->u32_in)
		r = 0;
	return r != (in->flags & 1);
}

#endif
