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
#include "eval.h"
#include "sockcred.h"
#include "nflog_demux.h"

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
	__u32 cred;     /* NS_SOCKCRED_* of the packet's socket (TC egress; at ingress with
			 * NS_F_NFLOG_INPUT, the one early demux attaches for input) */
	__u32 uid;      /* with NS_SOCKCRED_FILE: its file's fsuid and fsgid */
	__u32 gid;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} nflog_events SEC(".maps");

/* The event and ns_sockcred_read()'s scratch live in map memory: the TC entry's
 * stack, shared with the chains' calls, has no room for them. */
struct ns_nflog_scratch {
	struct ns_sockcred cred;
	struct ns_nflog_event ev;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_nflog_scratch);
	__uint(max_entries, 1);
} nflog_scratch SEC(".maps");

/* Emits the nflog events of the packet's log queue (TC only: the copy needs the skb).
 * A function of its own, so that its stack is not the TC entry's. NFULA_UID/GID at
 * the egress hooks: sk_fullsock(skb->sk) with a socket file (NS_SOCKCRED_FULL_SK off);
 * at ingress, with input chains that log, the socket early demux attaches after
 * prerouting (lib/nflog_demux.h; the daemon puts its ids in input hooks' messages
 * only: at prerouting ip_rcv_core() has orphaned the skb). */
static __noinline int ns_emit_nflog(struct __sk_buff *skb, struct ns_hook *hk, __u32 frame_len)
{
	__u32 zero = 0;
	struct ns_eval *e = ns_eval_state();
	struct ns_nflog_scratch *sc = bpf_map_lookup_elem(&nflog_scratch, &zero);
	if (!e || !sc || !hk)
		return 0;
	int creds_read = 0;
	__u32 cred = NS_SOCKCRED_NONE;
	for (__u32 i = 0; i < NS_MAX_LOGS; i++) {
		if (i >= e->nlogs)
			break;
		const struct ns_log_entry *l = &e->logs[i];
		if (!(l->prefix & NS_LOG_NFLOG))
			continue;
		if (!creds_read) {
			sc->cred.fsuid = 0;
			sc->cred.fsgid = 0;
			if (cfg.egress)
				cred = ns_sockcred_read(hk, e->pkt.iif, e->pkt.l4proto,
							(e->pkt.flags & PKT_F_L4PROTO) != 0, 0,
							&sc->cred);
			else if (NS_FEATURE(NS_F_NFLOG_INPUT))
				cred = ns_nflog_demux(skb, &sc->cred);
			creds_read = 1;
		}
		struct ns_nflog_event *ev = &sc->ev;
		ev->spec = l->prefix & ~NS_LOG_NFLOG;
		ev->iif = e->pkt.iif;
		ev->oif = e->pkt.oif;
		ev->mark = l->mark;
		ev->len = e->pkt.len;
		ev->tstamp = skb->tstamp;
		ev->l3_off = e->pkt.l3_off;
		ev->protocol = (__u16)skb->protocol;
		ev->cred = cred;
		ev->uid = sc->cred.fsuid;
		ev->gid = sc->cred.fsgid;
		__u64 want = (__u64)e->pkt.l3_off + (e->pkt.len < l->snap ? e->pkt.len : l->snap);
		if (want > frame_len)
			want = frame_len;
		if (want > NS_NFLOG_MAX_FRAME)
			want = NS_NFLOG_MAX_FRAME;
		ev->caplen = want;
		if (bpf_perf_event_output(skb, &nflog_events,
					  BPF_F_CURRENT_CPU | ((want << 32) & BPF_F_CTXLEN_MASK), ev,
					  sizeof(*ev)) < 0)
			ns_stat(NS_STAT_LOG_LOST);
	}
	return 0;
}

#endif
