/* SPDX-License-Identifier: GPL-2.0-only */
/* Types and helpers shared by every nftshim data-plane header. */
#ifndef NFTSHIM_COMMON_H
#define NFTSHIM_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NS_INLINE static __always_inline

/* LBVS dimensions, one per group of packet fields looked up together. The Rust map
 * builder (src/maps.rs, `Dim`) uses the same numbering. */
enum ns_dim {
	DIM_SADDR = 0,   /* ip saddr / ip6 saddr: LPM tries */
	DIM_DADDR = 1,   /* ip daddr / ip6 daddr: LPM tries */
	DIM_L4PROTO = 2, /* meta l4proto: array, 256 = not IP */
	DIM_SPORT = 3,   /* transport source port: array, 65536 = no ports */
	DIM_DPORT = 4,   /* transport destination port: array, 65536 = no ports */
	DIM_ICMP = 5,    /* icmp type (0..255) / icmpv6 type (256..511): array, 512 = neither */
	DIM_IIF = 6,     /* meta iif: hash */
	DIM_OIF = 7,     /* meta oif: hash */
	DIM_MARK0 = 8,   /* meta mark & cfg.mark_mask[0]: hash */
	DIM_MARK1 = 9,   /* meta mark & cfg.mark_mask[1]: hash */
	NS_NDIMS = 10,
};

/* What a chain decides for a packet. Same numbering as Rust `maps::ActionKind`. */
enum ns_action {
	NS_ACCEPT = 0,
	NS_DROP = 1,
	NS_CONTINUE = 2, /* rule without verdict (counter only): evaluation goes on */
};

/* Which packets a chain sees (bits of cfg.l3_scope). Others pass unclassified. */
#define NS_SCOPE_IPV4 (1u << 0)
#define NS_SCOPE_IPV6 (1u << 1)
#define NS_SCOPE_OTHER (1u << 2)

/* Per-ruleset constants, set by the loader before the program is verified
 * (EbpfLoader::override_global). Being read-only, the verifier prunes the code of
 * dimensions no rule tests. Layout = Rust `maps::BpfConfig`. */
struct ns_config {
	__u32 dims;       /* bit d set: some rule tests dimension d */
	__u32 nrules;     /* rules in the chain; counter index nrules is the policy */
	__u32 nblocks;    /* 4096-rule blocks per bit-vector */
	__u32 max_steps;  /* bpf_loop bound: nblocks + continue rules + 1 */
	__u32 policy;     /* ns_action when no rule matches */
	__u32 l3_scope;   /* NS_SCOPE_* bits */
	__u32 egress;     /* TC attached at egress: skb->ifindex is the output device */
	__u32 mark_mask[2];
	__u32 miss[NS_NDIMS];   /* hash dimensions: vector when the key is not in the map */
	__u32 absent[NS_NDIMS]; /* address dimensions: vector when the packet is not IP */
};

const volatile struct ns_config cfg = {};

#endif
