// SPDX-License-Identifier: Apache-2.0
// stickylbd's control plane on in-memory maps, driven through its control-socket
// handlers as the CLI drives it: no root, no kernel. The backends' health checks are
// real TCP checks against listeners on 127.0.0.1 and 127.0.0.2 (be1 and be2 answer;
// nothing listens at be3's 127.0.0.3, so it goes down).
#include "daemon/control_plane.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>

#include "cli/grammar.h"
#include "control/config_fingerprint.h"
#include "control/fleet_health.h"
#include "session/fleet_roster.h"
#include "session/flow_exception_chunks.h"
#include "session/memcached_client.h"
#include "session/membership_view.h"
#include "support/fake_announce.h"
#include "support/fake_maps.h"
#include "support/memcached_process.h"

namespace stickylb {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;
using testing::FakeClientTables;
using testing::FakeServiceMaps;

constexpr std::uint32_t kRingSize = 251;

LoadOptions small_ring() {
    LoadOptions options;
    options.ring_size = kRingSize;
    return options;
}

struct Answer {
    bool arrived = false;
    json result;
    std::string error;
};

class ControlPlaneTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::path(::testing::TempDir()) /
               ("stickylb-control-plane-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        // be1 and be2 listen on one port at their own addresses; nothing listens at be3's.
        up_one_.open(asio::ip::tcp::v4());
        up_one_.bind({asio::ip::make_address("127.0.0.1"), 0});
        up_one_.listen();
        up_two_.open(asio::ip::tcp::v4());
        up_two_.bind({asio::ip::make_address("127.0.0.2"), check_port()});
        up_two_.listen();
        accept_forever(up_one_);
        accept_forever(up_two_);
    }

    std::uint16_t check_port() const { return up_one_.local_endpoint().port(); }

    void TearDown() override {
        plane_.reset();
        std::filesystem::remove_all(dir_);
    }

    void accept_forever(asio::ip::tcp::acceptor& acceptor) {
        acceptor.async_accept([this, &acceptor](boost::system::error_code error, asio::ip::tcp::socket) {
            if (!error)
                accept_forever(acceptor);
        });
    }

    std::string config_path() const { return (dir_ / "stickylbd.yaml").string(); }

    // One persistent VIP of three backends, checked by TCP on check_port().
    std::string config_text(std::uint32_t be1_weight = 1, std::uint32_t ring_size = kRingSize) const {
        std::ostringstream yaml;
        yaml << "interface: lo\n"
             << "pin_dir: " << (dir_ / "pins").string() << "\n"
             << "state_file: " << (dir_ / "state.json").string() << "\n"
             << "ring_size: " << ring_size << "\n"
             << "vips:\n"
             << "  - name: web\n"
             << "    address: 192.0.2.10\n"
             << "    port: 80\n"
             << "    persistence: {enabled: true, timeout_s: 300}\n"
             << "    health: {kind: tcp, port: " << check_port()
             << ", interval: 50ms, timeout: 50ms, rise: 1, fall: 1}\n"
             << "    backends:\n";
        for (int n = 1; n <= 3; ++n)
            yaml << "      - name: be" << n << "\n        address: 127.0.0." << n << "\n"
                 << "        weight: " << (n == 1 ? be1_weight : 1) << "\n";
        return yaml.str();
    }

    void write_config(const std::string& text) { std::ofstream(config_path()) << text; }

    void start(const std::string& text) {
        write_config(text);
        plane_ = std::make_unique<ControlPlane>(
            io_, config_path(), load_config(config_path()), maps_, tables_, EgressInterface{},
            [](const DesiredBackend&, ForwardingMode) { return std::optional(MacAddress{}); },
            AnnounceHooks{routes_, self_test_});
        plane_->start(/*tables_were_empty=*/true);
    }

    // Runs the io_context until done() or 5 s.
    bool run_until(const std::function<bool()>& done) {
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!done() && std::chrono::steady_clock::now() < deadline)
            io_.run_for(10ms);
        return done();
    }

    Answer request(const std::string& object, const std::string& verb, const json& args = json::object()) {
        auto answer = std::make_shared<Answer>();
        plane_->handle(object, verb, args, [answer](json result, std::string error) {
            answer->arrived = true;
            answer->result = std::move(result);
            answer->error = std::move(error);
        });
        EXPECT_TRUE(run_until([&] { return answer->arrived; })) << object << " " << verb << ": no reply in 5 s";
        return *answer;
    }

    json row_of(const json& rows, const std::string& name) {
        for (const json& row : rows)
            if (row.value("name", "") == name)
                return row;
        ADD_FAILURE() << "no row named " << name << " in " << rows.dump();
        return json::object();
    }

    // be1 and be2 answer their checks, be3 does not.
    void wait_for_health() {
        ASSERT_TRUE(run_until([&] {
            const json rows = request("health", "show").result;
            return row_of(rows, "be1")["health"] == "up" && row_of(rows, "be3")["health"] == "down";
        })) << request("health", "show").result.dump();
    }

    // Peers lb2 and lb3 of a fleet, running CONFIG, held for a minute, beating now.
    static fleet::Roster peers_running(const DaemonConfig& config) {
        const auto now_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                .count();
        fleet::Roster roster;
        for (const char* host : {"lb2", "lb3"})
            roster.members.push_back({.host = host,
                                      .fingerprint = config_fingerprint(config),
                                      .since_ms = now_ms - 60'000,
                                      .heartbeat_ms = now_ms,
                                      .sequence = 1});
        return roster;
    }

    // Host lb1 of fleet web-fleet on one memcached server, reading the roster every 20 ms;
    // an entry counts for three heartbeats.
    std::string fleet_config_text(const std::string& memcached, const std::string& heartbeat = "1s") const {
        return config_text() +
               "announce: {check_interval: 20ms, hold: 0s, fleet: web-fleet, host_id: lb1, "
               "peer_heartbeat: " +
               heartbeat +
               ", peer_poll: 20ms}\n"
               "memcached_servers: ['" +
               memcached + "']\n";
    }

    std::uint32_t index_of(const std::string& name) {
        return row_of(request("backend", "show").result, name)["index"].get<std::uint32_t>();
    }

    std::filesystem::path dir_;
    asio::io_context io_;
    asio::ip::tcp::acceptor up_one_{io_}, up_two_{io_};
    FakeServiceMaps maps_{small_ring()};
    FakeClientTables tables_;
    testing::FakeRoutes routes_;
    testing::FakeSelfTest self_test_;
    std::unique_ptr<ControlPlane> plane_;
};

TEST_F(ControlPlaneTest, EveryCommandOfTheCliGrammarHasAHandlerAndNoHandlerIsUnreachable) {
    std::set<std::pair<std::string, std::string>> grammar, handled;
    for (const cli::Object& object : cli::command_tree()) {
        if (object.verbs.empty())
            grammar.insert({object.name, "show"});  // an object alone asks for "show"
        for (const cli::Verb& verb : object.verbs)
            grammar.insert({object.name, verb.name});
    }
    for (const ControlPlane::Command& command : ControlPlane::commands())
        handled.insert({std::string(command.object), std::string(command.verb)});
    EXPECT_EQ(grammar, handled);
}

TEST_F(ControlPlaneTest, StartWritesTheVipItsBackendsAndARingOfTheLiveOnes) {
    start(config_text());
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    ASSERT_EQ(maps_.vips().size(), 1u);
    const auto& [key, settings] = *maps_.vips().begin();
    EXPECT_EQ(key.to_string(), "tcp 192.0.2.10:80");
    EXPECT_TRUE(settings.persistent);
    EXPECT_EQ(settings.affinity_timeout_s, 300u);
    ASSERT_EQ(maps_.backends.size(), 3u);
    EXPECT_EQ(maps_.backends.at(index_of("be3")).state, BackendState::down);
    EXPECT_EQ(maps_.backends.at(index_of("be1")).state, BackendState::up);
    // The ring: every slot filled, by the two live backends only.
    EXPECT_EQ(maps_.slots_of(settings.index, index_of("be1")) + maps_.slots_of(settings.index, index_of("be2")),
              kRingSize);
    EXPECT_EQ(maps_.slots_of(settings.index, index_of("be3")), 0u);
    EXPECT_EQ(maps_.runtime.new_flow_limit, STICKYLB_DEFAULT_NEW_FLOW_LIMIT);
}

TEST_F(ControlPlaneTest, StatsShowNamesEveryGlobalCounterOfTheTableAndEachVipsBackends) {
    start(config_text());
    for (std::size_t n = 0; n < std::size(kGlobalCounters); ++n)
        maps_.global.*kGlobalCounters[n].field = 100 + n;
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;
    maps_.vip_counters[vip_index] = {
        .packets = 7, .bytes = 700, .new_flows = 3, .affinity_hits = 2, .affinity_misses = 1};
    maps_.backend_counters[index_of("be2")] = {.packets = 5, .bytes = 500};

    const Answer answer = request("stats", "show");
    ASSERT_EQ(answer.error, "");
    for (std::size_t n = 0; n < std::size(kGlobalCounters); ++n)
        EXPECT_EQ(answer.result.value(kGlobalCounters[n].name, std::uint64_t{0}), 100 + n) << kGlobalCounters[n].name;
    ASSERT_EQ(answer.result["vips"].size(), 1u);
    const json& vip = answer.result["vips"][0];
    EXPECT_EQ(vip["vip"], "web");
    EXPECT_EQ(vip["packets"], 7);
    EXPECT_EQ(vip["affinity_misses"], 1);
    ASSERT_EQ(vip["backends"].size(), 3u);
    EXPECT_EQ(row_of(vip["backends"], "be2")["packets"], 5);
    EXPECT_EQ(row_of(vip["backends"], "be2")["bytes"], 500);

    EXPECT_EQ(request("stats", "show", {{"vip", "nope"}}).error, "no VIP named 'nope'");
}

TEST_F(ControlPlaneTest, DrainKeepsTheBackendInTheMapsWithoutRingSlotsAndEnableGivesThemBack) {
    start(config_text());
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;
    const std::uint32_t be1 = index_of("be1");
    ASSERT_GT(maps_.slots_of(vip_index, be1), 0u);

    const Answer drained = request("backend", "drain", {{"vip", "web"}, {"name", "be1"}});
    ASSERT_EQ(drained.error, "");
    EXPECT_EQ(drained.result[0]["state"], "draining");
    EXPECT_EQ(drained.result[0]["admin_drained"], true);
    EXPECT_EQ(maps_.backends.at(be1).state, BackendState::draining);
    EXPECT_EQ(maps_.slots_of(vip_index, be1), 0u);
    // Saved: a restarted stickylbd keeps the drain.
    std::ifstream state_file(dir_ / "state.json");
    const json state = json::parse(state_file);
    EXPECT_EQ(state["overrides"]["web/be1"]["drained"], true);

    const Answer enabled = request("backend", "enable", {{"vip", "web"}, {"name", "be1"}});
    ASSERT_EQ(enabled.error, "");
    EXPECT_EQ(enabled.result[0]["state"], "up");
    EXPECT_GT(maps_.slots_of(vip_index, be1), 0u);

    EXPECT_EQ(request("backend", "drain", {{"vip", "web"}, {"name", "be9"}}).error,
              "VIP 'web' has no backend named 'be9'");
}

TEST_F(ControlPlaneTest, SetWeightChangesTheBackendsShareOfTheRing) {
    start(config_text());
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;
    const std::size_t even = maps_.slots_of(vip_index, index_of("be1"));
    const Answer set = request("backend", "set", {{"vip", "web"}, {"name", "be1"}, {"weight", 3}});
    ASSERT_EQ(set.error, "");
    EXPECT_EQ(set.result[0]["weight"], 3);
    const std::size_t weighted = maps_.slots_of(vip_index, index_of("be1"));
    // 3:1 against be2 (be3 is down): about three quarters of the ring, from about half.
    EXPECT_GT(weighted, even);
    EXPECT_NEAR(static_cast<double>(weighted) / kRingSize, 0.75, 0.02);
}

TEST_F(ControlPlaneTest, VipShowFingerprintsTheRingItForwardsWith) {
    start(config_text());
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    const auto fingerprint = [&] { return row_of(request("vip", "show").result, "web")["ring_sha256"]; };
    const json before = fingerprint();
    ASSERT_TRUE(before.is_string());
    EXPECT_EQ(before.get<std::string>().size(), 64u);
    ASSERT_EQ(request("backend", "set", {{"vip", "web"}, {"name", "be1"}, {"weight", 3}}).error, "");
    EXPECT_NE(fingerprint(), before) << "the ring changed";
    ASSERT_EQ(request("backend", "set", {{"vip", "web"}, {"name", "be1"}, {"weight", 1}}).error, "");
    EXPECT_EQ(fingerprint(), before) << "the same backends and weights: the same ring";
}

TEST_F(ControlPlaneTest, ForcedDrainPointsTheBackendsLiveClientsAtTheirRingPick) {
    start(config_text());
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;
    const std::uint32_t be1 = index_of("be1"), be2 = index_of("be2");
    for (int n = 1; n <= 4; ++n)
        tables_.add(AffinityRecord{vip_index, IpAddress::parse("198.51.100." + std::to_string(n)), be1, 1s});
    tables_.add(AffinityRecord{vip_index, IpAddress::parse("198.51.100.50"), be2, 1s});
    tables_.add(AffinityRecord{vip_index, IpAddress::parse("198.51.100.60"), be1, 400s});  // expired: left alone

    const Answer answer = request("backend", "drain", {{"vip", "web"}, {"name", "be1"}, {"force", true}});
    ASSERT_EQ(answer.error, "");
    EXPECT_EQ(answer.result["clients_moved"], 4);
    EXPECT_EQ(answer.result["state"], "draining");
    std::size_t on_be1 = 0;
    for (const AffinityRecord& record : tables_.affinities())
        if (record.backend_index == be1)
            ++on_be1;
    EXPECT_EQ(on_be1, 1u) << "only the expired entry stays on the drained backend";
}

TEST_F(ControlPlaneTest, FlowAndAffinityCommandsFilterByVipBackendAndClient) {
    start(config_text());
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;
    const std::uint32_t be1 = index_of("be1"), be2 = index_of("be2");
    const IpAddress vip = IpAddress::parse("192.0.2.10");
    tables_.add(
        FlowRecord{IpAddress::parse("198.51.100.1"), 40000, vip, 80, 6, be1, static_cast<std::uint16_t>(vip_index)});
    tables_.add(
        FlowRecord{IpAddress::parse("198.51.100.2"), 40001, vip, 80, 6, be2, static_cast<std::uint16_t>(vip_index)});
    tables_.add(AffinityRecord{vip_index, IpAddress::parse("198.51.100.1"), be1, 2s});

    const Answer flows = request("flow", "show", {{"backend", "be2"}});
    ASSERT_EQ(flows.error, "");
    ASSERT_EQ(flows.result.size(), 1u);
    EXPECT_EQ(flows.result[0]["client"], "198.51.100.2");
    EXPECT_EQ(flows.result[0]["vip"], "web");
    EXPECT_EQ(flows.result[0]["protocol"], "tcp");
    const Answer affinities = request("affinity", "show", {{"client", "198.51.100.1"}});
    ASSERT_EQ(affinities.result.size(), 1u);
    EXPECT_EQ(affinities.result[0]["backend"], "be1");
    EXPECT_DOUBLE_EQ(affinities.result[0]["age_seconds"].get<double>(), 2.0);

    EXPECT_EQ(request("flow", "flush", {{"backend", "be1"}}).result["removed"], 1);
    EXPECT_EQ(tables_.flows().size(), 1u);
    EXPECT_EQ(request("flow", "show", {{"vip", "nope"}}).error, "no VIP named 'nope'");
    EXPECT_NE(request("affinity", "save").error.find("no memcached_servers are configured"), std::string::npos);
}

TEST_F(ControlPlaneTest, ReloadAppliesWeightsKeepsRestartOnlyKeysAndRejectsABadFileWhole) {
    start(config_text());
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;

    write_config(config_text(/*be1_weight=*/3, /*ring_size=*/65537));
    ASSERT_TRUE(plane_->reload());
    EXPECT_EQ(plane_->config().ring_size, kRingSize) << "ring_size is restart-only";
    EXPECT_EQ(row_of(request("backend", "show").result, "be1")["weight"], 3);
    EXPECT_NEAR(static_cast<double>(maps_.slots_of(vip_index, index_of("be1"))) / kRingSize, 0.75, 0.02);

    std::string bad = config_text(/*be1_weight=*/5);
    bad.replace(bad.find("127.0.0.2"), 9, "127.0.0.300");
    write_config(bad);
    EXPECT_FALSE(plane_->reload());
    EXPECT_EQ(row_of(request("backend", "show").result, "be1")["weight"], 3) << "the running config stays";
    EXPECT_EQ(maps_.backends.size(), 3u);
}

TEST_F(ControlPlaneTest, TheVipIsAnnouncedWhileABackendPassesAndVipShowAndMetricsSayWhy) {
    start(config_text() + "announce: {check_interval: 20ms, hold: 0s}\n");
    plane_->begin_service();
    const IpAddress web = IpAddress::parse("192.0.2.10");
    ASSERT_TRUE(run_until([&] { return routes_.routes.contains(web); }));
    json row = row_of(request("vip", "show").result, "web");
    EXPECT_EQ(row["announce"]["state"], "announced") << row.dump();
    EXPECT_EQ(row["announce"]["reason"], "announced");
    EXPECT_EQ(row["announce"]["changes"], 1);
    EXPECT_GT(row["ring_applied_timestamp_seconds"].get<double>(), 1.7e9) << "the start wrote the ring";
    EXPECT_NE(plane_->metrics_text().find("stickylb_vip_announced{vip=\"web\"} 1"), std::string::npos);

    // The self-test runs on its timer: a detached program withdraws without any check changing.
    self_test_.is_attached = false;
    ASSERT_TRUE(run_until([&] { return routes_.routes.empty(); }));
    EXPECT_EQ(row_of(request("vip", "show").result, "web")["announce"]["reason"], "data_plane_detached");
    self_test_.is_attached = true;
    ASSERT_TRUE(run_until([&] { return routes_.routes.contains(web); }));

    up_one_.close();
    up_two_.close();
    ASSERT_TRUE(run_until([&] { return routes_.routes.empty(); })) << "every backend down: the VIP is withdrawn";
    row = row_of(request("vip", "show").result, "web");
    EXPECT_EQ(row["announce"]["state"], "withdrawn");
    EXPECT_EQ(row["announce"]["reason"], "no_backend_passing");
    EXPECT_EQ(row["announce"]["changes"], 4);
    const std::string metrics = plane_->metrics_text();
    EXPECT_NE(metrics.find("stickylb_vip_announced{vip=\"web\"} 0"), std::string::npos);
    EXPECT_NE(metrics.find("stickylb_vip_announce_state{vip=\"web\",reason=\"no_backend_passing\"} 1"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("stickylb_vip_announce_changes_total{vip=\"web\"} 4"), std::string::npos);
}

TEST_F(ControlPlaneTest, WithoutAnAnnounceSectionNothingIsAnnouncedOrShown) {
    start(config_text());
    plane_->begin_service();
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    EXPECT_TRUE(routes_.routes.empty());
    EXPECT_FALSE(row_of(request("vip", "show").result, "web").contains("announce"));
    EXPECT_EQ(plane_->metrics_text().find("stickylb_vip_announce"), std::string::npos);
}

// Two peers of the fleet run another hash seed: this host, the minority, would pick
// other backends for the flows the router sends it, so it withdraws and says why;
// once the peers stop beating, their entries go stale and this host announces.
TEST_F(ControlPlaneTest, AHostWhoseConfigIsNotTheFleetsWithdrawsAndSaysWhichPartDiffers) {
    STICKYLB_REQUIRE_MEMCACHED();
    testing::MemcachedProcess memcached;
    DaemonConfig theirs = parse_config(config_text(), "peers.yaml");
    theirs.hash_seed ^= 0x5eed;
    fleet::Roster roster = peers_running(theirs);
    MemcachedClient(memcached.address(), {}).set(fleet::roster_key("web-fleet"), fleet::encode(roster), 60s);

    start(config_text() +
          "announce: {check_interval: 20ms, hold: 0s, fleet: web-fleet, host_id: lb1, peer_heartbeat: 1s}\n"
          "memcached_servers: ['" +
          memcached.address() + "']\n");
    plane_->begin_service();
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    json cluster;
    ASSERT_TRUE(run_until([&] {
        cluster = request("cluster", "show").result;
        return cluster.value("standing", "") == "differs";
    })) << cluster.dump();
    EXPECT_EQ(cluster["host"], "lb1");
    EXPECT_EQ(cluster["differing_parts"], json::array({"hash_seed"}));
    EXPECT_EQ(cluster["fleet_config_sha256"], config_fingerprint(theirs).digest);
    EXPECT_EQ(cluster["hosts"].size(), 3u);
    ASSERT_EQ(cluster["vips"].size(), 1u);
    EXPECT_EQ(cluster["vips"][0]["announce"]["reason"], "config_differs") << cluster.dump();
    EXPECT_TRUE(routes_.routes.empty());
    const std::string metrics = plane_->metrics_text();
    EXPECT_NE(metrics.find("stickylb_fleet_standing{standing=\"differs\"} 1"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("stickylb_fleet_hosts 3\n"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("stickylb_fleet_hosts_other_config 1\n"), std::string::npos) << metrics;

    const IpAddress web = IpAddress::parse("192.0.2.10");
    ASSERT_TRUE(run_until([&] { return routes_.routes.contains(web); })) << "the peers' entries went stale";
    cluster = request("cluster", "show").result;
    EXPECT_EQ(cluster["standing"], "agrees");
    EXPECT_EQ(cluster["hosts"].size(), 1u);
    EXPECT_EQ(cluster["vips"][0]["announce"]["reason"], "announced");
}

// Two peers that run this host's config find be2 down, so at least half of the three
// hosts do: be2 leaves this host's ring though its own checks pass, as it leaves
// theirs. One peer alone finding be1 down leaves it in every ring; be3, down to this
// host and unchecked by one peer, is down. Once the peers' entries go stale, this
// host's own checks count again.
TEST_F(ControlPlaneTest, TheRingsFollowWhatTheFleetsChecksSayNotOneHostsAlone) {
    STICKYLB_REQUIRE_MEMCACHED();
    testing::MemcachedProcess memcached;
    const std::string text = fleet_config_text(memcached.address());
    const DaemonConfig ours = parse_config(text, "lb1.yaml");
    const VipConfig& web = ours.vips.at(0);
    fleet::Roster roster = peers_running(ours);
    roster.members[0].backends_down = {observation_key(web, "be1"), observation_key(web, "be2")};
    roster.members[0].backends_unchecked = {observation_key(web, "be3")};
    roster.members[1].backends_down = {observation_key(web, "be2")};
    MemcachedClient(memcached.address(), {}).set(fleet::roster_key("web-fleet"), fleet::encode(roster), 60s);

    start(text);
    plane_->begin_service();
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    ASSERT_TRUE(run_until([&] { return row_of(request("backend", "show").result, "be2")["state"] == "down"; }))
        << request("health", "show").result.dump();
    const json health = request("health", "show").result;
    const json be1 = row_of(health, "be1"), be2 = row_of(health, "be2"), be3 = row_of(health, "be3");
    EXPECT_EQ(be2["health"], "up") << "this host's own checks";
    EXPECT_EQ(be2["verdict"], "down");
    EXPECT_EQ(be2["view"], "fleet");
    EXPECT_EQ(be2["votes_up"], 1);
    EXPECT_EQ(be2["votes_down"], 2);
    EXPECT_EQ(be1["verdict"], "up");
    EXPECT_EQ(be1["votes_up"], 2);
    EXPECT_EQ(be1["votes_down"], 1);
    EXPECT_EQ(be3["verdict"], "down");
    EXPECT_EQ(be3["votes_up"], 1);
    EXPECT_EQ(be3["votes_down"], 1);
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;
    EXPECT_EQ(maps_.slots_of(vip_index, index_of("be1")), kRingSize);
    EXPECT_TRUE(run_until([&] { return routes_.routes.contains(IpAddress::parse("192.0.2.10")); }))
        << "be1 passes this host's checks and is in the ring";
    const std::string metrics = plane_->metrics_text();
    EXPECT_NE(metrics.find("stickylb_backend_fleet_votes{vip=\"web\",backend=\"be2\",health=\"down\"} 2\n"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("stickylb_fleet_hosts_sharing_checks 3\n"), std::string::npos) << metrics;
    // What this host wrote: its own checks, for its peers.
    json cluster;
    ASSERT_TRUE(run_until([&] {
        cluster = request("cluster", "show").result;
        for (const json& host : cluster["hosts"])
            if (host["host"] == "lb1")
                return host["backends_down"] == json::array({observation_key(web, "be3")});
        return false;
    })) << cluster.dump();

    ASSERT_TRUE(run_until([&] { return row_of(request("backend", "show").result, "be2")["state"] == "up"; }))
        << "the peers' entries went stale: " << request("health", "show").result.dump();
    EXPECT_EQ(row_of(request("health", "show").result, "be2")["view"], "own_checks");
}

// A joining host announces once it holds its peers' flow exceptions: a peer's, in this
// host's own backend indexes, fill its peer-flow table. Flows kept on a drained backend
// are this host's exceptions: published, and named in its roster entry.
TEST_F(ControlPlaneTest, FlowExceptionsGoToThePeersAndThePeersComeIntoThePeerFlowTable) {
    STICKYLB_REQUIRE_MEMCACHED();
    testing::MemcachedProcess memcached;
    // The peers' entries stay fresh for the whole test, however slow the machine.
    const std::string text = fleet_config_text(memcached.address(), "10s");
    const DaemonConfig ours = parse_config(text, "lb1.yaml");
    const std::string be1_key = observation_key(ours.vips.at(0), "be1");
    const std::string be2_key = observation_key(ours.vips.at(0), "be2");
    MemcachedClient client(memcached.address(), {});
    fleet::Roster roster = peers_running(ours);
    const std::vector<FlowException> theirs = {{be1_key, IpAddress::parse("198.51.100.7"), 40000},
                                               {"6/192.0.2.99/80/be1", IpAddress::parse("198.51.100.8"), 40001}};
    // lb2 names a version that is not in memcached: this host, joining, does not
    // announce until it holds lb2's list.
    roster.members[0].flows_version = 76;
    roster.members[0].flows_chunks = 1;
    client.set(fleet::roster_key("web-fleet"), fleet::encode(roster), 60s);

    start(text);
    plane_->begin_service();
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    ASSERT_TRUE(run_until([&] {
        return row_of(request("vip", "show").result, "web")["announce"]["reason"] == "exceptions_pending";
    })) << request("vip", "show").result.dump();
    EXPECT_TRUE(routes_.routes.empty());

    roster = peers_running(ours);
    roster.members[0].flows_version = 77;
    roster.members[0].flows_chunks = 1;
    client.set(fleet::exception_chunk_key("web-fleet", "lb2", 77, 0),
               fleet::encode_exception_chunks("lb2", 77, theirs).at(0), 60s);
    client.set(fleet::roster_key("web-fleet"), fleet::encode(roster), 60s);
    ASSERT_TRUE(run_until([&] { return routes_.routes.contains(IpAddress::parse("192.0.2.10")); }))
        << request("cluster", "show").result.dump();
    const std::uint32_t vip_index = maps_.vips().begin()->second.index;
    ASSERT_TRUE(run_until([&] { return tables_.peer_flows().size() == 1; }))
        << request("cluster", "show").result.dump();
    const FlowRecord loaded = tables_.peer_flows().at(0);
    EXPECT_EQ(loaded.backend_index, index_of("be1"));
    EXPECT_EQ(loaded.client, IpAddress::parse("198.51.100.7"));
    EXPECT_EQ(loaded.client_port, 40000);
    EXPECT_EQ(loaded.vip, IpAddress::parse("192.0.2.10"));
    EXPECT_EQ(loaded.vip_port, 80);
    json shown = request("cluster", "show").result["flow_exceptions"];
    EXPECT_EQ(shown["joined"], true);
    EXPECT_EQ(shown["peer_flow_entries"], 1);
    EXPECT_EQ(shown["unplaced"], 1) << "a VIP this host does not have";

    for (std::uint16_t port = 50000; port < 50003; ++port)
        tables_.add(FlowRecord{.client = IpAddress::parse("203.0.113.5"),
                               .client_port = port,
                               .vip = IpAddress::parse("192.0.2.10"),
                               .vip_port = 80,
                               .protocol = 6,
                               .backend_index = index_of("be2"),
                               .vip_index = static_cast<std::uint16_t>(vip_index)});
    ASSERT_EQ(request("backend", "drain", {{"vip", "web"}, {"name", "be2"}}).error, "");
    fleet::Member self;
    ASSERT_TRUE(run_until([&] {
        const auto stored = client.get(fleet::roster_key("web-fleet"));
        for (const fleet::Member& member : fleet::decode(stored.value_or("")).members)
            if (member.host == "lb1")
                self = member;
        return self.flows_chunks == 1;
    })) << request("cluster", "show").result.dump();
    const auto chunk = client.get(fleet::exception_chunk_key("web-fleet", "lb1", self.flows_version, 0));
    ASSERT_TRUE(chunk) << "the roster names a version that is not whole";
    const auto published = fleet::decode_exception_chunk(*chunk, "lb1", self.flows_version, 0, 1);
    ASSERT_EQ(published.size(), 3u) << "the drained backend's flows, off the ring";
    for (const FlowException& exception : published)
        EXPECT_EQ(exception.backend, be2_key);
    const std::string metrics = plane_->metrics_text();
    EXPECT_NE(metrics.find("stickylb_fleet_flow_exceptions 3\n"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("stickylb_fleet_peer_flow_entries 1\n"), std::string::npos) << metrics;
}

// One host of a fleet writes the agents' membership views: the lowest id of those
// running the fleet's config. A host that takes over continues from the view the
// servers hold, so the epochs the agents see only rise.
TEST_F(ControlPlaneTest, TheLowestHostOfTheFleetWritesTheMembershipViewAndATakeOverKeepsItsEpochRising) {
    STICKYLB_REQUIRE_MEMCACHED();
    testing::MemcachedProcess memcached;
    const std::string text = fleet_config_text(memcached.address(), "10s");
    const DaemonConfig ours = parse_config(text, "lb1.yaml");
    MemcachedClient client(memcached.address(), {});
    const std::string view_key = session::members_key("web");
    fleet::Roster roster = peers_running(ours);
    roster.members[0].host = "lb0";  // lower than this host's lb1
    client.set(fleet::roster_key("web-fleet"), fleet::encode(roster), 60s);

    start(text);
    plane_->begin_service();
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    ASSERT_TRUE(run_until([&] { return request("cluster", "show").result["membership_view_writer"] == "lb0"; }))
        << request("cluster", "show").result.dump();
    // Long enough for a view change and a refresh to have been written, were lb1 writing.
    const auto until = std::chrono::steady_clock::now() + 300ms;
    while (std::chrono::steady_clock::now() < until)
        io_.run_for(10ms);
    EXPECT_FALSE(client.get(view_key)) << "lb1 wrote a view while lb0 writes them";
    EXPECT_EQ(request("session", "show").result["view_writer"], false);
    EXPECT_NE(plane_->metrics_text().find("stickylb_membership_view_writer 0\n"), std::string::npos);

    // lb0 leaves; its last view says epoch 40 with be2 down (the fleet finds it up).
    session::MembershipView left{.cluster = "web",
                                 .epoch = 40,
                                 .written_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                                   std::chrono::system_clock::now().time_since_epoch())
                                                   .count(),
                                 .backends = {{"be1", {session::MemberState::up, 2}},
                                              {"be2", {session::MemberState::down, 4}},
                                              {"be3", {session::MemberState::up, 5}}}};
    client.set(view_key, session::store_view(nullptr, left), 60s);
    client.set(fleet::roster_key("web-fleet"), fleet::encode(peers_running(ours)), 60s);
    std::optional<session::MembershipView> written;
    ASSERT_TRUE(run_until([&] {
        const auto stored = client.get(view_key);
        written = stored ? session::parse_view(*stored) : std::nullopt;
        return written && written->epoch != 40;
    })) << request("session", "show").result.dump();
    EXPECT_EQ(written->epoch, 41u) << "one past the view it took over";
    ASSERT_TRUE(written->find("be2") && written->find("be3"));
    EXPECT_EQ(written->find("be2")->state, session::MemberState::up);
    EXPECT_EQ(written->find("be2")->incarnation, 5u) << "back from down: a new life";
    EXPECT_EQ(written->find("be3")->incarnation, 5u) << "incarnations never go back";
    EXPECT_EQ(request("session", "show").result["view_writer"], true);
    EXPECT_EQ(request("cluster", "show").result["membership_view_writer"], "lb1");
}

// Drains and weights are the fleet's: a version in the roster is applied here, and a
// drain or weight set here goes into the roster under the next version.
TEST_F(ControlPlaneTest, DrainsAndWeightsGoThroughTheFleetsRosterBothWays) {
    STICKYLB_REQUIRE_MEMCACHED();
    testing::MemcachedProcess memcached;
    const std::string text = fleet_config_text(memcached.address(), "10s");
    const DaemonConfig ours = parse_config(text, "lb1.yaml");
    const VipConfig& web = ours.vips.at(0);
    MemcachedClient client(memcached.address(), {});
    fleet::Roster roster = peers_running(ours);
    roster.overrides = {.version = 5, .by = "lb2", .backends = {{observation_key(web, "be2"), {true, std::nullopt}}}};
    client.set(fleet::roster_key("web-fleet"), fleet::encode(roster), 60s);

    start(text);
    plane_->begin_service();
    ASSERT_NO_FATAL_FAILURE(wait_for_health());
    ASSERT_TRUE(run_until([&] { return row_of(request("backend", "show").result, "be2")["state"] == "draining"; }))
        << request("backend", "show").result.dump();

    ASSERT_EQ(request("backend", "set", {{"vip", "web"}, {"name", "be1"}, {"weight", 3}}).error, "");
    fleet::SharedOverrides stored;
    ASSERT_TRUE(run_until([&] {
        stored = fleet::decode(client.get(fleet::roster_key("web-fleet")).value_or("")).overrides;
        return stored.version == 6;
    })) << request("cluster", "show").result.dump();
    EXPECT_EQ(stored.by, "lb1");
    EXPECT_EQ(stored.backends,
              (std::map<std::string, fleet::SharedOverride>{{observation_key(web, "be1"), {false, 3}},
                                                            {observation_key(web, "be2"), {true, std::nullopt}}}));
    EXPECT_EQ(row_of(request("backend", "show").result, "be2")["state"], "draining") << "the fleet's drain stays";
}

TEST_F(ControlPlaneTest, ClusterShowOutsideAFleetSaysWhy) {
    start(config_text());
    const json cluster = request("cluster", "show").result;
    EXPECT_EQ(cluster["fleet"], nullptr);
    EXPECT_NE(cluster["standing_text"].get<std::string>().find("announces nothing"), std::string::npos);
    ASSERT_EQ(cluster["vips"].size(), 1u);
    EXPECT_EQ(cluster["vips"][0]["ring_sha256"].get<std::string>().size(), 64u);
}

TEST_F(ControlPlaneTest, UnknownCommandsAreErrorsThatNameThem) {
    start(config_text());
    EXPECT_EQ(request("backend", "explode").error, "unknown command 'backend explode'");
    EXPECT_EQ(request("version", "show").result["version"].is_string(), true);
    EXPECT_EQ(request("session", "show").result["enabled"], false);
}

}  // namespace
}  // namespace stickylb
