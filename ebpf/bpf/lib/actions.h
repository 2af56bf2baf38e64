/* SPDX-License-Identifier: GPL-2.0-only */
/* Rule and policy counters, and the program's own event counts. */
#ifndef NFTSHIM_ACTIONS_H
#define NFTSHIM_ACTIONS_H

#include "common.h"

struct ns_counter {
	__u64 packets;
	__u64 bytes;
};

/* Program events, indices of dp_stats. Same numbering as Rust `loader::Stats`. */
enum ns_stat {
	NS_STAT_CLASSIFIED = 0,    /* packets some base chain saw */
	NS_STAT_UNSCOPED = 1,      /* packets no base chain's scope covers, passed */
	NS_STAT_ERROR = 2,         /* map lookups that cannot fail did: packet dropped */
	NS_STAT_JUMP_OVERFLOW = 3, /* a jump past NFT_JUMP_STACK_SIZE: dropped, as the kernel does */
	NS_STAT_LOG_LOST = 4,      /* log events the ring buffer had no room for */
	/* Packets evaluated, bumped after every counter the packet bumped: while it
	 * stands still, no counter moved (the daemon then skips reading them). */
	NS_STAT_EVALUATED = 5,
	NS_STAT_MAX = 6,
};

/* Counter index -> packets/bytes, per CPU: rule i at index i (all chains' rules in
 * one numbering), base chain b's policy at live.nrules + b. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_counter);
	__uint(max_entries, 1);
} rule_counters SEC(".maps");

/* enum ns_stat -> event count, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NS_STAT_MAX);
} dp_stats SEC(".maps");

NS_INLINE void ns_count_rule(__u32 index, __u32 len)
{
	struct ns_counter *c = bpf_map_lookup_elem(&rule_counters, &index);
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

NS_INLINE void ns_stat(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&dp_stats, &stat);
	if (n)
		*n += 1;
}

#endif
