/* SPDX-License-Identifier: GPL-2.0-only */
/* ip6t_ipv6header's walk of the extension header chain (ipv6header_mt6(),
 * net/ipv6/netfilter/ip6t_ipv6header.c), with the reference ipv6_header_types() in
 * src/residual/xt.rs. Included by residual.h after xt.h. */
#ifndef NFTSHIM_XT_IP6HDR_H
#define NFTSHIM_XT_IP6HDR_H

/* ip6t_ipv6header.h's MASK_* bits. */
#define NS_X6H_HOPOPTS 0x80
#define NS_X6H_DSTOPTS 0x40
#define NS_X6H_ROUTING 0x20
#define NS_X6H_FRAGMENT 0x10
#define NS_X6H_AH 0x08
#define NS_X6H_ESP 0x04
#define NS_X6H_NONE 0x02
#define NS_X6H_PROTO 0x01

/* One header of ipv6header_mt6()'s walk (bpf_loop callback): rs->x6h_result stays -1
 * while walking, 1 when the walk ended (rs->x6_next the type it ended on), 0 when
 * the match fails (fewer than 2 bytes for the next header). */
static long ns_xt_ip6hdr_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 ptr = rs->x6_start, end = ns_xt_end(rs);
	__u8 next = rs->x6_next;
	/* ip6t_ext_hdr(): anything else ends the walk. */
	if (next != 0 && next != 43 && next != 44 && next != 50 && next != 51 && next != 59 &&
	    next != 60) {
		rs->x6h_result = 1;
		return 1;
	}
	if (next == 59) {
		rs->x6h_types |= NS_X6H_NONE;
		rs->x6h_result = 1;
		return 1;
	}
	/* skb->len - ptr, ptr never past skb->len here: fewer than 2 bytes fails. */
	if (ptr + 2 > end) {
		rs->x6h_result = 0;
		return 1;
	}
	if (next == 50) {
		rs->x6h_types |= NS_X6H_ESP;
		rs->x6h_result = 1;
		return 1;
	}
	if (ns_hook_load(hk, ptr, rs->x6_hp, 2) < 0) {
		rs->x6h_result = -2;
		return 1;
	}
	__u32 hdrlen;
	__u8 bit;
	if (next == 44) {
		hdrlen = 8;
		bit = NS_X6H_FRAGMENT;
	} else if (next == 51) {
		hdrlen = ((__u32)rs->x6_hp[1] + 2) << 2;
		bit = NS_X6H_AH;
	} else {
		hdrlen = ((__u32)rs->x6_hp[1] + 1) << 3;
		bit = next == 0 ? NS_X6H_HOPOPTS : next == 43 ? NS_X6H_ROUTING : NS_X6H_DSTOPTS;
	}
	rs->x6h_types |= bit;
	rs->x6_next = rs->x6_hp[0];
	rs->x6_start = ptr + hdrlen;
	/* A header past the packet ends the walk on its next header field. */
	if (ptr + hdrlen > end) {
		rs->x6h_result = 1;
		return 1;
	}
	return 0;
}

/* NS_RES_XT_IPV6_HEADER_TYPES: ipv6header_mt6()'s header type bits into the byte at
 * dreg (its register's other bytes zeroed); breaks where the kernel's match returns
 * false before comparing, and on packets that are not IPv6. */
static __attribute__((noinline)) int ns_res_xt_ip6hdr_types(struct ns_res_state *rs,
							    const struct ns_res_insn *in,
							    struct ns_hook *hk)
{
	__u32 nh = rs->nh, end = ns_xt_end(rs), dreg = in->dreg;
	if (dreg + 4 > NS_RES_REGS)
		return -1;
	if (!rs->ipv6 || !nh || nh + 7 > end || nh + 7 > rs->hdr_len)
		return 0;
	rs->x6_next = rs->hdr[(nh + 6) & (NS_RES_HDR_MAX - 1)];
	rs->x6_start = nh + 40;
	rs->x6h_types = 0;
	rs->x6h_result = -1;
	/* Headers the walk steps over take at least 8 bytes, and it stops past the
	 * packet's end: one step each, one to end on, one to spare. */
	__u32 steps = end > nh + 40 ? (end - nh - 40) / 8 + 3 : 3;
	bpf_loop(steps, ns_xt_ip6hdr_step, hk, 0);
	if (rs->x6h_result == 0)
		return 0;
	if (rs->x6h_result != 1)
		return -1;
	__u8 types = rs->x6h_types;
	if (rs->x6_next != 59 && rs->x6_next != 50)
		types |= NS_X6H_PROTO;
	ns_res_clear(rs->regs, dreg, 4);
	rs->regs[dreg & (NS_RES_REGS - 1)] = types;
	return 1;
}

#endif
