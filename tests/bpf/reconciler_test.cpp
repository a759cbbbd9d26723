// SPDX-License-Identifier: Apache-2.0
// The reconciler against a loaded data plane: what a reload that re-addresses or
// renames a VIP leaves in the maps, judged by the packets the XDP program forwards.
#include <netinet/in.h>

#include "bpf/fixture.h"
#include "control/reconciler.h"

namespace stickylb::testing {
namespace {

DaemonConfig one_vip(const std::string& name, const char* address) {
    DaemonConfig config;
    config.interface = "eth0";
    VipConfig vip;
    vip.name = name;
    vip.address = IpAddress::parse(address);
    vip.port = 80;
    for (const char* backend : {"be1", "be2"})
        vip.backends.push_back(BackendConfig{backend, IpAddress::parse(std::string("10.0.0.") + backend[2]), 1, {}});
    config.vips.push_back(vip);
    return config;
}

HealthVerdict all_up(const BackendId&) { return HealthVerdict::up; }

class ReconcilerOnDataPlane : public DataPlaneTest {
protected:
    void SetUp() override {
        DataPlaneTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        reconciler_.emplace(plane(), kTestSeed, EgressInterface{kLbMac, 0},
                            [](const DesiredBackend& backend, ForwardingMode) -> std::optional<MacAddress> {
                                return backend_mac(backend.index);
                            });
    }

    ReconcileStats reload(const DaemonConfig& config) {
        return reconciler_->apply(desired_state(config, {}, all_up, indexes_));
    }

    // A new connection's SYN to address: the backend it was sent to, 0 if it was not forwarded.
    std::uint32_t syn_to(const char* address) {
        PacketSpec spec;
        spec.destination = IpAddress::parse(address);
        const XdpRun result = run(spec);
        return result.action == XDP_TX ? backend_of(result) : 0;
    }

    IndexRegistry indexes_{small_load_options(kTestRingSize).max_vips, small_load_options(kTestRingSize).max_backends};
    std::optional<Reconciler> reconciler_;
};

TEST_F(ReconcilerOnDataPlane, AVipMovedToANewAddressForwardsThereAndNoLongerAtTheOld) {
    reload(one_vip("web", "192.0.2.10"));
    ASSERT_NE(syn_to("192.0.2.10"), 0u);

    ReconcileStats stats;
    ASSERT_NO_THROW(stats = reload(one_vip("web", "192.0.2.20")));
    EXPECT_EQ(stats.vips_removed, 1u);
    EXPECT_NE(syn_to("192.0.2.20"), 0u) << "the VIP answers at its new address";
    EXPECT_EQ(syn_to("192.0.2.10"), 0u) << "the old address is no VIP any more";
    EXPECT_EQ(run(PacketSpec{}).action, XDP_PASS);
}

TEST_F(ReconcilerOnDataPlane, ARenamedVipKeepsForwardingAndItsOldRingIsCleared) {
    reload(one_vip("web", "192.0.2.10"));
    const std::uint32_t old_index = plane().vips().begin()->second.index;

    ASSERT_NO_THROW(reload(one_vip("shop", "192.0.2.10")));
    const std::uint32_t new_index = plane().vips().begin()->second.index;
    ASSERT_NE(new_index, old_index) << "a new name gets a new index";
    EXPECT_NE(syn_to("192.0.2.10"), 0u);
    EXPECT_EQ(plane().read_ring(old_index), std::vector<std::uint32_t>(plane().ring_size(), STICKYLB_NO_BACKEND))
        << "nothing can pick from the ring of a VIP that no longer exists";
}

}  // namespace
}  // namespace stickylb::testing
