// SPDX-License-Identifier: Apache-2.0
#pragma once
// One LB host's stickylbd in the namespace lab, for tests that run several
// (lab.sh up --lbs N): LB K lives in PREFIX-lb (K = 1) or PREFIX-lbK, with a work
// directory and a bpffs of its own. The single-LB fixture is support/daemon_lab.h.
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/lab.h"

namespace stickylb::testing::lab {

inline std::string lb_ns(int lb) { return lab_ns(lb == 1 ? "lb" : "lb" + std::to_string(lb)); }
inline std::string lb_address(int lb) { return lab_host(kLabLbHost + lb - 1); }

class LbDaemon {
public:
    LbDaemon(int lb, const std::string& test) : lb_(lb) {
        std::string pattern = "/tmp/stickylb-e2e-" + test + "-lb" + std::to_string(lb) + "-XXXXXX";
        if (mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
        dir_ = pattern;
        std::filesystem::create_directories(dir_ + "/bpffs");
        if (mount("bpf", (dir_ + "/bpffs").c_str(), "bpf", 0, nullptr) != 0)
            throw std::runtime_error("mount bpffs: " + std::string(std::strerror(errno)));
    }
    ~LbDaemon() {
        stop(SIGTERM);
        run_command(in_ns(lb_ns(lb_), lab_daemon_binary() + " --detach --config " + config_path()));
        umount2((dir_ + "/bpffs").c_str(), MNT_DETACH);
        std::filesystem::remove_all(dir_);
    }
    LbDaemon(const LbDaemon&) = delete;
    LbDaemon& operator=(const LbDaemon&) = delete;

    // The top of its config: interface and the work directory's paths.
    std::string config_preamble() const {
        return "interface: eth0\npin_dir: " + dir_ + "/bpffs/stickylb\nstate_file: " + dir_ +
               "/state.json\ncontrol_socket: " + dir_ + "/control.sock\nmetrics_listen: 127.0.0.1:19478\n";
    }
    std::string config_path() const { return dir_ + "/stickylbd.yaml"; }
    const std::string& dir() const { return dir_; }
    int index() const { return lb_; }
    void write_config(const std::string& text) const { std::ofstream(config_path()) << text; }

    // Starts it; ready when every backend has a health verdict.
    void start() {
        pid_ = fork();
        if (pid_ == 0) {
            setsid();
            const int fd = open((dir_ + "/stickylbd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            dup2(fd, 1);
            dup2(fd, 2);
            execlp("ip", "ip", "netns", "exec", lb_ns(lb_).c_str(), lab_daemon_binary().c_str(), "--config",
                   config_path().c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        ASSERT_GT(pid_, 0) << std::strerror(errno);
        groups_.push_back(pid_);
        for (int tries = 0; tries < 100; ++tries) {
            const auto shown = cli("backend show");
            if (shown.exit_code == 0 && shown.output.find("unknown") == std::string::npos)
                return;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        FAIL() << "stickylbd of LB " << lb_ << " did not become ready; log:\n" << log();
    }

    void stop(int signal) {
        if (pid_ <= 0)
            return;
        kill(pid_, signal);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    CommandResult cli(const std::string& arguments) const {
        return run_command(lab_cli_binary() + " -j -s " + shell_quote(dir_ + "/control.sock") + " " + arguments);
    }
    nlohmann::json cli_json(const std::string& arguments) const {
        const auto result = cli(arguments);
        EXPECT_EQ(result.exit_code, 0) << "LB " << lb_ << ": " << arguments << ": " << result.output;
        return nlohmann::json::parse(result.output, nullptr, false);
    }
    // The process group of every start (each leads its own; its announce guard is in it).
    const std::vector<pid_t>& groups() const { return groups_; }
    bool running() const { return pid_ > 0; }
    std::string log() const {
        std::ifstream file(dir_ + "/stickylbd.log");
        return std::string(std::istreambuf_iterator<char>(file), {});
    }

private:
    int lb_;
    std::string dir_;
    pid_t pid_ = -1;
    std::vector<pid_t> groups_;
};

}  // namespace stickylb::testing::lab
