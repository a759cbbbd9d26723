// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylb-agent: listens for the local PHP workers (memcached text protocol),
// serves them through SessionService, keeps the membership view current and
// the held locks renewed, copies sessions back to memcached servers that
// return (SessionResync), and exports /metrics. One io_context, one thread;
// stop() closes the listener and the client connections (their locks are
// released) and then everything else.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/agent_config.h"
#include "agent/agent_stats.h"
#include "agent/buffer_budget.h"
#include "agent/session_resync.h"
#include "agent/session_service.h"
#include "agent/upstream_group.h"
#include "base/metrics_server.h"

namespace stickylb::agent {

class ClientConnection;

class Agent {
public:
    // Binds the listener and the metrics endpoint (throws SystemError with the address).
    Agent(boost::asio::io_context& io, AgentConfig config);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    void start();
    // Graceful: no new clients, open ones closed (locks released), then upstreams and timers.
    void stop();

    std::uint16_t port() const;
    std::optional<std::uint16_t> metrics_port() const;
    const AgentStats& stats() const { return stats_; }
    SessionService& sessions() { return sessions_; }

    std::string memcached_stats() const;
    std::string metrics_text() const;

private:
    friend class ClientConnection;
    StatsContext stats_context() const;
    boost::asio::awaitable<void> accept_loop();
    boost::asio::awaitable<void> view_loop();
    boost::asio::awaitable<void> renew_loop();
    boost::asio::awaitable<void> poll_view();
    void view_refused(session::Rejection reason, const std::string& why);
    void connection_closed(std::uint64_t id, ConnectionEnd why);
    // Waits before the next accept when the process is out of descriptors.
    boost::asio::awaitable<void> accept_backoff();

    boost::asio::io_context& io_;
    AgentConfig config_;
    AgentStats stats_;
    BufferBudget buffers_;
    std::optional<session::SigningKey> key_;
    session::EpochFloor epochs_;
    UpstreamGroup upstreams_;
    SessionService sessions_;
    SessionResync resync_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::unique_ptr<metrics::MetricsServer> metrics_;
    boost::asio::steady_timer view_timer_;
    boost::asio::steady_timer renew_timer_;
    boost::asio::steady_timer accept_pause_;
    std::map<std::uint64_t, std::weak_ptr<ClientConnection>> connections_;
    std::uint64_t next_connection_id_ = 1;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point view_refusal_logged_{};
    bool stopping_ = false;
};

}  // namespace stickylb::agent
