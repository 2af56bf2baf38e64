/* SPDX-License-Identifier: GPL-2.0-only */
/* The packet as netdev-family chains see it (nft_do_chain_netdev), for residual
 * programs (NS_RES_NETDEV). The IP hooks' view (parse.h) differs: there the stack
 * validated and trimmed the datagram; at the netdev hooks the kernel keys on
 * skb->protocol, checks the IP header as nft_set_pktinfo_ipv{4,6}_validate do, and a
 * packet that fails still has its network header but no transport protocol.
 *
 * Frame offsets: the network header follows the Ethernet header (TC and the netdev
 * hooks see the same skb, VLAN tags already taken out by hardware or
 * skb_vlan_untag). skb->data is at the network header at ingress and at the MAC
 * header at egress, so skb->len (`meta length`, what lengths are checked against)
 * counts the Ethernet header at egress only. Included by residual.h. */
#ifndef NFTSHIM_NETDEV_H
#define NFTSHIM_NETDEV_H

#include "common.h"
#include "parse.h"

#define NFPROTO_NETDEV 5

/* Whether a transport payload load takes nft_payload_fast_eval, which reads later
 * fragments at thoff instead of breaking (1, 2 or 4 bytes at an aligned offset). */
NS_INLINE int ns_res_fast_payload(__u32 offset, __u32 len)
{
	return (len == 1 || len == 2 || len == 4) && (offset & (len - 1)) == 0;
}

NS_INLINE __u8 ns_res_byte(const struct ns_res_state *rs, __u32 off)
{
	return rs->hdr[off & (NS_RES_HDR_MAX - 1)];
}

/* Whether the frame's copy has [off, off + n). */
NS_INLINE int ns_res_has(const struct ns_res_state *rs, __u32 off, __u32 n)
{
	return off + n <= rs->frame_len && off + n <= rs->hdr_len;
}

/* __nft_set_pktinfo_ipv4_validate: `net_len` is skb->len minus the network offset. */
NS_INLINE void ns_res_netdev_ipv4(struct ns_res_state *rs, __u32 nh, __u32 net_len)
{
	struct ns_res_view *v = &rs->nd;
	if (!ns_res_has(rs, nh, 20))
		return;
	__u8 b0 = ns_res_byte(rs, nh);
	__u32 hlen = (b0 & 0xf) * 4;
	if ((b0 >> 4) != 4 || hlen < 20)
		return;
	__u32 tot = ((__u32)ns_res_byte(rs, nh + 2) << 8) | ns_res_byte(rs, nh + 3);
	if (net_len < tot || tot < hlen)
		return;
	v->l4proto = ns_res_byte(rs, nh + 9);
	v->has_l4proto = 1;
	v->th = nh + hlen;
	v->has_th = 1;
	v->fragoff = (((ns_res_byte(rs, nh + 6) << 8) | ns_res_byte(rs, nh + 7)) & 0x1fff) != 0;
}

/* __nft_set_pktinfo_ipv6_validate, with ipv6_find_hdr(target -1, IP6_FH_F_AUTH):
 * the walk stops at AH, at "no next header" and at any non-extension header; a
 * later fragment gives the header after it with thoff left 0 (skb->data). A header
 * cut short, or more than NS_RES_MAX_EXTHDRS of them, leaves no transport protocol. */
NS_INLINE void ns_res_netdev_ipv6(struct ns_res_state *rs, __u32 nh, __u32 net_len, __u32 data)
{
	struct ns_res_view *v = &rs->nd;
	if (!ns_res_has(rs, nh, 40) || (ns_res_byte(rs, nh) >> 4) != 6)
		return;
	__u32 plen = ((__u32)ns_res_byte(rs, nh + 4) << 8) | ns_res_byte(rs, nh + 5);
	if (plen + 40 > net_len)
		return;
	__u8 next = ns_res_byte(rs, nh + 6);
	__u32 start = nh + 40;
	for (int i = 0; i < NS_RES_MAX_EXTHDRS; i++) {
		if (next == 51 || !(next == 0 || next == 43 || next == 44 || next == 60)) {
			/* AH (IP6_FH_F_AUTH), "no next header" (59) or the transport. */
			if (next == 51 && !ns_res_has(rs, start, 2))
				return;
			v->l4proto = next;
			v->has_l4proto = 1;
			v->th = start;
			v->has_th = 1;
			return;
		}
		__u32 need = next == 43 || next == 44 ? 4 : 2;
		if (!ns_res_has(rs, start, need))
			return;
		__u8 hnext = ns_res_byte(rs, start);
		if (next == 44) {
			__u32 fo = ((ns_res_byte(rs, start + 2) << 8) | ns_res_byte(rs, start + 3)) & ~7u;
			if (fo) {
				if (hnext == 0 || hnext == 43 || hnext == 44 || hnext == 51 ||
				    hnext == 60)
					return; /* -ENOENT */
				v->l4proto = hnext;
				v->has_l4proto = 1;
				v->th = data;
				v->has_th = 1;
				v->fragoff = 1;
				return;
			}
			start += 8;
		} else {
			start += ((__u32)ns_res_byte(rs, start + 1) + 1) * 8;
		}
		next = hnext;
		if (start > NS_RES_HDR_MAX)
			return;
	}
}

/* Prepares rs->nd from the header copy, once per packet (called by NS_RES_CAPTURE in
 * the hook's own frame, not in the chains' deeper bpf_loop frames). */
static __attribute__((noinline)) int ns_res_netdev_prepare(struct ns_res_state *rs)
{
	__u32 data = cfg.egress ? 0 : ETH_HLEN; /* frame offset of skb->data */
	__u32 frame = rs->frame_len;
	__builtin_memset(&rs->nd, 0, sizeof(rs->nd));
	rs->nd.len = frame > data ? frame - data : 0;
	__u32 net_len = frame > ETH_HLEN ? frame - ETH_HLEN : 0;
	if (rs->skb_protocol == ETH_P_IP)
		ns_res_netdev_ipv4(rs, ETH_HLEN, net_len);
	else if (rs->skb_protocol == ETH_P_IPV6)
		ns_res_netdev_ipv6(rs, ETH_HLEN, net_len, data);
	return 0;
}

/* Switches the run's view of the packet (rs->nh, th, end, len, protocol, nfproto,
 * l4proto) to the netdev hooks'. */
NS_INLINE void ns_res_netdev_view(struct ns_res_state *rs)
{
	rs->nh = ETH_HLEN;
	rs->end = rs->frame_len;
	rs->len = rs->nd.len;
	rs->protocol = rs->skb_protocol;
	rs->nfproto = NFPROTO_NETDEV;
	rs->th = rs->nd.th;
	rs->has_th = rs->nd.has_th;
	rs->fragoff = rs->nd.fragoff;
	rs->thoff = rs->nd.th;
	rs->has_thoff = rs->nd.has_th;
	rs->l4proto = rs->nd.l4proto;
	rs->has_l4proto = rs->nd.has_l4proto;
	/* nft_exthdr reads ipv6_hdr(skb) whatever the protocol. */
	rs->ipv6 = 1;
}

#endif
