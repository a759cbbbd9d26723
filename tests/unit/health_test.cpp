// SPDX-License-Identifier: Apache-2.0
// Health checks against loopback servers run by the test on their own thread: rise/fall,
// HTTP status, timeouts, concurrency with a black-holed target, remove() and stop().
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/health.h"

namespace stickylb {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// An io_context on its own thread for the test's servers, so the checker's io_context holds
// nothing but the checker's work.
class ServerThread {
public:
    ServerThread() : work_(asio::make_work_guard(io)), thread_([this] { io.run(); }) {}
    ~ServerThread() {
        work_.reset();
        io.stop();
        thread_.join();
    }
    template <class F>
    void sync(F f) {
        std::promise<void> done;
        asio::post(io, [&] {
            f();
            done.set_value();
        });
        done.get_future().wait();
    }
    asio::io_context io;

private:
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::thread thread_;
};

// tcp: accepts and closes. http: reads a request, answers the next scripted status (or
// `status`), closes. blackhole: accepts and never reads nor writes.
class Server {
public:
    enum class Mode { tcp, http, blackhole };

    Server(ServerThread& thread, const std::string& address, Mode mode)
        : thread_(thread), state_(std::make_shared<State>(thread.io, mode)) {
        const tcp::endpoint endpoint(asio::ip::make_address(address), 0);
        state_->acceptor.open(endpoint.protocol());
        state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
        state_->acceptor.bind(endpoint);
        state_->acceptor.listen();
        port_ = state_->acceptor.local_endpoint().port();
        thread_.sync([state = state_] { accept(state); });
    }
    ~Server() { close(); }

    std::uint16_t port() const { return port_; }
    void set_status(unsigned status) { state_->status = status; }
    void script(std::deque<unsigned> statuses) {
        std::lock_guard lock(state_->mutex);
        state_->script = std::move(statuses);
    }
    std::string last_request() const {
        std::lock_guard lock(state_->mutex);
        return state_->last_request;
    }
    int accepted() const { return state_->accepted; }
    // Stops listening (later connects are refused) and closes held connections.
    void close() {
        thread_.sync([state = state_] {
            error_code ignored;
            state->acceptor.close(ignored);
            for (auto& socket : state->held)
                socket->close(ignored);
            state->held.clear();
        });
    }

private:
    struct State {
        State(asio::io_context& io, Mode mode) : acceptor(io), mode(mode) {}
        tcp::acceptor acceptor;
        const Mode mode;
        std::atomic<unsigned> status{200};
        std::atomic<int> accepted{0};
        mutable std::mutex mutex;
        std::deque<unsigned> script;
        std::string last_request;
        std::vector<std::shared_ptr<tcp::socket>> held;
    };

    static void accept(const std::shared_ptr<State>& state) {
        state->acceptor.async_accept([state](const error_code& ec, tcp::socket socket) {
            if (ec)
                return;
            ++state->accepted;
            serve(state, std::make_shared<tcp::socket>(std::move(socket)));
            accept(state);
        });
    }

    static void serve(const std::shared_ptr<State>& state, const std::shared_ptr<tcp::socket>& socket) {
        switch (state->mode) {
        case Mode::tcp: return;  // closed when the last reference goes
        case Mode::blackhole: state->held.push_back(socket); return;
        case Mode::http: break;
        }
        auto request = std::make_shared<std::string>();
        asio::async_read_until(*socket, asio::dynamic_buffer(*request), "\r\n\r\n",
                               [state, socket, request](const error_code& ec, std::size_t) {
                                   if (ec)
                                       return;
                                   unsigned status = state->status;
                                   {
                                       std::lock_guard lock(state->mutex);
                                       state->last_request = *request;
                                       if (!state->script.empty()) {
                                           status = state->script.front();
                                           state->script.pop_front();
                                       }
                                   }
                                   auto response = std::make_shared<std::string>("HTTP/1.1 " + std::to_string(status) +
                                                                                 " Whatever\r\nContent-Length: 0\r\n"
                                                                                 "Connection: close\r\n\r\n");
                                   asio::async_write(*socket, asio::buffer(*response),
                                                     [socket, response](const error_code&, std::size_t) {
                                                         error_code ignored;
                                                         socket->shutdown(tcp::socket::shutdown_both, ignored);
                                                     });
                               });
    }

    ServerThread& thread_;
    std::shared_ptr<State> state_;
    std::uint16_t port_ = 0;
};

// A loopback port nothing listens on (bound, then released).
std::uint16_t closed_port(const std::string& address) {
    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address(address), 0));
    return acceptor.local_endpoint().port();
}

// Runs io until pred() holds or the limit passes; false on the limit.
template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = Clock::now() + limit;
    while (!pred()) {
        if (Clock::now() >= deadline)
            return false;
        if (io.stopped())
            io.restart();
        io.run_for(5ms);
    }
    return true;
}

// Runs io until it runs out of work; returns how long that took (capped at `limit`).
std::chrono::milliseconds run_to_completion(asio::io_context& io, std::chrono::milliseconds limit = 5000ms) {
    io.restart();
    const auto start = Clock::now();
    io.run_for(limit);
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

struct Recorder {
    struct Change {
        HealthChange change;
        std::size_t results_so_far;  // results of that key when the change was reported
    };
    std::vector<Change> changes;
    std::map<std::string, std::vector<ProbeResult>> results;

    HealthChecker::OnChange on_change() {
        return [this](const HealthChange& change) { changes.push_back({change, results[change.key].size()}); };
    }
    HealthChecker::OnResult on_result() {
        return [this](const std::string& key, const ProbeResult& result) { results[key].push_back(result); };
    }
};

ProbeSpec tcp_spec(const std::string& address, std::uint16_t port) {
    ProbeSpec spec;
    spec.kind = ProbeSpec::Kind::tcp;
    spec.address = IpAddress::parse(address);
    spec.port = port;
    spec.interval = 30ms;
    spec.timeout = 1000ms;
    spec.rise = 2;
    spec.fall = 3;
    return spec;
}

ProbeSpec http_spec(const std::string& address, std::uint16_t port) {
    auto spec = tcp_spec(address, port);
    spec.kind = ProbeSpec::Kind::http;
    return spec;
}

class HealthCheck : public testing::TestWithParam<std::string> {
protected:
    const std::string address = GetParam();
    ServerThread servers;
    asio::io_context io;
    Recorder recorder;
};

INSTANTIATE_TEST_SUITE_P(Loopback, HealthCheck, testing::Values("127.0.0.1", "::1"),
                         [](const auto& info) { return info.param == "::1" ? std::string("v6") : std::string("v4"); });

TEST_P(HealthCheck, TcpTargetGoesUpAfterRiseAndDownAfterFallWhenTheListenerCloses) {
    Server server(servers, address, Server::Mode::tcp);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    checker.add_or_update("b1", tcp_spec(address, server.port()));
    EXPECT_EQ(checker.health("b1"), Health::unknown);

    ASSERT_TRUE(run_until(io, [&] { return checker.health("b1") == Health::up; }));
    ASSERT_EQ(recorder.changes.size(), 1u);
    EXPECT_EQ(recorder.changes[0].change.key, "b1");
    EXPECT_EQ(recorder.changes[0].change.from, Health::unknown);
    EXPECT_EQ(recorder.changes[0].change.to, Health::up);
    EXPECT_EQ(recorder.changes[0].results_so_far, 2u) << "up after exactly rise=2 successes";
    for (const auto& result : recorder.results["b1"]) {
        EXPECT_TRUE(result.success);
        EXPECT_EQ(result.detail, "connected");
        EXPECT_LT(result.latency, 1s);
    }

    server.close();
    ASSERT_TRUE(run_until(io, [&] { return checker.health("b1") == Health::down; }));
    ASSERT_EQ(recorder.changes.size(), 2u);
    const auto& down = recorder.changes[1];
    EXPECT_EQ(down.change.from, Health::up);
    EXPECT_EQ(down.change.to, Health::down);
    EXPECT_FALSE(down.change.last.success);
    EXPECT_EQ(down.change.last.detail, "connect refused");
    const auto& results = recorder.results["b1"];
    ASSERT_GE(down.results_so_far, 2u + 3u);
    for (std::size_t i = down.results_so_far - 3; i < down.results_so_far; ++i)
        EXPECT_FALSE(results[i].success) << "down after exactly fall=3 failures";
    EXPECT_TRUE(results[down.results_so_far - 4].success);
}

TEST_P(HealthCheck, UnknownTargetGoesDownAfterFallFailures) {
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    checker.add_or_update("dead", tcp_spec(address, closed_port(address)));
    ASSERT_TRUE(run_until(io, [&] { return checker.health("dead") == Health::down; }));
    ASSERT_EQ(recorder.changes.size(), 1u);
    EXPECT_EQ(recorder.changes[0].change.from, Health::unknown);
    EXPECT_EQ(recorder.changes[0].results_so_far, 3u);
    EXPECT_EQ(recorder.changes[0].change.last.detail, "connect refused");
}

TEST_P(HealthCheck, InitialStateIsHonoured) {
    Server server(servers, address, Server::Mode::tcp);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    checker.add_or_update("was-down", tcp_spec(address, server.port()), Health::down);
    checker.add_or_update("was-up", tcp_spec(address, server.port()), Health::up);
    EXPECT_EQ(checker.health("was-down"), Health::down);
    EXPECT_EQ(checker.health("was-up"), Health::up);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("was-down") == Health::up; }));
    ASSERT_TRUE(run_until(io, [&] { return recorder.results["was-up"].size() >= 5; }));
    ASSERT_EQ(recorder.changes.size(), 1u) << "no change reported for a target that stays up";
    EXPECT_EQ(recorder.changes[0].change.key, "was-down");
    EXPECT_EQ(recorder.changes[0].change.from, Health::down);
    EXPECT_EQ(recorder.changes[0].results_so_far, 2u);
}

TEST_P(HealthCheck, HttpTargetUpOn200DownOn503) {
    Server server(servers, address, Server::Mode::http);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto spec = http_spec(address, server.port());
    spec.http_path = "/health?probe=1";
    checker.add_or_update("web", spec);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("web") == Health::up; }));
    EXPECT_EQ(recorder.results["web"].back().detail, "status 200");

    const auto request = server.last_request();
    EXPECT_EQ(request.rfind("GET /health?probe=1 HTTP/1.1\r\n", 0), 0u) << request;
    const std::string host = address == "::1" ? "[::1]" : address;
    EXPECT_NE(request.find("Host: " + host + ":" + std::to_string(server.port()) + "\r\n"), std::string::npos)
        << request;
    EXPECT_NE(request.find("Connection: close\r\n"), std::string::npos) << request;

    server.set_status(503);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("web") == Health::down; }));
    ASSERT_EQ(recorder.changes.size(), 2u);
    EXPECT_EQ(recorder.changes[1].change.to, Health::down);
    EXPECT_EQ(recorder.changes[1].change.last.detail, "status 503");
}

TEST_P(HealthCheck, HttpHostAndExpectedStatusAreConfigurable) {
    Server server(servers, address, Server::Mode::http);
    server.set_status(204);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto spec = http_spec(address, server.port());
    spec.http_host = "app.example";
    spec.expected_status = 204;
    checker.add_or_update("web", spec);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("web") == Health::up; }));
    EXPECT_NE(server.last_request().find("Host: app.example\r\n"), std::string::npos) << server.last_request();
    server.set_status(200);  // not the expected one
    ASSERT_TRUE(run_until(io, [&] { return checker.health("web") == Health::down; }));
    EXPECT_EQ(recorder.changes.back().change.last.detail, "status 200");
}

TEST_P(HealthCheck, AContraryResultResetsTheStreak) {
    Server server(servers, address, Server::Mode::http);
    server.script({503, 503, 200, 503, 503, 200, 200, 503, 503, 503});
    server.set_status(503);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto spec = http_spec(address, server.port());
    spec.rise = 3;
    checker.add_or_update("web", spec, Health::up);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("web") == Health::down; }));
    ASSERT_EQ(recorder.changes.size(), 1u);
    EXPECT_EQ(recorder.changes[0].results_so_far, 10u) << "down only after the first 3 failures in a row";
}

TEST_P(HealthCheck, AServerThatNeverAnswersTimesOut) {
    Server server(servers, address, Server::Mode::blackhole);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto spec = http_spec(address, server.port());
    spec.interval = 100ms;
    spec.timeout = 50ms;
    spec.fall = 2;
    const auto start = Clock::now();
    checker.add_or_update("silent", spec);
    ASSERT_TRUE(run_until(io, [&] { return !recorder.results["silent"].empty(); }));
    EXPECT_LT(Clock::now() - start, 1s);
    const auto& first = recorder.results["silent"].front();
    EXPECT_FALSE(first.success);
    EXPECT_EQ(first.detail, "timeout");
    EXPECT_GE(first.latency, 50ms);
    EXPECT_LT(first.latency, 1s);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("silent") == Health::down; }));
    EXPECT_EQ(recorder.changes[0].change.last.detail, "timeout");
    EXPECT_GE(server.accepted(), 2);
}

TEST_P(HealthCheck, FirstProbeStartsAtOnce) {
    Server server(servers, address, Server::Mode::tcp);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto spec = tcp_spec(address, server.port());
    spec.interval = 60s;
    spec.rise = 1;
    checker.add_or_update("b1", spec);
    ASSERT_TRUE(run_until(
        io, [&] { return checker.health("b1") == Health::up; }, 2000ms));
    EXPECT_EQ(recorder.results["b1"].size(), 1u);
}

TEST_P(HealthCheck, FiftyTargetsAreNotDelayedByABlackholedOne) {
    Server tcp_server(servers, address, Server::Mode::tcp);
    Server http_server(servers, address, Server::Mode::http);
    Server blackhole(servers, address, Server::Mode::blackhole);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());

    auto slow = http_spec(address, blackhole.port());
    slow.interval = 100ms;
    slow.timeout = 30s;
    checker.add_or_update("slow", slow);
    for (int i = 0; i < 50; ++i) {
        auto spec = i % 2 ? tcp_spec(address, tcp_server.port()) : http_spec(address, http_server.port());
        spec.interval = 100ms;
        checker.add_or_update("b" + std::to_string(i), spec);
    }
    const auto all_up = [&] {
        for (int i = 0; i < 50; ++i)
            if (checker.health("b" + std::to_string(i)) != Health::up)
                return false;
        return true;
    };
    // rise=2 at 100 ms: up after ~100 ms; a few intervals of slack.
    ASSERT_TRUE(run_until(io, all_up, 1500ms));
    EXPECT_EQ(checker.health("slow"), Health::unknown);
    EXPECT_TRUE(recorder.results["slow"].empty()) << "its first probe is still waiting";
    EXPECT_EQ(recorder.changes.size(), 50u);

    // stop() abandons the black-holed probe in flight: io runs out of work at once.
    checker.stop();
    EXPECT_LT(run_to_completion(io), 2000ms);
    EXPECT_TRUE(io.stopped());
    EXPECT_EQ(checker.health("b0"), Health::unknown);
}

TEST_P(HealthCheck, RemoveStopsProbing) {
    Server server(servers, address, Server::Mode::tcp);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto spec = tcp_spec(address, server.port());
    spec.interval = 20ms;
    checker.add_or_update("gone", spec);
    checker.add_or_update("kept", spec);
    ASSERT_TRUE(run_until(io, [&] { return recorder.results["gone"].size() >= 3; }));
    checker.remove("gone");
    EXPECT_EQ(checker.health("gone"), Health::unknown);
    const auto count = recorder.results["gone"].size();
    const auto changes = recorder.changes.size();
    const auto kept = recorder.results["kept"].size();
    ASSERT_TRUE(run_until(io, [&] { return recorder.results["kept"].size() >= kept + 10; }));
    EXPECT_EQ(recorder.results["gone"].size(), count);
    for (std::size_t i = changes; i < recorder.changes.size(); ++i)
        EXPECT_NE(recorder.changes[i].change.key, "gone");

    checker.remove("kept");
    EXPECT_LT(run_to_completion(io), 2000ms) << "nothing left to run";
}

TEST_P(HealthCheck, SpecChangeRestartsTheLoopAndKeepsTheHealth) {
    Server server(servers, address, Server::Mode::tcp);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto spec = tcp_spec(address, server.port());
    checker.add_or_update("b1", spec);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("b1") == Health::up; }));

    checker.add_or_update("b1", spec, Health::down);  // same spec: nothing, initial ignored
    EXPECT_EQ(checker.health("b1"), Health::up);

    spec.port = closed_port(address);
    checker.add_or_update("b1", spec, Health::unknown);  // new spec: restarts, health kept
    EXPECT_EQ(checker.health("b1"), Health::up);
    ASSERT_TRUE(run_until(io, [&] { return checker.health("b1") == Health::down; }));
    ASSERT_EQ(recorder.changes.size(), 2u);
    EXPECT_EQ(recorder.changes[1].change.from, Health::up);
    EXPECT_EQ(recorder.changes[1].change.last.detail, "connect refused");
}

TEST_P(HealthCheck, StopLetsRunReturn) {
    Server server(servers, address, Server::Mode::tcp);
    Server blackhole(servers, address, Server::Mode::blackhole);
    HealthChecker checker(io, recorder.on_change(), recorder.on_result());
    auto slow = http_spec(address, blackhole.port());
    slow.timeout = 30s;
    checker.add_or_update("slow", slow);
    checker.add_or_update("b1", tcp_spec(address, server.port()));
    asio::steady_timer later(io, 200ms);
    later.async_wait([&](const error_code&) { checker.stop(); });
    const auto start = Clock::now();
    io.run_for(10s);
    EXPECT_LT(Clock::now() - start, 5s);
    EXPECT_TRUE(io.stopped());
    EXPECT_FALSE(recorder.results["b1"].empty());
    EXPECT_TRUE(recorder.results["slow"].empty());
}

TEST_P(HealthCheck, CallbacksMayRemoveTheirOwnTarget) {
    Server server(servers, address, Server::Mode::tcp);
    asio::io_context local;
    HealthChecker* self = nullptr;
    int results = 0;
    HealthChecker checker(
        local, [](const HealthChange&) {},
        [&](const std::string& key, const ProbeResult&) {
            ++results;
            self->remove(key);
        });
    self = &checker;
    checker.add_or_update("b1", tcp_spec(address, server.port()));
    EXPECT_LT(run_to_completion(local), 2000ms);
    EXPECT_EQ(results, 1);
    EXPECT_TRUE(recorder.changes.empty());
}

TEST(HealthCheckSpec, RejectsATargetWithoutAddress) {
    asio::io_context io;
    HealthChecker checker(io, [](const HealthChange&) {});
    EXPECT_THROW(checker.add_or_update("none", ProbeSpec{}), std::invalid_argument);
}

}  // namespace
}  // namespace stickylb
