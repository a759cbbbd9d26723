// SPDX-License-Identifier: Apache-2.0
// The PHP session scenario through three LBs: three Apache + mod_php backends keep
// their sessions through their stickylb-agents in two memcached servers, and a
// persistent VIP is announced by three LBs behind the lab's router. 20 users (one
// client address each) count in their sessions, every request on a new connection
// that the router gives to any LB. LB 1, which writes the agents' membership views,
// dies (its namespace deleted), then the backend holding the most users crashes
// (Apache and agent killed) while a request of one of its users holds the session
// lock: every user's counter goes on from where it was, on the same session, with no
// update lost (the held request's died with it), the lock broken through the view the
// new writer wrote; the LB's death moves no user to another backend.
//
// Needs root. The test builds its lab with tools/lab/lab.sh and removes it after.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "session/membership_view.h"
#include "support/fleet_lab.h"
#include "support/lab.h"
#include "support/session_lab.h"

namespace stickylb::testing {
namespace {

using namespace lab;

constexpr int kUsers = 20;
constexpr int kMemcached = 2;
// What the test asserts: generous; the figures are measured and recorded.
constexpr auto kRecoveryBound = 5s;
constexpr auto kPollLimit = 15s;

class FleetSessions : public FleetLab {
protected:
    FleetSessions() {
        memcached_servers_ = kMemcached;
        health_ = "{kind: http, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}";
    }

    std::string lab_options() const override {
        return "--mode l2 --backends " + std::to_string(kBackends) + " --app php --memcached " +
               std::to_string(kMemcached) + " --sessions agent";
    }

    struct User {
        std::string address, sid, backend;
        int n = 0;
    };

    // One request of counter.php from the user's address, on a new connection.
    static Reply counter_request(const User& user) {
        std::string command =
            "curl -sS --interface " + user.address + " --connect-timeout 0.2 --max-time 10" + kCurlStatusFormat;
        if (!user.sid.empty())
            command += " -H " + shell_quote("Cookie: PHPSESSID=" + user.sid);
        return parse_reply(run_command(
            in_ns(lab_ns("client"), command + " " + shell_quote(std::string("http://") + kLabVip + "/counter.php"))));
    }

    // The user's next count: its reply's counter, sent again (bounded) while no backend answers.
    struct Next {
        std::optional<Counter> counter;
        Reply reply;
        std::chrono::milliseconds served{0};  // from `since`
    };
    static Next next_count(const User& user, Clock::time_point since) {
        Next next;
        while (Clock::now() - since < kPollLimit) {
            next.reply = counter_request(user);
            if (next.reply.status != 0)
                break;
            std::this_thread::sleep_for(50ms);
        }
        next.served = elapsed_ms(since);
        next.counter = next.reply.status == 200 ? parse_counter(next.reply.body) : std::nullopt;
        return next;
    }

    // Every user's next count at once, after a fault that started at `since`: each goes on
    // from where it was. Returns the longest wait for a good answer.
    std::chrono::milliseconds every_user_counts_on(const std::string& after, Clock::time_point since,
                                                   std::chrono::milliseconds command_took) {
        std::vector<Next> nexts(users_.size());
        std::vector<std::thread> threads;
        for (std::size_t i = 0; i < users_.size(); ++i)
            threads.emplace_back([&, i] { nexts[i] = next_count(users_[i], since); });
        for (std::thread& thread : threads)
            thread.join();
        std::vector<std::chrono::milliseconds> served;
        int continued = 0;
        for (std::size_t i = 0; i < users_.size(); ++i) {
            User& user = users_[i];
            const Next& next = nexts[i];
            EXPECT_TRUE(next.counter) << after << ", user " << user.address << ": " << next.reply;
            if (!next.counter)
                continue;
            EXPECT_EQ(next.counter->sid, user.sid) << after << ": a new session for " << user.address;
            EXPECT_EQ(next.counter->n, user.n + 1) << after << ", user " << user.address << ": the count was reset "
                                                   << "or an update lost";
            continued += next.counter->sid == user.sid && next.counter->n == user.n + 1;
            user.n = next.counter->n;
            user.backend = next.counter->backend;
            served.push_back(next.served);
        }
        std::sort(served.begin(), served.end());
        const auto longest = served.empty() ? kPollLimit : served.back();
        record(after, std::to_string(continued) + " of " + std::to_string(kUsers) +
                          " counters went on; first good answer after the fault: median " +
                          std::to_string(served.empty() ? 0 : served[served.size() / 2].count()) + " ms, longest " +
                          std::to_string(longest.count()) + " ms (from the start of the command, which took " +
                          std::to_string(command_took.count()) + " ms)");
        EXPECT_EQ(continued, kUsers) << after;
        EXPECT_LT(longest, kRecoveryBound) << after;
        return longest;
    }

    std::map<std::string, std::vector<std::string>> users_by_backend() const {
        std::map<std::string, std::vector<std::string>> by_backend;
        for (const User& user : users_)
            by_backend[user.backend].push_back(user.address);
        return by_backend;
    }

    std::vector<User> users_;
};

TEST_F(FleetSessions, AnLbThenABackendDieAndEveryUsersCounterGoesOn) {
    // Every agent follows a view before the users arrive: the fleet's writer wrote one.
    for (int backend = 1; backend <= kBackends; ++backend) {
        const auto deadline = Clock::now() + 10s;
        while (agent_metric(backend, "stickylb_agent_view_present") != 1.0 && Clock::now() < deadline)
            std::this_thread::sleep_for(100ms);
        ASSERT_EQ(agent_metric(backend, "stickylb_agent_view_present"), 1.0) << "be" << backend << "'s agent";
    }
    for (int n = 1; n <= kUsers; ++n) {
        User user;
        user.address = client_address(n);
        for (int request = 1; request <= 2; ++request) {
            const Reply reply = counter_request(user);
            const auto counter = parse_counter(reply.body);
            ASSERT_TRUE(reply.status == 200 && counter) << reply;
            ASSERT_EQ(counter->n, request) << reply;
            if (request == 2) {
                ASSERT_EQ(counter->backend, user.backend) << "user " << user.address << " moved between requests";
            }
            user.sid = counter->sid;
            user.backend = counter->backend;
            user.n = counter->n;
        }
        users_.push_back(user);
    }
    const auto before = users_by_backend();
    EXPECT_GE(before.size(), 2u) << "the users did not spread over the backends";
    EXPECT_TRUE(lbs_[0]->cli_json("session show").value("view_writer", false)) << "LB 1 writes the views";

    // The same round without a fault: what 20 users at once take on this machine.
    every_user_counts_on("no fault (baseline)", Clock::now(), 0ms);

    // LB 1's host dies: the router moves its share of the new connections to LBs 2 and 3.
    const auto lb_killed = Clock::now();
    ASSERT_EQ(run_command(lab_command("kill-lb 1")).exit_code, 0);
    const auto lb_kill_took = elapsed_ms(lb_killed);
    lbs_[0]->stop(SIGKILL);
    every_user_counts_on("LB 1's namespace deleted", lb_killed, lb_kill_took);
    EXPECT_EQ(users_by_backend(), before) << "the death of an LB moved users between backends";

    // The backend of the most users crashes; LB 2 writes the views now.
    std::string doomed;
    for (const auto& [backend, users] : before)
        if (doomed.empty() || users.size() > before.at(doomed).size())
            doomed = backend;
    const auto view_before = read_membership_view(lab_ns("client"), memcached_address(1), kMemcachedPort, "web");
    ASSERT_TRUE(view_before);
    // One of its users has a request under way there that holds the session lock: only
    // the view LB 2 writes, saying the backend down, lets another backend's agent break it.
    const User& holder =
        *std::find_if(users_.begin(), users_.end(), [&](const User& u) { return u.backend == doomed; });
    const int doomed_index = std::stoi(doomed.substr(2));
    std::filesystem::remove(lab_hold_pid_file(doomed_index));
    BackgroundCommand hold(
        in_ns(lab_ns("client"), "curl -sS --interface " + holder.address + " --max-time 60" + kCurlStatusFormat +
                                    " -H " + shell_quote("Cookie: PHPSESSID=" + holder.sid) + " " +
                                    shell_quote(std::string("http://") + kLabVip + "/hold.php?ms=10000")));
    for (const auto deadline = Clock::now() + 10s;
         !std::filesystem::exists(lab_hold_pid_file(doomed_index)) && Clock::now() < deadline;)
        std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(std::filesystem::exists(lab_hold_pid_file(doomed_index))) << "hold.php took no lock on " << doomed;
    const auto backend_killed = Clock::now();
    ASSERT_EQ(run_command(lab_command("crash-backend " + doomed.substr(2))).exit_code, 0);
    every_user_counts_on(doomed + " crashed (" + std::to_string(before.at(doomed).size()) + " of its users)",
                         backend_killed, elapsed_ms(backend_killed));
    hold.kill_group();
    EXPECT_EQ(hold.wait().output.find("HTTP_STATUS 200"), std::string::npos) << "the killed request answered";
    double locks_broken = 0;
    for (int backend = 1; backend <= kBackends; ++backend)
        if (backend != doomed_index)
            locks_broken += agent_metric(backend, "stickylb_agent_locks_broken_owner_down_total").value_or(0);
    EXPECT_EQ(locks_broken, 1.0) << "the held lock was not broken through the view";
    const auto after = users_by_backend();
    EXPECT_EQ(after.count(doomed), 0u) << "a user is still on the crashed backend";
    for (const auto& [backend, users] : before)
        if (backend != doomed) {
            for (const std::string& user : users)
                EXPECT_NE(std::find(after.at(backend).begin(), after.at(backend).end(), user), after.at(backend).end())
                    << user << " left " << backend << ", which is up";
        }
    const auto view = read_membership_view(lab_ns("client"), memcached_address(1), kMemcachedPort, "web");
    ASSERT_TRUE(view && view->find(doomed));
    EXPECT_EQ(view->find(doomed)->state, session::MemberState::down);
    EXPECT_GT(view->epoch, view_before->epoch) << "the new writer's epoch";
    EXPECT_TRUE(lbs_[1]->cli_json("session show").value("view_writer", false)) << "LB 2 writes the views";
}

}  // namespace
}  // namespace stickylb::testing
