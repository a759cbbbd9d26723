// SPDX-License-Identifier: Apache-2.0
// stickylbd in the namespace lab, as an operator uses it: a backend's server
// dies and comes back, the daemon is killed with -9 under load and restarted,
// the config file is reloaded with SIGHUP (good and broken).
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/lab.h"
#include "support/privileges.h"

namespace stickylb::testing {
namespace {

using namespace lab;
using namespace std::chrono_literals;

constexpr const char* kVip = "10.89.0.250";
constexpr int kBackends = 3;
constexpr int kClients = 12;  // client addresses 10.89.0.101..

class Daemon : public ::testing::Test {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        lab_up_ = true;
        const auto up = run_command(lab_command("up --mode l2 --backends " + std::to_string(kBackends)));
        ASSERT_EQ(up.exit_code, 0) << up.output;
        char pattern[] = "/tmp/stickylb-e2e-daemon-XXXXXX";
        dir_ = mkdtemp(pattern);
        // The daemon runs inside the LB's network namespace, where `ip netns exec`
        // remounts /sys: its pins live in a bpffs of our own, mounted out here.
        std::filesystem::create_directories(dir_ + "/bpffs");
        ASSERT_EQ(mount("bpf", (dir_ + "/bpffs").c_str(), "bpf", 0, nullptr), 0) << std::strerror(errno);
        write_config(config_text());
        start_daemon();
    }

    void TearDown() override {
        stop_daemon(SIGTERM);
        if (!dir_.empty()) {
            if (lab_up_)
                run_command(in_ns(lab_ns("lb"), daemon_binary() + " --detach --config " + config_path()));
            umount2((dir_ + "/bpffs").c_str(), MNT_DETACH);
            std::filesystem::remove_all(dir_);
        }
        if (lab_up_)
            run_command(lab_command("down"));
        EXPECT_TRUE(lab_namespaces_left().empty());
    }

    std::string config_path() const { return dir_ + "/stickylbd.yaml"; }
    static std::string daemon_binary() { return std::string(STICKYLB_BUILD_DIR) + "/userspace/daemon/stickylbd"; }
    static std::string cli_binary() { return std::string(STICKYLB_BUILD_DIR) + "/userspace/cli/stickylb"; }

    std::string config_text(const std::string& extra_backend = "", std::uint32_t be2_weight = 1) const {
        std::ostringstream yaml;
        yaml << "interface: eth0\n"
             << "pin_dir: " << dir_ << "/bpffs/stickylb\n"
             << "state_file: " << dir_ << "/state.json\n"
             << "control_socket: " << dir_ << "/control.sock\n"
             << "metrics_listen: 127.0.0.1:19478\n"
             << "vips:\n"
             << "  - name: web\n"
             << "    address: " << kVip << "\n"
             << "    port: 80\n"
             << "    persistence: {enabled: true, timeout_s: 300}\n"
             << "    health: {kind: tcp, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}\n"
             << "    backends:\n";
        for (int n = 1; n <= kBackends; ++n) {
            if (n == 3 && extra_backend.empty() && skip_third_)
                continue;
            yaml << "      - name: be" << n << "\n        address: 10.89.0." << 20 + n << "\n";
            if (n == 2)
                yaml << "        weight: " << be2_weight << "\n";
        }
        yaml << extra_backend;
        return yaml.str();
    }

    void write_config(const std::string& text) const { std::ofstream(config_path()) << text; }

    void start_daemon() {
        const std::string log = dir_ + "/stickylbd.log";
        daemon_pid_ = fork();
        ASSERT_GE(daemon_pid_, 0);
        if (daemon_pid_ == 0) {
            setsid();
            const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            dup2(fd, 1);
            dup2(fd, 2);
            const std::string ns = lab_ns("lb"), binary = daemon_binary(), config = config_path();
            execlp("ip", "ip", "netns", "exec", ns.c_str(), binary.c_str(), "--config", config.c_str(), nullptr);
            _exit(127);
        }
        // Ready when the control socket answers and every backend has a health verdict.
        for (int tries = 0; tries < 100; ++tries) {
            const auto shown = cli("backend show");
            if (shown.exit_code == 0 && shown.output.find("unknown") == std::string::npos)
                return;
            std::this_thread::sleep_for(100ms);
        }
        FAIL() << "stickylbd did not become ready; log:\n" << daemon_log();
    }

    void stop_daemon(int signal) {
        if (daemon_pid_ <= 0)
            return;
        kill(daemon_pid_, signal);
        int status = 0;
        waitpid(daemon_pid_, &status, 0);
        daemon_pid_ = -1;
    }

    std::string daemon_log() const {
        std::ifstream file(dir_ + "/stickylbd.log");
        return std::string(std::istreambuf_iterator<char>(file), {});
    }

    CommandResult cli(const std::string& arguments) const {
        return run_command(cli_binary() + " -j -s " + shell_quote(dir_ + "/control.sock") + " " + arguments);
    }

    nlohmann::json cli_json(const std::string& arguments) const {
        const auto result = cli(arguments);
        EXPECT_EQ(result.exit_code, 0) << arguments << ": " << result.output;
        return nlohmann::json::parse(result.output, nullptr, false);
    }

    std::map<std::string, std::string> backend_states() const {
        std::map<std::string, std::string> states;
        for (const auto& backend : cli_json("backend show"))
            states[backend["name"]] = backend["state"];
        return states;
    }

    // Polls (bounded) until the backend reaches the state; returns how long it took.
    std::chrono::milliseconds wait_for_state(const std::string& backend, const std::string& state) const {
        const auto start = std::chrono::steady_clock::now();
        for (int tries = 0; tries < 100; ++tries) {
            if (backend_states()[backend] == state)
                break;
            std::this_thread::sleep_for(50ms);
        }
        EXPECT_EQ(backend_states()[backend], state) << daemon_log();
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    }

    // One request from client address N: the backend that answered, or "" on failure.
    static std::string request_from(int client) {
        const auto answer = run_command(in_ns(lab_ns("client"), "curl -sS --max-time 3 --interface 10.89.0." +
                                                                     std::to_string(100 + client) + " http://" +
                                                                     kVip + "/"));
        const std::string body = trim(answer.output);
        return answer.exit_code == 0 && body.rfind("backend=", 0) == 0 ? body.substr(8) : "";
    }

    std::string metrics() const {
        return run_command(in_ns(lab_ns("lb"), "curl -sS --max-time 3 http://127.0.0.1:19478/metrics")).output;
    }

    std::string dir_;
    pid_t daemon_pid_ = -1;
    bool lab_up_ = false;
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
    const auto linted = run_command(in_ns(lab_ns("lb"), "curl -sS --max-time 3 http://127.0.0.1:19478/metrics") +
                                    " | promtool check metrics");
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
               << "for i in $(seq " << kPerConnection << "); do urls=\"$urls -o /dev/null http://" << kVip
               << "/\"; done\n"
               << "for round in $(seq " << kRounds << "); do\n"
               << "  for c in $(seq " << kConnections << "); do\n"
               << "    curl -s --interface 10.89.0.10$c --max-time 10 -w '%{http_code}\\n' $urls\n"
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
