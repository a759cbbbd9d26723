// SPDX-License-Identifier: Apache-2.0
#pragma once
// What only the loaded data plane can answer before this host asks for traffic: is
// its XDP program the one attached to the interface, and does it forward a new
// connection's first packet for a VIP (BPF_PROG_TEST_RUN of a probe frame, from a
// documentation address, so a probe never matches a real client's state).
#include <cstdint>
#include <span>
#include <vector>

#include "base/address.h"

namespace stickylb {

class DataPlane;

class DataPlaneSelfTest {
public:
    virtual ~DataPlaneSelfTest() = default;
    virtual bool attached() = 0;
    // Whether a new connection's first packet to the VIP would be sent to a backend.
    virtual bool forwards(const IpAddress& vip, std::uint16_t port, std::uint8_t protocol) = 0;
};

// The probe: Ethernet to interface_mac, from 192.0.2.1 / 2001:db8::1 port 40000, a
// TCP SYN (or a UDP datagram) to vip:port.
std::vector<std::uint8_t> probe_frame(const MacAddress& interface_mac, const IpAddress& vip, std::uint16_t port,
                                      std::uint8_t protocol);

class XdpSelfTest final : public DataPlaneSelfTest {
public:
    // The data plane must outlive it.
    XdpSelfTest(const DataPlane& plane, std::uint32_t ifindex, const MacAddress& interface_mac);
    bool attached() override;
    bool forwards(const IpAddress& vip, std::uint16_t port, std::uint8_t protocol) override;

private:
    const DataPlane& plane_;
    std::uint32_t ifindex_;
    MacAddress interface_mac_;
};

}  // namespace stickylb
