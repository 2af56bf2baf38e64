/* SPDX-License-Identifier: GPL-2.0-only */
/* Connection tracking in our own LRU hash (aya 0.14 cannot call the kernel's conntrack
 * kfuncs), modelled on nf_conntrack for what `ct state`, `ct status` and `ct mark` can
 * observe. The Rust reference (src/conntrack.rs) models the same rules.
 *
 * When: nf_conntrack runs at prerouting/output before the filter chains and confirms
 * (inserts) a new connection when its first packet leaves postrouting/input. Here
 * tracking runs at the start of the program, which runs at one hook; existing entries
 * are updated at once (as the kernel updates them before filtering), and a new entry is
 * inserted when this program's verdict is accept. So a packet accepted here but dropped
 * by a later hook (or another program) still creates its entry; the kernel would not.
 *
 * Tuples: both directions share one key, the endpoints in a fixed order; the entry
 * records which endpoint opened the connection. ICMP/ICMPv6 queries (echo, timestamp,
 * info, address mask, node information) are keyed by requester, responder, id and the
 * query type, so a reply finds its query and a query the other way is another flow.
 *
 * Protocols:
 * - TCP: nf_conntrack_proto_tcp's state table (SYN, SYN-ACK, FIN, ACK, RST), its flag
 *   checks and timeouts, mid-stream pickup (nf_conntrack_tcp_loose=1), ASSURED, reopen
 *   from TIME_WAIT/CLOSE by SYN, a first-reply RST deleting the entry, and a SYN
 *   retransmitted in SYN_SENT before any reply neither refreshing nor counted. Not modelled:
 *   sequence/window tracking (out-of-window packets are not INVALID here), retransmit and
 *   unacknowledged-data timeouts, checksums.
 * - UDP, UDP-Lite: 30 s until a reply, then 120 s and ASSURED once the flow is 2 s old.
 * - ICMP/ICMPv6: queries create entries (30 s), replies need one; other non-error types
 *   are INVALID; ICMPv6 neighbour discovery and MLD are UNTRACKED; errors quoting a
 *   tracked flow's packet (and addressed to that packet's sender) are RELATED, others
 *   INVALID.
 * - Others (SCTP, DCCP by ports; GRE and the rest by addresses): one generic flow, 600 s.
 *   nf_conntrack's own SCTP/DCCP/GRE state machines are not modelled.
 * - Not IP, IPv6 with an extension header chain that cannot be walked, truncated
 *   transport headers: no connection (INVALID).
 * - Fragments: the kernel tracks the reassembled datagram. Here the first fragment is
 *   tracked (it has the transport header) and what it got is remembered by datagram
 *   (addresses, protocol, identification); later fragments get the same state and
 *   connection. A later fragment that arrives before its first one is INVALID.
 * Accounting (ct packets/bytes/avgpkt): per direction, the packet's length from the
 * network header on, counted when tracking refreshes the connection (not for related
 * ICMP errors, TCP packets the state machine ignores, or packets observed again), in
 * connections created while `ct_acct` is on. A fragmented datagram counts its first
 * fragment, where the kernel counts the reassembled datagram once.
 * Entries are updated without locks: two CPUs racing on one flow may lose an update. */
#ifndef NFTSHIM_CONNTRACK_H
#define NFTSHIM_CONNTRACK_H

#include "common.h"
#include "parse.h"

/* ct state bit numbers (NF_CT_STATE_* = 1 << n). */
#define NS_CT_BIT_INVALID 0
#define NS_CT_BIT_ESTABLISHED 1
#define NS_CT_BIT_RELATED 2
#define NS_CT_BIT_NEW 3
#define NS_CT_BIT_UNTRACKED 6

/* ct status bits (enum ip_conntrack_status). */
#define NS_IPS_SEEN_REPLY (1u << 1)
#define NS_IPS_ASSURED (1u << 2)
#define NS_IPS_CONFIRMED (1u << 3)

#define NS_CT_DIR_ORIG 0
#define NS_CT_DIR_REPLY 1

/* TCP states (enum tcp_conntrack) and the table's two pseudo-states. */
#define sNO 0
#define sSS 1
#define sSR 2
#define sES 3
#define sFW 4
#define sCW 5
#define sLA 6
#define sTW 7
#define sCL 8
#define sS2 9
#define sIV 10
#define sIG 11

/* Packet kinds (tcp_bit_set). */
#define NS_TCP_SYN_SET 0
#define NS_TCP_SYNACK_SET 1
#define NS_TCP_FIN_SET 2
#define NS_TCP_ACK_SET 3
#define NS_TCP_RST_SET 4
#define NS_TCP_NONE_SET 5

/* Next state by direction, packet kind and current state: nf_conntrack_proto_tcp's
 * transitions (kernel 6.x), re-entered here. */
static const __u8 ns_tcp_next[2][6][10] = {
	{
		/*        sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
		/*syn*/ { sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2 },
		/*sa */ { sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR },
		/*fin*/ { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
		/*ack*/ { sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV },
		/*rst*/ { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
		/*non*/ { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV },
	},
	{
		/*        sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
		/*syn*/ { sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2 },
		/*sa */ { sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR },
		/*fin*/ { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
		/*ack*/ { sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG },
		/*rst*/ { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
		/*non*/ { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV },
	},
};

/* cfg.ct_timeout index of each TCP state. */
static const __u8 ns_tcp_timeout[10] = {
	NS_CTT_TCP_SYN_SENT, /* sNO: unused */
	NS_CTT_TCP_SYN_SENT,    NS_CTT_TCP_SYN_RECV,  NS_CTT_TCP_ESTABLISHED,
	NS_CTT_TCP_FIN_WAIT,    NS_CTT_TCP_CLOSE_WAIT, NS_CTT_TCP_LAST_ACK,
	NS_CTT_TCP_TIME_WAIT,   NS_CTT_TCP_CLOSE,     NS_CTT_TCP_SYN_SENT, /* sS2 */
};

/* Both directions of a flow: endpoint a and endpoint b in a fixed order (ICMP queries:
 * a is the requester). */
struct ns_ct_key {
	__u32 a[4];
	__u32 b[4];
	__u16 pa; /* ports, or the ICMP id in both */
	__u16 pb;
	__u8 l3;
	__u8 l4proto;
	__u8 icmp_type; /* ICMP: the query type */
	__u8 pad;
};

struct ns_ct_entry {
	__u64 expires;   /* bpf_ktime_get_ns() */
	__u64 stream_ts; /* UDP: when the flow counts as a stream */
	__u32 mark;
	__u32 status;    /* NS_IPS_* */
	__u8 a_is_orig;  /* endpoint a sent the first packet */
	__u8 tcp_state;
	/* Inserted at an ingress whose packet may still be forwarded: confirmed (or, when
	 * the forward or postrouting chains drop it, deleted) by the egress that sees the
	 * packet next, as nf_conntrack confirms at postrouting. */
	__u8 tentative;
	/* Killed by its packet (a first reply that is a reset): that packet keeps it on
	 * its way (the egress observing a forwarded one deletes it), the next packet of
	 * the flow deletes it and finds none, as nf_conntrack's kill does. */
	__u8 dying;
	__u8 icmp_code; /* ICMP: the code of the query that opened it (in its tuple) */
	/* Created while accounting was on (nf_conntrack_acct: the kernel adds the acct
	 * extension to new connections only): the counters below are kept. */
	__u8 acct;
	/* Created while some rule of the namespace used labels (nf_ct_labels_ext_add():
	 * the kernel adds the labels extension to new connections only then). */
	__u8 labels_ext;
	__u8 pad;
	/* Per direction (NS_CT_DIR_*): packets and bytes from the network header on, as
	 * nf_ct_acct_update() counts them when tracking refreshes the connection. */
	__u64 packets[2];
	__u64 bytes[2];
	__u64 labels[2]; /* label bits 0..127, as nf_conn_labels keeps them */
};

/* What tracking says about the packet being evaluated. */
struct ns_ct {
	struct ns_ct_key key;   /* the packet's flow (RELATED: the quoted packet's) */
	struct ns_ct_entry new; /* with pending: the entry to insert on accept */
	__u32 state_bit;        /* NS_CT_BIT_* */
	__u32 status;           /* of the connection, as rules see it */
	__u32 mark;
	__u8 has_ct;            /* new, established or related */
	__u8 pending;           /* a new connection, inserted if the packet is accepted */
	__u8 mark_set;          /* `ct mark set` ran: write mark back */
	__u8 observed;          /* tracked before (ns_conntrack): insert only if absent */
	/* With has_ct, for the ct keys read from the tuples (see ct_keys.h). */
	__u8 dir;               /* NS_CT_DIR_* of this packet (CTINFO2DIR) */
	__u8 a_is_orig;         /* the key's endpoint a is the original source */
	__u8 icmp_code;         /* ICMP: the code in the original tuple */
	__u8 acct;              /* the connection has counters (ct_entry.acct) */
	__u64 packets[2];       /* the connection's counters, this packet counted */
	__u64 bytes[2];
	__u64 labels[2];        /* the connection's label bits, with labels_ext */
	__u8 labels_ext;
	__u8 labels_set;        /* a label bit was set: OR them into the connection */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ns_ct_key);
	__type(value, struct ns_ct_entry);
	__uint(max_entries, 65536);
} ct_table SEC(".maps");

/* A fragmented datagram, by its first fragment's addresses, protocol and id. */
struct ns_frag_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 id;
	__u8 l3;
	__u8 l4proto;
	__u16 pad;
};

/* What tracking said about the first fragment. */
struct ns_frag_val {
	struct ns_ct_key key;
	__u32 state_bit;
	__u8 has_ct;
	__u8 dir; /* as struct ns_ct, for the ct keys */
	__u8 a_is_orig;
	__u8 icmp_code;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ns_frag_key);
	__type(value, struct ns_frag_val);
	__uint(max_entries, 4096);
} ct_frags SEC(".maps");

/* nf_conntrack_acct: set (never cleared) once a rule reading ct packets, bytes or
 * avgpkt is loaded in the namespace, as nft_ct_get_init() turns the sysctl on. Shared
 * by the namespace's programs, like ct_table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} ct_acct SEC(".maps");

/* The labels extension's switch (net->ct.labels_used != 0): on while some rule of the
 * namespace uses connection labels (xt_connlabel, nft `ct label`); the runtime writes
 * it with every generation. Shared by the namespace's programs, like ct_table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} ct_labels SEC(".maps");

NS_INLINE int ns_ct_labels_on(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&ct_labels, &zero);
	return on && *on;
}

#define NS_NSEC 1000000000ULL

NS_INLINE int ns_ct_acct_on(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&ct_acct, &zero);
	return on && *on;
}

/* nf_ct_acct_update(): counts the packet in direction dir of an entry with counters. */
NS_INLINE void ns_ct_count(struct ns_ct_entry *e, __u32 dir, const struct pkt_ctx *p)
{
	if (!e->acct)
		return;
	e->packets[dir & 1] += 1;
	e->bytes[dir & 1] += p->len;
}

/* The entry's counters, as rules read them. */
/* What rules read of the entry's extensions: counters and labels. */
NS_INLINE void ns_ct_copy_exts(struct ns_ct *c, const struct ns_ct_entry *e)
{
	c->labels_ext = e->labels_ext;
	c->labels[0] = e->labels[0];
	c->labels[1] = e->labels[1];
	c->acct = e->acct;
	c->packets[0] = e->packets[0];
	c->packets[1] = e->packets[1];
	c->bytes[0] = e->bytes[0];
	c->bytes[1] = e->bytes[1];
}

NS_INLINE __u64 ns_ct_deadline(__u64 now, __u32 timeout)
{
	return now + (__u64)cfg.ct_timeout[timeout & 15] * NS_NSEC;
}

/* The ICMP query type a query or reply belongs to, with *reply set for replies; 0 when
 * the type is neither (0 is never a query type). */
NS_INLINE __u8 ns_icmp_query(__u8 l3, __u8 type, int *reply)
{
	*reply = 0;
	if (l3 == NS_L3_IPV4) {
		if (type == 8 || type == 13 || type == 15 || type == 17)
			return type;
		if (type == 0 || type == 14 || type == 16 || type == 18) {
			*reply = 1;
			return type == 0 ? 8 : type - 1;
		}
		return 0;
	}
	if (type == 128 || type == 139)
		return type;
	if (type == 129 || type == 140) {
		*reply = 1;
		return type - 1;
	}
	return 0;
}

NS_INLINE int ns_addr_less(__u8 l3, const __u32 *x, const __u32 *y)
{
	if (l3 == NS_L3_IPV4)
		return bpf_ntohl(x[0]) < bpf_ntohl(y[0]);
	for (int i = 0; i < 4; i++) {
		if (x[i] != y[i])
			return bpf_ntohl(x[i]) < bpf_ntohl(y[i]);
	}
	return 0;
}

NS_INLINE int ns_addr_eq(__u8 l3, const __u32 *x, const __u32 *y)
{
	if (l3 == NS_L3_IPV4)
		return x[0] == y[0];
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* Fills key for a packet src:sport -> dst:dport of l4proto (icmp_type for ICMP).
 * Returns 1 when the packet comes from endpoint a, 0 from b, -1 when it cannot belong
 * to a flow (an ICMP type that is neither query nor reply). */
NS_INLINE int ns_ct_make_key(struct ns_ct_key *k, __u8 l3, __u8 l4proto, const __u32 *src,
			     const __u32 *dst, __u16 sport, __u16 dport, __u8 icmp_type)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->l3 = l3;
	k->l4proto = l4proto;
	if ((l3 == NS_L3_IPV4 && l4proto == 1) || (l3 == NS_L3_IPV6 && l4proto == 58)) {
		int reply;
		__u8 query = ns_icmp_query(l3, icmp_type, &reply);
		if (!query)
			return -1;
		k->icmp_type = query;
		k->pa = sport; /* the id */
		k->pb = sport;
		__builtin_memcpy(k->a, reply ? dst : src, 16);
		__builtin_memcpy(k->b, reply ? src : dst, 16);
		return !reply;
	}
	if (!ns_has_ports(l4proto))
		sport = dport = 0;
	int src_first = ns_addr_less(l3, src, dst) ||
			(ns_addr_eq(l3, src, dst) && sport <= dport);
	__builtin_memcpy(k->a, src_first ? src : dst, 16);
	__builtin_memcpy(k->b, src_first ? dst : src, 16);
	k->pa = src_first ? sport : dport;
	k->pb = src_first ? dport : sport;
	return src_first;
}

/* tcp_error()'s flag check and get_conntrack_index(): the packet kind, or -1 for a
 * flag combination conntrack calls invalid. */
NS_INLINE int ns_tcp_kind(__u8 flags)
{
	__u8 f = flags & ~(0x40 /* ECE */ | 0x80 /* CWR */ | TCP_PSH);
	switch (f) {
	case TCP_SYN:
	case TCP_SYN | TCP_URG:
		return NS_TCP_SYN_SET;
	case TCP_SYN | TCP_ACK:
		return NS_TCP_SYNACK_SET;
	case TCP_RST:
	case TCP_RST | TCP_ACK:
		return NS_TCP_RST_SET;
	case TCP_FIN | TCP_ACK:
	case TCP_FIN | TCP_ACK | TCP_URG:
		return NS_TCP_FIN_SET;
	case TCP_ACK:
	case TCP_ACK | TCP_URG:
		return NS_TCP_ACK_SET;
	}
	return -1;
}

NS_INLINE __u8 ns_tcp_step(__u32 dir, __u32 kind, __u32 state)
{
	if (dir > 1 || kind > 5 || state > 9)
		return sIV;
	return ns_tcp_next[dir][kind][state];
}

/* A packet of a connection that has no entry yet: what the entry to insert will be,
 * or 0 when conntrack cannot start a connection with it (INVALID). */
NS_INLINE int ns_ct_new(struct ns_ct *c, const struct pkt_ctx *p, int tcp_kind, int from_a,
			__u64 now)
{
	struct ns_ct_entry *n = &c->new;
	__builtin_memset(n, 0, sizeof(*n));
	n->a_is_orig = from_a;
	c->dir = NS_CT_DIR_ORIG;
	c->a_is_orig = from_a;
	if (c->key.icmp_type) {
		n->icmp_code = p->icmp_code;
		c->icmp_code = p->icmp_code;
	}
	if (p->l4proto == 6) {
		/* tcp_new(): SYN opens, a bare ACK is picked up mid-stream (loose). */
		__u8 st = ns_tcp_step(NS_CT_DIR_ORIG, tcp_kind, sNO);
		if (st != sSS && st != sES)
			return 0;
		n->tcp_state = st;
		__u32 timeout = st == sSS ? NS_CTT_TCP_SYN_SENT : NS_CTT_TCP_ESTABLISHED;
		/* Established without a reply: capped at the unacknowledged timeout. */
		if (st == sES && cfg.ct_timeout[timeout] > cfg.ct_timeout[NS_CTT_TCP_UNACK])
			timeout = NS_CTT_TCP_UNACK;
		n->expires = ns_ct_deadline(now, timeout);
	} else if (p->l4proto == 17 || p->l4proto == 136) {
		n->expires = ns_ct_deadline(now, NS_CTT_UDP_UNREPLIED);
		n->stream_ts = now + 2 * NS_NSEC;
	} else if (c->key.icmp_type) {
		n->expires = ns_ct_deadline(now, NS_CTT_ICMP);
	} else {
		n->expires = ns_ct_deadline(now, NS_CTT_GENERIC);
	}
	n->acct = ns_ct_acct_on();
	n->labels_ext = ns_ct_labels_on();
	ns_ct_count(n, NS_CT_DIR_ORIG, p);
	ns_ct_copy_exts(c, n);
	c->pending = 1;
	c->has_ct = 1;
	c->state_bit = NS_CT_BIT_NEW;
	return 1;
}

/* A packet of a connection with an entry: updates it as nf_conntrack does before the
 * filter chains. Returns 0 when the packet is INVALID, -1 when the entry must be
 * replaced by a new connection (TCP reopen), 1 otherwise. `observe`: the packet was
 * tracked, and counted, already (see ns_conntrack). */
NS_INLINE int ns_ct_update(struct ns_ct *c, struct ns_ct_entry *e, const struct pkt_ctx *p,
			   int tcp_kind, __u32 dir, __u64 now, int observe)
{
	__u32 before = e->status;
	c->has_ct = 1;
	c->state_bit = (dir == NS_CT_DIR_REPLY || (before & NS_IPS_SEEN_REPLY))
			       ? NS_CT_BIT_ESTABLISHED
			       : NS_CT_BIT_NEW;
	if (p->l4proto == 6) {
		__u8 old = e->tcp_state;
		__u8 st = ns_tcp_step(dir, tcp_kind, old);
		if (st == sSS && old >= sTW)
			return -1;
		if (st == sIV) {
			c->has_ct = 0;
			c->state_bit = NS_CT_BIT_INVALID;
			return 0;
		}
		if (st == sIG)
			goto seen;
		e->tcp_state = st;
		/* A SYN retransmitted (either way) before any reply: nf_conntrack neither
		 * renews the timeout nor counts it (a reused port must not keep the entry
		 * alive). */
		if (tcp_kind == NS_TCP_SYN_SET && old == sSS && !(before & NS_IPS_SEEN_REPLY))
			goto seen;
		__u32 timeout = ns_tcp_timeout[st > 9 ? 0 : st];
		if (tcp_kind == NS_TCP_RST_SET)
			timeout = NS_CTT_TCP_CLOSE;
		if (!(before & NS_IPS_SEEN_REPLY)) {
			if (st == sES && cfg.ct_timeout[timeout & 15] > cfg.ct_timeout[NS_CTT_TCP_UNACK])
				timeout = NS_CTT_TCP_UNACK;
		} else if (!(before & NS_IPS_ASSURED) && (old == sSR || old == sES) && st == sES) {
			e->status |= NS_IPS_ASSURED;
		}
		e->expires = ns_ct_deadline(now, timeout);
	} else if (p->l4proto == 17 || p->l4proto == 136) {
		__u32 timeout = NS_CTT_UDP_UNREPLIED;
		if ((before & NS_IPS_SEEN_REPLY) && now > e->stream_ts) {
			timeout = NS_CTT_UDP_REPLIED;
			e->status |= NS_IPS_ASSURED;
		}
		e->expires = ns_ct_deadline(now, timeout);
	} else {
		e->expires = ns_ct_deadline(now, c->key.icmp_type ? NS_CTT_ICMP : NS_CTT_GENERIC);
	}
	/* Counted where nf_ct_refresh_acct() runs: not for a TCP packet the state machine
	 * ignores (it returns before refreshing). */
	if (!observe)
		ns_ct_count(e, dir, p);
seen:
	if (dir == NS_CT_DIR_REPLY)
		e->status |= NS_IPS_SEEN_REPLY;
	c->status = e->status;
	c->mark = e->mark;
	ns_ct_copy_exts(c, e);
	return 1;
}

/* ICMP errors: RELATED when the quoted packet belongs to a tracked connection and the
 * error goes to that packet's sender (nf_conntrack_inet_error()). */
NS_INLINE void ns_ct_related(struct ns_ct *c, const struct pkt_ctx *p, __u64 now)
{
	if (!(p->flags & PKT_F_INNER))
		return;
	const struct pkt_inner *in = &p->inner;
	if (!ns_addr_eq(p->l3, p->daddr, in->saddr))
		return;
	int from_a = ns_ct_make_key(&c->key, p->l3, in->l4proto, in->saddr, in->daddr,
				    in->sport, in->dport, in->icmp_type);
	if (from_a < 0)
		return;
	struct ns_ct_entry *e = bpf_map_lookup_elem(&ct_table, &c->key);
	/* A dying entry is one the kernel has killed already (see `dying`). */
	if (!e || e->expires <= now || e->dying)
		return;
	/* The error answers the quoted packet: it goes the other way of the connection
	 * (nf_conntrack finds the quoted tuple inverted). */
	c->dir = from_a == e->a_is_orig ? NS_CT_DIR_REPLY : NS_CT_DIR_ORIG;
	c->a_is_orig = e->a_is_orig;
	c->icmp_code = e->icmp_code;
	c->has_ct = 1;
	c->state_bit = NS_CT_BIT_RELATED;
	c->status = e->status;
	c->mark = e->mark;
	/* An error is not counted: conntrack attaches it to the connection without
	 * refreshing it. */
	ns_ct_copy_exts(c, e);
}

/* ICMPv6 types conntrack leaves untracked: MLD and neighbour discovery
 * (noct_valid_new in nf_conntrack_proto_icmpv6.c). */
NS_INLINE int ns_icmpv6_untracked(__u8 type)
{
	return (type >= 130 && type <= 136) || type == 143;
}

NS_INLINE void ns_frag_key(struct ns_frag_key *k, const struct pkt_ctx *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
	k->id = p->frag_id;
	k->l3 = p->l3;
	k->l4proto = p->l4proto;
}

/* A later fragment: what its first fragment got, with the connection as it is now. */
NS_INLINE void ns_ct_later_fragment(struct ns_ct *c, const struct pkt_ctx *p, __u64 now)
{
	struct ns_frag_key fk;
	if (!p->has_frag_id || !(p->flags & PKT_F_L4PROTO))
		return;
	ns_frag_key(&fk, p);
	struct ns_frag_val *v = bpf_map_lookup_elem(&ct_frags, &fk);
	if (!v)
		return;
	c->key = v->key;
	c->state_bit = v->state_bit;
	c->has_ct = v->has_ct;
	c->dir = v->dir;
	c->a_is_orig = v->a_is_orig;
	c->icmp_code = v->icmp_code;
	if (!c->has_ct)
		return;
	struct ns_ct_entry *e = bpf_map_lookup_elem(&ct_table, &c->key);
	if (e && e->expires > now) {
		c->status = e->status;
		c->mark = e->mark;
		ns_ct_copy_exts(c, e);
	}
}

/* Remembers what a first fragment got, for the fragments after it. */
NS_INLINE void ns_ct_first_fragment(const struct ns_ct *c, const struct pkt_ctx *p)
{
	struct ns_frag_key fk;
	struct ns_frag_val v = {};
	if (!p->has_frag_id || !(p->flags & PKT_F_L4PROTO))
		return;
	ns_frag_key(&fk, p);
	v.key = c->key;
	v.state_bit = c->state_bit;
	v.has_ct = c->has_ct;
	v.dir = c->dir;
	v.a_is_orig = c->a_is_orig;
	v.icmp_code = c->icmp_code;
	bpf_map_update_elem(&ct_frags, &fk, &v, BPF_ANY);
}

/* Tracks the packet in e->pkt before the chains run; fills c. With `observe`, the
 * packet was tracked already (see ns_conntrack): the entry is updated on a copy, so
 * the state is what tracking said then, and the table is left as it is. */
NS_INLINE void ns_conntrack_packet(struct ns_ct *c, const struct pkt_ctx *p, __u64 now,
				   int observe)
{
	struct ns_ct_entry copy;
	if (p->l3 == NS_L3_NONE || !(p->flags & PKT_F_L4PROTO))
		return;
	if (p->flags & PKT_F_LATER_FRAG) {
		ns_ct_later_fragment(c, p, now);
		return;
	}

	int icmp = (p->l3 == NS_L3_IPV4 && p->l4proto == 1) ||
		   (p->l3 == NS_L3_IPV6 && p->l4proto == 58);
	int tcp_kind = 0;
	if (icmp) {
		if (!(p->flags & PKT_F_ICMPID))
			return;
		if (p->l3 == NS_L3_IPV6 && ns_icmpv6_untracked(p->icmp_type)) {
			c->state_bit = NS_CT_BIT_UNTRACKED;
			return;
		}
		if (ns_icmp_is_error(p->l3, p->icmp_type)) {
			ns_ct_related(c, p, now);
			return;
		}
	} else if (ns_has_ports(p->l4proto)) {
		if (!(p->flags & PKT_F_PORTS))
			return;
		if (p->l4proto == 6) {
			if (!(p->flags & PKT_F_TCPFLAGS))
				return;
			tcp_kind = ns_tcp_kind(p->tcp_flags);
			if (tcp_kind < 0)
				return;
		}
	}

	int from_a = ns_ct_make_key(&c->key, p->l3, p->l4proto, p->saddr, p->daddr,
				    icmp ? p->icmp_id : p->sport, p->dport, p->icmp_type);
	if (from_a < 0)
		return;
	struct ns_ct_entry *e = bpf_map_lookup_elem(&ct_table, &c->key);
	if (e && (e->expires <= now || (e->dying && !observe))) {
		if (!observe)
			bpf_map_delete_elem(&ct_table, &c->key);
		e = NULL;
	}
	if (e && observe) {
		copy = *e;
		if (copy.dying)
			bpf_map_delete_elem(&ct_table, &c->key);
		e = &copy;
	}
	if (e) {
		/* A flow from an endpoint to itself has one tuple: always the original. */
		int to_self = ns_addr_eq(p->l3, c->key.a, c->key.b) && c->key.pa == c->key.pb;
		__u32 dir = (from_a == e->a_is_orig || to_self) ? NS_CT_DIR_ORIG : NS_CT_DIR_REPLY;
		__u32 seen_before = e->status & NS_IPS_SEEN_REPLY;
		c->dir = dir;
		c->a_is_orig = e->a_is_orig;
		c->icmp_code = e->icmp_code;
		int r = ns_ct_update(c, e, p, tcp_kind, dir, now, observe);
		if (r > 0) {
			/* The only reply so far is a reset: nf_conntrack kills the entry
			 * (the packet keeps it; see `dying`). */
			if (p->l4proto == 6 && tcp_kind == NS_TCP_RST_SET && !seen_before &&
			    !observe)
				e->dying = 1;
			return;
		}
		if (r == 0)
			return;
		/* Reopened: the old connection goes, this packet starts a new one. */
		if (!observe)
			bpf_map_delete_elem(&ct_table, &c->key);
		c->has_ct = 0;
		c->status = 0;
		c->mark = 0;
	}
	/* Replies and ICMP replies cannot start a connection. */
	if (icmp && !from_a)
		return;
	if (!ns_ct_new(c, p, tcp_kind, from_a, now))
		c->state_bit = NS_CT_BIT_INVALID;
}

/* Tracks the packet before the chains run; fills c. `observe`: nf_conntrack tracks a
 * packet once (prerouting or output), but the shared table is met by every program on
 * the packet's way: a forwarded packet at its output device's egress, and a packet on
 * loopback at its ingress, were tracked already (at the input device's ingress, at
 * loopback's egress). They see the state that tracking gave them without changing the
 * connection again. */
NS_INLINE void ns_conntrack(struct ns_ct *c, const struct pkt_ctx *p, __u64 now, int observe)
{
	__builtin_memset(c, 0, sizeof(*c));
	c->state_bit = NS_CT_BIT_INVALID;
	ns_conntrack_packet(c, p, now, observe);
	c->observed = observe;
	if (!observe && (p->flags & PKT_F_FRAG) && !(p->flags & PKT_F_LATER_FRAG))
		ns_ct_first_fragment(c, p);
}

/* After the chains: inserts a new connection whose packet was accepted, and writes a
 * `ct mark set` back to the connection. An ingress insert is tentative (the packet may
 * be forwarded, and the forward chain may drop it); the egress a forwarded packet
 * reaches (observing) confirms it, or deletes it when that packet is dropped there. */
NS_INLINE void ns_ct_commit(struct ns_ct *c, int accepted)
{
	if (c->pending) {
		if (!accepted)
			return;
		c->new.status = NS_IPS_CONFIRMED;
		c->new.mark = c->mark;
		c->new.labels[0] = c->labels[0];
		c->new.labels[1] = c->labels[1];
		c->new.tentative = !c->observed && !cfg.egress;
		bpf_map_update_elem(&ct_table, &c->key, &c->new,
				    c->observed ? BPF_NOEXIST : BPF_ANY);
		return;
	}
	if (!c->has_ct)
		return;
	if (c->observed || c->mark_set || c->labels_set) {
		struct ns_ct_entry *e = bpf_map_lookup_elem(&ct_table, &c->key);
		if (!e)
			return;
		/* Only the packet that opened it decides (not a related ICMP error). */
		if (c->observed && e->tentative && c->state_bit == NS_CT_BIT_NEW) {
			if (!accepted) {
				bpf_map_delete_elem(&ct_table, &c->key);
				return;
			}
			e->tentative = 0;
		}
		if (c->mark_set)
			e->mark = c->mark;
		/* Bits are only ever set (set_bit()): other CPUs' bits stay. */
		if (c->labels_set) {
			__sync_fetch_and_or(&e->labels[0], c->labels[0]);
			__sync_fetch_and_or(&e->labels[1], c->labels[1]);
		}
	}
}

#endif
