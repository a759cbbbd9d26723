// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * stickylb XDP program, attached to the load balancer's NIC. Packets for a
 * VIP go to a backend chosen by flow table, client affinity or Maglev ring and
 * leave by direct server return; everything else passes to the stack untouched.
 */
#include "compat.h"
#include "maps.h"
#include "parsing.h"
#include "selection.h"
#include "forwarding.h"
#include "stats.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int forward(struct xdp_md *ctx, const struct packet *pkt,
                                   const struct stickylb_vip_meta *vip, const struct choice *choice,
                                   const struct stickylb_config *config,
                                   struct stickylb_global_stats *counters)
{
    const struct stickylb_backend *backend = choice->backend;
    if (vip->forwarding_mode == STICKYLB_FWD_IPIP &&
        encapsulate(ctx, pkt, backend, config, flow_hash(pkt, config->hash_seed)))
        return OUTCOME(counters, drop_error, XDP_DROP);

    if (!(backend->flags & STICKYLB_BACKEND_F_NEXTHOP_KNOWN)) {
        if (attach_slow_path_meta(ctx, backend, vip->forwarding_mode))
            return OUTCOME(counters, drop_error, XDP_DROP);
        return OUTCOME(counters, pass_slow_path, XDP_PASS);
    }
    if (rewrite_macs(ctx, backend))
        return OUTCOME(counters, drop_error, XDP_DROP);
    if (backend->egress_ifindex && backend->egress_ifindex != ctx->ingress_ifindex)
        return OUTCOME(counters, redirect, bpf_redirect(backend->egress_ifindex, 0));
    return OUTCOME(counters, tx, XDP_TX);
}

/*
 * A malformed packet may stop parsing before its transport protocol is known
 * (an IPv6 extension chain, an IPv4 header with a bad length): it is for us if
 * its destination holds any VIP, whatever protocol the header claims.
 */
static __always_inline int is_vip_address(struct stickylb_vip_key *key)
{
    key->port = 0;
    key->proto = IPPROTO_TCP;
    if (bpf_map_lookup_elem(&vips, key))
        return 1;
    key->proto = IPPROTO_UDP;
    return bpf_map_lookup_elem(&vips, key) != NULL;
}

SEC("xdp")
int stickylb_xdp(struct xdp_md *ctx)
{
    struct stickylb_global_stats *counters = global_counters();
    const __u64 bytes = ctx->data_end - ctx->data;
    struct packet pkt;
    __builtin_memset(&pkt, 0, sizeof(pkt));

    enum parse_result kind = parse_packet(ctx, &pkt);
    if (kind == PARSE_NOT_IP)
        return OUTCOME(counters, pass_not_ip, XDP_PASS);
    if (kind == PARSE_OTHER)
        return OUTCOME(counters, pass_not_vip, XDP_PASS);
    if (kind == PARSE_TRUNCATED_IP)
        return OUTCOME(counters, pass_malformed, XDP_PASS);

    /* Without ports (fragments, malformed L4) the port-0 address entry answers. */
    struct stickylb_vip_key key;
    __builtin_memset(&key, 0, sizeof(key));
    key.addr = pkt.flow.dst;
    key.family = pkt.flow.family;
    key.proto = pkt.flow.proto;
    key.port = (kind == PARSE_FLOW || kind == PARSE_ICMP_TOO_BIG) ? pkt.flow.dport : 0;
    struct stickylb_vip_meta *vip = bpf_map_lookup_elem(&vips, &key);

    if (kind == PARSE_MALFORMED)
        return vip || is_vip_address(&key) ? OUTCOME(counters, drop_malformed, XDP_DROP)
                                           : OUTCOME(counters, pass_malformed, XDP_PASS);
    if (!vip)
        return OUTCOME(counters, pass_not_vip, XDP_PASS);
    if (kind == PARSE_FRAGMENT) {
        if (!(vip->flags & (STICKYLB_VIP_F_PERSISTENT | STICKYLB_VIP_F_HASH_SOURCE)))
            return OUTCOME(counters, drop_fragment, XDP_DROP);
    } else if (vip->flags & STICKYLB_VIP_F_ADDRESS_ENTRY) {
        return OUTCOME(counters, pass_not_vip, XDP_PASS); /* a packet to port 0 */
    }

    __u32 zero = 0;
    struct stickylb_config *config = bpf_map_lookup_elem(&runtime_config, &zero);
    if (!config || vip->vip_index >= max_vips)
        return OUTCOME(counters, drop_error, XDP_DROP);

    struct choice choice;
    __builtin_memset(&choice, 0, sizeof(choice));
    if (choose_backend(&pkt, vip, config, kind, &choice)) {
        count_vip(vip->vip_index, bytes, 0, 0, 0);
        return OUTCOME(counters, drop_no_backend, XDP_DROP);
    }
    count_vip(vip->vip_index, bytes, choice.new_flow, choice.affinity_hit, choice.affinity_miss);
    count_backend(choice.backend_index, bytes);
    if (counters) {
        counters->fragments_steered += kind == PARSE_FRAGMENT;
        counters->icmp_too_big_steered += kind == PARSE_ICMP_TOO_BIG;
    }
    return forward(ctx, &pkt, vip, &choice, config, counters);
}
