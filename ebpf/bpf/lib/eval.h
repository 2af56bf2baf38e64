/* SPDX-License-Identifier: GPL-2.0-only */
/* Evaluation of a hook's chains, as nf_tables' nft_do_chain() and nf_hook_slow() do:
 * base chains in order, where accept ends only the current one; jump/goto/return
 * between chains with a stack of NFT_JUMP_STACK_SIZE; continue rules counted on the
 * way. Each step of one bpf_loop either scans one LBVS block of the current chain's
 * rule range ("first match at or after pos"), or handles the end of a chain. The state
 * lives in a per-CPU scratch map: too large for the 512-byte stack, and the bpf_loop
 * callback reaches it without pointers passed through the stack. */
#ifndef NFTSHIM_EVAL_H
#define NFTSHIM_EVAL_H

#include "common.h"
#include "parse.h"
#include "actions.h"
#include "lbvs.h"
#include "conntrack.h"
#include "stmts.h"
#include "reject.h"
#include "rewrite.h"
#include "tcpoptstrip.h"
#include "xt_ecn.h"
#include "sockcred.h"
#include "hmark.h"

/* One chain: its rules are [start, end) of the program's rule numbering. */
struct ns_chain {
	__u32 start;
	__u32 end;
	__u32 policy; /* base chains: NS_ACCEPT or NS_DROP */
	__u32 flags;  /* NS_CHAIN_* */
};

/* A netdev base chain: it charges skb->len as the netdev hooks see it. */
#define NS_CHAIN_NETDEV 1u

/* skb->len at the netdev hooks: from the MAC header at egress, from the network
 * header at ingress (VLAN tags are already out there; padding is still in, unlike
 * in `len`). See lib/netdev.h. */
NS_INLINE __u32 ns_netdev_skb_len(const struct pkt_ctx *p)
{
	__u32 data = cfg.egress ? 0 : p->l2_len;
	return p->frame_len > data ? p->frame_len - data : 0;
}

/* One rule's action. Same layout as Rust `maps::BpfRule`. */
struct ns_rule {
	__u8 kind;  /* enum ns_action */
	__u8 flags; /* NS_RULE_* */
	__u16 pad;
	__u32 arg;  /* jump/goto: target chain id */
	__u32 ext;  /* with NS_RULE_CHECKS/STMTS: index into rule_ext */
};

#define NS_RULE_CHECKS (1u << 0) /* residual checks after the LBVS match */
#define NS_RULE_STMTS (1u << 1)  /* statements before the action */

struct ns_frame {
	__u32 chain;
	__u32 pos; /* rule to resume at */
};

#define NS_EVAL_RUNNING 0
#define NS_EVAL_DONE 1
#define NS_EVAL_ERROR 2

/* Everything one packet's evaluation needs. */
struct ns_eval {
	struct pkt_ctx pkt;
	struct ns_ct ct;
	__u32 ids[NS_NDIMS]; /* the packet's vector id per dimension */
	__u32 status;        /* NS_EVAL_* */
	__u32 verdict;       /* with NS_EVAL_DONE: NS_ACCEPT, NS_DROP or NS_REJECT */
	__u32 rule;          /* NS_REJECT: the rejecting rule's arg (how to answer) */
	__u32 base;          /* current base chain */
	__u32 base_mask;     /* base chains that see the packet */
	__u32 chain;         /* current chain */
	__u32 pos;           /* next rule to consider */
	__u32 end;           /* end of the current chain's rules */
	__u32 sp;            /* jump stack depth */
	struct ns_frame stack[NS_JUMP_STACK_SIZE];
	__u32 nlogs;         /* log statements that ran, emitted after the chains */
	struct ns_log_entry logs[NS_MAX_LOGS];
	/* The socket's credentials for the log events (NS_F_SOCKCRED, TC egress). */
	struct ns_sockcred log_cred;
	__u32 log_cred_found;
	struct ns_reply reply; /* reject: the answer being built */
	struct ns_writes writes; /* header writes the hook carries out after the chains */
	__u32 priority_set;      /* a CLASSIFY statement ran: the TC hook writes priority */
	__u32 priority;
};

/* Chain id -> its rules and policy. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_chain);
	__uint(max_entries, 1);
} chains SEC(".maps");

/* Rule index -> action. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_rule);
	__uint(max_entries, 1);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_eval);
	__uint(max_entries, 1);
} eval_scratch SEC(".maps");

NS_INLINE struct ns_eval *ns_eval_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&eval_scratch, &zero);
}

NS_INLINE void ns_done(struct ns_eval *e, __u32 verdict)
{
	e->status = NS_EVAL_DONE;
	e->verdict = verdict;
}

/* Starts chain c at its first rule. */
NS_INLINE void ns_enter(struct ns_eval *e, __u32 c)
{
	struct ns_chain *ch = bpf_map_lookup_elem(&chains, &c);
	if (!ch) {
		e->status = NS_EVAL_ERROR;
		return;
	}
	e->chain = c;
	e->pos = ch->start;
	e->end = ch->end;
	if (c == e->base)
		e->pkt.charge = (ch->flags & NS_CHAIN_NETDEV) ? ns_netdev_skb_len(&e->pkt) : e->pkt.len;
}

/* The current base chain accepted: the next base chain that sees the packet runs,
 * with an empty jump stack; after the last one the packet is accepted. */
NS_INLINE void ns_next_base(struct ns_eval *e)
{
	__u32 later = e->base + 1 >= NS_MAX_BASE ? 0 : e->base_mask & (~0u << (e->base + 1));
	if (!later) {
		ns_done(e, NS_ACCEPT);
		return;
	}
	e->base = ns_lowest_bit(later);
	e->sp = 0;
	ns_enter(e, e->base);
}

/* The base chain's policy decides: counted, then accept moves on, drop ends. */
NS_INLINE void ns_policy(struct ns_eval *e)
{
	__u32 b = e->base;
	struct ns_chain *ch = bpf_map_lookup_elem(&chains, &b);
	if (!ch) {
		e->status = NS_EVAL_ERROR;
		return;
	}
	ns_count_rule(live.nrules + b, e->pkt.charge);
	if (ch->policy == NS_ACCEPT)
		ns_next_base(e);
	else
		ns_done(e, NS_DROP);
}

/* `return`, or the end of a chain: back to the rule after the last jump, or, with
 * none pending, the base chain's policy. */
NS_INLINE void ns_return(struct ns_eval *e)
{
	if (!e->sp) {
		ns_policy(e);
		return;
	}
	__u32 sp = (e->sp - 1) & (NS_JUMP_STACK_SIZE - 1);
	__u32 c = e->stack[sp].chain;
	struct ns_chain *ch = bpf_map_lookup_elem(&chains, &c);
	if (!ch) {
		e->status = NS_EVAL_ERROR;
		return;
	}
	e->sp = sp;
	e->chain = c;
	e->pos = e->stack[sp].pos;
	e->end = ch->end;
}

/* `jump`: push the rule after this one, then run the target. A full stack drops the
 * packet, as nft_do_chain() does (the control plane refuses rulesets that could). */
NS_INLINE void ns_jump(struct ns_eval *e, __u32 rule, __u32 target)
{
	if (e->sp >= NS_JUMP_STACK_SIZE) {
		ns_stat(NS_STAT_JUMP_OVERFLOW);
		ns_done(e, NS_DROP);
		return;
	}
	__u32 sp = e->sp & (NS_JUMP_STACK_SIZE - 1);
	e->stack[sp].chain = e->chain;
	e->stack[sp].pos = rule + 1;
	e->sp = sp + 1;
	ns_enter(e, target);
}

/* Looks up every dimension again after a header write changed the packet's fields. */
__noinline int ns_relookup(struct ns_eval *e)
{
	if (!e)
		return -1;
	return ns_lookup_vectors(&e->pkt, e->ct.state_bit, e->ct.has_ct, e->ct.mark, e->ids);
}

/* ns_run_stmts(): a statement dropped the packet (xt_TCPOPTSTRIP's or ipt_ECN's
 * NF_DROP). */
#define NS_STMTS_DROP 2
/* The features of the statements that can drop: only their programs test for it. */
#define NS_F_STMTS_MAY_DROP (NS_F_TCPOPTSTRIP | NS_F_XT_ECN)

/* Runs a rule's statements in order. Returns 0 when one breaks the rule (`meta mark
 * set ct mark` without a connection): the rule's action is then skipped;
 * NS_STMTS_DROP when one drops the packet. */
NS_INLINE int ns_run_stmts(struct ns_eval *e, __u32 rule, const struct ns_rule_ext *x)
{
#pragma unroll
	for (int i = 0; i < NS_MAX_STMTS; i++) {
		const struct ns_stmt *s = &x->stmts[i];
		switch (s->kind) {
		case NS_STMT_NONE:
			return 1;
		case NS_STMT_SET_MARK_FROM_CT:
			if (!e->ct.has_ct)
				return 0;
			e->pkt.mark = (e->ct.mark & s->a) ^ s->b;
			ns_lookup_mark_vectors(e->pkt.mark, e->ids);
			break;
		case NS_STMT_SET_MARK:
			e->pkt.mark = (e->pkt.mark & s->a) ^ s->b;
			ns_lookup_mark_vectors(e->pkt.mark, e->ids);
			break;
		case NS_STMT_SET_CTMARK:
		case NS_STMT_SET_CTMARK_FROM_MARK:
			/* No connection (invalid, untracked): nothing to mark. */
			if (!e->ct.has_ct)
				break;
			e->ct.mark = ((s->kind == NS_STMT_SET_CTMARK ? e->ct.mark : e->pkt.mark) & s->a) ^
				     s->b;
			e->ct.mark_set = 1;
			ns_lookup_ctmark_vector(1, e->ct.mark, e->ids);
			break;
		case NS_STMT_MARK_SHIFT: {
			__u32 from_ct = s->shift & NS_SHIFT_FROM_CT, to_ct = s->shift & NS_SHIFT_TO_CT;
			/* Without a connection: reading the ct mark breaks the rule, writing it
			 * does nothing. */
			if (!e->ct.has_ct && from_ct)
				return 0;
			if (!e->ct.has_ct && to_ct)
				break;
			__u32 v = ((from_ct ? e->ct.mark : e->pkt.mark) & s->a) ^ s->b;
			__u32 by = s->shift & 31;
			v = (s->shift & NS_SHIFT_LEFT) ? v << by : v >> by;
			v ^= s->c;
			if (to_ct) {
				e->ct.mark = v;
				e->ct.mark_set = 1;
				ns_lookup_ctmark_vector(1, v, e->ids);
			} else {
				e->pkt.mark = v;
				ns_lookup_mark_vectors(v, e->ids);
			}
			break;
		}
		case NS_STMT_MARK_MERGE: {
			if (!e->ct.has_ct)
				break;
			__u32 to_ct = s->shift & NS_SHIFT_TO_CT;
			__u32 v = (to_ct ? e->pkt.mark : e->ct.mark) & s->a;
			__u32 by = s->shift & 31;
			v = (s->shift & NS_SHIFT_LEFT) ? v << by : v >> by;
			if (to_ct) {
				e->ct.mark = (e->ct.mark & s->b) ^ v;
				e->ct.mark_set = 1;
				ns_lookup_ctmark_vector(1, e->ct.mark, e->ids);
			} else {
				e->pkt.mark = (e->pkt.mark & s->b) ^ v;
				ns_lookup_mark_vectors(e->pkt.mark, e->ids);
			}
			break;
		}
		case NS_STMT_SET_PRIORITY:
			e->priority = s->a;
			e->priority_set = 1;
			break;
		case NS_STMT_PAYLOAD_SET: {
			if (!NS_FEATURE(NS_F_WRITES)) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			int r = ns_payload_write(&e->pkt, &e->writes, s->a);
			if (r > 0 && ns_relookup(e) < 0)
				r = -1;
			if (r < 0)
				e->status = NS_EVAL_ERROR;
			if (r <= 0)
				return 0;
			break;
		}
		case NS_STMT_TCPOPTSTRIP: {
			if (!NS_FEATURE(NS_F_WRITES) || !NS_FEATURE(NS_F_TCPOPTSTRIP)) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			int r = ns_tcpoptstrip(&e->pkt, &e->writes, s->a);
			if (r == NS_TCPOPTSTRIP_DROP)
				return NS_STMTS_DROP;
			if (r < 0) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			break;
		}
		case NS_STMT_XT_ECN_TCP: {
			if (!NS_FEATURE(NS_F_WRITES) || !NS_FEATURE(NS_F_XT_ECN)) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			int r = ns_xt_ecn_tcp(&e->pkt, &e->writes, s->a);
			if (r == NS_XT_ECN_DROP)
				return NS_STMTS_DROP;
			if (r < 0) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			break;
		}
		case NS_STMT_HMARK: {
			if (!NS_FEATURE(NS_F_HMARK)) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			__s64 r = ns_hmark(&e->pkt, s->a);
			if (r < 0) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			if (r > 0) {
				e->pkt.mark = (__u32)r;
				ns_lookup_mark_vectors(e->pkt.mark, e->ids);
			}
			break;
		}
		case NS_STMT_LOG: {
			__u32 n = e->nlogs;
			if (n >= NS_MAX_LOGS) {
				ns_stat(NS_STAT_LOG_LOST);
				break;
			}
			struct ns_log_entry *l = &e->logs[n & (NS_MAX_LOGS - 1)];
			l->rule = rule;
			l->prefix = s->a;
			l->mark = e->pkt.mark;
			l->snap = 0;
			e->nlogs = n + 1;
			break;
		}
		case NS_STMT_NFLOG: {
			if (!NS_FEATURE(NS_F_NFLOG)) {
				e->status = NS_EVAL_ERROR;
				return 0;
			}
			__u32 n = e->nlogs;
			if (n >= NS_MAX_LOGS) {
				ns_stat(NS_STAT_LOG_LOST);
				break;
			}
			struct ns_log_entry *l = &e->logs[n & (NS_MAX_LOGS - 1)];
			l->rule = rule;
			l->prefix = s->a | NS_LOG_NFLOG;
			l->mark = e->pkt.mark;
			l->snap = s->b;
			e->nlogs = n + 1;
			break;
		}
		default:
			return 0;
		}
	}
	return 1;
}

/* Rule `rule` matched in the LBVS sense: check the rest, count it and carry out its
 * statements and action. */
NS_INLINE void ns_rule_matched(struct ns_eval *e, __u32 rule, struct ns_hook *hk)
{
	struct ns_rule *r = bpf_map_lookup_elem(&rules, &rule);
	if (!r) {
		e->status = NS_EVAL_ERROR;
		return;
	}
	struct ns_rule_ext *x = NULL;
	if ((NS_FEATURE(NS_F_CHECKS) || NS_FEATURE(NS_F_STMTS)) &&
	    (r->flags & (NS_RULE_CHECKS | NS_RULE_STMTS))) {
		__u32 ext = r->ext;
		x = bpf_map_lookup_elem(&rule_ext, &ext);
		if (!x) {
			e->status = NS_EVAL_ERROR;
			return;
		}
	}
	if (NS_FEATURE(NS_F_CHECKS) && x && (r->flags & NS_RULE_CHECKS)) {
		int hold = ns_checks_hold(x, &e->pkt, &e->ct, hk);
		if (hold == NS_RES_HOTDROP) {
			/* Uncounted, as nft_compat's NF_DROP ends the rule before its counter. */
			ns_done(e, NS_DROP);
			return;
		}
		if (hold < 0) {
			e->status = NS_EVAL_ERROR;
			return;
		}
		if (!hold) {
			e->pos = rule + 1;
			return;
		}
	}
	ns_count_rule(rule, e->pkt.charge);
	if (NS_FEATURE(NS_F_STMTS) && x && (r->flags & NS_RULE_STMTS)) {
		int st = ns_run_stmts(e, rule, x);
		if (NS_FEATURE(NS_F_STMTS_MAY_DROP) && st == NS_STMTS_DROP) {
			ns_done(e, NS_DROP);
			return;
		}
		if (!st) {
			e->pos = rule + 1;
			return;
		}
	}
	switch (r->kind) {
	case NS_CONTINUE:
		e->pos = rule + 1;
		break;
	case NS_ACCEPT:
		ns_next_base(e);
		break;
	case NS_DROP:
		ns_done(e, NS_DROP);
		break;
	case NS_REJECT:
		e->rule = r->arg;
		ns_done(e, NS_REJECT);
		break;
	case NS_JUMP:
		ns_jump(e, rule, r->arg);
		break;
	case NS_GOTO:
		ns_enter(e, r->arg);
		break;
	case NS_RETURN:
		ns_return(e);
		break;
	default:
		e->status = NS_EVAL_ERROR;
	}
}

/* One bpf_loop step: the rest of one LBVS block of the current chain, or its end. */
static long ns_eval_step(__u64 step, void *hk)
{
	struct ns_eval *e = ns_eval_state();
	if (!e || e->status != NS_EVAL_RUNNING)
		return 1;
	if (e->pos >= e->end) {
		ns_return(e);
		return e->status != NS_EVAL_RUNNING;
	}
	int rule = ns_scan_block(e->ids, e->pos, e->end);
	if (rule < 0) {
		e->status = NS_EVAL_ERROR;
		return 1;
	}
	if (rule == NS_SCAN_NEXT_BLOCK) {
		e->pos = ((e->pos >> VBLOCK_SHIFT) + 1) << VBLOCK_SHIFT;
		return 0;
	}
	ns_rule_matched(e, rule, hk);
	return e->status != NS_EVAL_RUNNING;
}

NS_INLINE __u32 ns_evaluate_chains(struct ns_eval *e, struct ns_hook *hk)
{
	e->nlogs = 0;
	e->writes.n = 0;
	e->priority_set = 0;
	__u32 kind = e->pkt.l3 == NS_L3_IPV4 ? 0 : e->pkt.l3 == NS_L3_IPV6 ? 1 : 2;
	e->base_mask = live.base_scope[kind];
	if (!e->base_mask) {
		ns_stat(NS_STAT_UNSCOPED);
		return NS_ACCEPT;
	}
	ns_stat(NS_STAT_CLASSIFIED);
	if (NS_FEATURE(NS_F_CONNTRACK)) {
		/* e.g. `ct state established,related accept` first: no lookups, no scan. */
		__u32 fast = live.fast_rule[kind < 3 ? kind : 2][e->ct.state_bit & 7];
		if (fast) {
			/* Never a netdev chain's rule (maps/chains.rs): no link-layer bytes. */
			ns_count_rule((fast >> 1) - 1, e->pkt.len);
			return (fast & 1) ? NS_DROP : NS_ACCEPT;
		}
	}
	if (ns_lookup_vectors(&e->pkt, e->ct.state_bit, e->ct.has_ct, e->ct.mark, e->ids) < 0)
		goto error;
	e->status = NS_EVAL_RUNNING;
	e->sp = 0;
	e->base = ns_lowest_bit(e->base_mask);
	ns_enter(e, e->base);
	bpf_loop(live.max_steps, ns_eval_step, hk, 0);
	if (e->status == NS_EVAL_DONE)
		return e->verdict;
error:
	/* A map error, or the step bound the builder computed was not enough. */
	ns_stat(NS_STAT_ERROR);
	return NS_DROP;
}

/* Runs the chains on e->pkt (parsed, with iif/oif/mark set) and e->ct (tracked).
 * Returns NS_ACCEPT, NS_DROP or NS_REJECT (then e->rule says how to answer). */
NS_INLINE __u32 ns_evaluate(struct ns_eval *e, struct ns_hook *hk)
{
	__u32 verdict = ns_evaluate_chains(e, hk);
	ns_stat(NS_STAT_EVALUATED);
	return verdict;
}

#endif
