// SPDX-License-Identifier: Apache-2.0
// Whole-frame fixtures: what leaves the XDP program for each forwarding mode
// and address family, with and without a VLAN tag, and the slow-path handover.
#include <arpa/inet.h>

#include <cstring>

#include "bpf/fixture.h"

namespace stickylb::testing {
namespace {

struct ModeCase {
    const char* name;
    ForwardingMode mode;
    const char* vip;
    const char* client;
    const char* backend1;
    const char* backend2;
};

class ForwardingModes : public DataPlaneTest, public ::testing::WithParamInterface<ModeCase> {
protected:
    void SetUp() override {
        DataPlaneTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        VipSettings settings;
        settings.index = 1;
        settings.forwarding = GetParam().mode;
        plane().upsert_vip(tcp_vip(GetParam().vip), settings);
        set_backends(1, {{1, IpAddress::parse(GetParam().backend1)}, {2, IpAddress::parse(GetParam().backend2)}});
    }

    PacketSpec client_syn() const {
        PacketSpec spec;
        spec.source = IpAddress::parse(GetParam().client);
        spec.destination = IpAddress::parse(GetParam().vip);
        spec.payload_bytes = 100;
        return spec;
    }

    // The outer source the data plane derives from the flow hash.
    IpAddress tunnel_source(const PacketSpec& spec, const IpAddress& backend) const {
        const std::uint32_t hash = flow_hash_of(spec);
        auto bytes = (backend.is_v4() ? runtime_config_.tunnel_source_v4 : runtime_config_.tunnel_source_v6).to_abi();
        if (backend.is_v4()) {
            bytes.v4 = (bytes.v4 & htonl(0xffff0000)) | htonl(hash & 0xffff);
        } else {
            bytes.v6[3] = htonl(hash);
        }
        return IpAddress::from_abi(bytes, backend.family());
    }

    Bytes expected_output(const PacketSpec& spec, std::uint32_t backend_index) const {
        const Bytes frame = build_packet(spec);
        if (GetParam().mode == ForwardingMode::l2_dsr)
            return with_macs(frame, kLbMac, backend_mac(backend_index));
        const IpAddress backend = backends_[backend_index - 1].address;
        return encapsulated(frame, spec, tunnel_source(spec, backend), backend, kLbMac, backend_mac(backend_index));
    }
};

TEST_P(ForwardingModes, SynLeavesForTheRingsBackendAsExpectedFrame) {
    const PacketSpec spec = client_syn();
    const XdpRun result = run(spec);
    ASSERT_EQ(result.action, XDP_TX);
    const std::uint32_t backend = ring_backend(flow_hash_of(spec));
    ASSERT_NE(backend, 0u);
    EXPECT_EQ(result.output, expected_output(spec, backend));
}

TEST_P(ForwardingModes, VlanTagIsKept) {
    PacketSpec spec = client_syn();
    spec.vlan_id = 42;
    const XdpRun result = run(spec);
    ASSERT_EQ(result.action, XDP_TX);
    EXPECT_EQ(result.output, expected_output(spec, ring_backend(flow_hash_of(spec))));
}

TEST_P(ForwardingModes, SynThenAckOfOneFlowReachTheSameBackend) {
    PacketSpec spec = client_syn();
    const std::uint32_t first = backend_of(run(spec));
    ASSERT_NE(first, 0u);
    spec.tcp_flags = kTcpAck;
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(backend_of(run(spec)), first);
}

TEST_P(ForwardingModes, UnknownNextHopGoesToTheSlowPathWithAShim) {
    set_backends(1, {{1, IpAddress::parse(GetParam().backend1), BackendState::up, false},
                     {2, IpAddress::parse(GetParam().backend2), BackendState::up, false}});
    const PacketSpec spec = client_syn();
    const XdpRun result = run(spec);
    ASSERT_EQ(result.action, XDP_PASS);
    constexpr std::size_t kEthernet = 14;
    ASSERT_GT(result.output.size(), kEthernet + sizeof(stickylb_slow_path_shim));
    stickylb_slow_path_shim shim;
    std::memcpy(&shim, result.output.data() + kEthernet, sizeof(shim));
    EXPECT_EQ(shim.key, plane().slow_path_key()) << "what tells the tc program it is ours";
    EXPECT_NE(shim.key, 0u);
    EXPECT_EQ(shim.zero, 0) << "IP version 0: dropped by any IP stack it reaches";
    const std::uint32_t backend = ring_backend(flow_hash_of(spec));
    const IpAddress backend_address = backends_[backend - 1].address;
    if (GetParam().mode == ForwardingMode::l2_dsr) {
        EXPECT_EQ(shim.family, backend_address.family());
        EXPECT_EQ(IpAddress::from_abi(shim.nexthop, shim.family), backend_address);
    } else {
        EXPECT_EQ(shim.family, STICKYLB_FAMILY_NONE);  // the route to the outer destination decides
    }
    // Without the shim: the frame as it will leave, MACs left for the kernel to set.
    Bytes frame = result.output;
    frame.erase(frame.begin() + kEthernet, frame.begin() + kEthernet + sizeof(shim));
    Bytes expected = expected_output(spec, backend);
    std::copy_n(build_packet(spec).begin(), 12, expected.begin());
    EXPECT_EQ(frame, expected);
    EXPECT_EQ(plane().global_stats().pass_slow_path, 1u);
}

INSTANTIATE_TEST_SUITE_P(
    AllModes, ForwardingModes,
    ::testing::Values(
        ModeCase{"L2DsrIpv4", ForwardingMode::l2_dsr, "192.0.2.10", "198.51.100.7", "10.0.0.1", "10.0.0.2"},
        ModeCase{"L2DsrIpv6", ForwardingMode::l2_dsr, "2001:db8::10", "2001:db8:1::7", "fd00::1", "fd00::2"},
        ModeCase{"IpipIpv4", ForwardingMode::ipip, "192.0.2.10", "198.51.100.7", "10.0.0.1", "10.0.0.2"},
        ModeCase{"Ip6ip6", ForwardingMode::ipip, "2001:db8::10", "2001:db8:1::7", "fd00::1", "fd00::2"},
        ModeCase{"Ipv4InIpv6", ForwardingMode::ipip, "192.0.2.10", "198.51.100.7", "fd00::1", "fd00::2"},
        ModeCase{"Ipv6InIpv4", ForwardingMode::ipip, "2001:db8::10", "2001:db8:1::7", "10.0.0.1", "10.0.0.2"}),
    [](const auto& info) { return std::string(info.param.name); });

class Redirect : public DataPlaneTest {};

TEST_F(Redirect, BackendBehindAnotherInterfaceIsRedirected) {
    plane().upsert_vip(tcp_vip("192.0.2.10"), VipSettings{.index = 0});
    // BPF_PROG_TEST_RUN receives on lo (ifindex 1): any other index is "another interface".
    BackendEntry entry{1, IpAddress::parse("10.0.0.1"), BackendState::up, backend_mac(1), kLbMac, 4242};
    plane().set_backend(entry);
    const std::vector<MaglevBackend> members{{"be1", 1, 1, true}};
    plane().write_ring(0, build_maglev_ring(members, kTestRingSize, kTestSeed));
    PacketSpec spec;
    const XdpRun result = run(spec);
    EXPECT_EQ(result.action, XDP_REDIRECT);
    EXPECT_EQ(plane().global_stats().redirect, 1u);
}

}  // namespace
}  // namespace stickylb::testing
