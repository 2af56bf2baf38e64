/* SPDX-License-Identifier: GPL-2.0-only */
/* Which frames the kernel's bridge hooks see, told apart at TC (bridge family chains).
 * At a port's TC ingress the frame has not met the bridge's rx handler yet
 * (br_handle_frame): a looped-back frame passes it without any hook, one with an
 * invalid source MAC (multicast or zero) is dropped before any, and a link-local one
 * (01:80:c2:00:00:0X) goes by the port's and bridge's settings to prerouting, to the
 * input hook on the port, or to none. The runtime turns those settings into the mask
 * of classes a chain's guard accepts (NS_CHECK_BRIDGE). At the bridge device's TC
 * ingress every frame but a looped-back one was passed up through the input hook
 * (br_pass_frame_up).
 *
 * At a port's TC egress, a copy the bridge device sent (br_dev_xmit: output hook) is
 * told from others by a mark the bridge device's egress program (NS_F_BRIDGE_TX) puts
 * in skb->cb[NS_BR_TX_CB]; the port's program takes it off. Measured on this kernel:
 * skb->tc_index, cb[0] and cb[1] do not reach the port (br_dev_xmit and the bridge's
 * own control block clear them), cb[2..4] do, on every copy. Other copies are the bridge's forwarded ones when they came in on a port of
 * the same bridge (an Iif test), or the port's own frames otherwise.
 *
 * The bridge hooks run with skb->data at the network header, untrimmed: nf_tables
 * counts the frame's bytes after the Ethernet header, padding included. */
#ifndef NFTSHIM_BRIDGE_H
#define NFTSHIM_BRIDGE_H

#include "common.h"
#include "parse.h"

#define NS_BR_NONE 0       /* looped back (or not classified): no bridge hook */
#define NS_BR_BAD_SOURCE 1 /* invalid source MAC: dropped before the hooks */
#define NS_BR_OTHER 2      /* any other frame with a valid source */
#define NS_BR_LINK_LOCAL 0x10 /* | X: destination 01:80:c2:00:00:0X */
#define NS_BR_SENT 0x20     /* egress: sent by the bridge device */
#define NS_BR_NOT_SENT 0x21 /* egress: any other frame */

#define NS_BR_SEES_OTHER (1u << 16)  /* arg bit: NS_BR_OTHER frames */
#define NS_BR_SEES_ALL (1u << 17)    /* arg bit: every frame not looped back */
#define NS_BR_SEES_SENT (1u << 18)   /* arg bit: NS_BR_SENT frames */
#define NS_BR_SEES_NOT_SENT (1u << 19) /* arg bit: NS_BR_NOT_SENT frames */
/* skb->cb[NS_BR_TX_CB] of a frame the bridge device sent. */
#define NS_BR_TX_CB 2
#define NS_BR_TX_MAGIC 0x4e534252 /* "NSBR" */

NS_INLINE void ns_bridge_mark_sent(struct __sk_buff *skb)
{
	skb->cb[NS_BR_TX_CB] = NS_BR_TX_MAGIC;
}

/* Whether the bridge device sent the frame; the mark is taken off. */
NS_INLINE int ns_bridge_take_sent(struct __sk_buff *skb)
{
	if (skb->cb[NS_BR_TX_CB] != NS_BR_TX_MAGIC)
		return 0;
	skb->cb[NS_BR_TX_CB] = 0;
	return 1;
}
#define NS_PACKET_LOOPBACK_BR 5

NS_INLINE void ns_classify_bridge(struct __sk_buff *skb, struct pkt_ctx *p, __u32 frame_len,
				  int egress)
{
	if (egress) {
		int sent = ns_bridge_take_sent(skb);
		p->br_class = sent ? NS_BR_SENT : NS_BR_NOT_SENT;
	}
	if (frame_len < ETH_HLEN)
		return;
	/* What the bridge hooks count: skb->len with the data at the network header. */
	p->len = frame_len - ETH_HLEN;
	if (egress)
		return;
	if (skb->pkt_type == NS_PACKET_LOOPBACK_BR)
		return;
	__u8 *eth = (void *)(long)skb->data;
	if ((void *)(eth + ETH_HLEN) > (void *)(long)skb->data_end)
		return;
	__u8 *src = eth + 6;
	int zero = !(src[0] | src[1] | src[2] | src[3] | src[4] | src[5]);
	if ((src[0] & 1) || zero) {
		p->br_class = NS_BR_BAD_SOURCE;
		return;
	}
	if (eth[0] == 0x01 && eth[1] == 0x80 && eth[2] == 0xc2 && eth[3] == 0 && eth[4] == 0 &&
	    (eth[5] & 0xf0) == 0)
		p->br_class = NS_BR_LINK_LOCAL | eth[5];
	else
		p->br_class = NS_BR_OTHER;
}

/* Whether a frame of class `cls` is one the hook whose classes are `arg` sees. */
NS_INLINE int ns_bridge_hook_sees(__u8 cls, __u32 arg)
{
	if (cls == NS_BR_NONE)
		return 0;
	if (cls == NS_BR_SENT)
		return (arg & NS_BR_SEES_SENT) != 0;
	if (cls == NS_BR_NOT_SENT)
		return (arg & NS_BR_SEES_NOT_SENT) != 0;
	if (arg & NS_BR_SEES_ALL)
		return 1;
	if (cls == NS_BR_OTHER)
		return (arg & NS_BR_SEES_OTHER) != 0;
	if (cls & NS_BR_LINK_LOCAL)
		return (arg >> (cls & 0xf)) & 1;
	return 0;
}

#endif
