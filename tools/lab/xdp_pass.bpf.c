// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Lab helper: an XDP program that passes every frame. The lab attaches it to the
 * bridge-side veth peer of the load balancer, because on veth a frame sent with
 * XDP_TX (or redirected natively) reaches the peer only when the peer runs an
 * XDP program of its own.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int stickylb_lab_xdp_pass(struct xdp_md *ctx)
{
    (void)ctx;
    return XDP_PASS;
}
