/* SPDX-License-Identifier: GPL-2.0-only */
/* The type of an IPv4 address as inet_dev_addr_type() / inet_addr_type() answer it
 * (net/ipv4/fib_frontend.c, __inet_dev_addr_type()), for xt_addrtype and nft_fib's
 * `type`. The routes of the namespace's local table are mirrored by the runtime
 * (dataplane/src/runtime/rtnl.rs reads them, src/addrtype.rs is the reference) into
 * addrtype_v4: per prefix, what fib_table_lookup() of an address under it answers.
 * Included by residual.h after rateest.h. */
#ifndef NFTSHIM_ADDRTYPE_H
#define NFTSHIM_ADDRTYPE_H

#define NS_ADDRTYPE_MAX 16384

#define NS_RTN_UNICAST 1
#define NS_RTN_BROADCAST 3
#define NS_RTN_MULTICAST 5

struct ns_addrtype_key {
	__u32 prefixlen;
	__u8 addr[4]; /* network order */
};

/* Same layout as Rust `addrtype::BpfRoute`. */
struct ns_addrtype_route {
	__u32 type; /* RTN_*: the route's type, or UNICAST for a route whose lookup fails */
	__u32 oif;  /* the device of the route's first nexthop (fib_info_nhc(fi, 0)) */
};

/* addrtype_v4: the prefixes whose lookup ends at a route of the local table (shared
 * by the namespace's programs, written by the runtime when the table changes). A
 * prefix whose routes all miss has no entry: the lookup goes on to shorter ones, as
 * fib_table_lookup() backtracks. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ns_addrtype_key);
	__type(value, struct ns_addrtype_route);
	__uint(max_entries, NS_ADDRTYPE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} addrtype_v4 SEC(".maps");

/* NS_RES_XT_ADDRTYPE flags. */
#define NS_ADDRTYPE_INVERT 1   /* the mask test is inverted */
#define NS_ADDRTYPE_DEV_IN 2   /* dev: the input device */
#define NS_ADDRTYPE_DEV_OUT 4  /* dev: the output device */
#define NS_ADDRTYPE_STORE 8    /* the type (host-order u32) goes to dreg; no test */

/* __inet_dev_addr_type() of the address in sreg (4 bytes, network order), with the
 * device `dev` (0: none). */
NS_INLINE __u32 ns_addrtype_v4(const __u8 *regs, __u32 sreg, __u32 dev)
{
	struct ns_addrtype_key key = { .prefixlen = 32 };
	for (__u32 k = 0; k < 4; k++)
		key.addr[k] = regs[(sreg + k) & (NS_RES_REGS - 1)];
	/* ipv4_is_zeronet(), ipv4_is_lbcast(), ipv4_is_multicast(). */
	if (key.addr[0] == 0 ||
	    (key.addr[0] == 0xff && key.addr[1] == 0xff && key.addr[2] == 0xff && key.addr[3] == 0xff))
		return NS_RTN_BROADCAST;
	if ((key.addr[0] & 0xf0) == 0xe0)
		return NS_RTN_MULTICAST;
	const struct ns_addrtype_route *r = bpf_map_lookup_elem(&addrtype_v4, &key);
	if (!r)
		return NS_RTN_UNICAST;
	if (dev && dev != r->oif)
		return NS_RTN_UNICAST;
	return r->type;
}

/* NS_RES_XT_ADDRTYPE: sreg the address; flags NS_ADDRTYPE_*; data the mask (host-order
 * u16, bit 1 << RTN_*), or with STORE the type into dreg. */
static __attribute__((noinline)) int ns_res_xt_addrtype(struct ns_res_state *rs,
							const struct ns_res_insn *in)
{
	__u8 flags = in->flags;
	__u32 dev = (flags & NS_ADDRTYPE_DEV_IN)    ? rs->iif
		    : (flags & NS_ADDRTYPE_DEV_OUT) ? rs->oif
						    : 0;
	__u32 type = ns_addrtype_v4(rs->regs, in->sreg, dev);
	if (flags & NS_ADDRTYPE_STORE) {
		for (__u32 k = 0; k < 4; k++)
			rs->regs[(in->dreg + k) & (NS_RES_REGS - 1)] = (__u8)(type >> (8 * k));
		return 1;
	}
	__u16 mask = (__u16)in->data[0] | ((__u16)in->data[1] << 8);
	int holds = type < 16 && (mask & (1u << type)) != 0;
	return holds ^ !!(flags & NS_ADDRTYPE_INVERT);
}

#endif
