/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_NFLOG and nft `log group`: one perf event per statement that ran, with what
 * nfnetlink_log's message needs from the skb (devices, mark, protocol, timestamp) and
 * the frame itself, copied by bpf_perf_event_output from the skb (linear and paged
 * data alike) up to what any listener may ask for. The daemon builds the message
 * (shim/engine/src/ulog/packet.rs) and hands it to the group's bound listener. */
#ifndef NFTSHIM_NFLOG_H
#define NFTSHIM_NFLOG_H

#include "common.h"
#include "stmts.h"
#include "sockcred.h"

/* A perf sample's size is a u16: the header, the raw size word, this event and the
 * frame must fit. */
#define NS_NFLOG_MAX_FRAME (65535 - 16 - 56)

/* Same layout as Rust `loader::NflogEvent`; the frame follows it. */
struct ns_nflog_event {
	__u32 spec;     /* the statement's spec id */
	__u32 iif;
	__u32 oif;
	__u32 mark;     /* the meta mark when the statement ran */
	__u32 len;      /* skb->len at the IP hooks: bytes from the network header on */
	__u32 caplen;   /* bytes of the frame that follow */
	__u64 tstamp;   /* skb->tstamp (0: none) */
	__u16 l3_off;   /* where the network header starts in the frame */
	__u16 protocol; /* skb->protocol, network order */
	__u32 cred;     /* NS_SOCKCRED_* of the packet's socket (TC egress) */
	__u32 uid;      /* with NS_SOCKCRED_FILE: its file's fsuid and fsgid */
	__u32 gid;
};

/* ns_sockcred_read()'s scratch: it must live in map memory. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_sockcred);
	__uint(max_entries, 1);
} nflog_cred SEC(".maps");

/* nfnetlink_log's NFULA_UID/GID at the egress hooks: sk_fullsock(skb->sk) with a
 * socket file (NS_SOCKCRED_FULL_SK off). At ingress the program sees no socket (the
 * chains that would have one are refused). */
NS_INLINE void ns_nflog_cred(struct ns_hook *hk, const struct pkt_ctx *p, __u32 *cred,
			     __u32 *uid, __u32 *gid)
{
	__u32 zero = 0;
	struct ns_sockcred *c = bpf_map_lookup_elem(&nflog_cred, &zero);
	*cred = NS_SOCKCRED_NONE;
	*uid = 0;
	*gid = 0;
	if (!c)
		return;
	*cred = ns_sockcred_read(hk, p->iif, p->l4proto, (p->flags & PKT_F_L4PROTO) != 0, 0, c);
	*uid = c->fsuid;
	*gid = c->fsgid;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} nflog_events SEC(".maps");

/* Emits the nflog events of e's log queue (TC only: the copy needs the skb). */
#define NS_EMIT_NFLOG(skb, hk, e, frame_len)                                             \
	do {                                                                             \
		__u32 cred_ = NS_SOCKCRED_NONE, uid_ = 0, gid_ = 0, creds_read_ = 0;      \
		for (__u32 i = 0; i < NS_MAX_LOGS; i++) {                                 \
			if (i >= (e)->nlogs)                                             \
				break;                                                   \
			const struct ns_log_entry *l_ = &(e)->logs[i];                   \
			if (!(l_->prefix & NS_LOG_NFLOG))                                \
				continue;                                                \
			if (!creds_read_ && cfg.egress) {                                \
				ns_nflog_cred(hk, &(e)->pkt, &cred_, &uid_, &gid_);      \
				creds_read_ = 1;                                         \
			}                                                                \
			struct ns_nflog_event ev_ = {                                    \
				.spec = l_->prefix & ~NS_LOG_NFLOG,                      \
				.iif = (e)->pkt.iif,                                     \
				.oif = (e)->pkt.oif,                                     \
				.mark = l_->mark,                                        \
				.len = (e)->pkt.len,                                     \
				.tstamp = (skb)->tstamp,                                 \
				.l3_off = (e)->pkt.l3_off,                               \
				.protocol = (__u16)(skb)->protocol,                      \
				.cred = cred_,                                           \
				.uid = uid_,                                             \
				.gid = gid_,                                             \
			};                                                               \
			__u64 want_ = (__u64)(e)->pkt.l3_off +                           \
				      ((e)->pkt.len < l_->snap ? (e)->pkt.len : l_->snap); \
			if (want_ > (frame_len))                                         \
				want_ = (frame_len);                                     \
			if (want_ > NS_NFLOG_MAX_FRAME)                                  \
				want_ = NS_NFLOG_MAX_FRAME;                              \
			ev_.caplen = want_;                                              \
			if (bpf_perf_event_output(skb, &nflog_events,                    \
						  BPF_F_CURRENT_CPU |                    \
							  ((want_ << 32) & BPF_F_CTXLEN_MASK), \
						  &ev_, sizeof(ev_)) < 0)                \
				ns_stat(NS_STAT_LOG_LOST);                               \
		}                                                                        \
	} while (0)

#endif
