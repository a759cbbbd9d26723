// SPDX-License-Identifier: Apache-2.0
#pragma once
// Reaping stickylbd's announce guards at the end of a lab test.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace stickylb::testing::lab {

// Announce guards outlive their daemons: a test that runs them makes itself their
// subreaper and, at its end, reaps them (each ends `hold` after its daemon), or
// fails and kills what is left of GROUPS. A guard takes its lock after its daemon
// ended, creating the lock's directory again: the test's work directories (DIRS)
// are removed once more when the guards are gone.
class GuardReaper {
public:
    GuardReaper() {
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
            throw std::runtime_error("prctl(PR_SET_CHILD_SUBREAPER): " + std::string(std::strerror(errno)));
    }
    ~GuardReaper() { prctl(PR_SET_CHILD_SUBREAPER, 0); }
    GuardReaper(const GuardReaper&) = delete;
    GuardReaper& operator=(const GuardReaper&) = delete;

    void reap(std::chrono::milliseconds hold, const std::vector<pid_t>& groups,
              const std::vector<std::string>& dirs) const {
        wait_for_guards(hold, groups);
        for (const std::string& dir : dirs)
            std::filesystem::remove_all(dir);
    }

private:
    static void wait_for_guards(std::chrono::milliseconds hold, const std::vector<pid_t>& groups) {
        const auto deadline = std::chrono::steady_clock::now() + hold + std::chrono::seconds(5);
        int status = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            const pid_t reaped = waitpid(-1, &status, WNOHANG);
            if (reaped < 0)
                return;  // ECHILD: none left
            if (reaped == 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ADD_FAILURE() << "an announce guard outlived its hold";
        for (const pid_t group : groups)
            kill(-group, SIGKILL);
        while (waitpid(-1, &status, 0) > 0) {
        }
    }
};

}  // namespace stickylb::testing::lab
