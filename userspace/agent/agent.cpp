// SPDX-License-Identifier: Apache-2.0
#include "agent/agent.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "agent/client_connection.h"
#include "core/errors.h"

namespace stickylb::agent {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

UpstreamOptions upstream_options(const AgentConfig& config) {
    UpstreamOptions options;
    options.request_timeout = config.upstream_timeout;
    options.connect_timeout = std::min(config.upstream_timeout, std::chrono::milliseconds(250));
    return options;
}

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

Agent::Agent(asio::io_context& io, AgentConfig config)
    : io_(io),
      config_(std::move(config)),
      upstreams_(io.get_executor(), config_.upstreams, upstream_options(config_)),
      sessions_(config_, upstreams_, stats_),
      resync_(io.get_executor(), config_, upstreams_, sessions_, stats_),
      acceptor_(io),
      view_timer_(io),
      renew_timer_(io) {
    tcp::endpoint endpoint = metrics::parse_listen_address(config_.listen);
    boost::system::error_code error;
    acceptor_.open(endpoint.protocol(), error);
    if (!error) acceptor_.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) acceptor_.bind(endpoint, error);
    if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
    if (error) throw SystemError("listen " + config_.listen, error.value());
    if (!config_.metrics_listen.empty() && config_.metrics_listen != "off") {
        metrics_ = std::make_unique<metrics::MetricsServer>(io_, config_.metrics_listen, [this] { return metrics_text(); });
    }
}

Agent::~Agent() = default;

void Agent::start() {
    spdlog::info("stickylb-agent: backend {} cluster {} listening on {}, {} upstream servers, agent instance {:016x}",
                 config_.backend, config_.cluster, config_.listen, upstreams_.size(), sessions_.identity().instance);
    asio::co_spawn(io_, accept_loop(), asio::detached);
    asio::co_spawn(io_, view_loop(), asio::detached);
    asio::co_spawn(io_, renew_loop(), asio::detached);
    resync_.start();
}

void Agent::stop() {
    if (stopping_) return;
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    view_timer_.cancel();
    renew_timer_.cancel();
    resync_.stop();
    if (metrics_) metrics_->stop();
    for (auto& [id, weak] : connections_) {
        if (auto connection = weak.lock()) connection->close();
    }
    // Upstreams close once the last connection has released its locks.
    if (connections_.empty()) upstreams_.close();
}

void Agent::connection_closed(std::uint64_t id) {
    connections_.erase(id);
    --stats_.connections_current;
    if (stopping_ && connections_.empty()) upstreams_.close();
}

std::uint16_t Agent::port() const { return acceptor_.local_endpoint().port(); }

std::optional<std::uint16_t> Agent::metrics_port() const {
    if (!metrics_) return std::nullopt;
    return metrics_->port();
}

asio::awaitable<void> Agent::accept_loop() {
    while (!stopping_) {
        boost::system::error_code error;
        tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, error));
        if (error) {
            if (error == asio::error::operation_aborted || stopping_) co_return;
            spdlog::warn("accept on {}: {}", config_.listen, error.message());
            continue;
        }
        if (connections_.size() >= config_.max_clients) {
            spdlog::warn("{} clients connected (max_clients): refusing one", connections_.size());
            continue;  // the socket closes as it goes out of scope
        }
        socket.set_option(tcp::no_delay(true), error);
        const std::uint64_t id = next_connection_id_++;
        auto connection = std::make_shared<ClientConnection>(std::move(socket), *this, id);
        connections_[id] = connection;
        ++stats_.connections_total;
        ++stats_.connections_current;
        asio::co_spawn(io_, connection->run(connection), asio::detached);
    }
}

asio::awaitable<void> Agent::poll_view() {
    const std::string key = session::members_key(config_.cluster);
    std::vector<UpstreamCall> calls;
    for (std::size_t i = 0; i < upstreams_.size(); ++i) {
        calls.push_back({&upstreams_.server(i), "get " + key + "\r\n", ReplyShape::values});
    }
    std::optional<session::MembershipView> newest;
    std::vector<CallResult> results = co_await call_all(std::move(calls));
    for (const CallResult& result : results) {
        if (!result.ok()) continue;
        for (const Reply::Value& value : result.reply.values) {
            std::string why;
            auto view = session::parse_view(value.data, &why);
            if (!view) {
                spdlog::warn("membership view {} unreadable ({}): ignored", key, why);
                continue;
            }
            if (view->cluster != config_.cluster) continue;
            if (!newest || view->epoch > newest->epoch) newest = std::move(view);
        }
    }
    const auto& current = sessions_.view();
    if (newest && (!current || current->epoch != newest->epoch)) {
        ++stats_.view_updates;
        const session::Member* me = newest->find(config_.backend);
        spdlog::info("membership view {}: epoch {}, this backend {} incarnation {}", key, newest->epoch,
                     me ? session::to_string(me->state) : "absent", me ? me->incarnation : 0);
    } else if (!newest && current) {
        spdlog::warn("membership view {}: gone (stickylbd not writing it?): no lock is broken by view until it returns",
                     key);
    }
    sessions_.set_view(std::move(newest));
}

asio::awaitable<void> Agent::view_loop() {
    while (!stopping_) {
        co_await poll_view();
        view_timer_.expires_after(config_.view_poll);
        boost::system::error_code error;
        co_await view_timer_.async_wait(asio::redirect_error(asio::use_awaitable, error));
        if (error) co_return;
    }
}

asio::awaitable<void> Agent::renew_loop() {
    while (!stopping_) {
        renew_timer_.expires_after(config_.lock_lease / 3);
        boost::system::error_code error;
        co_await renew_timer_.async_wait(asio::redirect_error(asio::use_awaitable, error));
        if (error || stopping_) co_return;
        co_await sessions_.renew_locks();
    }
}

StatsContext Agent::stats_context() const {
    StatsContext context;
    context.stats = &stats_;
    for (std::size_t i = 0; i < upstreams_.size(); ++i) {
        const UpstreamServer& server = upstreams_.server(i);
        const UpstreamCounters& counters = server.counters();
        context.upstreams.push_back({server.name(), server.up(), counters.requests, counters.errors,
                                     counters.connect_failures});
    }
    context.uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
    if (const auto& view = sessions_.view()) {
        context.view_present = true;
        context.view_age_seconds = static_cast<double>(wall_ms() - view->written_ms) / 1000.0;
        context.view_epoch = view->epoch;
    }
    context.incarnation = sessions_.incarnation();
    context.locks_held = sessions_.locks_held();
    context.sessions_remembered = sessions_.recent_sessions().size();
    context.backend = config_.backend;
    context.cluster = config_.cluster;
    context.version = STICKYLB_VERSION;
    return context;
}

std::string Agent::memcached_stats() const { return render_memcached_stats(stats_context()); }
std::string Agent::metrics_text() const { return render_prometheus(stats_context()); }

}  // namespace stickylb::agent
