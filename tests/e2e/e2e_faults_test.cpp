// SPDX-License-Identifier: Apache-2.0
// Faults under load, in the namespace lab: stickylbd killed with -9 ten
// times, 100 SIGHUP reloads (half of them changing the backend set), a backend whose
// health flaps, a memcached server killed and restarted under PHP session traffic.
// Every load is bounded in requests and stops itself; the figures (requests sent
// during the faults, failures) are recorded with [ MEASURE ] for docs/robustness.md.
//
// Needs root. Every test builds its lab with tools/lab/lab.sh and removes it after.
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/daemon_lab.h"
#include "support/lab.h"
#include "support/privileges.h"
#include "support/session_lab.h"

namespace stickylb::testing {
namespace {

using namespace lab;
using namespace std::chrono_literals;

constexpr int kBackends = 3;
constexpr int kLoadClients = 4;         // extra client addresses 1..4
constexpr int kBatchesPerClient = 600;  // bound of the load: 10 requests per batch
constexpr int kHealthPort = 8080;

// What the HTTP load saw, from curl's "-w '%{http_code} %{exitcode}'" per request.
struct LoadResult {
    long ok = 0;
    long resets = 0;    // curl 7 (refused: RST to the SYN), 52 (empty reply), 56 (reset while receiving)
    long timeouts = 0;  // curl 28: the request hung
    long other = 0;     // any other status or error
    std::string first_other;
    long sent() const { return ok + resets + timeouts + other; }
};

LoadResult parse_load(const std::string& output) {
    LoadResult result;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream fields(line);
        int status = -1, exit_code = -1;
        if (!(fields >> status >> exit_code))
            continue;  // a stray line (there should be none): not a request
        if (status == 200 && exit_code == 0)
            ++result.ok;
        else if (exit_code == 7 || exit_code == 52 || exit_code == 56)
            ++result.resets;
        else if (exit_code == 28)
            ++result.timeouts;
        else if (++result.other == 1)
            result.first_other = line;
    }
    return result;
}

std::string describe(const LoadResult& load) {
    return std::to_string(load.sent()) + " requests: " + std::to_string(load.ok) + " ok, " +
           std::to_string(load.resets) + " reset, " + std::to_string(load.timeouts) + " hung, " +
           std::to_string(load.other) + " other failures";
}

class Faults : public DaemonLabTest {
protected:
    void SetUp() override { STICKYLB_REQUIRE_ROOT(); }

    void build_python_lab() {
        ASSERT_NO_FATAL_FAILURE(build_lab("up --mode l2 --backends " + std::to_string(kBackends), "faults"));
    }

    // One VIP over be1..be3 (or be1..be2 without be3); HEALTH is its health line.
    std::string config_text(bool with_be3 = true, const std::string& health =
                                                      "{kind: tcp, interval: 200ms, timeout: 100ms, rise: 2, "
                                                      "fall: 2}") const {
        std::ostringstream yaml;
        yaml << config_preamble() << "vips:\n"
             << "  - name: web\n"
             << "    address: " << kLabVip << "\n"
             << "    port: 80\n"
             << "    persistence: {enabled: true, timeout_s: 300}\n"
             << "    health: " << health << "\n"
             << "    backends:\n";
        for (int n = 1; n <= (with_be3 ? 3 : 2); ++n)
            yaml << "      - name: be" << n << "\n        address: " << backend_address(n) << "\n";
        return yaml.str();
    }

    // HTTP load from kLoadClients client addresses, 10 requests per curl run, until
    // stop_load() or kBatchesPerClient runs each. The lab's backends close every
    // connection, so each request is a new flow through the ring.
    std::unique_ptr<BackgroundCommand> start_load() {
        std::filesystem::remove(stop_file());
        std::ofstream script(dir_ + "/load.sh");
        script << "urls=''\n"
               << "for i in $(seq 10); do urls=\"$urls -o /dev/null http://" << kLabVip << "/\"; done\n"
               << "for c in $(seq " << kLoadClients << "); do\n"
               << "  (i=0; while [ $i -lt " << kBatchesPerClient << " ] && [ ! -e " << shell_quote(stop_file())
               << " ]; do\n"
               << "     curl -s --interface " << kLabNet4 << ".$((" << kLabClientHost
               << " + c)) --max-time 3 -w '%{http_code} %{exitcode}\\n' $urls\n"
               << "     i=$((i + 1))\n"
               << "   done) &\n"
               << "done\n"
               << "wait\n";
        script.close();
        auto load =
            std::make_unique<BackgroundCommand>(in_ns(lab_ns("client"), "sh " + shell_quote(dir_ + "/load.sh")));
        std::this_thread::sleep_for(300ms);  // under way before the first fault
        return load;
    }

    LoadResult stop_load(BackgroundCommand& load) {
        std::this_thread::sleep_for(300ms);  // still under way after the last fault
        std::ofstream(stop_file()) << "stop\n";
        return parse_load(load.wait().output);
    }

    std::string stop_file() const { return dir_ + "/stop-load"; }

    int log_count(const std::string& text) const {
        const std::string log = daemon_log();
        int count = 0;
        for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1))
            ++count;
        return count;
    }

    // Polls (bounded) until the daemon's log says "reloaded" COUNT times.
    void wait_for_reloads(int count) const {
        for (int tries = 0; tries < 200 && log_count("reloaded ") < count; ++tries)
            std::this_thread::sleep_for(20ms);
        ASSERT_GE(log_count("reloaded "), count) << daemon_log();
    }

    double metric_or_zero(const std::string& series) const { return metric(series).value_or(0); }
};

TEST_F(Faults, KillNineTenTimesUnderLoadFailsNoRequestAndEveryRestartAdoptsThePinnedState) {
    constexpr int kKills = 10;
    ASSERT_NO_FATAL_FAILURE(build_python_lab());
    write_config(config_text());
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    auto load = start_load();
    for (int kill_number = 0; kill_number < kKills; ++kill_number) {
        stop_daemon(SIGKILL);
        std::this_thread::sleep_for(100ms);  // forwarding with no daemon at all
        ASSERT_NO_FATAL_FAILURE(start_daemon()) << "restart " << kill_number + 1;
        std::this_thread::sleep_for(200ms);
    }
    const LoadResult result = stop_load(*load);
    record("kill -9 of stickylbd under HTTP load", std::to_string(kKills) + " kills, " + describe(result));
    EXPECT_GT(result.sent(), 0);
    EXPECT_EQ(result.ok, result.sent()) << describe(result) << "; first other: " << result.first_other;
    EXPECT_EQ(log_count("adopted pinned state"), kKills) << daemon_log();
}

// control_group reaches the socket: owned by the group, 0660, and the CLI still works.
TEST_F(Faults, ControlGroupFromTheConfigOwnsTheControlSocket) {
    ASSERT_NO_FATAL_FAILURE(build_python_lab());
    const group* nogroup = ::getgrnam("nogroup");
    ASSERT_NE(nogroup, nullptr) << "Debian's nogroup";
    const gid_t gid = nogroup->gr_gid;
    write_config("control_group: nogroup\n" + config_text());
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    struct stat st {};
    ASSERT_EQ(::stat((dir_ + "/control.sock").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, gid);
}

// An established connection whose backend leaves the VIP is reset, not left hanging;
// then 100 reloads under load, every other one adding or removing be3.
TEST_F(Faults, HundredReloadsUnderLoadAndConnectionsToARemovedBackendAreReset) {
    ASSERT_NO_FATAL_FAILURE(build_python_lab());
    write_config(config_text(true));
    ASSERT_NO_FATAL_FAILURE(start_daemon());

    // A client whose affinity is be3 holds a connection open (handshake done, no request yet).
    int be3_client = 0;
    for (int client = 1; client <= 30 && be3_client == 0; ++client)
        if (request_from(client) == "be3")
            be3_client = client;
    ASSERT_NE(be3_client, 0) << "no client address is sticky to be3";
    const std::string go_file = dir_ + "/go";
    {
        std::ofstream script(dir_ + "/held.py");
        script << "import os, socket, sys, time\n"
               << "s = socket.socket()\n"
               << "s.bind(('" << client_address(be3_client) << "', 0))\n"
               << "s.settimeout(5)\n"
               << "s.connect(('" << kLabVip << "', 80))\n"
               << "open('" << dir_ << "/held.port', 'w').write(str(s.getsockname()[1]))\n"
               << "for _ in range(400):\n"
               << "    if os.path.exists('" << go_file << "'): break\n"
               << "    time.sleep(0.05)\n"
               << "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
               << "try:\n"
               << "    data = b''\n"
               << "    while True:\n"
               << "        chunk = s.recv(4096)\n"
               << "        if not chunk: break\n"
               << "        data += chunk\n"
               << "    body = data.decode(errors='replace').split('\\r\\n\\r\\n')[-1].strip()\n"
               << "    print('ANSWERED ' + body if data else 'EOF')\n"
               << "except ConnectionResetError:\n"
               << "    print('RST')\n"
               << "except socket.timeout:\n"
               << "    print('TIMEOUT')\n";
    }
    BackgroundCommand held(in_ns(lab_ns("client"), "python3 " + shell_quote(dir_ + "/held.py")));
    // The held connection's own flow (by its port) is on be3.
    std::string held_backend;
    for (int tries = 0; tries < 50 && held_backend.empty(); ++tries) {
        std::ifstream port_file(dir_ + "/held.port");
        long port = 0;
        if (port_file >> port)
            for (const auto& flow : cli_json("flow show"))
                if (flow.value("client_port", 0L) == port && flow.value("client", "") == client_address(be3_client))
                    held_backend = flow.value("backend", "");
        if (held_backend.empty())
            std::this_thread::sleep_for(50ms);
    }
    ASSERT_EQ(held_backend, "be3") << "the held connection's flow: " << cli("flow show").output;
    write_config(config_text(false));
    kill(daemon_pid_, SIGHUP);
    ASSERT_NO_FATAL_FAILURE(wait_for_reloads(1));
    ASSERT_FALSE(backend_states().count("be3"));
    std::ofstream(go_file) << "go\n";
    const std::string held_result = trim(held.wait().output);
    record("established connection to a backend removed by a reload", held_result);
    EXPECT_EQ(held_result, "RST") << "a connection to a removed backend must be reset, not hang\n"
                                  << cli("flow show").output;

    // 100 reloads under load: the even ones toggle be3, the odd ones rewrite the same set.
    constexpr int kReloads = 100;
    bool with_be3 = false;
    auto load = start_load();
    for (int reload = 0; reload < kReloads; ++reload) {
        if (reload % 2 == 0)
            with_be3 = !with_be3;
        write_config(config_text(with_be3) + "# reload " + std::to_string(reload) + "\n");
        kill(daemon_pid_, SIGHUP);
        ASSERT_NO_FATAL_FAILURE(wait_for_reloads(reload + 2));
        std::this_thread::sleep_for(50ms);  // requests between reloads too, not only during them
    }
    const LoadResult result = stop_load(*load);
    record("SIGHUP reloads under HTTP load", std::to_string(kReloads) + " reloads (" + std::to_string(kReloads / 2) +
                                                 " changing the backend set), " + describe(result));
    EXPECT_GT(result.sent(), 0);
    EXPECT_EQ(result.timeouts, 0) << "requests hung: " << describe(result);
    EXPECT_EQ(result.other, 0) << describe(result) << "; first: " << result.first_other;
    EXPECT_EQ(result.ok + result.resets, result.sent());
    EXPECT_EQ(log_count("reload rejected"), 0) << daemon_log();
}

// be1's health answers flap: strictly alternating answers never make rise or fall
// (2 in a row), so nothing changes; pairs of answers change the state every two
// checks, and the ring is rewritten at most once per state change.
TEST_F(Faults, FlappingBackendChangesStateOnlyByRiseAndFallAndTheRingNoMoreOften) {
    ASSERT_NO_FATAL_FAILURE(build_python_lab());
    // Health servers on every backend's port 8080: "ok" answers 200, "alternate" 200 and
    // 503 in turn, "pairs" 503, 503, 200, 200 ...; each counts the checks it answered.
    {
        std::ofstream script(dir_ + "/health.py");
        script << R"(import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
mode_file, count_file = sys.argv[2], sys.argv[3]
answered = 0
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        global answered
        mode = open(mode_file).read().strip()
        if mode == 'alternate':
            ok = answered % 2 == 0
        elif mode == 'pairs':
            ok = answered % 4 >= 2
        else:
            ok = True
        answered += 1
        with open(count_file + '.tmp', 'w') as f:
            f.write(str(answered))
        import os
        os.replace(count_file + '.tmp', count_file)
        body = b'ok\n' if ok else b'flap\n'
        self.send_response(200 if ok else 503)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(('0.0.0.0', int(sys.argv[1])), Health).serve_forever()
)";
    }
    std::vector<std::unique_ptr<BackgroundCommand>> health_servers;
    for (int n = 1; n <= kBackends; ++n) {
        std::ofstream(dir_ + "/mode" + std::to_string(n)) << "ok\n";
        health_servers.push_back(std::make_unique<BackgroundCommand>(
            in_ns(backend_ns(n), "python3 " + shell_quote(dir_ + "/health.py") + " " + std::to_string(kHealthPort) +
                                     " " + shell_quote(dir_ + "/mode" + std::to_string(n)) + " " +
                                     shell_quote(dir_ + "/count" + std::to_string(n)))));
    }
    const auto checks_answered = [&] {
        std::ifstream file(dir_ + "/count1");
        long count = 0;
        file >> count;
        return count;
    };
    const auto wait_for_checks = [&](long count) {
        for (int tries = 0; tries < 200 && checks_answered() < count; ++tries)
            std::this_thread::sleep_for(50ms);
        ASSERT_GE(checks_answered(), count) << "be1's health server was not checked";
    };
    write_config(config_text(true, "{kind: http, port: " + std::to_string(kHealthPort) +
                                       ", http_path: /health, interval: 300ms, timeout: 250ms, rise: 2, fall: 2}"));
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    wait_for_state("be1", "up");

    const auto transitions_of = [&](int backend) {
        return metric_or_zero("stickylb_backend_state_transitions_total{vip=\"web\",backend=\"be" +
                              std::to_string(backend) + "\"}");
    };
    // The ring changes when any of the VIP's backends changes state (on a loaded
    // machine be2 or be3 may miss checks too): the bound is all of their changes.
    const auto all_transitions = [&] { return transitions_of(1) + transitions_of(2) + transitions_of(3); };
    const std::string rewrites_series = "stickylb_vip_ring_rewrites_total{vip=\"web\"}";
    ASSERT_TRUE(metric(rewrites_series).has_value()) << metrics();

    // Alternating: never two failures in a row, never a change.
    const double transitions_before = transitions_of(1);
    const double all_before = all_transitions();
    const double rewrites_before = metric_or_zero(rewrites_series);
    constexpr long kAlternatingChecks = 20;
    std::ofstream(dir_ + "/mode1") << "alternate\n";
    const long alternating_from = checks_answered();
    ASSERT_NO_FATAL_FAILURE(wait_for_checks(alternating_from + kAlternatingChecks));
    std::ofstream(dir_ + "/mode1") << "ok\n";
    const double alternating_transitions = transitions_of(1) - transitions_before;
    const double alternating_rewrites = metric_or_zero(rewrites_series) - rewrites_before;
    EXPECT_EQ(alternating_transitions, 0) << "a state changed with no two equal answers in a row";
    EXPECT_LE(alternating_rewrites, all_transitions() - all_before) << "the ring was rewritten with no state change:\n"
                                                                    << daemon_log();
    EXPECT_EQ(backend_states()["be1"], "up");

    // Pairs: down after two failures, up after two successes.
    constexpr long kPairChecks = 24;
    std::ofstream(dir_ + "/mode1") << "pairs\n";
    const long pairs_from = checks_answered();
    ASSERT_NO_FATAL_FAILURE(wait_for_checks(pairs_from + kPairChecks));
    std::ofstream(dir_ + "/mode1") << "ok\n";
    wait_for_state("be1", "up");
    const long pair_checks = checks_answered() - pairs_from;
    const double pair_transitions = transitions_of(1) - transitions_before;
    const double pair_rewrites = metric_or_zero(rewrites_series) - rewrites_before;
    const double other_transitions = all_transitions() - all_before - pair_transitions;
    record("flapping backend: strictly alternating health",
           std::to_string(kAlternatingChecks) + "+ checks, " + std::to_string(long(alternating_transitions)) +
               " state changes of be1, " + std::to_string(long(alternating_rewrites)) + " ring rewrites");
    record("flapping backend: health in pairs (rise 2, fall 2)",
           std::to_string(pair_checks) + " checks, " + std::to_string(long(pair_transitions)) +
               " state changes of be1 (" + std::to_string(long(other_transitions)) + " of the others), " +
               std::to_string(long(pair_rewrites)) + " ring rewrites (both phases)");
    EXPECT_GE(pair_transitions, 4) << "pairs of answers must change the state (rise/fall 2)";
    EXPECT_LE(pair_transitions, pair_checks / 2 + 1) << "a state changed faster than rise/fall allow";
    EXPECT_LE(pair_rewrites, pair_transitions + other_transitions)
        << "the ring was rewritten more often than the state changed:\n"
        << daemon_log();
    EXPECT_GE(pair_rewrites, 1);
    const auto linted = lint_metrics();
    EXPECT_EQ(linted.exit_code, 0) << "promtool on the live scrape: " << linted.output;
}

// PHP session users (counter.php through the VIP and the agents, two memcached
// servers) keep counting while mc1 and then mc2 are killed with -9, left down for
// kMemcachedDown (across the agents' reconnect attempts to it) and started again
// empty. No request fails: locks and keys go to the server that answers.
TEST_F(Faults, MemcachedKilledAndRestartedUnderSessionTrafficFailsNoRequestAndLosesNoUpdate) {
    constexpr auto kMemcachedDown = 5s;
    ASSERT_NO_FATAL_FAILURE(build_lab("up --mode l2 --backends 2 --app php --memcached 2 --sessions agent", "faults"));
    write_config(config_text(false));
    ASSERT_NO_FATAL_FAILURE(start_daemon());

    constexpr int kUsers = 6;
    constexpr int kMaxRequestsPerUser = 2000;  // a bound; the stop file ends the traffic after the faults
    {
        std::ofstream script(dir_ + "/sessions.sh");
        script << "for u in $(seq " << kUsers << "); do\n"
               << "  (url='http://" << kLabVip << "/counter.php --interface " << kLabNet4 << ".'$((" << kLabClientHost
               << " + u))\n"
               << "   out=$(curl -sS --max-time 20 -w 'status=%{http_code}' $url | tr '\\n' ' ')\n"
               << "   echo \"$u $out\"\n"
               << "   sid=$(echo \"$out\" | sed -n 's/.*sid=\\([^ ]*\\).*/\\1/p')\n"
               << "   i=1\n"
               << "   while [ $i -lt " << kMaxRequestsPerUser << " ] && [ ! -e " << shell_quote(stop_file())
               << " ]; do\n"
               << "     out=$(curl -sS --max-time 20 -H \"Cookie: PHPSESSID=$sid\" -w 'status=%{http_code}' $url"
               << " | tr '\\n' ' ')\n"
               << "     echo \"$u $out\"\n"
               << "     i=$((i + 1))\n"
               << "   done) &\n"
               << "done\n"
               << "wait\n";
    }
    std::filesystem::remove(stop_file());
    BackgroundCommand traffic(in_ns(lab_ns("client"), "sh " + shell_quote(dir_ + "/sessions.sh")));
    const auto agent_scrape = [&](int backend) {
        return run_command(in_ns(backend_ns(backend), "curl -sS --max-time 2 http://127.0.0.1:" +
                                                          std::to_string(kAgentMetricsPort) + "/metrics"))
            .output;
    };
    const std::string resync_runs = "stickylb_agent_resync_runs_total";
    const std::string failovers = "stickylb_agent_upstream_failovers_total";
    for (int server = 1; server <= 2; ++server) {
        std::this_thread::sleep_for(1s);
        std::map<int, double> runs_before;
        for (int backend = 1; backend <= 2; ++backend)
            runs_before[backend] = sample_value(agent_scrape(backend), resync_runs).value_or(0.0);
        std::ifstream pidfile(lab_state_dir() + "/mc" + std::to_string(server) + ".pid");
        pid_t pid = 0;
        pidfile >> pid;
        ASSERT_GT(pid, 0) << "no PID for mc" << server;
        ASSERT_EQ(kill(pid, SIGKILL), 0) << "mc" << server;
        std::this_thread::sleep_for(kMemcachedDown);
        const auto started = run_command(lab_command("start-memcached " + std::to_string(server)));
        ASSERT_EQ(started.exit_code, 0) << started.output;
        // The next kill waits until both agents have copied their users' sessions back
        // to the restarted server (a resync run): until then a session not written
        // since has one copy, and losing the other server would lose it.
        const auto restarted_at = Clock::now();
        for (int backend = 1; backend <= 2; ++backend) {
            const auto resynced = [&] {
                return sample_value(agent_scrape(backend), resync_runs).value_or(0.0) > runs_before[backend];
            };
            for (int tries = 0; tries < 150 && !resynced(); ++tries)
                std::this_thread::sleep_for(100ms);
            ASSERT_TRUE(resynced()) << "be" << backend << "'s agent ran no resync to mc" << server
                                    << " within 15 s of its restart";
        }
        record("agents copied their sessions back to mc" + std::to_string(server) + " after its restart",
               std::to_string(milliseconds(Clock::now() - restarted_at)) + " ms");
    }
    std::this_thread::sleep_for(1s);
    std::ofstream(stop_file()) << "stop\n";
    const std::string output = traffic.wait().output;

    // Per user: the counter goes 1, 2, 3 ... with no gap and no repeat, all HTTP 200.
    std::map<int, std::vector<long>> counts;
    std::map<int, std::string> sids;
    long requests = 0, failures = 0;
    std::string first_failure;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream fields(line);
        int user = 0;
        if (!(fields >> user))
            continue;
        ++requests;
        const auto counter = parse_counter(line.substr(line.find(' ') + 1));
        if (counter && sids[user].empty())
            sids[user] = counter->sid;  // the user's first request started the session
        if (line.find("status=200") == std::string::npos || !counter || counter->sid != sids[user]) {
            if (++failures == 1)
                first_failure = line;
            continue;
        }
        counts[user].push_back(counter->n);
    }
    long lost_updates = 0;
    for (int user = 1; user <= kUsers; ++user) {
        ASSERT_FALSE(sids[user].empty()) << "user " << user << " got no session\n" << output;
        const auto& seen = counts[user];
        for (std::size_t i = 0; i < seen.size(); ++i)
            if (seen[i] != static_cast<long>(i) + 1) {
                ++lost_updates;
                ADD_FAILURE() << "user " << user << ": request " << i + 1 << " counted " << seen[i];
                break;
            }
    }
    double retried = 0;
    for (int backend = 1; backend <= 2; ++backend)
        retried += sample_value(agent_scrape(backend), failovers).value_or(0.0);
    record("memcached killed (-9), down 5 s and restarted under PHP session traffic through the VIP",
           "2 kills (mc1, then mc2), " + std::to_string(kUsers) + " users, " + std::to_string(requests) +
               " requests, " + std::to_string(failures) + " failed, " + std::to_string(lost_updates) +
               " users with a lost update or reset session; the agents sent " +
               std::to_string(static_cast<long>(retried)) + " requests on to the other server");
    EXPECT_EQ(failures, 0) << "first: " << first_failure;
    EXPECT_GT(requests, kUsers * 5) << "the traffic did not run during the faults";
}

}  // namespace
}  // namespace stickylb::testing
