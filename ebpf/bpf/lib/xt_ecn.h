/* SPDX-License-Identifier: GPL-2.0-only */
/* ipt_ECN's TCP operations (set_ect_tcp(), net/ipv4/netfilter/ipt_ECN.c), run by
 * ecn_tg() when the IPv4 header's protocol is TCP: the 20 bytes at ip_hdrlen() must be
 * in the datagram (a later fragment's payload included), or the packet is dropped;
 * ECE and CWR get the target's values, and when that changes them the TCP checksum
 * follows as inet_proto_csum_replace2() fixes it (untouched in CHECKSUM_PARTIAL
 * packets). It runs as a header write (lib/rewrite.h), as lib/tcpoptstrip.h does: the
 * header copy changes at once (later rules read the flags from it), the skb after
 * the chains.
 * src/rewrite.rs `ecn_tcp` is the reference. */
#ifndef NFTSHIM_XT_ECN_H
#define NFTSHIM_XT_ECN_H

#include "common.h"
#include "parse.h"
#include "residual.h"
#include "rewrite.h"

/* The statement's spec in residual_insns: flags bit 0 sets ECE, bit 1 sets CWR; arg
 * bits 0 and 1 their values. Same number as Rust `RES_XT_ECN_TCP`. */
#define NS_RES_XT_ECN_TCP 146
/* ns_xt_ecn_tcp()'s answer when the target drops the packet (NF_DROP). */
#define NS_XT_ECN_DROP 2

/* The target on the packet: 1 XT_CONTINUE, NS_XT_ECN_DROP, -1 error. A global
 * function, checked once. */
__noinline int ns_xt_ecn_tcp(struct pkt_ctx *p, struct ns_writes *ws, __u32 spec_id)
{
	if (!p || !ws)
		return -1;
	struct ns_res_insn *s = bpf_map_lookup_elem(&residual_insns, &spec_id);
	struct ns_res_state *rs = ns_res_state();
	if (!s || !rs || s->op != NS_RES_XT_ECN_TCP || !rs->hdr_len)
		return -1;
	/* ipt_ECN is IPv4's (the compiler allows it in ip tables only). */
	if (p->l3 != NS_L3_IPV4)
		return 1;
	__u32 nh = p->l3_off;
	if (nh + 20 > rs->hdr_len)
		return -1;
	if (rs->hdr[(nh + 9) & (NS_RES_HDR_MAX - 1)] != 6)
		return 1;
	__u32 th = nh + (rs->hdr[nh & (NS_RES_HDR_MAX - 1)] & 0x0f) * 4;
	/* skb_header_pointer() against skb->len's end of the datagram. */
	if (th + 20 > nh + p->len)
		return NS_XT_ECN_DROP;
	if (th + 20 > rs->hdr_len)
		return -1;
	__u8 old = rs->hdr[(th + 13) & (NS_RES_HDR_MAX - 1)], val = old;
	if (s->flags & 1)
		val = (val & ~0x40) | ((s->arg & 1) ? 0x40 : 0);
	if (s->flags & 2)
		val = (val & ~0x80) | ((s->arg & 2) ? 0x80 : 0);
	if (val == old)
		return 1;
	__u32 n = ws->n;
	if (n >= NS_MAX_WRITES)
		return -1;
	struct ns_pending_write *w = &ws->w[n & (NS_MAX_WRITES - 1)];
	__u8 b12 = rs->hdr[(th + 12) & (NS_RES_HDR_MAX - 1)];
	w->bytes[0] = b12;
	w->bytes[1] = val;
	w->from = ((__u16)b12 << 8) | old;
	w->to = ((__u16)b12 << 8) | val;
	w->off = th + 12;
	w->len = 2;
	w->l4_csum = th + 16;
	w->flags = NS_W_DATA | NS_W_L4 | NS_W_KEEP_ZERO;
	rs->hdr[(th + 13) & (NS_RES_HDR_MAX - 1)] = val;
	ns_hdr_put16(rs, th + 16, ns_csum_replace(ns_hdr16(rs, th + 16), w->from, w->to, 1));
	ws->n = n + 1;
	/* The parsed flags (the tracker's, which ran before the chains; no lookup
	 * dimension reads them) are those of this header unless it is a later fragment. */
	if ((p->flags & PKT_F_TCPFLAGS) && !(p->flags & PKT_F_LATER_FRAG))
		p->tcp_flags = val;
	return 1;
}

#endif
