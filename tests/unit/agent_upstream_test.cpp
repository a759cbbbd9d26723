// SPDX-License-Identifier: Apache-2.0
// UpstreamServer against a real memcached on loopback: classic and meta round
// trips, reply framing, pipelining, and the failure model (server down, hung
// server, killed server, close()).
#include <gtest/gtest.h>

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/upstream.h"
#include "support/memcached_process.h"

namespace stickylb::agent {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using stickylb::testing::MemcachedProcess;

struct Outcome {
    int calls = 0;
    std::error_code error;
    Reply reply;
};

bool all_done(const std::vector<std::shared_ptr<Outcome>>& outcomes) {
    return std::all_of(outcomes.begin(), outcomes.end(), [](auto& outcome) { return outcome->calls > 0; });
}

TEST(ServerAddressTest, ParsesHostPortForms) {
    auto v4 = ServerAddress::parse("127.0.0.1:11211");
    EXPECT_EQ(v4.host, "127.0.0.1");
    EXPECT_EQ(v4.port, 11211);
    EXPECT_EQ(v4.name(), "127.0.0.1:11211");

    auto v6 = ServerAddress::parse("[fd00:1::20]:11300");
    EXPECT_EQ(v6.host, "fd00:1::20");
    EXPECT_EQ(v6.port, 11300);
    EXPECT_EQ(v6.name(), "[fd00:1::20]:11300");

    auto named = ServerAddress::parse("memcache-1.internal:11211");
    EXPECT_EQ(named.host, "memcache-1.internal");
    EXPECT_EQ(named.name(), "memcache-1.internal:11211");
}

TEST(ServerAddressTest, RejectsMalformedAddresses) {
    for (const char* text : {"", "10.0.0.1", "10.0.0.1:", ":11211", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:11x",
                             "fd00::1:11211", "[fd00::1]", "[fd00::1]11211", "[nonsense]:1", "bad host:11211"})
        EXPECT_THROW(ServerAddress::parse(text), std::invalid_argument) << text;
}

Reply reply_line(std::string line) {
    Reply reply;
    reply.line = std::move(line);
    return reply;
}

TEST(ReplyTest, MetaCodeAndFlags) {
    auto hit = reply_line("HD c5 t30 Oabc");
    EXPECT_EQ(hit.meta_code(), "HD");
    EXPECT_EQ(hit.flag('c'), "5");
    EXPECT_EQ(hit.flag('t'), "30");
    EXPECT_EQ(hit.flag('O'), "abc");
    EXPECT_EQ(hit.flag('f'), std::nullopt);

    auto value = reply_line("VA 3 c2 f0");
    EXPECT_EQ(value.meta_code(), "VA");
    EXPECT_EQ(value.flag('3'), std::nullopt);  // the length is not a flag
    EXPECT_EQ(value.flag('c'), "2");
    EXPECT_EQ(value.flag('f'), "0");

    auto error = reply_line("CLIENT_ERROR bad command line format");
    EXPECT_EQ(error.meta_code(), "CLIENT_ERROR");
    EXPECT_EQ(error.flag('b'), std::nullopt);
    EXPECT_EQ(reply_line("EN").flag('c'), std::nullopt);
}

class UpstreamTest : public ::testing::Test {
protected:
    void SetUp() override { STICKYLB_REQUIRE_MEMCACHED(); }

    std::unique_ptr<UpstreamServer> connect(const std::string& address, UpstreamOptions options = {}) {
        return std::make_unique<UpstreamServer>(io.get_executor(), ServerAddress::parse(address), options);
    }

    // Runs the io_context until `done()` holds; false after a generous deadline.
    template <class Predicate>
    bool run_until(Predicate done, std::chrono::milliseconds limit = 10s) {
        auto deadline = Clock::now() + limit;
        while (!done()) {
            if (Clock::now() > deadline)
                return false;
            io.run_one_for(20ms);
            if (io.stopped())
                io.restart();
        }
        return true;
    }

    void run_for(std::chrono::milliseconds duration) {
        run_until([] { return false; }, duration);
    }

    std::shared_ptr<Outcome> start(UpstreamServer& server, std::string wire, ReplyShape shape) {
        auto outcome = std::make_shared<Outcome>();
        server.call(std::move(wire), shape, [outcome](std::error_code error, Reply reply) {
            ++outcome->calls;
            outcome->error = error;
            outcome->reply = std::move(reply);
        });
        return outcome;
    }

    Outcome call(UpstreamServer& server, std::string wire, ReplyShape shape) {
        auto outcome = start(server, std::move(wire), shape);
        EXPECT_TRUE(run_until([&] { return outcome->calls > 0; })) << "no reply to " << wire;
        return *outcome;
    }

    // Retries `wire` until it succeeds (the server may be in a connect backoff).
    Outcome call_eventually(UpstreamServer& server, const std::string& wire, ReplyShape shape) {
        auto deadline = Clock::now() + 15s;
        for (;;) {
            auto outcome = call(server, wire, shape);
            if (!outcome.error || Clock::now() > deadline)
                return outcome;
            run_for(50ms);
        }
    }

    asio::io_context io;
};

TEST_F(UpstreamTest, ClassicCommandsRoundTrip) {
    MemcachedProcess memcached;
    auto server = connect(memcached.address());
    EXPECT_EQ(server->name(), memcached.address());

    auto stored = call(*server, "set k1 5 0 3\r\nabc\r\n", ReplyShape::line);
    ASSERT_FALSE(stored.error) << stored.error.message();
    EXPECT_EQ(stored.reply.line, "STORED");

    auto got = call(*server, "get k1 missing\r\n", ReplyShape::values);
    ASSERT_FALSE(got.error);
    EXPECT_EQ(got.reply.line, "END");
    ASSERT_EQ(got.reply.values.size(), 1u);
    EXPECT_EQ(got.reply.values[0].key, "k1");
    EXPECT_EQ(got.reply.values[0].flags, 5u);
    EXPECT_EQ(got.reply.values[0].data, "abc");
    EXPECT_FALSE(got.reply.values[0].cas);

    auto with_cas = call(*server, "gets k1\r\n", ReplyShape::values);
    ASSERT_EQ(with_cas.reply.values.size(), 1u);
    ASSERT_TRUE(with_cas.reply.values[0].cas);
    auto cas = *with_cas.reply.values[0].cas;
    EXPECT_EQ(call(*server, "cas k1 0 0 3 " + std::to_string(cas + 1) + "\r\nxyz\r\n", ReplyShape::line).reply.line,
              "EXISTS");
    EXPECT_EQ(call(*server, "cas k1 0 0 3 " + std::to_string(cas) + "\r\nxyz\r\n", ReplyShape::line).reply.line,
              "STORED");

    EXPECT_EQ(call(*server, "set n 0 0 2\r\n10\r\n", ReplyShape::line).reply.line, "STORED");
    EXPECT_EQ(call(*server, "incr n 5\r\n", ReplyShape::line).reply.line, "15");
    EXPECT_EQ(call(*server, "touch k1 100\r\n", ReplyShape::line).reply.line, "TOUCHED");
    EXPECT_EQ(call(*server, "delete k1\r\n", ReplyShape::line).reply.line, "DELETED");
    auto gone = call(*server, "get k1\r\n", ReplyShape::values);
    EXPECT_EQ(gone.reply.line, "END");
    EXPECT_TRUE(gone.reply.values.empty());

    auto stats = call(*server, "stats\r\n", ReplyShape::stats);
    ASSERT_FALSE(stats.error);
    EXPECT_EQ(stats.reply.line, "END");
    EXPECT_NE(std::find(stats.reply.stats_lines.begin(), stats.reply.stats_lines.end(),
                        "STAT pid " + std::to_string(memcached.pid())),
              stats.reply.stats_lines.end());

    auto version = call(*server, "version\r\n", ReplyShape::line);
    EXPECT_EQ(version.reply.line.rfind("VERSION ", 0), 0u) << version.reply.line;

    // An error line is a reply like any other: the connection stays in step.
    EXPECT_EQ(call(*server, "bogus\r\n", ReplyShape::line).reply.line, "ERROR");
    EXPECT_EQ(call(*server, "get n\r\n", ReplyShape::values).reply.values.at(0).data, "15");

    EXPECT_EQ(server->counters().errors, 0u);
    EXPECT_EQ(server->counters().requests, 14u);
    EXPECT_TRUE(server->up());
}

TEST_F(UpstreamTest, MetaCommandsFrameDataAndFlags) {
    MemcachedProcess memcached;
    auto server = connect(memcached.address());

    // A value that looks like protocol: only the VA length may frame it.
    const std::string value = "line1\r\nEND\r\nVA 3 f1\r\nHD\r\n";
    auto stored =
        call(*server, "ms lock.s1 " + std::to_string(value.size()) + " T60 F7\r\n" + value + "\r\n", ReplyShape::meta);
    ASSERT_FALSE(stored.error) << stored.error.message();
    EXPECT_EQ(stored.reply.meta_code(), "HD");

    auto got = call(*server, "mg lock.s1 v c f t\r\n", ReplyShape::meta);
    ASSERT_FALSE(got.error);
    EXPECT_EQ(got.reply.meta_code(), "VA");
    EXPECT_EQ(got.reply.data, value);
    EXPECT_EQ(got.reply.flag('f'), "7");
    auto ttl = std::stoi(std::string(got.reply.flag('t').value_or("-1")));
    EXPECT_GT(ttl, 0);
    EXPECT_LE(ttl, 60);
    auto cas = std::string(got.reply.flag('c').value_or(""));
    ASSERT_FALSE(cas.empty());

    // Owner-checked operations: add refuses an existing key, delete needs the CAS.
    EXPECT_EQ(call(*server, "ms lock.s1 1 ME\r\nx\r\n", ReplyShape::meta).reply.meta_code(), "NS");
    EXPECT_EQ(call(*server, "md lock.s1 C" + std::to_string(std::stoull(cas) + 1) + "\r\n", ReplyShape::meta)
                  .reply.meta_code(),
              "EX");
    EXPECT_EQ(call(*server, "md lock.s1 C" + cas + "\r\n", ReplyShape::meta).reply.meta_code(), "HD");
    EXPECT_EQ(call(*server, "mg lock.s1 v\r\n", ReplyShape::meta).reply.meta_code(), "EN");
    EXPECT_EQ(call(*server, "md lock.s1\r\n", ReplyShape::meta).reply.meta_code(), "NF");
    EXPECT_EQ(call(*server, "mn\r\n", ReplyShape::meta).reply.meta_code(), "MN");

    auto empty = call(*server, "ms empty 0\r\n\r\n", ReplyShape::meta);
    EXPECT_EQ(empty.reply.meta_code(), "HD");
    auto empty_value = call(*server, "mg empty v\r\n", ReplyShape::meta);
    EXPECT_EQ(empty_value.reply.line, "VA 0");
    EXPECT_EQ(empty_value.reply.data, "");
    EXPECT_EQ(server->counters().errors, 0u);
}

TEST_F(UpstreamTest, PipelinedRepliesReachTheirRequests) {
    MemcachedProcess memcached;
    UpstreamOptions options;
    options.connections = 2;
    options.request_timeout = 20s;  // a slow machine must not turn this into a timeout test
    auto server = connect(memcached.address(), options);

    constexpr int count = 1000;
    auto value_of = [](int i) { return "value-" + std::to_string(i * 7919) + std::string(i % 50, 'x'); };

    // The opaque flag is echoed back: each reply names the request it answers.
    std::vector<std::shared_ptr<Outcome>> sets;
    for (int i = 0; i < count; ++i) {
        auto value = value_of(i);
        sets.push_back(start(*server,
                             "ms key" + std::to_string(i) + " " + std::to_string(value.size()) + " O" +
                                 std::to_string(i) + "\r\n" + value + "\r\n",
                             ReplyShape::meta));
    }
    ASSERT_TRUE(run_until([&] { return all_done(sets); }));
    for (int i = 0; i < count; ++i) {
        ASSERT_EQ(sets[i]->calls, 1) << i;
        ASSERT_FALSE(sets[i]->error) << i << ": " << sets[i]->error.message();
        EXPECT_EQ(sets[i]->reply.line, "HD O" + std::to_string(i));
    }

    std::vector<std::shared_ptr<Outcome>> gets;
    for (int i = 0; i < count; ++i) {
        if (i % 2 == 0)
            gets.push_back(start(*server, "mg key" + std::to_string(i) + " v k\r\n", ReplyShape::meta));
        else
            gets.push_back(start(*server, "get key" + std::to_string(i) + "\r\n", ReplyShape::values));
    }
    ASSERT_TRUE(run_until([&] { return all_done(gets); }));
    for (int i = 0; i < count; ++i) {
        ASSERT_EQ(gets[i]->calls, 1) << i;
        ASSERT_FALSE(gets[i]->error) << i;
        if (i % 2 == 0) {
            EXPECT_EQ(gets[i]->reply.flag('k'), "key" + std::to_string(i));
            EXPECT_EQ(gets[i]->reply.data, value_of(i));
        } else {
            ASSERT_EQ(gets[i]->reply.values.size(), 1u) << i;
            EXPECT_EQ(gets[i]->reply.values[0].key, "key" + std::to_string(i));
            EXPECT_EQ(gets[i]->reply.values[0].data, value_of(i));
        }
    }
    EXPECT_EQ(server->counters().requests, 2u * count);
    EXPECT_EQ(server->counters().errors, 0u);
    EXPECT_EQ(server->counters().connects, 2u);
}

TEST_F(UpstreamTest, NoreplyCompletesOnceWritten) {
    MemcachedProcess memcached;
    UpstreamOptions options;
    options.connections = 1;  // one connection orders the get after the writes
    auto server = connect(memcached.address(), options);

    auto written = call(*server, "set quiet 0 0 2 noreply\r\nok\r\n", ReplyShape::none);
    EXPECT_FALSE(written.error);
    EXPECT_EQ(written.reply.line, "");
    auto quiet_meta = call(*server, "ms quiet2 2 q\r\nhi\r\n", ReplyShape::none);
    EXPECT_FALSE(quiet_meta.error);

    // Nothing came back for either: the next reply belongs to the next request.
    auto got = call(*server, "get quiet quiet2\r\n", ReplyShape::values);
    ASSERT_FALSE(got.error);
    ASSERT_EQ(got.reply.values.size(), 2u);
    EXPECT_EQ(got.reply.values[0].data, "ok");
    EXPECT_EQ(got.reply.values[1].data, "hi");
}

TEST_F(UpstreamTest, DownServerFailsFastThenRecovers) {
    auto port = MemcachedProcess::unused_port();
    auto server = connect("127.0.0.1:" + std::to_string(port));

    bool up_after_failure = true;
    auto first = std::make_shared<Outcome>();
    server->call("version\r\n", ReplyShape::line, [&, first](std::error_code error, Reply) {
        ++first->calls;
        first->error = error;
        up_after_failure = server->up();
    });
    ASSERT_TRUE(run_until([&] { return first->calls > 0; }));
    EXPECT_EQ(first->error, UpstreamError::connect_failed);
    EXPECT_FALSE(up_after_failure);
    EXPECT_EQ(server->counters().connect_failures, 1u);

    // While the backoff lasts, calls fail at once with server_down, and never inline.
    bool saw_server_down = false;
    for (auto deadline = Clock::now() + 10s; !saw_server_down && Clock::now() < deadline;) {
        auto fast = start(*server, "version\r\n", ReplyShape::line);
        EXPECT_EQ(fast->calls, 0) << "handler ran inline from call()";
        ASSERT_TRUE(run_until([&] { return fast->calls > 0; }));
        ASSERT_NE(fast->error, std::error_code{}) << "nothing listens on the port";
        saw_server_down = fast->error == UpstreamError::server_down;
    }
    EXPECT_TRUE(saw_server_down);
    EXPECT_GE(server->counters().errors, 2u);

    MemcachedProcess memcached(port);
    auto recovered = call_eventually(*server, "version\r\n", ReplyShape::line);
    ASSERT_FALSE(recovered.error) << recovered.error.message();
    EXPECT_EQ(recovered.reply.line.rfind("VERSION ", 0), 0u);
    EXPECT_TRUE(server->up());
    EXPECT_EQ(server->counters().connects, 1u);
}

TEST_F(UpstreamTest, HungServerTimesOutThenWorksAfterResume) {
    MemcachedProcess memcached;
    UpstreamOptions options;
    options.connections = 1;
    options.request_timeout = 300ms;
    auto server = connect(memcached.address(), options);
    ASSERT_FALSE(call(*server, "version\r\n", ReplyShape::line).error);

    memcached.pause();
    auto first = start(*server, "get a\r\n", ReplyShape::values);
    auto second = start(*server, "get b\r\n", ReplyShape::values);
    ASSERT_TRUE(run_until([&] { return first->calls > 0 && second->calls > 0; }));
    EXPECT_EQ(first->error, UpstreamError::timeout);
    EXPECT_TRUE(second->error == UpstreamError::timeout || second->error == UpstreamError::connection_lost)
        << second->error.message();
    EXPECT_GE(server->counters().errors, 2u);
    EXPECT_TRUE(server->up()) << "a timeout is not a connect failure";

    memcached.resume();
    auto after = call_eventually(*server, "version\r\n", ReplyShape::line);
    EXPECT_FALSE(after.error) << after.error.message();
    EXPECT_EQ(first->calls, 1);
    EXPECT_EQ(second->calls, 1);
}

TEST_F(UpstreamTest, KilledServerFailsPendingAndRestartedServerIsUsedAgain) {
    MemcachedProcess memcached;
    UpstreamOptions options;
    options.connections = 1;
    options.request_timeout = 10s;  // the kill, not the deadline, must end these requests
    auto server = connect(memcached.address(), options);
    ASSERT_EQ(call(*server, "set survivor 0 0 1\r\nx\r\n", ReplyShape::line).reply.line, "STORED");

    memcached.pause();  // requests are written but never answered
    std::vector<std::shared_ptr<Outcome>> pending;
    for (int i = 0; i < 10; ++i)
        pending.push_back(start(*server, "get survivor\r\n", ReplyShape::values));
    run_for(100ms);
    memcached.kill();
    ASSERT_TRUE(run_until([&] { return all_done(pending); }));
    for (auto& outcome : pending)
        EXPECT_EQ(outcome->error, UpstreamError::connection_lost) << outcome->error.message();

    memcached.restart();
    auto after = call_eventually(*server, "get survivor\r\n", ReplyShape::values);
    ASSERT_FALSE(after.error) << after.error.message();
    EXPECT_TRUE(after.reply.values.empty()) << "the restarted node is empty";
    EXPECT_EQ(server->counters().connects, 2u);
    for (auto& outcome : pending)
        EXPECT_EQ(outcome->calls, 1);
}

TEST_F(UpstreamTest, CloseCompletesPendingRequestsExactlyOnce) {
    MemcachedProcess memcached;
    auto server = connect(memcached.address());
    ASSERT_FALSE(call(*server, "version\r\n", ReplyShape::line).error);

    memcached.pause();
    std::vector<std::shared_ptr<Outcome>> pending;
    for (int i = 0; i < 6; ++i)
        pending.push_back(start(*server, "get k" + std::to_string(i) + "\r\n", ReplyShape::values));
    run_for(50ms);
    server->close();
    server->close();
    for (auto& outcome : pending)
        EXPECT_EQ(outcome->calls, 0) << "handler ran inline from close()";
    auto late = start(*server, "version\r\n", ReplyShape::line);

    run_for(300ms);
    for (auto& outcome : pending) {
        EXPECT_EQ(outcome->calls, 1);
        EXPECT_EQ(outcome->error, UpstreamError::connection_lost);
    }
    EXPECT_EQ(late->calls, 1);
    EXPECT_EQ(late->error, UpstreamError::connection_lost);
}

TEST_F(UpstreamTest, DestroyingTheServerCompletesPendingRequests) {
    MemcachedProcess memcached;
    auto server = connect(memcached.address());
    memcached.pause();
    std::vector<std::shared_ptr<Outcome>> pending;
    for (int i = 0; i < 4; ++i)  // the first connects, the rest queue behind it
        pending.push_back(start(*server, "get k\r\n", ReplyShape::values));
    run_for(50ms);
    server.reset();

    run_for(300ms);
    for (auto& outcome : pending) {
        EXPECT_EQ(outcome->calls, 1);
        EXPECT_EQ(outcome->error, UpstreamError::connection_lost);
    }
}

TEST_F(UpstreamTest, OversizedReplyIsAProtocolError) {
    MemcachedProcess memcached;
    UpstreamOptions options;
    options.connections = 1;
    options.max_reply_bytes = 1024;
    auto server = connect(memcached.address(), options);
    const std::string big(4000, 'b');
    ASSERT_EQ(call(*server, "set big 0 0 4000\r\n" + big + "\r\n", ReplyShape::line).reply.line, "STORED");
    ASSERT_EQ(call(*server, "set small 0 0 1\r\ns\r\n", ReplyShape::line).reply.line, "STORED");

    EXPECT_EQ(call(*server, "get big\r\n", ReplyShape::values).error, UpstreamError::protocol);
    EXPECT_EQ(call(*server, "mg big v\r\n", ReplyShape::meta).error, UpstreamError::protocol);
    auto small = call(*server, "get small\r\n", ReplyShape::values);
    ASSERT_FALSE(small.error) << small.error.message();
    EXPECT_EQ(small.reply.values.at(0).data, "s");
    EXPECT_EQ(server->counters().connects, 3u) << "each protocol error closes the connection";
}

TEST_F(UpstreamTest, ResolvesHostNames) {
    MemcachedProcess memcached;
    auto server = connect("localhost:" + std::to_string(memcached.port()));
    auto version = call(*server, "version\r\n", ReplyShape::line);
    ASSERT_FALSE(version.error) << version.error.message();
    EXPECT_EQ(version.reply.line.rfind("VERSION ", 0), 0u);
}

}  // namespace
}  // namespace stickylb::agent
