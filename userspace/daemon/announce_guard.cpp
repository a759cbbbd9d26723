// SPDX-License-Identifier: Apache-2.0
#include "daemon/announce_guard.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <thread>
#include <utility>

#include "base/errors.h"
#include "dataplane/kernel_routes.h"

namespace stickylb {

namespace {

constexpr auto kLockWait = std::chrono::seconds(2);
constexpr auto kLockRetry = std::chrono::milliseconds(20);

int open_lock(const std::string& path) {
    std::error_code ignored;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ignored);
    return check_syscall(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600), "open the announce lock " + path);
}

constexpr int kTicksFd = 3;  // the pipe's read end, in the guard

// Polls until the pidfd says the daemon exited, or `limit` passes (-1: forever).
bool wait_exit(int pidfd, int limit_ms) {
    pollfd wait{pidfd, POLLIN, 0};
    int ready = 0;
    while ((ready = poll(&wait, 1, limit_ms)) < 0 && errno == EINTR) {
    }
    return ready > 0;
}

// Withdraws a wedged daemon's routes and ends it, for its supervisor to restart.
void end_wedged(pid_t daemon, int pidfd, const AnnounceConfig& config) {
    std::size_t removed = 0;
    try {
        removed = KernelRoutes(config.routing_table).remove_all();
    } catch (const std::exception& error) {
        spdlog::error("announce guard of stickylbd {}: {}", daemon, error.what());
    }
    spdlog::error("stickylbd {} has not decided its announcements for {} ms: {} routes withdrawn, ending it (SIGABRT)",
                  daemon, wedged_after(config).count(), removed);
    // SIGABRT waits for a SIGSTOPped process to continue; the SIGCONT after it delivers it.
    kill(daemon, SIGABRT);
    kill(daemon, SIGCONT);
    if (!wait_exit(pidfd, 2000))
        kill(daemon, SIGKILL);
    wait_exit(pidfd, -1);
}

// Until the daemon exits; ends it when it stops ticking once it has started.
void watch(pid_t daemon, int pidfd, const AnnounceConfig& config) {
    const auto limit = wedged_after(config);
    bool ticking = false, closed = false;
    auto last_tick = std::chrono::steady_clock::now();
    for (;;) {
        pollfd fds[2] = {{pidfd, POLLIN, 0}, {closed ? -1 : kTicksFd, POLLIN, 0}};
        int timeout_ms = -1;
        if (ticking) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(last_tick + limit -
                                                                                    std::chrono::steady_clock::now());
            timeout_ms = static_cast<int>(std::max<std::int64_t>(0, left.count()));
        }
        const int ready = poll(fds, 2, timeout_ms);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            wait_exit(pidfd, -1);  // cannot watch: fall back to waiting for the exit
            return;
        }
        if (fds[0].revents != 0)
            return;
        if (ready == 0) {
            end_wedged(daemon, pidfd, config);
            return;
        }
        if (fds[1].revents != 0) {
            char bytes[256];
            const ssize_t got = read(kTicksFd, bytes, sizeof bytes);
            if (got > 0) {
                ticking = true;
                last_tick = std::chrono::steady_clock::now();
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                closed = true;  // stopping (or gone): wait for the exit, however long
                ticking = false;
            }
        }
    }
}

[[noreturn]] void run_guard(pid_t daemon, int ticks, const AnnounceConfig& config) {
    for (const int signal : {SIGTERM, SIGINT, SIGHUP})
        std::signal(signal, SIG_IGN);
    prctl(PR_SET_NAME, "stickylbd-guard");
    // Nothing of the daemon's but the ticks: its lock, maps, sockets (stdio stays, for the log).
    if (ticks != kTicksFd) {
        dup2(ticks, kTicksFd);
        close(ticks);
    }
    syscall(SYS_close_range, static_cast<unsigned>(kTicksFd + 1), ~0U, 0U);
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, daemon, 0));
    if (pidfd >= 0 && getppid() == daemon)
        watch(daemon, pidfd, config);
    std::this_thread::sleep_for(config.hold);
    try {
        const int lock = open_lock(config.lock_file);
        if (flock(lock, LOCK_EX | LOCK_NB) == 0) {
            const std::size_t removed = KernelRoutes(config.routing_table).remove_all();
            spdlog::warn("stickylbd {} stopped and none followed within {} ms: {} announced routes withdrawn", daemon,
                         config.hold.count(), removed);
        }
    } catch (const std::exception& error) {
        spdlog::error("announce guard of stickylbd {}: {}", daemon, error.what());
        _exit(1);
    }
    _exit(0);
}

}  // namespace

std::chrono::milliseconds wedged_after(const AnnounceConfig& config) {
    // Never shorter than ten ticks or 5 s: a busy moment (a reload that rewrites every
    // ring takes a second or two) is not a wedge, and a wedged daemon's data plane still
    // forwards by the rings it last wrote.
    return std::max({config.hold, 10 * config.check_interval, std::chrono::milliseconds(5000)});
}

AnnounceLease AnnounceLease::acquire(const AnnounceConfig& config) {
    const int fd = open_lock(config.lock_file);
    const auto deadline = std::chrono::steady_clock::now() + kLockWait;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        if (error != EWOULDBLOCK && error != EINTR) {
            close(fd);
            throw SystemError("lock " + config.lock_file, error);
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            close(fd);
            throw std::runtime_error("another stickylbd holds " + config.lock_file +
                                     " (one daemon per host announces its VIPs)");
        }
        std::this_thread::sleep_for(kLockRetry);
    }
    return AnnounceLease(config, fd);
}

AnnounceLease::AnnounceLease(AnnounceLease&& other) noexcept
    : config_(std::move(other.config_)), fd_(std::exchange(other.fd_, -1)), ticks_(std::exchange(other.ticks_, -1)) {}

AnnounceLease::~AnnounceLease() {
    end_ticks();
    if (fd_ >= 0)
        close(fd_);
}

void AnnounceLease::start_guard() {
    int pipe_fds[2];
    check_syscall(pipe2(pipe_fds, O_CLOEXEC), "pipe for the announce guard");
    const pid_t daemon = getpid();
    const pid_t child = fork();
    if (child < 0) {
        const int error = errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        throw SystemError("fork the announce guard", error);
    }
    if (child == 0) {
        close(pipe_fds[1]);
        run_guard(daemon, pipe_fds[0], config_);
    }
    close(pipe_fds[0]);
    ticks_ = pipe_fds[1];
    check_syscall(fcntl(ticks_, F_SETFL, O_NONBLOCK), "make the announce guard's pipe non-blocking");
    spdlog::info(
        "announce guard {}: withdraws the VIPs {} ms after this daemon stops, unless another follows, and {} ms after "
        "it stops deciding them",
        child, config_.hold.count(), wedged_after(config_).count());
}

void AnnounceLease::alive() const {
    if (ticks_ >= 0) {
        const char tick = 0;
        [[maybe_unused]] const ssize_t written = write(ticks_, &tick, 1);
    }
}

void AnnounceLease::end_ticks() {
    if (ticks_ >= 0)
        close(std::exchange(ticks_, -1));
}

}  // namespace stickylb
