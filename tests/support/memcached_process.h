// SPDX-License-Identifier: Apache-2.0
#pragma once
// A real memcached on 127.0.0.1 for tests: started on a free port, killed and
// reaped by PID when the object goes away. kill()/restart() simulate a node
// that dies and comes back empty on the same port; pause()/resume()
// (SIGSTOP/SIGCONT) a node that hangs with its connections open.
//
// Use STICKYLB_REQUIRE_MEMCACHED() first in a test (or SetUp) so a machine
// without memcached skips instead of failing.
#include <gtest/gtest.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace stickylb::testing {

class MemcachedProcess {
public:
    // The memcached binary on PATH, if any.
    static std::optional<std::string> binary() {
        const char* path = std::getenv("PATH");
        std::istringstream directories(path != nullptr && *path != '\0' ? path : "/usr/local/bin:/usr/bin:/bin");
        for (std::string directory; std::getline(directories, directory, ':');) {
            auto candidate = (directory.empty() ? std::string(".") : directory) + "/memcached";
            if (::access(candidate.c_str(), X_OK) == 0)
                return candidate;
        }
        return std::nullopt;
    }

    // A loopback TCP port nothing listens on right now (the kernel's pick for port 0).
    static std::uint16_t unused_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        sockaddr_in address = loopback(0);
        socklen_t length = sizeof address;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            int error = errno;
            ::close(fd);
            throw std::runtime_error(std::string("finding a free loopback port: ") + std::strerror(error));
        }
        ::close(fd);
        return ntohs(address.sin_port);
    }

    // port 0: a free port, retried if another process takes it first.
    explicit MemcachedProcess(std::uint16_t port = 0) {
        auto path = binary();
        if (!path)
            throw std::runtime_error("memcached is not installed (no memcached on PATH)");
        binary_ = *path;
        if (port != 0) {
            port_ = port;
            start();
            return;
        }
        for (int attempt = 0;; ++attempt) {
            port_ = unused_port();
            try {
                start();
                return;
            } catch (const std::runtime_error&) {
                if (attempt == 4)
                    throw;
            }
        }
    }
    ~MemcachedProcess() { kill(); }
    MemcachedProcess(const MemcachedProcess&) = delete;
    MemcachedProcess& operator=(const MemcachedProcess&) = delete;

    std::uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    pid_t pid() const { return pid_; }
    bool running() const { return pid_ > 0; }

    // SIGKILL and reap; connections to it are reset. Idempotent.
    void kill() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        paused_ = false;
    }

    // A new, empty memcached on the same port.
    void restart() {
        kill();
        start();
    }

    // Returns once memcached is stopped: a request sent after pause() is not answered.
    void pause() {
        if (paused_)
            return;
        signal(SIGSTOP);
        wait_for(WUNTRACED, [](int status) { return WIFSTOPPED(status); });
        paused_ = true;
    }
    void resume() {
        if (!paused_)
            return;
        signal(SIGCONT);
        wait_for(WCONTINUED, [](int status) { return WIFCONTINUED(status); });
        paused_ = false;
    }

private:
    static sockaddr_in loopback(std::uint16_t port) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return address;
    }

    void signal(int number) {
        if (pid_ <= 0)
            throw std::logic_error("memcached on port " + std::to_string(port_) + " is not running");
        ::kill(pid_, number);
    }

    template <class Predicate>
    void wait_for(int options, Predicate reached) {
        for (;;) {
            int status = 0;
            pid_t result = ::waitpid(pid_, &status, options);
            if (result < 0 && errno == EINTR)
                continue;
            if (result != pid_)
                throw std::runtime_error("waitpid on memcached " + std::to_string(pid_) + ": " + std::strerror(errno));
            if (reached(status))
                return;
            if (WIFEXITED(status) || WIFSIGNALED(status)) {
                pid_ = -1;
                throw std::runtime_error("memcached on port " + std::to_string(port_) + " exited unexpectedly");
            }
        }
    }

    void start() {
        std::vector<std::string> arguments = {binary_, "-l", "127.0.0.1", "-p", std::to_string(port_), "-U", "0",
                                              "-m",    "64", "-t",        "1"};
        // memcached refuses to run as root without -u. We drop to nobody ourselves
        // before exec as well: memcached's own setuid() would clear the
        // parent-death signal that cleans up after a crashed test.
        std::optional<std::pair<uid_t, gid_t>> nobody;
        if (::geteuid() == 0) {
            arguments.push_back("-u");
            arguments.push_back("nobody");
            const passwd* entry = ::getpwnam("nobody");
            if (entry == nullptr)
                throw std::runtime_error("running as root and there is no user 'nobody' to run memcached as");
            nobody.emplace(entry->pw_uid, entry->pw_gid);
        }
        std::vector<char*> argv;
        for (auto& argument : arguments)
            argv.push_back(argument.data());
        argv.push_back(nullptr);

        pid_t parent = ::getpid();
        pid_t child = ::fork();
        if (child < 0)
            throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (child == 0) {
            // Only async-signal-safe calls here: the test may have threads.
            if (nobody &&
                (::setgroups(0, nullptr) != 0 || ::setgid(nobody->second) != 0 || ::setuid(nobody->first) != 0))
                ::_exit(126);
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed test leaves no memcached behind
            if (::getppid() != parent)
                ::_exit(127);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        pid_ = child;
        wait_until_accepting();
    }

    void wait_until_accepting() {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("memcached on port " + std::to_string(port_) +
                                         " exited at start (port taken?), status " + std::to_string(status));
            }
            if (accepts_connections())
                return;
            if (std::chrono::steady_clock::now() > deadline) {
                kill();
                throw std::runtime_error("memcached on port " + std::to_string(port_) +
                                         " did not accept connections within 10 s");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    bool accepts_connections() const {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return false;
        sockaddr_in address = loopback(port_);
        bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
        ::close(fd);
        return connected;
    }

    std::string binary_;
    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
};

}  // namespace stickylb::testing

// Skips the calling test (use it in the test body or SetUp) when memcached is not installed.
#define STICKYLB_REQUIRE_MEMCACHED()                                               \
    do {                                                                           \
        if (!::stickylb::testing::MemcachedProcess::binary())                      \
            GTEST_SKIP() << "memcached is not installed (no memcached on PATH): "  \
                            "apt-get install memcached, or tools/install-deps.sh"; \
    } while (0)
