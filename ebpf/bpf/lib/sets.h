/* SPDX-License-Identifier: GPL-2.0-only */
/* Named sets as BPF maps, so that elements come and go without recompiling: a rule's
 * `field @set` is a residual check on an LBVS candidate (the rule is a wildcard in the
 * LBVS dimensions for that field). All sets of one key type share a map; the set id
 * leads the key, so an LPM trie answers "is this address in a prefix of set s" with a
 * prefix of 32 + n bits. Port ranges are stored as the prefixes that cover them. */
#ifndef NFTSHIM_SETS_H
#define NFTSHIM_SETS_H

#include "common.h"
#include "parse.h"
#include "conntrack.h"

/* The packet field a set lookup reads. Same numbering as Rust `ir::SetField`. */
enum ns_set_field {
	NS_SF_IP_SADDR = 0,
	NS_SF_IP_DADDR = 1,
	NS_SF_IP6_SADDR = 2,
	NS_SF_IP6_DADDR = 3,
	NS_SF_L4PROTO = 4,
	NS_SF_SPORT = 5,
	NS_SF_DPORT = 6,
	NS_SF_IIF = 7,
	NS_SF_OIF = 8,
	NS_SF_MARK = 9,
	NS_SF_CTMARK = 10,
};

struct ns_set4_key {
	__u32 prefixlen; /* 32 + prefix length */
	__u32 set;       /* big endian, so the set id is the key's first 32 bits */
	__u32 addr;      /* network byte order */
};

struct ns_set6_key {
	__u32 prefixlen;
	__u32 set;
	__u32 addr[4];
};

struct ns_setport_key {
	__u32 prefixlen;
	__u32 set;
	__u16 port; /* network byte order */
	__u16 pad;
};

struct ns_setval_key {
	__u32 set;
	__u32 value;
};

#define NS_SET_LPM(name, keytype)                     \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);  \
		__type(key, keytype);                 \
		__type(value, __u8);                  \
		__uint(map_flags, BPF_F_NO_PREALLOC); \
		__uint(max_entries, 1);               \
	} name SEC(".maps")

/* IPv4 prefixes of all ipv4_addr sets. */
NS_SET_LPM(set_v4, struct ns_set4_key);
/* IPv6 prefixes of all ipv6_addr sets. */
NS_SET_LPM(set_v6, struct ns_set6_key);
/* Port prefixes (ranges cut into prefixes) of all inet_service sets. */
NS_SET_LPM(set_port, struct ns_setport_key);

/* Single values of all other sets (protocol, ifindex, mark). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ns_setval_key);
	__type(value, __u8);
	__uint(max_entries, 1);
} set_val SEC(".maps");

NS_INLINE int ns_set_has_value(__u32 set, __u32 value)
{
	struct ns_setval_key k = { .set = set, .value = value };
	return bpf_map_lookup_elem(&set_val, &k) != NULL;
}

/* Whether the packet's field is in set `set`, or -1 when the packet has no such field
 * (then the match fails even negated, as an absent field does everywhere). */
NS_INLINE int ns_set_member(__u32 field, __u32 set, const struct pkt_ctx *p, const struct ns_ct *ct)
{
	__u32 set_be = bpf_htonl(set);
	switch (field) {
	case NS_SF_IP_SADDR:
	case NS_SF_IP_DADDR: {
		if (p->l3 != NS_L3_IPV4)
			return -1;
		struct ns_set4_key k = {
			.prefixlen = 64,
			.set = set_be,
			.addr = field == NS_SF_IP_SADDR ? p->saddr[0] : p->daddr[0],
		};
		return bpf_map_lookup_elem(&set_v4, &k) != NULL;
	}
	case NS_SF_IP6_SADDR:
	case NS_SF_IP6_DADDR: {
		if (p->l3 != NS_L3_IPV6)
			return -1;
		struct ns_set6_key k = { .prefixlen = 160, .set = set_be };
		__builtin_memcpy(k.addr, field == NS_SF_IP6_SADDR ? p->saddr : p->daddr, 16);
		return bpf_map_lookup_elem(&set_v6, &k) != NULL;
	}
	case NS_SF_SPORT:
	case NS_SF_DPORT: {
		if (!(p->flags & PKT_F_PORTS))
			return -1;
		struct ns_setport_key k = {
			.prefixlen = 48,
			.set = set_be,
			.port = bpf_htons(field == NS_SF_SPORT ? p->sport : p->dport),
		};
		return bpf_map_lookup_elem(&set_port, &k) != NULL;
	}
	case NS_SF_L4PROTO:
		if (!(p->flags & PKT_F_L4PROTO))
			return -1;
		return ns_set_has_value(set, p->l4proto);
	case NS_SF_IIF:
		return ns_set_has_value(set, p->iif);
	case NS_SF_OIF:
		return ns_set_has_value(set, p->oif);
	case NS_SF_MARK:
		return ns_set_has_value(set, p->mark);
	case NS_SF_CTMARK:
		if (!ct->has_ct)
			return -1;
		return ns_set_has_value(set, ct->mark);
	}
	return -1;
}

#endif
