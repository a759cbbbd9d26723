/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Per-CPU counters of the XDP program, one named field per thing counted.
 * Userspace sums them over CPUs. Every packet the program sees ends in exactly
 * one "outcome" field of stickylb_global_stats, so the outcomes add up to the
 * packets received; the "of which" fields count subsets of those outcomes.
 */
#ifndef STICKYLB_STATS_H
#define STICKYLB_STATS_H

#include <linux/types.h>

/*
 * The one table of the global counters: X(field, name, help). BPF bumps `field`;
 * `stickylb stats show` calls it `name`; the metric is stickylb_packets_<name>_total
 * for an outcome, stickylb_<name>_total for an "of which" counter; `help` is the
 * metric's HELP. Tests, README and metrics are checked against this table.
 */
#define STICKYLB_OUTCOME_COUNTERS(X)                                                                             \
    X(pass_not_ip, "passed_not_ip", "Packets passed to the kernel: not IPv4/IPv6.")                              \
    X(pass_not_vip, "passed_not_vip", "Packets passed to the kernel: IP, but not for a VIP.")                    \
    X(pass_malformed, "passed_malformed", "Packets passed to the kernel: unparsable and not for a VIP address.") \
    X(pass_slow_path, "passed_slow_path", "Packets passed to the tc slow path: backend next hop unresolved.")    \
    X(drop_malformed, "dropped_malformed", "Packets dropped: unparsable packet for a VIP address.")              \
    X(drop_no_backend, "dropped_no_backend", "Packets dropped: VIP with no usable backend.")                     \
    X(drop_fragment, "dropped_fragment", "Packets dropped: fragment of a 5-tuple-hashed VIP.")                   \
    X(drop_error, "dropped_error", "Packets dropped: headroom or encapsulation failure.")                        \
    X(tx, "forwarded_tx", "Packets forwarded out of the ingress interface (XDP_TX).")                            \
    X(redirect, "forwarded_redirect", "Packets forwarded out of another interface (redirect).")

#define STICKYLB_SUBSET_COUNTERS(X)                                                                   \
    X(fragments_steered, "fragments_steered",                                                         \
      "Fragments of source-hashed VIPs forwarded (subset of forwarded packets).")                     \
    X(icmp_too_big_steered, "icmp_too_big_steered",                                                   \
      "ICMP frag-needed / packet-too-big sent to a flow's backend (subset of forwarded packets).")    \
    X(flows_not_recorded, "flows_not_recorded",                                                       \
      "Packets of new flows forwarded by the ring but not recorded: over the per-CPU new-flow limit " \
      "(a flood of new sources cannot evict established flows).")                                     \
    X(peer_flows_followed, "peer_flows_followed",                                                     \
      "Packets of flows without an entry here sent where another LB of the fleet had them "           \
      "(its flow off today's ring; subset of forwarded packets).")

#define STICKYLB_COUNTER_FIELD(field, name, help) __u64 field;
/* Outcomes first, exactly one per packet; then the "of which" counters. */
struct stickylb_global_stats {
    STICKYLB_OUTCOME_COUNTERS(STICKYLB_COUNTER_FIELD)
    STICKYLB_SUBSET_COUNTERS(STICKYLB_COUNTER_FIELD)
};
#undef STICKYLB_COUNTER_FIELD

struct stickylb_vip_stats {
    __u64 packets;
    __u64 bytes;
    __u64 new_flows;       /* flows recorded (handshake completed, or a re-pick) */
    __u64 affinity_hits;   /* persistent VIP: client found in the affinity table */
    __u64 affinity_misses; /* persistent VIP: client picked from the ring and recorded */
};

struct stickylb_backend_stats {
    __u64 packets;
    __u64 bytes;
};

#ifdef __cplusplus
static_assert(sizeof(struct stickylb_global_stats) == 14 * 8);

namespace stickylb {
struct GlobalCounter {
    const char *field_name; // as in stickylb_global_stats
    const char *name;
    const char *help;
    __u64 stickylb_global_stats::*field;
    bool outcome; // exactly one per packet; else a subset of the outcomes
};
#define STICKYLB_OUTCOME_ROW(field, name, help) GlobalCounter{#field, name, help, &stickylb_global_stats::field, true},
#define STICKYLB_SUBSET_ROW(field, name, help) GlobalCounter{#field, name, help, &stickylb_global_stats::field, false},
inline constexpr GlobalCounter kGlobalCounters[] = {STICKYLB_OUTCOME_COUNTERS(STICKYLB_OUTCOME_ROW)
                                                        STICKYLB_SUBSET_COUNTERS(STICKYLB_SUBSET_ROW)};
#undef STICKYLB_OUTCOME_ROW
#undef STICKYLB_SUBSET_ROW
} // namespace stickylb
static_assert(sizeof(struct stickylb_vip_stats) == 5 * 8);
static_assert(sizeof(struct stickylb_backend_stats) == 2 * 8);
#endif

#endif /* STICKYLB_STATS_H */
