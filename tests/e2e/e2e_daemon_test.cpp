// SPDX-License-Identifier: Apache-2.0
// stickylbd in the namespace lab, as an operator uses it: a backend's server
// dies and comes back, the daemon is killed with -9 under load and restarted,
// the config file is reloaded with SIGHUP (good and broken).
#include <signal.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "stickylb/stats.h"
#include "support/daemon_lab.h"
#include "support/lab.h"
#include "support/privileges.h"

namespace stickylb::testing {
namespace {

using namespace lab;
using namespace std::chrono_literals;

constexpr int kBackends = 3;
constexpr int kClients = 12;  // extra client addresses 1..

class Daemon : public DaemonLabTest {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        ASSERT_NO_FATAL_FAILURE(build_lab("up --mode l2 --backends " + std::to_string(kBackends), "daemon"));
        write_config(config_text());
        start_daemon();
    }

    std::string config_text(const std::string& extra_backend = "", std::uint32_t be2_weight = 1) const {
        std::ostringstream yaml;
        yaml << config_preamble() << "vips:\n"
             << "  - name: web\n"
             << "    address: " << kLabVip << "\n"
             << "    port: 80\n"
             << "    persistence: {enabled: true, timeout_s: 300}\n"
             << "    health: {kind: tcp, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}\n"
             << "    backends:\n";
        for (int n = 1; n <= kBackends; ++n) {
            if (n == 3 && extra_backend.empty() && skip_third_)
                continue;
            yaml << "      - name: be" << n << "\n        address: " << backend_address(n) << "\n";
            if (n == 2)
                yaml << "        weight: " << be2_weight << "\n";
        }
        yaml << extra_backend;
        return yaml.str();
    }

    bool skip_third_ = false;
};

TEST_F(Daemon, DeadBackendIsMarkedDownItsClientsMoveAndItGetsOnlyNewClientsBack) {
    std::map<int, std::string> before;
    for (int client = 1; client <= kClients; ++client) {
        before[client] = request_from(client);
        ASSERT_FALSE(before[client].empty()) << "client " << client;
    }
    ASSERT_EQ(run_command(lab_command("stop-backend 1")).exit_code, 0);
    const auto down_after = wait_for_state("be1", "down");
    std::cout << "be1 marked down " << down_after.count() << " ms after its server stopped\n";
    EXPECT_NE(metrics().find("stickylb_backend_health_check_up{vip=\"web\",backend=\"be1\"} 0"), std::string::npos)
        << metrics();
    const auto linted = lint_metrics();
    EXPECT_EQ(linted.exit_code, 0) << "promtool on the live scrape: " << linted.output;

    std::map<int, std::string> moved;
    for (int client = 1; client <= kClients; ++client) {
        moved[client] = request_from(client);
        EXPECT_FALSE(moved[client].empty()) << "client " << client << " failed after the failover";
        EXPECT_NE(moved[client], "be1");
        if (before[client] != "be1") {
            EXPECT_EQ(moved[client], before[client]) << "client " << client << " of a live backend moved";
        }
    }

    // What `stats show` promises (the grammar): the global counters of the one table,
    // and the VIP's own with its backends'. be1 is down; the others carried the traffic.
    const auto stats = cli_json("stats show vip web");
    for (const GlobalCounter& counter : kGlobalCounters)
        EXPECT_TRUE(stats.contains(counter.name)) << counter.name << " missing from stats show: " << stats;
    EXPECT_GT(stats.value("forwarded_tx", 0ULL) + stats.value("forwarded_redirect", 0ULL), 0ULL) << stats;
    ASSERT_EQ(stats["vips"].size(), 1u) << stats;
    EXPECT_EQ(stats["vips"][0]["vip"], "web");
    std::map<std::string, nlohmann::json> backends;
    for (const auto& backend : stats["vips"][0]["backends"])
        backends[backend["name"]] = backend;
    ASSERT_EQ(backends.size(), static_cast<std::size_t>(kBackends)) << stats;
    EXPECT_EQ(backends["be1"]["state"], "down");
    std::uint64_t backend_packets = 0;
    for (const auto& [name, backend] : backends)
        backend_packets += backend["packets"].get<std::uint64_t>();
    EXPECT_GT(backend_packets, 0u) << stats;

    ASSERT_EQ(run_command(lab_command("start-backend 1")).exit_code, 0);
    wait_for_state("be1", "up");
    for (int client = 1; client <= kClients; ++client)
        EXPECT_EQ(request_from(client), moved[client]) << "client " << client << " failed back";
    std::set<std::string> newcomers;
    for (int client = kClients + 1; client <= 30; ++client)
        newcomers.insert(request_from(client));
    EXPECT_TRUE(newcomers.count("be1")) << "new clients reach the returned backend";
}

TEST_F(Daemon, KillNineUnderLoadDropsNothingAndTheRestartAdoptsEveryFlow) {
    // Requests from several clients, many per curl run, while the daemon dies and comes back.
    // The lab's backends close every connection (HTTP/1.0): 400 requests take long
    // enough (seconds) for the kill and the restart to fall inside the load.
    constexpr int kRounds = 5, kConnections = 4, kPerConnection = 20;
    {
        std::ofstream script(dir_ + "/load.sh");
        script << "urls=''\n"
               << "for i in $(seq " << kPerConnection << "); do urls=\"$urls -o /dev/null http://" << kLabVip
               << "/\"; done\n"
               << "for round in $(seq " << kRounds << "); do\n"
               << "  for c in $(seq " << kConnections << "); do\n"
               << "    curl -s --interface " << kLabNet4 << ".$((" << kLabClientHost
               << " + c)) --max-time 10 -w '%{http_code}\\n' $urls\n"
               << "  done\n"
               << "done\n";
    }
    const std::string load = in_ns(lab_ns("client"), "sh " + shell_quote(dir_ + "/load.sh")) + " | grep -c '^200$'";
    for (int client = 1; client <= kClients; ++client)
        ASSERT_FALSE(request_from(client).empty());
    const auto flows_before = cli_json("flow show");
    ASSERT_GE(flows_before.size(), static_cast<std::size_t>(kClients)) << "the warm-up recorded its flows";
    std::thread killer([this] {
        std::this_thread::sleep_for(500ms);
        stop_daemon(SIGKILL);
        std::this_thread::sleep_for(500ms);
        start_daemon();
    });
    const auto succeeded = run_command(load);
    killer.join();
    EXPECT_EQ(trim(succeeded.output), std::to_string(kRounds * kConnections * kPerConnection))
        << "requests failed while the daemon was killed and restarted";
    EXPECT_NE(daemon_log().find("adopted pinned state"), std::string::npos) << daemon_log();

    const auto flows_after = cli_json("flow show");
    for (const auto& flow : flows_before) {
        bool found = false;
        for (const auto& after : flows_after)
            found = found || after == flow;
        EXPECT_TRUE(found) << "flow moved or lost across the restart: " << flow.dump();
    }
}

TEST_F(Daemon, SighupAppliesAChangedWeightAndANewBackendAndABrokenFileChangesNothing) {
    skip_third_ = true;
    write_config(config_text("", 1));
    kill(daemon_pid_, SIGHUP);
    for (int tries = 0; tries < 50 && backend_states().count("be3"); ++tries)
        std::this_thread::sleep_for(100ms);
    ASSERT_FALSE(backend_states().count("be3")) << "be3 removed by the reload";

    skip_third_ = false;
    write_config(config_text("", 3));
    kill(daemon_pid_, SIGHUP);
    for (int tries = 0; tries < 50 && !backend_states().count("be3"); ++tries)
        std::this_thread::sleep_for(100ms);
    wait_for_state("be3", "up");
    std::uint32_t be2_weight = 0;
    for (const auto& backend : cli_json("backend show"))
        if (backend["name"] == "be2")
            be2_weight = backend["weight"];
    EXPECT_EQ(be2_weight, 3u);

    const auto before = cli_json("backend show");
    write_config(config_text() + "    bogus_key: 1\n");
    kill(daemon_pid_, SIGHUP);
    std::this_thread::sleep_for(500ms);
    EXPECT_NE(daemon_log().find("reload rejected"), std::string::npos) << daemon_log();
    EXPECT_NE(daemon_log().find("bogus_key"), std::string::npos) << "the error names the key";
    EXPECT_NE(daemon_log().find(":20:"), std::string::npos) << "and its line:\n" << daemon_log();
    const auto after = cli_json("backend show");
    ASSERT_EQ(after.size(), before.size());
    for (std::size_t i = 0; i < after.size(); ++i) {
        EXPECT_EQ(after[i]["name"], before[i]["name"]);
        EXPECT_EQ(after[i]["weight"], before[i]["weight"]);
    }
    EXPECT_FALSE(request_from(1).empty()) << "the old state keeps serving";
}

}  // namespace
}  // namespace stickylb::testing
