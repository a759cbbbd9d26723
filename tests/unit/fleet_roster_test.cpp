// SPDX-License-Identifier: Apache-2.0
// What LB hosts compare before announcing: the config fingerprint and the rule
// that picks the fleet's; what they share of their checks and the rule that makes one
// backend view of them.
#include "session/fleet_roster.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/config_fingerprint.h"
#include "control/fleet_health.h"
#include "session/flow_exception_chunks.h"

namespace stickylb {
namespace {

DaemonConfig two_vips() {
    return parse_config(R"(
interface: eth0
vips:
  - address: 10.0.0.10
    port: 80
    backends:
      - {name: a, address: 10.0.1.1}
      - {name: b, address: 10.0.1.2, weight: 2}
  - address: 10.0.0.11
    port: 443
    backends:
      - {name: c, address: 10.0.1.3}
)",
                        "test.yaml");
}

TEST(ConfigFingerprint, AReorderedConfigIsTheSameConfig) {
    DaemonConfig config = two_vips();
    DaemonConfig reordered = config;
    std::swap(reordered.vips[0], reordered.vips[1]);
    std::swap(reordered.vips[1].backends[0], reordered.vips[1].backends[1]);
    reordered.vips[0].health.interval = std::chrono::milliseconds(200);  // per host: not compared
    EXPECT_EQ(config_fingerprint(config), config_fingerprint(reordered));
}

TEST(ConfigFingerprint, NamesThePartThatDiffers) {
    const DaemonConfig config = two_vips();
    DaemonConfig seeded = config;
    seeded.hash_seed = 7;
    EXPECT_EQ(differing_parts(config_fingerprint(config), config_fingerprint(seeded)),
              std::vector<std::string>{"hash_seed"});
    DaemonConfig weighted = config;
    weighted.vips[0].backends[1].weight = 3;
    EXPECT_EQ(differing_parts(config_fingerprint(config), config_fingerprint(weighted)),
              std::vector<std::string>{"vips"});
    EXPECT_NE(config_fingerprint(config).digest, config_fingerprint(weighted).digest);
}

fleet::Member member(std::string host, std::string digest, std::int64_t since_ms, std::int64_t heartbeat_ms) {
    fleet::Member m;
    m.host = std::move(host);
    m.fingerprint.digest = std::string(64, digest.at(0));
    m.fingerprint.parts["hash_seed"] = digest;
    m.since_ms = since_ms;
    m.heartbeat_ms = heartbeat_ms;
    return m;
}

TEST(FleetRoster, TheMajorityFingerprintIsTheFleetsAndTheOddHostSaysWhy) {
    const std::int64_t now = 1'000'000;
    fleet::Roster roster{{member("lb1", "a", 10, now), member("lb2", "a", 20, now), member("lb3", "a", 30, now)}};
    const fleet::Verdict odd = fleet::judge(roster, member("lb4", "b", 5, now), now, std::chrono::seconds(3));
    EXPECT_FALSE(odd.agrees);
    EXPECT_EQ(odd.differing, std::vector<std::string>{"lb4"});
    EXPECT_EQ(odd.parts, std::vector<std::string>{"hash_seed"});
    EXPECT_NE(odd.reason.find("hash_seed"), std::string::npos) << odd.reason;
    EXPECT_TRUE(fleet::judge(roster, member("lb2", "a", 20, now), now, std::chrono::seconds(3)).agrees);
}

TEST(FleetRoster, ATieGoesToTheFingerprintHeldLongestAndStaleHostsDoNotCount) {
    const std::int64_t now = 1'000'000;
    fleet::Roster roster{{member("lb1", "a", 100, now), member("lb3", "c", 1, now - 10'000)}};
    EXPECT_FALSE(fleet::judge(roster, member("lb2", "b", 500, now), now, std::chrono::seconds(3)).agrees);
    EXPECT_TRUE(fleet::judge(roster, member("lb2", "b", 50, now), now, std::chrono::seconds(3)).agrees);
}

TEST(FleetRoster, RoundTripsAndRefusesWhatIsMalformed) {
    fleet::Roster roster{{member("lb1", "a", 1, 2), member("lb2", "b", 3, 4)}};
    EXPECT_EQ(fleet::decode(fleet::encode(roster)), roster);
    EXPECT_THROW(fleet::decode("{\"version\":1,\"members\":[{\"host\":\"lb 1\"}]}"), fleet::RosterError);
    EXPECT_THROW(fleet::decode("[[[[[[[[]]]]]]]]"), fleet::RosterError);
    EXPECT_THROW(fleet::decode(std::string(fleet::kMaxRosterBytes + 1, ' ')), fleet::RosterError);
}

TEST(FleetRoster, AWriteReplacesItsOwnEntryAndDropsTheStaleOnes) {
    const std::int64_t now = 1'000'000;
    fleet::Roster stored{{member("lb1", "a", 1, now - 100), member("lb2", "a", 1, now - 60'000)}};
    const fleet::Roster written = fleet::with_member(stored, member("lb1", "b", 7, now), now, std::chrono::seconds(3));
    ASSERT_EQ(written.members.size(), 1u);
    EXPECT_EQ(written.members[0].since_ms, 7);
}

TEST(FleetRoster, CarriesWhatEachHostsChecksSeeAndBoundsIt) {
    fleet::Member lb1 = member("lb1", "a", 1, 2);
    lb1.backends_down = {"6/10.0.0.10/80/a"};
    lb1.backends_unchecked = {"6/10.0.0.10/80/b", "17/2001:db8::10/53/c"};
    const fleet::Roster roster{{lb1, member("lb2", "a", 3, 4)}};
    EXPECT_EQ(fleet::decode(fleet::encode(roster)), roster);

    // Written by a host that shared no checks: every backend up to it.
    nlohmann::json older = nlohmann::json::parse(fleet::encode(roster));
    for (auto& entry : older["members"]) {
        entry.erase("backends_down");
        entry.erase("backends_unchecked");
    }
    const fleet::Roster decoded = fleet::decode(older.dump());
    EXPECT_TRUE(decoded.members.at(0).backends_down.empty());

    const auto with_down = [&](const nlohmann::json& list) {
        nlohmann::json text = nlohmann::json::parse(fleet::encode(roster));
        text["members"][0]["backends_down"] = list;
        return text.dump();
    };
    EXPECT_THROW(fleet::decode(with_down(nlohmann::json::array({1}))), fleet::RosterError);
    EXPECT_THROW(fleet::decode(with_down(nlohmann::json::array({"a b"}))), fleet::RosterError);
    EXPECT_THROW(
        fleet::decode(with_down(nlohmann::json::array({std::string(fleet::kMaxObservationKeyBytes + 1, 'k')}))),
        fleet::RosterError);
    EXPECT_THROW(fleet::decode(with_down("6/10.0.0.10/80/a")), fleet::RosterError);

    fleet::Member crowded = member("lb3", "a", 1, 2);
    for (std::size_t n = 0; n <= fleet::kMaxObservations; ++n)
        crowded.backends_down.insert("6/10.0.0.10/80/be" + std::to_string(n));
    EXPECT_THROW(fleet::encode(fleet::Roster{{crowded}}), fleet::RosterError) << "never written, so never refused";
}

TEST(FleetRoster, NamesEachHostsFlowExceptionsVersionAndBoundsItsChunks) {
    fleet::Member lb1 = member("lb1", "a", 1, 2);
    lb1.flows_version = 1'765'000'000'123;
    lb1.flows_chunks = 3;
    const fleet::Roster roster{{lb1, member("lb2", "a", 3, 4)}};
    EXPECT_EQ(fleet::decode(fleet::encode(roster)), roster);

    nlohmann::json text = nlohmann::json::parse(fleet::encode(roster));
    text["members"][0].erase("flows_version");
    text["members"][0].erase("flows_chunks");
    EXPECT_EQ(fleet::decode(text.dump()).members.at(0).flows_chunks, 0u) << "written before exceptions were shared";
    text["members"][0]["flows_chunks"] = 2;
    EXPECT_THROW(fleet::decode(text.dump()), fleet::RosterError) << "chunks without a version";
    text["members"][0]["flows_version"] = 7;
    text["members"][0]["flows_chunks"] = fleet::kMaxExceptionChunks + 1;
    EXPECT_THROW(fleet::decode(text.dump()), fleet::RosterError);
    text["members"][0]["flows_chunks"] = 1ull << 32;
    EXPECT_THROW(fleet::decode(text.dump()), fleet::RosterError) << "not truncated to a small count";
}

// The fleet's drains and weights: carried with the roster, kept by every host's write,
// and of several servers' the highest version counts.
TEST(FleetRoster, CarriesTheFleetsOverridesUnderAVersionThatWritesKeep) {
    fleet::Roster roster{{member("lb1", "a", 1, 2)}};
    roster.overrides = {.version = 4,
                        .by = "lb1",
                        .backends = {{"6/10.0.0.10/80/a", {.drained = true, .weight = std::nullopt}},
                                     {"6/10.0.0.10/80/b", {.drained = false, .weight = 3}}}};
    EXPECT_EQ(fleet::decode(fleet::encode(roster)), roster);
    EXPECT_EQ(fleet::with_member(roster, member("lb2", "a", 1, 2), 2, std::chrono::seconds(3)).overrides,
              roster.overrides)
        << "another host's heartbeat keeps them";

    fleet::Roster older{{member("lb2", "a", 1, 2)}};
    older.overrides = {.version = 3, .by = "lb2", .backends = {}};
    EXPECT_EQ(fleet::combine({older, roster}).overrides.version, 4u);
    EXPECT_EQ(fleet::combine({roster, older}).overrides.version, 4u);

    const auto with = [&](const char* path, nlohmann::json value) {
        nlohmann::json text = nlohmann::json::parse(fleet::encode(roster));
        text["overrides"][nlohmann::json::json_pointer(path)] = std::move(value);
        return text.dump();
    };
    nlohmann::json none = nlohmann::json::parse(fleet::encode(roster));
    none.erase("overrides");
    EXPECT_EQ(fleet::decode(none.dump()).overrides, fleet::SharedOverrides{}) << "written before overrides were shared";
    EXPECT_THROW(fleet::decode(with("/backends/6~110.0.0.10~180~1a/weight", 65536)), fleet::RosterError);
    EXPECT_THROW(fleet::decode(with("/backends/6~110.0.0.10~180~1a/drained", "yes")), fleet::RosterError);
    EXPECT_THROW(fleet::decode(with("/backends/a b", nlohmann::json{{"drained", true}})), fleet::RosterError);
    EXPECT_THROW(fleet::decode(with("/version", -1)), fleet::RosterError);
    EXPECT_THROW(fleet::decode(with("/backends", nlohmann::json::array())), fleet::RosterError);
}

TEST(FleetHealth, DownWhenAtLeastHalfOfTheHostsThatKnowSayDown) {
    EXPECT_EQ(fleet_health({}), HealthVerdict::unknown);
    EXPECT_EQ(fleet_health({.up = 2, .down = 1}), HealthVerdict::up) << "one host of three cut off from it";
    EXPECT_EQ(fleet_health({.up = 1, .down = 2}), HealthVerdict::down);
    EXPECT_EQ(fleet_health({.up = 1, .down = 1}), HealthVerdict::down) << "of two, the host that cannot reach it";
    EXPECT_EQ(fleet_health({.up = 0, .down = 1}), HealthVerdict::down);
    EXPECT_EQ(fleet_health({.up = 3, .down = 0}), HealthVerdict::up);
    EXPECT_EQ(with_vote({.up = 1, .down = 1}, HealthVerdict::unknown), (HealthVotes{1, 1}));
    EXPECT_EQ(with_vote({.up = 1, .down = 1}, HealthVerdict::down), (HealthVotes{1, 2}));
}

TEST(FleetHealth, ABackendIsNamedByWhatTheFingerprintComparesNotByTheVipsName) {
    const DaemonConfig config = two_vips();
    EXPECT_EQ(observation_key(config.vips.at(0), "a"), "6/10.0.0.10/80/a");
    DaemonConfig renamed = config;
    renamed.vips.at(0).name = "web";
    EXPECT_EQ(observation_key(renamed.vips.at(0), "a"), observation_key(config.vips.at(0), "a"));
}

}  // namespace
}  // namespace stickylb
