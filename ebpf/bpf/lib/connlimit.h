/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_connlimit's hotdrop (net/netfilter/xt_connlimit.c, nf_conncount.c): a packet
 * without a connection is counted by the tuple nf_ct_get_tuplepr() takes from its
 * headers, and one it cannot take a tuple from is dropped. The reference is
 * src/residual/connlimit.rs. Included by residual.h after xt.h. */
#ifndef NFTSHIM_CONNLIMIT_H
#define NFTSHIM_CONNLIMIT_H

/* NS_RES_XT_CONNLIMIT_TUPLE: 1 when the kernel takes a tuple from the packet, else
 * NS_RES_HOTDROP. nf_ct_get_tuple() reads the ports (4 bytes) of TCP, UDP, UDP-Lite
 * and SCTP and the 8-byte ICMP or ICMPv6 header (either in either family); other
 * protocols need no bytes. A packet with a connection had its tuple taken by conntrack
 * from the same bytes, so the connection need not be asked (and the tracker's generic
 * flow for ICMPv6 in IPv4, which the kernel cannot track, does not hide the drop). */
NS_INLINE int ns_res_connlimit_tuple(const struct ns_res_state *rs)
{
	/* An IPv6 extension header chain that cannot be walked. */
	if (!rs->has_l4proto)
		return NS_RES_HOTDROP;
	/* A later fragment stands for the kernel's reassembled datagram, whose headers
	 * its first fragment has. */
	if (!rs->has_th)
		return 1;
	__u8 p = rs->l4proto;
	__u32 need = 0;
	if (p == 6 || p == 17 || p == 136 || p == 132)
		need = 4;
	else if (p == 1 || p == 58)
		need = 8;
	return rs->th + need > ns_xt_end(rs) ? NS_RES_HOTDROP : 1;
}

#endif
