// SPDX-License-Identifier: Apache-2.0
#include "agent/session_resync.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>
#include <exception>

#include <spdlog/spdlog.h>

namespace stickylb::agent {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// How often every server is probed: a restart or a return is acted on within
// about this, for one small request per server and second.
constexpr std::chrono::seconds kProbeInterval{1};
// Sessions repaired at once during a run: enough to reach the rate over a
// loopback or LAN round trip, few enough to leave the upstream connections to clients.
constexpr std::size_t kRepairConcurrency = 8;

std::string stat_value(const Reply& reply, std::string_view name) {
    const std::string prefix = "STAT " + std::string(name) + ' ';
    for (const std::string& line : reply.stats_lines) {
        if (line.starts_with(prefix))
            return line.substr(prefix.size());
    }
    return {};
}

}  // namespace

// One walk of the remembered sessions for one server, shared by its workers.
struct SessionResync::Run {
    Run(asio::any_io_executor executor, UpstreamServer& server_, std::vector<std::string> sids_, std::size_t rate)
        : server(server_),
          sids(std::move(sids_)),
          interval(std::chrono::nanoseconds(1'000'000'000) / rate),
          finished(executor) {}

    UpstreamServer& server;
    std::vector<std::string> sids;  // most recently served first
    std::size_t next = 0;           // next index of sids to look at
    std::size_t paced = 0;          // sessions started: the n-th may start at started_at + n * interval
    std::size_t examined = 0, copied = 0;
    Clock::time_point started_at = Clock::now();
    std::chrono::nanoseconds interval;
    std::vector<std::unique_ptr<asio::steady_timer>> paces;  // one per worker, cancelled by stop()
    std::size_t workers = 0;
    asio::steady_timer finished;  // cancelled when the last worker ends
};

std::optional<std::string> ReturnDetector::observe(const ServerProbe& probe) {
    if (!probe.answered) {
        unreachable_ = true;
        return std::nullopt;
    }
    std::optional<std::string> reason;
    // A connect backoff between two probes is an outage the probes themselves missed.
    if (unreachable_ || probe.connect_failures != last_.connect_failures) {
        reason = "reachable again";
    } else if (known_ && (probe.pid != last_.pid || probe.uptime < last_.uptime)) {
        reason = "restarted (pid " + last_.pid + " -> " + probe.pid + ")";
    }
    known_ = true;
    unreachable_ = false;
    last_ = probe;
    return reason;
}

SessionResync::SessionResync(asio::any_io_executor executor, const AgentConfig& config, UpstreamGroup& upstreams,
                             SessionService& sessions, AgentStats& stats)
    : executor_(std::move(executor)),
      config_(config),
      upstreams_(upstreams),
      sessions_(sessions),
      stats_(stats),
      watch_timer_(executor_),
      detectors_(upstreams.size()) {}

void SessionResync::start() {
    if (config_.resync_sessions == 0)
        return;
    asio::co_spawn(executor_, watch_loop(), asio::detached);
}

void SessionResync::stop() {
    stopping_ = true;
    watch_timer_.cancel();
    if (current_) {
        for (auto& pace : current_->paces)
            pace->cancel();
    }
}

asio::awaitable<void> SessionResync::watch_loop() {
    while (!stopping_) {
        for (std::size_t i = 0; i < upstreams_.size() && !stopping_; ++i)
            co_await probe(i);
        watch_timer_.expires_after(kProbeInterval);
        boost::system::error_code error;
        co_await watch_timer_.async_wait(asio::redirect_error(asio::use_awaitable, error));
        if (error)
            co_return;
    }
}

asio::awaitable<void> SessionResync::probe(std::size_t index) {
    UpstreamServer& server = upstreams_.server(index);
    CallResult stats = co_await call(server, "stats\r\n", ReplyShape::stats);
    if (stopping_)
        co_return;
    ServerProbe probe;
    probe.answered = stats.ok() && stats.reply.line == "END";
    if (probe.answered) {
        probe.pid = stat_value(stats.reply, "pid");
        const std::string uptime = stat_value(stats.reply, "uptime");
        std::from_chars(uptime.data(), uptime.data() + uptime.size(), probe.uptime);
    }
    probe.connect_failures = server.counters().connect_failures;
    if (auto reason = detectors_[index].observe(probe))
        request(index, std::move(*reason));
}

void SessionResync::request(std::size_t index, std::string reason) {
    const bool queued =
        std::any_of(requested_.begin(), requested_.end(), [index](const auto& entry) { return entry.first == index; });
    if (!queued)
        requested_.emplace_back(index, std::move(reason));
    if (running_)
        return;
    running_ = true;
    asio::co_spawn(executor_, run_requested(), asio::detached);
}

asio::awaitable<void> SessionResync::run_requested() {
    while (!requested_.empty() && !stopping_) {
        auto [index, reason] = std::move(requested_.front());
        requested_.pop_front();
        co_await resync(index, reason);
    }
    running_ = false;
}

asio::awaitable<void> SessionResync::resync(std::size_t index, const std::string& reason) {
    UpstreamServer& server = upstreams_.server(index);
    auto run = std::make_shared<Run>(executor_, server, sessions_.recent_sessions().snapshot(), config_.resync_rate);
    current_ = run;
    spdlog::info("resync of memcached {}, {}: walking {} recently served sessions, at most {}/s", server.name(), reason,
                 run->sids.size(), config_.resync_rate);
    run->finished.expires_at(Clock::time_point::max());
    run->workers = kRepairConcurrency;
    for (std::size_t i = 0; i < kRepairConcurrency; ++i) {
        run->paces.push_back(std::make_unique<asio::steady_timer>(executor_));
    }
    for (std::size_t i = 0; i < kRepairConcurrency; ++i) {
        asio::co_spawn(executor_, repair_worker(run, *run->paces[i]), [run](const std::exception_ptr& error) {
            if (error) {
                try {
                    std::rethrow_exception(error);
                } catch (const std::exception& what) {
                    spdlog::error("resync of memcached {}: a repair worker ended: {}", run->server.name(), what.what());
                }
            }
            if (--run->workers == 0)
                run->finished.cancel();
        });
    }
    // cancel() wakes only a wait already pending: no wait if the workers ended already.
    if (run->workers > 0) {
        boost::system::error_code ignored;
        co_await run->finished.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    current_.reset();

    const double seconds = std::chrono::duration<double>(Clock::now() - run->started_at).count();
    const bool complete = run->next == run->sids.size() && !stopping_;
    if (complete)
        ++stats_.resync_runs;
    spdlog::log(complete ? spdlog::level::info : spdlog::level::warn,
                "resync of memcached {} {}: {} sessions examined, {} copied, {:.1f} s", server.name(),
                complete ? "done" : (stopping_ ? "stopped (agent stopping)" : "stopped (server down again)"),
                run->examined, run->copied, seconds);
}

asio::awaitable<void> SessionResync::repair_worker(std::shared_ptr<Run> run, asio::steady_timer& pace) {
    const std::size_t replicas = config_.replicas;
    while (!stopping_ && run->server.up()) {
        std::string key;
        while (key.empty() && run->next < run->sids.size()) {
            std::string candidate = config_.session_prefix + run->sids[run->next++];
            std::vector<UpstreamServer*> placement = upstreams_.placement(candidate, replicas);
            if (std::find(placement.begin(), placement.end(), &run->server) != placement.end()) {
                key = std::move(candidate);
            }
        }
        if (key.empty())
            break;
        const auto due = run->started_at + run->interval * run->paced++;
        if (due > Clock::now()) {
            pace.expires_at(due);
            boost::system::error_code ignored;
            co_await pace.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
            if (stopping_)
                break;
        }
        ++run->examined;
        ++stats_.resync_sessions_examined;
        try {
            if (co_await sessions_.repair_session(key) > 0) {
                ++run->copied;
                ++stats_.resync_sessions_copied;
            }
        } catch (const std::exception& error) {
            spdlog::warn("resync of memcached {}: session key {}: {}", run->server.name(), key, error.what());
        }
    }
}

}  // namespace stickylb::agent
