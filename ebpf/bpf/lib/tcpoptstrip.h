/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_TCPOPTSTRIP (tcpoptstrip_mangle_packet()): the TCP options of the chosen kinds
 * become NOPs, their length bytes too, with the TCP checksum fixed up as the kernel's
 * inet_proto_csum_replace2() calls do (untouched in CHECKSUM_PARTIAL packets). It runs
 * as a header write (lib/rewrite.h): the header copy changes at once, the skb after the
 * chains, from queued writes of the option area cut into 16-byte pieces.
 *
 * The kernel fixes the checksum up byte by byte; one fix-up per piece gives the same
 * field: every step's sum (~old + ~from + to) is nonzero (the kernel's ~from of one byte
 * is never 0, a piece's `to` holds a NOP), so each result is the complement of a value
 * in 1..0xffff and is fixed by its residue modulo 0xffff, which is the same for any
 * grouping of the steps. src/rewrite.rs `strip_tcp_options` is the reference. */
#ifndef NFTSHIM_TCPOPTSTRIP_H
#define NFTSHIM_TCPOPTSTRIP_H

#include "common.h"
#include "parse.h"
#include "residual.h"
#include "rewrite.h"

/* The statement's spec in residual_insns: data and data2 the map of kinds stripped
 * (kind k at bit k % 8 of byte k / 8). Same number as Rust `RES_TCPOPTSTRIP`. */
#define NS_RES_TCPOPTSTRIP 90
/* ns_tcpoptstrip()'s answer when the target drops the packet (NF_DROP). */
#define NS_TCPOPTSTRIP_DROP 2
/* TCP options take at most 40 bytes, in at most three 16-byte pieces. */
#define NS_TOS_OPT_MAX 40
#define NS_TOS_PIECES 3

NS_INLINE int ns_tos_strips(const struct ns_res_insn *s, __u8 kind)
{
	__u8 byte = kind < 128 ? s->data[(kind >> 3) & (NS_RES_DATA - 1)]
			       : s->data2[((kind - 128) >> 3) & (NS_RES_DATA - 1)];
	return (byte >> (kind & 7)) & 1;
}

/* The state of one walk over the options (bpf_loop's context). */
struct ns_tos_walk {
	__u32 spec_id;
	__u16 th;    /* frame offset of the TCP header */
	__u8 hdrlen; /* its length (doff * 4) */
	__u8 next;   /* where the next option starts (from the TCP header) */
	__u8 left;   /* bytes of a stripped option still to become NOPs */
	__u8 done;   /* the kernel's walk ended: the old bytes are still summed */
	__u8 pieces; /* bit i: piece i has a stripped byte */
	__u8 err;
	/* The old bytes' sums, per piece (a byte at an even offset of the TCP header is
	 * the high byte of its checksum word; pieces start at even offsets). */
	__u32 from0, from1, from2;
};

/* Option byte 20 + k of the TCP header, as tcpoptstrip_mangle_packet() walks them:
 * an option is one byte when its kind is EOL or NOP or its length byte is 0; the walk
 * ends at the header's last byte or at an option that runs past the header. */
static long ns_tos_step(__u32 k, void *ctx)
{
	struct ns_tos_walk *wk = ctx;
	struct ns_res_state *rs = ns_res_state();
	__u32 spec_id = wk->spec_id;
	struct ns_res_insn *s = bpf_map_lookup_elem(&residual_insns, &spec_id);
	if (!rs || !s) {
		wk->err = 1;
		return 1;
	}
	__u32 pos = 20 + k, th = wk->th, hdrlen = wk->hdrlen;
	if (pos >= hdrlen)
		return 1;
	__u32 at = (th + pos) & (NS_RES_HDR_MAX - 1);
	__u32 old = (__u32)rs->hdr[at] << ((pos & 1) ? 0 : 8);
	if (k < 16)
		wk->from0 += old;
	else if (k < 32)
		wk->from1 += old;
	else
		wk->from2 += old;
	if (wk->done)
		return 0;
	if (pos == wk->next) {
		if (pos + 1 >= hdrlen) {
			wk->done = 1;
			return 0;
		}
		__u8 kind = rs->hdr[at];
		__u8 l = rs->hdr[(th + pos + 1) & (NS_RES_HDR_MAX - 1)];
		__u32 optl = kind <= 1 || l == 0 ? 1 : l;
		if (pos + optl > hdrlen) {
			wk->done = 1;
			return 0;
		}
		wk->left = ns_tos_strips(s, kind) ? optl : 0; /* optl <= 40 */
		wk->next = pos + optl;
	}
	if (wk->left) {
		rs->hdr[at] = 1; /* TCPOPT_NOP */
		wk->pieces |= 1u << ((k >> 4) & 3);
		wk->left--;
	}
	return 0;
}

/* The target on the packet: 1 XT_CONTINUE, NS_TCPOPTSTRIP_DROP, -1 error (the header
 * copy or the write queue too short). A global function, checked once. */
__noinline int ns_tcpoptstrip(struct pkt_ctx *p, struct ns_writes *ws, __u32 spec_id)
{
	if (!p || !ws)
		return -1;
	struct ns_res_insn *s = bpf_map_lookup_elem(&residual_insns, &spec_id);
	struct ns_res_state *rs = ns_res_state();
	if (!s || !rs || s->op != NS_RES_TCPOPTSTRIP || !rs->hdr_len)
		return -1;
	/* par->fragoff: later fragments have no TCP header. */
	if (p->l3 == NS_L3_NONE || !(p->flags & PKT_F_L4PROTO) || p->l4proto != 6 ||
	    (p->flags & PKT_F_LATER_FRAG) || !p->l4_off)
		return 1;
	__u32 th = p->l4_off;
	/* skb->len's end of the datagram, as a frame offset. */
	__u32 end = p->l3_off + p->len;
	if (th + 20 > end)
		return NS_TCPOPTSTRIP_DROP;
	if (th + 20 > rs->hdr_len)
		return -1;
	__u32 hdrlen = (rs->hdr[(th + 12) & (NS_RES_HDR_MAX - 1)] >> 4) * 4;
	/* A data offset under 5, or a header the packet does not hold (skb_ensure_writable). */
	if (hdrlen < 20 || th + hdrlen > end)
		return NS_TCPOPTSTRIP_DROP;
	if (th + hdrlen > rs->hdr_len)
		return -1;
	/* The walk, one bpf_loop step per option byte (a plain loop's states, each with
	 * its own walk position, are too many for the verifier). */
	struct ns_tos_walk wk = {.spec_id = spec_id, .th = th, .hdrlen = hdrlen, .next = 20};
	bpf_loop(NS_TOS_OPT_MAX, ns_tos_step, &wk, 0);
	if (wk.err)
		return -1;
	__u32 pieces = wk.pieces;
	if (!pieces)
		return 1;
	__u32 n = ws->n;
	for (__u32 i = 0; i < NS_TOS_PIECES; i++) {
		if (!(pieces & (1u << i)))
			continue;
		if (n >= NS_MAX_WRITES)
			return -1;
		struct ns_pending_write *w = &ws->w[n & (NS_MAX_WRITES - 1)];
		__u32 start = 20 + 16 * i;
		__u32 len = hdrlen - start < NS_RES_DATA ? hdrlen - start : NS_RES_DATA;
		__u32 sum = 0;
		for (__u32 k = 0; k < NS_RES_DATA; k++) {
			if (k >= len)
				break;
			__u8 b = rs->hdr[(th + start + k) & (NS_RES_HDR_MAX - 1)];
			w->bytes[k] = b;
			sum += (__u32)b << ((k & 1) ? 0 : 8);
		}
		w->from = ns_fold16(i == 0 ? wk.from0 : i == 1 ? wk.from1 : wk.from2);
		w->to = ns_fold16(sum);
		w->off = th + start;
		w->len = len;
		w->l4_csum = th + 16;
		w->flags = NS_W_DATA | NS_W_L4 | NS_W_KEEP_ZERO;
		ns_hdr_put16(rs, th + 16, ns_csum_replace(ns_hdr16(rs, th + 16), w->from, w->to, 1));
		n++;
	}
	ws->n = n;
	return 1;
}

#endif
