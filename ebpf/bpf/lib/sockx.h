/* SPDX-License-Identifier: GPL-2.0 */
/* Socket matches of iptables-nft's compat expressions (residual operations 55-59),
 * run from lib/residual.h. Only TC programs see a socket (skb->sk); XDP has none. */
#ifndef NS_SOCKX_H
#define NS_SOCKX_H

#include "common.h"

#define NS_IPPROTO_ICMP_SOCKX 1
#define NS_IPPROTO_ICMPV6_SOCKX 58
#define NS_IPPROTO_TCP_SOCKX 6
#define NS_SOCK_RAW_SOCKX 3

/* NS_RES_XT_FULL_SOCKET: xt_cgroup's "skb->sk && sk_fullsock(skb->sk)" with the
 * namespace check (net_eq(xt_net(par), sock_net(sk))). 1 holds, 0 break.
 * An answer of the data plane's reject (egress, no input device but a received skb)
 * stands for the kernel's: icmp_send() sends ICMP errors from the namespace's ICMP
 * socket, nf_send_reset() sends TCP resets without a socket. */
NS_INLINE int ns_sockx_full_socket(__u32 iif, __u8 l4proto, __u8 has_l4proto, struct ns_hook *hk)
{
	if (hk->xdp || !cfg.egress)
		return 0;
	struct __sk_buff *skb = hk->ctx;
	if (iif == 0 && skb->ingress_ifindex != 0)
		return has_l4proto &&
		       (l4proto == NS_IPPROTO_ICMP_SOCKX || l4proto == NS_IPPROTO_ICMPV6_SOCKX);
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 0;
	struct bpf_sock *full = bpf_sk_fullsock(sk);
	if (!full)
		return 0;
	__u64 cookie = bpf_get_netns_cookie(skb);
	if (cfg.netns_cookie != 0 && cookie == cfg.netns_cookie)
		return 1;
	/* The per-CPU control sockets that send TCP resets/ACKs and ICMP errors
	 * (SOCK_RAW of IPPROTO_TCP, ICMP, ICMPv6) are the namespace's while they send,
	 * when the hooks ran, and init_net's again once the packet waited for a
	 * neighbour: it then reaches TC egress later with init_net's cookie. */
	return cookie == bpf_get_netns_cookie(0) && full->type == NS_SOCK_RAW_SOCKX &&
	       (full->protocol == NS_IPPROTO_TCP_SOCKX || full->protocol == NS_IPPROTO_ICMP_SOCKX ||
		full->protocol == NS_IPPROTO_ICMPV6_SOCKX);
}

/* NS_RES_XT_CGROUP_CLASSID: cgroup_mt_v0/v2's --cgroup: a full socket of the
 * namespace (as above) whose net_cls classid (sock_cgroup_classid()) is id, ^ invert;
 * no such socket: 0 either way. bpf_skb_cgroup_classid() reads skb_to_full_sk()'s,
 * which is skb->sk itself once it is a full socket. The data plane's ICMP answers have
 * no skb->sk, so it answers 0 for them, the classid of icmp_send()'s per-CPU sockets
 * (created at boot, from the root net_cls cgroup, whose classid is 0). */
NS_INLINE int ns_sockx_cgroup_classid(__u32 iif, __u8 l4proto, __u8 has_l4proto,
				      struct ns_hook *hk, __u32 id, __u8 invert)
{
	if (!ns_sockx_full_socket(iif, l4proto, has_l4proto, hk))
		return 0;
	__u32 classid = (__u32)bpf_skb_cgroup_classid(hk->ctx);
	return (classid == id) != !!invert;
}

#endif
