/* SPDX-License-Identifier: GPL-2.0-only */
/* The `ct` keys residual programs load (NS_RES_CT), with nft_ct_get_eval()'s values:
 * state, status and mark; the packet's direction; the connection's l3 and l4 protocol,
 * the addresses and "proto" fields (ports, ICMP id and type/code) of either direction's
 * tuple; zone (always 0 here: zone templates are refused); labels (the bits
 * xt_connlabel --set put there); packets, bytes and avgpkt (the connection's counters, conntrack.h);
 * helper (never set here: no helpers, so no expected connections).
 * Without a connection (INVALID, UNTRACKED) every key but state breaks the rule.
 *
 * The tuples come from the tracker's key (conntrack.h): endpoints in a fixed order,
 * the entry saying which one is the original source. The kernel's tuple has ports for
 * TCP, UDP, UDP-Lite and SCTP; the ICMP id and (destination) type and code for ICMP
 * queries; nothing (0) for the protocols it tracks generically (DCCP in 6.18 too). */
#ifndef NFTSHIM_CT_KEYS_H
#define NFTSHIM_CT_KEYS_H

#include "common.h"
#include "conntrack.h"

/* enum nft_ct_keys (uapi nf_tables.h). */
#define NS_CTK_STATE 0
#define NS_CTK_DIRECTION 1
#define NS_CTK_STATUS 2
#define NS_CTK_MARK 3
#define NS_CTK_HELPER 6
#define NS_CTK_L3PROTOCOL 7
#define NS_CTK_SRC 8
#define NS_CTK_DST 9
#define NS_CTK_PROTOCOL 10
#define NS_CTK_PROTO_SRC 11
#define NS_CTK_PROTO_DST 12
#define NS_CTK_LABELS 13
#define NS_CTK_PKTS 14
#define NS_CTK_BYTES 15
#define NS_CTK_AVGPKT 16
#define NS_CTK_ZONE 17
#define NS_CTK_SRC_IP 19
#define NS_CTK_DST_IP 20
#define NS_CTK_SRC_IP6 21
#define NS_CTK_DST_IP6 22
#define NS_CTK_HAS_COUNTERS 64 /* not nft's: 1 when the connection has counters */

/* The packet's connection as the ct keys see it, copied when a residual program
 * starts (the program runs in a callback that has no pointer to the tracking state). */
struct ns_res_ct {
	__u32 state;  /* 1 << NS_CT_BIT_* */
	__u32 status;
	__u32 mark;
	__u8 has;     /* a connection (ct != NULL) */
	__u8 dir;     /* NS_CT_DIR_* of the packet */
	__u8 nfproto; /* of the connection: 2 or 10 */
	__u8 proto;
	__u8 addr[2][16]; /* the original tuple's source and destination address */
	__u8 l4[2][4];    /* per direction's tuple: src.u.all, dst.u.all (network order) */
	__u8 val[16];     /* the value being loaded */
	__u64 packets[2]; /* per direction, with acct */
	__u64 bytes[2];
	__u8 acct;        /* the connection has counters */
	__u8 pad[7];
	__u64 labels[2];  /* the label bits (0 without the labels extension) */
};

/* The reply type of an ICMP/ICMPv6 query type (the kernel's invmap). */
NS_INLINE __u8 ns_icmp_reply_type(__u8 nfproto, __u8 query)
{
	if (nfproto == 2)
		return query == 8 ? 0 : query + 1;
	return query + 1; /* 128 -> 129, 139 -> 140 */
}

NS_INLINE void ns_ct_put16(__u8 *to, __u16 v)
{
	to[0] = v >> 8;
	to[1] = v;
}

/* Copies what the ct keys read of tracking state ct. */
NS_INLINE void ns_res_ct_fill(struct ns_res_ct *r, const struct ns_ct *ct)
{
	const struct ns_ct_key *k = &ct->key;
	r->state = 1u << (ct->state_bit & 31);
	r->status = ct->status;
	r->mark = ct->mark;
	r->has = ct->has_ct;
	if (!ct->has_ct)
		return;
	r->acct = ct->acct;
	r->labels[0] = ct->labels_ext ? ct->labels[0] : 0;
	r->labels[1] = ct->labels_ext ? ct->labels[1] : 0;
	r->packets[0] = ct->packets[0];
	r->packets[1] = ct->packets[1];
	r->bytes[0] = ct->bytes[0];
	r->bytes[1] = ct->bytes[1];
	r->dir = ct->dir;
	r->nfproto = k->l3 == NS_L3_IPV4 ? 2 : 10;
	r->proto = k->l4proto;
	int a_orig = ct->a_is_orig;
	__builtin_memcpy(r->addr[0], a_orig ? k->a : k->b, 16);
	__builtin_memcpy(r->addr[1], a_orig ? k->b : k->a, 16);
	__builtin_memset(r->l4, 0, sizeof(r->l4));
	if (k->icmp_type) {
		/* A query: the id in both tuples, the query type, then its reply's. */
		ns_ct_put16(r->l4[0], k->pa);
		ns_ct_put16(r->l4[1], k->pa);
		r->l4[0][2] = k->icmp_type;
		r->l4[1][2] = ns_icmp_reply_type(r->nfproto, k->icmp_type);
		r->l4[0][3] = ct->icmp_code;
		r->l4[1][3] = ct->icmp_code;
		return;
	}
	__u8 p = k->l4proto;
	if (p != 6 && p != 17 && p != 136 && p != 132)
		return;
	__u16 sport = a_orig ? k->pa : k->pb;
	__u16 dport = a_orig ? k->pb : k->pa;
	ns_ct_put16(r->l4[0], sport);
	ns_ct_put16(r->l4[0] + 2, dport);
	ns_ct_put16(r->l4[1], dport);
	ns_ct_put16(r->l4[1] + 2, sport);
}

NS_INLINE void ns_put_host32(__u8 *to, __u32 v)
{
	to[0] = v;
	to[1] = v >> 8;
	to[2] = v >> 16;
	to[3] = v >> 24;
}

NS_INLINE void ns_put_host64(__u8 *to, __u64 v)
{
	for (int i = 0; i < 8; i++)
		to[i] = v >> (8 * i);
}

/* nft_ct_get_eval()'s packets, bytes and avgpkt: of direction d, or of both with
 * `both`; 0 for a connection without counters. */
NS_INLINE __u64 ns_ct_counter(const struct ns_res_ct *r, __u32 key, __u32 d, __u32 both)
{
	if (!r->acct)
		return 0;
	__u64 pkts = r->packets[d & 1], bytes = r->bytes[d & 1];
	if (both) {
		pkts = r->packets[0] + r->packets[1];
		bytes = r->bytes[0] + r->bytes[1];
	}
	if (key == NS_CTK_PKTS)
		return pkts;
	if (key == NS_CTK_BYTES)
		return bytes;
	return pkts ? bytes / pkts : 0;
}

/* Puts key's value for the tuple of direction `reply` (bit 0; bit 1: both directions,
 * for the counters) into r->val: its length, 0 when nft_ct_get_eval() breaks, -1 for
 * a key the builder does not emit. */
static __attribute__((noinline)) int ns_ct_key_value(struct ns_res_ct *r, __u32 key, __u32 reply)
{
	__u32 d = reply & 1;
	__u8 *v = r->val;
	if (key == NS_CTK_STATE) {
		ns_put_host32(v, r->state);
		return 4;
	}
	if (!r->has)
		return 0;
	switch (key) {
	case NS_CTK_DIRECTION:
		v[0] = r->dir;
		return 1;
	case NS_CTK_STATUS:
		ns_put_host32(v, r->status);
		return 4;
	case NS_CTK_MARK:
		ns_put_host32(v, r->mark);
		return 4;
	case NS_CTK_HELPER:
		return 0;
	case NS_CTK_L3PROTOCOL:
		v[0] = r->nfproto;
		return 1;
	case NS_CTK_PROTOCOL:
		v[0] = r->proto;
		return 1;
	case NS_CTK_ZONE:
		v[0] = 0;
		v[1] = 0;
		return 2;
	case NS_CTK_LABELS:
		/* nft_ct_get_eval(): the bits, or zeros without the labels extension. */
		__builtin_memcpy(v, r->labels, 16);
		return 16;
	case NS_CTK_HAS_COUNTERS:
		if (!r->acct)
			return 0;
		v[0] = 1;
		return 1;
	case NS_CTK_PKTS:
	case NS_CTK_BYTES:
	case NS_CTK_AVGPKT:
		ns_put_host64(v, ns_ct_counter(r, key, d, reply & 2));
		return 8;
	case NS_CTK_PROTO_SRC:
	case NS_CTK_PROTO_DST: {
		__u32 at = key == NS_CTK_PROTO_DST ? 2 : 0;
		v[0] = r->l4[d][at];
		v[1] = r->l4[d][at + 1];
		return 2;
	}
	case NS_CTK_SRC_IP:
	case NS_CTK_DST_IP:
		if (r->nfproto != 2)
			return 0;
		break;
	case NS_CTK_SRC_IP6:
	case NS_CTK_DST_IP6:
		if (r->nfproto != 10)
			return 0;
		break;
	case NS_CTK_SRC:
	case NS_CTK_DST:
		break;
	default:
		return -1;
	}
	/* An address: the source of direction d's tuple is the original's source (d 0)
	 * or destination (d 1). */
	int src = key == NS_CTK_SRC || key == NS_CTK_SRC_IP || key == NS_CTK_SRC_IP6;
	__u32 which = src ? d : d ^ 1;
	__builtin_memcpy(v, r->addr[which & 1], 16);
	return r->nfproto == 2 ? 4 : 16;
}

#endif
