// SPDX-License-Identifier: Apache-2.0
#pragma once
// A second, independent reading of a frame: what the data plane must make of it,
// written from the rules (RFC 791/8200/1858 and the limits in bpf/parsing.h's header
// comment), not from the BPF code. Plain byte offsets, no shared code with bpf/.
// The packet fuzz test compares every verdict of the XDP program with it.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "stickylb/abi.h"

namespace stickylb::testing::reference {

enum class Kind {
    not_ip,        // not IPv4/IPv6 over Ethernet with at most one 802.1Q tag
    truncated,     // IP, but the fixed IP header is not all there
    malformed,     // addresses readable, the rest inconsistent
    flow,          // TCP/UDP with a full, consistent header
    fragment,      // a consistent fragment: addresses and protocol, no ports
    icmp_too_big,  // ICMP frag-needed / ICMPv6 packet-too-big quoting a TCP/UDP packet of the destination
    other,         // well formed, but nothing a VIP could match (other protocols, other ICMP)
};

struct Reading {
    Kind kind = Kind::not_ip;
    std::size_t l3 = 0;       // offset of the IP header
    std::uint8_t family = 0;  // STICKYLB_FAMILY_*
    stickylb_addr source{};   // for icmp_too_big: the quoted packet's destination (the client)
    stickylb_addr destination{};
    std::uint8_t protocol = 0;           // L4 protocol (of the quote, for icmp_too_big)
    std::uint16_t source_port = 0;       // host order; the client's side for icmp_too_big
    std::uint16_t destination_port = 0;  // host order; the VIP's side for icmp_too_big
    std::size_t ip_length = 0;           // what the IP header claims (IPv6: 40 + payload length)
    std::size_t l4 = 0;                  // offset of the L4 header, once known
};

namespace detail {
inline constexpr std::size_t kMaxL4Offset = 256;  // frame offset; deeper is not parsed
inline constexpr int kMaxExtensionHeaders = 8;    // a longer chain: transport unknown, other

inline std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

inline void copy_address(stickylb_addr& to, const std::uint8_t* from, std::size_t length) {
    to = stickylb_addr{};
    for (std::size_t i = 0; i < length; ++i)
        to.bytes[i] = from[i];
}

// RFC 791/8200: all fragments but the last carry a multiple of 8 bytes; none ends past 65535;
// RFC 8200 4.5 (and RFC 1858's tiny fragments): a first fragment holds the whole transport
// header, 20 bytes of TCP, 8 of anything else; RFC 1858: no TCP fragment at offset 8.
inline bool fragment_consistent(std::size_t length, std::uint32_t offset_units, bool more, std::uint8_t protocol) {
    if (more && length % 8 != 0)
        return false;
    if (offset_units * 8 + length > 65535)
        return false;
    if (offset_units == 0 && length < (protocol == 6 ? 20u : 8u))
        return false;
    return !(offset_units == 1 && protocol == 6);
}

// IPv4 options (RFC 791) as Linux's ip_options_compile takes them on receive: end of list
// (0) stops, no-operation (1) is one byte, any other option has a length byte of at least 2
// and fits the header; loose and strict source routes (131, 137) are dropped, since
// accept_source_route is off by default.
inline bool ipv4_options_fine(const std::vector<std::uint8_t>& f, std::size_t start, std::size_t end) {
    std::size_t at = start;
    while (at < end) {
        const std::uint8_t type = f[at];
        if (type == 0)
            return true;
        if (type == 1) {
            ++at;
            continue;
        }
        if (at + 1 >= end)
            return false;
        const std::size_t length = f[at + 1];
        if (length < 2 || at + length > end || type == 131 || type == 137)
            return false;
        at += length;
    }
    return true;
}

// The TLVs of a hop-by-hop or destination-options header (RFC 8200 4.2) at
// [start, end), as Linux's ip6_parse_tlv takes them: they tile the header; Pad1 and PadN
// together at most 7 bytes in a row; at most 8 other options; no jumbo payload option
// (0xc2: a jumbogram does not fit a frame; beside a payload length, RFC 2675 says error).
inline bool ipv6_options_fine(const std::vector<std::uint8_t>& f, std::size_t start, std::size_t end) {
    std::size_t at = start + 2, padding = 0, options = 0;
    while (at < end) {
        if (f[at] == 0) {
            if (++padding > 7)
                return false;
            ++at;
            continue;
        }
        if (at + 2 > end)
            return false;
        const std::size_t length = 2u + f[at + 1];
        if (at + length > end)
            return false;
        if (f[at] == 1) {
            padding += length;
            if (padding > 7)
                return false;
        } else {
            if (f[at] == 0xc2 || ++options > 8)
                return false;
            padding = 0;
        }
        at += length;
    }
    return true;
}

// TCP/UDP at l4, ip_end being where the IP packet ends.
inline Kind transport(Reading& r, const std::vector<std::uint8_t>& f, std::size_t l4, std::size_t ip_end) {
    r.l4 = l4;
    if (r.protocol != 6 && r.protocol != 17)
        return Kind::other;
    if (l4 > kMaxL4Offset)
        return Kind::malformed;
    const std::size_t available = ip_end - l4;
    if (r.protocol == 6) {
        if (available < 20)
            return Kind::malformed;
        const std::size_t header = (f[l4 + 12] >> 4) * 4u;
        if (header < 20 || header > available)
            return Kind::malformed;
    } else {
        if (available < 8)
            return Kind::malformed;
        const std::size_t length = be16(&f[l4 + 4]);
        if (length < 8 || length > available)
            return Kind::malformed;
    }
    r.source_port = be16(&f[l4]);
    r.destination_port = be16(&f[l4 + 2]);
    return Kind::flow;
}

// The quote of an ICMP error at q: the VIP's (via a backend) reply to the client, whose
// flow, turned around, is client -> VIP. ip_end bounds it: Ethernet padding quotes nothing.
inline Kind quote(Reading& r, const std::vector<std::uint8_t>& f, std::size_t q, std::size_t ip_end, bool v4) {
    if (q > kMaxL4Offset)
        return Kind::malformed;
    const std::size_t fixed = v4 ? 20 : 40;
    if (q + fixed > ip_end || (!v4 && q + fixed + 8 > ip_end))
        return Kind::malformed;
    if ((f[q] >> 4) != (v4 ? 4 : 6))
        return Kind::malformed;
    // RFC 1122 3.2.2: the quote holds the IP header and at least 8 bytes of what follows,
    // and the quoted header's own length must hold them too.
    if (!v4 && be16(&f[q + 4]) < 8)
        return Kind::malformed;
    std::size_t quoted_l4 = q + 40;
    std::uint8_t protocol = f[q + 6];
    const std::uint8_t* quoted_source = &f[q + 8];
    const std::uint8_t* quoted_destination = &f[q + 24];
    if (v4) {
        const std::size_t header = (f[q] & 0x0f) * 4u;
        if (header < 20 || be16(&f[q + 2]) < header + 8)
            return Kind::malformed;
        quoted_l4 = q + header;
        protocol = f[q + 9];
        quoted_source = &f[q + 12];
        quoted_destination = &f[q + 16];
    }
    for (std::size_t i = 0; i < (v4 ? 4u : 16u); ++i)
        if (quoted_source[i] != r.destination.bytes[i])
            return Kind::other;  // somebody else's packet
    if (protocol != 6 && protocol != 17)
        return Kind::other;
    if (v4 && (be16(&f[q + 6]) & 0x1fff) != 0)
        return Kind::other;  // a later fragment: no ports in it
    if (quoted_l4 + 8 > ip_end)
        return Kind::malformed;
    copy_address(r.source, quoted_destination, v4 ? 4 : 16);
    r.protocol = protocol;
    r.source_port = be16(&f[quoted_l4 + 2]);
    r.destination_port = be16(&f[quoted_l4]);
    return Kind::icmp_too_big;
}

inline Kind ipv4(Reading& r, const std::vector<std::uint8_t>& f) {
    const std::size_t l3 = r.l3;
    if (l3 + 20 > f.size())
        return Kind::truncated;
    r.family = STICKYLB_FAMILY_IPV4;
    copy_address(r.source, &f[l3 + 12], 4);
    copy_address(r.destination, &f[l3 + 16], 4);
    r.protocol = f[l3 + 9];
    const std::size_t header = (f[l3] & 0x0f) * 4u;
    const std::size_t total = be16(&f[l3 + 2]);
    if ((f[l3] >> 4) != 4 || header < 20 || total < header || l3 + total > f.size())
        return Kind::malformed;
    r.ip_length = total;
    if (!ipv4_options_fine(f, l3 + 20, l3 + header))
        return Kind::malformed;
    const std::size_t l4 = l3 + header;
    const std::size_t ip_end = l3 + total;
    const std::uint16_t fragment = be16(&f[l3 + 6]);
    const bool more = fragment & 0x2000;
    const std::uint32_t offset_units = fragment & 0x1fff;
    if (more || offset_units != 0)
        return fragment_consistent(total - header, offset_units, more, r.protocol) ? Kind::fragment : Kind::malformed;
    if (r.protocol == 1) {
        r.l4 = l4;
        if (ip_end - l4 < 8)
            return Kind::other;
        if (f[l4] != 3 || f[l4 + 1] != 4)
            return Kind::other;
        return quote(r, f, l4 + 8, ip_end, true);
    }
    return transport(r, f, l4, ip_end);
}

inline Kind ipv6(Reading& r, const std::vector<std::uint8_t>& f) {
    const std::size_t l3 = r.l3;
    if (l3 + 40 > f.size())
        return Kind::truncated;
    r.family = STICKYLB_FAMILY_IPV6;
    copy_address(r.source, &f[l3 + 8], 16);
    copy_address(r.destination, &f[l3 + 24], 16);
    std::uint8_t next = f[l3 + 6];
    r.protocol = next;
    const std::size_t payload = be16(&f[l3 + 4]);
    // Payload length 0: nothing after the header (next header 59), or a jumbogram, whose
    // option is refused below.
    if ((f[l3] >> 4) != 6 || l3 + 40 + payload > f.size())
        return Kind::malformed;
    r.ip_length = 40 + payload;
    const std::size_t ip_end = l3 + 40 + payload;
    std::size_t offset = l3 + 40;
    auto is_extension = [](std::uint8_t header) { return header == 0 || header == 43 || header == 60 || header == 44; };
    for (int i = 0; i < kMaxExtensionHeaders && is_extension(next); ++i) {
        if (offset > kMaxL4Offset || offset + 8 > ip_end)
            return Kind::malformed;
        if ((next == 0 && i > 0) || (next == 43 && f[offset + 3] != 0))
            return Kind::malformed;  // hop-by-hop not first; a route that goes on elsewhere
        const std::uint8_t header = next;
        next = f[offset];
        r.protocol = next;
        if (header == 44) {
            const std::uint16_t offset_and_flags = be16(&f[offset + 2]);
            offset += 8;
            if ((offset_and_flags & 0xfff9) != 0)
                return fragment_consistent(ip_end - offset, offset_and_flags >> 3, offset_and_flags & 1, next)
                           ? Kind::fragment
                           : Kind::malformed;
            continue;  // an atomic fragment is a whole packet
        }
        const std::size_t length = (f[offset + 1] + 1u) * 8u;
        if (offset + length > ip_end)
            return Kind::malformed;
        if ((header == 0 || header == 60) && !ipv6_options_fine(f, offset, offset + length))
            return Kind::malformed;
        offset += length;
    }
    if (is_extension(next))
        return Kind::other;  // a chain longer than walked: its transport is unknown
    if (next == 58) {
        r.l4 = offset;
        if (offset > kMaxL4Offset || offset + 8 > ip_end)
            return Kind::other;
        if (f[offset] != 2)
            return Kind::other;
        return quote(r, f, offset + 8, ip_end, false);
    }
    return transport(r, f, offset, ip_end);
}
}  // namespace detail

inline Reading read(const std::vector<std::uint8_t>& frame) {
    Reading r;
    if (frame.size() < 14)
        return r;
    std::size_t l3 = 14;
    std::uint16_t ether_type = detail::be16(&frame[12]);
    if (ether_type == 0x8100) {
        if (frame.size() < 18)
            return r;
        ether_type = detail::be16(&frame[16]);
        l3 = 18;
    }
    r.l3 = l3;
    if (ether_type == 0x0800)
        r.kind = detail::ipv4(r, frame);
    else if (ether_type == 0x86dd)
        r.kind = detail::ipv6(r, frame);
    return r;
}

}  // namespace stickylb::testing::reference
