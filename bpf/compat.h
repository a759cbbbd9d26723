/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Build glue shared by every BPF program: kernel UAPI headers and libbpf helpers. */
#ifndef STICKYLB_BPF_COMPAT_H
#define STICKYLB_BPF_COMPAT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#ifndef NEXTHDR_HOP
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#endif
/* linux/icmp.h pulls in libc socket headers that do not build for the BPF target. */
struct icmphdr {
    __u8 type;
    __u8 code;
    __sum16 checksum;
    __be32 rest_of_header;
};
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4

#define IPV4_FLAG_MF 0x2000
#define IPV4_FRAG_OFFSET_MASK 0x1fff

#endif
