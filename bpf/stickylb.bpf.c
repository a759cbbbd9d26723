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
#include "modes.h"
#include "stats.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int forward(struct xdp_md *ctx, const struct packet *pkt, const struct stickylb_vip_meta *vip,
                                   const struct choice *choice, struct stickylb_global_stats *counters)
{
    const struct stickylb_backend *backend = choice->backend;
    if (before_next_hop(vip->forwarding_mode, ctx, pkt, choice))
        return OUTCOME(counters, drop_error, XDP_DROP);
    if (!(backend->flags & STICKYLB_BACKEND_F_NEXTHOP_KNOWN)) {
        if (insert_slow_path_shim(ctx, pkt->l3_offset, backend, slow_path_family(vip->forwarding_mode, backend)))
            return OUTCOME(counters, drop_error, XDP_DROP);
        return OUTCOME(counters, pass_slow_path, XDP_PASS);
    }
    if (after_next_hop(vip->forwarding_mode, ctx, backend))
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

static __always_inline int forward_counted(struct xdp_md *ctx, const struct packet *pkt,
                                           const struct stickylb_vip_meta *vip, const struct choice *choice,
                                           enum parse_result kind, __u64 bytes, struct stickylb_global_stats *counters)
{
    count_vip(vip->vip_index, bytes, choice->new_flow, choice->affinity_hit, choice->affinity_miss);
    count_backend(choice->backend_index, bytes);
    if (counters && kind == PARSE_FRAGMENT)
        counters->fragments_steered++;
    if (counters && kind == PARSE_ICMP_TOO_BIG)
        counters->icmp_too_big_steered++;
    if (counters && choice->flow_not_recorded)
        counters->flows_not_recorded++;
    if (counters && choice->peer_flow)
        counters->peer_flows_followed++;
    return forward(ctx, pkt, vip, choice, counters);
}

SEC("xdp")
int stickylb_xdp(struct xdp_md *ctx)
{
    struct stickylb_global_stats *counters = global_counters();
    const __u64 bytes = ctx->data_end - ctx->data;
    struct packet pkt;
    __builtin_memset(&pkt, 0, sizeof(pkt));
    struct choice choice;
    __builtin_memset(&choice, 0, sizeof(choice));
    struct stickylb_vip_meta *vip;

    enum parse_result kind = parse_packet(ctx, &pkt);
    if (kind == PARSE_NOT_IP)
        return OUTCOME(counters, pass_not_ip, XDP_PASS);
    if (kind == PARSE_OTHER)
        return OUTCOME(counters, pass_not_vip, XDP_PASS);
    if (kind == PARSE_TRUNCATED_IP)
        return OUTCOME(counters, pass_malformed, XDP_PASS);

    /* Fast path: an established packet of a VIP costs one flow-cache read. */
    if (kind == PARSE_FLOW) {
        if (!may_be_vip(&pkt))
            return OUTCOME(counters, pass_not_vip, XDP_PASS);
        if (!is_new_connection(&pkt)) {
            struct stickylb_flow *flow = find_flow(&pkt);
            if (flow && follow_flow(&pkt, kind, flow, &vip, &choice) == 0)
                return forward_counted(ctx, &pkt, vip, &choice, kind, bytes, counters);
        }
    }

    /* Without ports (fragments, malformed L4) the port-0 address entry answers. */
    struct stickylb_vip_key key;
    __builtin_memset(&key, 0, sizeof(key));
    key.addr = pkt.flow.dst;
    key.family = pkt.flow.family;
    key.proto = pkt.flow.proto;
    key.port = (kind == PARSE_FLOW || kind == PARSE_ICMP_TOO_BIG) ? pkt.flow.dport : 0;
    vip = bpf_map_lookup_elem(&vips, &key);

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
    if (vip->vip_index >= max_vips)
        return OUTCOME(counters, drop_error, XDP_DROP);

    /* An ICMP error follows the flow it quotes, if that flow is known. */
    if (kind == PARSE_ICMP_TOO_BIG) {
        struct stickylb_flow *flow = bpf_map_lookup_elem(&flows, &pkt.flow); /* rare: no cache */
        struct stickylb_vip_meta *flow_vip;
        if (flow && follow_flow(&pkt, kind, flow, &flow_vip, &choice) == 0)
            return forward_counted(ctx, &pkt, flow_vip, &choice, kind, bytes, counters);
    }

    if (choose_backend(&pkt, vip, kind, &choice)) {
        count_vip(vip->vip_index, bytes, 0, 0, 0);
        return OUTCOME(counters, drop_no_backend, XDP_DROP);
    }
    return forward_counted(ctx, &pkt, vip, &choice, kind, bytes, counters);
}
