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
    __u8 new_flow;
    __u8 affinity_hit;
    __u8 affinity_miss;
};

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
    return stickylb_hash_flow(seed, pkt->flow.src.v6, pkt->flow.dst.v6, pkt->flow.sport,
                              pkt->flow.dport, pkt->flow.proto, pkt->flow.family);
}

/* A long-lived connection keeps its client's affinity alive, at most once per refresh period. */
static __always_inline void refresh_affinity_from_flow(const struct packet *pkt,
                                                       const struct stickylb_vip_meta *vip,
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

static __always_inline void record_flow(const struct packet *pkt, struct choice *choice, __u64 now)
{
    struct stickylb_flow flow = {.backend_index = choice->backend_index, .refreshed_ns = now};
    bpf_map_update_elem(&flows, &pkt->flow, &flow, BPF_ANY);
    choice->new_flow = 1;
}

/*
 * kind: PARSE_FLOW may create state; fragments and ICMP errors only follow
 * what exists (or what the ring says), they never record a flow or affinity.
 */
static __always_inline int choose_backend(const struct packet *pkt, const struct stickylb_vip_meta *vip,
                                          const struct stickylb_config *config, enum parse_result kind,
                                          struct choice *choice)
{
    const int persistent = vip->flags & STICKYLB_VIP_F_PERSISTENT;
    const int tcp = pkt->flow.proto == IPPROTO_TCP;
    const int creates_state = kind == PARSE_FLOW && !(tcp && (pkt->tcp_flags & TCP_FLAG_RST));
    /* A SYN starts a new connection: it follows today's ring, not a stale tuple. */
    const int new_connection = tcp && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
    __u64 now = 0;

    if (kind != PARSE_FRAGMENT && !new_connection) {
        struct stickylb_flow *flow = bpf_map_lookup_elem(&flows, &pkt->flow);
        if (flow) {
            struct stickylb_backend *backend = usable_backend(flow->backend_index);
            if (backend) {
                if (persistent && creates_state)
                    refresh_affinity_from_flow(pkt, vip, flow, bpf_ktime_get_coarse_ns());
                choice->backend = backend;
                choice->backend_index = flow->backend_index;
                return 0;
            }
        }
    }

    struct stickylb_affinity_key affinity_key;
    __builtin_memset(&affinity_key, 0, sizeof(affinity_key));
    const int by_source = vip->flags & (STICKYLB_VIP_F_PERSISTENT | STICKYLB_VIP_F_HASH_SOURCE);
    if (by_source) {
        affinity_key.vip_index = vip->vip_index;
        affinity_key.family = pkt->flow.family;
        mask_client(pkt, vip, &affinity_key.client);
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
                if (creates_state)
                    record_flow(pkt, choice, now);
                return 0;
            }
        }
    }

    __u32 hash = by_source ? stickylb_hash_client(config->hash_seed, affinity_key.client.v6, pkt->flow.family)
                           : flow_hash(pkt, config->hash_seed);
    __u32 index = ring_slot_backend(vip->vip_index, hash);
    struct stickylb_backend *backend = usable_backend(index);
    if (!backend)
        return -1;
    choice->backend = backend;
    choice->backend_index = index;
    if (!creates_state)
        return 0;
    if (persistent) {
        struct stickylb_affinity fresh = {.backend_index = index, .last_seen_ns = now};
        bpf_map_update_elem(&affinity, &affinity_key, &fresh, BPF_ANY);
        choice->affinity_miss = 1;
    }
    record_flow(pkt, choice, now);
    return 0;
}

#endif /* STICKYLB_BPF_SELECTION_H */
