/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Packet parsing: Ethernet (one 802.1Q tag), IPv4 (with options), IPv6 (with a
 * bounded walk over hop-by-hop, routing, destination-options and fragment
 * headers), TCP, UDP, and the quoted header of ICMP "fragmentation needed" /
 * ICMPv6 "packet too big". Every read is bounds-checked against data_end and
 * against the lengths the headers claim, so a lying header is "malformed".
 * Where a backend's kernel would drop a packet for its headers (IPv4 options
 * that do not tile the header, or route it elsewhere; IPv6 options that do not
 * tile theirs, padding runs, option counts; a first fragment without the whole
 * transport header), so does this: malformed.
 */
#ifndef STICKYLB_BPF_PARSING_H
#define STICKYLB_BPF_PARSING_H

#include "compat.h"
#include "stickylb/abi.h"

/* Deeper headers than this are not parsed: real traffic never needs more. */
#define MAX_L4_OFFSET 256
/* A chain longer than this is not walked: its transport is unknown, the packet passes. */
#define MAX_IPV6_EXT_HEADERS 8

#define IPV4_OPTION_END 0
#define IPV4_OPTION_NOP 1
#define IPV4_OPTION_LSRR 131
#define IPV4_OPTION_SSRR 137
#define IPV4_MAX_OPTION_BYTES 40

/* IPV6_TLV_PAD1, IPV6_TLV_PADN, IPV6_TLV_JUMBO: linux/in6.h. */
/* Linux's limits (net/ipv6/exthdrs.c): padding in a row, and options per header
 * (net.ipv6.max_hbh_opts_number / max_dst_opts_number, 8 by default). */
#define IPV6_MAX_PADDING 7
#define IPV6_MAX_TLV_OPTIONS 8
/* Options and padding runs between them: every header Linux takes is walked in fewer steps. */
#define IPV6_MAX_TLV_STEPS (IPV6_MAX_TLV_OPTIONS + (IPV6_MAX_TLV_OPTIONS + 1) * IPV6_MAX_PADDING + 1)

enum parse_result {
    PARSE_FLOW,         /* TCP/UDP with full 5-tuple */
    PARSE_FRAGMENT,     /* addresses and protocol known, ports not */
    PARSE_ICMP_TOO_BIG, /* flow = the quoted flow, turned around to client -> VIP */
    PARSE_NOT_IP,
    PARSE_OTHER,        /* IP, but nothing a VIP could match */
    PARSE_MALFORMED,    /* addresses and protocol known, rest inconsistent */
    PARSE_TRUNCATED_IP, /* not even the IP addresses are there */
};

/* 8-byte aligned: the flow key is compared as five 64-bit words. */
struct packet {
    struct stickylb_flow_key flow __attribute__((aligned(8)));
    __u32 l3_offset; /* Ethernet + VLAN header length */
    __u32 ip_length; /* what the IP header says: excludes Ethernet padding */
    __u16 vlan_tci;  /* network order, valid if has_vlan */
    __u8 has_vlan;
    __u8 tcp_flags; /* byte 13 of the TCP header */
    __u8 ip_tos;    /* v4 TOS / v6 traffic class, copied to an outer header */
    /* Option areas met on the way (IPv4 options in [0]; an IPv6 hop-by-hop or
     * destination-options header at chain position i in [i]), checked once the
     * headers are read; length 0: none. */
    __u16 option_offset[MAX_IPV6_EXT_HEADERS];
    __u16 option_length[MAX_IPV6_EXT_HEADERS];
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

static __always_inline void copy_v6_addr(union stickylb_addr *dst, const struct in6_addr *src)
{
    __builtin_memcpy(dst->bytes, src->s6_addr, 16);
}

/* Ports of a TCP/UDP header at l4 (validated by the caller to have 4 bytes). */
static __always_inline int parse_ports(void *l4, void *data_end, __be16 *sport, __be16 *dport)
{
    __be16 *ports = l4;
    if ((void *)(ports + 2) > data_end)
        return -1;
    *sport = ports[0];
    *dport = ports[1];
    return 0;
}

/* Full TCP/UDP validation against the bytes the IP header claims for L4. */
static __always_inline enum parse_result parse_l4(struct packet *pkt, void *data, void *data_end, __u32 l4_offset,
                                                  __u32 l4_length)
{
    /* Too deep to parse is malformed only for a protocol a VIP could match. */
    if (pkt->flow.proto != IPPROTO_TCP && pkt->flow.proto != IPPROTO_UDP)
        return PARSE_OTHER;
    if (l4_offset > MAX_L4_OFFSET)
        return PARSE_MALFORMED;
    void *l4 = data + l4_offset;
    if (pkt->flow.proto == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > data_end || l4_length < sizeof(*tcp))
            return PARSE_MALFORMED;
        __u32 header_length = tcp->doff * 4;
        if (header_length < sizeof(*tcp) || header_length > l4_length)
            return PARSE_MALFORMED;
        pkt->flow.sport = tcp->source;
        pkt->flow.dport = tcp->dest;
        pkt->tcp_flags = ((__u8 *)tcp)[13];
        return PARSE_FLOW;
    }
    struct udphdr *udp = l4;
    if ((void *)(udp + 1) > data_end)
        return PARSE_MALFORMED;
    __u32 udp_length = bpf_ntohs(udp->len);
    if (udp_length < sizeof(*udp) || udp_length > l4_length)
        return PARSE_MALFORMED;
    pkt->flow.sport = udp->source;
    pkt->flow.dport = udp->dest;
    return PARSE_FLOW;
}

/*
 * Options are walked in functions of their own (global functions, verified
 * once), one option per bpf_loop step (the verifier checks a step once, not
 * every path through all of them), reading the frame with bpf_xdp_load_bytes:
 * only packets that carry options pay for it, and only after their headers
 * are read.
 */
struct option_walk {
    struct xdp_md *ctx;
    __u32 offset;  /* of the option area in the frame */
    __u32 length;  /* of the option area */
    __u32 at;      /* into the area */
    __u32 padding; /* IPv6: padding bytes in a row */
    __u32 options; /* IPv6: options other than padding */
    int valid;     /* the verdict, once a step reaches one */
};

/*
 * RFC 791 options as the kernel reads them: END stops, NOP is one byte, every
 * other option a type, a length of at least 2 and the bytes it counts, inside
 * the header. Source routes send the packet on to another host: a backend's
 * kernel drops them (accept_source_route is off by default).
 */
static long ipv4_option_step(__u64 index, void *context)
{
    struct option_walk *walk = context;
    (void)index;
    if (walk->at >= walk->length) {
        walk->valid = 1;
        return 1;
    }
    __u8 option[2] = {0, 0};
    if (bpf_xdp_load_bytes(walk->ctx, walk->offset + walk->at, option, walk->at + 2 <= walk->length ? 2 : 1))
        return 1;
    if (option[0] == IPV4_OPTION_END) {
        walk->valid = 1;
        return 1;
    }
    if (option[0] == IPV4_OPTION_NOP) {
        walk->at++;
        return 0;
    }
    if (walk->at + 2 > walk->length || option[1] < 2 || option[1] > walk->length - walk->at ||
        option[0] == IPV4_OPTION_LSRR || option[0] == IPV4_OPTION_SSRR)
        return 1;
    walk->at += option[1];
    return 0;
}

__noinline int stickylb_ipv4_options_valid(struct xdp_md *ctx, __u32 offset, __u32 length)
{
    struct option_walk walk = {.ctx = ctx, .offset = offset, .length = length};
    bpf_loop(IPV4_MAX_OPTION_BYTES + 1, ipv4_option_step, &walk, 0);
    return walk.valid;
}

/*
 * The options of a hop-by-hop or destination-options header (RFC 8200 4.2)
 * tile it exactly: Pad1 bytes, or a type, a length and that many bytes. As
 * Linux reads them: at most IPV6_MAX_PADDING bytes of padding in a row, at
 * most IPV6_MAX_TLV_OPTIONS other options. A jumbo payload option is never
 * right here: a jumbogram does not fit in a frame, and one beside a payload
 * length is an error (RFC 2675).
 */
static long ipv6_option_step(__u64 index, void *context)
{
    struct option_walk *walk = context;
    (void)index;
    if (walk->at >= walk->length) {
        walk->valid = walk->at == walk->length;
        return 1;
    }
    __u8 option[2] = {0, 0};
    if (bpf_xdp_load_bytes(walk->ctx, walk->offset + walk->at, option, walk->at + 2 <= walk->length ? 2 : 1))
        return 1;
    if (option[0] == IPV6_TLV_PAD1) {
        if (++walk->padding > IPV6_MAX_PADDING)
            return 1;
        walk->at++;
        return 0;
    }
    __u32 option_length = 2 + (__u32)option[1];
    if (walk->at + 2 > walk->length || option_length > walk->length - walk->at)
        return 1;
    if (option[0] == IPV6_TLV_PADN) {
        walk->padding += option_length;
        if (walk->padding > IPV6_MAX_PADDING)
            return 1;
    } else {
        if (option[0] == IPV6_TLV_JUMBO || ++walk->options > IPV6_MAX_TLV_OPTIONS)
            return 1;
        walk->padding = 0;
    }
    walk->at += option_length;
    return 0;
}

__noinline int stickylb_ipv6_options_valid(struct xdp_md *ctx, __u32 offset, __u32 length)
{
    /* The first two bytes are the next header and the length. */
    struct option_walk walk = {.ctx = ctx, .offset = offset, .length = length, .at = 2};
    bpf_loop(IPV6_MAX_TLV_STEPS, ipv6_option_step, &walk, 0);
    return walk.valid;
}

/*
 * A fragment is malformed if it breaks what reassembly relies on: every
 * fragment but the last carries a multiple of 8 bytes (RFC 791, RFC 8200), none
 * ends past 65535 bytes (ping of death), a first fragment holds the whole
 * transport header (TCP 20 bytes, UDP 8, anything else at least 8; RFC 8200
 * 4.5, and RFC 1858's tiny fragments), and no TCP fragment starts at byte 8,
 * where it would overwrite the first fragment's flags (RFC 1858).
 */
static __always_inline enum parse_result check_fragment(const struct packet *pkt, __u32 length, __u32 offset_units,
                                                        int more)
{
    if (more && (length & 7))
        return PARSE_MALFORMED;
    if (offset_units * 8 + length > 65535)
        return PARSE_MALFORMED;
    if (offset_units == 0 && length < (pkt->flow.proto == IPPROTO_TCP ? 20 : 8))
        return PARSE_MALFORMED;
    if (offset_units == 1 && pkt->flow.proto == IPPROTO_TCP)
        return PARSE_MALFORMED;
    return PARSE_FRAGMENT;
}

/*
 * The quoted header inside an ICMP error is the packet the VIP (via a backend,
 * DSR) sent to the client: VIP -> client. The flow it belongs to is the
 * reverse, client -> VIP, and the quote must come from the ICMP's destination.
 * The quote ends where the ICMP packet's IP length says (ip_end), not at the
 * end of the frame: Ethernet padding is quoting nothing.
 */
static __always_inline enum parse_result parse_quoted_ipv4(struct packet *pkt, void *data, void *data_end, __u32 offset,
                                                           __u32 ip_end)
{
    if (offset > MAX_L4_OFFSET)
        return PARSE_MALFORMED;
    struct iphdr *inner = data + offset;
    if ((void *)(inner + 1) > data_end || offset + sizeof(*inner) > ip_end)
        return PARSE_MALFORMED;
    if (inner->version != 4 || inner->ihl < 5)
        return PARSE_MALFORMED;
    /* The quoted packet's own length must hold its header and the 8 transport bytes quoted. */
    if (bpf_ntohs(inner->tot_len) < inner->ihl * 4 + 8)
        return PARSE_MALFORMED;
    if (inner->saddr != pkt->flow.dst.v4)
        return PARSE_OTHER; /* quotes somebody else's packet */
    if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
        return PARSE_OTHER;
    if (inner->frag_off & bpf_htons(IPV4_FRAG_OFFSET_MASK))
        return PARSE_OTHER; /* a later fragment: what follows its header is no port */
    /* RFC 1122 3.2.2: an error quotes the IP header and at least 8 bytes of what follows. */
    __u32 quoted_l4 = offset + inner->ihl * 4;
    if (quoted_l4 > MAX_L4_OFFSET + 60 || quoted_l4 + 8 > ip_end)
        return PARSE_MALFORMED;
    __be16 sport, dport;
    if (parse_ports(data + quoted_l4, data_end, &sport, &dport))
        return PARSE_MALFORMED;
    pkt->flow.src.v4 = inner->daddr;
    pkt->flow.proto = inner->protocol;
    pkt->flow.sport = dport;
    pkt->flow.dport = sport;
    return PARSE_ICMP_TOO_BIG;
}

static __always_inline enum parse_result parse_quoted_ipv6(struct packet *pkt, void *data, void *data_end, __u32 offset,
                                                           __u32 ip_end)
{
    if (offset > MAX_L4_OFFSET)
        return PARSE_MALFORMED;
    struct ipv6hdr *inner = data + offset;
    if ((void *)(inner + 1) > data_end || offset + sizeof(*inner) + 8 > ip_end)
        return PARSE_MALFORMED;
    if (inner->version != 6 || bpf_ntohs(inner->payload_len) < 8)
        return PARSE_MALFORMED;
    union stickylb_addr quoted_source;
    copy_v6_addr(&quoted_source, &inner->saddr);
    if ((quoted_source.v6[0] ^ pkt->flow.dst.v6[0]) | (quoted_source.v6[1] ^ pkt->flow.dst.v6[1]) |
        (quoted_source.v6[2] ^ pkt->flow.dst.v6[2]) | (quoted_source.v6[3] ^ pkt->flow.dst.v6[3]))
        return PARSE_OTHER;
    if (inner->nexthdr != IPPROTO_TCP && inner->nexthdr != IPPROTO_UDP)
        return PARSE_OTHER;
    __be16 sport, dport;
    if (parse_ports(inner + 1, data_end, &sport, &dport))
        return PARSE_MALFORMED;
    copy_v6_addr(&pkt->flow.src, &inner->daddr);
    pkt->flow.proto = inner->nexthdr;
    pkt->flow.sport = dport;
    pkt->flow.dport = sport;
    return PARSE_ICMP_TOO_BIG;
}

static __always_inline enum parse_result parse_ipv4(struct packet *pkt, void *data, void *data_end)
{
    struct iphdr *ip = data + pkt->l3_offset;
    if ((void *)(ip + 1) > data_end)
        return PARSE_TRUNCATED_IP;
    pkt->flow.family = STICKYLB_FAMILY_IPV4;
    pkt->flow.src.v4 = ip->saddr;
    pkt->flow.dst.v4 = ip->daddr;
    pkt->flow.proto = ip->protocol;
    pkt->ip_tos = ip->tos;
    if (ip->version != 4)
        return PARSE_MALFORMED;
    __u32 header_length = ip->ihl * 4;
    __u32 total_length = bpf_ntohs(ip->tot_len);
    if (header_length < sizeof(*ip) || total_length < header_length ||
        pkt->l3_offset + total_length > (__u32)(data_end - data))
        return PARSE_MALFORMED;
    pkt->ip_length = total_length;
    pkt->option_offset[0] = pkt->l3_offset + sizeof(*ip);
    pkt->option_length[0] = header_length - sizeof(*ip);
    __u32 l4_offset = pkt->l3_offset + header_length;
    __u32 l4_length = total_length - header_length;
    if (ip->frag_off & bpf_htons(IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK))
        return check_fragment(pkt, l4_length, bpf_ntohs(ip->frag_off) & IPV4_FRAG_OFFSET_MASK,
                              !!(ip->frag_off & bpf_htons(IPV4_FLAG_MF)));
    if (ip->protocol == IPPROTO_ICMP) {
        struct icmphdr *icmp = data + l4_offset;
        if (l4_offset > MAX_L4_OFFSET || (void *)(icmp + 1) > data_end || l4_length < sizeof(*icmp))
            return PARSE_OTHER;
        if (icmp->type != ICMP_DEST_UNREACH || icmp->code != ICMP_FRAG_NEEDED)
            return PARSE_OTHER;
        return parse_quoted_ipv4(pkt, data, data_end, l4_offset + sizeof(*icmp), pkt->l3_offset + total_length);
    }
    return parse_l4(pkt, data, data_end, l4_offset, l4_length);
}

static __always_inline enum parse_result parse_ipv6(struct packet *pkt, void *data, void *data_end)
{
    struct ipv6hdr *ip = data + pkt->l3_offset;
    if ((void *)(ip + 1) > data_end)
        return PARSE_TRUNCATED_IP;
    pkt->flow.family = STICKYLB_FAMILY_IPV6;
    copy_v6_addr(&pkt->flow.src, &ip->saddr);
    copy_v6_addr(&pkt->flow.dst, &ip->daddr);
    pkt->ip_tos = (ip->priority << 4) | (ip->flow_lbl[0] >> 4);
    __u8 next_header = ip->nexthdr;
    pkt->flow.proto = next_header;
    __u32 payload_length = bpf_ntohs(ip->payload_len);
    /* Payload length 0 is a packet with nothing after its header (next header 59),
     * or a jumbogram, whose option the walk below refuses. */
    if (ip->version != 6 || pkt->l3_offset + sizeof(*ip) + payload_length > (__u32)(data_end - data))
        return PARSE_MALFORMED;
    pkt->ip_length = sizeof(*ip) + payload_length;
    __u32 offset = pkt->l3_offset + sizeof(*ip);
    __u32 ip_end = offset + payload_length;

#pragma unroll
    for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
        if (next_header != NEXTHDR_HOP && next_header != NEXTHDR_ROUTING && next_header != NEXTHDR_DEST &&
            next_header != NEXTHDR_FRAGMENT)
            break;
        if (offset > MAX_L4_OFFSET)
            return PARSE_MALFORMED;
        __u8 *ext = data + offset;
        if ((void *)(ext + 8) > data_end || offset + 8 > ip_end)
            return PARSE_MALFORMED;
        /* Hop-by-hop only right after the IPv6 header; a routing header with segments
         * left sends the packet on to another destination: not a packet for a VIP. */
        if ((next_header == NEXTHDR_HOP && i > 0) || (next_header == NEXTHDR_ROUTING && ext[3] != 0))
            return PARSE_MALFORMED;
        if (next_header == NEXTHDR_FRAGMENT) {
            __u16 offset_and_flags = bpf_ntohs(*(__be16 *)(ext + 2));
            next_header = ext[0];
            pkt->flow.proto = next_header;
            offset += 8;
            /* offset 0 without "more fragments" is an atomic fragment: a whole packet */
            if (offset_and_flags & 0xfff9)
                return check_fragment(pkt, ip_end - offset, offset_and_flags >> 3, offset_and_flags & 1);
            continue;
        }
        __u32 header_length = (ext[1] + 1) * 8;
        if (offset + header_length > ip_end)
            return PARSE_MALFORMED;
        if (next_header == NEXTHDR_HOP || next_header == NEXTHDR_DEST) {
            pkt->option_offset[i] = offset;
            pkt->option_length[i] = header_length;
        }
        next_header = ext[0];
        pkt->flow.proto = next_header;
        offset += header_length;
    }
    if (next_header == NEXTHDR_HOP || next_header == NEXTHDR_ROUTING || next_header == NEXTHDR_DEST ||
        next_header == NEXTHDR_FRAGMENT)
        return PARSE_OTHER; /* a chain longer than we walk: its transport is unknown */
    if (next_header == IPPROTO_ICMPV6) {
        struct icmp6hdr *icmp = data + offset;
        if (offset > MAX_L4_OFFSET || (void *)(icmp + 1) > data_end || offset + sizeof(*icmp) > ip_end)
            return PARSE_OTHER;
        if (icmp->icmp6_type != ICMPV6_PKT_TOOBIG)
            return PARSE_OTHER;
        return parse_quoted_ipv6(pkt, data, data_end, offset + sizeof(*icmp), ip_end);
    }
    return parse_l4(pkt, data, data_end, offset, ip_end - offset);
}

/* The option areas the header walk met, checked now: a packet the walk found well formed is
 * malformed after all if one of them is. */
static __always_inline enum parse_result check_options(struct xdp_md *ctx, struct packet *pkt, enum parse_result result)
{
    if (result == PARSE_MALFORMED || result == PARSE_TRUNCATED_IP)
        return result;
#pragma unroll
    for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
        if (pkt->option_length[i] == 0)
            continue;
        const int valid = pkt->flow.family == STICKYLB_FAMILY_IPV4
                              ? stickylb_ipv4_options_valid(ctx, pkt->option_offset[i], pkt->option_length[i])
                              : stickylb_ipv6_options_valid(ctx, pkt->option_offset[i], pkt->option_length[i]);
        if (!valid)
            return PARSE_MALFORMED;
    }
    return result;
}

static __always_inline enum parse_result parse_packet(struct xdp_md *ctx, struct packet *pkt)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return PARSE_NOT_IP;
    __be16 ether_type = eth->h_proto;
    pkt->l3_offset = sizeof(*eth);
    if (ether_type == bpf_htons(ETH_P_8021Q)) {
        __be16 *vlan = (void *)(eth + 1);
        if ((void *)(vlan + 2) > data_end)
            return PARSE_NOT_IP;
        pkt->has_vlan = 1;
        pkt->vlan_tci = vlan[0];
        ether_type = vlan[1];
        pkt->l3_offset += 4;
    }
    if (ether_type == bpf_htons(ETH_P_IP))
        return check_options(ctx, pkt, parse_ipv4(pkt, data, data_end));
    if (ether_type == bpf_htons(ETH_P_IPV6))
        return check_options(ctx, pkt, parse_ipv6(pkt, data, data_end));
    return PARSE_NOT_IP; /* includes QinQ: a second tag is not ours to parse */
}

#endif /* STICKYLB_BPF_PARSING_H */
