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

/* Lives in map memory (the callers' per-CPU scratch): the reads below use it as
 * their scratch too, which keeps them off the BPF stack the chains' calls share. */
struct ns_sockcred {
	__u32 fsuid; /* kuid_t / kgid_t values: the initial user namespace's ids */
	__u32 fsgid;
	__u64 group_info; /* struct group_info *, for ns_sockcred_in_groups() */
	__u64 tmp;
	/* ns_sockcred_in_groups()'s search: &gid[0], bounds, the gid sought. */
	__u64 gids;
	__u32 lo, hi, min, pad;
};

/* The next pointer of the chain, read from kernel memory at `at` into c->tmp. */
NS_INLINE __u64 ns_sockcred_ptr(struct ns_sockcred *c, const void *at)
{
	c->tmp = 0;
	if (bpf_probe_read_kernel(&c->tmp, sizeof(c->tmp), at))
		return 0;
	return c->tmp;
}

/* NS_SOCKCRED_* of the socket at kernel address `addr` (a full socket): its file's
 * fsuid, fsgid and group_info into `out`. */
NS_INLINE int ns_sockcred_of_sock(__u64 addr, struct ns_sockcred *out)
{
	if (!addr)
		return NS_SOCKCRED_NONE;
	struct sock___ns *s = (void *)addr;
	struct socket___ns *sock = (void *)ns_sockcred_ptr(out, &s->sk_socket);
	if (!sock)
		return NS_SOCKCRED_NONE;
	struct file___ns *file = (void *)ns_sockcred_ptr(out, &sock->file);
	if (!file)
		return NS_SOCKCRED_NOFILE;
	const struct cred___ns *cred = (void *)ns_sockcred_ptr(out, &file->f_cred);
	if (!cred)
		return NS_SOCKCRED_NOFILE;
	if (bpf_core_read(&out->fsuid, sizeof(out->fsuid), &cred->fsuid.val) ||
	    bpf_core_read(&out->fsgid, sizeof(out->fsgid), &cred->fsgid.val))
		return NS_SOCKCRED_NOFILE;
	out->group_info = ns_sockcred_ptr(out, &cred->group_info);
	return NS_SOCKCRED_FILE;
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
		/* The verifier forbids arithmetic on socket pointers; the same bits
		 * stored to and loaded from map memory are a plain number. */
		*(volatile __u64 *)&out->tmp = (__u64)(unsigned long)sk;
		struct request_sock___ns *req = (void *)*(volatile __u64 *)&out->tmp;
		addr = ns_sockcred_ptr(out, &req->__req_common.skc_listener);
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
		*(volatile __u64 *)&out->tmp = (__u64)(unsigned long)full;
		addr = *(volatile __u64 *)&out->tmp;
	}
	return ns_sockcred_of_sock(addr, out);
}

/* One step of ns_sockcred_in_groups()'s binary search (a bpf_loop callback: the
 * verifier checks it once, where an unrolled search multiplies its states). ctx
 * holds the struct ns_sockcred pointer. */
static long ns_sockcred_search_step(__u64 i, void *ctx)
{
	struct ns_sockcred *c = *(struct ns_sockcred **)ctx;
	if (c->lo >= c->hi)
		return 1;
	__u32 mid = c->lo + (c->hi - c->lo) / 2;
	c->tmp = 0;
	if (bpf_probe_read_kernel(&c->tmp, 4, (const void *)(c->gids + (__u64)mid * 4))) {
		c->lo = c->hi = 0xffffffff;
		return 1;
	}
	if ((__u32)c->tmp < c->min)
		c->lo = mid + 1;
	else
		c->hi = mid;
	return 0;
}

/* Whether a supplementary group of the socket file's credentials lies in [min, max]
 * (owner_mt()'s XT_OWNER_SUPPL_GROUPS), after ns_sockcred_read() gave
 * NS_SOCKCRED_FILE. The kernel walks group_info->gid[] in order; the list is sorted
 * (set_groups() callers sort it; groups_search() relies on that), so a binary search
 * for the first gid >= min answers the same in at most 17 reads (NGROUPS_MAX is
 * 65536). */
NS_INLINE int ns_sockcred_in_groups(struct ns_sockcred *c, __u32 min, __u32 max)
{
	struct group_info___ns *gi = (void *)(unsigned long)c->group_info;
	if (!gi)
		return 0;
	c->tmp = 0;
	if (bpf_core_read(&c->tmp, 4, &gi->ngroups))
		return 0;
	__s32 n = (__s32)c->tmp;
	if (n <= 0)
		return 0;
	/* The array's place relocated once; the index added by hand. */
	c->gids = (__u64)(unsigned long)__builtin_preserve_access_index(&gi->gid);
	c->lo = 0;
	c->hi = (__u32)n > 65536 ? 65536 : (__u32)n;
	c->min = min;
	struct ns_sockcred *ctx = c;
	bpf_loop(18, ns_sockcred_search_step, &ctx, 0);
	if (c->lo >= (__u32)n)
		return 0;
	c->tmp = 0;
	if (bpf_probe_read_kernel(&c->tmp, 4, (const void *)(c->gids + (__u64)c->lo * 4)))
		return 0;
	return (__u32)c->tmp >= min && (__u32)c->tmp <= max;
}

#endif
