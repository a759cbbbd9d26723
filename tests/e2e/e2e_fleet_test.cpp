// SPDX-License-Identifier: Apache-2.0
// Three LB hosts behind the lab's router (lab.sh up --lbs 3): each runs the XDP data
// plane, stickylbd announcing the VIP and BIRD; the router (the client's namespace)
// routes the VIP over every LB announcing it, by its multipath hash. The rings must be
// identical on every LB after every change, and an LB leaving or joining (or its host
// dying) must move flows between LBs without breaking a connection or moving it to
// another backend.
// The LBs compare their config fingerprints through the lab's memcached: an LB started
// with another hash seed must never become a next hop, and must say why. They share
// their health checks there too: one LB that cannot reach a backend leaves it in
// every ring.
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/fleet_lab.h"
#include "support/lab.h"
#include "support/privileges.h"
#include "support/session_lab.h"

namespace stickylb::testing {
namespace {

using namespace lab;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class Fleet : public FleetLab {
protected:
    using Connections = std::unique_ptr<FILE, decltype(&pclose)>;
    // http_connections.py in the client's namespace, from `clients` addresses.
    // An answer later than timeout_s counts as a broken connection.
    static Connections open_connections(int connections, int clients, int interval_ms, int duration_s,
                                        int timeout_s = 2) {
        std::string sources;
        for (int client = 1; client <= clients; ++client)
            sources += " --source " + client_address(client);
        const std::string traffic = in_ns(
            lab_ns("client"), "python3 " + std::string(STICKYLB_SOURCE_DIR) + "/tools/lab/http_connections.py --vip " +
                                  kLabVip + " --connections " + std::to_string(connections) + " --interval-ms " +
                                  std::to_string(interval_ms) + " --duration " + std::to_string(duration_s) +
                                  " --timeout " + std::to_string(timeout_s) + sources);
        Connections load(popen(traffic.c_str(), "r"), &pclose);
        EXPECT_TRUE(load) << traffic;
        return load;
    }

    // What http_connections.py printed when its time was up.
    static nlohmann::json connections_result(Connections& load) {
        std::string output;
        char buffer[512];
        while (load && fgets(buffer, sizeof(buffer), load.get()))
            output += buffer;
        const auto result = nlohmann::json::parse(output, nullptr, false);
        EXPECT_TRUE(result.is_object()) << output;
        return result.is_object() ? result : nlohmann::json::object();
    }
};

TEST_F(Fleet, TheRingsAreEqualOnEveryLbAfterEveryChange) {
    const auto initial = fingerprints();
    ASSERT_EQ(initial.size(), 1u) << "after start";
    EXPECT_EQ(initial.begin()->size(), 64u);

    // LB 1 alone cannot reach be1: one host of three finds it down, so it stays in
    // every ring, LB 1's too, and LB 1 stays a next hop (be2 and be3 pass its checks).
    ASSERT_EQ(run_command(lab_command("blind-lb 1 1")).exit_code, 0);
    nlohmann::json be1_on_lb1 = nlohmann::json::object();
    for (int tries = 0; tries < 100 && be1_on_lb1.value("health", "") != "down"; ++tries) {
        std::this_thread::sleep_for(50ms);
        for (const auto& row : lbs_[0]->cli_json("health show"))
            if (row.value("name", "") == "be1")
                be1_on_lb1 = row;
    }
    EXPECT_EQ(be1_on_lb1.value("health", ""), "down") << "LB 1's own checks: " << be1_on_lb1.dump();
    EXPECT_EQ(be1_on_lb1.value("verdict", ""), "up") << be1_on_lb1.dump();
    EXPECT_EQ(be1_on_lb1.value("votes_down", 0), 1) << be1_on_lb1.dump();
    EXPECT_EQ(be1_on_lb1.value("votes_up", 0), kLbs - 1) << be1_on_lb1.dump();
    wait_everywhere("be1", "up");
    EXPECT_EQ(fingerprints(), initial) << "one LB that cannot reach a backend";
    EXPECT_EQ(next_hops(), kLbs);

    std::cout << "LB 1 cannot reach be1: its own checks find it down, the fleet's votes "
              << be1_on_lb1.value("votes_up", 0) << " up, " << be1_on_lb1.value("votes_down", 0)
              << " down; be1 in every ring, " << next_hops() << " next hops\n";

    // be1 really stops: two of three, then three, find it down.
    const double stopped = wall_seconds();
    ASSERT_EQ(run_command(lab_command("stop-backend 1")).exit_code, 0);
    wait_everywhere("be1", "down");
    const auto applied = ring_applied_times();
    const auto [first, last] = std::minmax_element(applied.begin(), applied.end());
    std::cout << "be1 stopped (checks every 100 ms, fall 2): every LB's ring dropped it within "
              << 1000 * (*last - stopped) << " ms of the stop, first to last " << 1000 * (*last - *first)
              << " ms apart (on their shared checks)\n";
    const auto one_down = fingerprints();
    EXPECT_EQ(one_down.size(), 1u) << "a backend down";
    EXPECT_NE(one_down, initial);

    ASSERT_EQ(run_command(lab_command("unblind-lb 1 1")).exit_code, 0);
    ASSERT_EQ(run_command(lab_command("start-backend 1")).exit_code, 0);
    wait_everywhere("be1", "up");
    EXPECT_EQ(fingerprints(), initial) << "back up: the ring of the start again";

    // Drains and weights are the fleet's: given on one LB, they reach every LB.
    ASSERT_EQ(lbs_[0]->cli("backend drain web be2").exit_code, 0);
    wait_everywhere("be2", "draining");
    EXPECT_EQ(fingerprints().size(), 1u) << "a drain on LB 1";
    ASSERT_EQ(lbs_[1]->cli("backend enable web be2").exit_code, 0);
    ASSERT_EQ(lbs_[1]->cli("backend set web be3 weight 3").exit_code, 0);
    wait_everywhere("be2", "up");
    const auto wait_for_weight = [&](const LbDaemon& lb) {
        for (int tries = 0; tries < 100; ++tries) {
            for (const auto& row : lb.cli_json("backend show"))
                if (row.value("name", "") == "be3" && row.value("weight", 0) == 3)
                    return true;
            std::this_thread::sleep_for(50ms);
        }
        return false;
    };
    for (const auto& lb : lbs_) {
        EXPECT_TRUE(wait_for_weight(*lb)) << "LB " << lb->index() << " did not take LB 2's weight";
    }
    const auto reweighted = fingerprints();
    EXPECT_EQ(reweighted.size(), 1u) << "a weight change";
    EXPECT_NE(reweighted, initial);
    EXPECT_EQ(next_hops(), kLbs) << "every LB stayed a next hop";
}

TEST_F(Fleet, AnLbLeavingAndJoiningBreaksNoConnectionAndMovesNoClient) {
    constexpr int kConnections = 90;
    auto load = open_connections(kConnections, 30, 100, 30);
    ASSERT_TRUE(load);
    std::this_thread::sleep_for(3s);  // every connection open and answered

    const auto lb2_flows = lbs_[1]->cli_json("flow show").size();
    auto faulted = Clock::now();
    lbs_[1]->stop(SIGKILL);
    wait_for_next_hops(kLbs - 1, kHold + 5s);
    std::cout << "kill -9 stickylbd of LB 2 (" << lb2_flows << " flows): 2 next hops after "
              << elapsed_ms(faulted).count() << " ms (hold " << kHold.count() << " s)\n";
    faulted = Clock::now();
    ASSERT_NO_FATAL_FAILURE(lbs_[1]->start());
    wait_for_next_hops(kLbs, 10s);
    std::cout << "LB 2 restarted: 3 next hops after " << elapsed_ms(faulted).count() << " ms\n";

    faulted = Clock::now();
    ASSERT_EQ(run_command(lab_command("cut-lb 3")).exit_code, 0);
    wait_for_next_hops(kLbs - 1, 5s);
    std::cout << "LB 3 cut off the segment: 2 next hops after " << elapsed_ms(faulted).count() << " ms (BFD)\n";
    faulted = Clock::now();
    ASSERT_EQ(run_command(lab_command("restore-lb 3")).exit_code, 0);
    wait_for_next_hops(kLbs, 15s);
    std::cout << "LB 3 back: 3 next hops after " << elapsed_ms(faulted).count() << " ms\n";

    // LB 2's host dies: link, BIRD, namespace and stickylbd gone, for good.
    const auto lb2_flows_at_death = lbs_[1]->cli_json("flow show").size();
    faulted = Clock::now();
    ASSERT_EQ(run_command(lab_command("kill-lb 2")).exit_code, 0);
    lbs_[1]->stop(SIGKILL);
    wait_for_next_hops(kLbs - 1, 5s);
    std::cout << "LB 2's namespace deleted (" << lb2_flows_at_death << " flows in its table): 2 next hops after "
              << elapsed_ms(faulted).count() << " ms (BFD)\n";

    const auto result = connections_result(load);
    std::cout << kConnections << " connections, a request every 100 ms each, through the faults: " << result.dump()
              << "\n";
    EXPECT_GT(result.value("requests", 0), kConnections * 100) << result;
    EXPECT_EQ(result.value("broken_connections", -1), 0) << result;
    EXPECT_EQ(result.value("backend_changes", -1), 0) << result;
}

// LB 3 comes back with another hash seed: its ring would send the flows the router
// gives it to other backends, so it must not announce, and cluster show says why on
// both sides; with the fleet's config again it is a next hop again.
TEST_F(Fleet, AnLbWithAnotherSeedIsNeverANextHop) {
    LbDaemon& lb3 = *lbs_[2];
    lb3.stop(SIGTERM);
    wait_for_next_hops(kLbs - 1, kHold + 5s);
    lb3.write_config(config_text(lb3, /*hash_seed=*/7));
    ASSERT_NO_FATAL_FAILURE(lb3.start());
    int most_hops = 0, samples = 0;
    for (const auto until = Clock::now() + 3s; Clock::now() < until; ++samples) {
        most_hops = std::max(most_hops, next_hops());
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(most_hops, kLbs - 1) << "LB 3 with another seed became a next hop (" << samples << " samples); its log:\n"
                                   << lb3.log();
    const auto odd = lb3.cli_json("cluster show");
    EXPECT_EQ(odd.value("standing", ""), "differs") << odd.dump();
    EXPECT_EQ(odd["differing_parts"], nlohmann::json::array({"hash_seed"})) << odd.dump();
    ASSERT_TRUE(odd["vips"].is_array() && !odd["vips"].empty()) << odd.dump();
    EXPECT_EQ(odd["vips"][0]["announce"].value("reason", ""), "config_differs") << odd.dump();
    const auto peer = lbs_[0]->cli_json("cluster show");
    EXPECT_EQ(peer.value("standing", ""), "agrees") << peer.dump();
    EXPECT_EQ(peer["hosts"].size(), static_cast<std::size_t>(kLbs)) << peer.dump();
    std::cout << "LB 3 with hash_seed 7: " << samples << " samples of the router's route over 3 s, never more than "
              << most_hops << " next hops; cluster show: " << odd.value("reason", "") << "\n";

    lb3.stop(SIGTERM);
    lb3.write_config(config_text(lb3));
    const auto started = Clock::now();
    ASSERT_NO_FATAL_FAILURE(lb3.start());
    wait_for_next_hops(kLbs, 10s);
    std::cout << "LB 3 with the fleet's config: 3 next hops " << elapsed_ms(started).count()
              << " ms after it started\n";
    EXPECT_EQ(fingerprints().size(), 1u);
}

// The agents follow one membership view per cluster: one LB writes it (the lowest host
// id of the fleet), and the LB that takes over when the writer dies continues its
// epochs, so every agent sees them rise and a dead backend's sessions move.
TEST_F(Fleet, OneLbWritesTheMembershipViewAndItsSuccessorKeepsTheEpochRising) {
    const auto writers = [&] {
        std::vector<int> found;
        for (const auto& lb : lbs_)
            if (lb->running() && lb->cli_json("session show").value("view_writer", false))
                found.push_back(lb->index());
        return found;
    };
    const auto wait_for_writer = [&](int lb) {
        std::vector<int> found = writers();
        for (int tries = 0; tries < 100 && found != std::vector<int>{lb}; ++tries) {
            std::this_thread::sleep_for(50ms);
            found = writers();
        }
        EXPECT_EQ(found, std::vector<int>{lb}) << lbs_[lb - 1]->cli_json("cluster show").dump();
    };
    std::vector<std::uint64_t> epochs;  // as the agents would read them, in order
    const auto stored = [&] {
        auto view = read_membership_view(lab_ns("client"), memcached_address(1), kMemcachedPort, "web");
        if (view && (epochs.empty() || epochs.back() != view->epoch))
            epochs.push_back(view->epoch);
        return view;
    };
    const auto wait_for_view = [&](const std::string& backend, session::MemberState state) {
        std::optional<session::MembershipView> view = stored();
        for (int tries = 0; tries < 100 && !(view && view->find(backend) && view->find(backend)->state == state);
             ++tries) {
            std::this_thread::sleep_for(50ms);
            view = stored();
        }
        EXPECT_TRUE(view && view->find(backend) && view->find(backend)->state == state) << backend;
        return view.value_or(session::MembershipView{});
    };

    wait_for_writer(1);
    const auto first = wait_for_view("be1", session::MemberState::up);

    lbs_[0]->stop(SIGKILL);
    const auto killed = Clock::now();
    wait_for_writer(2);
    std::cout << "kill -9 of LB 1's stickylbd, the writer: LB 2 writes the views " << elapsed_ms(killed).count()
              << " ms later\n";
    ASSERT_EQ(run_command(lab_command("stop-backend 1")).exit_code, 0);
    const auto down = wait_for_view("be1", session::MemberState::down);
    EXPECT_GT(down.epoch, first.epoch);

    ASSERT_NO_FATAL_FAILURE(lbs_[0]->start());
    wait_for_writer(1);
    ASSERT_EQ(run_command(lab_command("start-backend 1")).exit_code, 0);
    const auto back = wait_for_view("be1", session::MemberState::up);
    EXPECT_GT(back.epoch, down.epoch);
    EXPECT_GT(back.find("be1")->incarnation, first.find("be1")->incarnation) << "back from down: a new life";
    EXPECT_TRUE(std::is_sorted(epochs.begin(), epochs.end()));
    std::cout << "the view's epochs as read from memcached, through two writer changes:";
    for (const std::uint64_t epoch : epochs)
        std::cout << " " << epoch;
    std::cout << "\n";
}

// memcached gone: no LB can read its peers' fingerprints. Each judges alone and keeps
// announcing: an outage of the session store must not take the VIPs down.
TEST_F(Fleet, EveryLbKeepsAnnouncingWhileMemcachedIsDown) {
    ASSERT_EQ(run_command(lab_command("stop-memcached 1")).exit_code, 0);
    int fewest_hops = kLbs, samples = 0;
    for (const auto until = Clock::now() + 4s; Clock::now() < until; ++samples) {
        fewest_hops = std::min(fewest_hops, next_hops());
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(fewest_hops, kLbs) << "an LB withdrew while memcached was down";
    for (const auto& lb : lbs_)
        EXPECT_EQ(lb->cli_json("cluster show").value("standing", ""), "alone") << "LB " << lb->index();
    EXPECT_EQ(fingerprints().size(), 1u);

    const auto restarted = Clock::now();
    ASSERT_EQ(run_command(lab_command("start-memcached 1")).exit_code, 0);
    auto everyone_agrees = [&] {
        for (const auto& lb : lbs_) {
            const auto shown = lb->cli_json("cluster show");
            if (shown.value("standing", "") != "agrees" || shown["hosts"].size() != static_cast<std::size_t>(kLbs))
                return false;
        }
        return true;
    };
    while (!everyone_agrees() && Clock::now() - restarted < 10s)
        std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(everyone_agrees()) << lbs_[0]->cli_json("cluster show").dump();
    EXPECT_EQ(next_hops(), kLbs);
    std::cout << "memcached stopped 4 s: " << samples << " samples of the router's route, never fewer than "
              << fewest_hops << " next hops; every LB alone, then agreeing again " << elapsed_ms(restarted).count()
              << " ms after memcached came back empty\n";
}

// The VIP hashes connections, with no client affinity: a flow the router moves to
// another LB stays on its backend only by that LB's flow entry or a peer's exception.
class FleetExceptions : public Fleet {
protected:
    FleetExceptions() { persistent_ = false; }

    static constexpr int kConnections = 600;

    // be3 down while the connections open: every one of them is on be1 or be2.
    // 600 client threads and 3 LBs share 2 cores: a packet lost with an LB is resent
    // (TCP's backoff) seconds later, not broken.
    Connections connections_while_be3_is_down() {
        EXPECT_EQ(run_command(lab_command("stop-backend 3")).exit_code, 0);
        wait_everywhere("be3", "down");
        auto load = open_connections(kConnections, 30, 100, 25, /*timeout_s=*/5);
        std::this_thread::sleep_for(5s);
        return load;
    }

    // What each running LB published of its own flow exceptions, and how many of its
    // peers' it holds (in its peer-flow table, or unplaced).
    struct ExceptionCounts {
        std::vector<std::uint64_t> published, loaded;
        bool all_loaded() const {
            const std::uint64_t total = std::accumulate(published.begin(), published.end(), std::uint64_t{0});
            bool loaded_everywhere = total > 0;
            for (std::size_t i = 0; i < published.size(); ++i)
                loaded_everywhere = loaded_everywhere && loaded[i] == total - published[i];
            return loaded_everywhere;
        }
    };
    ExceptionCounts exception_counts() const {
        ExceptionCounts counts;
        for (const auto& lb : lbs_) {
            if (!lb->running())
                continue;
            const auto shown = lb->cli_json("cluster show")["flow_exceptions"];
            counts.published.push_back(shown.value("published", 0u));
            counts.loaded.push_back(shown.value("peer_flow_entries", 0u) + shown.value("unplaced", 0u));
        }
        return counts;
    }

    // be3 back: the ring now gives some of the connections to be3, their flow entries
    // keep them where they are, and those are the exceptions every LB publishes.
    void be3_returns() {
        EXPECT_EQ(run_command(lab_command("start-backend 3")).exit_code, 0);
        wait_everywhere("be3", "up");
        const std::vector<double> applied = ring_applied_times();
        const double ring_changed = *std::max_element(applied.begin(), applied.end());
        if (!share_exceptions_)
            return;
        ExceptionCounts counts = exception_counts();
        for (int tries = 0; tries < 200 && !counts.all_loaded(); ++tries) {
            std::this_thread::sleep_for(20ms);
            counts = exception_counts();
        }
        EXPECT_TRUE(counts.all_loaded()) << "the LBs' exceptions were not loaded by their peers";
        std::cout << "be3 back: the rings changed, exceptions published";
        for (const std::uint64_t published : counts.published)
            std::cout << " " << published;
        std::cout << "; every LB had loaded its peers' " << std::lround(1000 * (wall_seconds() - ring_changed))
                  << " ms after the last ring change\n";
    }

    // What the connections saw, with the flows the given LBs sent where a peer's
    // exception said.
    nlohmann::json connections_outcome(Connections& load, const std::vector<int>& lbs) const {
        nlohmann::json result = connections_result(load);
        std::uint64_t followed = 0;
        for (const int lb : lbs)
            followed += lbs_[lb - 1]->cli_json("stats show").value("peer_flows_followed", 0u);
        result["peer_flows_followed"] = followed;
        std::cout << kConnections << " connections from 30 clients, a request every 100 ms each (as fast as the "
                  << "client keeps up: " << result.value("requests", 0) / 25 << " requests/s), exception sync "
                  << (share_exceptions_ ? "on" : "off") << ": " << result.dump() << "\n";
        // Every connection answered all along: a Python client of 600 threads on this
        // machine manages a few requests per second each, not ten.
        EXPECT_GT(result.value("requests", 0), kConnections * 20) << result;
        return result;
    }

    // The case the ring alone cannot carry: after be3's return LB 2's namespace is
    // deleted and the router spreads its flows, and some of the others', over LBs 1 and 3.
    nlohmann::json backend_returns_then_an_lb_dies() {
        auto load = connections_while_be3_is_down();
        be3_returns();
        std::this_thread::sleep_for(3s);
        const auto lb2_flows = lbs_[1]->cli_json("flow show").size();
        const auto faulted = Clock::now();
        EXPECT_EQ(run_command(lab_command("kill-lb 2")).exit_code, 0);
        lbs_[1]->stop(SIGKILL);
        wait_for_next_hops(kLbs - 1, 5s);
        std::cout << "LB 2's namespace deleted (" << lb2_flows << " flows in its table): 2 next hops after "
                  << elapsed_ms(faulted).count() << " ms\n";
        return connections_outcome(load, {1, 3});
    }
};

TEST_F(FleetExceptions, ABackendBackThenAnLbDeadBreaksNoConnection) {
    const auto result = backend_returns_then_an_lb_dies();
    EXPECT_EQ(result.value("broken_connections", -1), 0) << result;
    EXPECT_EQ(result.value("backend_changes", -1), 0) << result;
    EXPECT_GT(result.value("peer_flows_followed", 0), 0) << "no moved flow needed a peer's exception: " << result;
}

// The same without exception sync, proof that the test above can fail: the LBs that
// take LB 2's flows pick them by the ring, and be3 resets those it never had.
class FleetWithoutExceptionSync : public FleetExceptions {
protected:
    FleetWithoutExceptionSync() { share_exceptions_ = false; }
};

TEST_F(FleetWithoutExceptionSync, ABackendBackThenAnLbDeadBreaksConnections) {
    const auto result = backend_returns_then_an_lb_dies();
    EXPECT_GT(result.value("broken_connections", 0), 0) << result;
    EXPECT_EQ(result.value("peer_flows_followed", -1), 0) << result;
    std::cout << "without exception sync " << result.value("broken_connections", 0) << " of 600 connections broke ("
              << std::lround(100.0 * result.value("broken_connections", 0) / 600) << "%)\n";
}

// LB 3 joins while LBs 1 and 2 carry exceptions: the router will give it some of their
// flows the moment it announces, so it must hold their lists first.
class FleetJoin : public FleetExceptions {
protected:
    FleetJoin() { started_lbs_ = 2; }
};

TEST_F(FleetJoin, AnLbJoiningWithExceptionsOutstandingAnnouncesOnceItHoldsThemAndBreaksNoConnection) {
    auto load = connections_while_be3_is_down();
    be3_returns();
    LbDaemon& lb3 = *lbs_[2];
    const auto started = Clock::now();
    ASSERT_NO_FATAL_FAILURE(lb3.start());
    const auto ready = elapsed_ms(started);
    wait_for_next_hops(kLbs, 15s);
    const auto announced = elapsed_ms(started);
    const ExceptionCounts counts = exception_counts();
    EXPECT_TRUE(counts.all_loaded()) << "LB 3 announced without its peers' exceptions";
    const std::string log = lb3.log();
    const auto loaded_at = log.find("every peer's list loaded");
    const auto announced_at = log.find("): announced");
    EXPECT_NE(loaded_at, std::string::npos) << log;
    EXPECT_LT(loaded_at, announced_at) << log;
    std::cout << "LB 3 joined with " << (counts.loaded.size() == 3 ? counts.loaded[2] : 0)
              << " of its peers' exceptions: ready " << ready.count() << " ms after its start, a next hop "
              << announced.count() << " ms after it\n";
    const auto result = connections_outcome(load, {3});
    EXPECT_EQ(result.value("broken_connections", -1), 0) << result;
    EXPECT_EQ(result.value("backend_changes", -1), 0) << result;
    EXPECT_GT(result.value("peer_flows_followed", 0), 0) << "no flow the router moved to LB 3 needed an exception";
}

// A persistent VIP keeps each client on one backend across its connections, and the
// router gives every new connection to any LB: each LB must send a client where the
// others do, also after a ring change made some clients' backends exceptions.
class FleetAffinity : public Fleet {
protected:
    FleetAffinity() { started_lbs_ = 2; }

    static constexpr int kClients = 140;  // every extra client address of the lab
    static constexpr int kPerClient = 4;  // new connections per client and round

    // Every client opens `per_client` new connections one after another; the backend of each answer.
    static std::map<std::string, std::vector<std::string>> new_connections(int per_client) {
        std::string sources;
        for (int client = 1; client <= kClients; ++client)
            sources += " --source " + client_address(client);
        const auto run = run_command(in_ns(lab_ns("client"), "python3 " + std::string(STICKYLB_SOURCE_DIR) +
                                                                 "/tools/lab/http_new_connections.py --vip " + kLabVip +
                                                                 " --timeout 5 --per-source " +
                                                                 std::to_string(per_client) + sources));
        const auto result = nlohmann::json::parse(run.output, nullptr, false);
        EXPECT_TRUE(result.is_object() && result["answers"].is_object()) << run.output;
        std::map<std::string, std::vector<std::string>> answers;
        if (!result.is_object() || !result["answers"].is_object())
            return answers;
        EXPECT_EQ(result.value("failed", -1), 0) << run.output;
        for (const auto& [client, backends] : result["answers"].items())
            for (const auto& backend : backends)
                answers[client].push_back(backend.is_string() ? backend.get<std::string>() : "");
        return answers;
    }

    // Each client's backend: where its first connection went.
    std::map<std::string, std::string> affinity_;

    // A round of new connections: how many were answered by their client's backend.
    int round(const std::string& after, int& total_lost) {
        int kept = 0, connections = 0, clients_moved = 0;
        for (const auto& [client, backends] : new_connections(kPerClient)) {
            const auto on_its_backend = std::count(backends.begin(), backends.end(), affinity_[client]);
            connections += static_cast<int>(backends.size());
            kept += static_cast<int>(on_its_backend);
            clients_moved += on_its_backend != static_cast<std::ptrdiff_t>(backends.size());
        }
        EXPECT_EQ(connections, kClients * kPerClient) << after;
        total_lost += connections - kept;
        std::cout << after << ": " << kept << " of " << connections
                  << " new connections answered by their client's backend (" << clients_moved << " of " << kClients
                  << " clients sent elsewhere at least once)\n";
        return connections - kept;
    }

    // What every running LB published (flow and affinity exceptions) and holds of its peers'.
    bool every_lb_holds_its_peers_lists() const {
        std::vector<std::uint64_t> published, loaded;
        for (const auto& lb : lbs_) {
            if (!lb->running())
                continue;
            const auto shown = lb->cli_json("cluster show")["flow_exceptions"];
            published.push_back(shown.value("published", 0u));
            loaded.push_back(shown.value("loaded", 0u));
        }
        const std::uint64_t total = std::accumulate(published.begin(), published.end(), std::uint64_t{0});
        bool held = total > 0;
        for (std::size_t i = 0; i < published.size(); ++i)
            held = held && loaded[i] == total - published[i];
        return held;
    }

    // be3 down while every client connects once (its affinity, on be1 or be2, recorded
    // by one LB), be3 back (the ring picks it for about a third of the clients, whose
    // affinities are now exceptions), then rounds of new connections: after be3's
    // return, after LB 3 joined, after LB 2's namespace was deleted.
    int connections_through_ring_change_join_and_death() {
        EXPECT_EQ(run_command(lab_command("stop-backend 3")).exit_code, 0);
        wait_everywhere("be3", "down");
        for (const auto& [client, backends] : new_connections(1))
            affinity_[client] = backends.at(0);
        EXPECT_EQ(affinity_.size(), static_cast<std::size_t>(kClients));

        EXPECT_EQ(run_command(lab_command("start-backend 3")).exit_code, 0);
        wait_everywhere("be3", "up");
        if (share_exceptions_) {
            const auto returned = Clock::now();
            for (int tries = 0; tries < 200 && !every_lb_holds_its_peers_lists(); ++tries)
                std::this_thread::sleep_for(20ms);
            EXPECT_TRUE(every_lb_holds_its_peers_lists()) << lbs_[0]->cli_json("cluster show").dump();
            std::cout << "be3 back: affinity exceptions published by LB 1 and 2:";
            for (int lb = 0; lb < 2; ++lb)
                std::cout << " "
                          << lbs_[lb]->cli_json("cluster show")["flow_exceptions"].value("published_affinities", 0u);
            std::cout << ", held by the peers " << elapsed_ms(returned).count() << " ms after be3 was up everywhere\n";
        }
        int lost = 0;
        round("be3 back", lost);

        const auto started = Clock::now();
        EXPECT_NO_FATAL_FAILURE(lbs_[2]->start());
        wait_for_next_hops(kLbs, 15s);
        std::cout << "LB 3 joined: a next hop " << elapsed_ms(started).count() << " ms after its start";
        if (share_exceptions_)
            std::cout << ", "
                      << lbs_[2]->cli_json("cluster show")["flow_exceptions"].value("peer_affinities_written", 0u)
                      << " of its peers' client affinities written";
        std::cout << "\n";
        round("LB 3 joined", lost);

        EXPECT_EQ(run_command(lab_command("kill-lb 2")).exit_code, 0);
        lbs_[1]->stop(SIGKILL);
        wait_for_next_hops(kLbs - 1, 5s);
        round("LB 2's namespace deleted", lost);
        return lost;
    }
};

TEST_F(FleetAffinity, EveryLbSendsAClientsNewConnectionsToItsBackendThroughRingChangesJoinsAndDeaths) {
    EXPECT_EQ(connections_through_ring_change_join_and_death(), 0);
}

// The same without exception sync, proof that the test above can fail: an LB that never
// saw a client sends it where the ring says.
class FleetAffinityWithoutExceptionSync : public FleetAffinity {
protected:
    FleetAffinityWithoutExceptionSync() { share_exceptions_ = false; }
};

TEST_F(FleetAffinityWithoutExceptionSync, ClientsLoseTheirBackend) {
    const int lost = connections_through_ring_change_join_and_death();
    EXPECT_GT(lost, 0);
    std::cout << "without exception sync " << lost << " of " << 3 * kClients * kPerClient
              << " new connections went to another backend than their client's ("
              << std::lround(100.0 * lost / (3 * kClients * kPerClient)) << "%)\n";
}

}  // namespace
}  // namespace stickylb::testing
