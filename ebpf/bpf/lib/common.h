/* SPDX-License-Identifier: GPL-2.0-only */
/* Types and helpers shared by every nftshim data-plane header. */
#ifndef NFTSHIM_COMMON_H
#define NFTSHIM_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NS_INLINE static __always_inline

/* LBVS dimensions, one per group of packet fields looked up together. The Rust map
 * builder (src/maps.rs, `Dim`) uses the same numbering. */
enum ns_dim {
	DIM_SADDR = 0,    /* ip saddr / ip6 saddr: LPM tries */
	DIM_DADDR = 1,    /* ip daddr / ip6 daddr: LPM tries */
	DIM_L4PROTO = 2,  /* meta l4proto: array, 256 = not IP */
	DIM_SPORT = 3,    /* transport source port: array, 65536 = no ports */
	DIM_DPORT = 4,    /* transport destination port: array, 65536 = no ports */
	DIM_ICMP = 5,     /* icmp type (0..255) / icmpv6 type (256..511): array, 512 = neither */
	DIM_IIF = 6,      /* meta iif: hash */
	DIM_OIF = 7,      /* meta oif: hash */
	DIM_MARK0 = 8,    /* meta mark & cfg.mark_mask[0]: hash */
	DIM_MARK1 = 9,    /* meta mark & cfg.mark_mask[1]: hash */
	DIM_CTSTATE = 10, /* ct state: array indexed by the state's bit number */
	DIM_CTMARK = 11,  /* ct mark & cfg.ctmark_mask: hash */
	NS_NDIMS = 12,
};

/* Rule actions (`rules[i].kind`). Same numbering as Rust `maps::ActionKind`. */
enum ns_action {
	NS_ACCEPT = 0,
	NS_DROP = 1,
	NS_CONTINUE = 2, /* rule without verdict (counter only): evaluation goes on */
	NS_JUMP = 3,
	NS_GOTO = 4,
	NS_RETURN = 5,
	NS_REJECT = 6,
};

#define NS_MAX_BASE 32       /* base chains per program (bits of cfg.base_scope[]) */
#define NS_JUMP_STACK_SIZE 16 /* NFT_JUMP_STACK_SIZE */

/* Optional parts of the program (bits of cfg.features). Off, the verifier prunes them. */
#define NS_F_CONNTRACK (1u << 0) /* track connections before the chains */
#define NS_F_CHECKS (1u << 1)    /* some rule has residual checks (sets, limit, quota, ct status) */
#define NS_F_STMTS (1u << 2)     /* some rule has statements (mark set, log) */
#define NS_F_REJECT (1u << 3)    /* some rule rejects */
#define NS_F_JUMPS (1u << 4)     /* some rule jumps or gotos */
#define NS_F_ROUTE_ANSWERS (1u << 5) /* reject answers at TC ingress follow the route back */
#define NS_F_RESIDUAL (1u << 6)  /* some rule has a residual program (lib/residual.h) */
#define NS_F_NETDEV_VIEW (1u << 7) /* some residual program uses NS_RES_NETDEV (lib/netdev.h) */
#define NS_F_MARK_ANSWERS (1u << 8) /* answers from TC ingress are marked for the egress
				     * programs, on every device (lib/reject.h) */
#define NS_F_WRITES (1u << 9) /* some rule writes packet headers (lib/rewrite.h) */
#define NS_F_BRIDGE (1u << 10) /* bridge family chains: frames classified as the bridge's
				* rx handler sees them, lengths from the network header
				* untrimmed (lib/bridge.h) */
#define NS_F_BRIDGE_TX (1u << 11)    /* the bridge device's egress: accepted frames are marked
				      * for the ports' output hook (lib/bridge.h) */
#define NS_F_BRIDGE_CLEAR (1u << 12) /* egress: take that mark off */
#define NS_F_XT_LATE_OPS (1u << 14)  /* some residual program uses xt_socket, ipv6header or
				      * rateest (lib/residual.h): off, the verifier prunes them */
#define NS_F_CT_LABELS (1u << 21)   /* some rule tests or sets connection labels */
#define NS_F_SOCKCRED (1u << 15)     /* some residual program reads the socket file's
				      * credentials (lib/sockcred.h, xt_owner.h) */
#define NS_F_RECENT (1u << 17)	     /* some residual program uses xt_recent's lists
				      * (lib/xt_recent.h) */
#define NS_F_ADDRTYPE_RT (1u << 20) /* some residual program asks an IPv4 address's type
				      * of the local routing table (lib/addrtype.h) */
#define NS_F_TCPOPTSTRIP (1u << 13)  /* some rule strips TCP options (lib/tcpoptstrip.h);
				      * off, its walk and its drop leave the verifier's paths */
#define NS_F_HMARK (1u << 18)        /* some rule has an xt_HMARK statement (lib/hmark.h) */
#define NS_F_FWD_REJECT (1u << 19)   /* a forward chain rejects: at TC egress, the answer to a
				      * forwarded packet takes the route back (lib/reject.h) */
#define NS_F_NFLOG (1u << 16) /* some rule logs to an nfnetlink_log group (lib/nflog.h) */
#define NS_F_NFLOG_INPUT (1u << 22) /* some of those at input: the socket early demux
				     * attaches (lib/nflog_demux.h) */
#define NS_F_XT_ECN (1u << 24) /* some rule has ipt_ECN's TCP operations (lib/xt_ecn.h) */
#define NS_F_XT_U32 (1u << 23) /* some residual program runs xt_u32's tests (lib/xt_u32.h) */

/* Conntrack timeouts (cfg.ct_timeout[], seconds). Same numbering as Rust
 * `loader::CtTimeouts`. */
enum ns_ct_timeout {
	NS_CTT_TCP_SYN_SENT = 0,
	NS_CTT_TCP_SYN_RECV = 1,
	NS_CTT_TCP_ESTABLISHED = 2,
	NS_CTT_TCP_FIN_WAIT = 3,
	NS_CTT_TCP_CLOSE_WAIT = 4,
	NS_CTT_TCP_LAST_ACK = 5,
	NS_CTT_TCP_TIME_WAIT = 6,
	NS_CTT_TCP_CLOSE = 7,
	NS_CTT_UDP_UNREPLIED = 8,
	NS_CTT_UDP_REPLIED = 9,
	NS_CTT_ICMP = 10,
	NS_CTT_GENERIC = 11,
	NS_CTT_TCP_UNACK = 12, /* established before any reply (mid-stream pickup) */
	NS_CT_NTIMEOUTS = 16,  /* room for an index masked with 15 */
};

/* Per-program constants, set by the loader before the program is verified
 * (EbpfLoader::override_global). Being read-only, the verifier prunes the code of
 * dimensions and features no rule uses. Two rulesets with the same constants can
 * share one loaded program: a commit then rewrites only the maps (ebpf/src/patch.rs).
 * Layout = Rust `maps::BpfConfig`. */
struct ns_config {
	__u32 dims;      /* bit d set: some rule tests dimension d */
	__u32 features;  /* NS_F_* */
	__u32 egress;    /* TC attached at egress: skb->ifindex is the output device */
	__u32 mark_mask[2];
	__u32 ctmark_mask;
	__u32 ct_timeout[NS_CT_NTIMEOUTS];
	/* TC ingress of the loopback device: its packets were tracked at its egress. */
	__u32 loopback_ingress;
	/* Entries per vector in `vector_blocks` (room for vectors to grow in place). */
	__u32 block_stride;
	/* The namespace's cookie: socket matches' net_eq() (lib/sockx.h). */
	__u64 netns_cookie;
};

const volatile struct ns_config cfg = {};

/* Per-ruleset values a commit may rewrite in place (the program's .bss, written by
 * the loader before the program is attached). Layout = Rust `maps::BpfLive`. */
struct ns_live {
	__u32 nrules;    /* rules of all chains; counter nrules + b is base chain b's policy */
	__u32 nblocks;   /* 4096-rule blocks per bit-vector */
	__u32 max_steps; /* bpf_loop bound (worst case over all paths through the chains) */
	__u32 nbase;     /* base chains are chain ids 0 .. nbase - 1, in hook order */
	/* Per packet kind (0 IPv4, 1 IPv6, 2 other): bit b set when base chain b sees it. */
	__u32 base_scope[3];
	__u32 miss[NS_NDIMS];   /* hash dimensions: vector when the key is not in the map */
	__u32 absent[NS_NDIMS]; /* address dimensions: vector when the packet is not IP */
	/* Fast path by packet kind and ct state bit: ((rule + 1) << 1 | drop) when the
	 * first base chain's first rule that can match such packets tests nothing but the
	 * ct state and decides (drop, or accept in the only base chain); 0 otherwise. */
	__u32 fast_rule[3][8];
};

volatile struct ns_live live = {};

#define NS_FEATURE(f) (cfg.features & (f))

/* The hook's context, for what runs in the chains' bpf_loop callbacks (which have no
 * packet pointer): passed down as their callback context, on the hook's stack. Only
 * residual operations that read past the header copy use it (lib/residual.h). */
struct ns_hook {
	void *ctx; /* struct __sk_buff * or struct xdp_md * */
	/* A constant each entry stores: the verifier then sees which load helper the
	 * program type has and prunes the other. */
	__u64 xdp;
};

/* bpf_skb_load_bytes or bpf_xdp_load_bytes, as the hook has. */
NS_INLINE long ns_hook_load(const struct ns_hook *hk, __u32 off, void *to, __u32 len)
{
	if (hk->xdp)
		return bpf_xdp_load_bytes(hk->ctx, off, to, len);
	return bpf_skb_load_bytes(hk->ctx, off, to, len);
}

#endif
