/* SPDX-License-Identifier: GPL-2.0 */
/* NFULA_UID/NFULA_GID of an nfnetlink_log message at NF_INET_LOCAL_IN, at TC ingress.
 *
 * __build_packet_message() reads skb->sk (a full socket with a file: its file's fsuid
 * and fsgid). At LOCAL_IN skb->sk is the socket early demux attached in
 * ip_rcv_finish_core() / ip6_rcv_finish_core(), after PREROUTING, when
 * net.ipv4.ip_early_demux is on, the skb has no dst and no socket, and (IPv4) it is
 * not a fragment; by the protocol in the IP header (IPv6: the next header right after
 * the fixed header):
 * - TCP (net.ipv4.tcp_early_demux; tcp_v4/v6_early_demux()): PACKET_HOST, the whole
 *   20-byte header there, doff >= 5, and the established hash's socket of the tuple
 *   (established, timewait or request socket; only the first has creds);
 * - UDP (net.ipv4.udp_early_demux; udp_v4/v6_early_demux()): PACKET_HOST, the 8-byte
 *   header there, and a socket connected to exactly the packet's tuple; IPv4
 *   PACKET_MULTICAST: the one socket of the port the group's datagram goes to.
 * The compiler refuses a namespace whose early demux sysctls are off or that has VRF
 * devices (early demux looks a port's packets up under the VRF device; compile::nflog);
 * the loopback device's packets keep the dst of their output route (loopback_xmit),
 * so they are never demuxed.
 *
 * Here the same sockets are looked up with bpf_skc_lookup_tcp() / bpf_sk_lookup_udp()
 * (the skb's namespace, dif = the input device), which run __inet_lookup() /
 * __udp4/6_lib_lookup(): their first answer for TCP is the established hash's socket,
 * else a listener (which early demux does not attach); for UDP the best-scoring socket,
 * kept only when its addresses and ports are the packet's, reversed (connected), or for
 * an IPv4 multicast datagram whatever socket it finds. The reference is released
 * before returning. */
#ifndef NS_NFLOG_DEMUX_H
#define NS_NFLOG_DEMUX_H

#include "common.h"
#include "parse.h"
#include "eval.h"
#include "sockcred.h"

#define NS_DEMUX_TCP_LISTEN 10
#define NS_DEMUX_PACKET_HOST 0
#define NS_DEMUX_PACKET_MULTICAST 2

struct ns_nflog_demux_scratch {
	struct bpf_sock_tuple tuple;
	__u8 th[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_nflog_demux_scratch);
	__uint(max_entries, 1);
} nflog_demux_scratch SEC(".maps");

/* The socket file's creds of a full socket `full` (a bpf_sock from a lookup, still
 * referenced), as ns_sockcred_read() walks them. */
NS_INLINE int ns_nflog_demux_file(struct bpf_sock *full, struct ns_sockcred *out)
{
	/* The verifier forbids arithmetic on socket pointers; stored to and loaded from
	 * map memory, the same bits are a plain number. */
	*(volatile __u64 *)&out->tmp = (__u64)(unsigned long)full;
	return ns_sockcred_of_sock(*(volatile __u64 *)&out->tmp, out);
}

/* NS_SOCKCRED_* of the socket early demux would attach to the packet (see above);
 * with NS_SOCKCRED_FILE, out->fsuid/fsgid. TC ingress only. */
static __noinline int ns_nflog_demux(struct __sk_buff *skb, struct ns_sockcred *out)
{
	__u32 zero = 0;
	struct ns_eval *e = ns_eval_state();
	struct ns_nflog_demux_scratch *s = bpf_map_lookup_elem(&nflog_demux_scratch, &zero);
	if (!e || !s || !out || cfg.egress || cfg.loopback_ingress)
		return NS_SOCKCRED_NONE;
	out->fsuid = 0;
	out->fsgid = 0;
	struct pkt_ctx *p = &e->pkt;
	__u8 need = PKT_F_L4PROTO | PKT_F_PORTS;
	if ((p->flags & need) != need || (p->flags & PKT_F_FRAG))
		return NS_SOCKCRED_NONE;
	__u8 proto = p->l4proto;
	if (proto != 6 && proto != 17)
		return NS_SOCKCRED_NONE;
	int v6 = p->l3 == NS_L3_IPV6;
	if (!v6 && p->l3 != NS_L3_IPV4)
		return NS_SOCKCRED_NONE;
	/* ip6_rcv_finish_core() switches on the fixed header's next header. */
	if (v6 && p->l4_off != p->l3_off + 40)
		return NS_SOCKCRED_NONE;
	__u32 pkt_type = skb->pkt_type;
	int mcast = 0;
	if (pkt_type == NS_DEMUX_PACKET_MULTICAST && proto == 17 && !v6)
		mcast = 1;
	else if (pkt_type != NS_DEMUX_PACKET_HOST)
		return NS_SOCKCRED_NONE;
	/* pskb_may_pull() of the transport header (skb->len: the IP datagram). */
	__u32 hl = proto == 6 ? 20 : 8;
	if ((__u32)p->l4_off + hl > (__u32)p->l3_off + p->len)
		return NS_SOCKCRED_NONE;
	if (proto == 6) {
		if (bpf_skb_load_bytes(skb, p->l4_off + 12, s->th, 1) < 0 || (s->th[0] >> 4) < 5)
			return NS_SOCKCRED_NONE;
	}
	__u32 size;
	if (v6) {
		__builtin_memcpy(s->tuple.ipv6.saddr, p->saddr, 16);
		__builtin_memcpy(s->tuple.ipv6.daddr, p->daddr, 16);
		s->tuple.ipv6.sport = bpf_htons(p->sport);
		s->tuple.ipv6.dport = bpf_htons(p->dport);
		size = sizeof(s->tuple.ipv6);
	} else {
		s->tuple.ipv4.saddr = p->saddr[0];
		s->tuple.ipv4.daddr = p->daddr[0];
		s->tuple.ipv4.sport = bpf_htons(p->sport);
		s->tuple.ipv4.dport = bpf_htons(p->dport);
		size = sizeof(s->tuple.ipv4);
	}
	struct bpf_sock *sk;
	if (proto == 6)
		sk = bpf_skc_lookup_tcp(skb, &s->tuple, size, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(skb, &s->tuple, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return NS_SOCKCRED_NONE;
	int attached;
	if (proto == 6) {
		attached = sk->state != NS_DEMUX_TCP_LISTEN;
	} else if (mcast) {
		attached = 1;
	} else if (v6) {
		attached = sk->dst_port == s->tuple.ipv6.sport &&
			   sk->src_port == p->dport && sk->dst_ip6[0] == p->saddr[0] &&
			   sk->dst_ip6[1] == p->saddr[1] && sk->dst_ip6[2] == p->saddr[2] &&
			   sk->dst_ip6[3] == p->saddr[3] && sk->src_ip6[0] == p->daddr[0] &&
			   sk->src_ip6[1] == p->daddr[1] && sk->src_ip6[2] == p->daddr[2] &&
			   sk->src_ip6[3] == p->daddr[3];
	} else {
		attached = sk->dst_port == s->tuple.ipv4.sport && sk->src_port == p->dport &&
			   sk->dst_ip4 == p->saddr[0] && sk->src_ip4 == p->daddr[0];
	}
	int ret = NS_SOCKCRED_NONE;
	if (attached) {
		/* sk_fullsock(): not a timewait or request socket. */
		struct bpf_sock *full = bpf_sk_fullsock(sk);
		if (full)
			ret = ns_nflog_demux_file(full, out);
	}
	bpf_sk_release(sk);
	return ret;
}

#endif
