/* SPDX-License-Identifier: GPL-2.0-only */
/* Residual programs: what a candidate rule tests beyond the LBVS fields, as a short
 * run of nf_tables-like register operations (payload and meta loads, bitwise, shifts,
 * byte order, cmp, range, lookups in a list of key ranges). The Rust builder
 * (src/maps/checks.rs) writes them into residual_insns; src/residual.rs is the
 * reference. A load of bytes the packet does not have, or a failing test, stops the
 * program: the rule does not match (NFT_BREAK).
 *
 * The chains run in a bpf_loop callback, which has no packet pointer, so each hook
 * copies the frame's first NS_RES_HDR_MAX bytes into per-CPU scratch first
 * (NS_RES_CAPTURE). Loads end at most MAX_PAYLOAD_END (256) bytes after their base,
 * and the parser never puts a transport header past 1024 + VLAN bytes, so every load
 * the builder accepts lies inside the copy whenever the packet has the bytes. The one
 * exception, the SCTP chunk walk, reads the packet itself with the hook's load
 * helper (struct ns_hook, passed down as the bpf_loop callbacks' context). */
#ifndef NFTSHIM_RESIDUAL_H
#define NFTSHIM_RESIDUAL_H

#include "common.h"
#include "parse.h"
#include "ct_keys.h"
#include "sockcred.h"

#define NS_RES_HDR_MAX 2048 /* power of two: indexes are masked with it */
#define NS_RES_REGS 64      /* NFT_REG32_00 .. NFT_REG32_15 */
#define NS_RES_DATA 16
#define NS_RES_MAX_INSNS 32
#define NS_RES_MAX_ELEMS 256

enum ns_res_op {
	NS_RES_PAYLOAD = 1,   /* flags: enum ns_res_base; offset, len, dreg */
	NS_RES_META = 2,      /* arg: enum ns_res_meta; dreg */
	NS_RES_IMMEDIATE = 3, /* data[len] -> dreg */
	NS_RES_BITWISE = 4,   /* dreg = (sreg & data) ^ data2, whole words */
	NS_RES_SHIFT = 5,     /* one host-order word: flags 1 left / 0 right, arg bits */
	NS_RES_BYTEORDER = 6, /* swap each arg-byte word of len bytes */
	NS_RES_CMP = 7,       /* flags: enum ns_res_cmp; memcmp(sreg, data, len) */
	NS_RES_RANGE = 8,     /* flags: negated; data <= sreg <= data2 */
	NS_RES_LOOKUP = 9,    /* flags: negated; elements [first, first + count) */
	NS_RES_EXTHDR6 = 10,  /* arg: header type; flags: present; offset, len, dreg */
	NS_RES_TCPOPT = 11,   /* arg: option kind; flags: present; offset, len, dreg */
	NS_RES_NETDEV = 12,   /* what follows sees the packet as netdev chains do (netdev.h) */
	NS_RES_CT = 13,       /* arg: enum nft_ct_keys; flags: 1 reply tuple; dreg */
	NS_RES_SCTP_CHUNK = 14, /* arg: chunk type; flags: present; offset, len, dreg */
	/* xtables matches' own walks (xt.h); they may drop the packet (NS_RES_HOTDROP). */
	NS_RES_XT_HEADER = 20,	    /* len: transport header bytes the match reads */
	NS_RES_XT_SCTP = 21,	    /* arg: match type; flags: invert, map past 255;
				     * data, data2: chunk map; element first: flag tests */
	NS_RES_XT_DCCP_OPTION = 22, /* arg: option; flags: invert */
	NS_RES_XT_DROP_UNLESS = 23, /* memcmp(sreg, data, len) == 0, or drop */
	NS_RES_XT_IPV6_HEADER = 24, /* arg: header type; offset, len, dreg; flags: 1 whole
				     * header, 2 malformed breaks (no drop) */
	/* 80..84: small xtables walks and tests (xt.h). */
	NS_RES_XT_IPV6_OPTIONS = 80, /* arg: header type; len: options; data, data2:
				      * (type, length) pairs */
	NS_RES_XT_SRH_SEGMENT = 81,  /* flags: 1 next (else previous) segment; dreg */
	NS_RES_HALVES_EQ = 82,	     /* flags: negated; memcmp(sreg, sreg + len, len) */
	/* 105..109: ip6t_ipv6header, ipt_ECN (xt_ip6hdr.h). */
	NS_RES_XT_IPV6_HEADER_TYPES = 105, /* dreg: ipv6header_mt6()'s type bits */
	/* 120..124: xt_recent (xt_recent.h). */
	NS_RES_XT_RECENT = 120, /* data: list key; flags: check_set; arg: side; first:
				 * seconds; count: hit_count; len: invert */
	/* 85..89: xt_rateest (rateest.h). */
	NS_RES_XT_RATEEST = 85, /* data, data2: names; flags, arg: flags, mode; sreg */
	/* 135..139: IPv4 address types from the local routing table (addrtype.h). */
	NS_RES_XT_ADDRTYPE = 135, /* sreg: address; flags; data: mask, or dreg */
	/* 145..149: xt_u32 (xt_u32.h). */
	NS_RES_XT_U32 = 145, /* flags: invert; elements [first, first + count): tests */
	/* 60..69: xtables payload matches (xt_multiport, ...). */
	NS_RES_LOOKUP_EITHER = 60, /* as NS_RES_LOOKUP, of the key at sreg or at dreg */
	NS_RES_XT_STRING = 61,	   /* xt_string.h */
	/* 34..39: iptables-nft compat matches. */
	NS_RES_XT_PKTTYPE = 34, /* dreg: xt_pkttype's packet type (1 byte) */
	/* 45..49: xt_cpu, xt_statistic. */
	NS_RES_XT_CPU = 45,    /* data: CPU (host order); flags: invert */
	NS_RES_XT_RANDOM = 46, /* data: probability (host order); flags: invert */
	/* 55..59: socket matches (sockx.h). */
	NS_RES_XT_FULL_SOCKET = 55, /* skb->sk is a full socket of the namespace */
	NS_RES_XT_CGROUP_CLASSID = 56, /* data: net_cls classid (host order); flags: invert */
	/* 100..104: xt_socket (xt_socket.h). */
	NS_RES_XT_SOCKET = 100, /* flags: 1 nowildcard */
	/* 110..114: the socket file's credentials (xt_owner.h, sockcred.h). */
	NS_RES_XT_OWNER = 110, /* data: uid_min, uid_max, gid_min, gid_max (host order);
				* flags: match; arg: invert (struct xt_owner_match_info) */
	NS_RES_SOCK_UGID = 111, /* arg: 0 fsuid, 1 fsgid (nft_meta skuid/skgid); dreg */
	/* 50..54: connection-count matches (connlimit.h). */
	NS_RES_XT_CONNLIMIT_TUPLE = 50, /* hotdrop without a connection or a tuple */
};

/* A program's result besides 1 (holds), 0 (breaks) and -1 (error): an xtables
 * match dropped the packet (par->hotdrop; nft_compat answers NF_DROP). */
#define NS_RES_HOTDROP (-2)

/* Where a payload load starts. */
enum ns_res_base {
	NS_RES_NETWORK = 1,
	NS_RES_TRANSPORT = 2,
	NS_RES_LINK = 3,	  /* the MAC header, an accelerated VLAN tag put back (ns_res_link) */
	NS_RES_LINK_UNTAGGED = 4, /* the MAC header, the frame's bytes (IP hooks) */
};

/* linux/if_packet.h */
#define NS_PACKET_BROADCAST_XT 1
#define NS_PACKET_MULTICAST_XT 2
#define NS_PACKET_LOOPBACK_XT 5

#define NS_RES_MAX_EXTHDRS 8 /* IPv6 extension headers walked (as parse.h) */

enum ns_res_meta {
	NS_RES_META_LEN = 1,
	NS_RES_META_PROTOCOL = 2,
	NS_RES_META_NFPROTO = 3,
	NS_RES_META_L4PROTO = 4,
	NS_RES_META_MARK = 5,
};

enum ns_res_cmp {
	NS_RES_EQ = 0,
	NS_RES_NEQ = 1,
	NS_RES_LT = 2,
	NS_RES_LTE = 3,
	NS_RES_GT = 4,
	NS_RES_GTE = 5,
};

/* Same layout as Rust `maps::checks::BpfResidualInsn`. */
struct ns_res_insn {
	__u8 op;
	__u8 flags;
	__u8 sreg; /* byte offsets into the register file */
	__u8 dreg;
	__u8 len;
	__u8 arg;
	__u16 offset;
	__u32 first;
	__u32 count;
	__u8 data[NS_RES_DATA];
	__u8 data2[NS_RES_DATA];
};

/* Same layout as Rust `maps::checks::BpfResidualElem`. */
struct ns_res_elem {
	__u8 from[NS_RES_DATA];
	__u8 to[NS_RES_DATA];
};

/* The packet as netdev chains see it (netdev.h), prepared once per packet. */
struct ns_res_view {
	__u32 th;   /* frame offset of the transport header, with has_th */
	__u32 len;  /* skb->len */
	__u8 l4proto;
	__u8 has_l4proto;
	__u8 has_th;
	__u8 fragoff; /* a later fragment */
};

/* The packet's header copy and one program's run. */
struct ns_res_state {
	__u8 regs[NS_RES_REGS];
	__u32 hdr_len; /* bytes copied into hdr */
	/* Of the packet being run on (frame offsets; th 0: no transport header). */
	__u32 nh;
	__u32 th;
	__u32 end; /* end of the datagram (the kernel trims what follows) */
	__u32 len;
	__u32 mark;
	__u16 protocol; /* ethertype, network order bytes */
	__u8 nfproto;
	__u8 l4proto;
	__u8 has_l4proto;
	__u8 ipv6;
	__u8 has_th;  /* th is set (at netdev egress it may be frame offset 0) */
	__u8 fragoff; /* netdev: a later fragment, with th still set (see NS_RES_PAYLOAD) */
	/* nft_thoff() whenever the transport protocol is known, later fragments included
	 * (where the SCTP chunk walk starts). */
	__u8 has_thoff;
	__u32 thoff;
	/* Of the hook, set by NS_RES_CAPTURE: what the netdev view starts from. */
	__u32 frame_len;
	__u16 skb_protocol; /* skb->protocol, host order */
	/* The skb's hardware-accelerated VLAN tag (TC's __sk_buff; none at XDP). */
	__u8 vlan_present;
	__u8 pkt_type; /* skb->pkt_type (TC; 0 at XDP) */
	__u32 iif; /* the packet's input device (0: locally generated, answers too) */
	__u32 oif; /* its output device (0: none, at TC ingress) */
	/* What xt_socket.h reads: the transport protocol and header past an IPv6 AH
	 * header (ipv6_find_hdr() without IP6_FH_F_AUTH); th 0: none. */
	__u8 xp_l4proto;
	__u8 xp_has_l4proto;
	__u32 xp_th;
	/* A fragment (xt_socket.h): 1 the first, 2 a later one; its datagram's id. */
	__u8 frag;
	__u32 frag_id;
	__u16 vlan_proto; /* host order */
	__u16 vlan_tci;
	struct ns_res_view nd; /* what NS_RES_NETDEV switches to */
	/* The run: next operation, result (1 holds, 0 break, -1 error). */
	__u32 pc;
	__s32 result;
	/* A lookup's scan. */
	__u32 elem;
	__u32 key_sreg;
	__u32 key_len;
	__u32 found;
	struct ns_res_ct ct; /* the packet's connection, for NS_RES_CT */
	struct ns_sockcred cred; /* the socket's credentials (NS_RES_XT_OWNER, _SOCK_UGID) */
	/* An SCTP chunk walk: next chunk, end of the packet, type sought, and the chunk
	 * found (at 0: none) with its length. */
	__u32 sc_off;
	__u32 sc_end;
	__u32 sc_at;
	__u32 sc_len;
	__u8 sc_type;
	__u8 sc_hdr[4]; /* a chunk header */
	/* An xt_sctp chunk walk (NS_RES_XT_SCTP): its map, the types ALL still needs,
	 * the flag tests, and its result (-1 while walking, NS_RES_HOTDROP). */
	__u8 xs_map[32];
	__u8 xs_left[32];
	__u8 xs_flags[12];
	__u8 xs_nflags;
	__u8 xs_kind;
	__u8 xs_beyond;
	__s8 xs_result;
	/* An xt_dccp option walk (NS_RES_XT_DCCP_OPTION): next option, end, the one
	 * sought, and whether it was found. */
	__u32 xd_off;
	__u32 xd_end;
	__u8 xd_option;
	__u8 xd_found;
	__u8 xd_op[2];
	/* An ipv6_find_hdr() walk (NS_RES_XT_IPV6_HEADER): next header and where, the
	 * type sought, and the header found (frame offset) or an error (< 0). */
	__u32 x6_start;
	__s32 x6_found;
	__u8 x6_next;
	__u8 x6_target;
	__u8 x6_hp[4];
	/* hbh_mt6()'s option walk (NS_RES_XT_IPV6_OPTIONS): the rule's (type, length)
	 * pairs and how many, where the next option is, the header bytes left from
	 * there, and the result so far. */
	__u8 x6o_opts[32];
	__u32 x6o_n;
	__u32 x6o_ptr;
	__u32 x6o_left;
	__s32 x6o_result;
	/* ipv6header_mt6()'s walk (NS_RES_XT_IPV6_HEADER_TYPES, with x6_start, x6_next
	 * and x6_hp): the type bits seen, and how the walk ended (-1 still walking). */
	__u8 x6h_types;
	__s8 x6h_result;
	/* xt_HMARK's tuple (lib/hmark.h), kept here rather than on the stack. */
	__u32 hm_nh;
	__u32 hm_end;
	__u32 hm_src;
	__u32 hm_dst;
	__u32 hm_ports;
	__u32 hm_proto;
	/* xt_u32's tests (NS_RES_XT_U32): its elements, skb->len, the value and `at`
	 * of the test running, whether one is and its value was in a range, the result. */
	__u32 u32_first;
	__u32 u32_len;
	__u32 u32_val;
	__u32 u32_at;
	__u8 u32_open;
	__u8 u32_in;
	__s8 u32_result;
	__u8 tmp[NS_RES_DATA]; /* a byte order swap's source */
	__u8 hdr[NS_RES_HDR_MAX];
	/* Room for a few bytes read past a masked index (lib/rewrite.h), which the
	 * verifier must see inside the value. */
	__u8 hdr_slack[NS_RES_DATA];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_res_insn);
	__uint(max_entries, 1);
} residual_insns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_res_elem);
	__uint(max_entries, 1);
} residual_elems SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ns_res_state);
	__uint(max_entries, 1);
} residual_scratch SEC(".maps");

NS_INLINE struct ns_res_state *ns_res_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&residual_scratch, &zero);
}

/* Copies the frame's first bytes for residual programs; `load` is the hook's
 * load-bytes helper, `protocol` skb->protocol (host order), `tag_present`,
 * `tag_proto` (host order) and `tag_tci` the skb's accelerated VLAN tag. Without a
 * copy, every payload load breaks. */
#define NS_RES_CAPTURE(load, ctx, frame_len, protocol, tag_present, tag_proto, tag_tci,      \
		       pkttype)                                                              \
	do {                                                                                 \
		struct ns_res_state *rs_ = ns_res_state();                                   \
		if (!rs_)                                                                    \
			break;                                                               \
		rs_->pkt_type = (pkttype);                                                   \
		rs_->frame_len = (frame_len);                                                \
		rs_->skb_protocol = (protocol);                                              \
		rs_->vlan_present = (tag_present) != 0;                                      \
		rs_->vlan_proto = (tag_proto);                                               \
		rs_->vlan_tci = (tag_tci);                                                   \
		__u32 n_ = (frame_len);                                                      \
		if (n_ > NS_RES_HDR_MAX)                                                     \
			n_ = NS_RES_HDR_MAX;                                                 \
		rs_->hdr_len = 0;                                                            \
		if (n_ > 0 && load(ctx, 0, rs_->hdr, n_) == 0)                               \
			rs_->hdr_len = n_;                                                   \
		if (NS_FEATURE(NS_F_NETDEV_VIEW))                                            \
			ns_res_netdev_prepare(rs_);                                          \
	} while (0)

/* memcmp of len (<= 16) register bytes at sreg against data. */
NS_INLINE int ns_res_memcmp(const __u8 *regs, __u32 sreg, const __u8 *data, __u32 len)
{
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		__u8 a = regs[(sreg + k) & (NS_RES_REGS - 1)];
		__u8 b = data[k];
		if (a != b)
			return a < b ? -1 : 1;
	}
	return 0;
}

/* Zeroes the registers a load of len bytes at dreg fills (to the end of its last
 * 4-byte register, as the kernel's loads do). */
NS_INLINE void ns_res_clear(__u8 *regs, __u32 dreg, __u32 len)
{
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= ((len + 3) & ~3u))
			break;
		regs[(dreg + k) & (NS_RES_REGS - 1)] = 0;
	}
}

/* One element of a lookup's scan (bpf_loop callback). */
static long ns_res_elem_step(__u64 i, void *unused)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 idx = rs->elem;
	struct ns_res_elem *el = bpf_map_lookup_elem(&residual_elems, &idx);
	if (!el) {
		rs->result = -1;
		return 1;
	}
	rs->elem = idx + 1;
	if (ns_res_memcmp(rs->regs, rs->key_sreg, el->from, rs->key_len) >= 0 &&
	    ns_res_memcmp(rs->regs, rs->key_sreg, el->to, rs->key_len) <= 0) {
		rs->found = 1;
		return 1;
	}
	return 0;
}

/* Whether the key of the lookup `in` at register sreg is in one of its elements: 1
 * or 0, -1 error. */
static __attribute__((noinline)) int ns_res_lookup(struct ns_res_state *rs, const struct ns_res_insn *in,
						   __u32 sreg)
{
	if (!rs || !in)
		return -1;
	__u32 count = in->count;
	if (count > NS_RES_MAX_ELEMS || sreg + in->len > NS_RES_REGS)
		return -1;
	rs->elem = in->first;
	rs->key_sreg = sreg;
	rs->key_len = in->len;
	rs->found = 0;
	if (count)
		bpf_loop(count, ns_res_elem_step, NULL, 0);
	if (rs->result < 0)
		return -1;
	return rs->found;
}

/* Frame offset of IPv6 extension header `target`, as ipv6_find_hdr() finds it with a
 * target (not past a later fragment); 0 when it is not there or cut short. */
static __attribute__((noinline)) __u32 ns_res_find_ipv6(struct ns_res_state *rs, __u8 target)
{
	__u32 nh = rs->nh;
	/* Like the kernel, only the next-header byte of the IPv6 header is needed. */
	if (!rs->ipv6 || nh + 7 > rs->end || nh + 7 > rs->hdr_len)
		return 0;
	__u8 next = rs->hdr[(nh + 6) & (NS_RES_HDR_MAX - 1)];
	__u32 start = nh + 40;
	for (int i = 0; i < NS_RES_MAX_EXTHDRS; i++) {
		int found = next == target;
		if (next != 0 && next != 43 && next != 44 && next != 51 && next != 60)
			return found ? start : 0;
		/* Routing headers must have 4 bytes, fragment headers their offset. */
		__u32 need = next == 43 || next == 44 ? 4 : 2;
		if (start + need > rs->end || start + need > rs->hdr_len)
			return 0;
		__u8 b0 = rs->hdr[start & (NS_RES_HDR_MAX - 1)];
		__u8 b1 = rs->hdr[(start + 1) & (NS_RES_HDR_MAX - 1)];
		__u32 hdrlen;
		if (next == 44) {
			__u8 f0 = rs->hdr[(start + 2) & (NS_RES_HDR_MAX - 1)];
			__u8 f1 = rs->hdr[(start + 3) & (NS_RES_HDR_MAX - 1)];
			/* A later fragment ends the walk, unless it is the header sought. */
			if ((((f0 << 8) | f1) & ~7) && !found)
				return 0;
			hdrlen = 8;
		} else if (next == 51) {
			hdrlen = ((__u32)b1 + 2) * 4;
		} else {
			hdrlen = ((__u32)b1 + 1) * 8;
		}
		if (found)
			return start;
		next = b0;
		start += hdrlen;
		if (start > NS_RES_HDR_MAX)
			return 0;
	}
	return 0;
}

/* Frame offset of the bytes at `offset` in the first TCP option `kind` that has
 * offset + len bytes, as nft_exthdr_tcp_eval() finds it; 0 when there is none. */
static __attribute__((noinline)) __u32 ns_res_find_tcpopt(struct ns_res_state *rs, __u8 kind, __u32 offset, __u32 len)
{
	__u32 th = rs->th;
	if (!rs->has_th || (NS_FEATURE(NS_F_NETDEV_VIEW) && rs->fragoff) || !rs->has_l4proto || rs->l4proto != 6 || th + 20 > rs->end ||
	    th + 20 > rs->hdr_len)
		return 0;
	__u32 hdrlen = (rs->hdr[(th + 12) & (NS_RES_HDR_MAX - 1)] >> 4) * 4;
	if (hdrlen < 20 || th + hdrlen > rs->end || th + hdrlen > rs->hdr_len)
		return 0;
	__u32 i = 20;
	/* At most 40 option bytes, each option at least one. */
	for (int n = 0; n < 40; n++) {
		if (i + 1 >= hdrlen)
			return 0;
		__u8 k = rs->hdr[(th + i) & (NS_RES_HDR_MAX - 1)];
		__u8 l = rs->hdr[(th + i + 1) & (NS_RES_HDR_MAX - 1)];
		__u32 optl = k <= 1 || l == 0 ? 1 : l;
		if (k == kind) {
			if (i + optl > hdrlen || len + offset > optl)
				return 0;
			return th + i + offset;
		}
		i += optl;
	}
	return 0;
}

#include "netdev.h"
#include "ebt.h"

/* One chunk of an SCTP chunk walk (bpf_loop callback; `hk`: the hook's context). As
 * nft_exthdr_sctp_eval(): a chunk header the packet does not have, or of length 0,
 * ends the walk; chunks are 4-byte aligned. */
static long ns_res_sctp_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 off = rs->sc_off;
	if (off + 4 > rs->sc_end || ns_hook_load(hk, off, rs->sc_hdr, 4) < 0)
		return 1;
	__u32 clen = ((__u32)rs->sc_hdr[2] << 8) | rs->sc_hdr[3];
	if (clen == 0)
		return 1;
	if (rs->sc_hdr[0] == rs->sc_type) {
		rs->sc_at = off;
		rs->sc_len = clen;
		return 1;
	}
	rs->sc_off = off + ((clen + 3) & ~3u);
	return rs->sc_off >= rs->sc_end;
}

/* NS_RES_SCTP_CHUNK: nft_exthdr_sctp_eval() over the whole packet (6.18 walks later
 * fragments too, from their nft_thoff()). 1 go on, 0 break, -1 error. */
static __attribute__((noinline)) int ns_res_sctp_chunk(struct ns_res_state *rs, const struct ns_res_insn *in,
							struct ns_hook *hk)
{
	__u32 dreg = in->dreg, len = in->len;
	/* skb->len's end, as a frame offset; never past the frame. */
	__u32 end = rs->end < rs->frame_len ? rs->end : rs->frame_len;
	rs->sc_at = 0;
	if (rs->has_l4proto && rs->l4proto == 132 && rs->has_thoff && rs->thoff + 12 < end) {
		rs->sc_off = rs->thoff + 12;
		rs->sc_end = end;
		rs->sc_type = in->arg;
		/* Chunks take at least 4 bytes: one step each, and one to end on (more than
		 * bpf_loop's 8M steps, a packet no link carries, finds nothing). */
		bpf_loop((end - rs->sc_off) / 4 + 1, ns_res_sctp_step, hk, 0);
	}
	__u32 at = rs->sc_at;
	if (in->flags & 1) {
		if (dreg + 4 > NS_RES_REGS)
			return -1;
		ns_res_clear(rs->regs, dreg, 4);
		rs->regs[dreg & (NS_RES_REGS - 1)] = at != 0;
		return 1;
	}
	if (!at || in->offset + len > rs->sc_len || at + rs->sc_len > end)
		return 0;
	if (len == 0 || len > NS_RES_DATA)
		return -1;
	if (ns_hook_load(hk, at + in->offset, rs->tmp, len) < 0)
		return 0;
	ns_res_clear(rs->regs, dreg, len);
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		rs->regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->tmp[k];
	}
	return 1;
}

#include "xt.h"
#include "xt_ip6hdr.h"
#include "sockx.h"
#include "xt_socket.h"
#include "xt_owner.h"
#include "connlimit.h"
#include "rateest.h"
#include "xt_recent.h"
#include "addrtype.h"
#include "xt_string.h"
#include "xt_u32.h"

/* Link-layer bytes [off, off + len) into dreg as nft_payload_eval reads them (the
 * frame starts at the MAC header at TC): with an accelerated VLAN tag (`tagged`
 * loads only) and a load past the MAC addresses, the header nft_payload_copy_vlan
 * rebuilds: addresses, the tag's protocol and TCI, skb->protocol, then the frame
 * from its byte 14 on. 1 loaded, 0 break, -1 error. A global function: the verifier
 * checks its byte loop once, not at every operation slot of every program path. */
__noinline int ns_res_link(__u32 off, __u32 len, __u32 dreg, __u32 tagged)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return -1;
	__u32 end = off + len;
	__u32 frame = rs->frame_len < rs->hdr_len ? rs->frame_len : rs->hdr_len;
	int rebuilt = tagged && rs->vlan_present && end > 12;
	if (len == 0 || len > NS_RES_DATA || dreg + len > NS_RES_REGS)
		return 0;
	if (rebuilt) {
		if ((off < 18 && frame < ETH_HLEN) || (end > 18 && end - 4 > frame))
			return 0;
	} else if (end > frame) {
		return 0;
	}
	ns_res_clear(rs->regs, dreg, len);
	for (__u32 k = 0; k < NS_RES_DATA; k++) {
		if (k >= len)
			break;
		__u32 v = off + k;
		__u8 b;
		if (!rebuilt || v < 12)
			b = rs->hdr[v & (NS_RES_HDR_MAX - 1)];
		else if (v < 18) {
			/* Bytes 12-17: the tag's protocol, its TCI, skb->protocol. */
			__u32 i = v - 12;
			__u16 w = i < 2 ? rs->vlan_proto : i < 4 ? rs->vlan_tci : rs->skb_protocol;
			b = (i & 1) ? (__u8)w : (__u8)(w >> 8);
		}
		else
			b = rs->hdr[(v - 4) & (NS_RES_HDR_MAX - 1)];
		rs->regs[(dreg + k) & (NS_RES_REGS - 1)] = b;
	}
	return 1;
}

/* Runs one operation: 1 go on, 0 break, -1 error. */
NS_INLINE int ns_res_exec(struct ns_res_state *rs, const struct ns_res_insn *in, struct ns_hook *hk)
{
	__u32 sreg = in->sreg, dreg = in->dreg, len = in->len;
	__u8 *regs = rs->regs;

	if (len > NS_RES_DATA || sreg + len > NS_RES_REGS || dreg + len > NS_RES_REGS)
		return -1;
	switch (in->op) {
	case NS_RES_PAYLOAD: {
		__u32 base;
		if (in->flags == NS_RES_LINK || in->flags == NS_RES_LINK_UNTAGGED)
			return ns_res_link(in->offset, len, dreg, in->flags == NS_RES_LINK);
		if (in->flags == NS_RES_NETWORK && rs->nh) {
			base = rs->nh;
		} else if (in->flags == NS_RES_TRANSPORT && rs->has_th) {
			/* nft_payload_fast_eval (1, 2 or 4 aligned bytes) reads later
			 * fragments at thoff too; nft_payload_eval breaks on them. */
			if (NS_FEATURE(NS_F_NETDEV_VIEW) && rs->fragoff &&
			    !ns_res_fast_payload(in->offset, len))
				return 0;
			base = rs->th;
		} else {
			return 0;
		}
		__u32 off = base + in->offset;
		if (len == 0 || off + len > rs->end || off + len > rs->hdr_len)
			return 0;
		ns_res_clear(regs, dreg, len);
		for (__u32 k = 0; k < NS_RES_DATA; k++) {
			if (k >= len)
				break;
			regs[(dreg + k) & (NS_RES_REGS - 1)] =
				rs->hdr[(off + k) & (NS_RES_HDR_MAX - 1)];
		}
		return 1;
	}
	case NS_RES_META: {
		__u32 v;
		__u32 n = 4;
		switch (in->arg) {
		case NS_RES_META_LEN:
			v = rs->len;
			break;
		case NS_RES_META_PROTOCOL:
			/* The ethertype's bytes in network order. */
			v = bpf_htons(rs->protocol);
			n = 2;
			break;
		case NS_RES_META_NFPROTO:
			v = rs->nfproto;
			n = 1;
			break;
		case NS_RES_META_L4PROTO:
			if (!rs->has_l4proto)
				return 0;
			v = rs->l4proto;
			n = 1;
			break;
		case NS_RES_META_MARK:
			v = rs->mark;
			break;
		default:
			return -1;
		}
		if (dreg + 4 > NS_RES_REGS)
			return -1;
		ns_res_clear(regs, dreg, n);
		/* Host order, as the kernel stores them (little-endian here). */
		for (__u32 k = 0; k < 4; k++) {
			if (k >= n)
				break;
			regs[(dreg + k) & (NS_RES_REGS - 1)] = v >> (8 * k);
		}
		return 1;
	}
	case NS_RES_EXTHDR6:
	case NS_RES_TCPOPT: {
		__u32 at = in->op == NS_RES_EXTHDR6 ? ns_res_find_ipv6(rs, in->arg)
						     : ns_res_find_tcpopt(rs, in->arg, in->offset, len);
		if (in->flags & 1) {
			if (dreg + 4 > NS_RES_REGS)
				return -1;
			ns_res_clear(regs, dreg, 4);
			regs[dreg & (NS_RES_REGS - 1)] = at != 0;
			return 1;
		}
		if (!at)
			return 0;
		if (in->op == NS_RES_EXTHDR6)
			at += in->offset;
		if (len == 0 || at + len > rs->end || at + len > rs->hdr_len)
			return 0;
		ns_res_clear(regs, dreg, len);
		for (__u32 k = 0; k < NS_RES_DATA; k++) {
			if (k >= len)
				break;
			regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->hdr[(at + k) & (NS_RES_HDR_MAX - 1)];
		}
		return 1;
	}
	case NS_RES_SCTP_CHUNK:
		return ns_res_sctp_chunk(rs, in, hk);
	case NS_RES_PAYLOAD_INDEXED:
		return ns_ebt_payload_indexed(rs, in);
	case NS_RES_IP6_SKIP_EXTHDR:
		return ns_ebt_ip6_skip(rs, in, hk);
	case NS_RES_PKTTYPE:
		return ns_ebt_pkttype(rs, in);
	case NS_RES_LINK_CHOICE:
		return ns_ebt_link_choice(rs, in);
	case NS_RES_XT_PKTTYPE: {
		/* pkttype_mt(): a looped-back copy of a packet sent to a group is
		 * multicast (IPv4 to a multicast address, any IPv6), else broadcast. */
		__u8 t = rs->pkt_type;
		if (t == NS_PACKET_LOOPBACK_XT) {
			if (rs->nfproto == 10)
				t = NS_PACKET_MULTICAST_XT;
			else if (rs->nfproto == 2 && rs->nh + 20 <= rs->hdr_len &&
				 (rs->hdr[(rs->nh + 16) & (NS_RES_HDR_MAX - 1)] & 0xf0) == 0xe0)
				t = NS_PACKET_MULTICAST_XT;
			else
				t = NS_PACKET_BROADCAST_XT;
		}
		if (dreg + 4 > NS_RES_REGS)
			return -1;
		ns_res_clear(regs, dreg, 1);
		regs[dreg & (NS_RES_REGS - 1)] = t;
		return 1;
	}
	case NS_RES_XT_CPU:
	case NS_RES_XT_RANDOM: {
		__u32 want = (__u32)in->data[0] | (__u32)in->data[1] << 8 |
			     (__u32)in->data[2] << 16 | (__u32)in->data[3] << 24;
		/* cpu_mt(): the CPU running the hook, which is TC's (the compiler allows
		 * it only where they are one). statistic_mt(): the draw's low 31 bits
		 * below the probability. */
		int hit = in->op == NS_RES_XT_CPU
				  ? bpf_get_smp_processor_id() == want
				  : (bpf_get_prandom_u32() & 0x7fffffff) < want;
		return hit != (in->flags & 1);
	}
	case NS_RES_XT_HEADER:
		return ns_res_xt_header(rs, len);
	case NS_RES_XT_CONNLIMIT_TUPLE:
		return ns_res_connlimit_tuple(rs);
	case NS_RES_XT_SCTP:
		return ns_res_xt_sctp(rs, in, hk);
	case NS_RES_XT_DCCP_OPTION:
		return ns_res_xt_dccp_option(rs, in, hk);
	case NS_RES_XT_DROP_UNLESS:
		return ns_res_memcmp(regs, sreg, in->data, len) == 0 ? 1 : NS_RES_HOTDROP;
	case NS_RES_XT_IPV6_HEADER:
		return ns_res_xt_ipv6_header(rs, in, hk);
	case NS_RES_XT_FULL_SOCKET:
		return ns_sockx_full_socket(rs->iif, rs->l4proto, rs->has_l4proto, hk);
	case NS_RES_XT_CGROUP_CLASSID: {
		__u32 id = (__u32)in->data[0] | (__u32)in->data[1] << 8 |
			   (__u32)in->data[2] << 16 | (__u32)in->data[3] << 24;
		return ns_sockx_cgroup_classid(rs->iif, rs->l4proto, rs->has_l4proto, hk, id,
					       in->flags & 1);
	}
	case NS_RES_XT_SOCKET:
		if (!NS_FEATURE(NS_F_XT_LATE_OPS))
			return -1;
		return ns_xt_socket(rs, in, hk);
	case NS_RES_XT_OWNER:
		if (!NS_FEATURE(NS_F_SOCKCRED))
			return -1;
		return ns_res_xt_owner(rs, in, hk);
	case NS_RES_SOCK_UGID:
		if (!NS_FEATURE(NS_F_SOCKCRED))
			return -1;
		return ns_res_sock_ugid(rs, in, hk);
	case NS_RES_XT_IPV6_OPTIONS:
		return ns_res_xt_ipv6_options(rs, in, hk);
	case NS_RES_XT_SRH_SEGMENT:
		return ns_res_xt_srh_segment(rs, in, hk);
	case NS_RES_HALVES_EQ:
		return ns_res_halves_eq(rs, in);
	case NS_RES_XT_IPV6_HEADER_TYPES:
		if (!NS_FEATURE(NS_F_XT_LATE_OPS))
			return -1;
		return ns_res_xt_ip6hdr_types(rs, in, hk);
	case NS_RES_XT_RATEEST:
		if (!NS_FEATURE(NS_F_XT_LATE_OPS))
			return -1;
		return ns_res_xt_rateest(rs, in);
	case NS_RES_XT_ADDRTYPE:
		if (!NS_FEATURE(NS_F_ADDRTYPE_RT))
			return -1;
		return ns_res_xt_addrtype(rs, in);
	case NS_RES_XT_STRING:
		return ns_res_xt_string(rs, in, hk);
	case NS_RES_XT_U32:
		if (!NS_FEATURE(NS_F_XT_U32))
			return -1;
		return ns_res_xt_u32(rs, in, hk);
	case NS_RES_XT_RECENT:
		if (!NS_FEATURE(NS_F_RECENT))
			return -1;
		return ns_res_xt_recent(rs->pc - 1);
	case NS_RES_NETDEV:
		if (!NS_FEATURE(NS_F_NETDEV_VIEW))
			return -1;
		ns_res_netdev_view(rs);
		return 1;
	case NS_RES_CT: {
		int n = ns_ct_key_value(&rs->ct, in->arg, in->flags);
		if (n <= 0)
			return n;
		if (dreg + n > NS_RES_REGS)
			return -1;
		ns_res_clear(regs, dreg, n);
		for (__u32 k = 0; k < NS_RES_DATA; k++) {
			if (k >= (__u32)n)
				break;
			regs[(dreg + k) & (NS_RES_REGS - 1)] = rs->ct.val[k];
		}
		return 1;
	}
	case NS_RES_IMMEDIATE:
		ns_res_clear(regs, dreg, len);
		for (__u32 k = 0; k < NS_RES_DATA; k++) {
			if (k >= len)
				break;
			regs[(dreg + k) & (NS_RES_REGS - 1)] = in->data[k];
		}
		return 1;
	case NS_RES_BITWISE:
		/* Whole 4-byte registers; mask and xor are zero past len. */
		for (__u32 k = 0; k < NS_RES_DATA; k++) {
			if (k >= ((len + 3) & ~3u))
				break;
			__u8 s = regs[(sreg + k) & (NS_RES_REGS - 1)];
			regs[(dreg + k) & (NS_RES_REGS - 1)] = (s & in->data[k]) ^ in->data2[k];
		}
		return 1;
	case NS_RES_SHIFT: {
		/* One word (the builder refuses longer shifts), host order. */
		__u32 w = 0;
		for (__u32 k = 0; k < 4; k++)
			w |= (__u32)regs[(sreg + k) & (NS_RES_REGS - 1)] << (8 * k);
		__u32 by = in->arg & 31;
		w = in->flags ? w << by : w >> by;
		for (__u32 k = 0; k < 4; k++)
			regs[(dreg + k) & (NS_RES_REGS - 1)] = w >> (8 * k);
		return 1;
	}
	case NS_RES_BYTEORDER: {
		__u32 size = in->arg;
		if (size != 2 && size != 4 && size != 8)
			return -1;
		/* In scratch: this callback's stack adds to the 512-byte limit. */
		__u8 *tmp = rs->tmp;
		for (__u32 k = 0; k < NS_RES_DATA; k++)
			tmp[k] = regs[(sreg + k) & (NS_RES_REGS - 1)];
		for (__u32 k = 0; k < NS_RES_DATA; k++) {
			if (k >= len)
				break;
			/* Byte j of a word comes from byte size - 1 - j. */
			__u32 word = k & ~(size - 1);
			__u32 from = word + size - 1 - (k - word);
			regs[(dreg + k) & (NS_RES_REGS - 1)] = tmp[from & (NS_RES_DATA - 1)];
		}
		return 1;
	}
	case NS_RES_CMP: {
		int d = ns_res_memcmp(regs, sreg, in->data, len);
		switch (in->flags) {
		case NS_RES_EQ:
			return d == 0;
		case NS_RES_NEQ:
			return d != 0;
		case NS_RES_LT:
			return d < 0;
		case NS_RES_LTE:
			return d <= 0;
		case NS_RES_GT:
			return d > 0;
		case NS_RES_GTE:
			return d >= 0;
		}
		return -1;
	}
	case NS_RES_RANGE: {
		int inside = ns_res_memcmp(regs, sreg, in->data, len) >= 0 &&
			     ns_res_memcmp(regs, sreg, in->data2, len) <= 0;
		return inside != (in->flags & 1);
	}
	case NS_RES_LOOKUP: {
		int found = ns_res_lookup(rs, in, sreg);
		return found < 0 ? -1 : found != (in->flags & 1);
	}
	case NS_RES_LOOKUP_EITHER: {
		int found = ns_res_lookup(rs, in, sreg);
		if (found == 0)
			found = ns_res_lookup(rs, in, dreg);
		return found < 0 ? -1 : found != (in->flags & 1);
	}
	}
	return -1;
}

/* One operation of the running program (bpf_loop callback). */
static long ns_res_step(__u64 i, void *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return 1;
	__u32 pc = rs->pc;
	struct ns_res_insn *in = bpf_map_lookup_elem(&residual_insns, &pc);
	if (!in) {
		rs->result = -1;
		return 1;
	}
	rs->pc = pc + 1;
	int r = ns_res_exec(rs, in, hk);
	if (r <= 0) {
		rs->result = r;
		return 1;
	}
	return 0;
}

/* Runs the count operations from first on packet p (tracked as ct): 1 holds, 0 does
 * not, -1 error, NS_RES_HOTDROP the packet is dropped. */
NS_INLINE int ns_residual_holds(__u32 first, __u32 count, const struct pkt_ctx *p,
				const struct ns_ct *ct, struct ns_hook *hk)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs || count > NS_RES_MAX_INSNS)
		return -1;
	rs->nh = p->l3 != NS_L3_NONE || p->arp ? p->l3_off : 0;
	/* The kernel loads from the transport header only when the protocol is known
	 * and the packet is not a later fragment. */
	rs->th = (p->flags & PKT_F_L4PROTO) && !(p->flags & PKT_F_LATER_FRAG) ? p->l4_off : 0;
	rs->end = rs->nh + p->len;
	rs->len = p->len;
	rs->mark = p->mark;
	rs->nfproto = p->l3 == NS_L3_IPV4 ? 2 : p->l3 == NS_L3_IPV6 ? 10 : p->arp ? 3 : 0;
	rs->protocol = p->l3 == NS_L3_IPV4   ? ETH_P_IP
		       : p->l3 == NS_L3_IPV6 ? ETH_P_IPV6
		       : p->arp		     ? ETH_P_ARP
					     : 0;
	rs->iif = p->iif;
	rs->oif = p->oif;
	rs->l4proto = p->l4proto;
	rs->has_l4proto = (p->flags & PKT_F_L4PROTO) != 0;
	rs->ipv6 = p->l3 == NS_L3_IPV6;
	rs->has_th = rs->th != 0;
	rs->fragoff = 0;
	__u8 xflags = p->xp_off ? p->xp_flags : p->flags;
	rs->xp_l4proto = p->xp_off ? p->xp_proto : p->l4proto;
	rs->xp_has_l4proto = (xflags & PKT_F_L4PROTO) != 0;
	rs->xp_th = (xflags & PKT_F_L4PROTO) && !(xflags & PKT_F_LATER_FRAG)
			    ? (p->xp_off ? p->xp_off : p->l4_off)
			    : 0;
	rs->frag = !(xflags & PKT_F_FRAG) || !p->has_frag_id ? 0
		   : (xflags & PKT_F_LATER_FRAG)	     ? 2
							     : 1;
	rs->frag_id = p->frag_id;
	/* A later fragment keeps the offset nft_set_pktinfo_ipv{4,6} give it: after the
	 * IPv4 header, or 0 (skb->data, the network header) for IPv6. */
	rs->has_thoff = rs->has_th;
	rs->thoff = rs->th;
	if ((p->flags & PKT_F_L4PROTO) && (p->flags & PKT_F_LATER_FRAG) && rs->nh) {
		rs->has_thoff = 1;
		rs->thoff = rs->nh;
		if (p->l3 == NS_L3_IPV4)
			rs->thoff += (rs->hdr[rs->nh & (NS_RES_HDR_MAX - 1)] & 0xf) * 4;
	}
	ns_res_ct_fill(&rs->ct, ct);
	rs->pc = first;
	rs->result = 1;
	bpf_loop(count, ns_res_step, hk, 0);
	return rs->result;
}

#endif
