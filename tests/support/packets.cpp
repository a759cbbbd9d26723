// SPDX-License-Identifier: Apache-2.0
#include "support/packets.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>

#include <cstring>
#include <stdexcept>

#include "base/errors.h"

namespace stickylb::testing {
namespace {

void put16(Bytes& out, std::uint16_t value) {
    out.push_back(static_cast<std::uint8_t>(value >> 8));
    out.push_back(static_cast<std::uint8_t>(value));
}

void put_bytes(Bytes& out, const std::uint8_t* data, std::size_t length) { out.insert(out.end(), data, data + length); }

std::size_t address_length(const IpAddress& address) { return address.is_v4() ? 4 : 16; }

std::uint32_t pseudo_header_sum(const IpAddress& source, const IpAddress& destination, std::uint8_t protocol,
                                std::size_t length) {
    Bytes pseudo;
    put_bytes(pseudo, source.bytes().data(), address_length(source));
    put_bytes(pseudo, destination.bytes().data(), address_length(destination));
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < pseudo.size(); i += 2)
        sum += static_cast<std::uint32_t>(pseudo[i] << 8 | pseudo[i + 1]);
    return sum + protocol + static_cast<std::uint32_t>(length);
}

void put_ethernet(Bytes& out, const PacketSpec& spec, std::uint16_t ether_type) {
    put_bytes(out, spec.destination_mac.bytes().data(), 6);
    put_bytes(out, spec.source_mac.bytes().data(), 6);
    if (spec.vlan_id) {
        put16(out, 0x8100);
        put16(out, *spec.vlan_id);
    }
    put16(out, ether_type);
}

// L4 header and payload, checksummed; icmp_body is used for ICMP.
Bytes build_l4(const PacketSpec& spec, const Bytes& icmp_body) {
    Bytes l4;
    if (spec.protocol == IPPROTO_TCP) {
        put16(l4, spec.source_port);
        put16(l4, spec.destination_port);
        for (int i = 0; i < 8; ++i)
            l4.push_back(static_cast<std::uint8_t>(i + 1));  // seq, ack
        l4.push_back(5 << 4);
        l4.push_back(spec.tcp_flags);
        put16(l4, 64240);
        put16(l4, 0);  // checksum
        put16(l4, 0);  // urgent
    } else if (spec.protocol == IPPROTO_UDP) {
        put16(l4, spec.source_port);
        put16(l4, spec.destination_port);
        put16(l4, static_cast<std::uint16_t>(8 + spec.payload_bytes));
        put16(l4, 0);
    } else {
        l4 = icmp_body;
    }
    for (std::size_t i = 0; i < spec.payload_bytes; ++i)
        l4.push_back(static_cast<std::uint8_t>('a' + i % 26));
    const bool icmp = spec.protocol == IPPROTO_ICMP || spec.protocol == IPPROTO_ICMPV6;
    const std::size_t checksum_offset = spec.protocol == IPPROTO_TCP ? 16 : spec.protocol == IPPROTO_UDP ? 6 : 2;
    if (l4.size() >= checksum_offset + 2) {
        const std::uint32_t initial = spec.protocol == IPPROTO_ICMP
                                          ? 0
                                          : pseudo_header_sum(spec.source, spec.destination, spec.protocol, l4.size());
        std::uint16_t checksum = internet_checksum(l4.data(), l4.size(), initial);
        if (!icmp && checksum == 0 && spec.protocol == IPPROTO_UDP)
            checksum = 0xffff;
        set16(l4, checksum_offset, checksum);
    }
    return l4;
}

Bytes ipv4_header(const PacketSpec& spec, std::size_t payload_length) {
    Bytes ip;
    const std::size_t header_length = 20 + spec.ipv4_options.size();
    ip.push_back(static_cast<std::uint8_t>(0x40 | header_length / 4));
    ip.push_back(0);
    put16(ip, static_cast<std::uint16_t>(header_length + payload_length));
    put16(ip, 0x1234);
    put16(ip, static_cast<std::uint16_t>((spec.more_fragments ? 0x2000 : 0) | spec.fragment_offset_units));
    ip.push_back(spec.ttl);
    ip.push_back(spec.protocol);
    put16(ip, 0);
    put_bytes(ip, spec.source.bytes().data(), 4);
    put_bytes(ip, spec.destination.bytes().data(), 4);
    ip.insert(ip.end(), spec.ipv4_options.begin(), spec.ipv4_options.end());
    set16(ip, 10, internet_checksum(ip.data(), ip.size()));
    return ip;
}

Bytes ipv6_header(const PacketSpec& spec, const Bytes& l4) {
    Bytes extensions;
    std::uint8_t next = spec.protocol;
    const bool fragmented = spec.more_fragments || spec.fragment_offset_units != 0;
    if (fragmented) {
        extensions.push_back(next);
        extensions.push_back(0);
        put16(extensions, static_cast<std::uint16_t>(spec.fragment_offset_units << 3 | (spec.more_fragments ? 1 : 0)));
        for (int i = 0; i < 4; ++i)
            extensions.push_back(0x42);  // identification
        next = 44;
    }
    if (spec.ipv6_hop_by_hop) {
        Bytes hop{next, 0, 1, 4, 0, 0, 0, 0};  // PadN option filling 8 bytes
        extensions.insert(extensions.begin(), hop.begin(), hop.end());
        next = 0;
    }
    Bytes ip;
    ip.push_back(0x60);
    ip.push_back(0);
    put16(ip, 0);
    put16(ip, static_cast<std::uint16_t>(extensions.size() + l4.size()));
    ip.push_back(next);
    ip.push_back(spec.ttl);
    put_bytes(ip, spec.source.bytes().data(), 16);
    put_bytes(ip, spec.destination.bytes().data(), 16);
    ip.insert(ip.end(), extensions.begin(), extensions.end());
    return ip;
}

Bytes build_ip_packet(const PacketSpec& spec, const Bytes& icmp_body = {}) {
    const Bytes l4 = build_l4(spec, icmp_body);
    Bytes ip = spec.source.is_v4() ? ipv4_header(spec, l4.size()) : ipv6_header(spec, l4);
    ip.insert(ip.end(), l4.begin(), l4.end());
    return ip;
}

}  // namespace

void set16(Bytes& frame, std::size_t offset, std::uint16_t value) {
    frame.at(offset) = static_cast<std::uint8_t>(value >> 8);
    frame.at(offset + 1) = static_cast<std::uint8_t>(value);
}

std::uint16_t get16(const Bytes& frame, std::size_t offset) {
    return static_cast<std::uint16_t>(frame.at(offset) << 8 | frame.at(offset + 1));
}

std::string hex(const Bytes& bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string text;
    for (const std::uint8_t byte : bytes) {
        text += digits[byte >> 4];
        text += digits[byte & 0xf];
    }
    return text;
}

std::uint16_t internet_checksum(const std::uint8_t* data, std::size_t length, std::uint32_t initial) {
    std::uint32_t sum = initial;
    for (std::size_t i = 0; i + 1 < length; i += 2)
        sum += static_cast<std::uint32_t>(data[i] << 8 | data[i + 1]);
    if (length % 2)
        sum += static_cast<std::uint32_t>(data[length - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

std::size_t l3_offset(const PacketSpec& spec) { return spec.vlan_id ? 18 : 14; }

Bytes build_packet(const PacketSpec& spec) {
    if (spec.source.family() != spec.destination.family())
        throw std::invalid_argument("packet spec mixes address families");
    Bytes frame;
    put_ethernet(frame, spec, spec.source.is_v4() ? 0x0800 : 0x86dd);
    const Bytes ip = build_ip_packet(spec);
    frame.insert(frame.end(), ip.begin(), ip.end());
    return frame;
}

Bytes build_icmp_too_big(const PacketSpec& client_to_vip, const IpAddress& router, std::uint16_t mtu) {
    PacketSpec reply = client_to_vip;  // the VIP's answer, which a router could not forward
    std::swap(reply.source, reply.destination);
    std::swap(reply.source_port, reply.destination_port);
    reply.tcp_flags = kTcpAck;
    reply.payload_bytes = 64;
    const Bytes quoted_full = build_ip_packet(reply);
    const std::size_t quoted_length = reply.source.is_v4() ? 28 + reply.ipv4_options.size() : 48;
    const Bytes quoted(quoted_full.begin(), quoted_full.begin() + static_cast<long>(quoted_length));

    Bytes body;
    const bool v4 = client_to_vip.source.is_v4();
    body.push_back(v4 ? 3 : 2);  // dest unreachable / packet too big
    body.push_back(v4 ? 4 : 0);  // fragmentation needed
    put16(body, 0);
    if (v4) {
        put16(body, 0);
        put16(body, mtu);
    } else {
        put16(body, 0);
        put16(body, mtu);
    }
    body.insert(body.end(), quoted.begin(), quoted.end());

    PacketSpec icmp = client_to_vip;
    icmp.source = router;
    icmp.protocol = static_cast<std::uint8_t>(v4 ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6});
    icmp.payload_bytes = 0;
    icmp.ipv4_options.clear();
    Bytes frame;
    put_ethernet(frame, icmp, v4 ? 0x0800 : 0x86dd);
    const Bytes ip = build_ip_packet(icmp, body);
    frame.insert(frame.end(), ip.begin(), ip.end());
    return frame;
}

Bytes build_icmp(const PacketSpec& spec, const Bytes& message) {
    if (spec.source.family() != spec.destination.family())
        throw std::invalid_argument("packet spec mixes address families");
    if (message.size() < 4)
        throw std::invalid_argument("an ICMP message has at least type, code and checksum");
    PacketSpec icmp = spec;
    const bool v4 = spec.source.is_v4();
    icmp.protocol = static_cast<std::uint8_t>(v4 ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6});
    icmp.payload_bytes = 0;
    Bytes body = message;
    body[2] = body[3] = 0;
    Bytes frame;
    put_ethernet(frame, icmp, v4 ? 0x0800 : 0x86dd);
    const Bytes ip = build_ip_packet(icmp, body);
    frame.insert(frame.end(), ip.begin(), ip.end());
    return frame;
}

Bytes with_macs(Bytes frame, const MacAddress& source, const MacAddress& destination) {
    std::memcpy(frame.data(), destination.bytes().data(), 6);
    std::memcpy(frame.data() + 6, source.bytes().data(), 6);
    return frame;
}

Bytes encapsulated(const Bytes& frame, const PacketSpec& spec, const IpAddress& outer_source,
                   const IpAddress& outer_destination, const MacAddress& source, const MacAddress& destination) {
    const std::size_t l3 = l3_offset(spec);
    const Bytes inner(frame.begin() + static_cast<long>(l3), frame.end());
    const bool inner_v4 = spec.source.is_v4();
    const std::uint8_t inner_protocol = inner_v4 ? 4 : 41;
    const std::uint8_t tos = inner_v4 ? inner[1] : static_cast<std::uint8_t>((inner[0] & 0x0f) << 4 | inner[1] >> 4);
    Bytes outer;
    if (outer_destination.is_v4()) {
        outer = {0x45, tos};
        put16(outer, static_cast<std::uint16_t>(20 + inner.size()));
        put16(outer, 0);
        put16(outer, 0);
        outer.push_back(64);
        outer.push_back(inner_protocol);
        put16(outer, 0);
        put_bytes(outer, outer_source.bytes().data(), 4);
        put_bytes(outer, outer_destination.bytes().data(), 4);
        set16(outer, 10, internet_checksum(outer.data(), outer.size()));
    } else {
        // version, traffic class, flow label (the flow label carries the flow hash: taken from
        // outer_source's last word, which the data plane fills with the same hash)
        const auto& hash = outer_source.bytes();
        outer.push_back(static_cast<std::uint8_t>(0x60 | tos >> 4));
        outer.push_back(static_cast<std::uint8_t>((tos & 0x0f) << 4 | (hash[13] & 0x0f)));
        outer.push_back(hash[14]);
        outer.push_back(hash[15]);
        put16(outer, static_cast<std::uint16_t>(inner.size()));
        outer.push_back(inner_protocol);
        outer.push_back(64);
        put_bytes(outer, outer_source.bytes().data(), 16);
        put_bytes(outer, outer_destination.bytes().data(), 16);
    }
    Bytes result;
    put_bytes(result, destination.bytes().data(), 6);
    put_bytes(result, source.bytes().data(), 6);
    if (spec.vlan_id) {
        put16(result, 0x8100);
        put16(result, *spec.vlan_id);
    }
    put16(result, outer_destination.is_v4() ? 0x0800 : 0x86dd);
    result.insert(result.end(), outer.begin(), outer.end());
    result.insert(result.end(), inner.begin(), inner.end());
    return result;
}

stickylb_flow_key flow_key_of(const PacketSpec& spec) {
    stickylb_flow_key key;
    std::memset(&key, 0, sizeof(key));
    key.src = spec.source.to_abi();
    key.dst = spec.destination.to_abi();
    key.sport = htons(spec.source_port);
    key.dport = htons(spec.destination_port);
    key.proto = spec.protocol;
    key.family = spec.source.family();
    return key;
}

XdpRun run_xdp(int program_fd, const Bytes& packet) {
    XdpRun run;
    run.output.resize(packet.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = packet.data(), .data_out = run.output.data(),
                .data_size_in = static_cast<std::uint32_t>(packet.size()),
                .data_size_out = static_cast<std::uint32_t>(run.output.size()), .repeat = 1);
    check_libbpf(bpf_prog_test_run_opts(program_fd, &options), "BPF_PROG_TEST_RUN");
    run.action = static_cast<int>(options.retval);
    run.output.resize(options.data_size_out);
    return run;
}

}  // namespace stickylb::testing
