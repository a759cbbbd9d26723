// SPDX-License-Identifier: Apache-2.0
// stickylbd announcing its VIP, as the host's BGP speaker sees it: a route in
// routing table 89 of the LB's namespace while the host can serve the VIP, none
// when no backend passes its checks, kept across a quick restart, withdrawn by the
// guard `hold` after a kill -9. Then with real BIRD speakers (lab.sh up --bgp): the
// client's namespace is the router and reaches the VIP only through the route BGP
// gives it, which follows the LB's health, its daemon, its speaker and its link.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <vector>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/daemon_lab.h"
#include "support/guard_reaper.h"
#include "support/lab.h"
#include "support/privileges.h"

namespace stickylb::testing {
namespace {

using namespace lab;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kBackends = 2;
constexpr auto kHold = 2s;

class Announce : public DaemonLabTest {
protected:
    virtual std::string lab_options() const { return ""; }

    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        reaper_.emplace();
        ASSERT_NO_FATAL_FAILURE(
            build_lab("up --mode l2 --backends " + std::to_string(kBackends) + lab_options(), "announce"));
        write_config(config_text());
        ASSERT_NO_FATAL_FAILURE(start_daemon());
    }

    void TearDown() override {
        DaemonLabTest::TearDown();
        if (reaper_)
            reaper_->reap(kHold, daemon_groups_, {dir_});
    }

    std::string config_text() const {
        std::ostringstream yaml;
        yaml << config_preamble() << "announce:\n"
             << "  check_interval: 100ms\n"
             << "  hold: " << std::chrono::milliseconds(kHold).count() << "ms\n"
             << "  lock_file: " << dir_ << "/announce.lock\n"
             << "vips:\n"
             << "  - name: web\n"
             << "    address: " << kLabVip << "\n"
             << "    port: 80\n"
             << "    health: {kind: tcp, interval: 100ms, timeout: 100ms, rise: 2, fall: 2}\n"
             << "    backends:\n";
        for (int n = 1; n <= kBackends; ++n)
            yaml << "      - name: be" << n << "\n        address: " << backend_address(n) << "\n";
        yaml << "  - name: web6\n"
             << "    address: " << kLabVip6 << "\n"
             << "    port: 80\n"
             << "    health: {kind: tcp, interval: 100ms, timeout: 100ms, rise: 2, fall: 2}\n"
             << "    backends:\n";
        for (int n = 1; n <= kBackends; ++n)
            yaml << "      - name: be" << n << "-6\n        address: " << lab_host6(kLabBackendBase + n) << "\n";
        return yaml.str();
    }

    // What the LB host's BGP speaker advertises: the VIP's route in table 89.
    virtual bool route_present() const {
        const auto table = run_command(in_ns(lab_ns("lb"), "ip route show table 89"));
        return table.output.find(std::string(kLabVip) + " dev lo proto 89") != std::string::npos;
    }

    // Polls (bounded by LIMIT) until the route is (not) there; how long it took.
    std::chrono::milliseconds wait_for_route(bool present, std::chrono::milliseconds limit = 10s) const {
        const auto start = Clock::now();
        while (route_present() != present && Clock::now() - start < limit)
            std::this_thread::sleep_for(10ms);
        EXPECT_EQ(route_present(), present) << "route " << (present ? "never came" : "never went");
        return elapsed_ms(start);
    }

    // The `announce` object of `vip show` for the IPv4 VIP.
    nlohmann::json announce_state() const {
        for (const auto& vip : cli_json("vip show"))
            if (vip.value("name", "") == "web")
                return vip.value("announce", nlohmann::json());
        return nullptr;
    }

    std::optional<GuardReaper> reaper_;
};

TEST_F(Announce, TheVipIsAnnouncedWhileABackendPassesAndWithdrawnWhenNone) {
    const auto announced_after = wait_for_route(true);
    std::cout << "announced " << announced_after.count() << " ms after the daemon was ready\n";
    EXPECT_EQ(announce_state().value("state", ""), "announced") << announce_state();
    EXPECT_EQ(metric("stickylb_vip_announced{vip=\"web\"}"), 1.0) << metrics();
    EXPECT_EQ(metric("stickylb_vip_announce_state{vip=\"web\",reason=\"announced\"}"), 1.0);
    const auto linted = lint_metrics();
    EXPECT_EQ(linted.exit_code, 0) << "promtool on the live scrape: " << linted.output;
    EXPECT_EQ(run_command(in_ns(lab_ns("lb"), "ip route show table main")).output.find(kLabVip), std::string::npos)
        << "the announcement changes no forwarding on the LB host";

    ASSERT_EQ(run_command(lab_command("stop-backend 1")).exit_code, 0);
    wait_for_state("be1", "down");
    EXPECT_TRUE(route_present()) << "one backend passing is enough";

    const auto last_stopped = Clock::now();
    ASSERT_EQ(run_command(lab_command("stop-backend 2")).exit_code, 0);
    wait_for_route(false);
    std::cout << "withdrawn "
              << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_stopped).count()
              << " ms after the VIP's last backend stopped\n";
    const auto withdrawn = announce_state();
    EXPECT_EQ(withdrawn.value("state", ""), "withdrawn") << withdrawn;
    EXPECT_EQ(withdrawn.value("reason", ""), "no_backend_passing") << withdrawn;
    EXPECT_EQ(metric("stickylb_vip_announce_state{vip=\"web\",reason=\"no_backend_passing\"}"), 1.0);
    EXPECT_EQ(metric("stickylb_vip_announced{vip=\"web\"}"), 0.0);

    const auto restarted = Clock::now();
    ASSERT_EQ(run_command(lab_command("start-backend 1")).exit_code, 0);
    wait_for_route(true);
    std::cout << "announced again "
              << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted).count()
              << " ms after a backend came back\n";
    EXPECT_GE(metric("stickylb_vip_announce_changes_total{vip=\"web\"}").value_or(0), 3.0) << metrics();
}

TEST_F(Announce, AQuickRestartKeepsTheRouteAndAKillNineWithdrawsItAfterTheHold) {
    wait_for_route(true);
    std::atomic<bool> watching{true};
    std::atomic<int> absent_samples{0};
    std::thread watcher([&] {
        while (watching) {
            if (!route_present())
                ++absent_samples;
            std::this_thread::sleep_for(20ms);
        }
    });
    stop_daemon(SIGTERM);
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    wait_for_route(true);
    std::this_thread::sleep_for(kHold + 500ms);  // past the first daemon's guard
    watching = false;
    watcher.join();
    EXPECT_EQ(absent_samples, 0) << "the route flapped across a restart shorter than the hold";
    EXPECT_TRUE(route_present()) << "the first daemon's guard withdrew its successor's route";

    const auto killed = Clock::now();
    stop_daemon(SIGKILL);
    EXPECT_TRUE(route_present()) << "withdrawn before the hold";
    wait_for_route(false, kHold + 5s);
    const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed);
    std::cout << "withdrawn " << after.count() << " ms after kill -9 (hold " << kHold.count() << " s)\n";
    EXPECT_GE(after, kHold - 100ms) << "the guard did not wait for the hold";

    // A daemon started afterwards announces again.
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    wait_for_route(true);
}

// SIGSTOP: the daemon lives but decides nothing. Its guard must withdraw the route once
// the announce loop has been silent for wedged_after (here its floor, 5 s) and end it.
TEST_F(Announce, AWedgedDaemonIsWithdrawnAndEndedByItsGuard) {
    wait_for_route(true);
    const auto stopped = Clock::now();
    ASSERT_EQ(kill(daemon_pid_, SIGSTOP), 0);
    EXPECT_TRUE(route_present()) << "withdrawn at once";
    constexpr auto kWedgedAfter = 5s;
    wait_for_route(false, kWedgedAfter + 5s);
    const auto after = elapsed_ms(stopped);
    int status = 0;
    ASSERT_EQ(waitpid(daemon_pid_, &status, 0), daemon_pid_);
    daemon_pid_ = -1;
    std::cout << "SIGSTOP stickylbd: withdrawn " << after.count() << " ms later (silent for " << kWedgedAfter.count()
              << " s); the guard ended it with signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << "\n";
    EXPECT_GE(after, kWedgedAfter - 100ms) << "withdrawn before the daemon had been silent long enough";
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) << "status " << status;
    EXPECT_NE(daemon_log().find("has not decided its announcements"), std::string::npos);

    // What a supervisor does next: a new daemon announces again.
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    wait_for_route(true);
}

// The client's namespace as the router: its VIP routes are what BGP gives it.
class AnnounceOverBgp : public Announce {
protected:
    std::string lab_options() const override { return " --bgp"; }

    static std::string router_routes(const char* family) {
        return run_command(in_ns(lab_ns("client"), std::string("ip ") + family + " route show proto bird")).output;
    }
    bool route_present() const override {
        return router_routes("-4").find(std::string(kLabVip) + " via " + lab_host(2)) != std::string::npos;
    }
    static bool route6_present() {
        return router_routes("-6").find(std::string(kLabVip6) + " via " + lab_host6(2)) != std::string::npos;
    }

    // Runs FAULT, waits for the router's route to go and prints how long it took;
    // then REPAIR, and the same for its return.
    void fault_and_repair(const std::string& what, const std::function<void()>& fault,
                          const std::function<void()>& repair) {
        ASSERT_TRUE(route_present());
        const auto faulted = Clock::now();
        fault();
        wait_for_route(false, kHold + 10s);
        const auto gone = elapsed_ms(faulted);
        const auto repaired = Clock::now();
        repair();
        wait_for_route(true, 20s);
        std::cout << what << ": the router's VIP route went " << gone.count() << " ms after the fault, came back "
                  << elapsed_ms(repaired).count() << " ms after the repair\n";
    }
};

TEST_F(AnnounceOverBgp, TheRouterRoutesTheVipOnlyWhileTheLbCanServeIt) {
    // BGP sessions open within a few seconds of the lab (connect retry 1 s).
    const auto learned_after = wait_for_route(true, 20s);
    std::cout << "the router learned the VIP " << learned_after.count() << " ms after the daemon was ready\n";
    for (int tries = 0; tries < 100 && !route6_present(); ++tries)
        std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(route6_present()) << router_routes("-6");
    EXPECT_FALSE(request_from(1).empty()) << "the client reaches the VIP through the BGP route";

    fault_and_repair(
        "every backend stopped",
        [] {
            for (int n = 1; n <= kBackends; ++n)
                ASSERT_EQ(run_command(lab_command("stop-backend " + std::to_string(n))).exit_code, 0);
        },
        [] { ASSERT_EQ(run_command(lab_command("start-backend 1")).exit_code, 0); });
    fault_and_repair(
        "kill -9 stickylbd", [this] { stop_daemon(SIGKILL); }, [this] { ASSERT_NO_FATAL_FAILURE(start_daemon()); });
    fault_and_repair(
        "the LB's BIRD stopped", [] { ASSERT_EQ(run_command(lab_command("stop-lb-bgp")).exit_code, 0); },
        [] { ASSERT_EQ(run_command(lab_command("start-lb-bgp")).exit_code, 0); });
    fault_and_repair(
        "the LB cut off the segment (BFD)", [] { ASSERT_EQ(run_command(lab_command("cut-lb")).exit_code, 0); },
        [] { ASSERT_EQ(run_command(lab_command("restore-lb")).exit_code, 0); });
    EXPECT_FALSE(request_from(2).empty()) << "served again after every repair";
}

}  // namespace
}  // namespace stickylb::testing
