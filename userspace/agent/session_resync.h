// SPDX-License-Identifier: Apache-2.0
#pragma once
// Copies sessions back to a memcached server that returns. Read repair alone
// fixes a session only when its user comes back; until then a server that
// restarted empty leaves the session on one server, and if that one fails too
// the session is lost. So when a server is back, the agent walks the sessions
// it served lately (RecentSessions) and gives each one placed on that server
// the same newest-copy read and conditional repair a client read gets
// (SessionService::repair_session): a repair adds a missing copy or replaces
// the exact older copy it read (CAS), so it never replaces a newer one, never
// loses a user's concurrent write, and never touches a lock.
//
// "Back" is seen by a probe (memcached `stats`) of every server each second:
//  - the probe failed before, or the server went through a connect backoff
//    since the last probe (it was unreachable);
//  - its pid changed or its uptime went backwards (it restarted, possibly
//    faster than the agent could notice it gone).
// Runs are one at a time, in the background, at most `resync_rate` sessions a
// second over a few concurrent repairs; a run stops early if its server is
// down again (the next return starts a new one) or the agent stops.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_config.h"
#include "agent/agent_stats.h"
#include "agent/session_service.h"
#include "agent/upstream_group.h"

namespace stickylb::agent {

// What one probe (`stats`) of a server saw.
struct ServerProbe {
    bool answered = false;
    std::string pid;
    std::uint64_t uptime = 0;            // seconds
    std::uint64_t connect_failures = 0;  // the agent's own connect failures to it so far
};

// Follows one server's probes and says when it came back.
class ReturnDetector {
public:
    // Why the server needs a resync after this probe ("reachable again",
    // "restarted (pid a -> b)"), or nullopt. The first answer of a server
    // never seen unreachable needs none: nothing was missed.
    std::optional<std::string> observe(const ServerProbe& probe);

private:
    bool known_ = false;        // a probe has answered
    bool unreachable_ = false;  // a probe failed since the last one that answered
    ServerProbe last_;          // the last probe that answered
};

class SessionResync {
public:
    SessionResync(boost::asio::any_io_executor executor, const AgentConfig& config, UpstreamGroup& upstreams,
                  SessionService& sessions, AgentStats& stats);
    SessionResync(const SessionResync&) = delete;
    SessionResync& operator=(const SessionResync&) = delete;

    void start();
    // Ends the probes and the run in progress (its repairs in flight finish on their own).
    void stop();

private:
    struct Run;

    boost::asio::awaitable<void> watch_loop();
    boost::asio::awaitable<void> probe(std::size_t index);
    void request(std::size_t index, std::string reason);
    boost::asio::awaitable<void> run_requested();
    boost::asio::awaitable<void> resync(std::size_t index, const std::string& reason);
    boost::asio::awaitable<void> repair_worker(std::shared_ptr<Run> run, boost::asio::steady_timer& pace);

    boost::asio::any_io_executor executor_;
    const AgentConfig& config_;
    UpstreamGroup& upstreams_;
    SessionService& sessions_;
    AgentStats& stats_;
    boost::asio::steady_timer watch_timer_;
    std::vector<ReturnDetector> detectors_;
    std::deque<std::pair<std::size_t, std::string>> requested_;  // server index, why
    std::shared_ptr<Run> current_;
    bool running_ = false;
    bool stopping_ = false;
};

}  // namespace stickylb::agent
