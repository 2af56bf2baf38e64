/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_string with --algo kmp (NS_RES_XT_STRING): string_mt()'s skb_find_text() over
 * the datagram, from the network header (skb->data at the IP hooks). KMP reports the
 * leftmost occurrence, whatever the skb's blocks, and the match holds when it ends by
 * `to`: so an occurrence starting at `from` or later and ending by min(to, skb->len).
 * kmp_find() itself, one step per bpf_loop iteration (its prefix table computed by
 * the builder); bytes inside the header copy are read there, later ones with the
 * hook's load helper. src/residual/string.rs is the reference (a plain scan). */
#ifndef NFTSHIM_XT_STRING_H
#define NFTSHIM_XT_STRING_H

#include "common.h"
#include "residual.h"

#define NS_XTS_MAX_PATTERN 128 /* XT_STRING_MAX_PATTERN_SIZE */

/* One search's state (per CPU: the bpf_loop callback has no other room). */
struct ns_xts_state {
	/* The pattern (upper-cased with icase, as ts_kmp stores it), then ts_kmp's
	 * prefix table. */
	__u8 tbl[2 * NS_XTS_MAX_PATTERN];
	__u8 byte[8];			 /* a byte past the header copy */
	__u32 pos;			 /* next text byte (frame offset) */
	__u32 end;			 /* past the last one */
	__u32 q;			 /* pattern bytes matched */
	__u32 patlen;
	__u32 icase;
	__u32 found;
	__s32 err;
};

/* xt_string's search state (xt_string_scratch: the pattern, its prefix table and
 * the scan position of the running NS_RES_XT_STRING). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_xts_state);
	__uint(max_entries, 1);
} xt_string_scratch SEC(".maps");

/* The kernel's toupper() (lib/ctype.c: 'a'..'z' and 0xdf..0xff but 0xf7 are lower). */
NS_INLINE __u8 ns_xts_toupper(__u8 c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 0xdf && c != 0xf7))
		return c - 32;
	return c;
}

/* One step of kmp_find() (bpf_loop callback; `hk`: the hook's context): a fallback
 * through the prefix table, or the next text byte. No loop inside, so that the
 * verifier walks it once. */
static long ns_xts_step(__u64 i, void *hk)
{
	__u32 zero = 0;
	struct ns_xts_state *st = bpf_map_lookup_elem(&xt_string_scratch, &zero);
	struct ns_res_state *rs = ns_res_state();
	if (!st)
		return 1;
	if (!rs || !hk) {
		st->err = 1;
		return 1;
	}
	__u32 pos = st->pos, q = st->q;
	if (pos >= st->end)
		return 1;
	if (q >= NS_XTS_MAX_PATTERN) {
		st->err = 1;
		return 1;
	}
	__u8 c;
	if (pos < rs->hdr_len) {
		c = rs->hdr[pos & (NS_RES_HDR_MAX - 1)];
	} else {
		if (ns_hook_load(hk, pos, st->byte, 1) < 0) {
			st->err = 1;
			return 1;
		}
		c = st->byte[0];
	}
	if (st->icase)
		c = ns_xts_toupper(c);
	__u8 p = st->tbl[q & (NS_XTS_MAX_PATTERN - 1)];
	if (q > 0 && p != c) {
		st->q = st->tbl[NS_XTS_MAX_PATTERN + ((q - 1) & (NS_XTS_MAX_PATTERN - 1))];
		return 0;
	}
	if (p == c)
		q++;
	st->pos = pos + 1;
	st->q = q;
	if (q >= st->patlen) {
		st->found = 1;
		return 1;
	}
	return 0;
}

/* NS_RES_XT_STRING: 1 go on, 0 break, -1 error. */
static __attribute__((noinline)) int ns_res_xt_string(struct ns_res_state *rs, const struct ns_res_insn *in,
						      struct ns_hook *hk)
{
	__u32 zero = 0;
	struct ns_xts_state *st = bpf_map_lookup_elem(&xt_string_scratch, &zero);
	if (!st || !rs || !in)
		return -1;
	__u32 n = in->len;
	if (n < 1 || n > NS_XTS_MAX_PATTERN || in->count != 8)
		return -1;
	/* The pattern, then its prefix table: 32 bytes an element. */
	for (__u32 e = 0; e < 8; e++) {
		__u32 idx = in->first + e;
		struct ns_res_elem *el = bpf_map_lookup_elem(&residual_elems, &idx);
		if (!el)
			return -1;
		__u32 at = (e * 32) & (2 * NS_XTS_MAX_PATTERN - 1);
		__builtin_memcpy(&st->tbl[at], el->from, NS_RES_DATA);
		__builtin_memcpy(&st->tbl[at + 16], el->to, NS_RES_DATA);
	}
	__u32 from = in->offset;
	__u32 to = (__u32)in->data[0] | (__u32)in->data[1] << 8;
	__u32 end = to < rs->len ? to : rs->len;
	st->found = 0;
	st->err = 0;
	if (rs->nh && from + n <= end) {
		st->pos = rs->nh + from;
		st->end = rs->nh + end;
		st->q = 0;
		st->patlen = n;
		st->icase = (in->flags & 2) != 0;
		/* Each step reads a byte or falls back, which matched bytes pay for. */
		bpf_loop(2 * (end - from) + 1, ns_xts_step, hk, 0);
	}
	if (st->err)
		return -1;
	return st->found != (in->flags & 1);
}

#endif
