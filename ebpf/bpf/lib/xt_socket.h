/* SPDX-License-Identifier: GPL-2.0 */
/* xt_socket's lookup (net/netfilter/xt_socket.c, nf_socket_ipv4.c, nf_socket_ipv6.c),
 * residual operation 100 (range 100-104), run from lib/residual.h. Only the compiler's
 * PREROUTING and INPUT (TC ingress) use it. The reference (src/reference.rs) has no
 * sockets: like a namespace without them, the match fails there.
 *
 * nf_sk_lookup_slow_v4/v6(): the socket of a TCP or UDP packet (its header whole:
 * 20 bytes of TCP, 8 of UDP) by the packet's addresses and ports; of an ICMP(v6)
 * error, the socket that sent the quoted TCP or UDP packet (its tuple reversed);
 * nothing for other protocols. TCP asks __inet_lookup() (established, timewait and
 * request sockets, then listeners), UDP __udp4/6_lib_lookup(), in the namespace of
 * the input device with dif = its ifindex. bpf_skc_lookup_tcp() and
 * bpf_sk_lookup_udp() at TC ingress and XDP run the same lookups (sk_lookup() in
 * net/core/filter.c) with the same net and dif; skc returns timewait and request
 * sockets as they are, which xt_socket counts as found and never as wildcard (not
 * sk_fullsock()). The match holds when a socket is found and, unless
 * XT_SOCKET_NOWILDCARD, it is not a full socket bound to the any address.
 * Fragments: see ns_xt_socket below. */
#ifndef NS_XT_SOCKET_H
#define NS_XT_SOCKET_H

#include "common.h"

#define NS_XT_SOCKET_NOWILDCARD 1 /* the operation's flags bit */
#define NS_TCP_TIME_WAIT 6
#define NS_TCP_NEW_SYN_RECV 12

/* A fragmented datagram: its addresses, protocol and identification. */
struct ns_xt_socket_frag_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 id;
	__u8 nfproto;
	__u8 l4proto;
	__u16 pad;
};

/* What the lookup found for a datagram's first fragment. */
struct ns_xt_socket_frag_val {
	__u8 found;
	__u8 wildcard; /* a full socket bound to the any address */
};

/* The lookup's tuple and the bytes read to build it, per CPU (kept off the stack,
 * which the residual VM's call chain nearly fills). */
struct ns_xt_socket_scratch {
	struct bpf_sock_tuple tuple;
	__u8 buf[40];
	struct ns_xt_socket_frag_key frag;
};

/* xt_socket_frags: the first fragment's answer, for the later fragments of its
 * datagram (which carry no ports). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ns_xt_socket_frag_key);
	__type(value, struct ns_xt_socket_frag_val);
	__uint(max_entries, 4096);
} xt_socket_frags SEC(".maps");

/* xt_socket_scratch: the tuple and header bytes of the lookup running on this CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_xt_socket_scratch);
	__uint(max_entries, 1);
} xt_socket_scratch SEC(".maps");

NS_INLINE int ns_xt_socket_load(struct ns_res_state *rs, struct ns_hook *hk, __u32 off,
				__u8 *to, __u32 len)
{
	if (off + len > rs->end || off + len < off)
		return -1;
	return ns_hook_load(hk, off, to, len) < 0 ? -1 : 0;
}

/* icmp_is_err(): destination unreachable, source quench, redirect, time exceeded,
 * parameter problem. */
NS_INLINE int ns_xt_socket_icmp_err(__u8 type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

/* Fills the tuple from the packet (1), or finds that nf_sk_lookup_slow_v4/v6() looks
 * nothing up (0). Sets *proto to TCP or UDP. */
static __attribute__((noinline)) int ns_xt_socket_tuple(struct ns_res_state *rs,
							struct ns_hook *hk,
							struct ns_xt_socket_scratch *s,
							__u8 *proto)
{
	if (!rs || !s || !rs->nh || !rs->xp_has_l4proto || !rs->xp_th)
		return 0;
	__u8 l4 = rs->xp_l4proto;
	__u32 th = rs->xp_th, nh = rs->nh;
	__u8 *b = s->buf;
	int v6 = rs->nfproto == 10;
	if (l4 == 6 || l4 == 17) {
		/* skb_header_pointer() of a struct tcphdr or udphdr. */
		if (ns_xt_socket_load(rs, hk, th, b, l4 == 6 ? 20 : 8) < 0)
			return 0;
		if (v6) {
			if (ns_xt_socket_load(rs, hk, nh + 8, (__u8 *)s->tuple.ipv6.saddr, 32) < 0)
				return 0;
			__builtin_memcpy(&s->tuple.ipv6.sport, b, 2);
			__builtin_memcpy(&s->tuple.ipv6.dport, b + 2, 2);
		} else {
			if (ns_xt_socket_load(rs, hk, nh + 12, (__u8 *)&s->tuple.ipv4.saddr, 8) < 0)
				return 0;
			__builtin_memcpy(&s->tuple.ipv4.sport, b, 2);
			__builtin_memcpy(&s->tuple.ipv4.dport, b + 2, 2);
		}
		*proto = l4;
		return 1;
	}
	if (!v6 && l4 == 1) {
		/* extract_icmp4_fields(): the quoted header follows the 8-byte ICMP header;
		 * its ports follow its own ihl, whatever that says. */
		if (ns_xt_socket_load(rs, hk, th, b, 8) < 0 || !ns_xt_socket_icmp_err(b[0]))
			return 0;
		if (ns_xt_socket_load(rs, hk, th + 8, b, 20) < 0)
			return 0;
		__u8 inner = b[9];
		if (inner != 6 && inner != 17)
			return 0;
		/* Quoted from our side: its source is the local end. */
		__builtin_memcpy(&s->tuple.ipv4.saddr, b + 16, 4);
		__builtin_memcpy(&s->tuple.ipv4.daddr, b + 12, 4);
		__u32 ports = th + 8 + (b[0] & 0xf) * 4;
		if (ns_xt_socket_load(rs, hk, ports, b, 4) < 0)
			return 0;
		__builtin_memcpy(&s->tuple.ipv4.sport, b + 2, 2);
		__builtin_memcpy(&s->tuple.ipv4.dport, b, 2);
		*proto = inner;
		return 1;
	}
	if (v6 && l4 == 58) {
		/* extract_icmp6_fields(): not an informational message; the quoted IPv6
		 * header, its extension headers skipped by ipv6_skip_exthdr(). */
		if (ns_xt_socket_load(rs, hk, th, b, 8) < 0 || (b[0] & 0x80))
			return 0;
		if (ns_xt_socket_load(rs, hk, th + 8, b, 40) < 0)
			return 0;
		__builtin_memcpy(s->tuple.ipv6.saddr, b + 24, 16);
		__builtin_memcpy(s->tuple.ipv6.daddr, b + 8, 16);
		rs->sc_type = b[6];
		rs->sc_off = th + 48;
		rs->sc_at = 0;
		rs->sc_len = 0;
		__u32 steps = rs->end > th + 48 ? (rs->end - th - 48) / 8 + 2 : 2;
		bpf_loop(steps, ns_ebt_skip_step, hk, 0);
		if (!rs->sc_at || rs->sc_len)
			return 0;
		__u8 inner = rs->sc_type;
		if (inner != 6 && inner != 17)
			return 0;
		if (ns_xt_socket_load(rs, hk, rs->sc_off, b, 4) < 0)
			return 0;
		__builtin_memcpy(&s->tuple.ipv6.sport, b + 2, 2);
		__builtin_memcpy(&s->tuple.ipv6.dport, b, 2);
		*proto = inner;
		return 1;
	}
	return 0;
}

/* socket_match()'s wildcard: a full socket (sk_fullsock(): not timewait or request;
 * XDP has no bpf_sk_fullsock(), the state is a field of struct sock_common) bound to
 * the any address (inet_rcv_saddr == 0, ipv6_addr_any(&sk->sk_v6_rcv_saddr)). */
#define NS_XT_SOCKET_WILDCARD(sk, v6, check, wildcard)                                       \
	do {                                                                                 \
		__u32 state_ = (sk)->state;                                                  \
		if ((check) && state_ != NS_TCP_TIME_WAIT && state_ != NS_TCP_NEW_SYN_RECV) { \
			if (v6)                                                              \
				(wildcard) = ((sk)->src_ip6[0] | (sk)->src_ip6[1] |          \
					      (sk)->src_ip6[2] | (sk)->src_ip6[3]) == 0;     \
			else                                                                 \
				(wildcard) = (sk)->src_ip4 == 0;                             \
		}                                                                            \
	} while (0)

/* The key of the packet's datagram (rs->frag set): 0, or -1 if unreadable. */
NS_INLINE int ns_xt_socket_frag_key(struct ns_res_state *rs, struct ns_hook *hk,
				    struct ns_xt_socket_frag_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->id = rs->frag_id;
	k->nfproto = rs->nfproto;
	k->l4proto = rs->xp_l4proto;
	if (rs->nfproto == 10)
		return ns_xt_socket_load(rs, hk, rs->nh + 8, (__u8 *)k->saddr, 32);
	if (ns_xt_socket_load(rs, hk, rs->nh + 12, (__u8 *)k->saddr, 4) < 0)
		return -1;
	return ns_xt_socket_load(rs, hk, rs->nh + 16, (__u8 *)k->daddr, 4);
}

/* NS_RES_XT_SOCKET: 1 when socket_match() holds, else 0.
 *
 * Fragments: xt_socket turns defragmentation on, so the kernel looks up the
 * reassembled datagram, by its first fragment's ports. Here the first fragment's
 * answer is remembered by datagram (addresses, protocol, id) and given to its later
 * fragments; a later fragment that arrives before its first one finds no socket (as
 * connection tracking here calls it INVALID). */
NS_INLINE int ns_xt_socket(struct ns_res_state *rs, const struct ns_res_insn *in,
			   struct ns_hook *hk)
{
	__u32 zero = 0;
	struct ns_xt_socket_scratch *s = bpf_map_lookup_elem(&xt_socket_scratch, &zero);
	if (!s)
		return -1;
	int check = !(in->flags & NS_XT_SOCKET_NOWILDCARD);
	if (rs->frag == 2) {
		if (ns_xt_socket_frag_key(rs, hk, &s->frag) < 0)
			return 0;
		struct ns_xt_socket_frag_val *v = bpf_map_lookup_elem(&xt_socket_frags, &s->frag);
		return v && v->found && !(check && v->wildcard);
	}
	__builtin_memset(&s->tuple, 0, sizeof(s->tuple));
	__u8 proto = 0;
	if (!ns_xt_socket_tuple(rs, hk, s, &proto))
		return 0;
	int v6 = rs->nfproto == 10;
	__u32 size = v6 ? sizeof(s->tuple.ipv6) : sizeof(s->tuple.ipv4);
	struct ns_xt_socket_frag_val found = {};
	/* A TCP lookup's socket is a struct sock_common, UDP's a struct sock: the loads
	 * of each stay in their own branch (the verifier refuses one load instruction
	 * for both pointer types; the distinct instructions at the branches' ends keep
	 * the compiler from merging their tails). */
	if (proto == 6) {
		struct bpf_sock *sk =
			bpf_skc_lookup_tcp(hk->ctx, &s->tuple, size, BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			int wildcard = 0;
			NS_XT_SOCKET_WILDCARD(sk, v6, 1, wildcard);
			bpf_sk_release(sk);
			found.found = 1;
			found.wildcard = wildcard;
			asm volatile("r1 = 6" ::: "r1", "memory");
		}
	} else {
		struct bpf_sock *sk =
			bpf_sk_lookup_udp(hk->ctx, &s->tuple, size, BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			int wildcard = 0;
			NS_XT_SOCKET_WILDCARD(sk, v6, 1, wildcard);
			bpf_sk_release(sk);
			found.found = 1;
			found.wildcard = wildcard;
			asm volatile("r1 = 17" ::: "r1", "memory");
		}
	}
	if (rs->frag == 1 && ns_xt_socket_frag_key(rs, hk, &s->frag) == 0)
		bpf_map_update_elem(&xt_socket_frags, &s->frag, &found, BPF_ANY);
	return found.found && !(check && found.wildcard);
}

#endif
