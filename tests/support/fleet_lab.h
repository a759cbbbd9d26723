// SPDX-License-Identifier: Apache-2.0
#pragma once
// Three LB hosts behind the lab's router (lab.sh up --lbs 3): each runs the XDP data
// plane, stickylbd announcing the VIP (LbDaemon) and BIRD; the router (the client's
// namespace) routes the VIP over every LB announcing it, by its multipath hash. The
// fixture builds the lab, starts the daemons, and reads what the router and the LBs say.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/guard_reaper.h"
#include "support/lab.h"
#include "support/lb_daemon.h"
#include "support/privileges.h"

namespace stickylb::testing::lab {

using namespace std::chrono_literals;

inline constexpr int kLbs = 3;
inline constexpr int kBackends = 3;
inline constexpr auto kHold = std::chrono::seconds(2);

class FleetLab : public ::testing::Test {
protected:
    using Clock = std::chrono::steady_clock;

    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        reaper_.emplace();
        lab_up_ = true;
        const auto up = run_command(lab_command("up " + lab_options() + " --lbs " + std::to_string(kLbs)));
        ASSERT_EQ(up.exit_code, 0) << up.output;
        for (int lb = 1; lb <= kLbs; ++lb) {
            lbs_.push_back(std::make_unique<LbDaemon>(lb, "fleet"));
            lbs_.back()->write_config(config_text(*lbs_.back()));
            if (lb <= started_lbs_) {
                ASSERT_NO_FATAL_FAILURE(lbs_.back()->start());
            }
        }
        // BGP sessions open within seconds of the lab (start delay and connect retry 1 s).
        const auto learned = wait_for_next_hops(started_lbs_, 30s);
        std::cout << "the router routes the VIP over " << started_lbs_ << " LBs " << learned.count()
                  << " ms after the last daemon was ready\n";
    }

    void TearDown() override {
        std::vector<pid_t> groups;
        std::vector<std::string> dirs;
        for (const auto& lb : lbs_) {
            groups.insert(groups.end(), lb->groups().begin(), lb->groups().end());
            dirs.push_back(lb->dir());
        }
        lbs_.clear();
        if (lab_up_)
            run_command(lab_command("down"));
        if (reaper_)
            reaper_->reap(kHold, groups, dirs);
        EXPECT_TRUE(lab_namespaces_left().empty());
    }

    // The same on every LB but its own paths and name: VIPs, backends, weights, seed and sizes.
    std::string config_text(const LbDaemon& lb, std::uint32_t hash_seed = 0) const {
        std::ostringstream yaml;
        yaml << lb.config_preamble() << "hash_seed: " << hash_seed << "\n"
             << "memcached_servers:\n";
        for (int server = 1; server <= memcached_servers_; ++server)
            yaml << "  - " << memcached_address(server) << ":" << kMemcachedPort << "\n";
        yaml << "announce:\n"
             << "  check_interval: 100ms\n"
             << "  hold: " << std::chrono::milliseconds(kHold).count() << "ms\n"
             << "  lock_file: " << lb.dir() << "/announce.lock\n"
             << "  host_id: lb" << lb.index() << "\n"
             << "  peer_heartbeat: 200ms\n"
             << "  share_exceptions: " << (share_exceptions_ ? "true" : "false") << "\n"
             << "vips:\n"
             << "  - name: web\n"
             << "    address: " << kLabVip << "\n"
             << "    port: 80\n"
             << "    persistence: {enabled: " << (persistent_ ? "true" : "false") << ", timeout_s: 300}\n"
             << "    health: " << health_ << "\n"
             << "    backends:\n";
        for (int n = 1; n <= kBackends; ++n)
            yaml << "      - name: be" << n << "\n        address: " << backend_address(n) << "\n";
        return yaml.str();
    }

    // How many next hops the router's route for the VIP has (0: no route).
    static int next_hops() {
        const std::string route =
            run_command(in_ns(lab_ns("client"), std::string("ip route show ") + kLabVip + " proto bird")).output;
        if (route.find(kLabVip) == std::string::npos)
            return 0;
        int hops = 0;
        for (std::size_t at = route.find("nexthop via"); at != std::string::npos;
             at = route.find("nexthop via", at + 1))
            ++hops;
        return hops == 0 ? 1 : hops;
    }

    static std::chrono::milliseconds wait_for_next_hops(int wanted, std::chrono::milliseconds limit = 10s) {
        const auto start = Clock::now();
        while (next_hops() != wanted && Clock::now() - start < limit)
            std::this_thread::sleep_for(10ms);
        EXPECT_EQ(next_hops(), wanted) << "next hops of the router's VIP route";
        return elapsed_ms(start);
    }

    // The VIP's ring fingerprint on every LB.
    std::set<std::string> fingerprints() const {
        std::set<std::string> seen;
        for (const auto& lb : lbs_) {
            const auto vips = lb->cli_json("vip show");
            seen.insert(vips.is_array() && !vips.empty() ? vips[0].value("ring_sha256", "") : "");
        }
        return seen;
    }

    // When each LB last changed the VIP's ring (wall clock, s; one host's clock here).
    std::vector<double> ring_applied_times() const {
        std::vector<double> applied;
        for (const auto& lb : lbs_) {
            if (!lb->running())
                continue;
            const auto vips = lb->cli_json("vip show");
            applied.push_back(vips.is_array() && !vips.empty() ? vips[0].value("ring_applied_timestamp_seconds", 0.0)
                                                               : 0.0);
        }
        EXPECT_GT(*std::min_element(applied.begin(), applied.end()), 0.0) << "an LB never wrote its ring";
        return applied;
    }

    static double wall_seconds() {
        return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    }

    // Polls until every LB sees BACKEND in STATE.
    void wait_everywhere(const std::string& backend, const std::string& state) const {
        for (const auto& lb : lbs_) {
            if (!lb->running())
                continue;
            std::string seen;
            for (int tries = 0; tries < 100; ++tries) {
                for (const auto& row : lb->cli_json("backend show"))
                    if (row.value("name", "") == backend)
                        seen = row.value("state", "");
                if (seen == state)
                    break;
                std::this_thread::sleep_for(50ms);
            }
            EXPECT_EQ(seen, state) << backend;
        }
    }

    // What lab.sh up is given, besides --lbs.
    virtual std::string lab_options() const {
        return "--mode l2 --memcached 1 --backends " + std::to_string(kBackends);
    }

    std::optional<GuardReaper> reaper_;
    std::vector<std::unique_ptr<LbDaemon>> lbs_;
    bool lab_up_ = false;
    // What every LB's config says: the VIP keeps clients on a backend; exceptions are shared.
    bool persistent_ = true;
    bool share_exceptions_ = true;
    int memcached_servers_ = 1;
    std::string health_ = "{kind: tcp, interval: 100ms, timeout: 100ms, rise: 2, fall: 2}";
    int started_lbs_ = kLbs;  // the daemons SetUp starts, LB 1 first
};

}  // namespace stickylb::testing::lab
