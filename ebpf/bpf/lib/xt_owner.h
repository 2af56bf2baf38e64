/* SPDX-License-Identifier: GPL-2.0 */
/* xt_owner's owner_mt() (net/netfilter/xt_owner.c) and nft_meta's skuid/skgid
 * (nft_meta_get_eval_skugid), residual operations 110 and 111, run from lib/residual.h
 * on the socket lib/sockcred.h reads. The compiler uses them only at OUTPUT and
 * POSTROUTING (TC egress), and only in namespaces owned by the initial user namespace,
 * where make_kuid()/from_kuid_munged() change no id. The reference (src/residual.rs)
 * has no sockets: its packets take the "no socket" branch. */
#ifndef NS_XT_OWNER_H
#define NS_XT_OWNER_H

#include "common.h"

#define NS_XT_OWNER_UID 1
#define NS_XT_OWNER_GID 2
#define NS_XT_OWNER_SOCKET 4
#define NS_XT_OWNER_SUPPL_GROUPS 8

NS_INLINE __u32 ns_xt_owner_word(const __u8 *d)
{
	return (__u32)d[0] | (__u32)d[1] << 8 | (__u32)d[2] << 16 | (__u32)d[3] << 24;
}

/* 1 holds, 0 breaks. */
NS_INLINE int ns_res_xt_owner(struct ns_res_state *rs, const struct ns_res_insn *in,
			      struct ns_hook *hk)
{
	__u8 match = in->flags, invert = in->arg;
	struct ns_sockcred *c = &rs->cred;
	int found = ns_sockcred_read(hk, rs->iif, rs->l4proto, rs->has_l4proto,
				     NS_SOCKCRED_FULL_SK, c);
	if (found == NS_SOCKCRED_NONE)
		return (match ^ invert) == 0;
	/* A socket, but `! --socket-exists`. */
	if (match & invert & NS_XT_OWNER_SOCKET)
		return 0;
	if (found == NS_SOCKCRED_NOFILE)
		return ((match ^ invert) & (NS_XT_OWNER_UID | NS_XT_OWNER_GID)) == 0;
	if (match & NS_XT_OWNER_UID) {
		__u32 min = ns_xt_owner_word(in->data), max = ns_xt_owner_word(in->data + 4);
		int in_range = c->fsuid >= min && c->fsuid <= max;
		if (in_range ^ !(invert & NS_XT_OWNER_UID))
			return 0;
	}
	if (match & NS_XT_OWNER_GID) {
		__u32 min = ns_xt_owner_word(in->data + 8), max = ns_xt_owner_word(in->data + 12);
		int hit = c->fsgid >= min && c->fsgid <= max;
		if (!hit && (match & NS_XT_OWNER_SUPPL_GROUPS))
			hit = ns_sockcred_in_groups(c, min, max);
		if (hit ^ !(invert & NS_XT_OWNER_GID))
			return 0;
	}
	return 1;
}

/* NFT_META_SKUID / SKGID into dreg (4 bytes); breaks without a socket file. */
NS_INLINE int ns_res_sock_ugid(struct ns_res_state *rs, const struct ns_res_insn *in,
			       struct ns_hook *hk)
{
	struct ns_sockcred *c = &rs->cred;
	__u32 dreg = in->dreg;
	if (ns_sockcred_read(hk, rs->iif, rs->l4proto, rs->has_l4proto, NS_SOCKCRED_FULL_SK,
			     c) != NS_SOCKCRED_FILE)
		return 0;
	if (dreg + 4 > NS_RES_REGS)
		return -1;
	__u32 v = in->arg ? c->fsgid : c->fsuid;
	rs->regs[dreg & (NS_RES_REGS - 1)] = v;
	rs->regs[(dreg + 1) & (NS_RES_REGS - 1)] = v >> 8;
	rs->regs[(dreg + 2) & (NS_RES_REGS - 1)] = v >> 16;
	rs->regs[(dreg + 3) & (NS_RES_REGS - 1)] = v >> 24;
	return 1;
}

#endif
