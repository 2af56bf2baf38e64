// SPDX-License-Identifier: GPL-2.0-only
/* nftshim data plane: one nftables chain compiled to LBVS maps, enforced at XDP or TC.
 * Both programs parse into a struct pkt_ctx and share ns_classify(). */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/actions.h"
#include "lib/classify.h"

#define XDP_DROP 1
#define XDP_PASS 2
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* Header bytes TC makes linear before parsing (VLAN + IPv6 ext headers + L4 ports). */
#define NS_PULL_LEN 256

char LICENSE[] SEC("license") = "GPL";

/* XDP entry: classifies in the driver, before an skb exists (no mark, no output device). */
SEC("xdp")
int nftshim_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct pkt_ctx p = {};

	parse_packet(data, data_end, &p);
	p.iif = ctx->ingress_ifindex;
	p.len = data_end - data;
	return ns_classify(&p) == NS_ACCEPT ? XDP_PASS : XDP_DROP;
}

/* TC entry, at ingress or (cfg.egress) egress: has the mark and, at egress, the output
 * device. */
SEC("classifier")
int nftshim_tc(struct __sk_buff *skb)
{
	struct pkt_ctx p = {};
	__u32 want = skb->len < NS_PULL_LEN ? skb->len : NS_PULL_LEN;

	if (skb->data_end - skb->data < want)
		bpf_skb_pull_data(skb, want);
	parse_packet((void *)(long)skb->data, (void *)(long)skb->data_end, &p);
	p.iif = skb->ingress_ifindex;
	p.oif = cfg.egress ? skb->ifindex : 0;
	p.mark = skb->mark;
	p.len = skb->len;
	return ns_classify(&p) == NS_ACCEPT ? TC_ACT_OK : TC_ACT_SHOT;
}
