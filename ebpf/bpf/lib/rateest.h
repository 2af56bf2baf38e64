/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_rateest (net/netfilter/xt_rateest.c): the namespace's rate estimators' rates,
 * which the data plane's runtime computes as net/core/gen_estimator.c's timer does
 * (src/rateest.rs) and writes here by estimator name; xt_rateest_mt()'s comparison
 * of them. The reference is `Comparison::holds` in src/rateest.rs. Included by
 * residual.h after xt.h. */
#ifndef NFTSHIM_RATEEST_H
#define NFTSHIM_RATEEST_H

#define NS_RATEEST_MAX 1024

struct ns_rateest_name {
	__u8 name[16];
};

/* gen_estimator_read()'s sample: bytes and packets per second. */
struct ns_rateest_rate {
	__u64 bps;
	__u64 pps;
};

/* rateest_rates: per estimator name, its current rates (shared by the namespace's
 * programs, written by the runtime's estimator timer). A name without an entry reads
 * 0, as a new estimator does. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ns_rateest_name);
	__type(value, struct ns_rateest_rate);
	__uint(max_entries, NS_RATEEST_MAX);
} rateest_rates SEC(".maps");

/* xt_rateest's flags (linux/netfilter/xt_rateest.h). */
#define NS_RATEEST_INVERT (1 << 0)
#define NS_RATEEST_ABS (1 << 1)
#define NS_RATEEST_DELTA (1 << 3)
#define NS_RATEEST_BPS (1 << 4)
#define NS_RATEEST_PPS (1 << 5)

/* The u32 at sreg + 4 * i (host order). */
static __always_inline __u32 ns_rateest_word(const struct ns_res_state *rs, __u32 sreg, __u32 i)
{
	__u32 w = 0;
	for (__u32 k = 0; k < 4; k++)
		w |= (__u32)rs->regs[(sreg + 4 * i + k) & (NS_RES_REGS - 1)] << (8 * k);
	return w;
}

/* One side of the comparison: the estimator's rate (bytes, else packets), or with
 * `delta` `info >= rate ? info - rate : 0`. */
static __always_inline __u64 ns_rateest_side(const struct ns_rateest_rate *r, int bytes, int delta,
					     __u32 info)
{
	__u64 rate = r ? (bytes ? r->bps : r->pps) : 0;
	if (!delta)
		return rate;
	return (__u64)info >= rate ? (__u64)info - rate : 0;
}

static __always_inline int ns_rateest_cmp(__u8 mode, __u64 a, __u64 b)
{
	switch (mode) {
	case 1: /* XT_RATEEST_MATCH_EQ */
		return a == b;
	case 2: /* XT_RATEEST_MATCH_LT */
		return a < b;
	case 3: /* XT_RATEEST_MATCH_GT */
		return a > b;
	}
	return 1;
}

/* NS_RES_XT_RATEEST: data, data2: the estimators' names; flags: the match's flags;
 * arg: its mode; sreg: bps1, pps1, bps2, pps2 (host-order u32s, 16 bytes). The names
 * are the lookup keys as they are (a map value's bytes: no stack copy). */
static __attribute__((noinline)) int ns_res_xt_rateest(struct ns_res_state *rs, const struct ns_res_insn *in)
{
	__u32 sreg = in->sreg;
	__u8 flags = in->flags;
	int delta = !!(flags & NS_RATEEST_DELTA);
	const struct ns_rateest_rate *r1 = bpf_map_lookup_elem(&rateest_rates, (void *)in->data);
	const struct ns_rateest_rate *r2 = 0;
	int ret = 1;

	if (!(flags & NS_RATEEST_ABS))
		r2 = bpf_map_lookup_elem(&rateest_rates, (void *)in->data2);
	for (int bytes = 1; bytes >= 0; bytes--) {
		if (!(flags & (bytes ? NS_RATEEST_BPS : NS_RATEEST_PPS)))
			continue;
		/* bps1, pps1, bps2, pps2 at words 0..3. */
		__u32 info1 = ns_rateest_word(rs, sreg, bytes ? 0 : 1);
		__u32 info2 = ns_rateest_word(rs, sreg, bytes ? 2 : 3);
		__u64 a = ns_rateest_side(r1, bytes, delta, info1);
		__u64 b = (flags & NS_RATEEST_ABS) ? (__u64)info2 : ns_rateest_side(r2, bytes, delta, info2);
		ret &= ns_rateest_cmp(in->arg, a, b);
	}
	return ret ^ !!(flags & NS_RATEEST_INVERT);
}

#endif
