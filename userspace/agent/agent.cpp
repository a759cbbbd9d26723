// SPDX-License-Identifier: Apache-2.0
#include "agent/agent.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/resource.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "agent/client_connection.h"
#include "base/errors.h"

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

// Descriptors the agent needs besides its clients: upstream connections, the
// metrics endpoint's (at most 64), listeners, logs and the resolver.
constexpr std::size_t kSpareDescriptors = 96;

// Raises RLIMIT_NOFILE to what max_clients needs, or says why it cannot.
void ensure_descriptors(const AgentConfig& config, std::size_t upstream_connections) {
    const rlim_t needed = config.max_clients + upstream_connections + kSpareDescriptors;
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        throw SystemError("getrlimit(RLIMIT_NOFILE)", errno);
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
        rlimit raised = limit;
        raised.rlim_cur = needed;
        if (raised.rlim_max != RLIM_INFINITY && raised.rlim_max < needed)
            raised.rlim_max = needed;
        if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
            const int error = errno;
            throw AgentConfigError("max_clients " + std::to_string(config.max_clients) + " needs " +
                                   std::to_string(needed) + " file descriptors, the limit is " +
                                   std::to_string(limit.rlim_cur) + " (hard " + std::to_string(limit.rlim_max) +
                                   ") and cannot be raised (" + std::strerror(error) +
                                   "): lower max_clients or raise LimitNOFILE=");
        }
        spdlog::info("file descriptor limit raised from {} to {} for max_clients {}", limit.rlim_cur, needed,
                     config.max_clients);
    }
}

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

Agent::Agent(asio::io_context& io, AgentConfig config)
    : io_(io),
      config_(std::move(config)),
      buffers_(config_.max_buffered_bytes),
      epochs_(config_.view_max_age),
      upstreams_(io.get_executor(), config_.upstreams, upstream_options(config_)),
      sessions_(config_, upstreams_, stats_),
      resync_(io.get_executor(), config_, upstreams_, sessions_, stats_),
      acceptor_(io),
      view_timer_(io),
      renew_timer_(io),
      accept_pause_(io) {
    ensure_descriptors(config_, upstreams_.size() * upstream_options(config_).connections);
    if (!config_.key_file.empty())
        key_.emplace(session::SigningKey::load(config_.key_file));
    tcp::endpoint endpoint = metrics::parse_listen_address(config_.listen);
    boost::system::error_code error;
    acceptor_.open(endpoint.protocol(), error);
    if (!error)
        acceptor_.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error)
        acceptor_.bind(endpoint, error);
    if (!error)
        acceptor_.listen(asio::socket_base::max_listen_connections, error);
    if (error)
        throw SystemError("listen " + config_.listen, error.value());
    if (!config_.metrics_listen.empty() && config_.metrics_listen != "off") {
        metrics_ =
            std::make_unique<metrics::MetricsServer>(io_, config_.metrics_listen, [this] { return metrics_text(); });
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
    if (stopping_)
        return;
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    view_timer_.cancel();
    renew_timer_.cancel();
    accept_pause_.cancel();
    resync_.stop();
    if (metrics_)
        metrics_->stop();
    for (auto& [id, weak] : connections_) {
        if (auto connection = weak.lock())
            connection->close(ConnectionEnd::stopping);
    }
    // Upstreams close once the last connection has released its locks.
    if (connections_.empty())
        upstreams_.close();
}

void Agent::connection_closed(std::uint64_t id, ConnectionEnd why) {
    connections_.erase(id);
    --stats_.connections_current;
    ++stats_.connections_closed[static_cast<std::size_t>(why)];
    if (stopping_ && connections_.empty())
        upstreams_.close();
}

std::uint16_t Agent::port() const { return acceptor_.local_endpoint().port(); }

std::optional<std::uint16_t> Agent::metrics_port() const {
    if (!metrics_)
        return std::nullopt;
    return metrics_->port();
}

asio::awaitable<void> Agent::accept_backoff() {
    accept_pause_.expires_after(std::chrono::milliseconds(100));
    boost::system::error_code ignored;
    co_await accept_pause_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

// Refusals and descriptor shortages come in episodes: each is logged when it
// starts and when it ends, with what it cost, never once per connection.
asio::awaitable<void> Agent::accept_loop() {
    std::uint64_t out_of_descriptors = 0;  // failed accepts in the current episode
    std::uint64_t over_max_clients = 0;    // connections refused in the current episode
    while (!stopping_) {
        boost::system::error_code error;
        tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, error));
        if (error == asio::error::operation_aborted || stopping_)
            co_return;
        if (error == asio::error::no_descriptors || error.value() == ENFILE) {
            if (out_of_descriptors++ == 0) {
                spdlog::warn(
                    "accept on {}: {} with {} clients connected: accepting again every 100 ms until "
                    "descriptors are free (raise LimitNOFILE= or lower max_clients)",
                    config_.listen, error.message(), connections_.size());
            }
            ++stats_.accepts_refused[static_cast<std::size_t>(AcceptRefusal::descriptors)];
            co_await accept_backoff();
            continue;
        }
        if (error) {
            // A connection that failed before it was accepted (reset, aborted): it only concerns that client.
            spdlog::debug("accept on {}: {}", config_.listen, error.message());
            continue;
        }
        if (out_of_descriptors > 0) {
            spdlog::info("accept on {}: descriptors free again after {} failed accepts", config_.listen,
                         out_of_descriptors);
            out_of_descriptors = 0;
        }
        if (connections_.size() >= config_.max_clients) {
            if (over_max_clients++ == 0) {
                spdlog::warn("{} clients connected (max_clients): refusing new connections until one closes",
                             connections_.size());
            }
            ++stats_.accepts_refused[static_cast<std::size_t>(AcceptRefusal::max_clients)];
            continue;  // the socket closes as it goes out of scope
        }
        if (over_max_clients > 0) {
            spdlog::info("below max_clients again: {} connections were refused", over_max_clients);
            over_max_clients = 0;
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
    const session::SigningKey* signing = key_ ? &*key_ : nullptr;
    bool refused = false;
    for (const CallResult& result : results) {
        if (!result.ok())
            continue;
        for (const Reply::Value& value : result.reply.values) {
            session::ViewReading reading =
                session::read_stored_view(signing, key, value.data, wall_ms(), config_.view_max_age);
            if (!reading.view) {
                view_refused(*reading.rejected, reading.why);
                refused = true;
                continue;
            }
            if (!newest || reading.view->epoch > newest->epoch)
                newest = std::move(reading.view);
        }
    }
    if (newest && !epochs_.admit(*newest, std::chrono::steady_clock::now())) {
        view_refused(session::Rejection::epoch_regressed,
                     "epoch " + std::to_string(newest->epoch) + " is below " +
                         std::to_string(epochs_.floor(config_.cluster).value_or(0)) + " seen before");
        newest.reset();
        refused = true;
    }
    if (!newest && refused) {
        // What was found was replayed or forged: the view in use stays while it is fresh.
        const auto& current = sessions_.view();
        const bool fresh = current && std::abs(wall_ms() - current->written_ms) <= config_.view_max_age.count();
        if (!fresh)
            sessions_.set_view(std::nullopt);
        co_return;
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

void Agent::view_refused(session::Rejection reason, const std::string& why) {
    ++stats_.memcached_rejected[static_cast<std::size_t>(reason)];
    // A value refused stays refused at every poll: said once a minute, counted always.
    const auto now = std::chrono::steady_clock::now();
    if (now - view_refusal_logged_ < std::chrono::minutes(1))
        return;
    view_refusal_logged_ = now;
    spdlog::warn("membership view of {} refused ({}: {}): ignored", config_.cluster, session::to_string(reason), why);
}

asio::awaitable<void> Agent::view_loop() {
    while (!stopping_) {
        co_await poll_view();
        view_timer_.expires_after(config_.view_poll);
        boost::system::error_code error;
        co_await view_timer_.async_wait(asio::redirect_error(asio::use_awaitable, error));
        if (error)
            co_return;
    }
}

asio::awaitable<void> Agent::renew_loop() {
    while (!stopping_) {
        renew_timer_.expires_after(config_.lock_lease / 3);
        boost::system::error_code error;
        co_await renew_timer_.async_wait(asio::redirect_error(asio::use_awaitable, error));
        if (error || stopping_)
            co_return;
        co_await sessions_.renew_locks();
    }
}

StatsContext Agent::stats_context() const {
    StatsContext context;
    context.stats = &stats_;
    context.buffered_bytes = buffers_.used();
    context.buffered_bytes_limit = buffers_.limit();
    for (std::size_t i = 0; i < upstreams_.size(); ++i) {
        const UpstreamServer& server = upstreams_.server(i);
        const UpstreamCounters& counters = server.counters();
        context.upstreams.push_back(
            {server.name(), server.up(), counters.requests, counters.errors, counters.connect_failures});
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
