// SPDX-License-Identifier: Apache-2.0
#pragma once
// A GoogleTest fixture for stickylbd in the namespace lab (tools/lab/lab.sh): builds
// the lab, gives the daemon a work directory with a bpffs of its own, runs it in the
// LB's namespace and drives it through its control socket with the stickylb CLI.
// TearDown stops the daemon, detaches its XDP program and pins, removes the lab.
//
// The bpffs is mounted out here because `ip netns exec` remounts /sys: pins under
// /sys/fs/bpf would not outlive the daemon's process.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/lab.h"

namespace stickylb::testing::lab {

class DaemonLabTest : public ::testing::Test {
protected:
    // Runs lab.sh ARGUMENTS ("up ..."), then makes the work directory
    // /tmp/stickylb-e2e-NAME-XXXXXX with its bpffs. Wrap in ASSERT_NO_FATAL_FAILURE.
    void build_lab(const std::string& arguments, const std::string& name) {
        lab_up_ = true;
        const auto up = run_command(lab_command(arguments));
        ASSERT_EQ(up.exit_code, 0) << up.output;
        std::string pattern = "/tmp/stickylb-e2e-" + name + "-XXXXXX";
        ASSERT_NE(mkdtemp(pattern.data()), nullptr) << pattern << ": " << std::strerror(errno);
        dir_ = pattern;
        std::filesystem::create_directories(dir_ + "/bpffs");
        ASSERT_EQ(mount("bpf", (dir_ + "/bpffs").c_str(), "bpf", 0, nullptr), 0) << std::strerror(errno);
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
    std::string pin_dir() const { return dir_ + "/bpffs/stickylb"; }
    static std::string daemon_binary() { return lab_daemon_binary(); }
    static std::string cli_binary() { return lab_cli_binary(); }

    // The top of every config: interface, the work directory's paths, metrics_listen_.
    std::string config_preamble() const {
        return "interface: eth0\n"
               "pin_dir: " +
               pin_dir() +
               "\n"
               "state_file: " +
               dir_ +
               "/state.json\n"
               "control_socket: " +
               dir_ +
               "/control.sock\n"
               "metrics_listen: " +
               metrics_listen_ + "\n";
    }

    void write_config(const std::string& text) const { std::ofstream(config_path()) << text; }

    // Runs COMMAND in the LB's namespace as the leader of its own session, its output
    // appended to LOG; `ip netns exec` execs COMMAND, so the PID is COMMAND's.
    pid_t spawn_in_lb(std::vector<std::string> command, const std::string& log) const {
        const pid_t pid = fork();
        if (pid == 0) {
            setsid();
            const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            dup2(fd, 1);
            dup2(fd, 2);
            std::vector<std::string> args = {"ip", "netns", "exec", lab_ns("lb")};
            args.insert(args.end(), command.begin(), command.end());
            std::vector<char*> argv;
            for (auto& arg : args)
                argv.push_back(arg.data());
            argv.push_back(nullptr);
            execvp("ip", argv.data());
            _exit(127);
        }
        return pid;
    }

    // Starts stickylbd on config_path(); ready when the control socket answers and
    // every backend has a health verdict.
    void start_daemon() {
        daemon_pid_ = spawn_in_lb({daemon_binary(), "--config", config_path()}, dir_ + "/stickylbd.log");
        ASSERT_GT(daemon_pid_, 0) << std::strerror(errno);
        daemon_groups_.push_back(daemon_pid_);
        for (int tries = 0; tries < 100; ++tries) {
            const auto shown = cli("backend show");
            if (shown.exit_code == 0 && shown.output.find("unknown") == std::string::npos)
                return;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        FAIL() << "stickylbd did not become ready; log:\n" << daemon_log();
    }

    void stop_daemon(int signal) {
        if (daemon_pid_ <= 0)
            return;
        kill(daemon_pid_, signal);
        waitpid(daemon_pid_, nullptr, 0);
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

    // Backend name -> health state ("up", "down", ...), of every VIP.
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
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        EXPECT_EQ(backend_states()[backend], state) << daemon_log();
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    }

    // GET / of the VIP from extra client address CLIENT: the backend that
    // answered, or "" on failure.
    static std::string request_from(int client) {
        const auto answer =
            run_command(in_ns(lab_ns("client"), "curl -sS --max-time 3 --interface " + client_address(client) +
                                                    " http://" + kLabVip + "/"));
        const std::string body = trim(answer.output);
        return answer.exit_code == 0 && body.rfind("backend=", 0) == 0 ? body.substr(8) : "";
    }

    std::string metrics_command() const {
        return in_ns(lab_ns("lb"), "curl -sS --max-time 3 http://" + metrics_listen_ + "/metrics");
    }
    std::string metrics() const { return run_command(metrics_command()).output; }
    std::optional<double> metric(const std::string& series) const { return sample_value(metrics(), series); }
    // promtool on the daemon's live scrape.
    CommandResult lint_metrics() const { return run_command(metrics_command() + " | promtool check metrics"); }

    std::string dir_;
    std::string metrics_listen_ = "127.0.0.1:19478";
    pid_t daemon_pid_ = -1;
    std::vector<pid_t> daemon_groups_;  // of every start: each leads its own process group
    bool lab_up_ = false;
};

}  // namespace stickylb::testing::lab
