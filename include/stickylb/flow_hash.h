/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The hash that maps a flow (or a masked client address) to a ring slot.
 * Shared by the XDP program and userspace so tools and tests can tell which
 * slot a packet lands on. Murmur3-style word mixing: a handful of multiplies
 * per word, cheaper than jhash on the per-packet path and as well spread.
 */
#ifndef STICKYLB_FLOW_HASH_H
#define STICKYLB_FLOW_HASH_H

#include <linux/types.h>

#include "stickylb/abi.h"

static inline __u32 stickylb_rotl32(__u32 x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static inline __u32 stickylb_hash_mix(__u32 h, __u32 word)
{
    word *= 0xcc9e2d51u;
    word = stickylb_rotl32(word, 15);
    word *= 0x1b873593u;
    h ^= word;
    h = stickylb_rotl32(h, 13);
    return h * 5 + 0xe6546b64u;
}

static inline __u32 stickylb_hash_final(__u32 h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* addr words as stored (network order); v4 uses only the first word. */
static inline __u32 stickylb_hash_addr(__u32 h, const __u32 *addr_words, __u8 family)
{
    h = stickylb_hash_mix(h, addr_words[0]);
    if (family == 6) {
        h = stickylb_hash_mix(h, addr_words[1]);
        h = stickylb_hash_mix(h, addr_words[2]);
        h = stickylb_hash_mix(h, addr_words[3]);
    }
    return h;
}

static inline __u32 stickylb_hash_flow(__u32 seed, const __u32 *src_words, const __u32 *dst_words, __u16 sport,
                                       __u16 dport, __u8 proto, __u8 family)
{
    __u32 h = stickylb_hash_addr(seed, src_words, family);
    h = stickylb_hash_addr(h, dst_words, family);
    h = stickylb_hash_mix(h, ((__u32)sport << 16) | dport);
    h = stickylb_hash_mix(h, proto);
    return stickylb_hash_final(h);
}

static inline __u32 stickylb_hash_client(__u32 seed, const __u32 *masked_src_words, __u8 family)
{
    return stickylb_hash_final(stickylb_hash_addr(seed, masked_src_words, family));
}

/*
 * Table indexes on the fast path (VIP filter bit, flow-cache slot) need spread,
 * not strength: XOR-fold the words (an IPv4 address is zero past its first word,
 * so one expression serves both families) and keep the top bits of a Fibonacci
 * multiply. A crafted collision only costs its sender a cache miss.
 */
static inline __u32 stickylb_fold_addr(const __u32 *addr_words)
{
    return addr_words[0] ^ addr_words[1] ^ addr_words[2] ^ addr_words[3];
}

/* Bit of the VIP filter for (address, port in network order, protocol). */
static inline __u32 stickylb_vip_filter_bit(const __u32 *addr_words, __u16 port, __u8 proto)
{
    const __u32 folded = stickylb_fold_addr(addr_words) ^ ((__u32)port << 16 | proto);
    return (folded * 0x9e3779b1u) >> (32 - 20);
}

/* The folded fields go through the mixer one by one: plain XOR let correlated
 * fields (client address and port rising together) cancel out. */
static inline __u32 stickylb_flow_cache_slot(const __u32 *src_words, const __u32 *dst_words, __u16 sport, __u16 dport,
                                             __u8 proto)
{
    __u32 h = stickylb_hash_mix(stickylb_fold_addr(src_words), stickylb_fold_addr(dst_words));
    h = stickylb_hash_mix(h, ((__u32)sport << 16 | dport) ^ ((__u32)proto << 8));
    return (h * 0x9e3779b1u) >> (32 - 12);
}

#endif /* STICKYLB_FLOW_HASH_H */
