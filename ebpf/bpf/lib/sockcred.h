/* SPDX-License-Identifier: GPL-2.0 */
/* The credentials of the packet's socket file, for what the kernel reads from
 * sk->sk_socket->file->f_cred at the egress hooks: xt_owner (owner_mt(): fsuid, fsgid,
 * the supplementary groups), nft's `meta skuid/skgid`, nf_log's `UID=%u GID=%u`
 * (nf_log_dump_sk_uid_gid) and nfnetlink_log's NFULA_UID/NFULA_GID.
 *
 * Only TC egress programs call it: there skb->sk is still the socket the OUTPUT and
 * POSTROUTING hooks saw (nothing between them and TC orphans a locally sent packet; a
 * forwarded one never has a socket: ip_forward() drops those). No BPF helper reads a
 * socket's file, so the chain sk -> sk_socket -> file -> f_cred is walked with
 * bpf_probe_read_kernel (root: CAP_PERFMON lets a classifier pass kernel addresses),
 * the offsets of each field relocated by CO-RE against the running kernel's BTF (the
 * local `___ns` structs below name only the fields read; aya relocates them at load).
 * Reads of a socket being torn down are safe (probe reads fault softly); they may
 * then see what the kernel, under sk_callback_lock, would have seen an instant
 * earlier or later. */
#ifndef NS_SOCKCRED_H
#define NS_SOCKCRED_H

#include "common.h"
#include <bpf/bpf_core_read.h>

struct ns_kid___ns {
	__u32 val;
};

struct group_info___ns {
	int ngroups;
	struct ns_kid___ns gid[0];
} __attribute__((preserve_access_index));

struct cred___ns {
	struct ns_kid___ns fsuid;
	struct ns_kid___ns fsgid;
	struct group_info___ns *group_info;
} __attribute__((preserve_access_index));

struct file___ns {
	const struct cred___ns *f_cred;
} __attribute__((preserve_access_index));

struct socket___ns {
	struct file___ns *file;
} __attribute__((preserve_access_index));

struct sock___ns {
	struct socket___ns *sk_socket;
} __attribute__((preserve_access_index));

/* rsk_listener is __req_common.skc_listener, in an anonymous union of sock_common. */
struct sock_common___ns {
	struct sock___ns *skc_listener;
} __attribute__((preserve_access_index));

struct request_sock___ns {
	struct sock_common___ns __req_common;
} __attribute__((preserve_access_index));

#define NS_SOCKCRED_TCP_TIME_WAIT 6
#define NS_SOCKCRED_TCP_NEW_SYN_RECV 12
#define NS_SOCKCRED_SOCK_RAW 3

/* What ns_sockcred_read() found. */
#define NS_SOCKCRED_NONE 0   /* no socket of the namespace, or one without sk_socket */
#define NS_SOCKCRED_NOFILE 1 /* a struct socket without a file (kernel sockets) */
#define NS_SOCKCRED_FILE 2   /* a socket file: fsuid, fsgid and groups are set */

/* ns_sockcred_read() flags. */
#define NS_SOCKCRED_FULL_SK 1 /* skb_to_full_sk(): a request socket stands for its
			       * listener (owner_mt, nft_meta); without it, as
			       * sk_fullsock(skb->sk) (nf_log, nfnetlink_log), none */

struct ns_sockcred {
	__u32 fsuid; /* kuid_t / kgid_t values: the initial user namespace's ids */
	__u32 fsgid;
	__u64 group_info; /* struct group_info *, for ns_sockcred_in_groups() */
};

/* The verifier forbids arithmetic on socket pointers; the same bits copied through
 * the stack by bpf_probe_read_kernel are a plain number. */
NS_INLINE __u64 ns_sockcred_addr(const void *p)
{
	volatile __u64 slot = (__u64)(unsigned long)p;
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const void *)&slot);
	return v;
}

/* The socket of the packet at TC egress (hk: the egress program's hook), with the
 * kernel's tests: a full socket (see NS_SOCKCRED_FULL_SK) of the namespace
 * (net_eq(net, sock_net(sk)), by netns cookie), with a struct socket, with a file.
 *
 * `iif` is the parser's input device: an answer of the data plane's own reject at
 * egress (no input device, but a received skb) stands for the kernel's, which
 * icmp_send() sends from the namespace's ICMP socket (a kernel socket: no file) and
 * nf_send_reset() without a socket. The per-CPU control sockets that send TCP
 * resets and ICMP errors (SOCK_RAW of TCP, ICMP, ICMPv6; kernel sockets without a
 * file) belong to the namespace while the hooks run and to init_net again when the
 * packet reaches TC after waiting for a neighbour: they count as the namespace's. */
NS_INLINE int ns_sockcred_read(struct ns_hook *hk, __u32 iif, __u8 l4proto, __u8 has_l4proto,
			       __u32 flags, struct ns_sockcred *out)
{
	out->fsuid = 0;
	out->fsgid = 0;
	out->group_info = 0;
	if (hk->xdp || !cfg.egress)
		return NS_SOCKCRED_NONE;
	struct __sk_buff *skb = hk->ctx;
	if (iif == 0 && skb->ingress_ifindex != 0)
		return has_l4proto && (l4proto == 1 || l4proto == 58) ? NS_SOCKCRED_NOFILE
								       : NS_SOCKCRED_NONE;
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return NS_SOCKCRED_NONE;
	__u64 cookie = bpf_get_netns_cookie(skb);
	int ours = cfg.netns_cookie != 0 && cookie == cfg.netns_cookie;
	__u64 addr;
	if (sk->state == NS_SOCKCRED_TCP_NEW_SYN_RECV) {
		if (!(flags & NS_SOCKCRED_FULL_SK) || !ours)
			return NS_SOCKCRED_NONE;
		struct request_sock___ns *req = (void *)ns_sockcred_addr(sk);
		struct sock___ns *listener = 0;
		if (bpf_core_read(&listener, sizeof(listener), &req->__req_common.skc_listener))
			return NS_SOCKCRED_NONE;
		addr = (__u64)(unsigned long)listener;
	} else {
		struct bpf_sock *full = bpf_sk_fullsock(sk);
		if (!full) /* timewait: skb_to_full_sk() gives none */
			return NS_SOCKCRED_NONE;
		if (!ours) {
			int ctl = cookie == bpf_get_netns_cookie(0) &&
				  full->type == NS_SOCKCRED_SOCK_RAW &&
				  (full->protocol == 6 || full->protocol == 1 ||
				   full->protocol == 58);
			if (!ctl)
				return NS_SOCKCRED_NONE;
		}
		addr = ns_sockcred_addr(full);
	}
	if (!addr)
		return NS_SOCKCRED_NONE;
	struct sock___ns *s = (void *)addr;
	struct socket___ns *sock = 0;
	if (bpf_core_read(&sock, sizeof(sock), &s->sk_socket) || !sock)
		return NS_SOCKCRED_NONE;
	struct file___ns *file = 0;
	if (bpf_core_read(&file, sizeof(file), &sock->file) || !file)
		return NS_SOCKCRED_NOFILE;
	const struct cred___ns *cred = 0;
	if (bpf_core_read(&cred, sizeof(cred), &file->f_cred) || !cred)
		return NS_SOCKCRED_NOFILE;
	struct group_info___ns *gi = 0;
	if (bpf_core_read(&out->fsuid, sizeof(out->fsuid), &cred->fsuid.val) ||
	    bpf_core_read(&out->fsgid, sizeof(out->fsgid), &cred->fsgid.val) ||
	    bpf_core_read(&gi, sizeof(gi), &cred->group_info))
		return NS_SOCKCRED_NOFILE;
	out->group_info = (__u64)(unsigned long)gi;
	return NS_SOCKCRED_FILE;
}

/* Whether a supplementary group of the socket file's credentials lies in [min, max]
 * (owner_mt()'s XT_OWNER_SUPPL_GROUPS). The kernel walks group_info->gid[] in order;
 * the list is sorted (set_groups() callers sort it; groups_search() relies on that),
 * so a binary search for the first gid >= min answers the same in at most 17 reads
 * (NGROUPS_MAX is 65536). */
NS_INLINE int ns_sockcred_in_groups(const struct ns_sockcred *c, __u32 min, __u32 max)
{
	struct group_info___ns *gi = (void *)(unsigned long)c->group_info;
	if (!gi)
		return 0;
	int n = 0;
	if (bpf_core_read(&n, sizeof(n), &gi->ngroups) || n <= 0)
		return 0;
	/* The array's place relocated once; the index added by hand. */
	__u64 gids = (__u64)(unsigned long)__builtin_preserve_access_index(&gi->gid);
	__u32 lo = 0, hi = (__u32)n > 65536 ? 65536 : (__u32)n;
	for (int step = 0; step < 18 && lo < hi; step++) {
		__u32 mid = lo + (hi - lo) / 2;
		__u32 g = 0;
		if (bpf_probe_read_kernel(&g, sizeof(g), (const void *)(gids + (__u64)mid * 4)))
			return 0;
		if (g < min)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo >= (__u32)n)
		return 0;
	__u32 g = 0;
	if (bpf_probe_read_kernel(&g, sizeof(g), (const void *)(gids + (__u64)lo * 4)))
		return 0;
	return g >= min && g <= max;
}

#endif
