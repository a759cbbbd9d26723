// SPDX-License-Identifier: Apache-2.0
// Health checks: one strand and one timer loop per target, one Probe object per probe.
#include "control/health.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <stdexcept>
#include <utility>

namespace stickylb {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

const char* to_string(Health health) {
    switch (health) {
    case Health::unknown: return "unknown";
    case Health::up: return "up";
    case Health::down: return "down";
    }
    return "?";
}

struct HealthChecker::Callbacks {
    OnChange on_change;
    OnResult on_result;
};

namespace {

tcp::endpoint to_endpoint(const IpAddress& address, std::uint16_t port) {
    const auto& bytes = address.bytes();
    if (address.is_v4()) {
        asio::ip::address_v4::bytes_type v4{};
        std::copy_n(bytes.begin(), v4.size(), v4.begin());
        return {asio::ip::address_v4(v4), port};
    }
    asio::ip::address_v6::bytes_type v6{};
    std::copy_n(bytes.begin(), v6.size(), v6.begin());
    return {asio::ip::address_v6(v6), port};
}

std::string default_host(const ProbeSpec& spec) {
    std::string host = spec.address.is_v4() ? spec.address.to_string() : "[" + spec.address.to_string() + "]";
    if (spec.port != 80)
        host += ":" + std::to_string(spec.port);
    return host;
}

// One probe: connect (then, for HTTP, write the request and read the response header) under
// one deadline. Every handler runs on the target's strand; `done` is called at most once,
// never after abort().
class Probe : public std::enable_shared_from_this<Probe> {
public:
    using Done = std::function<void(ProbeResult)>;

    Probe(const Strand& strand, const ProbeSpec& spec, Done done)
        : socket_(strand), deadline_(strand), spec_(spec), done_(std::move(done)) {}

    void start() {
        start_ = Clock::now();
        deadline_.expires_after(spec_.timeout);
        deadline_.async_wait([self = shared_from_this()](const error_code& ec) {
            if (!ec)
                self->finish(false, "timeout");
        });
        socket_.async_connect(to_endpoint(spec_.address, spec_.port),
                              [self = shared_from_this()](const error_code& ec) { self->on_connect(ec); });
    }

    void abort() {
        if (finished_)
            return;
        finished_ = true;
        done_ = nullptr;
        cleanup();
    }

private:
    void on_connect(const error_code& ec) {
        if (finished_)
            return;
        if (ec) {
            finish(false,
                   ec == asio::error::connection_refused ? std::string("connect refused") : "connect: " + ec.message());
            return;
        }
        if (spec_.kind == ProbeSpec::Kind::tcp) {
            finish(true, "connected");
            return;
        }
        request_.method(http::verb::get);
        request_.target(spec_.http_path.empty() ? "/" : spec_.http_path);
        request_.version(11);
        request_.set(http::field::host, spec_.http_host.empty() ? default_host(spec_) : spec_.http_host);
        request_.set(http::field::user_agent, "stickylb-health");
        request_.set(http::field::connection, "close");
        http::async_write(socket_, request_,
                          [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_write(ec); });
    }

    void on_write(const error_code& ec) {
        if (finished_)
            return;
        if (ec) {
            finish(false, "http: " + ec.message());
            return;
        }
        http::async_read_header(socket_, buffer_, parser_,
                                [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(const error_code& ec) {
        if (finished_)
            return;
        if (ec) {
            finish(false, "http: " + ec.message());
            return;
        }
        const unsigned status = parser_.get().result_int();
        finish(status == spec_.expected_status, "status " + std::to_string(status));
    }

    void finish(bool success, std::string detail) {
        if (finished_)
            return;
        finished_ = true;
        cleanup();
        const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start_);
        auto done = std::move(done_);
        done_ = nullptr;
        if (done)
            done(ProbeResult{success, latency, std::move(detail)});
    }

    void cleanup() {
        deadline_.cancel();
        error_code ignored;
        socket_.close(ignored);  // pending operations complete with operation_aborted
    }

    tcp::socket socket_;
    asio::steady_timer deadline_;
    const ProbeSpec spec_;
    Done done_;
    bool finished_ = false;
    Clock::time_point start_;
    http::request<http::empty_body> request_;
    http::response_parser<http::empty_body> parser_;
    beast::flat_buffer buffer_;
};

}  // namespace

class HealthChecker::Target : public std::enable_shared_from_this<Target> {
public:
    Target(asio::io_context& io, std::string key, const ProbeSpec& spec, Health initial,
           std::shared_ptr<const Callbacks> callbacks)
        : strand_(asio::make_strand(io)),
          timer_(strand_),
          key_(std::move(key)),
          spec_(std::make_shared<const ProbeSpec>(spec)),
          rise_(std::max(spec.rise, 1u)),
          fall_(std::max(spec.fall, 1u)),
          callbacks_(std::move(callbacks)),
          health_(initial) {}

    const ProbeSpec& spec() const { return *spec_; }
    Health health() const { return health_.load(); }

    void start() {
        asio::post(strand_, [self = shared_from_this()] { self->probe(); });
    }

    // No callback after this returns (on the io thread); timer and socket closed on the strand.
    void stop() {
        stopped_ = true;
        asio::post(strand_, [self = shared_from_this()] {
            self->timer_.cancel();
            if (self->probe_) {
                self->probe_->abort();
                self->probe_.reset();
            }
        });
    }

private:
    void probe() {
        if (stopped_)
            return;
        next_start_ = Clock::now() + spec_->interval;
        probe_ = std::make_shared<Probe>(
            strand_, *spec_, [self = shared_from_this()](const ProbeResult& result) { self->on_probe_done(result); });
        probe_->start();
    }

    void on_probe_done(const ProbeResult& result) {
        const auto finished = Clock::now();
        probe_.reset();
        if (stopped_)
            return;
        if (callbacks_->on_result)
            callbacks_->on_result(key_, result);
        if (stopped_)
            return;
        if (result.success) {
            if (successes_++ == 0)
                streak_started_ = finished;
            failures_ = 0;
        } else {
            if (failures_++ == 0)
                streak_started_ = finished;
            successes_ = 0;
        }
        const Health from = health_.load();
        Health to = from;
        if (from != Health::up && successes_ >= rise_)
            to = Health::up;
        else if (from != Health::down && failures_ >= fall_)
            to = Health::down;
        if (to != from) {
            health_ = to;
            successes_ = failures_ = 0;
            if (callbacks_->on_change)
                callbacks_->on_change(HealthChange{key_, from, to, result, streak_started_});
            if (stopped_)
                return;
        }
        timer_.expires_at(next_start_);
        timer_.async_wait([self = shared_from_this()](const error_code& ec) {
            if (!ec)
                self->probe();
        });
    }

    Strand strand_;
    asio::steady_timer timer_;
    const std::string key_;
    const std::shared_ptr<const ProbeSpec> spec_;
    const unsigned rise_, fall_;
    const std::shared_ptr<const Callbacks> callbacks_;
    std::atomic<Health> health_;
    std::atomic<bool> stopped_{false};
    unsigned successes_ = 0, failures_ = 0;
    Clock::time_point streak_started_;  // when the current streak's first probe finished
    Clock::time_point next_start_;
    std::shared_ptr<Probe> probe_;
};

HealthChecker::HealthChecker(asio::io_context& io, OnChange on_change, OnResult on_result)
    : io_(io), callbacks_(std::make_shared<const Callbacks>(Callbacks{std::move(on_change), std::move(on_result)})) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::add_or_update(const std::string& key, const ProbeSpec& spec, Health initial) {
    if (spec.address.family() != STICKYLB_FAMILY_IPV4 && spec.address.family() != STICKYLB_FAMILY_IPV6)
        throw std::invalid_argument("health check '" + key + "': no backend address");
    if (const auto it = targets_.find(key); it != targets_.end()) {
        if (it->second->spec() == spec)
            return;
        initial = it->second->health();
        it->second->stop();
        targets_.erase(it);
    }
    auto target = std::make_shared<Target>(io_, key, spec, initial, callbacks_);
    targets_.emplace(key, target);
    target->start();
}

void HealthChecker::remove(const std::string& key) {
    if (const auto it = targets_.find(key); it != targets_.end()) {
        it->second->stop();
        targets_.erase(it);
    }
}

Health HealthChecker::health(const std::string& key) const {
    const auto it = targets_.find(key);
    return it == targets_.end() ? Health::unknown : it->second->health();
}

void HealthChecker::stop() {
    for (auto& [key, target] : targets_)
        target->stop();
    targets_.clear();
}

}  // namespace stickylb
