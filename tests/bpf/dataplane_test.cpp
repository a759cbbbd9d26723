// SPDX-License-Identifier: Apache-2.0
// The data-plane handle: minimal ring diffs, pinned maps re-opened by a second
// process, input validation, and a real XDP attach (native on veth) that a
// second handle replaces in place.
#include <sys/mount.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include "bpf/fixture.h"
#include "support/bpffs.h"
#include "support/network_namespace.h"

namespace stickylb::testing {
namespace {

LoadOptions small_options(const std::string& pin_dir = "") { return small_load_options(kTestRingSize, pin_dir); }

std::vector<std::uint32_t> ring_for(std::initializer_list<std::pair<std::uint32_t, bool>> members) {
    std::vector<MaglevBackend> backends;
    for (const auto& [index, up] : members)
        backends.push_back({"be" + std::to_string(index), index, 1, up});
    return build_maglev_ring(backends, kTestRingSize, kTestSeed);
}

class DataPlaneHandle : public ::testing::Test {
protected:
    void SetUp() override { STICKYLB_REQUIRE_ROOT(); }
};

TEST_F(DataPlaneHandle, RingWritesOnlyTheSlotsThatChanged) {
    auto plane = DataPlane::load(small_options());
    const auto all_up = ring_for({{1, true}, {2, true}, {3, true}, {4, true}});
    EXPECT_EQ(plane.write_ring(1, all_up), kTestRingSize) << "every slot was empty";
    EXPECT_EQ(plane.write_ring(1, all_up), 0u) << "nothing changed";
    const auto one_down = ring_for({{1, true}, {2, false}, {3, true}, {4, true}});
    const auto owned_by_2 = static_cast<std::size_t>(std::count(all_up.begin(), all_up.end(), 2u));
    EXPECT_EQ(plane.write_ring(1, one_down), owned_by_2) << "only backend 2's slots";
    EXPECT_EQ(plane.read_ring(1), one_down);
    EXPECT_EQ(plane.read_ring(0), std::vector<std::uint32_t>(kTestRingSize, 0)) << "other VIPs untouched";
}

TEST_F(DataPlaneHandle, PinnedMapsAreAdoptedByTheNextHandle) {
    PrivateBpffs bpffs;
    const std::string pins = bpffs.path() + "/stickylb";
    const auto ring = ring_for({{1, true}, {2, true}});
    VipSettings settings;
    settings.index = 2;
    settings.persistent = true;
    settings.affinity_timeout_s = 77;
    {
        auto first = DataPlane::load(small_options(pins));
        first.upsert_vip(tcp_vip("192.0.2.10"), settings);
        first.write_ring(2, ring);
    }
    auto second = DataPlane::load(small_options(pins));
    ASSERT_EQ(second.vips().size(), 1u) << "the port-0 address entry is not a VIP";
    EXPECT_EQ(second.vips().begin()->first, tcp_vip("192.0.2.10"));
    EXPECT_EQ(second.vips().begin()->second, settings);
    EXPECT_EQ(second.read_ring(2), ring);
    EXPECT_EQ(second.write_ring(2, ring), 0u) << "a restarted writer rewrites nothing";

    auto mismatched = small_options(pins);
    mismatched.max_backends = 128;
    try {
        DataPlane::load(mismatched);
        ADD_FAILURE() << "pinned maps of another size are refused";
    } catch (const SystemError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find(pins + "/backend"), std::string::npos) << "names the map: " << message;
        EXPECT_NE(message.find("64 entries"), std::string::npos) << "says what is pinned: " << message;
        EXPECT_NE(message.find("128 entries"), std::string::npos) << "says what is needed: " << message;
        EXPECT_NE(message.find("stickylbd --detach"), std::string::npos) << "says how to start over: " << message;
    }
    second.unpin_maps();
    EXPECT_TRUE(std::filesystem::is_empty(pins));
}

TEST_F(DataPlaneHandle, BadInputIsRefusedWithTheReason) {
    auto options = small_options();
    options.ring_size = 1024;
    EXPECT_THROW(DataPlane::load(options), std::invalid_argument);

    auto plane = DataPlane::load(small_options());
    VipSettings settings;
    EXPECT_THROW(plane.upsert_vip(tcp_vip("192.0.2.10", 0), settings), std::invalid_argument);
    EXPECT_THROW(plane.upsert_vip(VipKey{IpAddress::parse("192.0.2.10"), 80, 1}, settings), std::invalid_argument);
    settings.index = 8;
    EXPECT_THROW(plane.upsert_vip(tcp_vip("192.0.2.10"), settings), std::invalid_argument);
    settings.index = 1;
    plane.upsert_vip(tcp_vip("192.0.2.10"), settings);
    try {
        plane.upsert_vip(tcp_vip("192.0.2.11"), settings);
        FAIL() << "a second VIP with the same index was accepted";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what()).find("already used by VIP tcp 192.0.2.10:80"), std::string::npos)
            << error.what();
    }
    EXPECT_THROW(plane.write_ring(1, std::vector<std::uint32_t>(7, 1)), std::invalid_argument);
    BackendEntry backend;
    backend.address = IpAddress::parse("10.0.0.1");
    backend.index = 0;
    EXPECT_THROW(plane.set_backend(backend), std::invalid_argument) << "index 0 is reserved";
    backend.index = 64;
    EXPECT_THROW(plane.set_backend(backend), std::invalid_argument) << "beyond max_backends";
}

// Runs the body inside a fresh network namespace holding a veth pair, then
// returns to the original namespace and deletes it.
class AttachInNamespace : public DataPlaneHandle {
protected:
    void SetUp() override {
        DataPlaneHandle::SetUp();
        if (IsSkipped())
            return;
        namespace_.emplace("slb-test-attach");
        ASSERT_EQ(run("ip link add veth0 type veth peer name veth1"), 0);
        ASSERT_EQ(run("ip link set veth0 up && ip link set veth1 up"), 0);
    }
    void TearDown() override { namespace_.reset(); }
    static int run(const std::string& command) { return EnteredNetworkNamespace::run(command); }

    std::optional<EnteredNetworkNamespace> namespace_;
};

TEST_F(AttachInNamespace, AttachesNativeOnVethAndASecondHandleReplacesItInPlace) {
    PrivateBpffs bpffs;
    const std::string pins = bpffs.path() + "/stickylb";
    auto first = DataPlane::load(small_options(pins));
    const AttachResult attached = first.attach("veth0");
    EXPECT_EQ(attached.mode, AttachMode::native);
    EXPECT_FALSE(attached.replaced);
    EXPECT_EQ(run("ip link show veth0 | grep -q 'xdp'"), 0) << "XDP visible on the interface";
    EXPECT_EQ(run("tc filter show dev veth0 ingress | grep -q stickylb_neigh"), 0) << "tc slow path attached";

    auto second = DataPlane::load(small_options(pins));
    const AttachResult replaced = second.attach("veth0");
    EXPECT_TRUE(replaced.replaced) << "the pinned link was updated, not detached and re-attached";
    EXPECT_EQ(replaced.mode, AttachMode::native);

    second.detach("veth0");
    EXPECT_NE(run("ip link show veth0 | grep -q 'xdp'"), 0) << "detach removed XDP";
    EXPECT_NE(run("tc filter show dev veth0 ingress | grep -q stickylb_neigh"), 0) << "and the tc filter";
    second.unpin_maps();
}

TEST_F(AttachInNamespace, GenericModeWhenAskedAndAnErrorForAMissingInterface) {
    auto plane = DataPlane::load(small_options());
    EXPECT_EQ(plane.attach("veth1", AttachMode::generic).mode, AttachMode::generic);
    EXPECT_EQ(run("ip link show veth1 | grep -q 'xdpgeneric'"), 0);
    EXPECT_THROW(plane.attach("no-such-if0"), std::invalid_argument);
    plane.detach("veth1");
}

}  // namespace
}  // namespace stickylb::testing
