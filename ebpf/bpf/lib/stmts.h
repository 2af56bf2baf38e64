/* SPDX-License-Identifier: GPL-2.0-only */
/* What a rule does beyond LBVS: residual checks on a candidate rule (ct status, set
 * lookups, then limit and quota, which consume), and statements before its action
 * (meta/ct mark set, log). The Rust builder (src/maps/checks.rs) orders the checks:
 * stateless ones first, so a limit or quota is consumed only by packets that match
 * everything else. */
#ifndef NFTSHIM_STMTS_H
#define NFTSHIM_STMTS_H

#include "common.h"
#include "parse.h"
#include "conntrack.h"
#include "sets.h"
#include "residual.h"
#include "bridge.h"

#define NS_MAX_CHECKS 4
#define NS_MAX_STMTS 4
#define NS_MAX_LOGS 8

enum ns_check_kind {
	NS_CHECK_NONE = 0,
	NS_CHECK_CTSTATUS = 1, /* arg: mask */
	NS_CHECK_SET = 2,      /* field: enum ns_set_field, arg: set id */
	NS_CHECK_LIMIT = 3,    /* arg: index into limits */
	NS_CHECK_QUOTA = 4,    /* arg: index into quotas */
	NS_CHECK_RESIDUAL = 5, /* field: operations, arg: the first in residual_insns */
	NS_CHECK_ARP = 6,      /* the packet is one the ARP hooks see (pkt_ctx.arp) */
	NS_CHECK_BRIDGE = 7,   /* arg: the frame classes a bridge hook sees (lib/bridge.h) */
	NS_CHECK_CTLABEL = 8,  /* arg: label bit; field: 1 sets it (xt_connlabel --set) */
};

/* Same layout as Rust `maps::BpfCheck`. */
struct ns_check {
	__u8 kind;
	__u8 negated;
	__u8 field;
	__u8 pad;
	__u32 arg;
};

enum ns_stmt_kind {
	NS_STMT_NONE = 0,
	NS_STMT_SET_MARK = 1,           /* mark = (mark & a) ^ b */
	NS_STMT_SET_CTMARK = 2,         /* ct mark = (ct mark & a) ^ b */
	NS_STMT_SET_MARK_FROM_CT = 3,   /* mark = (ct mark & a) ^ b; breaks without ct */
	NS_STMT_SET_CTMARK_FROM_MARK = 4, /* ct mark = (mark & a) ^ b */
	NS_STMT_LOG = 5,                /* a: prefix id */
	NS_STMT_PAYLOAD_SET = 6,        /* a: its spec in residual_insns (lib/rewrite.h) */
	NS_STMT_MARK_SHIFT = 7,         /* to = ((((from & a) ^ b) << or >> n) ^ c) */
	/* xt_CONNMARK --save-mark/--restore-mark: to = (to & b) ^ ((from & a) << or >> n),
	 * from the other mark; nothing without a connection. */
	NS_STMT_MARK_MERGE = 70,
	/* xt_CLASSIFY: skb->priority = a, written by the TC hook after the chains. */
	NS_STMT_SET_PRIORITY = 71,
	/* xt_TCPOPTSTRIP: a: its spec in residual_insns (lib/tcpoptstrip.h). */
	NS_STMT_TCPOPTSTRIP = 90,
	/* ipt_ECN's TCP operations: a: its spec in residual_insns (lib/xt_ecn.h). */
	NS_STMT_XT_ECN_TCP = 146,
	/* xt_HMARK: a: its spec in residual_insns (lib/hmark.h). */
	NS_STMT_HMARK = 125,
	/* xt_NFLOG / `log group`: a: its spec id (as NS_STMT_LOG's prefix id), b: the
	 * most bytes from the network header on any listener can ask for (lib/nflog.h). */
	NS_STMT_NFLOG = 115,
};

/* ns_stmt.shift of NS_STMT_MARK_SHIFT: the shift in bits 0-4, then these. */
#define NS_SHIFT_LEFT (1u << 8)
#define NS_SHIFT_FROM_CT (1u << 9) /* from the ct mark (else the meta mark) */
#define NS_SHIFT_TO_CT (1u << 10)  /* to the ct mark */

/* Same layout as Rust `maps::BpfStmt`. */
struct ns_stmt {
	__u32 kind;
	__u32 a;
	__u32 b;
	__u32 c;
	__u32 shift;
};

/* The checks and statements of one rule. Same layout as Rust `maps::BpfRuleExt`. */
struct ns_rule_ext {
	struct ns_check checks[NS_MAX_CHECKS];
	struct ns_stmt stmts[NS_MAX_STMTS];
};

/* A token bucket with nft_limit's arithmetic. Same layout as Rust `maps::BpfLimit`
 * (the lock is the first 4 bytes). One bucket per rule, shared by all CPUs under the
 * lock: per-CPU buckets would let each CPU pass the whole rate. */
struct ns_limit {
	struct bpf_spin_lock lock;
	__u32 bytes;      /* a byte limit: cost = nsecs * len / rate */
	__u64 tokens;
	__u64 last;       /* bpf_ktime_get_ns() of the last refill */
	__u64 tokens_max;
	__u64 cost;       /* packet limits: nsecs / rate */
	__u64 rate;
	__u64 nsecs;      /* the unit in nanoseconds */
};

/* Bytes a quota allows, and how many it has seen (atomically added). */
struct ns_quota {
	__u64 consumed;
	__u64 quota;
};

/* A log statement that ran, emitted after the chains (the ring buffer wants the
 * packet, which the bpf_loop callback has no pointer to). */
struct ns_log_entry {
	__u32 rule;
	__u32 prefix; /* with NS_LOG_NFLOG: an NS_STMT_NFLOG's spec id */
	__u32 mark; /* the meta mark when the statement ran */
	__u32 snap; /* NS_STMT_NFLOG's b */
};

#define NS_LOG_NFLOG (1u << 31)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_rule_ext);
	__uint(max_entries, 1);
} rule_ext SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_limit);
	__uint(max_entries, 1);
} limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_quota);
	__uint(max_entries, 1);
} quotas SEC(".maps");

/* Whether the rule's limit lets the packet through (consuming tokens), as
 * nft_limit_eval(): refill by the time elapsed, up to the bucket size, then take the
 * packet's cost if there is enough. -1 on a map error. */
NS_INLINE int ns_limit_pass(__u32 id, __u32 len)
{
	struct ns_limit *l = bpf_map_lookup_elem(&limits, &id);
	if (!l)
		return -1;
	/* Read before the lock (no helper calls under it); a CPU that read an earlier
	 * time than the last refill just refills nothing. */
	__u64 now = bpf_ktime_get_ns();
	__u64 cost = l->bytes ? l->nsecs * len / l->rate : l->cost;
	int pass;
	bpf_spin_lock(&l->lock);
	__u64 tokens = l->tokens;
	if (now > l->last)
		tokens += now - l->last;
	if (tokens > l->tokens_max)
		tokens = l->tokens_max;
	if (now > l->last)
		l->last = now;
	pass = tokens >= cost;
	l->tokens = pass ? tokens - cost : tokens;
	bpf_spin_unlock(&l->lock);
	return pass;
}

/* Whether the packet is within the quota (nft_quota: the packet is counted either way,
 * and is over when the total exceeds the quota). -1 on a map error. */
NS_INLINE int ns_quota_within(__u32 id, __u32 len)
{
	struct ns_quota *q = bpf_map_lookup_elem(&quotas, &id);
	if (!q)
		return -1;
	__u64 consumed = __sync_add_and_fetch(&q->consumed, (__u64)len);
	return consumed <= q->quota;
}

/* field of an NS_CHECK_QUOTA whose slot is xt_statistic's nth counter: consumed counts
 * the packets that reached the match, quota holds every (low half) and the starting
 * count (high half). */
#define NS_QUOTA_NTH 1

/* Whether the packet sets the nth counter to 0 (statistic_mt(): from its start, each
 * packet makes it 0 if it was every, else adds 1, u32 arithmetic). The k-th packet's
 * value follows from k, so one atomic add replaces the kernel's cmpxchg loop. -1 on a
 * map error. */
NS_INLINE int ns_nth_hit(__u32 id)
{
	struct ns_quota *q = bpf_map_lookup_elem(&quotas, &id);
	if (!q)
		return -1;
	__u64 k = __sync_add_and_fetch(&q->consumed, 1);
	__u64 every = q->quota & 0xffffffffULL, start = q->quota >> 32;
	if (start > every) {
		/* It climbs to the u32 wrap first, which is 0. */
		__u64 first = (1ULL << 32) - start;
		if (k < first)
			return 0;
		return (k - first) % (every + 1) == 0;
	}
	return (start + k) % (every + 1) == 0;
}

/* connlabel_mt() without its inversion: the connection has the labels extension and
 * label `bit` set, or `set` sets it (nf_connlabel_set()). */
NS_INLINE int ns_ct_label(struct ns_ct *ct, __u32 bit, __u32 set)
{
	if (!ct->has_ct || !ct->labels_ext || bit > 127)
		return 0;
	__u64 m = 1ULL << (bit & 63);
	__u64 *w = bit < 64 ? &ct->labels[0] : &ct->labels[1];
	if (*w & m)
		return 1;
	if (!set)
		return 0;
	*w |= m;
	ct->labels_set = 1;
	return 1;
}

/* Whether all checks hold, in order (a failing one stops the rest, as NFT_BREAK does).
 * -1 on a map error, NS_RES_HOTDROP when an xtables match drops the packet. */
NS_INLINE int ns_checks_hold(const struct ns_rule_ext *x, const struct pkt_ctx *p,
			     struct ns_ct *ct, struct ns_hook *hk)
{
#pragma unroll
	for (int i = 0; i < NS_MAX_CHECKS; i++) {
		const struct ns_check *c = &x->checks[i];
		int member;
		switch (c->kind) {
		case NS_CHECK_NONE:
			return 1;
		case NS_CHECK_CTSTATUS:
			/* No connection: no status, the match fails even negated. */
			if (!ct->has_ct)
				return 0;
			member = (ct->status & c->arg) != 0;
			break;
		case NS_CHECK_SET:
			member = ns_set_member(c->field, c->arg, p, ct);
			if (member < 0) /* the field is absent */
				return 0;
			break;
		case NS_CHECK_RESIDUAL:
			if (!NS_FEATURE(NS_F_RESIDUAL))
				return -1;
			member = ns_residual_holds(c->arg, c->field, p, ct, hk);
			if (member == NS_RES_HOTDROP)
				return NS_RES_HOTDROP;
			if (member < 0)
				return -1;
			break;
		case NS_CHECK_ARP:
			member = p->arp;
			break;
		case NS_CHECK_BRIDGE:
			member = ns_bridge_hook_sees(p->br_class, c->arg);
			break;
		case NS_CHECK_CTLABEL:
			if (!NS_FEATURE(NS_F_CT_LABELS))
				return -1;
			member = ns_ct_label(ct, c->arg, c->field);
			break;
		case NS_CHECK_LIMIT:
			member = ns_limit_pass(c->arg, p->charge);
			if (member < 0)
				return -1;
			break;
		case NS_CHECK_QUOTA:
			member = c->field == NS_QUOTA_NTH ? ns_nth_hit(c->arg)
							  : ns_quota_within(c->arg, p->charge);
			if (member < 0)
				return -1;
			break;
		default:
			return -1;
		}
		if (member == c->negated)
			return 0;
	}
	return 1;
}

#endif
