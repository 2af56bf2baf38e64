// SPDX-License-Identifier: GPL-2.0-only
/* nftshim data plane: a hook's nftables chains compiled to LBVS maps, enforced at XDP
 * or TC. Both programs parse into the per-CPU evaluation state, track connections,
 * run the chains with ns_evaluate(), then carry out what only the hook can: the mark
 * (TC), log events, and a reject's answer. */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/arp.h"
#include "lib/bridge.h"
#include "lib/actions.h"
#include "lib/lbvs.h"
#include "lib/conntrack.h"
#include "lib/sets.h"
#include "lib/stmts.h"
#include "lib/reject.h"
#include "lib/eval.h"
#include "lib/log.h"
#include "lib/nflog.h"

#define XDP_DROP 1
#define XDP_PASS 2
#define XDP_TX 3
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* Header bytes TC makes linear before parsing (VLAN + IPv6 ext headers + L4 ports +
 * an ICMP error's quoted headers). */
#define NS_PULL_LEN 256

char LICENSE[] SEC("license") = "GPL";

/* Tracks the parsed packet (or, without conntrack, leaves it INVALID as nf_tables
 * sees packets then), runs the chains, and inserts a new connection it accepted.
 * `tracked`: an earlier program already tracked this packet (see ns_conntrack). */
/* A subprogram of its own: the tracker's locals then take no room on the stack that
 * the chains' bpf_loop callbacks add to (the verifier's 512 bytes are per call chain). */
static __noinline void ns_track(struct ns_eval *e, int tracked)
{
	__builtin_memset(&e->ct, 0, sizeof(e->ct));
	if (NS_FEATURE(NS_F_CONNTRACK))
		ns_conntrack(&e->ct, &e->pkt, bpf_ktime_get_ns(), tracked);
	ns_pkt_nft_view(&e->pkt);
	/* The verifier refuses a subprogram that exits with a pointer to its stack in r0,
	 * which a void function leaves there from its last helper call (clang drops an
	 * unused `return 0`). */
	asm volatile("r0 = 0" ::: "r0", "memory");
}

NS_INLINE __u32 ns_run(struct ns_eval *e, int tracked, struct ns_hook *hk)
{
	ns_track(e, tracked);
	__u32 verdict = ns_evaluate(e, hk);
	if (NS_FEATURE(NS_F_CONNTRACK))
		ns_ct_commit(&e->ct, verdict == NS_ACCEPT);
	return verdict;
}

/* Reads what a reject's answer needs from the packet and builds its headers in
 * e->reply. Returns 0 when no answer is due. `load` is the hook's load-bytes helper. */
#define NS_PREPARE_REPLY(load, ctx, e, frame_len, ok)                                        \
	do {                                                                                 \
		struct pkt_ctx *p_ = &(e)->pkt;                                              \
		struct ns_reply *r_ = &(e)->reply;                                           \
		ns_pkt_xport_view(p_);                                                       \
		__u32 l3_ = p_->l3_off;                                                      \
		(ok) = 0;                                                                    \
		if (p_->l3 == NS_L3_NONE || (p_->flags & PKT_F_LATER_FRAG) || l3_ < 14 ||   \
		    l3_ > NS_MAX_L2)                                                         \
			break;                                                               \
		if (load(ctx, 0, r_->l2, l3_) < 0)                                           \
			break;                                                               \
		/* Back to the sender: swap the MAC addresses. */                          \
		__u8 mac_[6];                                                                \
		__builtin_memcpy(mac_, r_->l2, 6);                                           \
		__builtin_memcpy(r_->l2, r_->l2 + 6, 6);                                     \
		__builtin_memcpy(r_->l2 + 6, mac_, 6);                                       \
		if (((e)->rule & 0xff) == NS_REJECT_TCP_RST) {                               \
			if (p_->l4proto != 6 || !(p_->flags & PKT_F_TCPFLAGS))               \
				break;                                                       \
			if (p_->l3 == NS_L3_IPV4 ? ns_v4_multicast_or_broadcast(p_->daddr[0]) \
						 : !ns_v6_unicast(p_->saddr) ||             \
							   !ns_v6_unicast(p_->daddr))        \
				break;                                                       \
			if (load(ctx, p_->l4_off, r_->tcp_in, 20) < 0)                       \
				break;                                                       \
			(ok) = ns_build_rst(r_, p_);                                         \
			break;                                                               \
		}                                                                            \
		if (!ns_unreach_allowed(p_))                                                 \
			break;                                                               \
		__u32 max_ = p_->l3 == NS_L3_IPV4 ? NS_QUOTE_MAX_V4 : NS_QUOTE_MAX_V6;       \
		__u32 q_ = p_->len < max_ ? p_->len : max_;                                  \
		if ((frame_len) < l3_ + q_)                                                  \
			q_ = (frame_len) > l3_ ? (frame_len) - l3_ : 0;                      \
		if (q_ == 0 || q_ > NS_QUOTE_MAX_V6)                                         \
			break;                                                               \
		ns_zero_padding(r_, q_);                                                     \
		if (load(ctx, l3_, r_->buf, q_) < 0)                                         \
			break;                                                               \
		r_->quote_len = q_;                                                          \
		__u8 tos_ = p_->l3 == NS_L3_IPV4 ? r_->buf[1] : 0;                           \
		__u8 code_ = p_->l3 == NS_L3_IPV4 ? (e)->rule >> 8 : (e)->rule >> 16;        \
		(ok) = ns_build_unreach(r_, p_, code_, tos_);                                \
	} while (0)

/* The frame's ethertype: XDP has no skb->protocol. */
NS_INLINE __u16 ns_xdp_ethertype(void *data, void *data_end)
{
	__u8 *eth = data;
	if ((void *)(eth + ETH_HLEN) > data_end)
		return 0;
	return ((__u16)eth[12] << 8) | eth[13];
}

/* XDP entry: classifies in the driver, before an skb exists (no mark, no output device). */
SEC("xdp")
int nftshim_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 frame_len = data_end - data;
	struct ns_eval *e = ns_eval_state();
	if (!e)
		return XDP_DROP;
	__builtin_memset(&e->pkt, 0, sizeof(e->pkt));
	parse_packet(data, data_end, frame_len, &e->pkt);
	e->pkt.iif = ctx->ingress_ifindex;
	if (NS_FEATURE(NS_F_RESIDUAL))
		NS_RES_CAPTURE(bpf_xdp_load_bytes, ctx, frame_len, ns_xdp_ethertype(data, data_end),
			       0, 0, 0, 0);
	struct ns_hook hk = {.ctx = ctx, .xdp = 1};
	__u32 verdict = ns_run(e, 0, &hk); /* XDP is not attached by the runtime: tracks always */
	/* Header writes are carried out by the TC entry only (the runtime never attaches
	 * XDP): a packet a rule rewrote is dropped and counted as an error. */
	if (NS_FEATURE(NS_F_WRITES) && e->writes.n) {
		ns_stat(NS_STAT_ERROR);
		return XDP_DROP;
	}
	if (NS_FEATURE(NS_F_STMTS)) {
		e->log_cred_found = 0;
		NS_EMIT_LOGS(bpf_xdp_load_bytes, ctx, e, frame_len);
	}
	if (verdict == NS_ACCEPT)
		return XDP_PASS;
	if (!NS_FEATURE(NS_F_REJECT) || verdict != NS_REJECT)
		return XDP_DROP;

	int ok;
	NS_PREPARE_REPLY(bpf_xdp_load_bytes, ctx, e, frame_len, ok);
	if (!ok)
		return XDP_DROP;
	struct ns_reply *r = &e->reply;
	__u32 l3 = e->pkt.l3_off;
	__u32 hdr = r->hdr_len;
	/* An unreachable keeps the quoted part and makes room in front for the new
	 * headers; a reset is written over the segment's headers. */
	__u32 keep = l3 + (r->quote_len ? r->quote_len : hdr);
	if (bpf_xdp_adjust_tail(ctx, (int)keep - (int)frame_len) < 0)
		return XDP_DROP;
	if (r->quote_len && bpf_xdp_adjust_head(ctx, -(int)hdr) < 0)
		return XDP_DROP;
	if (l3 < 14 || l3 > NS_MAX_L2 || hdr < 28 || hdr > 60)
		return XDP_DROP;
	if (bpf_xdp_store_bytes(ctx, 0, r->l2, l3) < 0 ||
	    bpf_xdp_store_bytes(ctx, l3, r->hdr, hdr) < 0)
		return XDP_DROP;
	return XDP_TX;
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
	__u32 frame_len = skb->len;
	__builtin_memset(&e->pkt, 0, sizeof(e->pkt));
	parse_packet((void *)(long)skb->data, (void *)(long)skb->data_end, frame_len, &e->pkt);
	ns_classify_arp(skb, &e->pkt, frame_len, cfg.egress);
	if (NS_FEATURE(NS_F_BRIDGE))
		ns_classify_bridge(skb, &e->pkt, frame_len, cfg.egress);
	else if (cfg.egress && NS_FEATURE(NS_F_BRIDGE_CLEAR))
		ns_bridge_take_sent(skb);
	/* A marked answer is locally generated: no input device (output chains, not
	 * forward). Its connection was looked up (observed) as a forwarded packet's is. */
	int answer = cfg.egress && NS_FEATURE(NS_F_MARK_ANSWERS) && ns_take_answer_mark(skb);
	e->pkt.iif = answer ? 0 : skb->ingress_ifindex;
	e->pkt.oif = cfg.egress ? skb->ifindex : 0;
	e->pkt.mark = skb->mark;
	if (NS_FEATURE(NS_F_RESIDUAL))
		NS_RES_CAPTURE(bpf_skb_load_bytes, skb, frame_len, bpf_ntohs(skb->protocol),
			       skb->vlan_present, bpf_ntohs(skb->vlan_proto), skb->vlan_tci,
			       skb->pkt_type);
	/* Forwarded packets were tracked at their input device, loopback's at its egress. */
	int tracked = cfg.egress ? skb->ingress_ifindex != 0 : cfg.loopback_ingress;
	struct ns_hook hk = {.ctx = skb, .xdp = 0};
	__u32 verdict = ns_run(e, tracked, &hk);
	if (NS_FEATURE(NS_F_WRITES) && e->writes.n && verdict != NS_DROP &&
	    ns_apply_writes(skb, &e->writes) < 0) {
		ns_stat(NS_STAT_ERROR);
		return TC_ACT_SHOT;
	}
	if (NS_FEATURE(NS_F_STMTS)) {
		/* nf_log_dump_sk_uid_gid(): skb->sk as it is (no request socket's
		 * listener), a socket file's fsuid/fsgid. */
		e->log_cred_found = 0;
		if (NS_FEATURE(NS_F_SOCKCRED) && cfg.egress && e->nlogs)
			e->log_cred_found = ns_sockcred_read(&hk, e->pkt.iif, 0, 0, 0,
							     &e->log_cred) == NS_SOCKCRED_FILE;
		NS_EMIT_LOGS(bpf_skb_load_bytes, skb, e, frame_len);
		if (NS_FEATURE(NS_F_NFLOG))
			ns_emit_nflog(skb, &hk, frame_len);
		if (skb->mark != e->pkt.mark)
			skb->mark = e->pkt.mark;
		if (e->priority_set)
			skb->priority = e->priority;
	}
	if (verdict == NS_ACCEPT) {
		if (cfg.egress && NS_FEATURE(NS_F_BRIDGE_TX))
			ns_bridge_mark_sent(skb);
		return TC_ACT_OK;
	}
	if (!NS_FEATURE(NS_F_REJECT) || verdict != NS_REJECT)
		return TC_ACT_SHOT;

	int ok;
	/* A forwarded packet (at egress, it came in on a device): its answer takes the
	 * route back to the sender, from the address the route gives an ICMP error. */
	int fwd = NS_FWD_NONE;
	if (cfg.egress && NS_FEATURE(NS_F_FWD_REJECT) && e->pkt.iif) {
		fwd = ns_route_fwd_answer(skb, &e->reply, &e->pkt, e->rule);
		if (fwd == NS_FWD_NONE)
			return TC_ACT_SHOT;
	}
	NS_PREPARE_REPLY(bpf_skb_load_bytes, skb, e, frame_len, ok);
	if (!ok)
		return TC_ACT_SHOT;
	struct ns_reply *r = &e->reply;
	if (!cfg.egress && NS_FEATURE(NS_F_ROUTE_ANSWERS) && !ns_route_answer(skb, r, &e->pkt))
		return TC_ACT_SHOT;
	if (fwd != NS_FWD_NONE) {
		/* The frame is the output device's Ethernet frame: the answer's link-layer
		 * header is the route back's (ethertype kept); without a neighbour entry
		 * bpf_redirect_neigh() writes it. */
		if (e->pkt.l3_off != 14)
			return TC_ACT_SHOT;
		__builtin_memcpy(r->l2, r->fib.dmac, 6);
		__builtin_memcpy(r->l2 + 6, r->fib.smac, 6);
	}
	__u32 l3 = e->pkt.l3_off;
	__u32 hdr = r->hdr_len;
	if (bpf_skb_change_tail(skb, l3 + (r->quote_len ? r->quote_len : hdr), 0) < 0)
		return TC_ACT_SHOT;
	if (r->quote_len && bpf_skb_change_head(skb, hdr, 0) < 0)
		return TC_ACT_SHOT;
	if (l3 < 14 || l3 > NS_MAX_L2 || hdr < 28 || hdr > 60)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, r->l2, l3, 0) < 0 ||
	    bpf_skb_store_bytes(skb, l3, r->hdr, hdr, 0) < 0)
		return TC_ACT_SHOT;
	if (!cfg.egress && NS_FEATURE(NS_F_MARK_ANSWERS))
		ns_mark_answer(skb);
	/* Judged as the kernel's answer (ip_local_out) by the egress program of the
	 * device it leaves by: the compiler gives every device one that takes the mark. */
	if (fwd != NS_FWD_NONE) {
		ns_mark_answer(skb);
		return ns_send_fwd_answer(skb, r, fwd);
	}
	/* Ingress: out of the device it came in on; egress: into the local stack. */
	return bpf_redirect(skb->ifindex, cfg.egress ? BPF_F_INGRESS : 0);
}
