/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_HMARK's packet tuple on IPv4 (hmark_tg_v4(), hmark_pkt_set_htuple_ipv4(),
 * hmark_set_tuple_ports(), hmark_swap_ports(), hmark_hash()): the masked addresses of
 * the packet, or of the packet an ICMP error quotes, its masked ports (or SPI) when it
 * is not a fragment, and its protocol, hashed with jhash_3words() (include/linux/
 * jhash.h's arithmetic, written out here) and scaled into the modulus with
 * reciprocal_scale(), plus the offset. Reads the residual programs' header copy.
 * src/ir.rs `Hmark::mark_ipv4` is the reference. */
#ifndef NFTSHIM_HMARK_H
#define NFTSHIM_HMARK_H

#include "common.h"
#include "parse.h"
#include "residual.h"

/* The statement's spec in residual_insns. Same number as Rust `RES_HMARK`. */
#define NS_RES_HMARK 125

NS_INLINE __u32 ns_hm_rol(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

NS_INLINE __u32 ns_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	__u32 init = initval + 0xdeadbeef + (3 << 2);
	a += init;
	b += init;
	c += init;
	c ^= b;
	c -= ns_hm_rol(b, 14);
	a ^= c;
	a -= ns_hm_rol(c, 11);
	b ^= a;
	b -= ns_hm_rol(a, 25);
	c ^= b;
	c -= ns_hm_rol(b, 16);
	a ^= c;
	a -= ns_hm_rol(c, 4);
	b ^= a;
	b -= ns_hm_rol(a, 14);
	c ^= b;
	c -= ns_hm_rol(b, 24);
	return c;
}

NS_INLINE __u8 ns_hm_byte(const struct ns_res_state *rs, __u32 at)
{
	return rs->hdr[at & (NS_RES_HDR_MAX - 1)];
}

/* Four header bytes at `at` as a big-endian word, each ANDed with mask[k]. */
NS_INLINE __u32 ns_hm_word(const struct ns_res_state *rs, __u32 at, const __u8 *mask)
{
	return (__u32)(ns_hm_byte(rs, at) & mask[0]) << 24 |
	       (__u32)(ns_hm_byte(rs, at + 1) & mask[1]) << 16 |
	       (__u32)(ns_hm_byte(rs, at + 2) & mask[2]) << 8 | (ns_hm_byte(rs, at + 3) & mask[3]);
}

/* Four bytes of the spec's data from `at`, read in host order. */
NS_INLINE __u32 ns_hm_data(const struct ns_res_insn *s, __u32 at)
{
	return (__u32)s->data[at] | (__u32)s->data[at + 1] << 8 | (__u32)s->data[at + 2] << 16 |
	       (__u32)s->data[at + 3] << 24;
}

/* The target on an IPv4 packet: (1 << 32) | mark when it marks, 0 when it leaves the
 * mark alone (not IPv4, or an ICMP error too short for the quoted header), -1 on an
 * error (a map, or a header the copy does not hold). A global function, checked
 * once; two arguments, so that nothing is spilled across the map lookups (the
 * programs' stack is nearly all taken). */
__noinline __s64 ns_hmark(struct pkt_ctx *p, __u32 spec_id)
{
	if (!p)
		return -1;
	struct ns_res_insn *s = bpf_map_lookup_elem(&residual_insns, &spec_id);
	struct ns_res_state *rs = ns_res_state();
	if (!s || !rs || s->op != NS_RES_HMARK || !rs->hdr_len)
		return -1;
	if (p->l3 != NS_L3_IPV4)
		return 0;
	/* Short-lived locals, the tuple in rs and barriers between the steps: the
	 * callers leave this function little stack. */
	__u32 l3 = p->l3_off;
	/* skb->len's end of the datagram, as a frame offset. */
	__u32 end = l3 + p->len;
	if (end > rs->hdr_len)
		end = rs->hdr_len;
	if (l3 + 20 > end || l3 > 256)
		return -1;
	__u32 nh = l3;
	__u32 ihl = (ns_hm_byte(rs, l3) & 0xf) * 4;
	/* get_inner_hdr(): an ICMP error's quoted header. */
	if (ns_hm_byte(rs, l3 + 9) == 1 && l3 + ihl + 8 <= end) {
		__u8 t = ns_hm_byte(rs, l3 + ihl);
		if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12) {
			nh = l3 + ihl + 8;
			/* The quoted header past the datagram: no mark (the header copy
			 * holds far more than these offsets). */
			if (nh + 20 > end)
				return 0;
		}
	}
	rs->hm_nh = nh;
	rs->hm_end = end;
	rs->hm_ports = 0;
	rs->hm_proto = 0;
	asm volatile("" ::: "memory");
	rs->hm_src = ns_hm_word(rs, rs->hm_nh + 12, s->data);
	asm volatile("" ::: "memory");
	rs->hm_dst = ns_hm_word(rs, rs->hm_nh + 16, s->data2);
	asm volatile("" ::: "memory");
	if (!(s->flags & 1)) {
		__u32 proto = ns_hm_byte(rs, rs->hm_nh + 9);
		rs->hm_proto = proto;
		__u32 frag = ((__u32)ns_hm_byte(rs, rs->hm_nh + 6) << 8 |
			      ns_hm_byte(rs, rs->hm_nh + 7)) & 0x3fff;
		/* proto_ports_offset(): TCP, UDP, DCCP, ESP, SCTP, UDP-Lite at 0, AH at 4. */
		__u32 protoff = 0xff;
		if (proto == 6 || proto == 17 || proto == 33 || proto == 50 || proto == 132 ||
		    proto == 136)
			protoff = 0;
		else if (proto == 51)
			protoff = 4;
		if (proto != 1 && !frag && protoff != 0xff) {
			__u32 at = rs->hm_nh + (ns_hm_byte(rs, rs->hm_nh) & 0xf) * 4 + protoff;
			if (at + 4 <= rs->hm_end) {
				asm volatile("" ::: "memory");
				__u32 raw = (__u32)ns_hm_byte(rs, at) | (__u32)ns_hm_byte(rs, at + 1) << 8 |
					    (__u32)ns_hm_byte(rs, at + 2) << 16 |
					    (__u32)ns_hm_byte(rs, at + 3) << 24;
				raw = (raw & ns_hm_data(s, 4)) | ns_hm_data(s, 8);
				__u32 sp = (raw & 0xff) << 8 | ((raw >> 8) & 0xff);
				__u32 dp = ((raw >> 16) & 0xff) << 8 | (raw >> 24);
				rs->hm_ports = dp > sp ? dp << 16 | sp : sp << 16 | dp;
			}
		}
	}
	asm volatile("" ::: "memory");
	__u32 src = rs->hm_src, dst = rs->hm_dst;
	if (dst < src) {
		rs->hm_src = dst;
		rs->hm_dst = src;
	}
	__u32 hash = ns_jhash_3words(rs->hm_src, rs->hm_dst, rs->hm_ports, s->first) ^
		     (rs->hm_proto & s->arg);
	__u32 mark = (__u32)(((__u64)hash * s->count) >> 32) + ns_hm_data(s, 12);
	return (__s64)1 << 32 | mark;
}

#endif
