/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Backend selection: flow table, then affinity table (persistent VIPs), then
 * the VIP's Maglev ring. A backend marked down is never returned: its flows
 * and affinities fall through to a fresh pick that overwrites them. Draining
 * backends keep their flows and affinities; the ring no longer holds them.
 */
#ifndef STICKYLB_BPF_SELECTION_H
#define STICKYLB_BPF_SELECTION_H

#include "maps.h"
#include "parsing.h"
#include "stickylb/flow_hash.h"

struct choice {
    struct stickylb_backend *backend;
    __u32 backend_index;
    __u32 flow_hash; /* valid if has_flow_hash: IPIP reuses it for the outer source */
    __u8 has_flow_hash;
    __u8 new_flow;
    __u8 affinity_hit;
    __u8 affinity_miss;
    __u8 flow_not_recorded; /* over the new-flow limit: balanced by the ring, recorded nowhere */
    __u8 peer_flow;         /* followed a peer LB's entry (peer_flows) */
};

static __always_inline struct stickylb_config *runtime_settings(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&runtime_config, &zero);
}

static __always_inline int is_new_connection(const struct packet *pkt)
{
    return pkt->flow.proto == IPPROTO_TCP && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* False: certainly not for a VIP. True: probably (the VIP lookup decides). */
static __always_inline int may_be_vip(const struct packet *pkt)
{
    const __u32 bit = stickylb_vip_filter_bit(pkt->flow.dst.v6, pkt->flow.dport, pkt->flow.proto);
    const __u32 word = bit >> 6;
    __u64 *bits = bpf_map_lookup_elem(&vip_filter, &word);
    return bits && (*bits & (1ull << (bit & 63)));
}

static __always_inline int same_flow_key(const struct stickylb_flow_key *a, const struct stickylb_flow_key *b)
{
    const __u64 *x = (const __u64 *)a;
    const __u64 *y = (const __u64 *)b;
    return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]));
}

static __always_inline struct stickylb_flow_cache_entry *flow_cache_entry(const struct packet *pkt)
{
    __u32 slot =
        stickylb_flow_cache_slot(pkt->flow.src.v6, pkt->flow.dst.v6, pkt->flow.sport, pkt->flow.dport, pkt->flow.proto);
    return bpf_map_lookup_elem(&flow_cache, &slot);
}

/* The flow entry of pkt: from this CPU's cache, else from the flow table (and cached). */
static __always_inline struct stickylb_flow *find_flow(const struct packet *pkt)
{
    struct stickylb_flow_cache_entry *cached = flow_cache_entry(pkt);
    if (!cached)
        return bpf_map_lookup_elem(&flows, &pkt->flow);
    if (same_flow_key(&cached->key, &pkt->flow)) {
        if (++cached->flow.cache_hits % STICKYLB_FLOW_CACHE_TOUCH_EVERY == 0)
            bpf_map_lookup_elem(&flows, &pkt->flow); /* marks the entry used for the LRU */
        return &cached->flow;
    }
    struct stickylb_flow *flow = bpf_map_lookup_elem(&flows, &pkt->flow);
    if (!flow)
        return NULL;
    cached->key = pkt->flow;
    cached->flow = *flow;
    cached->flow.cache_hits = 0;
    return &cached->flow;
}

/* The VIP a flow entry was recorded for, if that VIP still holds its index. */
static __always_inline struct stickylb_vip_meta *vip_of_flow(const struct stickylb_flow *flow)
{
    __u32 index = flow->vip_index;
    struct stickylb_vip_meta *vip = bpf_map_lookup_elem(&vip_meta_by_index, &index);
    if (!vip || !(vip->flags & STICKYLB_VIP_F_ACTIVE) || vip->generation != flow->vip_generation)
        return NULL;
    return vip;
}

static __always_inline struct stickylb_backend *usable_backend(__u32 index)
{
    if (index == STICKYLB_NO_BACKEND)
        return NULL;
    struct stickylb_backend *backend = bpf_map_lookup_elem(&backends, &index);
    if (!backend || backend->index != index || backend->state == STICKYLB_BACKEND_DOWN)
        return NULL;
    return backend;
}

static __always_inline __be32 prefix_mask_word(__s32 bits)
{
    if (bits <= 0)
        return 0;
    if (bits >= 32)
        return 0xffffffff;
    return bpf_htonl(0xffffffffu << (32 - bits));
}

static __always_inline void mask_client(const struct packet *pkt, const struct stickylb_vip_meta *vip,
                                        union stickylb_addr *client)
{
    if (pkt->flow.family == STICKYLB_FAMILY_IPV4) {
        client->v4 = pkt->flow.src.v4 & prefix_mask_word(vip->client_prefix_v4);
        return;
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
        client->v6[i] = pkt->flow.src.v6[i] & prefix_mask_word((__s32)vip->client_prefix_v6 - 32 * i);
}

static __always_inline __u32 ring_slot_backend(__u32 vip_index, __u32 hash)
{
    __u32 key = vip_index * ring_size + hash % ring_size;
    __u32 *backend_index = bpf_map_lookup_elem(&rings, &key);
    return backend_index ? *backend_index : STICKYLB_NO_BACKEND;
}

static __always_inline __u32 flow_hash(const struct packet *pkt, __u32 seed)
{
    return stickylb_hash_flow(seed, pkt->flow.src.v6, pkt->flow.dst.v6, pkt->flow.sport, pkt->flow.dport,
                              pkt->flow.proto, pkt->flow.family);
}

/* A long-lived connection keeps its client's affinity alive, at most once per refresh period. */
static __always_inline void refresh_affinity_from_flow(const struct packet *pkt, const struct stickylb_vip_meta *vip,
                                                       struct stickylb_flow *flow, __u64 now)
{
    if (now - flow->refreshed_ns < STICKYLB_AFFINITY_REFRESH_NS)
        return;
    flow->refreshed_ns = now;
    struct stickylb_affinity_key key;
    __builtin_memset(&key, 0, sizeof(key));
    key.vip_index = vip->vip_index;
    key.family = pkt->flow.family;
    mask_client(pkt, vip, &key.client);
    struct stickylb_affinity *entry = bpf_map_lookup_elem(&affinity, &key);
    if (entry) {
        if (entry->backend_index == flow->backend_index)
            entry->last_seen_ns = now;
        return; /* the client moved on since: its newer choice wins */
    }
    struct stickylb_affinity fresh = {.backend_index = flow->backend_index, .last_seen_ns = now};
    bpf_map_update_elem(&affinity, &key, &fresh, BPF_ANY);
}

/*
 * The new-flow guard: may this CPU record one more flow (and client) this second?
 * Past the limit a new flow is still forwarded (the ring picks the same backend
 * for every packet while it is unchanged), but inserts nothing, so a flood of
 * spoofed handshakes cannot push real users' entries out of the LRU tables.
 */
static __always_inline int admit_new_flow(const struct stickylb_config *config, struct choice *choice)
{
    __u32 zero = 0;
    struct stickylb_new_flow_window *window = bpf_map_lookup_elem(&new_flow_window, &zero);
    if (!window)
        return 1;
    const __u64 now = bpf_ktime_get_coarse_ns();
    if (now - window->start_ns >= STICKYLB_NEW_FLOW_WINDOW_NS) {
        window->start_ns = now;
        window->recorded = 0;
    }
    if (config->new_flow_limit && window->recorded >= config->new_flow_limit) {
        choice->flow_not_recorded = 1;
        return 0;
    }
    window->recorded++;
    return 1;
}

static __always_inline void record_flow(const struct packet *pkt, const struct stickylb_vip_meta *vip,
                                        const struct stickylb_config *config, struct choice *choice, __u64 now)
{
    if (!choice->has_flow_hash) {
        choice->flow_hash = flow_hash(pkt, config->hash_seed);
        choice->has_flow_hash = 1;
    }
    struct stickylb_flow flow = {
        .backend_index = choice->backend_index,
        .flow_hash = choice->flow_hash,
        .refreshed_ns = now,
        .vip_index = (__u16)vip->vip_index,
        .vip_generation = vip->generation,
    };
    bpf_map_update_elem(&flows, &pkt->flow, &flow, BPF_ANY);
    /* The cache must not keep serving what this entry replaced. */
    struct stickylb_flow_cache_entry *cached = flow_cache_entry(pkt);
    if (cached) {
        cached->key = pkt->flow;
        cached->flow = flow;
    }
    choice->new_flow = 1;
}

/* Established packets: one flow lookup, no VIP lookup. 0 with choice filled, or -1. */
static __always_inline int follow_flow(const struct packet *pkt, enum parse_result kind, struct stickylb_flow *flow,
                                       struct stickylb_vip_meta **vip, struct choice *choice)
{
    *vip = vip_of_flow(flow);
    if (!*vip)
        return -1;
    struct stickylb_backend *backend = usable_backend(flow->backend_index);
    if (!backend)
        return -1;
    if (((*vip)->flags & STICKYLB_VIP_F_PERSISTENT) && kind == PARSE_FLOW)
        refresh_affinity_from_flow(pkt, *vip, flow, bpf_ktime_get_coarse_ns());
    choice->backend = backend;
    choice->backend_index = flow->backend_index;
    choice->flow_hash = flow->flow_hash;
    choice->has_flow_hash = 1;
    return 0;
}

/*
 * The path of a packet the flow table did not settle: affinity (persistent
 * VIPs), then the ring. Only an established-connection packet (or UDP) records
 * state; SYNs, RSTs, fragments and ICMP errors follow what exists or what the
 * ring says, recording nothing.
 */
static __always_inline int choose_backend(const struct packet *pkt, const struct stickylb_vip_meta *vip,
                                          enum parse_result kind, struct choice *choice)
{
    const struct stickylb_config *config = runtime_settings();
    if (!config)
        return -1;
    const int persistent = vip->flags & STICKYLB_VIP_F_PERSISTENT;
    /*
     * A SYN records nothing: it follows the affinity table or the ring, and the
     * packet that completes the handshake (same pick) records the flow and the
     * client. A flood of spoofed SYNs therefore never evicts a real user's entry,
     * and a RST never creates one.
     */
    const int tcp = pkt->flow.proto == IPPROTO_TCP;
    const int creates_state = kind == PARSE_FLOW && !(tcp && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST)));
    __u64 now = 0;

    struct stickylb_affinity_key affinity_key;
    __builtin_memset(&affinity_key, 0, sizeof(affinity_key));
    const int by_source = vip->flags & (STICKYLB_VIP_F_PERSISTENT | STICKYLB_VIP_F_HASH_SOURCE);
    if (by_source) {
        affinity_key.vip_index = vip->vip_index;
        affinity_key.family = pkt->flow.family;
        mask_client(pkt, vip, &affinity_key.client);
    }

    /* A connection under way that another LB of the fleet carried off today's ring. */
    if (creates_state) {
        struct stickylb_peer_flow *peer = bpf_map_lookup_elem(&peer_flows, &pkt->flow);
        struct stickylb_backend *backend = peer ? usable_backend(peer->backend_index) : NULL;
        if (backend) {
            choice->backend = backend;
            choice->backend_index = peer->backend_index;
            choice->peer_flow = 1;
            if (admit_new_flow(config, choice))
                record_flow(pkt, vip, config, choice, persistent ? bpf_ktime_get_coarse_ns() : 0);
            return 0;
        }
    }

    if (persistent) {
        now = bpf_ktime_get_coarse_ns();
        struct stickylb_affinity *entry = bpf_map_lookup_elem(&affinity, &affinity_key);
        if (entry && now - entry->last_seen_ns < (__u64)vip->affinity_timeout_s * 1000000000ull) {
            struct stickylb_backend *backend = usable_backend(entry->backend_index);
            if (backend) {
                if (creates_state && now - entry->last_seen_ns >= STICKYLB_AFFINITY_REFRESH_NS)
                    entry->last_seen_ns = now;
                choice->backend = backend;
                choice->backend_index = entry->backend_index;
                choice->affinity_hit = 1;
                if (creates_state && admit_new_flow(config, choice))
                    record_flow(pkt, vip, config, choice, now);
                return 0;
            }
        }
    }

    __u32 hash;
    if (by_source) {
        hash = stickylb_hash_client(config->hash_seed, affinity_key.client.v6, pkt->flow.family);
    } else {
        hash = flow_hash(pkt, config->hash_seed);
        choice->flow_hash = hash;
        choice->has_flow_hash = kind == PARSE_FLOW;
    }
    __u32 index = ring_slot_backend(vip->vip_index, hash);
    struct stickylb_backend *backend = usable_backend(index);
    if (!backend)
        return -1;
    choice->backend = backend;
    choice->backend_index = index;
    if (!creates_state || !admit_new_flow(config, choice))
        return 0;
    if (persistent) {
        struct stickylb_affinity fresh = {.backend_index = index, .last_seen_ns = now};
        bpf_map_update_elem(&affinity, &affinity_key, &fresh, BPF_ANY);
        choice->affinity_miss = 1;
    }
    record_flow(pkt, vip, config, choice, now);
    return 0;
}

#endif /* STICKYLB_BPF_SELECTION_H */
