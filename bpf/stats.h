/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Counting: every packet ends in exactly one outcome field (see stickylb/stats.h). */
#ifndef STICKYLB_BPF_STATS_H
#define STICKYLB_BPF_STATS_H

#include "maps.h"

static __always_inline struct stickylb_global_stats *global_counters(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&global_stats, &zero);
}

/* Bumps one outcome and returns the XDP verdict that goes with it. */
#define OUTCOME(counters, field, verdict) \
    ({                                    \
        if (counters)                     \
            (counters)->field++;          \
        (verdict);                        \
    })

static __always_inline void count_vip(__u32 vip_index, __u64 bytes, __u32 new_flow, __u32 affinity_hit,
                                      __u32 affinity_miss)
{
    struct stickylb_vip_stats *s = bpf_map_lookup_elem(&vip_stats, &vip_index);
    if (!s)
        return;
    s->packets++;
    s->bytes += bytes;
    s->new_flows += new_flow;
    s->affinity_hits += affinity_hit;
    s->affinity_misses += affinity_miss;
}

static __always_inline void count_backend(__u32 backend_index, __u64 bytes)
{
    struct stickylb_backend_stats *s = bpf_map_lookup_elem(&backend_stats, &backend_index);
    if (!s)
        return;
    s->packets++;
    s->bytes += bytes;
}

#endif /* STICKYLB_BPF_STATS_H */
