/* SPDX-License-Identifier: GPL-2.0-only */
/* xt_recent (net/netfilter/xt_recent.c): the namespace's lists, one `recent_lists`
 * entry per list name (keyed by a hash of the name the daemon checks for collisions,
 * dataplane/src/runtime/recent.rs), shared by every program of the namespace, and
 * recent_mt()'s lookup, insert, stamp, LRU eviction and reap under the list's lock.
 * The daemon creates a list (the creator's mask, nstamps_max_mask, ip_list_tot), flushes
 * it and deletes it as nf_tables' transactions make and destroy the kernel's. The
 * Rust model checked against the kernel is ebpf/tests/xt_recent.rs. Included by
 * residual.h. */
#ifndef NFTSHIM_XT_RECENT_H
#define NFTSHIM_XT_RECENT_H

#define NS_RECENT_ENTRIES 128 /* the most ip_list_tot the daemon accepts */
#define NS_RECENT_STAMPS 32   /* the most nstamps_max_mask + 1 (hitcount <= 32) */
#define NS_RECENT_LISTS 1024

/* xt_recent's check_set bits (uapi xt_recent.h). */
#define NS_RECENT_CHECK 1
#define NS_RECENT_SET 2
#define NS_RECENT_UPDATE 4
#define NS_RECENT_REMOVE 8
#define NS_RECENT_REAP 32
#define NS_RECENT_HZ 250 /* CONFIG_HZ of the kernel (the daemon checks it) */

/* Same layout as Rust `recent::BpfRecentEntry`. */
struct ns_recent_entry {
	__u64 stamps[NS_RECENT_STAMPS];
	__u64 seq;     /* LRU order: the smallest is the least recently set/updated */
	__u32 addr[4]; /* masked with the list's mask */
	__u8 family;   /* NFPROTO_IPV4/IPV6; 0: a free slot */
	__u8 ttl;      /* as read (no --rttl: never compared) */
	__u16 index;
	__u16 nstamps;
	__u16 pad;
};

/* Same layout as Rust `recent::BpfRecentList`. */
struct ns_recent_list {
	struct bpf_spin_lock lock;
	__u32 entries;	/* slots in use */
	__u64 seq;	/* the last LRU stamp handed out */
	__u32 mask[4];	/* the creating rule's */
	__u32 max;	/* ip_list_tot */
	__u16 nstamps_max_mask;
	__u16 pad;
	/* A scan's results, kept here under the lock rather than in registers: the
	 * verifier then sees every loop iteration start alike and prunes them. */
	__u32 s_found;
	__u32 s_head;
	__u32 s_free;
	__u32 s_hits;
	__u64 s_head_seq;
	struct ns_recent_entry e[NS_RECENT_ENTRIES];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct ns_recent_list);
	__uint(max_entries, NS_RECENT_LISTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} recent_lists SEC(".maps");

/* The scan's scratch, read and written in memory every time (clang would keep it in
 * registers, whose exact values the verifier would track from iteration to iteration). */
#define NS_RV(x) (*(volatile __typeof__(x) *)&(x))

/* time_after(a, b) on wrapping jiffies. */
static __always_inline int ns_recent_after(__u64 a, __u64 b)
{
	return (__s64)(b - a) < 0;
}

/* NS_RES_XT_RECENT at residual_insns[pc]: data: the list's key (u64, host order);
 * flags: check_set; arg: side (2: destination); first: seconds; count: hit_count;
 * len: invert. 1 matches, 0 does not, -1 error. A global function: the verifier
 * checks its scans once, not at every operation slot of every program path. */
__noinline int ns_res_xt_recent(__u32 pc)
{
	struct ns_res_state *rs = ns_res_state();
	if (!rs)
		return -1;
	const struct ns_res_insn *in = bpf_map_lookup_elem(&residual_insns, &pc);
	if (!in)
		return -1;
	__u32 i;
	__u8 family = rs->nfproto;
	__u32 nh = rs->nh;
	__u32 alen, at;
	__u8 ttl;
	if (family == 2) {
		if (nh + 20 > rs->hdr_len)
			return 0;
		alen = 4;
		at = nh + (in->arg == 2 ? 16 : 12);
		ttl = rs->hdr[(nh + 8) & (NS_RES_HDR_MAX - 1)];
	} else if (family == 10) {
		if (nh + 40 > rs->hdr_len)
			return 0;
		alen = 16;
		at = nh + (in->arg == 2 ? 24 : 8);
		ttl = rs->hdr[(nh + 7) & (NS_RES_HDR_MAX - 1)];
	} else {
		return 0;
	}
	/* The address in rs->tmp (the stack is short: this runs 4 calls deep). */
	__u32 *addr = (__u32 *)rs->tmp;
	for (i = 0; i < 16; i++)
		rs->tmp[i] = i < alen ? rs->hdr[(at + i) & (NS_RES_HDR_MAX - 1)] : 0;

	/* The key as the operation holds it (a map value's bytes: no stack copy). */
	struct ns_recent_list *l = bpf_map_lookup_elem(&recent_lists, (void *)in->data);
	if (!l)
		return 0; /* only while a destroyed list's last packets finish */
	/* Helpers before the lock (none may run under it). */
	__u64 now = bpf_jiffies64();
	__u8 check_set = in->flags;
	int ret = in->len != 0;
	__u32 seconds = in->first, hit_count = in->count;
	/* `info->seconds * HZ` is an unsigned int product in the kernel. */
	__u64 time = now - (__u64)(__u32)(seconds * NS_RECENT_HZ);

	bpf_spin_lock(&l->lock);
	for (i = 0; i < 4; i++)
		addr[i] &= l->mask[i];
	/* One pass: the entry of (family, address), the LRU head, a free slot. */
	NS_RV(l->s_found) = NS_RECENT_ENTRIES;
	NS_RV(l->s_head) = NS_RECENT_ENTRIES;
	NS_RV(l->s_free) = NS_RECENT_ENTRIES;
	NS_RV(l->s_head_seq) = ~0ULL;
	for (i = 0; i < NS_RECENT_ENTRIES; i++) {
		struct ns_recent_entry *e = &l->e[i];
		if (!e->family) {
			if (NS_RV(l->s_free) == NS_RECENT_ENTRIES)
				NS_RV(l->s_free) = i;
			continue;
		}
		if (e->seq < NS_RV(l->s_head_seq)) {
			NS_RV(l->s_head_seq) = e->seq;
			NS_RV(l->s_head) = i;
		}
		if (e->family == family && e->addr[0] == addr[0] && e->addr[1] == addr[1] &&
		    e->addr[2] == addr[2] && e->addr[3] == addr[3])
			NS_RV(l->s_found) = i; /* at most one entry per (family, address) */
	}
	__u32 found = NS_RV(l->s_found), head = NS_RV(l->s_head);
	__u16 nmask = l->nstamps_max_mask & (NS_RECENT_STAMPS - 1);
	if (found >= NS_RECENT_ENTRIES) {
		if (!(check_set & NS_RECENT_SET))
			goto out;
		/* recent_entry_init(): a full list first loses its LRU head. */
		__u32 slot = NS_RV(l->s_free);
		if (l->entries >= l->max || slot >= NS_RECENT_ENTRIES) {
			if (head >= NS_RECENT_ENTRIES)
				goto out;
			l->e[head].family = 0;
			if (l->entries)
				l->entries--;
			slot = head;
		}
		if (slot >= NS_RECENT_ENTRIES)
			goto out;
		struct ns_recent_entry *e = &l->e[slot];
		for (i = 0; i < 4; i++)
			e->addr[i] = addr[i];
		e->family = family;
		e->ttl = ttl;
		e->stamps[0] = now;
		e->nstamps = 1;
		e->index = 1;
		e->seq = ++l->seq;
		l->entries++;
		ret = !ret;
		goto out;
	}
	struct ns_recent_entry *e = &l->e[found];
	if (check_set & NS_RECENT_SET) {
		ret = !ret;
	} else if (check_set & NS_RECENT_REMOVE) {
		e->family = 0;
		if (l->entries)
			l->entries--;
		ret = !ret;
		goto out;
	} else {
		NS_RV(l->s_hits) = 0;
		for (i = 0; i < NS_RECENT_STAMPS; i++) {
			if (i >= e->nstamps)
				break;
			if (seconds && ns_recent_after(time, e->stamps[i]))
				continue;
			NS_RV(l->s_hits)++;
			if (!hit_count || NS_RV(l->s_hits) >= hit_count) {
				ret = !ret;
				break;
			}
		}
		/* recent_entry_reap(): the LRU head goes when its newest stamp is out of the
		 * window, unless it is the entry about to be updated. */
		if ((check_set & NS_RECENT_REAP) && head < NS_RECENT_ENTRIES) {
			int updating = (check_set & NS_RECENT_UPDATE) && ret;
			struct ns_recent_entry *h = &l->e[head];
			__u64 newest = h->stamps[(h->index - 1) & (NS_RECENT_STAMPS - 1)];
			if (!(head == found && updating) && ns_recent_after(time, newest)) {
				h->family = 0;
				if (l->entries)
					l->entries--;
				if (head == found)
					goto out;
			}
		}
	}
	if ((check_set & NS_RECENT_SET) || ((check_set & NS_RECENT_UPDATE) && ret)) {
		/* recent_entry_update(), then the TTL. */
		__u16 idx = e->index & nmask;
		e->stamps[idx & (NS_RECENT_STAMPS - 1)] = now;
		idx++;
		e->index = idx;
		if (idx > e->nstamps)
			e->nstamps = idx;
		e->seq = ++l->seq;
		e->ttl = ttl;
	}
out:
	bpf_spin_unlock(&l->lock);
	return ret;
}

#endif
