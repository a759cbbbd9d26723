// SPDX-License-Identifier: Apache-2.0
#pragma once
// Builds test packets byte by byte (with real checksums) and the packets the
// data plane should emit, so fixtures compare whole frames, and runs them
// through the XDP program with BPF_PROG_TEST_RUN.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/address.h"
#include "stickylb/abi.h"

namespace stickylb::testing {

using Bytes = std::vector<std::uint8_t>;

inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpPsh = 0x08;
inline constexpr std::uint8_t kTcpAck = 0x10;

struct PacketSpec {
    MacAddress source_mac = MacAddress::parse("02:00:00:00:00:0c");
    MacAddress destination_mac = MacAddress::parse("02:00:00:00:00:1b");  // the LB
    std::optional<std::uint16_t> vlan_id;
    IpAddress source = IpAddress::parse("198.51.100.7");
    IpAddress destination = IpAddress::parse("192.0.2.10");
    std::uint8_t protocol = 6;  // IPPROTO_TCP
    std::uint16_t source_port = 40000;
    std::uint16_t destination_port = 80;
    std::uint8_t tcp_flags = kTcpSyn;
    std::size_t payload_bytes = 0;
    Bytes ipv4_options;            // multiple of 4 bytes
    bool ipv6_hop_by_hop = false;  // an 8-byte hop-by-hop header before L4
    // Fragmentation: IPv4 flags/offset, or an IPv6 fragment header.
    bool more_fragments = false;
    std::uint16_t fragment_offset_units = 0;  // in 8-byte units
    std::uint8_t ttl = 64;
};

// Ethernet frame for spec.
Bytes build_packet(const PacketSpec& spec);

// Offset of the IP header in a frame built from spec (14 or 18).
std::size_t l3_offset(const PacketSpec& spec);

// ICMP "fragmentation needed" (v4) / "packet too big" (v6) from router to the VIP,
// quoting the first bytes of the reply the VIP sent to the client in spec.
Bytes build_icmp_too_big(const PacketSpec& client_to_vip, const IpAddress& router, std::uint16_t mtu);

// Ethernet frame carrying an ICMP (v4) / ICMPv6 (v6) message from spec.source to
// spec.destination (spec.protocol and payload_bytes are ignored). message starts with
// type and code; its checksum field (bytes 2-3) is filled in.
Bytes build_icmp(const PacketSpec& spec, const Bytes& message);

// Expected output: the frame with its MACs rewritten.
Bytes with_macs(Bytes frame, const MacAddress& source, const MacAddress& destination);

// Expected output of IPIP forwarding: outer header inserted after Ethernet (+VLAN).
Bytes encapsulated(const Bytes& frame, const PacketSpec& spec, const IpAddress& outer_source,
                   const IpAddress& outer_destination, const MacAddress& source, const MacAddress& destination);

std::uint16_t internet_checksum(const std::uint8_t* data, std::size_t length, std::uint32_t initial = 0);

// A big-endian 16-bit field of a frame (bounds-checked), and a frame as hex for messages.
void set16(Bytes& frame, std::size_t offset, std::uint16_t value);
std::uint16_t get16(const Bytes& frame, std::size_t offset);
std::string hex(const Bytes& bytes);

// The flow-table key of the packet spec describes (zero padding, ports in network order).
stickylb_flow_key flow_key_of(const PacketSpec& spec);

struct XdpRun {
    int action = -1;
    Bytes output;
};
// Runs one packet once (repeat 1: the output is of exactly this input).
XdpRun run_xdp(int program_fd, const Bytes& packet);

}  // namespace stickylb::testing
