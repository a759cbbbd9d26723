// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The real-traffic benchmark's forwarding floor (tools/bench/traffic.sh, case
 * "floor"): the least an L2 DSR load balancer can do in the namespace lab. Every
 * IPv4 frame for the lab's VIP goes to backend 1 by MAC rewrite and XDP_TX, with no
 * lookup at all; everything else passes. Its row beside stickylb's separates what
 * the lab's extra hops cost (client -> LB -> backend instead of client -> backend)
 * from what stickylb's own program costs. The addresses are the lab's
 * (tools/lab/lab.sh): VIP 10.89.0.250, LB MAC 02:89:00:00:00:02, be1 MAC
 * 02:89:00:00:00:15.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define LAB_VIP 0x0a5900faU /* 10.89.0.250 */

SEC("xdp")
int stickylb_bench_forward_floor(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->daddr != bpf_htonl(LAB_VIP))
        return XDP_PASS;
    const unsigned char backend[ETH_ALEN] = {0x02, 0x89, 0x00, 0x00, 0x00, 0x15};
    const unsigned char lb[ETH_ALEN] = {0x02, 0x89, 0x00, 0x00, 0x00, 0x02};
    __builtin_memcpy(eth->h_dest, backend, ETH_ALEN);
    __builtin_memcpy(eth->h_source, lb, ETH_ALEN);
    return XDP_TX;
}
