// SPDX-License-Identifier: Apache-2.0
// Membership views written to real memcached processes on loopback: every
// server gets them, the agent's parser reads them, a server that is down or
// hung blocks neither the caller nor the other servers and shows in the link's
// status, a server back empty gets the view again, and views read back raise a
// fresh book. Also: the failover delay is measured from the first failed check.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "control/health.h"
#include "session/memcached_link.h"
#include "session/membership.h"
#include "session/membership_publisher.h"
#include "support/memcached_process.h"

namespace stickylb {
namespace {

using namespace std::chrono_literals;
using session::MembershipView;
using session::MemberState;
using Clock = std::chrono::steady_clock;

std::shared_ptr<MemcachedLink> link_to(const std::string& server, std::chrono::milliseconds timeout = 300ms) {
    MemcachedLinkOptions options;
    options.timeouts = {timeout, timeout};
    options.backoff_initial = 50ms;
    options.backoff_max = 200ms;
    return std::make_shared<MemcachedLink>(server, options);
}

std::string nowhere() { return "127.0.0.1:" + std::to_string(testing::MemcachedProcess::unused_port()); }

MembershipView web_view(std::uint64_t epoch, MemberState be2 = MemberState::up) {
    return MembershipView{"web", epoch, 0, {{"be1", {MemberState::up, 1}}, {"be2", {be2, 2}}}};
}

// Runs the io_context until done() or the (generous) deadline.
template <typename Done>
bool run_until(boost::asio::io_context& io, Done done, std::chrono::seconds deadline = 10s) {
    const auto end = Clock::now() + deadline;
    while (!done() && Clock::now() < end) {
        io.restart();
        io.run_for(20ms);
    }
    return done();
}

std::optional<MembershipView> stored_view(const std::string& server, const std::string& cluster = "web") {
    auto text = MemcachedClient(server, {}).get(session::members_key(cluster));
    if (!text)
        return std::nullopt;
    return session::parse_view(*text);
}

class Publisher : public ::testing::Test {
protected:
    void SetUp() override { STICKYLB_REQUIRE_MEMCACHED(); }
    boost::asio::io_context io;
};

TEST_F(Publisher, EveryServerGetsTheViewInTheAgentsFormat) {
    testing::MemcachedProcess first, second;
    MembershipPublisher publisher(io, {link_to(first.address()), link_to(second.address())}, 5s);
    std::optional<MembershipPublisher::Outcome> outcome;
    const auto before = std::chrono::system_clock::now();
    publisher.publish({web_view(7, MemberState::down)}, [&](const auto& o) { outcome = o; });
    ASSERT_TRUE(run_until(io, [&] { return outcome.has_value(); }));
    EXPECT_EQ(outcome->servers, 2u);
    EXPECT_EQ(outcome->written, 2u);
    for (const auto* server : {&first, &second}) {
        const auto view = stored_view(server->address());
        ASSERT_TRUE(view) << server->address();
        EXPECT_EQ(view->epoch, 7u);
        EXPECT_EQ(view->backends, web_view(7, MemberState::down).backends);
        EXPECT_GE(view->written_ms,
                  std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count())
            << "stamped when written";
        EXPECT_EQ(publisher.servers().at(server->address()).writes, 1u);
    }
    EXPECT_EQ(publisher.clusters().at("web").epoch, 7u);
}

TEST_F(Publisher, ViewsExpireAfterTheirTtl) {
    testing::MemcachedProcess server;
    MembershipPublisher publisher(io, {link_to(server.address())}, 1s);
    bool done = false;
    publisher.publish({web_view(1)}, [&](const auto&) { done = true; });
    ASSERT_TRUE(run_until(io, [&] { return done; }));
    ASSERT_TRUE(stored_view(server.address()));
    // A dead daemon's view must vanish: poll (bounded) for memcached to drop it.
    bool gone = false;
    for (int i = 0; i < 50 && !gone; ++i) {
        std::this_thread::sleep_for(100ms);
        gone = !stored_view(server.address());
    }
    EXPECT_TRUE(gone) << "the view outlived its 1 s TTL";
}

// memcached unreachable: publish returns at once, the outcome says so, the link
// is down with its errors counted, and the reachable server is written anyway.
TEST_F(Publisher, UnreachableServerBlocksNothing) {
    testing::MemcachedProcess server;
    const auto dead = link_to(nowhere());
    const auto live = link_to(server.address());
    MembershipPublisher publisher(io, {dead, live}, 5s);
    std::optional<MembershipPublisher::Outcome> outcome;
    const auto start = Clock::now();
    publisher.publish({web_view(1)}, [&](const auto& o) { outcome = o; });
    EXPECT_LT(Clock::now() - start, 100ms) << "publish must only queue the writes";
    ASSERT_TRUE(run_until(io, [&] { return outcome.has_value(); }));
    EXPECT_EQ(outcome->written, 1u);
    ASSERT_EQ(outcome->errors.size(), 1u);
    EXPECT_NE(outcome->errors[0].find(dead->server()), std::string::npos) << outcome->errors[0];
    EXPECT_TRUE(stored_view(server.address()));
    EXPECT_FALSE(dead->status().up);
    EXPECT_GE(dead->status().errors, 1u);
    EXPECT_TRUE(live->status().up);
    EXPECT_EQ(live->status().errors, 0u);
}

// A hung server (SIGSTOP: connections accepted, never answered) costs its own
// link a timeout; the other server's write is not held up by it.
TEST_F(Publisher, HungServerDelaysOnlyItself) {
    testing::MemcachedProcess hung, live;
    const auto hung_link = link_to(hung.address(), 3000ms);
    const auto live_link = link_to(live.address());
    hung.pause();
    MembershipPublisher publisher(io, {hung_link, live_link}, 5s);
    std::optional<MembershipPublisher::Outcome> outcome;
    publisher.publish({web_view(3)}, [&](const auto& o) { outcome = o; });
    // The live server has the view while the hung one is still being waited for.
    bool live_written = false;
    run_until(
        io, [&] { return live_written = publisher.servers().at(live.address()).writes == 1; }, 5s);
    EXPECT_TRUE(live_written);
    EXPECT_FALSE(outcome.has_value()) << "the hung server cannot have answered yet";
    ASSERT_TRUE(run_until(io, [&] { return outcome.has_value(); }));
    EXPECT_EQ(outcome->written, 1u);
    EXPECT_FALSE(hung_link->status().up);
    hung.resume();
}

TEST_F(Publisher, ServerBackEmptyGetsTheViewAgain) {
    testing::MemcachedProcess server;
    const auto link = link_to(server.address());
    MembershipPublisher publisher(io, {link}, 5s);
    bool done = false;
    publisher.publish({web_view(4)}, [&](const auto&) { done = true; });
    ASSERT_TRUE(run_until(io, [&] { return done; }));
    server.kill();
    done = false;
    publisher.publish({web_view(4)}, [&](const auto&) { done = true; });  // the refresh while it is gone
    ASSERT_TRUE(run_until(io, [&] { return done; }));
    EXPECT_FALSE(link->status().up);
    server.restart();  // back, empty
    EXPECT_FALSE(stored_view(server.address()));
    // Refreshes go on; the link retries after its backoff and the view is back.
    bool back = false;
    for (int i = 0; i < 100 && !back; ++i) {
        done = false;
        publisher.publish({web_view(4)}, [&](const auto&) { done = true; });
        run_until(io, [&] { return done; });
        back = stored_view(server.address()).has_value();
        if (!back)
            std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(back);
    EXPECT_TRUE(link->status().up);
}

TEST_F(Publisher, ANewerViewReplacesAQueuedOne) {
    testing::MemcachedProcess hung;
    const auto link = link_to(hung.address(), 500ms);
    hung.pause();
    MembershipPublisher publisher(io, {link}, 5s);
    int outcomes = 0;
    // The first write is stuck on the hung server; the next three queue up behind it
    // and collapse into the newest.
    for (std::uint64_t epoch = 1; epoch <= 4; ++epoch)
        publisher.publish({web_view(epoch)}, [&](const auto&) { ++outcomes; });
    hung.resume();
    ASSERT_TRUE(run_until(
        io, [&] { return outcomes == 4; }, 15s));
    // Wait out the backoff of the failed first write, if it failed.
    bool written = false;
    for (int i = 0; i < 50 && !written; ++i) {
        const auto view = stored_view(hung.address());
        written = view && view->epoch == 4;
        if (!written)
            std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(written) << "the newest view is the one memcached holds";
    EXPECT_LE(publisher.servers().at(hung.address()).writes, 2u) << "queued views collapsed";
}

TEST_F(Publisher, ReadViewsRaisesAFreshBook) {
    testing::MemcachedProcess first, second;
    const std::vector<std::shared_ptr<MemcachedLink>> links = {link_to(first.address()), link_to(second.address()),
                                                               link_to(nowhere())};
    MembershipPublisher publisher(io, {links[0]}, 60s);
    MembershipPublisher other(io, {links[1]}, 60s);
    int done = 0;
    publisher.publish({web_view(12, MemberState::down)}, [&](const auto&) { ++done; });
    other.publish({web_view(9)}, [&](const auto&) { ++done; });  // an older one on the other server
    ASSERT_TRUE(run_until(io, [&] { return done == 2; }));

    const ViewsRead read = read_views(links, {"web", "api"}, 3s, nullptr, 15s);
    EXPECT_EQ(read.views.size(), 2u);
    ASSERT_EQ(read.problems.size(), 1u) << "the unreachable server";
    MembershipBook book;
    for (const MembershipView& view : read.views)
        book.recover(view);
    EXPECT_TRUE(book.update({{"web", {{"be1", MemberState::up}, {"be2", MemberState::down}}}}).empty());
    EXPECT_EQ(book.find("web")->epoch, 12u) << "the newest view read";
    book.update({{"web", {{"be1", MemberState::up}, {"be2", MemberState::up}}}});
    EXPECT_EQ(book.find("web")->epoch, 13u);
    EXPECT_EQ(book.find("web")->find("be2")->incarnation, 3u);
}

TEST_F(Publisher, FailoverDelayIsObservedAtTheFirstServerWrite) {
    testing::MemcachedProcess server;
    MembershipPublisher publisher(io, {link_to(server.address())}, 5s);
    const auto failed = Clock::now() - 2s;  // first failed check, two seconds ago
    publisher.expect_failover("web", 5, failed);
    bool done = false;
    publisher.publish({web_view(4)}, [&](const auto&) { done = true; });
    ASSERT_TRUE(run_until(io, [&] { return done; }));
    EXPECT_EQ(publisher.failover_seconds().count(), 0u) << "epoch 4 does not say it yet";
    done = false;
    publisher.publish({web_view(5, MemberState::down)}, [&](const auto&) { done = true; });
    ASSERT_TRUE(run_until(io, [&] { return done; }));
    ASSERT_EQ(publisher.failover_seconds().count(), 1u);
    EXPECT_GE(publisher.failover_seconds().sum(), 2.0);
}

// The health checker carries when a backend's failure was first seen.
TEST(Failover, HealthChangeCarriesTheFirstFailedCheck) {
    boost::asio::io_context io;
    std::vector<Clock::time_point> results;
    std::optional<HealthChange> change;
    HealthChecker checker(
        io, [&](const HealthChange& c) { change = c; },
        [&](const std::string&, const ProbeResult&) { results.push_back(Clock::now()); });
    ProbeSpec spec;
    spec.address = IpAddress::parse("127.0.0.1");
    spec.port = testing::MemcachedProcess::unused_port();  // refused
    spec.interval = 50ms;
    spec.timeout = 50ms;
    spec.fall = 3;
    checker.add_or_update("web/be1", spec, Health::up);
    run_until(io, [&] { return change.has_value(); });
    checker.stop();
    ASSERT_TRUE(change);
    EXPECT_EQ(change->to, Health::down);
    ASSERT_GE(results.size(), 3u);
    // Between the end of the probe before the first failure (none: it starts
    // up) and the first failure's report: the first of the three failures.
    EXPECT_LE(change->streak_started, results[0]);
    EXPECT_LT(change->streak_started, results[1]);
}

// --- the link itself ---------------------------------------------------------------

TEST(MemcachedLink, BackingOffRefusesImpatientWorkAtOnce) {
    STICKYLB_REQUIRE_MEMCACHED();
    MemcachedLinkOptions options;
    options.backoff_initial = 5s;  // long: the second call lands inside it
    MemcachedLink link(nowhere(), options);
    std::promise<std::string> first, second;
    link.submit([](MemcachedClient& client) { client.get("x"); }, [&](const std::string& e) { first.set_value(e); },
                true);
    ASSERT_EQ(first.get_future().wait_for(5s), std::future_status::ready);
    const auto start = Clock::now();
    link.submit([](MemcachedClient& client) { client.get("x"); }, [&](const std::string& e) { second.set_value(e); },
                true);
    auto answer = second.get_future();
    ASSERT_EQ(answer.wait_for(2s), std::future_status::ready);
    EXPECT_LT(Clock::now() - start, 1s);
    EXPECT_NE(answer.get().find("backing off"), std::string::npos);
    EXPECT_GT(link.status().retry_in, 0ms);
}

TEST(MemcachedLink, PublishesRunBetweenTheStepsOfLongWork) {
    STICKYLB_REQUIRE_MEMCACHED();
    testing::MemcachedProcess server;
    MemcachedLink link(server.address(), {});
    std::vector<std::string> order;
    std::mutex mutex;
    const auto note = [&](std::string what) {
        std::lock_guard lock(mutex);
        order.push_back(std::move(what));
    };
    std::promise<void> started, release;
    auto released = release.get_future().share();
    int step = 0;
    std::promise<std::string> finished;
    link.submit_steps(
        [&, released](MemcachedClient& client) {
            client.set("step", std::to_string(step), 10s);
            note("step " + std::to_string(step));
            if (step == 0) {
                started.set_value();
                released.wait();
            }
            return ++step < 3;
        },
        [&](const std::string& error) { finished.set_value(error); }, false);
    started.get_future().wait();
    std::promise<std::string> published;
    link.publish(
        "view",
        [&](MemcachedClient& client) {
            client.set("view", "v", 10s);
            note("publish");
        },
        [&](const std::string& error) { published.set_value(error); });
    release.set_value();
    ASSERT_EQ(finished.get_future().get(), "");
    ASSERT_EQ(published.get_future().get(), "");
    EXPECT_EQ(order, (std::vector<std::string>{"step 0", "publish", "step 1", "step 2"}));
}

TEST(MemcachedLink, StopAnswersQueuedWork) {
    STICKYLB_REQUIRE_MEMCACHED();
    testing::MemcachedProcess hung;
    hung.pause();
    auto link = std::make_unique<MemcachedLink>(hung.address(), MemcachedLinkOptions{{200ms, 200ms}, 50ms, 100ms});
    std::vector<std::promise<std::string>> answers(3);
    for (auto& answer : answers)
        link->submit([](MemcachedClient& client) { client.get("x"); },
                     [&answer](const std::string& e) { answer.set_value(e); }, false);
    link->stop();
    for (auto& answer : answers)
        EXPECT_EQ(answer.get_future().wait_for(0s), std::future_status::ready) << "every queued job is answered";
    hung.resume();
}

}  // namespace
}  // namespace stickylb
