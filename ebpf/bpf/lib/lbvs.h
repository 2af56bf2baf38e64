/* SPDX-License-Identifier: GPL-2.0-only */
/* LBVS (Linear Bit Vector Search, as in bpf-iptables): each dimension maps the packet's
 * field to a bit-vector with bit i set when rule i accepts that field value; the first
 * bit set in the AND of all dimensions' vectors is the first matching rule. The rules of
 * every chain of the program share one numbering, so one lookup per dimension serves
 * all chains: a chain is a range of bits. Vectors are stored as 4096-rule blocks, each
 * distinct block once in `vectors`, with `vector_blocks` naming a vector's blocks; the
 * per-dimension maps only hold vector ids. The Rust builder (src/maps) computes all
 * of it. */
#ifndef NFTSHIM_LBVS_H
#define NFTSHIM_LBVS_H

#include "common.h"
#include "parse.h"

#define VBLOCK_WORDS 64
#define VBLOCK_SHIFT 12 /* 4096 rules per block */

#define NS_L4PROTO_ABSENT 256
#define NS_PORT_ABSENT 65536
#define NS_ICMP6_BASE 256
#define NS_ICMP_ABSENT 512
#define NS_CTSTATE_VALUES 8 /* ct state bit numbers 0..7 */

/* 4096 bits of one bit-vector, and which of its words are not zero: the scan ANDs
 * these first and reads only the words every dimension has bits in, so a block where
 * no rule can match costs one AND per dimension, not 64. */
struct ns_vblock {
	__u64 w[VBLOCK_WORDS];
	__u64 nonzero;
};

struct ns_lpm4_key {
	__u32 prefixlen;
	__u32 addr; /* network byte order */
};

struct ns_lpm6_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* Distinct blocks of the vector table (block 0: all zeros). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_vblock);
	__uint(max_entries, 1);
} vectors SEC(".maps");

/* Vector index: entry (vector id * cfg.block_stride + b) is the id in `vectors` of the block
 * holding rules 4096*b .. 4096*b+4095 of that vector. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} vector_blocks SEC(".maps");

#define NS_LPM_MAP(name, keytype)                       \
	struct {                                        \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);    \
		__type(key, keytype);                   \
		__type(value, __u32);                   \
		__uint(map_flags, BPF_F_NO_PREALLOC);   \
		__uint(max_entries, 1);                 \
	} name SEC(".maps")

#define NS_ARRAY_MAP(name, entries)                 \
	struct {                                    \
		__uint(type, BPF_MAP_TYPE_ARRAY);   \
		__type(key, __u32);                 \
		__type(value, __u32);               \
		__uint(max_entries, entries);       \
	} name SEC(".maps")

#define NS_HASH_MAP(name)                           \
	struct {                                    \
		__uint(type, BPF_MAP_TYPE_HASH);    \
		__type(key, __u32);                 \
		__type(value, __u32);               \
		__uint(max_entries, 1);             \
	} name SEC(".maps")

/* IPv4 source address -> vector id of its longest prefix (a /0 entry covers the rest). */
NS_LPM_MAP(saddr4_lpm, struct ns_lpm4_key);
/* IPv6 source address -> vector id of its longest prefix (a /0 entry covers the rest). */
NS_LPM_MAP(saddr6_lpm, struct ns_lpm6_key);
/* IPv4 destination address -> vector id of its longest prefix. */
NS_LPM_MAP(daddr4_lpm, struct ns_lpm4_key);
/* IPv6 destination address -> vector id of its longest prefix. */
NS_LPM_MAP(daddr6_lpm, struct ns_lpm6_key);
/* Layer-4 protocol (or NS_L4PROTO_ABSENT: not IP, or unknown) -> vector id. */
NS_ARRAY_MAP(l4proto_vec, NS_L4PROTO_ABSENT + 1);
/* Source port (or NS_PORT_ABSENT) -> vector id. */
NS_ARRAY_MAP(sport_vec, NS_PORT_ABSENT + 1);
/* Destination port (or NS_PORT_ABSENT) -> vector id. */
NS_ARRAY_MAP(dport_vec, NS_PORT_ABSENT + 1);
/* ICMP type, NS_ICMP6_BASE + ICMPv6 type, or NS_ICMP_ABSENT -> vector id. */
NS_ARRAY_MAP(icmp_vec, NS_ICMP_ABSENT + 1);
/* Input ifindex -> vector id; others use live.miss[DIM_IIF]. */
NS_HASH_MAP(iif_vec);
/* Output ifindex -> vector id; others use live.miss[DIM_OIF]. */
NS_HASH_MAP(oif_vec);
/* mark & cfg.mark_mask[0] -> vector id; others use live.miss[DIM_MARK0]. */
NS_HASH_MAP(mark0_vec);
/* mark & cfg.mark_mask[1] -> vector id; others use live.miss[DIM_MARK1]. */
NS_HASH_MAP(mark1_vec);
/* Bit number of the packet's ct state -> vector id. */
NS_ARRAY_MAP(ctstate_vec, NS_CTSTATE_VALUES);
/* ct mark & cfg.ctmark_mask -> vector id; others use live.miss[DIM_CTMARK]. */
NS_HASH_MAP(ctmark_vec);

#define NS_DIM_ON(d) (cfg.dims & (1u << (d)))

/* Index of the lowest set bit of x != 0. clang 14 crashes on __builtin_ctzll for BPF,
 * so count the ones below that bit with a branchless popcount instead. */
NS_INLINE __u32 ns_lowest_bit(__u64 x)
{
	__u64 below = (x & -x) - 1;
	/* Keeps clang from recognising the pattern and emitting ctz again. */
	asm volatile("" : "+r"(below));
	below = below - ((below >> 1) & 0x5555555555555555ULL);
	below = (below & 0x3333333333333333ULL) + ((below >> 2) & 0x3333333333333333ULL);
	below = (below + (below >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (below * 0x0101010101010101ULL) >> 56;
}

NS_INLINE int ns_addr_vector(void *lpm4, void *lpm6, const __u32 *addr, const struct pkt_ctx *p,
			     __u32 absent, __u32 *id)
{
	__u32 *v;

	if (p->l3 == NS_L3_IPV4) {
		struct ns_lpm4_key k = { .prefixlen = 32, .addr = addr[0] };
		v = bpf_map_lookup_elem(lpm4, &k);
	} else if (p->l3 == NS_L3_IPV6) {
		struct ns_lpm6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, addr, 16);
		v = bpf_map_lookup_elem(lpm6, &k);
	} else {
		*id = absent;
		return 0;
	}
	if (!v)
		return -1;
	*id = *v;
	return 0;
}

NS_INLINE int ns_array_vector(void *map, __u32 index, __u32 *id)
{
	__u32 *v = bpf_map_lookup_elem(map, &index);
	if (!v)
		return -1;
	*id = *v;
	return 0;
}

NS_INLINE void ns_hash_vector(void *map, __u32 key, __u32 miss, __u32 *id)
{
	__u32 *v = bpf_map_lookup_elem(map, &key);
	*id = v ? *v : miss;
}


/* Looks up the vector ids of the mark dimensions (again after `meta mark set`). */
NS_INLINE void ns_lookup_mark_vectors(__u32 mark, __u32 *ids)
{
	if (NS_DIM_ON(DIM_MARK0))
		ns_hash_vector(&mark0_vec, mark & cfg.mark_mask[0], live.miss[DIM_MARK0],
			       &ids[DIM_MARK0]);
	if (NS_DIM_ON(DIM_MARK1))
		ns_hash_vector(&mark1_vec, mark & cfg.mark_mask[1], live.miss[DIM_MARK1],
			       &ids[DIM_MARK1]);
}

/* Looks up the vector id of the ct mark dimension (again after `ct mark set`). A
 * packet without connection has no ct mark: no predicate on it holds. */
NS_INLINE void ns_lookup_ctmark_vector(int has_ct, __u32 ctmark, __u32 *ids)
{
	if (!NS_DIM_ON(DIM_CTMARK))
		return;
	if (!has_ct)
		ids[DIM_CTMARK] = live.absent[DIM_CTMARK];
	else
		ns_hash_vector(&ctmark_vec, ctmark & cfg.ctmark_mask, live.miss[DIM_CTMARK],
			       &ids[DIM_CTMARK]);
}

/* Looks up the packet's vector id in every dimension some rule tests; ct_bit is the
 * bit number of its ct state. */
NS_INLINE int ns_lookup_vectors(const struct pkt_ctx *p, __u32 ct_bit, int has_ct, __u32 ctmark,
				__u32 *ids)
{
	if (NS_DIM_ON(DIM_SADDR) &&
	    ns_addr_vector(&saddr4_lpm, &saddr6_lpm, p->saddr, p, live.absent[DIM_SADDR],
			   &ids[DIM_SADDR]) < 0)
		return -1;
	if (NS_DIM_ON(DIM_DADDR) &&
	    ns_addr_vector(&daddr4_lpm, &daddr6_lpm, p->daddr, p, live.absent[DIM_DADDR],
			   &ids[DIM_DADDR]) < 0)
		return -1;
	if (NS_DIM_ON(DIM_L4PROTO) &&
	    ns_array_vector(&l4proto_vec, (p->flags & PKT_F_L4PROTO) ? p->l4proto : NS_L4PROTO_ABSENT,
			    &ids[DIM_L4PROTO]) < 0)
		return -1;
	if (NS_DIM_ON(DIM_SPORT) &&
	    ns_array_vector(&sport_vec, (p->flags & PKT_F_PORTS) ? p->sport : NS_PORT_ABSENT,
			    &ids[DIM_SPORT]) < 0)
		return -1;
	if (NS_DIM_ON(DIM_DPORT) &&
	    ns_array_vector(&dport_vec, (p->flags & PKT_F_PORTS) ? p->dport : NS_PORT_ABSENT,
			    &ids[DIM_DPORT]) < 0)
		return -1;
	if (NS_DIM_ON(DIM_ICMP)) {
		__u32 index = NS_ICMP_ABSENT;
		if (p->flags & PKT_F_ICMP)
			index = (p->l3 == NS_L3_IPV6 ? NS_ICMP6_BASE : 0) + p->icmp_type;
		if (ns_array_vector(&icmp_vec, index, &ids[DIM_ICMP]) < 0)
			return -1;
	}
	if (NS_DIM_ON(DIM_IIF))
		ns_hash_vector(&iif_vec, p->iif, live.miss[DIM_IIF], &ids[DIM_IIF]);
	if (NS_DIM_ON(DIM_OIF))
		ns_hash_vector(&oif_vec, p->oif, live.miss[DIM_OIF], &ids[DIM_OIF]);
	ns_lookup_mark_vectors(p->mark, ids);
	if (NS_DIM_ON(DIM_CTSTATE) &&
	    ns_array_vector(&ctstate_vec, ct_bit & (NS_CTSTATE_VALUES - 1), &ids[DIM_CTSTATE]) < 0)
		return -1;
	ns_lookup_ctmark_vector(has_ct, ctmark, ids);
	return 0;
}

/* Block pointer of dimension d for block blk, or the error exit. */
#define NS_LOAD_BLOCK(d)                                                        \
	struct ns_vblock *vb##d = NULL;                                         \
	if (NS_DIM_ON(d)) {                                                     \
		__u32 key = ids[d] * cfg.block_stride + blk;                         \
		__u32 *bid##d = bpf_map_lookup_elem(&vector_blocks, &key);      \
		if (!bid##d)                                                    \
			return -1;                                              \
		vb##d = bpf_map_lookup_elem(&vectors, bid##d);                  \
		if (!vb##d)                                                     \
			return -1;                                              \
	}

#define NS_AND_WORD(d)                  \
	if (dims & (1u << (d)))         \
		w &= vb##d->w[word];

#define NS_AND_NONZERO(d)               \
	if (dims & (1u << (d)))         \
		cand &= vb##d->nonzero;

/* The first rule in [pos, end) whose bit is set in every dimension's vector, looking
 * only inside the 4096-rule block holding pos. Returns the rule, NS_SCAN_NEXT_BLOCK
 * when none is in this block (the caller goes on at the next block if that is before
 * end), or -1 on a map error. Needs pos < end <= live.nrules. */
#define NS_SCAN_NEXT_BLOCK 0x7fffffff
NS_INLINE int ns_scan_block(const __u32 *ids, __u32 pos, __u32 end)
{
	__u32 blk = pos >> VBLOCK_SHIFT;

	if (blk >= live.nblocks)
		return -1;

	NS_LOAD_BLOCK(0)
	NS_LOAD_BLOCK(1)
	NS_LOAD_BLOCK(2)
	NS_LOAD_BLOCK(3)
	NS_LOAD_BLOCK(4)
	NS_LOAD_BLOCK(5)
	NS_LOAD_BLOCK(6)
	NS_LOAD_BLOCK(7)
	NS_LOAD_BLOCK(8)
	NS_LOAD_BLOCK(9)
	NS_LOAD_BLOCK(10)
	NS_LOAD_BLOCK(11)

	/* Read once: a volatile read per word and dimension costs more than the AND. */
	__u32 dims = cfg.dims;
	/* Words [first, tend) of this block, the last one masked at end - 1: the rules
	 * from end on belong to the chains after this one. */
	__u32 last = end - 1;
	__u64 first = (pos >> 6) & (VBLOCK_WORDS - 1);
	__u64 tend = VBLOCK_WORDS;
	__u64 last_mask = ~0ULL;
	if (blk == last >> VBLOCK_SHIFT) {
		tend = ((last >> 6) & (VBLOCK_WORDS - 1)) + 1;
		if ((last & 63) != 63)
			last_mask = (1ULL << ((last & 63) + 1)) - 1;
	}
	/* Candidate words: non-zero in every dimension, within [first, tend). */
	__u64 cand = ~0ULL << first;
	if (tend < VBLOCK_WORDS)
		cand &= (1ULL << tend) - 1;
	NS_AND_NONZERO(0)
	NS_AND_NONZERO(1)
	NS_AND_NONZERO(2)
	NS_AND_NONZERO(3)
	NS_AND_NONZERO(4)
	NS_AND_NONZERO(5)
	NS_AND_NONZERO(6)
	NS_AND_NONZERO(7)
	NS_AND_NONZERO(8)
	NS_AND_NONZERO(9)
	NS_AND_NONZERO(10)
	NS_AND_NONZERO(11)
	for (int i = 0; i < VBLOCK_WORDS; i++) {
		if (!cand)
			break;
		__u64 t = ns_lowest_bit(cand);
		cand &= cand - 1;
		/* Hidden from clang: otherwise it turns vb->w[t] into pointers advanced
		 * from a variable start, whose bounds the verifier loses. */
		__u64 word = t & (VBLOCK_WORDS - 1);
		asm volatile("" : "+r"(word));
		__u64 w = ~0ULL;
		if (t == first)
			w = ~0ULL << (pos & 63);
		if (t + 1 == tend)
			w &= last_mask;
		NS_AND_WORD(0)
		NS_AND_WORD(1)
		NS_AND_WORD(2)
		NS_AND_WORD(3)
		NS_AND_WORD(4)
		NS_AND_WORD(5)
		NS_AND_WORD(6)
		NS_AND_WORD(7)
		NS_AND_WORD(8)
		NS_AND_WORD(9)
		NS_AND_WORD(10)
		NS_AND_WORD(11)
		if (w)
			return (blk << VBLOCK_SHIFT) | ((__u32)word << 6) | ns_lowest_bit(w);
	}
	return NS_SCAN_NEXT_BLOCK;
}

#endif
