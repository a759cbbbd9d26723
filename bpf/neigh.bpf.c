// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * tc ingress slow path on the LB's NIC. The XDP program hands over packets
 * whose next hop has no known MAC yet, with stickylb_slow_path_shim behind
 * their Ethernet header; bpf_redirect_neigh() lets the kernel resolve the
 * neighbour (and queue the packet meanwhile), which XDP cannot do. The daemon
 * then learns the MAC from the neighbour table and later packets take the fast
 * path.
 */
#include "compat.h"
#include "stickylb/abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader, the same as the XDP program's; 0 (never set) matches nothing. */
const volatile __u64 slow_path_key = 0;

SEC("tc")
int stickylb_neigh(struct __sk_buff *skb)
{
    /* The VLAN tag, if any, is off already: the shim follows the Ethernet header. */
    if (!slow_path_key || (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6)))
        return TC_ACT_OK;
    struct stickylb_slow_path_shim shim;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &shim, sizeof(shim)) || shim.key != slow_path_key || shim.zero)
        return TC_ACT_OK;
    if (bpf_skb_adjust_room(skb, -(__s32)sizeof(shim), BPF_ADJ_ROOM_MAC, 0))
        return TC_ACT_SHOT;
    __u32 ifindex = shim.egress_ifindex ? shim.egress_ifindex : skb->ifindex;
    if (shim.family == STICKYLB_FAMILY_NONE)
        return bpf_redirect_neigh(ifindex, NULL, 0, 0);
    struct bpf_redir_neigh nexthop = {};
    if (shim.family == STICKYLB_FAMILY_IPV4) {
        nexthop.nh_family = 2; /* AF_INET */
        nexthop.ipv4_nh = shim.nexthop.v4;
    } else {
        nexthop.nh_family = 10; /* AF_INET6 */
        __builtin_memcpy(nexthop.ipv6_nh, shim.nexthop.bytes, 16);
    }
    return bpf_redirect_neigh(ifindex, &nexthop, sizeof(nexthop), 0);
}
