// SPDX-License-Identifier: Apache-2.0
// The reconciler's decisions, without a kernel: backend states from health and
// operator overrides, stable indexes across reloads and restarts.
#include <gtest/gtest.h>

#include "control/reconciler.h"

namespace stickylb {
namespace {

DaemonConfig two_vips() {
    DaemonConfig config;
    config.interface = "eth0";
    for (const char* name : {"web", "api"}) {
        VipConfig vip;
        vip.name = name;
        vip.address = IpAddress::parse(std::string(name) == "web" ? "192.0.2.10" : "192.0.2.11");
        vip.port = 80;
        vip.persistence.enabled = std::string(name) == "web";
        for (const char* backend : {"be1", "be2", "be3"})
            vip.backends.push_back(
                BackendConfig{backend, IpAddress::parse(std::string("10.0.0.") + backend[2]), 1, {}});
        config.vips.push_back(vip);
    }
    return config;
}

const DesiredBackend& backend_of(const DesiredState& state, const std::string& vip, const std::string& name) {
    for (const auto& v : state.vips)
        for (const auto& b : v.backends)
            if (v.name == vip && b.id.second == name)
                return b;
    throw std::runtime_error("no backend " + vip + "/" + name);
}

HealthVerdict all_up(const BackendId&) { return HealthVerdict::up; }

TEST(DesiredState, HealthDownMarksDownAndOnlyThatVipsBackend) {
    IndexRegistry indexes(64, 4096);
    const auto state = desired_state(
        two_vips(), {},
        [](const BackendId& id) {
            return id == BackendId{"web", "be2"} ? HealthVerdict::down : HealthVerdict::up;
        },
        indexes);
    EXPECT_EQ(backend_of(state, "web", "be2").state, BackendState::down);
    EXPECT_EQ(backend_of(state, "api", "be2").state, BackendState::up) << "health is per VIP";
    EXPECT_EQ(backend_of(state, "web", "be1").state, BackendState::up);
}

TEST(DesiredState, OperatorDrainAndWeightZeroDrainButHealthDownWins) {
    IndexRegistry indexes(64, 4096);
    AdminOverrides overrides;
    overrides[{"web", "be1"}].drained = true;
    overrides[{"web", "be2"}].weight = 0;
    overrides[{"web", "be3"}].drained = true;
    const auto state = desired_state(
        two_vips(), overrides,
        [](const BackendId& id) {
            return id == BackendId{"web", "be3"} ? HealthVerdict::down : HealthVerdict::up;
        },
        indexes);
    EXPECT_EQ(backend_of(state, "web", "be1").state, BackendState::draining);
    EXPECT_EQ(backend_of(state, "web", "be2").state, BackendState::draining);
    EXPECT_EQ(backend_of(state, "web", "be2").weight, 0u);
    EXPECT_EQ(backend_of(state, "web", "be3").state, BackendState::down);
}

TEST(DesiredState, UnknownHealthCountsAsUp) {
    IndexRegistry indexes(64, 4096);
    const auto state = desired_state(
        two_vips(), {}, [](const BackendId&) { return HealthVerdict::unknown; }, indexes);
    EXPECT_EQ(backend_of(state, "web", "be1").state, BackendState::up);
}

TEST(DesiredState, IndexesStayPutWhenOthersComeAndGo) {
    IndexRegistry indexes(64, 4096);
    auto config = two_vips();
    const auto before = desired_state(config, {}, all_up, indexes);
    const std::uint32_t api_be3 = backend_of(before, "api", "be3").index;
    const std::uint32_t api_vip = before.vips[1].settings.index;

    config.vips.erase(config.vips.begin());                          // web goes
    config.vips[0].backends.erase(config.vips[0].backends.begin());  // api/be1 goes
    const auto after = desired_state(config, {}, all_up, indexes);
    EXPECT_EQ(backend_of(after, "api", "be3").index, api_be3);
    EXPECT_EQ(after.vips[0].settings.index, api_vip);

    config.vips[0].backends.push_back(BackendConfig{"be9", IpAddress::parse("10.0.0.9"), 1, {}});
    const auto grown = desired_state(config, {}, all_up, indexes);
    EXPECT_EQ(backend_of(grown, "api", "be3").index, api_be3) << "a new backend takes a free index";
    EXPECT_NE(backend_of(grown, "api", "be9").index, 0u);
}

TEST(IndexRegistry, SurvivesARestartThroughItsJson) {
    IndexRegistry first(64, 4096);
    const auto state = desired_state(two_vips(), {}, all_up, first);
    IndexRegistry second(64, 4096);
    second.load_json(first.to_json());
    const auto again = desired_state(two_vips(), {}, all_up, second);
    for (std::size_t v = 0; v < state.vips.size(); ++v) {
        EXPECT_EQ(again.vips[v].settings.index, state.vips[v].settings.index);
        for (std::size_t b = 0; b < state.vips[v].backends.size(); ++b)
            EXPECT_EQ(again.vips[v].backends[b].index, state.vips[v].backends[b].index);
    }
}

TEST(IndexRegistry, IndexesBeyondSmallerMapsAreGivenAgain) {
    IndexRegistry large(8, 16);
    for (const char* vip : {"a", "b", "c"})
        large.vip_index(vip);
    for (const char* backend : {"1", "2", "3", "4"})
        large.backend_index({"a", backend});
    IndexRegistry small(2, 3);
    small.load_json(large.to_json());
    EXPECT_EQ(small.vip_index("a"), 0u);
    EXPECT_EQ(small.vip_index("b"), 1u);
    EXPECT_EQ(small.backend_index({"a", "1"}), 1u);
    EXPECT_EQ(small.backend_index({"a", "2"}), 2u);
    EXPECT_THROW(small.vip_index("c"), std::runtime_error) << "index 2 is past 2 VIPs and nothing is free";
}

TEST(IndexRegistry, RunsOutWithAClearError) {
    IndexRegistry tiny(1, 3);  // one VIP, backend indexes 1 and 2
    EXPECT_EQ(tiny.backend_index({"web", "a"}), 1u);
    EXPECT_EQ(tiny.backend_index({"web", "b"}), 2u);
    EXPECT_THROW(tiny.backend_index({"web", "c"}), std::runtime_error);
}

}  // namespace
}  // namespace stickylb
