/* SPDX-License-Identifier: GPL-2.0-only */
/* `reject`: the packet is turned into the answer and sent back where it came from (TC
 * ingress: out of the same device; TC egress: into the local stack, or for a forwarded
 * packet by the route back, ns_route_fwd_answer(); XDP: XDP_TX), as
 * nf_reject_ipv4/ipv6 build them:
 * - TCP reset: no answer to a reset or a non-first fragment; seq/ack from the segment
 *   (its ack number if it had ACK, else ACK of seq + SYN + FIN + payload); IPv4 DF, TTL
 *   and hop limit 64, no options.
 * - ICMP/ICMPv6 destination unreachable with the rule's code, quoting the packet from
 *   its network header (up to 576 / 1280 bytes of answer); none to ICMP errors, non-
 *   first fragments, multicast or broadcast destinations, or unusable IPv6 sources.
 *   TOS of an IPv4 answer as icmp_send() (precedence "internet control").
 * Simplified: the answer's source is the rejected packet's destination (forwarded
 * packets' ICMP errors: the route back's, as the kernel's); the link-layer
 * header is the packet's with the MAC addresses swapped (VLAN tags kept); checksums of
 * the rejected packet are not verified; IPv4 ID 0, ICMPv6 flow label 0 (the kernel's
 * are hashes); no IPv4 options echoed; no ICMP rate limit. */
#ifndef NFTSHIM_REJECT_H
#define NFTSHIM_REJECT_H

#include "common.h"
#include "parse.h"

/* The rule's `arg` for NS_REJECT: kind, then the ICMP and ICMPv6 codes. Same encoding
 * as Rust `maps::reject_arg`. */
#define NS_REJECT_ICMP 0
#define NS_REJECT_TCP_RST 1

#define NS_MAX_L2 22          /* Ethernet + two VLAN tags */
#define NS_QUOTE_CHUNK 256
#define NS_QUOTE_CHUNKS 5
#define NS_QUOTE_MAX_V4 548   /* 576 - 20 - 8 */
#define NS_QUOTE_MAX_V6 1232  /* 1280 - 40 - 8 */

/* The answer being built. */
struct ns_reply {
	__u8 l2[24];
	__u8 hdr[64];   /* new network + transport (or ICMP) header */
	__u8 tcp_in[20];/* the rejected segment's TCP header */
	__u8 pseudo[40];
	__u32 hdr_len;
	__u32 quote_len;
	/* The quote, zero padded to a whole chunk, for its checksum. */
	__u8 buf[NS_QUOTE_CHUNK * NS_QUOTE_CHUNKS] __attribute__((aligned(8)));
	/* The route back (ns_route_answer): here rather than on the 512-byte stack, which
	 * the chain loop and residual programs below the entry point already use. */
	struct bpf_fib_lookup fib;
};

/* Zeroes r->buf from the 8-byte word holding byte q to the end of q's chunk, before
 * the quote (q bytes) is loaded: the checksum sums whole chunks. */
NS_INLINE void ns_zero_padding(struct ns_reply *r, __u32 q)
{
	__u32 start = q & ~7u;
	for (__u32 i = 0; i < NS_QUOTE_CHUNK / 8 + 1; i++) {
		__u64 off = start + i * 8;
		/* Hidden from clang, which would otherwise check one register and index
		 * with another whose bounds the verifier does not know. */
		asm volatile("" : "+r"(off));
		if (off > sizeof(r->buf) - 8)
			break;
		*(__u64 *)(r->buf + off) = 0;
	}
}

NS_INLINE __u16 ns_csum_fold(__u32 sum)
{
	__u32 s = (sum & 0xffff) + (sum >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s & 0xffff;
}

/* One's complement sum of len bytes (a multiple of 4, at most 512) of buf, from seed. */
NS_INLINE __u32 ns_csum_add(void *buf, __u32 len, __u32 seed)
{
	return (__u32)bpf_csum_diff(NULL, 0, buf, len, seed);
}

NS_INLINE void ns_put16(__u8 *b, __u16 v)
{
	b[0] = v >> 8;
	b[1] = v;
}

NS_INLINE void ns_put32(__u8 *b, __u32 v)
{
	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

NS_INLINE __u32 ns_get32(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

NS_INLINE int ns_v4_multicast_or_broadcast(__u32 addr_be)
{
	__u32 a = bpf_ntohl(addr_be);
	return (a >> 28) == 0xe || a == 0xffffffff;
}

NS_INLINE int ns_v6_unicast(const __u32 *a)
{
	int any = !a[0] && !a[1] && !a[2] && !a[3];
	return !any && (bpf_ntohl(a[0]) >> 24) != 0xff;
}

/* Writes the answer's IP header (payload of `payload` bytes of protocol `proto`) at
 * r->hdr; returns its length. */
NS_INLINE __u32 ns_reply_ip(struct ns_reply *r, const struct pkt_ctx *p, __u8 proto,
			    __u32 payload, __u8 tos, __u16 frag_off)
{
	__u8 *h = r->hdr;
	if (p->l3 == NS_L3_IPV4) {
		h[0] = 0x45;
		h[1] = tos;
		ns_put16(h + 2, 20 + payload);
		ns_put16(h + 4, 0);
		ns_put16(h + 6, frag_off);
		h[8] = 64;
		h[9] = proto;
		ns_put16(h + 10, 0);
		__builtin_memcpy(h + 12, &p->daddr[0], 4);
		__builtin_memcpy(h + 16, &p->saddr[0], 4);
		__u16 c = ns_csum_fold(ns_csum_add(h, 20, 0));
		__builtin_memcpy(h + 10, &c, 2);
		return 20;
	}
	h[0] = 0x60;
	h[1] = 0;
	h[2] = 0;
	h[3] = 0;
	ns_put16(h + 4, payload);
	h[6] = proto;
	h[7] = 64;
	__builtin_memcpy(h + 8, p->daddr, 16);
	__builtin_memcpy(h + 24, p->saddr, 16);
	return 40;
}

/* Sum of the pseudo header for a transport checksum of the answer (addresses already
 * swapped in r->hdr). */
NS_INLINE __u32 ns_pseudo_sum(struct ns_reply *r, const struct pkt_ctx *p, __u8 proto, __u32 len)
{
	__u8 *ph = r->pseudo;
	if (p->l3 == NS_L3_IPV4) {
		__builtin_memcpy(ph, r->hdr + 12, 8);
		ph[8] = 0;
		ph[9] = proto;
		ns_put16(ph + 10, len);
		return ns_csum_add(ph, 12, 0);
	}
	__builtin_memcpy(ph, r->hdr + 8, 32);
	ns_put32(ph + 32, len);
	ns_put32(ph + 36, proto);
	return ns_csum_add(ph, 40, 0);
}

/* Builds a TCP reset for the segment in p (its TCP header already in r->tcp_in); 0 when
 * none is due. */
NS_INLINE int ns_build_rst(struct ns_reply *r, const struct pkt_ctx *p)
{
	if (p->l4proto != 6 || !(p->flags & PKT_F_TCPFLAGS) || (p->tcp_flags & TCP_RST))
		return 0;
	const __u8 *in = r->tcp_in;
	__u32 ip_len = ns_reply_ip(r, p, 6, 20, 0, p->l3 == NS_L3_IPV4 ? 0x4000 : 0);
	if (ip_len != 20 && ip_len != 40)
		return 0;
	__u8 *t = r->hdr + ip_len;
	__builtin_memcpy(t, in + 2, 2); /* source port: its destination */
	__builtin_memcpy(t + 2, in, 2);
	__u8 flags = in[13];
	if (flags & TCP_ACK) {
		__builtin_memcpy(t + 4, in + 8, 4);
		ns_put32(t + 8, 0);
		t[13] = TCP_RST;
	} else {
		__u32 seg = p->len - (p->l4_off - p->l3_off);
		__u32 doff = (in[12] >> 4) * 4;
		__u32 payload = seg > doff ? seg - doff : 0;
		ns_put32(t + 4, 0);
		ns_put32(t + 8, ns_get32(in + 4) + !!(flags & TCP_SYN) + !!(flags & TCP_FIN) + payload);
		t[13] = TCP_RST | TCP_ACK;
	}
	t[12] = 5 << 4;
	ns_put16(t + 14, 0); /* window */
	ns_put16(t + 16, 0); /* checksum */
	ns_put16(t + 18, 0); /* urgent pointer */
	__u32 sum = ns_pseudo_sum(r, p, 6, 20);
	__u16 c = ns_csum_fold(ns_csum_add(t, 20, sum));
	__builtin_memcpy(t + 16, &c, 2);
	r->hdr_len = ip_len + 20;
	r->quote_len = 0;
	return 1;
}

/* Builds the ICMP/ICMPv6 destination unreachable header for p with the quote already
 * in r->buf (r->quote_len bytes, zero padded); 0 when none is due. */
NS_INLINE int ns_build_unreach(struct ns_reply *r, const struct pkt_ctx *p, __u8 code, __u8 tos)
{
	__u32 q = r->quote_len;
	if (q > NS_QUOTE_MAX_V6)
		return 0;
	int v4 = p->l3 == NS_L3_IPV4;
	__u32 ip_len = ns_reply_ip(r, p, v4 ? 1 : 58, 8 + q, v4 ? (tos & 0x1e) | 0xc0 : 0, 0);
	if (ip_len != 20 && ip_len != 40)
		return 0;
	__u8 *ic = r->hdr + ip_len;
	ic[0] = v4 ? 3 : 1;
	ic[1] = code;
	ns_put16(ic + 2, 0);
	ns_put32(ic + 4, 0);
	__u32 sum = v4 ? 0 : ns_pseudo_sum(r, p, 58, 8 + q);
	sum = ns_csum_add(ic, 8, sum);
	for (__u32 i = 0; i < NS_QUOTE_CHUNKS; i++) {
		if (i * NS_QUOTE_CHUNK >= q)
			break;
		sum = ns_csum_add(r->buf + i * NS_QUOTE_CHUNK, NS_QUOTE_CHUNK, sum);
	}
	__u16 c = ns_csum_fold(sum);
	__builtin_memcpy(ic + 2, &c, 2);
	r->hdr_len = ip_len + 8;
	return 1;
}

/* Whether an ICMP error may answer p (icmp_send() / icmpv6_send() rules). */
NS_INLINE int ns_unreach_allowed(const struct pkt_ctx *p)
{
	if (p->l3 == NS_L3_IPV4) {
		if (ns_v4_multicast_or_broadcast(p->daddr[0]) || !p->saddr[0])
			return 0;
		if ((p->flags & PKT_F_L4PROTO) && p->l4proto == 1) {
			if (!(p->flags & PKT_F_ICMP))
				return 0;
			if (p->icmp_type > 18 || ns_icmp_is_error(NS_L3_IPV4, p->icmp_type))
				return 0;
		}
		return 1;
	}
	if (!ns_v6_unicast(p->saddr) || (bpf_ntohl(p->daddr[0]) >> 24) == 0xff)
		return 0;
	if ((p->flags & PKT_F_L4PROTO) && p->l4proto == 58) {
		if (!(p->flags & PKT_F_ICMP) || p->icmp_type < 128)
			return 0;
	}
	return 1;
}

/* The link-layer addresses of an answer leaving by the route back to the sender, as
 * the kernel's answer from an IP hook does (ip_route_me_harder/icmp_route_lookup):
 * a FIB lookup from the packet's destination to its source through the device it came
 * in on (none on lo: its sources are local). Returns 0 when there is no such route (the kernel sends no answer then). No
 * neighbour entry yet: the kernel would resolve one; the answer goes to the MAC the
 * packet came from (already in r->l2). */
NS_INLINE int ns_route_answer(struct __sk_buff *skb, struct ns_reply *r, const struct pkt_ctx *p)
{
	/* From a local address: the route back is through lo, where it came in. */
	if (skb->ifindex == 1) /* LOOPBACK_IFINDEX */
		return 1;
	struct bpf_fib_lookup *fib = &r->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	if (p->l3 == NS_L3_IPV4) {
		fib->family = 2; /* AF_INET */
		fib->ipv4_src = p->daddr[0];
		fib->ipv4_dst = p->saddr[0];
	} else {
		fib->family = 10; /* AF_INET6 */
		__builtin_memcpy(fib->ipv6_src, p->daddr, 16);
		__builtin_memcpy(fib->ipv6_dst, p->saddr, 16);
	}
	fib->ifindex = skb->ifindex;
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
	/* Without forwarding on the device the helper looks nothing up (it answers
	 * FWD_DISABLED even for local routes): answer out of the device the packet came
	 * in on, the route back to a peer on its link. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH || rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return 1;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib->ifindex != skb->ifindex)
		return 0;
	__builtin_memcpy(r->l2, fib->dmac, 6);
	__builtin_memcpy(r->l2 + 6, fib->smac, 6);
	return 1;
}

/* ns_route_fwd_answer()'s result: no answer, or the answer leaves by r->fib.ifindex
 * with the MAC addresses in r->fib, or there through the neighbour subsystem. */
#define NS_FWD_NONE 0
#define NS_FWD_MACS 1
#define NS_FWD_NEIGH 2

/* At TC egress, for a packet a forward chain rejects (NS_F_FWD_REJECT): the route the
 * kernel's answer takes back to the sender, and for an ICMP error its source address.
 * - ICMP error: icmp_send()/icmp6_send() find no local destination on a forwarded
 *   packet and route with no source (icmp_route_lookup, icmpv6_route_lookup); the
 *   route gives it (fib_result_prefsrc; IPv6 the route's preferred source or
 *   ipv6_dev_get_saddr() on its device), as BPF_FIB_LOOKUP_SRC does. The address
 *   replaces p->daddr, from which the answer is built.
 * - TCP reset: from the rejected segment's destination (nf_reject_iphdr_put,
 *   nf_reject_ip6hdr_put), routed with that source (ip_route_me_harder,
 *   ip6_route_output).
 * The lookup is an input-side one on the device the packet came in on (forwarding is
 * on there, which the helper requires; the kernel's is an output lookup from lo: they
 * differ only by `ip rule iif`). `kind` is the rule's reject argument. */
NS_INLINE int ns_route_fwd_answer(struct __sk_buff *skb, struct ns_reply *r, struct pkt_ctx *p,
				  __u32 kind)
{
	int reset = (kind & 0xff) == NS_REJECT_TCP_RST;
	/* What NS_PREPARE_REPLY checks on the destination, before it is replaced. */
	if (!reset && !ns_unreach_allowed(p))
		return NS_FWD_NONE;
	struct bpf_fib_lookup *fib = &r->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	int v4 = p->l3 == NS_L3_IPV4;
	if (v4) {
		fib->family = 2; /* AF_INET */
		fib->ipv4_dst = p->saddr[0];
		__u8 tos = 0;
		if (reset)
			fib->ipv4_src = p->daddr[0];
		else if (bpf_skb_load_bytes(skb, p->l3_off + 1, &tos, 1) == 0)
			/* The answer's TOS (icmp_send routes by RT_TOS of it). */
			fib->tos = (tos & 0x1e) | 0xc0;
	} else {
		fib->family = 10; /* AF_INET6 */
		__builtin_memcpy(fib->ipv6_dst, p->saddr, 16);
		if (reset)
			__builtin_memcpy(fib->ipv6_src, p->daddr, 16);
	}
	fib->l4_protocol = reset ? 6 : v4 ? 1 : 58;
	/* The answer's size for the helper's MTU check (not the rejected packet's). */
	fib->tot_len = v4 ? 68 : 1280;
	fib->ifindex = skb->ingress_ifindex;
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), reset ? 0 : BPF_FIB_LOOKUP_SRC);
	int out;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		out = NS_FWD_MACS;
	else if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		out = NS_FWD_NEIGH;
	else
		return NS_FWD_NONE;
	if (!reset) {
		if (v4)
			p->daddr[0] = fib->ipv4_src;
		else
			__builtin_memcpy(p->daddr, fib->ipv6_src, 16);
		if (v4 ? !p->daddr[0] : !ns_v6_unicast(p->daddr))
			return NS_FWD_NONE;
	}
	return out;
}

/* Sends an answer built by NS_PREPARE_REPLY for ns_route_fwd_answer()'s route. */
NS_INLINE long ns_send_fwd_answer(struct __sk_buff *skb, struct ns_reply *r, int how)
{
	struct bpf_fib_lookup *fib = &r->fib;
	if (how == NS_FWD_MACS)
		return bpf_redirect(fib->ifindex, 0);
	/* No neighbour entry yet: the kernel's answer would wait for one, as
	 * bpf_redirect_neigh() does. Without a next hop given it routes the answer
	 * itself (out of that device) and sets the skb's route to that: the one the
	 * skb still carries is the forwarded packet's, by which the neighbour
	 * subsystem would send it once resolved. */
	return bpf_redirect_neigh(fib->ifindex, NULL, 0, 0);
}

/* skb->tc_index of an answer redirected from TC ingress to egress (NS_F_MARK_ANSWERS):
 * the egress program sees it as the kernel's answer, sent by ip_local_out as a
 * locally generated packet (output, not forward; no input device), and clears it. No
 * nft expression reads tc_index, and it survives bpf_redirect. */
#define NS_ANSWER_TC_INDEX 0x4e53

/* At TC ingress, before an answer is redirected out of the device: marked for the
 * egress program, with the mark the kernel gives it (IP4_REPLY_MARK / IP6_REPLY_MARK
 * with fwmark_reflect off: 0). */
NS_INLINE void ns_mark_answer(struct __sk_buff *skb)
{
	skb->tc_index = NS_ANSWER_TC_INDEX;
	skb->mark = 0;
}

/* At TC egress: whether the packet is a marked answer (the mark is cleared, so that it
 * does not leave with the packet). */
NS_INLINE int ns_take_answer_mark(struct __sk_buff *skb)
{
	if (skb->tc_index != NS_ANSWER_TC_INDEX)
		return 0;
	skb->tc_index = 0;
	return 1;
}

#endif
