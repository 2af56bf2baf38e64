/* SPDX-License-Identifier: GPL-2.0-only */
/* Which frames the kernel's ARP hooks see, told apart at TC (arp family chains).
 * - NF_ARP_IN runs in arp_rcv() on the device that delivers the frame: an untagged
 *   ARP frame (one tagged with a VLAN id goes to its VLAN device or is dropped), not for another
 *   host nor looped back, with a 28-byte Ethernet/IPv4 ARP header (ar_hln 6,
 *   ar_pln 4). The runtime attaches arp input chains only to Ethernet devices that
 *   do ARP and are nobody's port, whose frames arp_rcv() does see.
 * - NF_ARP_OUT runs in arp_xmit(), on the skbs arp_create() made: no socket (a
 *   packet socket's ARP frame skips it) and no VLAN tag yet (a VLAN device's frame
 *   was seen at the VLAN device's egress). nf_tables counts its link-layer header. */
#ifndef NFTSHIM_ARP_H
#define NFTSHIM_ARP_H

#include "parse.h"

#define ETH_P_ARP 0x0806
#define NS_ARP_HLEN 28 /* arp_hdr_len() of an Ethernet device */
#define NS_PACKET_OTHERHOST 3
#define NS_PACKET_LOOPBACK 5

/* Sets p->arp (and the ARP header as network header) when the frame meets the ARP
 * hook of this direction. */
NS_INLINE void ns_classify_arp(struct __sk_buff *skb, struct pkt_ctx *p, __u32 frame_len,
			       int egress)
{
	if (skb->protocol != bpf_htons(ETH_P_ARP))
		return;
	/* Received with VLAN id 0 (priority tag), the frame stays on this device. */
	if (skb->vlan_present && (egress || (skb->vlan_tci & 0xfff)))
		return;
	if (frame_len < ETH_HLEN + NS_ARP_HLEN)
		return;
	__u8 *eth = (void *)(long)skb->data;
	if ((void *)(eth + ETH_HLEN + NS_ARP_HLEN) > (void *)(long)skb->data_end)
		return;
	if (egress) {
		if (skb->sk)
			return;
		p->len = frame_len;
	} else {
		if (skb->pkt_type == NS_PACKET_OTHERHOST || skb->pkt_type == NS_PACKET_LOOPBACK)
			return;
		if (eth[ETH_HLEN + 4] != 6 || eth[ETH_HLEN + 5] != 4)
			return;
	}
	p->l3_off = ETH_HLEN;
	p->arp = 1;
}

#endif
