/* SPDX-License-Identifier: GPL-2.0-only */
/* `log` statements: one ring buffer event per statement that ran, with the rule's
 * number, the prefix id and the packet's first bytes; the daemon formats them as
 * nf_log would. */
#ifndef NFTSHIM_LOG_H
#define NFTSHIM_LOG_H

#include "common.h"
#include "actions.h"
#include "stmts.h"

#define NS_LOG_CAPTURE 128

/* Same layout as Rust `loader::LogEvent`. */
struct ns_log_event {
	__u32 rule;
	__u32 prefix;
	__u32 iif;
	__u32 oif;
	__u32 mark;    /* the meta mark when the statement ran */
	__u32 len;     /* bytes from the network header on */
	__u32 ct_state; /* NF_CT_STATE_* bit */
	__u16 l3_off;  /* where the network header starts in headers[] */
	__u16 caplen;  /* bytes of headers[] filled */
	__u8 headers[NS_LOG_CAPTURE]; /* the frame from its first byte */
	/* The socket file's fsuid and fsgid (nf_log's --log-uid / `flags skuid`), when
	 * has_uid: read at TC egress, with NS_F_SOCKCRED, as nf_log_dump_sk_uid_gid(). */
	__u32 uid;
	__u32 gid;
	__u32 has_uid;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} log_events SEC(".maps");

/* Reserves and fills the header of event i of e's log queue; NULL when there is no
 * such event or no room (counted). */
NS_INLINE struct ns_log_event *ns_log_start(const struct pkt_ctx *p, const struct ns_log_entry *l,
					     __u32 ct_bit, __u32 frame_len)
{
	struct ns_log_event *ev = bpf_ringbuf_reserve(&log_events, sizeof(*ev), 0);
	if (!ev) {
		ns_stat(NS_STAT_LOG_LOST);
		return NULL;
	}
	ev->rule = l->rule;
	ev->prefix = l->prefix;
	ev->iif = p->iif;
	ev->oif = p->oif;
	ev->mark = l->mark;
	ev->len = p->len;
	ev->ct_state = 1u << (ct_bit & 31);
	ev->l3_off = p->l3_off;
	ev->caplen = 0;
	return ev;
}

#define NS_EMIT_LOGS(load_bytes, ctx, e, frame_len)                                    \
	do {                                                                           \
		for (__u32 i = 0; i < NS_MAX_LOGS; i++) {                               \
			if (i >= (e)->nlogs)                                           \
				break;                                                 \
			if ((e)->logs[i].prefix & NS_LOG_NFLOG)                        \
				continue;                                              \
			struct ns_log_event *ev = ns_log_start(&(e)->pkt, &(e)->logs[i], \
							       (e)->ct.state_bit, frame_len); \
			if (!ev)                                                       \
				continue;                                              \
			ev->has_uid = (e)->log_cred_found;                              \
			ev->uid = (e)->log_cred.fsuid;                                  \
			ev->gid = (e)->log_cred.fsgid;                                  \
			__u32 cap = (frame_len) < NS_LOG_CAPTURE ? (frame_len) : NS_LOG_CAPTURE; \
			/* A fresh register: clang would reuse an unchecked copy. */   \
			asm volatile("" : "+r"(cap));                                   \
			if (cap >= 1 && cap <= NS_LOG_CAPTURE &&                        \
			    load_bytes(ctx, 0, ev->headers, cap) == 0)                  \
				ev->caplen = cap;                                       \
			bpf_ringbuf_submit(ev, 0);                                      \
		}                                                                      \
	} while (0)

#endif
