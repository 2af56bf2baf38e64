/* SPDX-License-Identifier: GPL-2.0-only */
/* LBVS classification (Linear Bit Vector Search, as in bpf-iptables): each dimension
 * maps the packet's field to a bit-vector with bit i set when rule i accepts that field
 * value; the first bit set in the AND of all dimensions' vectors is the first matching
 * rule. Vectors are stored once (deduplicated) in `vectors`; the per-dimension maps only
 * hold vector ids. The Rust builder (src/maps.rs) computes all of it. */
#ifndef NFTSHIM_CLASSIFY_H
#define NFTSHIM_CLASSIFY_H

#include "common.h"
#include "parse.h"
#include "actions.h"

#define VBLOCK_WORDS 64
#define VBLOCK_SHIFT 12 /* 4096 rules per block */

#define NS_L4PROTO_ABSENT 256
#define NS_PORT_ABSENT 65536
#define NS_ICMP6_BASE 256
#define NS_ICMP_ABSENT 512

/* 4096 bits of one bit-vector. */
struct ns_vblock {
	__u64 w[VBLOCK_WORDS];
};

struct ns_lpm4_key {
	__u32 prefixlen;
	__u32 addr; /* network byte order */
};

struct ns_lpm6_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* Vector table: entry (vector id * cfg.nblocks + b) holds rules 4096*b .. 4096*b+4095. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_vblock);
	__uint(max_entries, 1);
} vectors SEC(".maps");

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
/* Input ifindex -> vector id; others use cfg.miss[DIM_IIF]. */
NS_HASH_MAP(iif_vec);
/* Output ifindex -> vector id; others use cfg.miss[DIM_OIF]. */
NS_HASH_MAP(oif_vec);
/* mark & cfg.mark_mask[0] -> vector id; others use cfg.miss[DIM_MARK0]. */
NS_HASH_MAP(mark0_vec);
/* mark & cfg.mark_mask[1] -> vector id; others use cfg.miss[DIM_MARK1]. */
NS_HASH_MAP(mark1_vec);

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

/* State of one scan, shared with the bpf_loop callback. */
struct ns_scan {
	__u32 ids[NS_NDIMS]; /* the packet's vector id per dimension */
	__u32 pos;           /* next rule index to consider */
	__u32 rule;          /* the match, when status == NS_SCAN_FOUND */
	__u32 kind;          /* its enum ns_action */
	__u32 status;
	__u32 len;           /* packet length, for counters of continue rules */
};

#define NS_SCAN_NONE 0
#define NS_SCAN_FOUND 1
#define NS_SCAN_ERROR 2

/* Looks up the packet's vector id in every dimension some rule tests. */
NS_INLINE int ns_lookup_vectors(const struct pkt_ctx *p, __u32 *ids)
{
	if (NS_DIM_ON(DIM_SADDR) &&
	    ns_addr_vector(&saddr4_lpm, &saddr6_lpm, p->saddr, p, cfg.absent[DIM_SADDR],
			   &ids[DIM_SADDR]) < 0)
		return -1;
	if (NS_DIM_ON(DIM_DADDR) &&
	    ns_addr_vector(&daddr4_lpm, &daddr6_lpm, p->daddr, p, cfg.absent[DIM_DADDR],
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
		ns_hash_vector(&iif_vec, p->iif, cfg.miss[DIM_IIF], &ids[DIM_IIF]);
	if (NS_DIM_ON(DIM_OIF))
		ns_hash_vector(&oif_vec, p->oif, cfg.miss[DIM_OIF], &ids[DIM_OIF]);
	if (NS_DIM_ON(DIM_MARK0))
		ns_hash_vector(&mark0_vec, p->mark & cfg.mark_mask[0], cfg.miss[DIM_MARK0],
			       &ids[DIM_MARK0]);
	if (NS_DIM_ON(DIM_MARK1))
		ns_hash_vector(&mark1_vec, p->mark & cfg.mark_mask[1], cfg.miss[DIM_MARK1],
			       &ids[DIM_MARK1]);
	return 0;
}

/* Block pointer of dimension d for block blk, or the error exit. */
#define NS_LOAD_BLOCK(d)                                                        \
	struct ns_vblock *vb##d = NULL;                                         \
	if (NS_DIM_ON(d)) {                                                     \
		__u32 key = s->ids[d] * cfg.nblocks + blk;                      \
		vb##d = bpf_map_lookup_elem(&vectors, &key);                    \
		if (!vb##d)                                                     \
			goto error;                                             \
	}

#define NS_AND_WORD(d)                  \
	if (dims & (1u << (d)))         \
		w &= vb##d->w[word];

/* One bpf_loop step: scans the rest of the block holding s->pos. Returns 1 when the
 * scan is over (match, end of rules, or error), 0 to go on at the new s->pos. A rule
 * whose action is "continue" is counted here and the scan resumes after it. */
static long ns_scan_step(__u64 step, void *ctx)
{
	struct ns_scan *s = ctx;
	__u32 pos = s->pos;
	__u32 blk = pos >> VBLOCK_SHIFT;

	if (pos >= cfg.nrules || blk >= cfg.nblocks)
		return 1;

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

	/* Read once: a volatile read per word and dimension costs more than the AND. */
	__u32 dims = cfg.dims;
	/* Words past the one holding the last rule are all zero: stop there. */
	__u32 last_word = (cfg.nrules - 1) >> 6;
	__u64 end = VBLOCK_WORDS;
	if (blk == last_word >> 6)
		end = (last_word & (VBLOCK_WORDS - 1)) + 1;
	__u64 mask = ~0ULL << (pos & 63);
	for (__u64 t = (pos >> 6) & (VBLOCK_WORDS - 1); t < VBLOCK_WORDS; t++) {
		if (t >= end)
			break;
		/* Hidden from clang: otherwise it turns vb->w[t] into pointers advanced
		 * from a variable start, whose bounds the verifier loses. */
		__u64 word = t;
		asm volatile("" : "+r"(word));
		__u64 w = mask;
		mask = ~0ULL;
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
		if (!w)
			continue;
		__u32 rule = (blk << VBLOCK_SHIFT) | ((__u32)t << 6) | ns_lowest_bit(w);
		/* Bits past the last rule are clear, except when no dimension is tested. */
		if (rule >= cfg.nrules)
			return 1;
		__u32 *kind = bpf_map_lookup_elem(&rule_actions, &rule);
		if (!kind)
			goto error;
		if (*kind == NS_CONTINUE) {
			ns_count_rule(rule, s->len);
			s->pos = rule + 1;
			return 0;
		}
		s->rule = rule;
		s->kind = *kind;
		s->status = NS_SCAN_FOUND;
		return 1;
	}
	s->pos = (blk + 1) << VBLOCK_SHIFT;
	return 0;
error:
	s->status = NS_SCAN_ERROR;
	return 1;
}

/* The first rule at or after `start` whose predicates all hold and whose action ends
 * evaluation (continue rules on the way are counted). This is the primitive a return
 * from a jumped-to chain needs, resuming at the rule after the jump. */
NS_INLINE void ns_first_match(struct ns_scan *s, __u32 start)
{
	s->pos = start;
	s->status = NS_SCAN_NONE;
	bpf_loop(cfg.max_steps, ns_scan_step, s, 0);
}

/* Classifies a parsed packet and returns its enum ns_action (accept or drop). */
NS_INLINE __u32 ns_classify(const struct pkt_ctx *p)
{
	__u32 scope = p->l3 == NS_L3_IPV4   ? NS_SCOPE_IPV4
		      : p->l3 == NS_L3_IPV6 ? NS_SCOPE_IPV6
					    : NS_SCOPE_OTHER;
	if (!(cfg.l3_scope & scope)) {
		ns_stat(NS_STAT_UNSCOPED);
		return NS_ACCEPT;
	}
	ns_stat(NS_STAT_CLASSIFIED);

	struct ns_scan s = {};
	if (ns_lookup_vectors(p, s.ids) < 0)
		goto error;
	s.len = p->len;
	ns_first_match(&s, 0);
	if (s.status == NS_SCAN_FOUND) {
		ns_count_rule(s.rule, p->len);
		return s.kind;
	}
	if (s.status == NS_SCAN_NONE) {
		ns_count_rule(cfg.nrules, p->len);
		return cfg.policy;
	}
error:
	ns_stat(NS_STAT_ERROR);
	return NS_DROP;
}

#endif
