// SPDX-License-Identifier: Apache-2.0
// The whole stack as users meet it: stickiness of 20 clients, 20 parallel requests of
// one session losing no update, and failover that keeps a PHP session:
// the lab client talks to the VIP through stickylbd's XDP data plane (persistence,
// HTTP health checks every 200 ms, fall 2 for the failovers, every second, fall 3
// under load); three Apache + mod_php backends keep
// their sessions through their own stickylb-agent in two memcached servers, and
// stickylbd writes the membership view to both. The backend B a user sticks to dies
// while a request of theirs holds the session lock:
//   crash       B's Apache and agent die at once (SIGKILL), its host stays up;
//   host death  B's whole namespace goes (its link first).
// The user's next request lands on another backend and continues the session.
//
// Both cases break the lock through the view, not by its release: B's agent is dead
// before it could release anything (lab.sh kills it before Apache's workers, and
// kill-host cuts the link first), so the lock stays in memcached under a lease of 5 s
// (the agent's --lock-lease) that nobody renews. The new backend's agent finds it
// and breaks it once the view says B down, about half a second after the kill, long
// before the lease runs out: stickylb_agent_locks_broken_owner_down_total counts it.
// A lock released by a live agent (its worker killed) is e2e_session_agent_test's.
// stickylbd restarted without its pins and memcached down are covered by
// e2e_session_daemon_test (python backends, one memcached in the LB's namespace).
//
// Needs root. Every test builds its lab with tools/lab/lab.sh and removes it after.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "session/membership_view.h"
#include "support/daemon_lab.h"
#include "support/lab.h"
#include "support/session_lab.h"
#include "support/privileges.h"

namespace stickylb::testing {
namespace {

using namespace lab;
using namespace std::chrono_literals;

constexpr int kBackends = 3;
constexpr int kMemcached = 2;
constexpr const char* kCluster = "web";
const std::string kUser = lab_host(kLabClientHost);  // the user's one client address
constexpr int kHoldMs = 10000;                       // the doomed request holds the lock this long

// stickylbd's health checks, and the acceptance figure they give: B is marked down
// after `fall` failed checks, each given `timeout`, one every `interval`; the user
// must be served within that plus one second of the kill.
constexpr auto kInterval = 200ms;
constexpr auto kTimeout = 100ms;
constexpr int kFall = 2;
constexpr int kRise = 2;
constexpr auto kAcceptance = kFall * kInterval + kTimeout + 1s;
// The load tests saturate both cores (20 clients) or a backend's workers (20 requests
// queued on one session lock): checks as an operator would set them for steady
// service, so that a slow answer is not taken for a dead backend (which would move
// its users, as it should).
constexpr auto kSteadyInterval = 1000ms;
constexpr auto kSteadyTimeout = 1000ms;
constexpr int kSteadyFall = 3;
// What the test asserts: generous, the acceptance figure is measured and recorded.
constexpr auto kRecoveryBound = 5s;
constexpr auto kPollLimit = 20s;
// A request that found no backend fails at connect (refused, or unanswered for this
// long) and is sent again; one that connected is never cut short, as its update would
// land after the test gave up on it.
constexpr const char* kConnectTimeoutS = "0.2";
constexpr int kRequestMaxTimeS = 15;

int backend_index(const std::string& name) { return std::atoi(name.c_str() + 2); }

// The user's request for PATH through the VIP, with session SID ("" = a new session).
std::string user_curl(const std::string& path, const std::string& sid, int max_time_s = kRequestMaxTimeS) {
    std::string command = "curl -sS --interface " + kUser + " --connect-timeout " + kConnectTimeoutS + " --max-time " +
                          std::to_string(max_time_s) + kCurlStatusFormat;
    if (!sid.empty())
        command += " -H " + shell_quote("Cookie: PHPSESSID=" + sid);
    return in_ns(lab_ns("client"), command + " " + shell_quote(std::string("http://") + kLabVip + path));
}

Reply user_request(const std::string& path, const std::string& sid) {
    return parse_reply(run_command(user_curl(path, sid)));
}

struct HealthTimings {
    std::chrono::milliseconds interval, timeout;
    int rise, fall;
};

class SessionFailover : public DaemonLabTest {
protected:
    virtual HealthTimings health_timings() const { return {kInterval, kTimeout, kRise, kFall}; }

    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        ASSERT_NO_FATAL_FAILURE(build_lab("up --mode l2 --backends " + std::to_string(kBackends) +
                                              " --app php --memcached " + std::to_string(kMemcached) +
                                              " --sessions agent",
                                          "failover"));
        write_config(config_text());
        ASSERT_NO_FATAL_FAILURE(start_daemon());
        // Every agent follows the view before the user arrives: without one, no lock
        // is broken early (the lease would be the only way out).
        for (int backend = 1; backend <= kBackends; ++backend) {
            const auto deadline = Clock::now() + 10s;
            while (agent_metric(backend, "stickylb_agent_view_present") != 1.0 && Clock::now() < deadline)
                std::this_thread::sleep_for(100ms);
            ASSERT_EQ(agent_metric(backend, "stickylb_agent_view_present"), 1.0)
                << "the agent of be" << backend << " has no view; stickylbd's log:\n"
                << daemon_log();
        }
    }

    std::string config_text() const {
        const HealthTimings health = health_timings();
        std::ostringstream yaml;
        yaml << config_preamble() << "memcached_servers:\n";
        for (int server = 1; server <= kMemcached; ++server)
            yaml << "  - " << memcached_address(server) << ":" << kMemcachedPort << "\n";
        yaml << "vips:\n"
             << "  - name: web\n"
             << "    cluster: " << kCluster << "\n"
             << "    address: " << kLabVip << "\n"
             << "    port: 80\n"
             << "    persistence: {enabled: true, timeout_s: 300}\n"
             << "    health: {kind: http, interval: " << health.interval.count()
             << "ms, timeout: " << health.timeout.count() << "ms, rise: " << health.rise << ", fall: " << health.fall
             << "}\n"
             << "    backends:\n";
        for (int n = 1; n <= kBackends; ++n)
            yaml << "      - name: be" << n << "\n        address: " << backend_address(n) << "\n";
        return yaml.str();
    }

    // The view in memcached server 1, read from the client's namespace with the agent's parser.
    static std::optional<session::MembershipView> stored_view() {
        return read_membership_view(lab_ns("client"), memcached_address(1), kMemcachedPort, kCluster);
    }

    static Counter count(const std::string& sid) {
        const Reply reply = user_request("/counter.php", sid);
        EXPECT_EQ(reply.status, 200) << "counter.php: " << reply;
        const auto counter = parse_counter(reply.body);
        EXPECT_TRUE(counter.has_value()) << "counter.php: " << reply;
        return counter.value_or(Counter{});
    }

    // The user's backend B dies by lab.sh KILL_COMMAND B while a request of theirs
    // holds the session lock there; the next request must continue the session elsewhere.
    void lose_backend_holding_the_lock(const std::string& kill_command, const std::string& what) {
        const Counter first = count("");
        ASSERT_FALSE(first.sid.empty());
        const Counter before = count(first.sid);
        ASSERT_EQ(before.backend, first.backend) << "the user did not stick to one backend";
        ASSERT_EQ(before.n, 2);
        const int doomed = backend_index(before.backend);

        const std::string pid_file = lab_hold_pid_file(doomed);
        std::filesystem::remove(pid_file);
        BackgroundCommand holder(user_curl("/hold.php?ms=" + std::to_string(kHoldMs), before.sid, 60));
        const auto hold_deadline = Clock::now() + 10s;
        while (!std::filesystem::exists(pid_file) && Clock::now() < hold_deadline)
            std::this_thread::sleep_for(20ms);
        ASSERT_TRUE(std::filesystem::exists(pid_file))
            << "hold.php did not take the session lock on " << before.backend << " within 10 s";
        const auto view_before = stored_view();
        ASSERT_TRUE(view_before) << "no view in memcached";

        const auto killed = Clock::now();
        const auto kill = run_command(lab_command(kill_command + " " + std::to_string(doomed)));
        const auto kill_took = Clock::now() - killed;
        ASSERT_EQ(kill.exit_code, 0) << kill.output;

        Reply next;
        int refused = 0;  // requests that reached no backend, before the one that did
        while (Clock::now() - killed < kPollLimit) {
            next = user_request("/counter.php", before.sid);
            if (next.status != 0)
                break;
            ++refused;
            std::this_thread::sleep_for(50ms);
        }
        // From the start of the kill command: an upper bound, the SIGKILLs land during it.
        const auto served = Clock::now() - killed;
        record(what + "_recovery_ms", std::to_string(milliseconds(served)));
        record(what + " first answer after the kill",
               "HTTP " + std::to_string(next.status) + " " + std::to_string(milliseconds(served)) +
                   " ms after the kill command started (acceptance: within " +
                   std::to_string(milliseconds(kAcceptance)) + " ms; the command took " +
                   std::to_string(milliseconds(kill_took)) + " ms), " + std::to_string(refused) +
                   " requests reached no backend before");
        const auto view_written = metric("stickylb_failover_view_written_seconds_sum");
        if (view_written)
            record(what + " first failed check to view written", std::to_string(*view_written * 1000) + " ms");

        ASSERT_EQ(next.status, 200) << next << "\nstickylbd's log:\n" << daemon_log();
        EXPECT_LT(served, kRecoveryBound);
        const auto after = parse_counter(next.body);
        ASSERT_TRUE(after.has_value()) << next;
        EXPECT_NE(after->backend, before.backend) << "served by the dead backend";
        EXPECT_EQ(after->sid, before.sid);
        // The killed request's own increment died with it: previous value + 1.
        EXPECT_EQ(after->n, before.n + 1) << "the session was lost, or the killed request's update landed";

        holder.kill_group();  // a crashed server answers nothing; a dead host never will
        EXPECT_EQ(holder.wait().output.find("HTTP_STATUS 200"), std::string::npos) << "the killed request answered";

        EXPECT_EQ(backend_states()[before.backend], "down");
        const auto view = stored_view();
        ASSERT_TRUE(view) << "no view in memcached after the failover";
        EXPECT_GT(view->epoch, view_before->epoch);
        for (int backend = 1; backend <= kBackends; ++backend) {
            const std::string name = "be" + std::to_string(backend);
            const session::Member* member = view->find(name);
            ASSERT_NE(member, nullptr) << name << " missing from the view";
            EXPECT_EQ(member->state, backend == doomed ? session::MemberState::down : session::MemberState::up) << name;
        }
        // The lock was broken through the view (see the top of the file), by the new backend's agent.
        EXPECT_EQ(agent_metric(backend_index(after->backend), "stickylb_agent_locks_broken_owner_down_total"), 1.0);

        // And the user stays where the session went on.
        const Counter later = count(before.sid);
        EXPECT_EQ(later.backend, after->backend);
        EXPECT_EQ(later.n, before.n + 2);
    }
};

// The whole stack under load, with the checks of steady service.
class SessionUnderLoad : public SessionFailover {
protected:
    HealthTimings health_timings() const override { return {kSteadyInterval, kSteadyTimeout, kRise, kSteadyFall}; }
};

// The seeds' stickiness: 1,000 requests from each of 20 client addresses, each on a
// new connection (new flows: the affinity table, not one TCP connection, keeps them
// together). Every client sees exactly one backend, and the clients use all three.
TEST_F(SessionUnderLoad, TwentyClientsEachSeeOneBackendOverAThousandRequests) {
    constexpr int kClients = 20, kRequests = 1000;
    // One curl per client: URL globbing gives kRequests requests, "Connection: close"
    // a new connection for each; the 20 clients run at once.
    // index.php answers "backend=beN\n"; each line out is "<client> <count> backend=beN".
    const std::string one_client = "curl -sS --max-time 120 --interface " + std::string(kLabNet4) +
                                   ".$0 -H 'Connection: close' 'http://" + std::string(kLabVip) + "/?i=[1-" +
                                   std::to_string(kRequests) + "]' | sort | uniq -c | sed \"s/^/$0 /\"";
    const auto run = run_command(
        in_ns(lab_ns("client"),
              "bash -c " + shell_quote("seq " + std::to_string(kLabClientHost + 1) + " " +
                                       std::to_string(kLabClientHost + kClients) + " | xargs -P " +
                                       std::to_string(kClients) + " -I{} bash -c " + shell_quote(one_client) + " {}")));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    std::map<std::string, std::map<std::string, int>> seen;
    std::istringstream lines(run.output);
    for (std::string client, backend; lines >> client;) {
        int requests = 0;
        lines >> requests >> backend;
        seen[client][backend] += requests;
    }
    std::set<std::string> used;
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(kClients)) << run.output << "\nstickylbd's log:\n" << daemon_log();
    for (const auto& [client, backends] : seen) {
        ASSERT_EQ(backends.size(), 1u) << "client " << kLabNet4 << "." << client << " saw several backends:\n"
                                       << run.output << "\nstickylbd's log:\n"
                                       << daemon_log();
        EXPECT_EQ(backends.begin()->second, kRequests) << "client " << kLabNet4 << "." << client;
        EXPECT_EQ(backends.begin()->first.rfind("backend=be", 0), 0u) << backends.begin()->first;
        used.insert(backends.begin()->first);
    }
    EXPECT_EQ(used.size(), static_cast<std::size_t>(kBackends)) << "20 clients did not spread over the backends";
    record("sticky clients",
           std::to_string(seen.size()) + " clients x " + std::to_string(kRequests) +
               " new connections, each on one backend; backends used: " + std::to_string(used.size()));
}

// No lost updates through the VIP: 20 parallel requests of one session each
// increment its counter; all answer 200 and the counter rises by exactly 20.
TEST_F(SessionUnderLoad, TwentyParallelRequestsOfOneSessionThroughTheVipLoseNoUpdate) {
    constexpr int kParallel = 20;
    const Counter first = count("");
    ASSERT_FALSE(first.sid.empty());
    const std::string one_request = user_curl("/counter.php", first.sid) + "; echo";
    const auto run = run_command("seq " + std::to_string(kParallel) + " | xargs -P " + std::to_string(kParallel) +
                                 " -I{} sh -c " + shell_quote(one_request));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    int ok = 0;
    for (std::size_t at = run.output.find("HTTP_STATUS 200"); at != std::string::npos;
         at = run.output.find("HTTP_STATUS 200", at + 1))
        ++ok;
    EXPECT_EQ(ok, kParallel) << run.output << "\nstickylbd's log:\n" << daemon_log();
    const Counter last = count(first.sid);
    EXPECT_EQ(last.backend, first.backend) << "the user's requests did not stay on one backend; stickylbd's log:\n"
                                           << daemon_log();
    EXPECT_EQ(last.n, first.n + kParallel + 1) << "updates were lost";
    record("parallel requests through the VIP", std::to_string(ok) + "/" + std::to_string(kParallel) +
                                                    " answered 200, counter rose by " +
                                                    std::to_string(last.n - first.n - 1));

    // The app's health page does a session round trip on each backend: its count goes on.
    for (int backend = 1; backend <= kBackends; ++backend) {
        const std::string health = "curl -sS --max-time 5 http://" + backend_address(backend) + "/health.php";
        const auto once = run_command(in_ns(lab_ns("client"), health));
        const auto twice = run_command(in_ns(lab_ns("client"), health));
        EXPECT_NE(once.output.find("health=ok checks="), std::string::npos) << once.output;
        const auto checks = [](const std::string& text) {
            const auto at = text.find("checks=");
            return at == std::string::npos ? -1 : std::atol(text.c_str() + at + 7);
        };
        EXPECT_EQ(checks(twice.output), checks(once.output) + 1) << once.output << twice.output;
    }
}

TEST_F(SessionFailover, CrashedBackendHoldingTheSessionLockTheUserGoesOnElsewhere) {
    lose_backend_holding_the_lock("crash-backend", "crash");
}

TEST_F(SessionFailover, DeadBackendHostHoldingTheSessionLockTheUserGoesOnElsewhere) {
    lose_backend_holding_the_lock("kill-host", "host_death");
}

}  // namespace
}  // namespace stickylb::testing
