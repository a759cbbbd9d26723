// SPDX-License-Identifier: Apache-2.0
#pragma once
// The announcement outlives a stopped stickylbd by `announce.hold`, no longer: a
// restart within it does not move a single flow between LB hosts, a daemon that
// stays dead (kill -9, a crash, a stop) withdraws its VIPs from the router.
//
// The running stickylbd holds an exclusive lock (flock) on announce.lock_file. At
// start it forks a guard: a small process that survives it, waits for it to exit
// (pidfd), waits `hold`, then takes the lock itself. Getting the lock means no
// stickylbd followed: the guard removes the announced routes and exits. Not getting
// it means a successor runs and owns the routes: the guard just exits. The guard
// ignores SIGTERM, SIGINT and SIGHUP, so stopping the daemon's whole process group
// (an init system's stop) ends with the withdrawal, not with a route nobody owns.
//
// A daemon that is alive but no longer decides (wedged, stopped by SIGSTOP, stuck
// in the kernel) must not keep its routes either: once serving, it writes a byte
// to a pipe on every announce tick, and a guard that hears nothing for
// wedged_after() withdraws the routes and ends the daemon with SIGABRT (a core to
// look at; SIGKILL if that does not end it) for the init system to restart. A
// daemon that is stopping closes the pipe first: its last snapshot may take longer.
#include <chrono>
#include <string>

#include "control/config.h"

namespace stickylb {

// How long the guard waits for a tick of a serving daemon before it deems it wedged.
std::chrono::milliseconds wedged_after(const AnnounceConfig& config);

class AnnounceLease {
public:
    // Takes the lock, waiting up to 2 s for a guard that is withdrawing; throws when
    // another stickylbd holds it (two daemons on one host would fight over the maps).
    static AnnounceLease acquire(const AnnounceConfig& config);
    AnnounceLease(AnnounceLease&& other) noexcept;
    AnnounceLease& operator=(AnnounceLease&&) = delete;
    AnnounceLease(const AnnounceLease&) = delete;
    ~AnnounceLease();

    // Forks the guard. Call before any thread starts (fork copies only the caller).
    void start_guard();
    // The announce loop ran (never blocks; a full pipe is proof enough).
    void alive() const;
    // Stopping: the guard waits for the exit, however long the last snapshot takes.
    void end_ticks();

private:
    AnnounceLease(AnnounceConfig config, int fd) : config_(std::move(config)), fd_(fd) {}
    AnnounceConfig config_;
    int fd_ = -1;
    int ticks_ = -1;  // the pipe's write end
};

}  // namespace stickylb
