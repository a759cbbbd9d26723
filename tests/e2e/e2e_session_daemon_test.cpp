// SPDX-License-Identifier: Apache-2.0
// stickylbd's session coordination in the namespace lab, with a real memcached
// in the LB's namespace: the membership view says down as soon as a backend's
// server dies (and its incarnation grows when it returns); memcached dying
// stops neither traffic nor failover and the view is back once memcached is;
// and a daemon that loses its pinned maps (a new LB host) gets every client's
// affinity back from memcached before it forwards anything.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "session/membership_view.h"
#include "support/daemon_lab.h"
#include "support/lab.h"
#include "support/session_lab.h"
#include "support/memcached_process.h"
#include "support/privileges.h"

namespace stickylb::testing {
namespace {

using namespace lab;
using namespace std::chrono_literals;

constexpr int kBackends = 3;
constexpr int kClients = 12;                           // extra client addresses 1..
constexpr const char* kMemcached = "127.0.0.1:11211";  // inside the LB's namespace
constexpr const char* kMetrics = "127.0.0.1:19479";

struct Settings {
    std::string refresh = "200ms";
    std::string ttl = "2s";
    std::string save_interval = "60s";
};

class SessionDaemon : public DaemonLabTest {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        if (!MemcachedProcess::binary()) {
            if (privileged_tier_required())
                FAIL() << "memcached is not installed and STICKYLB_REQUIRE_PRIVILEGED=1 forbids skipping";
            GTEST_SKIP() << "memcached is not installed: apt-get install memcached, or tools/install-deps.sh";
        }
        metrics_listen_ = kMetrics;
        ASSERT_NO_FATAL_FAILURE(build_lab("up --mode l2 --backends " + std::to_string(kBackends), "session"));
        start_memcached();
    }

    void TearDown() override {
        stop_daemon(SIGTERM);  // before memcached: it saves its affinities on the way out
        stop_memcached();
        DaemonLabTest::TearDown();
    }

    // key_file: session.key_file ("": memcached data unsigned).
    void write_config(const Settings& settings, const std::string& key_file = "") const {
        std::ofstream yaml(config_path());
        yaml << config_preamble() << "memcached_servers: [" << kMemcached << "]\n"
             << "session:\n"
             << "  view_refresh_interval: " << settings.refresh << "\n"
             << "  view_ttl: " << settings.ttl << "\n"
             << "  affinity_save_interval: " << settings.save_interval << "\n"
             << "  memcached_connect_timeout: 100ms\n"
             << "  memcached_timeout: 200ms\n"
             << (key_file.empty() ? "" : "  key_file: " + key_file + "\n") << "vips:\n"
             << "  - name: web\n"
             << "    address: " << kLabVip << "\n"
             << "    port: 80\n"
             << "    persistence: {enabled: true, timeout_s: 300}\n"
             << "    health: {kind: tcp, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}\n"
             << "    backends:\n";
        for (int n = 1; n <= kBackends; ++n)
            yaml << "      - name: be" << n << "\n        address: " << backend_address(n) << "\n";
    }

    void start_memcached() {
        memcached_pid_ = spawn_in_lb(
            {*MemcachedProcess::binary(), "-u", "nobody", "-l", "127.0.0.1", "-p", "11211", "-U", "0", "-m", "64"},
            dir_ + "/memcached.log");
        ASSERT_GT(memcached_pid_, 0);
        for (int tries = 0; tries < 100; ++tries) {
            if (run_command(in_ns(lab_ns("lb"),
                                  "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", "
                                  "11211), timeout=1)'"))
                    .exit_code == 0)
                return;
            std::this_thread::sleep_for(50ms);
        }
        FAIL() << "memcached did not start in " << lab_ns("lb");
    }

    void stop_memcached() {
        if (memcached_pid_ <= 0)
            return;
        kill(memcached_pid_, SIGKILL);
        waitpid(memcached_pid_, nullptr, 0);
        memcached_pid_ = -1;
    }

    // The view as memcached holds it, read with the agent's parser; nullopt if absent.
    std::optional<session::MembershipView> stored_view() const {
        return read_membership_view(lab_ns("lb"), "127.0.0.1", 11211, "web");
    }

    // Polls (bounded) until the stored view satisfies `wanted`.
    template <typename Wanted>
    std::optional<session::MembershipView> wait_for_view(Wanted wanted, std::chrono::milliseconds limit) const {
        const auto end = std::chrono::steady_clock::now() + limit;
        std::optional<session::MembershipView> view;
        do {
            view = stored_view();
            if (view && wanted(*view))
                return view;
            std::this_thread::sleep_for(20ms);
        } while (std::chrono::steady_clock::now() < end);
        return std::nullopt;
    }

    // Writes KEY = VALUE into the LB's memcached, as anyone who reaches it could.
    void plant(const std::string& key, const std::string& value) const {
        const auto stored =
            memcached_request(lab_ns("lb"), "127.0.0.1", 11211,
                              "set " + key + " 0 600 " + std::to_string(value.size()) + "\r\n" + value + "\r\n");
        ASSERT_EQ(trim(stored.output), "STORED") << key;
    }

    pid_t memcached_pid_ = -1;
};

session::MemberState state_of(const session::MembershipView& view, const std::string& backend) {
    const session::Member* member = view.find(backend);
    return member ? member->state : session::MemberState::up;
}

// (a) A backend's server stops: the view says down as soon as the daemon does,
// long before the next refresh could have written it; it comes back up with a
// new incarnation.
TEST_F(SessionDaemon, ViewSaysDownAtOnceAndIncarnationGrowsWhenBack) {
    // A refresh far longer than the waits below: only the change itself can write the view.
    write_config({.refresh = "10s", .ttl = "30s"});
    start_daemon();
    const auto first = wait_for_view([](const auto& view) { return view.backends.size() == 3; }, 5s);
    ASSERT_TRUE(first) << daemon_log();
    for (const auto& [name, member] : first->backends) {
        EXPECT_EQ(member.state, session::MemberState::up) << name;
        EXPECT_EQ(member.incarnation, 1u) << name;
    }
    EXPECT_EQ(metric("stickylb_memcached_up{server=\"127.0.0.1:11211\"}"), 1.0) << metrics();

    ASSERT_EQ(run_command(lab_command("stop-backend 1")).exit_code, 0);
    wait_for_state("be1", "down");
    const auto down =
        wait_for_view([](const auto& view) { return state_of(view, "be1") == session::MemberState::down; }, 3s);
    ASSERT_TRUE(down) << "the view did not say down before the next refresh:\n" << daemon_log();
    EXPECT_EQ(down->epoch, first->epoch + 1);
    EXPECT_EQ(down->backends.at("be1").incarnation, 1u);
    EXPECT_EQ(metric("stickylb_failover_view_written_seconds_count"), 1.0) << metrics();
    EXPECT_GT(metric("stickylb_backend_last_failover_timestamp_seconds{vip=\"web\",backend=\"be1\"}").value_or(0), 0);

    ASSERT_EQ(run_command(lab_command("start-backend 1")).exit_code, 0);
    wait_for_state("be1", "up");
    const auto back =
        wait_for_view([](const auto& view) { return state_of(view, "be1") == session::MemberState::up; }, 3s);
    ASSERT_TRUE(back) << daemon_log();
    EXPECT_EQ(back->epoch, first->epoch + 2);
    EXPECT_EQ(back->backends.at("be1").incarnation, 2u) << "a new life after being down";
    EXPECT_EQ(back->backends.at("be2").incarnation, 1u);

    const auto shown = cli_json("session show");
    ASSERT_EQ(shown["clusters"].size(), 1u) << shown.dump();
    EXPECT_EQ(shown["clusters"][0]["cluster"], "web");
    EXPECT_EQ(shown["clusters"][0]["epoch"], back->epoch);
    EXPECT_EQ(shown["servers"][0]["server"], kMemcached);
    EXPECT_EQ(shown["servers"][0]["up"], true);
    const auto linted = lint_metrics();
    EXPECT_EQ(linted.exit_code, 0) << linted.output;
}

// (b) memcached dies: HTTP keeps flowing, failover keeps working, the metrics
// say memcached is down; memcached returns empty: the view is written again.
TEST_F(SessionDaemon, MemcachedDownChangesNothingButTheMetricsAndTheViewComesBack) {
    write_config({});  // refresh 200ms, TTL 2s
    start_daemon();
    ASSERT_TRUE(wait_for_view([](const auto& view) { return view.backends.size() == 3; }, 5s)) << daemon_log();
    std::map<int, std::string> before;
    for (int client = 1; client <= kClients; ++client)
        before[client] = request_from(client);

    stop_memcached();
    bool reported_down = false;
    for (int tries = 0; tries < 100 && !reported_down; ++tries) {
        reported_down = metric("stickylb_memcached_up{server=\"127.0.0.1:11211\"}") == 0.0;
        if (!reported_down)
            std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(reported_down) << metrics();
    EXPECT_GT(metric("stickylb_memcached_errors_total{server=\"127.0.0.1:11211\"}").value_or(0), 0) << metrics();
    for (int round = 0; round < 3; ++round) {
        for (int client = 1; client <= kClients; ++client)
            EXPECT_EQ(request_from(client), before[client]) << "client " << client << " with memcached down";
        std::this_thread::sleep_for(300ms);
    }
    // Failover does not wait for memcached either.
    ASSERT_EQ(run_command(lab_command("stop-backend 2")).exit_code, 0);
    wait_for_state("be2", "down");
    for (int client = 1; client <= kClients; ++client) {
        const std::string now = request_from(client);
        EXPECT_FALSE(now.empty()) << "client " << client;
        EXPECT_NE(now, "be2");
    }
    EXPECT_EQ(cli_json("session show")["servers"][0]["up"], false);

    start_memcached();  // empty
    const auto rewritten =
        wait_for_view([](const auto& view) { return state_of(view, "be2") == session::MemberState::down; }, 10s);
    ASSERT_TRUE(rewritten) << "the view was not written again after memcached came back:\n" << daemon_log();
    EXPECT_EQ(rewritten->backends.size(), 3u);
    bool reported_up = false;
    for (int tries = 0; tries < 100 && !reported_up; ++tries) {
        reported_up = metric("stickylb_memcached_up{server=\"127.0.0.1:11211\"}") == 1.0;
        if (!reported_up)
            std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(reported_up) << metrics();
    ASSERT_EQ(run_command(lab_command("start-backend 2")).exit_code, 0);
}

// (c) The daemon stops (a last snapshot), its pins and state file go (a new LB
// host), it starts again: every client's affinity is back before the first
// packet, so every client stays on its backend, even where today's ring would
// send it elsewhere.
TEST_F(SessionDaemon, AffinitiesSurviveTheLossOfThePinnedMaps) {
    write_config({});
    start_daemon();
    // Clients arrive while be1 is down: their affinities go to be2 and be3 and
    // stay there when be1 is back (no failback), although the ring now gives
    // about a third of them to be1.
    ASSERT_EQ(run_command(lab_command("stop-backend 1")).exit_code, 0);
    wait_for_state("be1", "down");
    std::map<int, std::string> before;
    for (int client = 1; client <= kClients; ++client) {
        before[client] = request_from(client);
        ASSERT_FALSE(before[client].empty()) << "client " << client;
    }
    ASSERT_EQ(run_command(lab_command("start-backend 1")).exit_code, 0);
    wait_for_state("be1", "up");
    const auto affinities = cli_json("affinity show vip web");
    ASSERT_EQ(affinities.size(), static_cast<std::size_t>(kClients)) << affinities.dump();
    const auto epoch_before = cli_json("session show")["clusters"][0]["epoch"].get<std::uint64_t>();

    const auto saved = cli_json("affinity save");
    EXPECT_EQ(saved["entries"], kClients) << saved.dump();
    EXPECT_EQ(saved["servers_written"], nlohmann::json::array({kMemcached})) << saved.dump();

    stop_daemon(SIGTERM);  // saves once more on the way out
    EXPECT_NE(daemon_log().find("affinity snapshot saved: 12 entries"), std::string::npos) << daemon_log();
    const auto detached = run_command(in_ns(lab_ns("lb"), daemon_binary() + " --detach --config " + config_path()));
    ASSERT_EQ(detached.exit_code, 0) << detached.output;
    ASSERT_FALSE(std::filesystem::exists(pin_dir() + "/affinity"));
    ASSERT_FALSE(std::filesystem::exists(dir_ + "/state.json"));

    start_daemon();
    EXPECT_NE(daemon_log().find("12 clients restored"), std::string::npos) << daemon_log();
    std::map<std::string, std::string> restored;  // client -> backend, before any new packet
    for (const auto& entry : cli_json("affinity show vip web"))
        restored[entry["client"]] = entry["backend"];
    EXPECT_EQ(restored.size(), static_cast<std::size_t>(kClients));
    for (const auto& entry : affinities)
        EXPECT_EQ(restored[entry["client"]], entry["backend"]) << entry.dump();
    for (int client = 1; client <= kClients; ++client)
        EXPECT_EQ(request_from(client), before[client]) << "client " << client << " moved with the new LB host";
    EXPECT_GE(cli_json("session show")["clusters"][0]["epoch"].get<std::uint64_t>(), epoch_before)
        << "the epoch went backwards without the state file";

    // The operator's restore adds nothing that is already there.
    const auto again = cli_json("affinity restore");
    EXPECT_EQ(again["restored"], 0) << again.dump();
    EXPECT_EQ(again["skipped_present"], kClients) << again.dump();

    // Without the restore, today's ring would have moved some of them (the lab's
    // addresses and seed are fixed, so this is not luck): forget and see.
    ASSERT_EQ(cli("flow flush").exit_code, 0);
    ASSERT_EQ(cli("affinity flush").exit_code, 0);
    int moved_by_ring = 0;
    for (int client = 1; client <= kClients; ++client)
        moved_by_ring += request_from(client) != before[client];
    EXPECT_GT(moved_by_ring, 0) << "every client's ring pick is its old backend: the test proves nothing";
    std::cout << moved_by_ring << " of " << kClients << " clients kept their backend only thanks to the restore\n";
}

// drain force: the view says draining first, then the backend's clients move:
// their next connections land elsewhere, the others do not move.
TEST_F(SessionDaemon, DrainForceWritesTheViewThenMovesTheClients) {
    write_config({.refresh = "10s", .ttl = "30s"});
    start_daemon();
    std::map<int, std::string> before;
    for (int client = 1; client <= kClients; ++client)
        before[client] = request_from(client);
    int on_be2 = 0;
    for (const auto& [client, backend] : before)
        on_be2 += backend == "be2";
    ASSERT_GT(on_be2, 0) << "no client on be2 to move; the ring gave: " << before.size();

    const auto drained = cli_json("backend drain web be2 force");
    EXPECT_EQ(drained["state"], "draining") << drained.dump();
    EXPECT_EQ(drained["clients_moved"], on_be2) << drained.dump();
    EXPECT_EQ(drained["view"]["written"], 1) << drained.dump();
    const auto view = stored_view();
    ASSERT_TRUE(view);
    EXPECT_EQ(state_of(*view, "be2"), session::MemberState::draining);
    for (int client = 1; client <= kClients; ++client) {
        const std::string now = request_from(client);
        if (before[client] == "be2")
            EXPECT_NE(now, "be2") << "client " << client << " still on the drained backend";
        else
            EXPECT_EQ(now, before[client]) << "client " << client << " of another backend moved";
    }
    EXPECT_EQ(metric("stickylb_affinity_clients_moved_total{vip=\"web\",backend=\"be2\"}"), on_be2) << metrics();
}

// (e) memcached holds what anyone who reaches it wrote: a snapshot manifest
// claiming 4294967295 entries and a view whose epoch the next change would
// wrap, there before a fresh start. The daemon starts and forwards, says why
// it restored nothing, counts both, and publishes its own epochs. With a key,
// what it writes is signed and the unsigned snapshot is refused.
TEST_F(SessionDaemon, ForgedSnapshotsAndViewsInMemcachedNeitherStopNorMisleadTheDaemon) {
    const std::string now = std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    const std::string manifest = R"({"format":1,"generation":"00000000000000aa","written_ms":)" + now +
                                 R"(,"vips":["web"],"backends":["be1"],)"
                                 R"("chunks":[{"entries":4294967295,"bytes":262144,"fnv1a":"0000000000000000"}]})";
    ASSERT_NO_FATAL_FAILURE(plant("stickylb:v1:affinity:manifest", manifest));
    ASSERT_NO_FATAL_FAILURE(plant(session::members_key("web"), R"({"cluster":"web","epoch":18446744073709551615,)"
                                                               R"("written_ms":)" +
                                                                   now + R"(,"backends":{}})"));
    write_config({});
    start_daemon();
    EXPECT_FALSE(request_from(1).empty()) << "the daemon does not forward";
    EXPECT_NE(daemon_log().find("starting with an empty affinity table"), std::string::npos) << daemon_log();
    EXPECT_NE(daemon_log().find("not authenticated"), std::string::npos) << daemon_log();
    EXPECT_EQ(metric("stickylb_affinity_restore_failures_total"), 1.0) << metrics();
    EXPECT_EQ(metric("stickylb_memcached_rejected_total{reason=\"too_large\"}"), 1.0) << metrics();
    EXPECT_GE(metric("stickylb_memcached_rejected_total{reason=\"malformed\"}").value_or(0), 1.0) << metrics();
    EXPECT_EQ(cli_json("session show")["clusters"][0]["epoch"], 1) << "the forged epoch was taken";
    const auto linted = lint_metrics();
    EXPECT_EQ(linted.exit_code, 0) << linted.output;

    // The same, with a key: the daemon's own view is signed, the forged snapshot refused as unsigned.
    stop_daemon(SIGTERM);
    ASSERT_EQ(run_command(in_ns(lab_ns("lb"), daemon_binary() + " --detach --config " + config_path())).exit_code, 0);
    const std::string key_path = dir_ + "/session.key";
    std::ofstream(key_path) << "the-cluster-session-key\n";
    std::filesystem::permissions(key_path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    ASSERT_NO_FATAL_FAILURE(plant("stickylb:v1:affinity:manifest", manifest));
    write_config({}, key_path);
    const auto checked = run_command(daemon_binary() + " --check-config " + config_path());
    EXPECT_EQ(checked.exit_code, 0) << checked.output;
    start_daemon();
    // The manifest, and the unkeyed daemon's last view if it has not expired yet.
    EXPECT_GE(metric("stickylb_memcached_rejected_total{reason=\"unsigned\"}").value_or(0), 1.0) << metrics();
    EXPECT_NE(daemon_log().find("affinity snapshot manifest refused (unsigned)"), std::string::npos) << daemon_log();
    EXPECT_EQ(cli_json("session show")["authenticated"], true);
    const auto stored = memcached_get(lab_ns("lb"), "127.0.0.1", 11211, session::members_key("web"));
    ASSERT_EQ(stored.exit_code, 0);
    EXPECT_TRUE(stored.output.starts_with("SLBMAC1 ")) << stored.output;

    // A key file others may read is refused before anything starts.
    std::filesystem::permissions(key_path, std::filesystem::perms::group_read, std::filesystem::perm_options::add);
    const auto refused = run_command(daemon_binary() + " --check-config " + config_path());
    EXPECT_NE(refused.exit_code, 0);
    EXPECT_NE(refused.output.find("group or others"), std::string::npos) << refused.output;
}

}  // namespace
}  // namespace stickylb::testing
