// SPDX-License-Identifier: Apache-2.0
#pragma once
// A loaded (not attached) data plane with a VIP set-up helper, for packet
// fixtures through BPF_PROG_TEST_RUN.
#include <gtest/gtest.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "base/errors.h"
#include "dataplane/maglev.h"
#include "stickylb/flow_hash.h"
#include "support/load_options.h"
#include "support/packets.h"
#include "support/privileges.h"

namespace stickylb::testing {

inline constexpr std::uint32_t kTestRingSize = 1021;  // prime; small keeps tests quick
inline constexpr std::uint32_t kTestSeed = 0x5eed;
inline const MacAddress kLbMac = MacAddress::parse("02:00:00:00:00:1b");

inline MacAddress backend_mac(std::uint32_t index) {
    return MacAddress({0x02, 0x00, 0x00, 0x00, 0x01, static_cast<std::uint8_t>(index)});
}

struct TestBackend {
    std::uint32_t index;
    IpAddress address;
    BackendState state = BackendState::up;
    bool mac_known = true;
};

class DataPlaneTest : public ::testing::Test {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        plane_.emplace(DataPlane::load(small_load_options(kTestRingSize)));
        RuntimeConfig config;
        config.hash_seed = kTestSeed;
        plane_->set_runtime_config(config);
        runtime_config_ = config;
    }

    DataPlane& plane() { return *plane_; }
    const DataPlane& plane() const { return *plane_; }

    // Writes the backends and the VIP's ring (down/draining ones out of the ring).
    void set_backends(std::uint32_t vip_index, const std::vector<TestBackend>& backends) {
        std::vector<MaglevBackend> members;
        for (const auto& backend : backends) {
            BackendEntry entry;
            entry.index = backend.index;
            entry.address = backend.address;
            entry.state = backend.state;
            entry.egress_mac = kLbMac;
            if (backend.mac_known)
                entry.nexthop_mac = backend_mac(backend.index);
            plane().set_backend(entry);
            members.push_back(
                {"be" + std::to_string(backend.index), backend.index, 1, backend.state == BackendState::up});
        }
        ring_ = build_maglev_ring(members, kTestRingSize, kTestSeed);
        plane().write_ring(vip_index, ring_);
        backends_ = backends;
    }

    // Marks one backend's state in the map only (the ring untouched).
    void set_state(std::uint32_t index, BackendState state) {
        for (auto& backend : backends_)
            if (backend.index == index)
                backend.state = state;
        for (const auto& backend : backends_)
            if (backend.index == index) {
                BackendEntry entry{backend.index, backend.address,
                                   state,         backend.mac_known ? std::optional(backend_mac(index)) : std::nullopt,
                                   kLbMac,        0};
                plane().set_backend(entry);
            }
    }

    // Ring and state together, in the order the daemon uses (ring first).
    void set_state_and_ring(std::uint32_t vip_index, std::uint32_t index, BackendState state) {
        std::vector<MaglevBackend> members;
        for (const auto& backend : backends_) {
            const BackendState effective = backend.index == index ? state : backend.state;
            members.push_back({"be" + std::to_string(backend.index), backend.index, 1, effective == BackendState::up});
        }
        ring_ = build_maglev_ring(members, kTestRingSize, kTestSeed);
        plane().write_ring(vip_index, ring_);
        set_state(index, state);
    }

    XdpRun run(const Bytes& packet) { return run_xdp(plane().xdp_program_fd(), packet); }
    XdpRun run(const PacketSpec& spec) { return run(build_packet(spec)); }

    // Which backend an XDP_TX frame went to, by its destination MAC; 0 if none.
    static std::uint32_t backend_of(const XdpRun& run) {
        if (run.action != XDP_TX || run.output.size() < 6)
            return 0;
        for (std::uint32_t index = 1; index < 256; ++index)
            if (std::equal(run.output.begin(), run.output.begin() + 6, backend_mac(index).bytes().begin()))
                return index;
        return 0;
    }

    // The backend the ring names for a flow hash.
    std::uint32_t ring_backend(std::uint32_t hash) const { return ring_[hash % kTestRingSize]; }

    static std::uint32_t flow_hash_of(const PacketSpec& spec) {
        const auto source = spec.source.to_abi();
        const auto destination = spec.destination.to_abi();
        return stickylb_hash_flow(kTestSeed, source.v6, destination.v6, htons(spec.source_port),
                                  htons(spec.destination_port), spec.protocol, spec.source.family());
    }

    static std::uint32_t cache_slot_of(const PacketSpec& spec) {
        const auto source = spec.source.to_abi();
        const auto destination = spec.destination.to_abi();
        return stickylb_flow_cache_slot(source.v6, destination.v6, htons(spec.source_port),
                                        htons(spec.destination_port), spec.protocol);
    }

    static std::uint32_t client_hash_of(const IpAddress& masked_client) {
        const auto client = masked_client.to_abi();
        return stickylb_hash_client(kTestSeed, client.v6, masked_client.family());
    }

    std::optional<DataPlane> plane_;
    RuntimeConfig runtime_config_;
    std::vector<TestBackend> backends_;
    std::vector<std::uint32_t> ring_;
};

inline VipKey tcp_vip(const char* address, std::uint16_t port = 80) {
    return VipKey{IpAddress::parse(address), port, IPPROTO_TCP};
}

}  // namespace stickylb::testing
