/* SPDX-License-Identifier: GPL-2.0-only */
/* Packet parsing: Ethernet (up to two VLAN tags), IPv4, IPv6 (extension headers
 * skipped), TCP/UDP/UDP-Lite/SCTP/DCCP ports, TCP flags, ICMP/ICMPv6 type, code and
 * id, and the header quoted by an ICMP error, into a struct pkt_ctx that the
 * classifier and conntrack read. Only header bytes inside the linear data
 * are read; a header cut short leaves its fields absent, so predicates on them fail,
 * as nf_tables' payload loads do. */
#ifndef NFTSHIM_PARSE_H
#define NFTSHIM_PARSE_H

#include "common.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define NS_L3_NONE 0
#define NS_L3_IPV4 4
#define NS_L3_IPV6 6

#define PKT_F_FRAG (1u << 0)       /* the packet is a fragment (first or later) */
#define PKT_F_LATER_FRAG (1u << 1) /* fragment offset != 0: no transport header */
#define PKT_F_PORTS (1u << 2)      /* sport/dport valid */
#define PKT_F_ICMP (1u << 3)       /* icmp_type/icmp_code valid (ICMP on v4, ICMPv6 on v6) */
#define PKT_F_L4PROTO (1u << 4)    /* l4proto valid (see parse_ipv6 for when it is not) */
#define PKT_F_TCPFLAGS (1u << 5)   /* tcp_flags valid: a whole 20-byte TCP header is there */
#define PKT_F_INNER (1u << 6)      /* ICMP error: `inner` holds the quoted packet's tuple */
#define PKT_F_ICMPID (1u << 7)     /* icmp_id valid: the whole 8-byte ICMP header is there */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_URG 0x20

#define IPV6_MAX_EXT_HDRS 8 /* longer chains leave the transport fields absent */
#define L3_MAX_OFFSET 1024  /* bound on the transport header offset, for the verifier */

/* The transport tuple of the packet an ICMP error quotes (for conntrack's RELATED). */
struct pkt_inner {
	__u32 saddr[4];
	__u32 daddr[4];
	__u8 l4proto;
	__u8 icmp_type; /* inner ICMP/ICMPv6 */
	__u16 sport;    /* ports, or the ICMP id in both */
	__u16 dport;
	__u16 pad;
};

/* The fields of one packet that rules can test. */
struct pkt_ctx {
	__u8 l3;       /* NS_L3_* */
	__u8 l4proto;  /* with PKT_F_L4PROTO: transport protocol, also of later fragments */
	__u8 flags;    /* PKT_F_* */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags; /* with PKT_F_TCPFLAGS */
	__u16 sport;   /* host byte order */
	__u16 dport;   /* host byte order */
	__u16 icmp_id; /* echo/timestamp/info/mask id (host order), with PKT_F_ICMP */
	__u32 saddr[4]; /* network byte order; IPv4 in saddr[0] */
	__u32 daddr[4];
	__u32 iif;  /* input ifindex, 0 if none */
	__u32 oif;  /* output ifindex, 0 if none */
	__u32 mark;
	/* Bytes from the network header on, what nf_tables counts (skb->len at the IP
	 * hooks): the IP total length when the header gives one that fits. */
	__u32 len;
	__u16 l3_off; /* frame offset of the network header */
	__u16 l4_off; /* frame offset of the transport header (with PKT_F_PORTS/ICMP) */
	__u32 frag_id; /* fragments: the datagram's identification */
	__u8 has_frag_id;
	__u8 arp; /* an ARP packet the kernel's ARP hooks see here (lib/arp.h) */
	__u8 br_class; /* with NS_F_BRIDGE: NS_BR_* (lib/bridge.h) */
	__u8 ah_flags; /* with ah_off: the flags when the walk met the AH header */
	struct pkt_inner inner;
	__u32 frame_len; /* skb->len at TC: the frame from its link-layer header on */
	/* What the current base chain's counters, byte limits and quotas charge: `len`
	 * at the IP hooks, skb->len as the netdev hooks see it in netdev chains. */
	__u32 charge;
	__u16 l2_len; /* the Ethernet header and the VLAN tags parse_packet skipped */
	/* IPv6: the frame offset of the first AH header the walk met, 0 if none. The
	 * fields above then describe what follows it, as conntrack sees the packet
	 * (ipv6_skip_exthdr); ns_pkt_nft_view() turns them into what nf_tables sees. */
	__u16 ah_off;
	/* Set by ns_pkt_nft_view() for such a packet: conntrack's transport header, past
	 * the AH header, which xt_socket's lookup and the reject answers read too
	 * (ipv6_find_hdr() without IP6_FH_F_AUTH, ipv6_skip_exthdr()). 0: the fields
	 * above are that view already. */
	__u16 xp_off;
	__u8 xp_proto;
	__u8 xp_icmp_type;
	__u8 xp_flags;
};

struct ns_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ns_ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ns_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

NS_INLINE int ns_has_ports(__u8 proto)
{
	return proto == 6 /* TCP */ || proto == 17 /* UDP */ || proto == 136 /* UDP-Lite */ ||
	       proto == 132 /* SCTP */ || proto == 33 /* DCCP */;
}

/* The extension headers ipv6_find_hdr() walks (59, "no next header", ends the walk). */
NS_INLINE int ns_ipv6_ext_hdr(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60;
}

/* ICMP errors, which quote the packet they answer. */
NS_INLINE int ns_icmp_is_error(__u8 l3, __u8 type)
{
	if (l3 == NS_L3_IPV4)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

/* The tuple of the packet quoted at data + off by an ICMP error. Like conntrack, it
 * needs the quoted transport ports (or ICMP id); IPv6 extension headers in the quote
 * are not walked (the quote then has no known tuple). */
NS_INLINE void parse_inner(void *data, void *data_end, __u32 off, struct pkt_ctx *p)
{
	__u8 *ip = data + off;
	__u32 l4off;

	if (off > L3_MAX_OFFSET)
		return;
	if (p->l3 == NS_L3_IPV4) {
		if ((void *)(ip + 20) > data_end || (ip[0] >> 4) != 4)
			return;
		l4off = (ip[0] & 0xf) * 4;
		if (l4off < 20)
			return;
		p->inner.l4proto = ip[9];
		__builtin_memcpy(&p->inner.saddr[0], ip + 12, 4);
		__builtin_memcpy(&p->inner.daddr[0], ip + 16, 4);
	} else {
		if ((void *)(ip + 40) > data_end || (ip[0] >> 4) != 6)
			return;
		l4off = 40;
		p->inner.l4proto = ip[6];
		__builtin_memcpy(p->inner.saddr, ip + 8, 16);
		__builtin_memcpy(p->inner.daddr, ip + 24, 16);
	}
	__u8 *l4 = ip + l4off;
	if ((void *)(l4 + 8) > data_end)
		return;
	__u8 icmp = p->l3 == NS_L3_IPV4 ? 1 : 58;
	if (ns_has_ports(p->inner.l4proto)) {
		p->inner.sport = ((__u16)l4[0] << 8) | l4[1];
		p->inner.dport = ((__u16)l4[2] << 8) | l4[3];
	} else if (p->inner.l4proto == icmp) {
		p->inner.icmp_type = l4[0];
		p->inner.sport = ((__u16)l4[4] << 8) | l4[5];
		p->inner.dport = p->inner.sport;
	} else {
		return;
	}
	p->flags |= PKT_F_INNER;
}

/* Reads the transport fields at data + off. */
NS_INLINE void parse_l4(void *data, void *data_end, __u32 off, struct pkt_ctx *p)
{
	if (off > L3_MAX_OFFSET)
		return;
	__u8 *l4 = data + off;
	p->l4_off = off;
	if (ns_has_ports(p->l4proto)) {
		if ((void *)(l4 + 4) > data_end)
			return;
		p->sport = ((__u16)l4[0] << 8) | l4[1];
		p->dport = ((__u16)l4[2] << 8) | l4[3];
		p->flags |= PKT_F_PORTS;
		if (p->l4proto == 6 && (void *)(l4 + 20) <= data_end) {
			p->tcp_flags = l4[13];
			p->flags |= PKT_F_TCPFLAGS;
		}
	} else if ((p->l3 == NS_L3_IPV4 && p->l4proto == 1) ||
		   (p->l3 == NS_L3_IPV6 && p->l4proto == 58)) {
		if ((void *)(l4 + 2) > data_end)
			return;
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		p->flags |= PKT_F_ICMP;
		if ((void *)(l4 + 8) > data_end)
			return;
		p->icmp_id = ((__u16)l4[4] << 8) | l4[5];
		p->flags |= PKT_F_ICMPID;
		if (ns_icmp_is_error(p->l3, p->icmp_type))
			parse_inner(data, data_end, off + 8, p);
	}
}

NS_INLINE void parse_ipv4(void *data, void *data_end, __u32 off, struct pkt_ctx *p)
{
	struct iphdr_min {
		__u8 ver_ihl;
		__u8 tos;
		__be16 tot_len;
		__be16 id;
		__be16 frag_off;
		__u8 ttl;
		__u8 protocol;
		__be16 check;
		__be32 saddr;
		__be32 daddr;
	} *ip = data + off;

	if ((void *)(ip + 1) > data_end)
		return;
	if ((ip->ver_ihl >> 4) != 4)
		return;
	__u32 hlen = (ip->ver_ihl & 0xf) * 4;
	if (hlen < sizeof(*ip))
		return;
	p->l3 = NS_L3_IPV4;
	p->l3_off = off;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot >= hlen && tot < p->len)
		p->len = tot;
	p->l4proto = ip->protocol;
	p->flags |= PKT_F_L4PROTO;
	p->saddr[0] = ip->saddr;
	p->daddr[0] = ip->daddr;
	__u16 frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x3fff) { /* MF or offset */
		p->flags |= PKT_F_FRAG;
		p->frag_id = bpf_ntohs(ip->id);
		p->has_frag_id = 1;
	}
	if (frag & 0x1fff) {
		p->flags |= PKT_F_LATER_FRAG;
		return;
	}
	parse_l4(data, data_end, off + hlen, p);
}

NS_INLINE void parse_ipv6(void *data, void *data_end, __u32 off, struct pkt_ctx *p)
{
	struct ipv6hdr_min {
		__be32 ver_tc_flow;
		__be16 payload_len;
		__u8 nexthdr;
		__u8 hop_limit;
		__u32 saddr[4];
		__u32 daddr[4];
	} *ip6 = data + off;

	if ((void *)(ip6 + 1) > data_end)
		return;
	if ((*(__u8 *)ip6 >> 4) != 6)
		return;
	p->l3 = NS_L3_IPV6;
	p->l3_off = off;
	/* A zero payload length is a jumbogram: keep what the frame holds. */
	__u32 tot = bpf_ntohs(ip6->payload_len);
	if (tot && tot + sizeof(*ip6) < p->len)
		p->len = tot + sizeof(*ip6);
	__builtin_memcpy(p->saddr, ip6->saddr, 16);
	__builtin_memcpy(p->daddr, ip6->daddr, 16);

	/* Walk the extension headers as the kernel's ipv6_find_hdr() does for nf_tables:
	 * a truncated chain, or a later fragment followed by another extension header,
	 * leaves the transport protocol unknown (nft then fails meta l4proto). */
	__u8 nh = ip6->nexthdr;
	off += sizeof(*ip6);
	for (int i = 0; i < IPV6_MAX_EXT_HDRS; i++) {
		if (off > L3_MAX_OFFSET)
			return;
		if (nh != 44 && ns_ipv6_ext_hdr(nh)) {
			struct ns_ipv6_opt_hdr *opt = data + off;
			if ((void *)(opt + 1) > data_end)
				return;
			if (nh == 51 && !p->ah_off) {
				p->ah_off = off;
				p->ah_flags = p->flags;
			}
			/* AH counts 4-byte words minus 2, the others 8-byte words minus 1. */
			off += nh == 51 ? ((__u32)opt->hdrlen + 2) * 4 : ((__u32)opt->hdrlen + 1) * 8;
			nh = opt->nexthdr;
			continue;
		}
		if (nh == 44 /* fragment */) {
			struct ns_ipv6_frag_hdr *fh = data + off;
			/* Like the kernel, only next header and offset need to be there. */
			if ((void *)fh + 4 > data_end)
				return;
			p->flags |= PKT_F_FRAG;
			if ((void *)(fh + 1) <= data_end) {
				p->frag_id = bpf_ntohl(fh->id);
				p->has_frag_id = 1;
			}
			nh = fh->nexthdr;
			off += sizeof(*fh);
			if (bpf_ntohs(fh->frag_off) & 0xfff8) {
				p->flags |= PKT_F_LATER_FRAG;
				if (ns_ipv6_ext_hdr(nh))
					return;
				p->l4proto = nh;
				p->flags |= PKT_F_L4PROTO;
				return;
			}
			continue;
		}
		p->l4proto = nh;
		p->flags |= PKT_F_L4PROTO;
		parse_l4(data, data_end, off, p);
		return;
	}
	/* More than IPV6_MAX_EXT_HDRS extension headers: the protocol stays unknown. */
}

/* What nf_tables sees of a packet with an IPv6 AH header: its pktinfo comes from
 * ipv6_find_hdr() with IP6_FH_F_AUTH, which stops at the first AH header, so the
 * transport protocol is AH (51), the transport header is the AH header, and no ports
 * or ICMP fields are read. Connection tracking (ipv6_skip_exthdr) looks past it: call
 * this after tracking. A fragment header after the AH header is not reached either. */
NS_INLINE void ns_pkt_nft_view(struct pkt_ctx *p)
{
	if (p->l3 != NS_L3_IPV6 || !p->ah_off)
		return;
	p->xp_off = p->l4_off;
	p->xp_proto = p->l4proto;
	p->xp_icmp_type = p->icmp_type;
	p->xp_flags = p->flags;
	p->l4proto = 51;
	p->l4_off = p->ah_off;
	p->flags = p->ah_flags | PKT_F_L4PROTO;
	p->sport = 0;
	p->dport = 0;
	p->ah_off = 0;
}

/* Puts conntrack's view of the transport header back after the chains (see xp_off),
 * for the reject answers: nf_reject_ip6_tcphdr_get() and icmp6_send() look past AH. */
NS_INLINE void ns_pkt_xport_view(struct pkt_ctx *p)
{
	if (!p->xp_off)
		return;
	p->l4proto = p->xp_proto;
	p->l4_off = p->xp_off;
	p->flags = p->xp_flags;
	p->icmp_type = p->xp_icmp_type;
	p->xp_off = 0;
}

/* Fills the L3/L4 fields of p from the frame [data, data_end) of frame_len bytes
 * (the skb may hold more than the linear part). */
NS_INLINE void parse_packet(void *data, void *data_end, __u32 frame_len, struct pkt_ctx *p)
{
	__u8 *eth = data;
	p->len = frame_len;
	p->frame_len = frame_len;
	if ((void *)(eth + ETH_HLEN) > data_end)
		return;
	__u16 proto = ((__u16)eth[12] << 8) | eth[13];
	__u32 off = ETH_HLEN;
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		__u8 *vlan = data + off;
		if ((void *)(vlan + 4) > data_end)
			return;
		proto = ((__u16)vlan[2] << 8) | vlan[3];
		off += 4;
	}
	/* What follows the link-layer header: nf_tables does not count it. */
	p->len = frame_len > off ? frame_len - off : 0;
	p->l2_len = off;
	if (proto == ETH_P_IP)
		parse_ipv4(data, data_end, off, p);
	else if (proto == ETH_P_IPV6)
		parse_ipv6(data, data_end, off, p);
}

#endif
