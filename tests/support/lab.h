// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shell helpers for tests that drive the namespace lab (tools/lab/lab.sh).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <exception>
#include <optional>
#include <thread>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/memcache_text_client.h"

namespace stickylb::testing::lab {

inline std::string lab_prefix() {
    const char* prefix = std::getenv("STICKYLB_LAB_PREFIX");
    return prefix != nullptr && *prefix != '\0' ? prefix : "slb";
}
inline std::string lab_ns(const std::string& role) { return lab_prefix() + "-" + role; }
inline std::string backend_ns(int index) { return lab_ns("be" + std::to_string(index)); }

inline std::string shell_quote(const std::string& text) {
    std::string quoted = "'";
    for (char c : text) {
        if (c == '\'')
            quoted += "'\\''";
        else
            quoted += c;
    }
    return quoted + "'";
}

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr
};

inline CommandResult run_command(const std::string& command) {
    CommandResult result;
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr) {
        result.output = "popen failed: " + std::string(std::strerror(errno));
        return result;
    }
    std::array<char, 4096> buffer;
    std::size_t count;
    while ((count = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
        result.output.append(buffer.data(), count);
    const int status = pclose(pipe);
    result.exit_code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

inline std::string in_ns(const std::string& ns, const std::string& command) {
    return "ip netns exec " + shell_quote(ns) + " " + command;
}

inline std::string trim(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
        text.pop_back();
    return text;
}

inline std::string lab_command(const std::string& arguments) {
    return "STICKYLB_BUILD_DIR=" + shell_quote(STICKYLB_BUILD_DIR) + " " +
           shell_quote(std::string(STICKYLB_SOURCE_DIR) + "/tools/lab/lab.sh") + " " + arguments;
}

inline std::vector<std::string> lab_namespaces_left() {
    const auto listed = run_command("ip netns list");
    std::vector<std::string> left;
    std::istringstream lines(listed.output);
    std::string line;
    const std::string prefix = lab_prefix() + "-";
    while (std::getline(lines, line)) {
        const std::string name = line.substr(0, line.find(' '));
        if (name.rfind(prefix, 0) == 0)
            left.push_back(name);
    }
    return left;
}

// Where lab.sh keeps PID files, logs and the PHP backends' files (its STATE_DIR).
inline std::string lab_state_dir() {
    const char* state = std::getenv("STICKYLB_LAB_STATE");
    if (state != nullptr && *state != '\0')
        return state;
    const std::string prefix = lab_prefix();
    return prefix == "slb" ? "/run/stickylb-lab" : "/run/stickylb-lab-" + prefix;
}
inline std::string memcached_ns(int index) { return lab_ns("mc" + std::to_string(index)); }
// The address plan lab.sh builds (tools/lib/address-plan.sh, through CMake).
constexpr int plan_number(const char* text) {
    int value = 0;
    for (; *text >= '0' && *text <= '9'; ++text)
        value = value * 10 + (*text - '0');
    return value;
}
inline constexpr const char* kLabNet4 = STICKYLB_LAB_NET4;  // "10.89.0"
inline constexpr const char* kLabNet6 = STICKYLB_LAB_NET6;  // "fd00:89:"
inline constexpr const char* kLabVip = STICKYLB_LAB_VIP4;
inline constexpr const char* kLabVip6 = STICKYLB_LAB_VIP6;
inline constexpr int kLabLbHost = plan_number(STICKYLB_LAB_LB_HOST);          // LB 1; LB K is host kLabLbHost + K - 1
inline constexpr int kLabClientHost = plan_number(STICKYLB_LAB_CLIENT_HOST);  // the client's own; extras follow
inline constexpr int kLabBackendBase = plan_number(STICKYLB_LAB_BACKEND_BASE);
inline constexpr int kLabMemcachedBase = plan_number(STICKYLB_LAB_MEMCACHED_BASE);
inline constexpr int kMemcachedPort = plan_number(STICKYLB_LAB_MEMCACHED_PORT);
inline constexpr int kAgentMetricsPort = plan_number(STICKYLB_LAB_AGENT_METRICS_PORT);
// Host HOST of the segment, IPv4 or IPv6.
inline std::string lab_host(int host) { return std::string(kLabNet4) + "." + std::to_string(host); }
inline std::string lab_host6(int host) { return std::string(kLabNet6) + ":" + std::to_string(host); }
// Backend N's address, memcached server M's, and extra client address N (1..140).
inline std::string backend_address(int index) { return lab_host(kLabBackendBase + index); }
inline std::string memcached_address(int index) { return lab_host(kLabMemcachedBase + index); }
inline std::string client_address(int extra) { return lab_host(kLabClientHost + extra); }
// The agent lab.sh runs on each PHP backend with --sessions agent.
// Milliseconds since START, for the figures the lab tests print.
// The value of SERIES (name and labels, as exposed) in a Prometheus scrape, or nullopt.
inline std::optional<double> sample_value(const std::string& scrape, const std::string& series) {
    const auto at = ("\n" + scrape).find("\n" + series + " ");
    if (at == std::string::npos)
        return std::nullopt;
    return std::stod(scrape.substr(at + series.size() + 1));
}

inline std::chrono::milliseconds elapsed_ms(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

inline std::string lab_daemon_binary() { return std::string(STICKYLB_BUILD_DIR) + "/userspace/daemon/stickylbd"; }
inline std::string lab_cli_binary() { return std::string(STICKYLB_BUILD_DIR) + "/userspace/cli/stickylb"; }
inline std::string lab_agent_binary() { return std::string(STICKYLB_BUILD_DIR) + "/userspace/agent/stickylb-agent"; }
// hold.php of PHP backend N writes its worker's PID here once it holds the session lock.
inline std::string lab_hold_pid_file(int index) {
    return lab_state_dir() + "/be" + std::to_string(index) + "/run/hold.pid";
}

// Runs work() on a thread that joined network namespace NS (ip netns), so that the
// sockets it opens live there; returns what it returns, rethrows what it throws.
template <typename Work>
auto in_network_namespace(const std::string& ns, Work work) -> decltype(work()) {
    using Result = decltype(work());
    std::optional<Result> result;
    std::exception_ptr failure;
    std::thread([&] {
        try {
            const std::string path = "/var/run/netns/" + ns;
            const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                throw std::runtime_error("open " + path + ": " + std::strerror(errno));
            const int joined = ::setns(fd, CLONE_NEWNET);
            const int saved = errno;
            ::close(fd);
            if (joined != 0)
                throw std::runtime_error("setns " + ns + ": " + std::strerror(saved));
            result.emplace(work());
        } catch (...) {
            failure = std::current_exception();
        }
    }).join();
    if (failure)
        std::rethrow_exception(failure);
    return std::move(*result);
}

// Sends REQUEST (memcached text protocol, with its \r\n) to ADDRESS:PORT from
// namespace NS; the output is the server's first reply line, without \r\n, and the
// exit code non-zero when the server could not be reached or did not answer in 3 s.
inline CommandResult memcached_request(const std::string& ns, const std::string& address, int port,
                                       const std::string& request) {
    try {
        return in_network_namespace(ns, [&] {
            MemcacheTextClient client(address, static_cast<std::uint16_t>(port), std::chrono::seconds(3));
            client.send(request);
            std::string line = client.read_line();
            line.resize(line.size() - 2);
            return CommandResult{0, line};
        });
    } catch (const std::exception& error) {
        return CommandResult{1, error.what()};
    }
}

// The value of KEY on the memcached server at ADDRESS:PORT, read from namespace NS:
// exit code 0 and the value as output, or non-zero when the key is missing or the
// server does not answer.
inline CommandResult memcached_get(const std::string& ns, const std::string& address, int port,
                                   const std::string& key) {
    try {
        return in_network_namespace(ns, [&] {
            MemcacheTextClient client(address, static_cast<std::uint16_t>(port), std::chrono::seconds(3));
            const auto value = client.get(key);
            return value ? CommandResult{0, *value} : CommandResult{1, "no key " + key};
        });
    } catch (const std::exception& error) {
        return CommandResult{1, error.what()};
    }
}

// A shell command that runs while the test goes on (e.g. a request that holds a
// session lock): it leads its own process group, its stdout and stderr are
// collected by wait(). Still running when destroyed: its group is killed.
class BackgroundCommand {
public:
    explicit BackgroundCommand(const std::string& command) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe2 for '" + command + "': " + std::strerror(errno));
        const char* text = command.c_str();
        pid_ = fork();
        if (pid_ < 0) {
            const int saved = errno;
            close(fds[0]);
            close(fds[1]);
            throw std::runtime_error("fork for '" + command + "': " + std::strerror(saved));
        }
        if (pid_ == 0) {
            setpgid(0, 0);
            dup2(fds[1], STDOUT_FILENO);
            dup2(fds[1], STDERR_FILENO);
            execl("/bin/sh", "sh", "-c", text, static_cast<char*>(nullptr));
            _exit(127);
        }
        setpgid(pid_, pid_);  // also here: kill_group() may come before the child ran
        close(fds[1]);
        output_fd_ = fds[0];
    }
    ~BackgroundCommand() {
        if (pid_ > 0) {
            kill_group();
            wait();
        }
    }
    BackgroundCommand(const BackgroundCommand&) = delete;
    BackgroundCommand& operator=(const BackgroundCommand&) = delete;

    void kill_group() {
        if (pid_ > 0)
            kill(-pid_, SIGKILL);
    }

    // Waits for the command to end (bound it: curl --max-time); its exit code and output.
    CommandResult wait() {
        if (pid_ <= 0)
            return result_;
        std::array<char, 4096> buffer;
        ssize_t count;
        while ((count = read(output_fd_, buffer.data(), buffer.size())) != 0) {
            if (count > 0)
                result_.output.append(buffer.data(), static_cast<std::size_t>(count));
            else if (errno != EINTR)
                break;
        }
        close(output_fd_);
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        result_.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        pid_ = -1;
        return result_;
    }

private:
    pid_t pid_ = -1;
    int output_fd_ = -1;
    CommandResult result_;
};

}  // namespace stickylb::testing::lab
