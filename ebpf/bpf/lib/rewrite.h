/* SPDX-License-Identifier: GPL-2.0-only */
/* Header writes (`ip ttl set`, `tcp dport set`, ...) as nft_payload_set_eval() does
 * them. A write runs in two steps: in the rule loop (a bpf_loop callback, without the
 * packet) it checks what the kernel checks, changes the header copy that residual
 * programs read (lib/residual.h) and the parsed fields, so that later rules see the new
 * values, and queues the write; after the chains, the hook carries the queued writes
 * out on the skb in order, with the kernel's checksum fix-ups. src/rewrite.rs is the
 * reference. */
#ifndef NFTSHIM_REWRITE_H
#define NFTSHIM_REWRITE_H

#include "common.h"
#include "parse.h"
#include "residual.h"

#define NS_MAX_WRITES 8

/* ns_write_spec.csum */
#define NS_WRITE_CSUM_INET (1u << 0)   /* NFT_PAYLOAD_CSUM_INET at base + csum_offset */
#define NS_WRITE_CSUM_PSEUDO (1u << 1) /* NFT_PAYLOAD_L4CSUM_PSEUDOHDR */
#define NS_WRITE_CSUM_KEEP_ZERO (1u << 2) /* a zero checksum stays 0 (xtables targets) */
/* Byte `sat_at` of the write then gets a saturating add of `sat_by` (subtraction with
 * NS_WRITE_SAT_DOWN): xt_TTL's and xt_HL's --ttl-inc/--hl-dec. */
#define NS_WRITE_SAT_ADD (1u << 3)
#define NS_WRITE_SAT_DOWN (1u << 4)

/* A write, as the builder stores it in residual_insns (an entry of op NS_RES_WRITE,
 * same layout as struct ns_res_insn and Rust `maps::checks::BpfResidualInsn`). */
#define NS_RES_WRITE 14
struct ns_write_spec {
	__u8 op;
	__u8 base; /* 1 network, 2 transport */
	__u8 csum; /* NS_WRITE_CSUM_* */
	__u8 sat_at;
	__u8 len;  /* 1..16 */
	__u8 csum_offset;
	__u16 offset;
	__u32 sat_by;
	__u32 count;
	__u8 mask[NS_RES_DATA]; /* new = (old & mask) ^ xor */
	__u8 xor[NS_RES_DATA];
};

/* What the hook does for one queued write, in this order (the kernel's). */
#define NS_W_L3 (1u << 0)     /* checksum at l3_csum, whatever skb->ip_summed */
#define NS_W_L4 (1u << 1)     /* transport checksum at l4_csum, unless CHECKSUM_PARTIAL */
#define NS_W_PSEUDO (1u << 2) /* transport checksum at l4_csum, pseudo-header change */
#define NS_W_DATA (1u << 3)   /* the bytes at off */
#define NS_W_KEEP_ZERO (1u << 4) /* csum_replace2(): a zero result is not mangled */

struct ns_pending_write {
	__u16 off; /* frame offsets */
	__u16 l3_csum;
	__u16 l4_csum;
	__u8 len;
	__u8 flags; /* NS_W_* */
	__u16 from; /* sums (sum16) of the old and the new bytes */
	__u16 to;
	__u8 bytes[NS_RES_DATA];
};

struct ns_writes {
	__u32 n;
	struct ns_pending_write w[NS_MAX_WRITES];
};

NS_INLINE __u32 ns_fold16(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

/* nft_csum_replace(): the checksum old after bytes summing to from became bytes
 * summing to to; a zero result is written as 0xffff (CSUM_MANGLED_0), unless
 * keep_zero (csum_replace2() of xtables targets, which leaves it 0). */
NS_INLINE __u16 ns_csum_replace(__u16 old, __u16 from, __u16 to, __u32 keep_zero)
{
	__u16 r = ~ns_fold16((__u32)(__u16)~old + (__u16)~from + to);
	return r || keep_zero ? r : 0xffff;
}

NS_INLINE __u16 ns_hdr16(const struct ns_res_state *rs, __u32 at)
{
	return ((__u16)rs->hdr[at & (NS_RES_HDR_MAX - 1)] << 8) |
	       rs->hdr[(at + 1) & (NS_RES_HDR_MAX - 1)];
}

NS_INLINE void ns_hdr_put16(struct ns_res_state *rs, __u32 at, __u16 v)
{
	rs->hdr[at & (NS_RES_HDR_MAX - 1)] = v >> 8;
	rs->hdr[(at + 1) & (NS_RES_HDR_MAX - 1)] = v;
}

/* The write's first step (see the top): 1 done, 0 the rule breaks, -1 error. The
 * checksum fix-ups of the copy are those of a packet that is not CHECKSUM_PARTIAL.
 * A global function: the verifier checks it once, not at every statement slot of
 * every rule path. */
__noinline int ns_payload_write(struct pkt_ctx *p, struct ns_writes *ws, __u32 spec_id)
{
	if (!p || !ws)
		return -1;
	struct ns_write_spec *s = bpf_map_lookup_elem(&residual_insns, &spec_id);
	struct ns_res_state *rs = ns_res_state();
	if (!s || !rs || s->op != NS_RES_WRITE || !rs->hdr_len)
		return -1;
	__u32 n = ws->n;
	if (n >= NS_MAX_WRITES)
		return -1;
	struct ns_pending_write *w = &ws->w[n & (NS_MAX_WRITES - 1)];
	int transport = s->base == 2;
	__u32 nh = p->l3_off, th = p->l4_off;
	if (p->l3 == NS_L3_NONE)
		return 0;
	if (transport && (!(p->flags & PKT_F_L4PROTO) || (p->flags & PKT_F_LATER_FRAG) || !th))
		return 0;
	__u32 base = transport ? th : nh;
	__u32 end = nh + p->len;
	if (end > rs->hdr_len)
		end = rs->hdr_len;
	__u32 len = s->len;
	__u32 off = base + s->offset;
	if (len == 0 || len > NS_RES_DATA || off + len > end)
		return 0;
	/* The new bytes, and the sums of the old and the new ones. */
	__u32 from = 0, to = 0, changed = 0;
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		__u8 old = rs->hdr[(off + k) & (NS_RES_HDR_MAX - 1)];
		__u8 new = (old & s->mask[k]) ^ s->xor[k];
		if ((s->csum & NS_WRITE_SAT_ADD) && k == s->sat_at) {
			__u32 by = s->sat_by & 0xff;
			if (s->csum & NS_WRITE_SAT_DOWN)
				new = new > by ? new - by : 0;
			else
				new = new + by > 0xff ? 0xff : new + by;
		}
		w->bytes[k] = new;
		changed |= old != new;
		__u32 shift = (k & 1) ? 0 : 8;
		from += (__u32)old << shift;
		to += (__u32)new << shift;
	}
	w->from = ns_fold16(from);
	w->to = ns_fold16(to);
	w->off = off;
	w->len = len;
	w->flags = NS_W_DATA | ((s->csum & NS_WRITE_CSUM_KEEP_ZERO) ? NS_W_KEEP_ZERO : 0);
	/* xtables targets write nothing when the bytes stay (a checksum of 0xffff
	 * would become 0 otherwise). */
	if ((s->csum & NS_WRITE_CSUM_INET) && !(w->flags & NS_W_KEEP_ZERO && !changed)) {
		__u32 at = base + s->csum_offset;
		if (at + 2 > end)
			return 0;
		if (transport) {
			w->flags |= NS_W_L4;
			w->l4_csum = at;
		} else {
			w->flags |= NS_W_L3;
			w->l3_csum = at;
		}
	}
	int broken = 0;
	if ((s->csum & NS_WRITE_CSUM_PSEUDO) && (p->flags & PKT_F_L4PROTO) &&
	    !(p->flags & PKT_F_LATER_FRAG) && th) {
		__u32 o = 0;
		if (p->l4proto == 6)
			o = 16;
		else if (p->l4proto == 136)
			o = 6;
		else if (p->l4proto == 58 && p->l3 == NS_L3_IPV6)
			o = 2;
		else if (p->l4proto == 17 && th + 8 <= end && ns_hdr16(rs, th + 6))
			o = 6; /* a UDP checksum of 0 means none */
		if (o && th + o + 2 > end) {
			/* The checksum fixed up so far stays; the bytes are not written. */
			w->flags &= ~NS_W_DATA;
			broken = 1;
		} else if (o) {
			w->flags |= NS_W_PSEUDO;
			w->l4_csum = th + o;
		}
	}
	if (w->flags & NS_W_L3)
		ns_hdr_put16(rs, w->l3_csum, ns_csum_replace(ns_hdr16(rs, w->l3_csum), w->from, w->to,
							     w->flags & NS_W_KEEP_ZERO));
	if (w->flags & (NS_W_L4 | NS_W_PSEUDO))
		ns_hdr_put16(rs, w->l4_csum, ns_csum_replace(ns_hdr16(rs, w->l4_csum), w->from, w->to,
							     w->flags & NS_W_KEEP_ZERO));
	ws->n = n + 1;
	if (broken)
		return 0;
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		rs->hdr[(off + k) & (NS_RES_HDR_MAX - 1)] = w->bytes[k];
	}
	/* The parsed fields the write may have changed (the compiler refuses writes to
	 * what decides how the packet parses). */
	if (!transport && p->l3 == NS_L3_IPV4) {
		__builtin_memcpy(&p->saddr[0], &rs->hdr[(nh + 12) & (NS_RES_HDR_MAX - 1)], 4);
		__builtin_memcpy(&p->daddr[0], &rs->hdr[(nh + 16) & (NS_RES_HDR_MAX - 1)], 4);
	} else if (!transport && p->l3 == NS_L3_IPV6 && nh + 40 <= end) {
		for (__u32 k = 0; k < 16; k++) {
			((__u8 *)p->saddr)[k] = rs->hdr[(nh + 8 + k) & (NS_RES_HDR_MAX - 1)];
			((__u8 *)p->daddr)[k] = rs->hdr[(nh + 24 + k) & (NS_RES_HDR_MAX - 1)];
		}
	} else if (transport && (p->flags & PKT_F_PORTS)) {
		p->sport = ns_hdr16(rs, th);
		p->dport = ns_hdr16(rs, th + 2);
	}
	return 1;
}

/* The checksum at `at` of an skb for one queued write (NS_W_L3, NS_W_L4 or
 * NS_W_PSEUDO, with NS_W_KEEP_ZERO if the write has it). Whether the skb is CHECKSUM_PARTIAL, which the kernel's fix-ups depend
 * on, is not readable: a transport checksum replace by a difference of 1 changes the
 * field unless it is; the field is then written with the kernel's value. 0, or -1 on
 * an skb error. */
__noinline int ns_fix_csum(struct __sk_buff *skb, __u32 at, __u32 from, __u32 to, __u32 kind)
{
	__u16 old, probe, v;
	__u32 keep_zero = kind & NS_W_KEEP_ZERO;
	kind &= ~NS_W_KEEP_ZERO;
	if (bpf_skb_load_bytes(skb, at, &old, 2) < 0)
		return -1;
	__u16 sum = bpf_ntohs(old);
	if (kind != NS_W_L3) {
		if (bpf_l4_csum_replace(skb, at, 0, 1, 0) < 0 ||
		    bpf_skb_load_bytes(skb, at, &probe, 2) < 0)
			return -1;
		if (probe == old) {
			/* CHECKSUM_PARTIAL: the field holds the pseudo-header's sum; only a
			 * pseudo-header change touches it (not complemented, not mangled). */
			if (kind != NS_W_PSEUDO)
				return 0;
			v = bpf_htons(ns_fold16((__u32)sum + (__u16)~from + to));
			return bpf_skb_store_bytes(skb, at, &v, 2, 0) < 0 ? -1 : 0;
		}
		/* CHECKSUM_COMPLETE: skb->csum follows a pseudo-header change. */
		if (kind == NS_W_PSEUDO &&
		    bpf_l4_csum_replace(skb, at, 0, (__u32)to + (__u16)~from, BPF_F_PSEUDO_HDR) < 0)
			return -1;
	}
	v = bpf_htons(ns_csum_replace(sum, from, to, keep_zero));
	return bpf_skb_store_bytes(skb, at, &v, 2, 0) < 0 ? -1 : 0;
}

/* The queued writes, on the skb: 0, or -1 when the skb refused one. */
NS_INLINE int ns_apply_writes(struct __sk_buff *skb, struct ns_writes *ws)
{
	for (__u32 i = 0; i < NS_MAX_WRITES; i++) {
		if (i >= ws->n)
			break;
		struct ns_pending_write *w = &ws->w[i & (NS_MAX_WRITES - 1)];
		__u32 keep_zero = w->flags & NS_W_KEEP_ZERO;
		if ((w->flags & NS_W_L3) &&
		    ns_fix_csum(skb, w->l3_csum, w->from, w->to, NS_W_L3 | keep_zero) < 0)
			return -1;
		if ((w->flags & NS_W_L4) &&
		    ns_fix_csum(skb, w->l4_csum, w->from, w->to, NS_W_L4 | keep_zero) < 0)
			return -1;
		if ((w->flags & NS_W_PSEUDO) &&
		    ns_fix_csum(skb, w->l4_csum, w->from, w->to, NS_W_PSEUDO | keep_zero) < 0)
			return -1;
		__u32 len = w->len;
		if ((w->flags & NS_W_DATA) && len >= 1 && len <= NS_RES_DATA &&
		    bpf_skb_store_bytes(skb, w->off, w->bytes, len, 0) < 0)
			return -1;
	}
	return 0;
}

#endif
