/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The one definition of everything that crosses the user/kernel boundary:
 * map keys and values, flags, states, limits and the slow-path metadata.
 * Included by the BPF programs (C) and by userspace (C++), so every field has
 * a fixed width, explicit padding, and the C++ side checks sizes and offsets.
 */
#ifndef STICKYLB_ABI_H
#define STICKYLB_ABI_H

#include <linux/types.h>

/* Defaults; the loader may override the sizes before the maps are created. */
#define STICKYLB_DEFAULT_RING_SIZE 65537u /* prime, > 100 x backends for <1% imbalance */
#define STICKYLB_DEFAULT_MAX_VIPS 64u
#define STICKYLB_DEFAULT_MAX_BACKENDS 4096u
#define STICKYLB_DEFAULT_FLOW_ENTRIES 1048576u
#define STICKYLB_DEFAULT_AFFINITY_ENTRIES 1048576u
#define STICKYLB_MAX_VIP_ENTRIES 1024u /* vips hash map: VIPs plus their address entries */
/* peer_flows: the flows other LB hosts of the fleet keep off today's ring (no prealloc). */
#define STICKYLB_DEFAULT_PEER_FLOW_ENTRIES 1048576u

/* Ring slot / backend index 0 is never a backend: it means "nobody to pick". */
#define STICKYLB_NO_BACKEND 0u

/* An affinity hit refreshes last_seen at most this often: a write per packet would
 * bounce the entry's cache line between CPUs for no gain in precision. */
#define STICKYLB_AFFINITY_REFRESH_NS 1000000000ull

/*
 * New-flow guard (like Katran's max connections per second): past this many
 * flows recorded by one CPU in one second, further new flows are still balanced
 * by the ring but recorded nowhere, so a flood of spoofed handshakes cannot
 * evict the flow and affinity entries of established users. A CPU handles a
 * few hundred thousand inserts a second at best; real new-connection rates per
 * CPU stay far below this.
 */
#define STICKYLB_DEFAULT_NEW_FLOW_LIMIT 125000u
#define STICKYLB_NEW_FLOW_WINDOW_NS 1000000000ull

enum stickylb_family {
    STICKYLB_FAMILY_NONE = 0,
    STICKYLB_FAMILY_IPV4 = 4,
    STICKYLB_FAMILY_IPV6 = 6,
};

/*
 * The one list of backend states, X(NAME, name, value): BPF, stickylbd, the
 * membership view, metrics (the value) and the CLI (the name) expand it.
 *   up        in the ring
 *   draining  out of the ring; existing flows and affinities honoured
 *   down      never receives a packet; its flows and affinities are re-picked
 */
#define STICKYLB_BACKEND_STATES(X) X(UP, up, 0) X(DRAINING, draining, 1) X(DOWN, down, 2)

#define STICKYLB_BACKEND_STATE_ENUM(NAME, name, value) STICKYLB_BACKEND_##NAME = (value),
enum stickylb_backend_state { STICKYLB_BACKEND_STATES(STICKYLB_BACKEND_STATE_ENUM) };
#undef STICKYLB_BACKEND_STATE_ENUM

/*
 * How a packet reaches its backend, X(NAME, name, config word, value): the XDP
 * program's switch (forwarding.h), the config's word, `vip show` and the check of a
 * mode read back from a pinned map all expand this list.
 *   l2    rewrite MACs only; the backend shares the L2 segment
 *   ipip  IPIP / IP6IP6 / 4in6 / 6in4 by backend family
 */
#define STICKYLB_FORWARDING_MODES(X) X(L2_DSR, l2_dsr, "l2", 0) X(IPIP, ipip, "ipip", 1)

#define STICKYLB_FORWARDING_MODE_ENUM(NAME, name, word, value) STICKYLB_FWD_##NAME = (value),
enum stickylb_forwarding_mode { STICKYLB_FORWARDING_MODES(STICKYLB_FORWARDING_MODE_ENUM) };
#undef STICKYLB_FORWARDING_MODE_ENUM

/* vip_meta.flags */
#define STICKYLB_VIP_F_PERSISTENT (1u << 0)  /* affinity table with a timeout */
#define STICKYLB_VIP_F_HASH_SOURCE (1u << 1) /* ring picks by masked source, not 5-tuple */
/* Port-0 entry that marks a VIP address (per protocol). Never matches a normal packet:
 * it tells fragments and malformed packets that the address belongs to us, and for
 * fragments it carries the VIP whose flows they follow. */
#define STICKYLB_VIP_F_ADDRESS_ENTRY (1u << 2)
/* vip_meta_by_index slot in use: a flow of that VIP may skip the VIP lookup. */
#define STICKYLB_VIP_F_ACTIVE (1u << 3)

/*
 * vip_filter: a one-hash Bloom filter over (VIP address, port, protocol), so
 * traffic that is not for a VIP leaves after one array read. 2^20 bits: with
 * hundreds of VIPs a non-VIP packet is let through to the VIP lookup less than
 * once in a thousand.
 */
#define STICKYLB_VIP_FILTER_BITS (1u << 20) /* stickylb_vip_filter_bit() keeps 20 bits */
#define STICKYLB_VIP_FILTER_WORDS (STICKYLB_VIP_FILTER_BITS / 64u)

/* flow_cache: per-CPU, direct-mapped by flow, one cache line per entry. */
#define STICKYLB_FLOW_CACHE_SLOTS 4096u /* 2^12: stickylb_flow_cache_slot() keeps 12 bits */
/* A flow served from the cache still touches its flow-table entry this often
 * (in hits), so the LRU never takes a busy flow for an idle one. */
#define STICKYLB_FLOW_CACHE_TOUCH_EVERY 256u

/* backend.flags */
#define STICKYLB_BACKEND_F_NEXTHOP_KNOWN (1u << 0) /* nexthop_mac/egress_mac valid: fast path */

union stickylb_addr {
    __be32 v4; /* IPv4 in the first word, the rest zero */
    __be32 v6[4];
    __u8 bytes[16];
};

struct stickylb_vip_key {
    union stickylb_addr addr;
    __be16 port; /* 0 only for address entries */
    __u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
    __u8 family; /* enum stickylb_family */
};

struct stickylb_vip_meta {
    __u32 vip_index;          /* ring number and stats slot, < max_vips */
    __u32 flags;              /* STICKYLB_VIP_F_* */
    __u32 affinity_timeout_s; /* persistent VIPs: entry older than this is ignored */
    __u16 generation;         /* changes when the index is given to another VIP */
    __u8 client_prefix_v4;    /* IPVS -M: clients in one prefix share affinity/hash */
    __u8 client_prefix_v6;
    __u8 forwarding_mode; /* enum stickylb_forwarding_mode */
    __u8 pad0[3];
};

struct stickylb_backend {
    union stickylb_addr addr;
    __u8 nexthop_mac[6];  /* backend (L2 DSR) or router (IPIP) MAC */
    __u8 egress_mac[6];   /* MAC of the interface the packet leaves by */
    __u32 index;          /* its own index: catches a stale or misplaced entry */
    __u32 egress_ifindex; /* 0 or the ingress interface: XDP_TX; else redirect */
    __u8 family;
    __u8 state; /* enum stickylb_backend_state */
    __u8 flags; /* STICKYLB_BACKEND_F_* */
    __u8 pad0;
};

struct stickylb_flow_key {
    union stickylb_addr src;
    union stickylb_addr dst;
    __be16 sport;
    __be16 dport;
    __u8 proto;
    __u8 family;
    __u8 pad0[2];
};

/*
 * A flow knows its VIP (index + generation), so an established packet costs one
 * hash lookup: the VIP's settings come from vip_meta_by_index, an array.
 */
struct stickylb_flow {
    __u32 backend_index;
    __u32 flow_hash;    /* reused for the tunnel source on every packet */
    __u64 refreshed_ns; /* persistent VIPs: last time this flow refreshed its affinity */
    __u16 vip_index;
    __u16 vip_generation;
    __u32 cache_hits; /* in flow_cache copies: counts towards the next touch */
};

/*
 * A flow another LB host of the fleet recorded on a backend the ring no longer
 * picks for it (the backend returned, was drained or reweighted since): should
 * the router move that flow here, its first packet finds no flow entry, and this
 * is where it goes instead of the ring's pick. Keyed by stickylb_flow_key.
 */
struct stickylb_peer_flow {
    __u32 backend_index;
    __u32 pad0;
};

struct stickylb_flow_cache_entry {
    struct stickylb_flow_key key; /* all zero: empty slot (no real flow has family 0) */
    struct stickylb_flow flow;
};

struct stickylb_affinity_key {
    __u32 vip_index;
    __u8 family;
    __u8 pad0[3];
    union stickylb_addr client; /* source masked to the VIP's client prefix */
};

struct stickylb_affinity {
    __u32 backend_index;
    __u32 pad0;
    __u64 last_seen_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns) */
};

/* Settings the daemon may change at run time without reloading the program. */
struct stickylb_config {
    __u32 hash_seed;                      /* same on every LB host: same flow -> same slot */
    __u32 new_flow_limit;                 /* flows recorded per CPU per second (guard); 0: no limit */
    union stickylb_addr tunnel_source_v4; /* outer source base; low 16 bits get the flow hash */
    union stickylb_addr tunnel_source_v6; /* outer source base; low 32 bits get the flow hash */
};

/* new_flow_window (per-CPU array, one slot): the guard's current one-second window. */
struct stickylb_new_flow_window {
    __u64 start_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns) */
    __u32 recorded; /* flows recorded by this CPU since start_ns */
    __u32 pad0;
};

/*
 * Next hop of the chosen backend not yet resolved: XDP finishes the rewrite,
 * inserts this shim between the layer 2 header and the IP header and passes the
 * packet to the stack, where the tc program on the same interface (neigh.bpf.c)
 * reads it, removes it and calls bpf_redirect_neigh(). Its key, random per load
 * and set in both programs' read-only data, tells a shim of ours from the first
 * bytes of any IP header a sender made; it carries all the tc program needs, so
 * that program shares no map. Should a shim reach the IP stack, its first byte
 * (IP version 0) gets it dropped. A shim, not XDP metadata: some kernels refuse
 * bpf_xdp_adjust_meta(); nor a trailer: a frame may have no tailroom, while XDP
 * always has headroom.
 */
struct stickylb_slow_path_shim {
    __u8 zero;
    __u8 family; /* of nexthop; STICKYLB_FAMILY_NONE: route by the packet's destination */
    __u8 pad0[2];
    __u32 egress_ifindex; /* 0: the interface it arrived on */
    __u64 key;
    union stickylb_addr nexthop;
};

#ifdef __cplusplus
#include <cstddef>
static_assert(sizeof(union stickylb_addr) == 16);
static_assert(sizeof(struct stickylb_vip_key) == 20);
static_assert(offsetof(struct stickylb_vip_key, port) == 16);
static_assert(sizeof(struct stickylb_vip_meta) == 20);
static_assert(offsetof(struct stickylb_vip_meta, generation) == 12);
static_assert(offsetof(struct stickylb_vip_meta, client_prefix_v4) == 14);
static_assert(sizeof(struct stickylb_backend) == 40);
static_assert(offsetof(struct stickylb_backend, index) == 28);
static_assert(offsetof(struct stickylb_backend, family) == 36);
static_assert(sizeof(struct stickylb_flow_key) == 40);
static_assert(offsetof(struct stickylb_flow_key, sport) == 32);
static_assert(sizeof(struct stickylb_flow) == 24);
static_assert(offsetof(struct stickylb_flow, vip_index) == 16);
static_assert(sizeof(struct stickylb_flow_cache_entry) == 64);
static_assert(sizeof(struct stickylb_peer_flow) == 8);
static_assert(sizeof(struct stickylb_affinity_key) == 24);
static_assert(offsetof(struct stickylb_affinity_key, client) == 8);
static_assert(sizeof(struct stickylb_affinity) == 16);
static_assert(sizeof(struct stickylb_config) == 40);
static_assert(offsetof(struct stickylb_config, new_flow_limit) == 4);
static_assert(sizeof(struct stickylb_new_flow_window) == 16);
static_assert(sizeof(struct stickylb_slow_path_shim) == 32);
static_assert(offsetof(struct stickylb_slow_path_shim, key) == 8);
static_assert(offsetof(struct stickylb_slow_path_shim, nexthop) == 16);
#endif

#endif /* STICKYLB_ABI_H */
