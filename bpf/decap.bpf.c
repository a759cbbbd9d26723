// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * tc ingress on a backend: strips the outer IPv4/IPv6 header the load
 * balancer added, for kernels without the ipip/ip6_tunnel modules. The inner
 * packet (addressed to the VIP, which the backend holds on lo) then goes up
 * the stack as if it had arrived directly; replies go straight to the client.
 */
#include "compat.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Kernel 6.3+: tells bpf_skb_adjust_room the IP version after decapsulation. */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

static __always_inline int decapsulate(struct __sk_buff *skb, int outer_length, __u8 inner_protocol,
                                       __u32 ether_type_offset)
{
    __u64 flags;
    __be16 inner_type;
    if (inner_protocol == IPPROTO_IPIP) {
        flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
        inner_type = bpf_htons(ETH_P_IP);
    } else if (inner_protocol == IPPROTO_IPV6) {
        flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
        inner_type = bpf_htons(ETH_P_IPV6);
    } else {
        return TC_ACT_OK;
    }
    if (bpf_skb_adjust_room(skb, -outer_length, BPF_ADJ_ROOM_MAC, flags))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, ether_type_offset, &inner_type, sizeof(inner_type), 0))
        return TC_ACT_SHOT;
    return TC_ACT_OK;
}

SEC("tc")
int stickylb_decap(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return TC_ACT_OK;
    const __u32 ether_type_offset = offsetof(struct ethhdr, h_proto);
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end || ip->ihl != 5)
            return TC_ACT_OK;
        if (ip->frag_off & bpf_htons(IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK))
            return TC_ACT_OK; /* the stack reassembles; an ipip device would then decap */
        return decapsulate(skb, sizeof(*ip), ip->protocol, ether_type_offset);
    }
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end)
            return TC_ACT_OK;
        return decapsulate(skb, sizeof(*ip), ip->nexthdr, ether_type_offset);
    }
    return TC_ACT_OK;
}
