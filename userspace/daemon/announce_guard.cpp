// SPDX-License-Identifier: Apache-2.0
#include "daemon/announce_guard.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <csignal>
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

[[noreturn]] void run_guard(pid_t daemon, const AnnounceConfig& config) {
    for (const int signal : {SIGTERM, SIGINT, SIGHUP})
        std::signal(signal, SIG_IGN);
    prctl(PR_SET_NAME, "stickylbd-guard");
    // Nothing of the daemon's: its lock, maps, sockets (stdio stays, for the log).
    syscall(SYS_close_range, 3U, ~0U, 0U);
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, daemon, 0));
    if (pidfd >= 0 && getppid() == daemon) {
        pollfd wait{pidfd, POLLIN, 0};
        while (poll(&wait, 1, -1) < 0 && errno == EINTR) {
        }
    }
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
    : config_(std::move(other.config_)), fd_(std::exchange(other.fd_, -1)) {}

AnnounceLease::~AnnounceLease() {
    if (fd_ >= 0)
        close(fd_);
}

void AnnounceLease::start_guard() const {
    const pid_t daemon = getpid();
    const pid_t child = fork();
    if (child < 0)
        throw SystemError("fork the announce guard", errno);
    if (child == 0)
        run_guard(daemon, config_);
    spdlog::info("announce guard {}: withdraws the VIPs {} ms after this daemon stops, unless another follows", child,
                 config_.hold.count());
}

}  // namespace stickylb
