// SPDX-License-Identifier: Apache-2.0
#pragma once
// The stickylb-agent binary run as a process of its own, for tests that look
// at it from outside: its memory (VmRSS), its exit, how it refuses to start.
// Ended by PID (SIGKILL if still running) when the object goes away.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace stickylb::testing {

class AgentProcess {
public:
    struct Options {
        std::vector<std::string> arguments;      // after the program name
        std::string log_path;                    // stdout and stderr
        std::optional<rlim_t> descriptor_limit;  // RLIMIT_NOFILE, soft and hard
        bool as_nobody_if_root = false;          // drop privileges before exec (no raising limits back)
    };

    AgentProcess(const std::string& binary, Options options) : log_path_(options.log_path) {
        std::vector<std::string> arguments{binary};
        arguments.insert(arguments.end(), options.arguments.begin(), options.arguments.end());
        std::vector<char*> argv;
        for (auto& argument : arguments)
            argv.push_back(argument.data());
        argv.push_back(nullptr);
        std::optional<std::pair<uid_t, gid_t>> nobody;
        if (options.as_nobody_if_root && ::geteuid() == 0) {
            const passwd* entry = ::getpwnam("nobody");
            if (entry == nullptr)
                throw std::runtime_error("running as root and there is no user 'nobody'");
            nobody.emplace(entry->pw_uid, entry->pw_gid);
        }
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0)
            throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (pid_ == 0) {
            // Only async-signal-safe calls here: the test may have threads.
            const int log = ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (log < 0 || ::dup2(log, 1) < 0 || ::dup2(log, 2) < 0)
                ::_exit(125);
            if (options.descriptor_limit) {
                const rlimit limit{*options.descriptor_limit, *options.descriptor_limit};
                if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
                    ::_exit(124);
            }
            if (nobody &&
                (::setgroups(0, nullptr) != 0 || ::setgid(nobody->second) != 0 || ::setuid(nobody->first) != 0)) {
                ::_exit(126);
            }
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed test leaves no agent behind
            if (::getppid() != parent)
                ::_exit(127);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
    }
    ~AgentProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            reap(true);
        }
    }
    AgentProcess(const AgentProcess&) = delete;
    AgentProcess& operator=(const AgentProcess&) = delete;

    pid_t pid() const { return pid_; }

    // Resident memory now, from /proc (0 once it has exited).
    std::uint64_t rss_bytes() const {
        std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
        for (std::string line; std::getline(status, line);) {
            if (line.starts_with("VmRSS:"))
                return std::stoull(line.substr(6)) * 1024;
        }
        return 0;
    }

    // Its exit status (the code, or 128 + signal) once it has exited within `limit`; nullopt if still running.
    std::optional<int> wait_exit(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            if (pid_ <= 0)
                return status_;
            if (reap(false))
                return status_;
            if (std::chrono::steady_clock::now() >= deadline)
                return std::nullopt;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    void signal(int number) const {
        if (pid_ > 0)
            ::kill(pid_, number);
    }

    std::string log() const {
        std::ifstream in(log_path_);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }

private:
    bool reap(bool block) {
        int status = 0;
        pid_t result;
        do {
            result = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
        } while (result < 0 && errno == EINTR);
        if (result != pid_)
            return false;
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        return true;
    }

    pid_t pid_ = -1;
    std::optional<int> status_;
    std::string log_path_;
};

}  // namespace stickylb::testing
