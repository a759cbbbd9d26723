// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * tc ingress slow path on the LB's NIC. The XDP program hands over packets
 * whose next hop has no known MAC yet, with stickylb_slow_path_meta in front;
 * bpf_redirect_neigh() lets the kernel resolve the neighbour (and queue the
 * packet meanwhile), which XDP cannot do. The daemon then learns the MAC from
 * the neighbour table and later packets take the fast path.
 */
#include "compat.h"
#include "stickylb/abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int stickylb_neigh(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    struct stickylb_slow_path_meta *meta = (void *)(long)skb->data_meta;
    if ((void *)(meta + 1) > data || meta->magic != STICKYLB_SLOW_PATH_MAGIC)
        return TC_ACT_OK;
    __u32 ifindex = meta->egress_ifindex ? meta->egress_ifindex : skb->ifindex;
    if (meta->family == STICKYLB_FAMILY_NONE)
        return bpf_redirect_neigh(ifindex, NULL, 0, 0);
    struct bpf_redir_neigh nexthop = {};
    if (meta->family == STICKYLB_FAMILY_IPV4) {
        nexthop.nh_family = 2; /* AF_INET */
        nexthop.ipv4_nh = meta->nexthop.v4;
    } else {
        nexthop.nh_family = 10; /* AF_INET6 */
        __builtin_memcpy(nexthop.ipv6_nh, meta->nexthop.bytes, 16);
    }
    return bpf_redirect_neigh(ifindex, &nexthop, sizeof(nexthop), 0);
}
