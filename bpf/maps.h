/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Maps of the XDP program. Sizes are defaults: the loader resizes rings,
 * backends, flows and affinity before load (ring size and VIP count are
 * settable per deployment). Keys and values are defined in stickylb/abi.h.
 */
#ifndef STICKYLB_BPF_MAPS_H
#define STICKYLB_BPF_MAPS_H

#include "compat.h"
#include "stickylb/abi.h"
#include "stickylb/stats.h"

/* Set by the loader; rodata is frozen, so the verifier sees constants. */
const volatile __u32 ring_size = STICKYLB_DEFAULT_RING_SIZE;
const volatile __u32 max_vips = STICKYLB_DEFAULT_MAX_VIPS;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, struct stickylb_vip_key);
    __type(value, struct stickylb_vip_meta);
    __uint(max_entries, STICKYLB_MAX_VIP_ENTRIES);
} vips SEC(".maps");

/* The VIPs' settings by index, for flows that already know their VIP. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_vip_meta);
    __uint(max_entries, STICKYLB_DEFAULT_MAX_VIPS);
} vip_meta_by_index SEC(".maps");

/* Bloom filter of (VIP address, port, protocol): non-VIP traffic leaves after one array read. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, STICKYLB_VIP_FILTER_WORDS);
} vip_filter SEC(".maps");

/*
 * Ring of VIP v at [v * ring_size, (v + 1) * ring_size): backend index per slot.
 * Memory-mapped by userspace, which diffs and rewrites slots in place instead
 * of one syscall per slot.
 */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, __u32);
    __uint(max_entries, STICKYLB_DEFAULT_MAX_VIPS *STICKYLB_DEFAULT_RING_SIZE);
} rings SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_backend);
    __uint(max_entries, STICKYLB_DEFAULT_MAX_BACKENDS);
} backends SEC(".maps");

/*
 * One LRU list for all CPUs: inserts measured cheaper than with per-CPU lists
 * (BPF_F_NO_COMMON_LRU), and a flow's entry is never confined to one CPU's share.
 */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __type(key, struct stickylb_flow_key);
    __type(value, struct stickylb_flow);
    __uint(max_entries, STICKYLB_DEFAULT_FLOW_ENTRIES);
} flows SEC(".maps");

/*
 * In front of the flow table: a hit costs an inlined array read and a key
 * compare instead of a hash-table lookup. Per CPU, so no entry is ever written
 * by two CPUs at once (RSS keeps a flow on one CPU); a miss falls through to
 * the flow table, which stays the truth.
 */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_flow_cache_entry);
    __uint(max_entries, STICKYLB_FLOW_CACHE_SLOTS);
} flow_cache SEC(".maps");

/*
 * Written by stickylbd from its peers' published exceptions, read only on a flow
 * miss of a packet that is not a connection's first: established flows never
 * look here. Not preallocated: a fleet with no exceptions pays no memory.
 */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct stickylb_flow_key);
    __type(value, struct stickylb_peer_flow);
    __uint(max_entries, STICKYLB_DEFAULT_PEER_FLOW_ENTRIES);
} peer_flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __type(key, struct stickylb_affinity_key);
    __type(value, struct stickylb_affinity);
    __uint(max_entries, STICKYLB_DEFAULT_AFFINITY_ENTRIES);
} affinity SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_config);
    __uint(max_entries, 1);
} runtime_config SEC(".maps");

/* The new-flow guard's window, per CPU: no CPU ever waits for another's count. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_new_flow_window);
    __uint(max_entries, 1);
} new_flow_window SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_global_stats);
    __uint(max_entries, 1);
} global_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_vip_stats);
    __uint(max_entries, STICKYLB_DEFAULT_MAX_VIPS);
} vip_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, struct stickylb_backend_stats);
    __uint(max_entries, STICKYLB_DEFAULT_MAX_BACKENDS);
} backend_stats SEC(".maps");

#endif /* STICKYLB_BPF_MAPS_H */
