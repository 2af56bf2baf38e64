// SPDX-License-Identifier: GPL-2.0-only
/* nftshim data plane: a hook's nftables chains compiled to LBVS maps, enforced at XDP
 * or TC. Both programs parse into the per-CPU evaluation state and share
 * ns_evaluate(). */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/actions.h"
#include "lib/lbvs.h"
#include "lib/conntrack.h"
#include "lib/eval.h"

#define XDP_DROP 1
#define XDP_PASS 2
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* Header bytes TC makes linear before parsing (VLAN + IPv6 ext headers + L4 ports +
 * an ICMP error's quoted headers). */
#define NS_PULL_LEN 256

char LICENSE[] SEC("license") = "GPL";

/* Tracks the parsed packet (or, without conntrack, leaves it INVALID as nf_tables
 * sees packets then), runs the chains, and inserts a new connection it accepted. */
NS_INLINE __u32 ns_run(struct ns_eval *e)
{
	__builtin_memset(&e->ct, 0, sizeof(e->ct));
	if (NS_FEATURE(NS_F_CONNTRACK))
		ns_conntrack(&e->ct, &e->pkt, bpf_ktime_get_ns());
	__u32 verdict = ns_evaluate(e);
	if (NS_FEATURE(NS_F_CONNTRACK))
		ns_ct_commit(&e->ct, verdict == NS_ACCEPT);
	return verdict;
}

/* XDP entry: classifies in the driver, before an skb exists (no mark, no output device). */
SEC("xdp")
int nftshim_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ns_eval *e = ns_eval_state();
	if (!e)
		return XDP_DROP;
	__builtin_memset(&e->pkt, 0, sizeof(e->pkt));
	parse_packet(data, data_end, data_end - data, &e->pkt);
	e->pkt.iif = ctx->ingress_ifindex;
	__u32 verdict = ns_run(e);
	return verdict == NS_ACCEPT ? XDP_PASS : XDP_DROP;
}

/* TC entry, at ingress or (cfg.egress) egress: has the mark and, at egress, the output
 * device. */
SEC("classifier")
int nftshim_tc(struct __sk_buff *skb)
{
	__u32 want = skb->len < NS_PULL_LEN ? skb->len : NS_PULL_LEN;

	if (skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);
	struct ns_eval *e = ns_eval_state();
	if (!e)
		return TC_ACT_SHOT;
	__builtin_memset(&e->pkt, 0, sizeof(e->pkt));
	parse_packet((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, &e->pkt);
	e->pkt.iif = skb->ingress_ifindex;
	e->pkt.oif = cfg.egress ? skb->ifindex : 0;
	e->pkt.mark = skb->mark;
	__u32 verdict = ns_run(e);
	return verdict == NS_ACCEPT ? TC_ACT_OK : TC_ACT_SHOT;
}
