/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Forwarding to the chosen backend: L2 DSR (MAC rewrite) or IP-in-IP
 * encapsulation (outer family = backend family), then XDP_TX / redirect, or
 * the tc slow path when the next hop's MAC is not known yet.
 */
#ifndef STICKYLB_BPF_FORWARDING_H
#define STICKYLB_BPF_FORWARDING_H

#include "parsing.h"

#define OUTER_TTL 64

static __always_inline __u16 ipv4_header_checksum(const struct iphdr *ip)
{
    const __u16 *words = (const __u16 *)ip;
    __u32 sum = 0;
#pragma unroll
    for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
        sum += words[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~sum;
}

/*
 * The outer source carries the flow hash in its low bits: backends' NICs
 * spread tunnelled flows over their queues by outer addresses, so a single
 * tunnel source would land every flow on one CPU.
 */
static __always_inline void build_outer_ipv4(struct iphdr *outer, const struct packet *pkt,
                                             const struct stickylb_backend *backend,
                                             const struct stickylb_config *config, __u32 flow_hash)
{
    __builtin_memset(outer, 0, sizeof(*outer));
    outer->version = 4;
    outer->ihl = 5;
    outer->tos = pkt->ip_tos;
    outer->tot_len = bpf_htons(pkt->ip_length + sizeof(*outer));
    outer->ttl = OUTER_TTL;
    outer->protocol = pkt->flow.family == STICKYLB_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;
    outer->saddr = (config->tunnel_source_v4.v4 & bpf_htonl(0xffff0000)) | bpf_htonl(flow_hash & 0xffff);
    outer->daddr = backend->addr.v4;
    outer->check = ipv4_header_checksum(outer);
}

static __always_inline void build_outer_ipv6(struct ipv6hdr *outer, const struct packet *pkt,
                                             const struct stickylb_backend *backend,
                                             const struct stickylb_config *config, __u32 flow_hash)
{
    __builtin_memset(outer, 0, sizeof(*outer));
    outer->version = 6;
    outer->priority = pkt->ip_tos >> 4;
    outer->flow_lbl[0] = (__u8)((pkt->ip_tos & 0xf) << 4) | ((flow_hash >> 16) & 0xf);
    outer->flow_lbl[1] = (__u8)(flow_hash >> 8);
    outer->flow_lbl[2] = (__u8)flow_hash;
    outer->payload_len = bpf_htons(pkt->ip_length);
    outer->nexthdr = pkt->flow.family == STICKYLB_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;
    outer->hop_limit = OUTER_TTL;
    __builtin_memcpy(outer->saddr.s6_addr, config->tunnel_source_v6.bytes, 12);
    outer->saddr.s6_addr32[3] = bpf_htonl(flow_hash);
    __builtin_memcpy(outer->daddr.s6_addr, backend->addr.bytes, 16);
}

/*
 * Grows the packet at the front and writes Ethernet (+ the VLAN tag it had)
 * and the outer header. With a known next hop the Ethernet header gets its
 * final MACs here; otherwise it keeps the ones it came with, so the stack (the
 * tc slow path) still sees a frame addressed to this host.
 */
static __always_inline int encapsulate(struct xdp_md *ctx, const struct packet *pkt,
                                       const struct stickylb_backend *backend, const struct stickylb_config *config,
                                       __u32 flow_hash)
{
    const int outer_v4 = backend->family == STICKYLB_FAMILY_IPV4;
    const int outer_length = outer_v4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
    const int next_hop_known = backend->flags & STICKYLB_BACKEND_F_NEXTHOP_KNOWN;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 macs[2 * ETH_ALEN];
    if (next_hop_known) {
        __builtin_memcpy(macs, backend->nexthop_mac, ETH_ALEN);
        __builtin_memcpy(macs + ETH_ALEN, backend->egress_mac, ETH_ALEN);
    } else {
        if (data + sizeof(macs) > data_end)
            return -1;
        __builtin_memcpy(macs, data, sizeof(macs));
    }
    if (bpf_xdp_adjust_head(ctx, -outer_length))
        return -1;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return -1;
    __builtin_memcpy(eth, macs, sizeof(macs));
    const __be16 outer_type = bpf_htons(outer_v4 ? ETH_P_IP : ETH_P_IPV6);
    void *outer = eth + 1;
    if (pkt->has_vlan) {
        __be16 *vlan = outer;
        if ((void *)(vlan + 2) > data_end)
            return -1;
        eth->h_proto = bpf_htons(ETH_P_8021Q);
        vlan[0] = pkt->vlan_tci;
        vlan[1] = outer_type;
        outer = vlan + 2;
    } else {
        eth->h_proto = outer_type;
    }
    if (outer_v4) {
        struct iphdr header;
        build_outer_ipv4(&header, pkt, backend, config, flow_hash);
        if (outer + sizeof(header) > data_end)
            return -1;
        __builtin_memcpy(outer, &header, sizeof(header));
    } else {
        struct ipv6hdr header;
        build_outer_ipv6(&header, pkt, backend, config, flow_hash);
        if (outer + sizeof(header) > data_end)
            return -1;
        __builtin_memcpy(outer, &header, sizeof(header));
    }
    return 0;
}

static __always_inline int rewrite_macs(struct xdp_md *ctx, const struct stickylb_backend *backend)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return -1;
    __builtin_memcpy(eth->h_dest, backend->nexthop_mac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, backend->egress_mac, ETH_ALEN);
    return 0;
}

/* Set by the loader, the same in neigh.bpf.c (abi.h: stickylb_slow_path_shim). */
const volatile __u64 slow_path_key = 0;

/* The layer 2 header (l2_length: Ethernet, or Ethernet and one VLAN tag) moves to the
 * new front, the shim goes behind it. family: the backend's own, for a next hop on the
 * segment; none, to route to its address. */
static __always_inline int insert_slow_path_shim(struct xdp_md *ctx, __u32 l2_length,
                                                 const struct stickylb_backend *backend, __u8 family)
{
    struct stickylb_slow_path_shim shim = {
        .family = family,
        .egress_ifindex = backend->egress_ifindex,
        .key = slow_path_key,
    };
    __builtin_memcpy(shim.nexthop.bytes, backend->addr.bytes, 16);
    if (bpf_xdp_adjust_head(ctx, -(int)sizeof(shim)))
        return -1;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    if (l2_length == ETH_HLEN) {
        if (data + sizeof(shim) + ETH_HLEN > data_end)
            return -1;
        __builtin_memcpy(data, data + sizeof(shim), ETH_HLEN);
        __builtin_memcpy(data + ETH_HLEN, &shim, sizeof(shim));
        return 0;
    }
    if (l2_length == ETH_HLEN + 4) {
        if (data + sizeof(shim) + ETH_HLEN + 4 > data_end)
            return -1;
        __builtin_memcpy(data, data + sizeof(shim), ETH_HLEN + 4);
        __builtin_memcpy(data + ETH_HLEN + 4, &shim, sizeof(shim));
        return 0;
    }
    return -1;
}

#endif /* STICKYLB_BPF_FORWARDING_H */
