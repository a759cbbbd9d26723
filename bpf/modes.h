/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The forwarding modes of STICKYLB_FORWARDING_MODES (stickylb/abi.h), each as three
 * steps the XDP entry runs for every forwarded packet:
 *   <mode>_before_next_hop   what is rewritten whether or not the next hop's MAC is
 *                            known (the tc slow path gets the packet as it leaves this)
 *   <mode>_after_next_hop    what is rewritten once it is
 *   <mode>_slow_path_family  the family the slow path resolves the backend's address
 *                            in, or STICKYLB_FAMILY_NONE to route to it instead
 * A mode added to the table does not build until it has all three.
 */
#ifndef STICKYLB_BPF_MODES_H
#define STICKYLB_BPF_MODES_H

#include "forwarding.h"
#include "selection.h"

/* L2 DSR: the backend shares the segment and is its own next hop. */
static __always_inline int l2_dsr_before_next_hop(struct xdp_md *ctx, const struct packet *pkt,
                                                  const struct choice *choice)
{
    (void)ctx;
    (void)pkt;
    (void)choice;
    return 0;
}

static __always_inline int l2_dsr_after_next_hop(struct xdp_md *ctx, const struct stickylb_backend *backend)
{
    return rewrite_macs(ctx, backend);
}

static __always_inline __u8 l2_dsr_slow_path_family(const struct stickylb_backend *backend)
{
    return backend->family;
}

/* IPIP: the outer header is written first, so the slow path routes the tunnelled packet. */
static __always_inline int ipip_before_next_hop(struct xdp_md *ctx, const struct packet *pkt,
                                                const struct choice *choice)
{
    const struct stickylb_config *config = runtime_settings();
    if (!config)
        return -1;
    const __u32 hash = choice->has_flow_hash ? choice->flow_hash : flow_hash(pkt, config->hash_seed);
    return encapsulate(ctx, pkt, choice->backend, config, hash);
}

/* encapsulate() wrote the final MACs when it knew them. */
static __always_inline int ipip_after_next_hop(struct xdp_md *ctx, const struct stickylb_backend *backend)
{
    (void)ctx;
    (void)backend;
    return 0;
}

static __always_inline __u8 ipip_slow_path_family(const struct stickylb_backend *backend)
{
    (void)backend;
    return STICKYLB_FAMILY_NONE;
}

/*
 * A value outside the table (stickylbd refuses to write or adopt one) takes the first
 * mode's path: the test for that mode then folds away, where an error path for
 * unknown values costs every packet a compare and made IPv6 established flows ~10%
 * slower in xdp_bench.
 */
#define MODE_BEFORE_NEXT_HOP(NAME, name, word, value) \
    if (mode == STICKYLB_FWD_##NAME)                  \
        return name##_before_next_hop(ctx, pkt, choice);
static __always_inline int before_next_hop(__u8 mode, struct xdp_md *ctx, const struct packet *pkt,
                                           const struct choice *choice)
{
    STICKYLB_FORWARDING_MODES(MODE_BEFORE_NEXT_HOP)
    return l2_dsr_before_next_hop(ctx, pkt, choice);
}
#undef MODE_BEFORE_NEXT_HOP

#define MODE_AFTER_NEXT_HOP(NAME, name, word, value) \
    if (mode == STICKYLB_FWD_##NAME)                 \
        return name##_after_next_hop(ctx, backend);
static __always_inline int after_next_hop(__u8 mode, struct xdp_md *ctx, const struct stickylb_backend *backend)
{
    STICKYLB_FORWARDING_MODES(MODE_AFTER_NEXT_HOP)
    return l2_dsr_after_next_hop(ctx, backend);
}
#undef MODE_AFTER_NEXT_HOP

#define MODE_SLOW_PATH_FAMILY(NAME, name, word, value) \
    if (mode == STICKYLB_FWD_##NAME)                   \
        return name##_slow_path_family(backend);
static __always_inline __u8 slow_path_family(__u8 mode, const struct stickylb_backend *backend)
{
    STICKYLB_FORWARDING_MODES(MODE_SLOW_PATH_FAMILY)
    return l2_dsr_slow_path_family(backend);
}
#undef MODE_SLOW_PATH_FAMILY

#endif /* STICKYLB_BPF_MODES_H */
