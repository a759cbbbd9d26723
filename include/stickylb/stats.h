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

struct stickylb_global_stats {
    /* outcomes: exactly one per packet */
    __u64 pass_not_ip;            /* ARP, LLDP, QinQ, anything not IPv4/IPv6 */
    __u64 pass_not_vip;           /* IP, but not for a VIP (or not TCP/UDP/ICMP to one) */
    __u64 pass_malformed;         /* unparsable and not for a VIP address: the stack judges it */
    __u64 pass_slow_path;         /* for a backend whose next hop is unresolved: tc redirects */
    __u64 drop_malformed;         /* unparsable packet for a VIP address */
    __u64 drop_no_backend;        /* VIP with no usable backend */
    __u64 drop_fragment;          /* fragment of a 5-tuple-hashed VIP: cannot follow its flow */
    __u64 drop_error;             /* headroom/encapsulation failure */
    __u64 tx;                     /* forwarded out of the ingress interface (XDP_TX) */
    __u64 redirect;               /* forwarded out of another interface */
    /* of which */
    __u64 fragments_steered;      /* fragments of a source-hashed VIP forwarded */
    __u64 icmp_too_big_steered;   /* ICMP frag-needed / packet-too-big sent to a flow's backend */
    __u64 flows_not_recorded;     /* packets of new flows forwarded by the ring, not recorded: over the new-flow limit */
};

struct stickylb_vip_stats {
    __u64 packets;
    __u64 bytes;
    __u64 new_flows;              /* flows recorded (handshake completed, or a re-pick) */
    __u64 affinity_hits;          /* persistent VIP: client found in the affinity table */
    __u64 affinity_misses;        /* persistent VIP: client picked from the ring and recorded */
};

struct stickylb_backend_stats {
    __u64 packets;
    __u64 bytes;
};

#ifdef __cplusplus
static_assert(sizeof(struct stickylb_global_stats) == 13 * 8);
static_assert(sizeof(struct stickylb_vip_stats) == 5 * 8);
static_assert(sizeof(struct stickylb_backend_stats) == 2 * 8);
#endif

#endif /* STICKYLB_STATS_H */
