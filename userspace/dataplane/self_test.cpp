// SPDX-License-Identifier: Apache-2.0
#include "dataplane/self_test.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

#include "dataplane/dataplane.h"

namespace stickylb {

namespace {

constexpr std::array<std::uint8_t, 6> kProbeSourceMac{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01};
constexpr std::array<std::uint8_t, 4> kProbeSource4{192, 0, 2, 1};
constexpr std::array<std::uint8_t, 16> kProbeSource6{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
constexpr std::uint16_t kProbeSourcePort = 40000;

void put16(std::vector<std::uint8_t>& frame, std::size_t offset, std::uint16_t value) {
    frame[offset] = static_cast<std::uint8_t>(value >> 8);
    frame[offset + 1] = static_cast<std::uint8_t>(value);
}

std::uint16_t ipv4_checksum(const std::uint8_t* header) {
    std::uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += static_cast<std::uint32_t>(header[i] << 8 | header[i + 1]);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

}  // namespace

std::vector<std::uint8_t> probe_frame(const MacAddress& interface_mac, const IpAddress& vip, std::uint16_t port,
                                      std::uint8_t protocol) {
    const bool v4 = vip.is_v4();
    const std::size_t ip_length = v4 ? 20 : 40;
    const std::size_t l4_length = protocol == IPPROTO_TCP ? 20 : 8;
    std::vector<std::uint8_t> frame(14 + ip_length + l4_length, 0);
    std::memcpy(frame.data(), interface_mac.bytes().data(), 6);
    std::memcpy(frame.data() + 6, kProbeSourceMac.data(), 6);
    put16(frame, 12, v4 ? 0x0800 : 0x86dd);
    std::uint8_t* ip = frame.data() + 14;
    if (v4) {
        ip[0] = 0x45;
        put16(frame, 14 + 2, static_cast<std::uint16_t>(ip_length + l4_length));
        ip[8] = 64;
        ip[9] = protocol;
        std::memcpy(ip + 12, kProbeSource4.data(), 4);
        std::memcpy(ip + 16, vip.bytes().data(), 4);
        put16(frame, 14 + 10, ipv4_checksum(ip));
    } else {
        ip[0] = 0x60;
        put16(frame, 14 + 4, static_cast<std::uint16_t>(l4_length));
        ip[6] = protocol;
        ip[7] = 64;
        std::memcpy(ip + 8, kProbeSource6.data(), 16);
        std::memcpy(ip + 24, vip.bytes().data(), 16);
    }
    const std::size_t l4 = 14 + ip_length;
    put16(frame, l4, kProbeSourcePort);
    put16(frame, l4 + 2, port);
    if (protocol == IPPROTO_TCP) {
        frame[l4 + 12] = 5 << 4;  // data offset
        frame[l4 + 13] = 0x02;    // SYN
        put16(frame, l4 + 14, 64240);
    } else {
        put16(frame, l4 + 4, static_cast<std::uint16_t>(l4_length));
    }
    return frame;
}

XdpSelfTest::XdpSelfTest(const DataPlane& plane, std::uint32_t ifindex, const MacAddress& interface_mac)
    : plane_(plane), ifindex_(ifindex), interface_mac_(interface_mac) {}

bool XdpSelfTest::attached() {
    bpf_prog_info info{};
    std::uint32_t length = sizeof(info);
    if (bpf_obj_get_info_by_fd(plane_.xdp_program_fd(), &info, &length) != 0)
        return false;
    std::uint32_t attached_id = 0;
    for (const std::uint32_t mode : {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE}) {
        if (bpf_xdp_query_id(static_cast<int>(ifindex_), static_cast<int>(mode), &attached_id) == 0 &&
            attached_id == info.id)
            return true;
    }
    return false;
}

bool XdpSelfTest::forwards(const IpAddress& vip, std::uint16_t port, std::uint8_t protocol) {
    std::vector<std::uint8_t> frame = probe_frame(interface_mac_, vip, port, protocol);
    std::vector<std::uint8_t> out(frame.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame.data(), .data_out = out.data(),
                .data_size_in = static_cast<std::uint32_t>(frame.size()),
                .data_size_out = static_cast<std::uint32_t>(out.size()), .repeat = 1);
    if (bpf_prog_test_run_opts(plane_.xdp_program_fd(), &run) != 0)
        return false;
    return run.retval == XDP_TX || run.retval == XDP_REDIRECT;
}

}  // namespace stickylb
