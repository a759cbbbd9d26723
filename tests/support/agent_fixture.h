// SPDX-License-Identifier: Apache-2.0
#pragma once
// stickylb-agent tests against two real memcached processes on loopback: an
// agent on its own io_context thread, and a fixture with the two servers.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "session/membership_view.h"
#include "support/memcache_text_client.h"
#include "support/memcached_process.h"

namespace stickylb::agent {

using namespace std::chrono_literals;
using testing::MemcachedProcess;
using testing::MemcacheTextClient;

inline const std::string kPrefix = "memc.sess.key.";

inline std::string lock_key(const std::string& sid) { return kPrefix + "lock." + sid; }
inline std::string data_key(const std::string& sid) { return kPrefix + sid; }

inline std::int64_t wall_clock_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// One agent on its own io_context thread.
class RunningAgent {
public:
    explicit RunningAgent(AgentConfig config) {
        agent_ = std::make_unique<Agent>(io_, std::move(config));
        agent_->start();
        thread_ = std::thread([this] { io_.run(); });
    }
    ~RunningAgent() {
        boost::asio::post(io_, [this] { agent_->stop(); });
        auto finished = std::async(std::launch::async, [this] { thread_.join(); });
        if (finished.wait_for(5s) != std::future_status::ready) {
            ADD_FAILURE() << "agent did not stop within 5 s of stop()";
            io_.stop();
        }
        finished.wait();
    }
    std::uint16_t port() const { return agent_->port(); }
    std::unique_ptr<MemcacheTextClient> client() { return std::make_unique<MemcacheTextClient>(port()); }

    // A counter from the agent's own `stats` reply.
    std::uint64_t stat(const std::string& name) {
        MemcacheTextClient client(port());
        client.send("stats\r\n");
        for (;;) {
            std::string line = client.read_line();
            if (line == "END\r\n")
                break;
            std::string prefix = "STAT " + name + " ";
            if (line.starts_with(prefix))
                return std::stoull(line.substr(prefix.size()));
        }
        ADD_FAILURE() << "no STAT " << name;
        return 0;
    }
    std::string metrics() {
        std::promise<std::string> text;
        boost::asio::post(io_, [&] { text.set_value(agent_->metrics_text()); });
        return text.get_future().get();
    }

private:
    boost::asio::io_context io_{1};
    std::unique_ptr<Agent> agent_;
    std::thread thread_;
};

class AgentFixture : public ::testing::Test {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_MEMCACHED();
        servers_[0] = std::make_unique<MemcachedProcess>();
        servers_[1] = std::make_unique<MemcachedProcess>();
    }

    AgentConfig config(const std::string& backend) const {
        AgentConfig config;
        config.backend = backend;
        config.cluster = "web";
        config.listen = "127.0.0.1:0";
        config.metrics_listen = "off";
        config.upstreams = {servers_[0]->address(), servers_[1]->address()};
        config.lock_wait = 50ms;
        config.view_poll = 20ms;
        return config;
    }

    MemcachedProcess& server(int index) { return *servers_[index]; }
    std::unique_ptr<MemcacheTextClient> direct(int index) {
        return std::make_unique<MemcacheTextClient>(servers_[index]->port());
    }

    // The membership view, written to both servers as stickylbd does.
    void write_view(std::uint64_t epoch, const std::map<std::string, session::Member>& backends) {
        session::MembershipView view{"web", epoch, wall_clock_ms(), {backends.begin(), backends.end()}};
        for (int i = 0; i < 2; ++i) {
            EXPECT_EQ(direct(i)->store("set", session::members_key("web"), session::encode_view(view), 0, 30),
                      "STORED\r\n");
        }
    }

    // Waits (bounded) until `done` holds.
    template <typename Predicate>
    static bool eventually(Predicate done, std::chrono::milliseconds limit = 3s) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            if (done())
                return true;
            std::this_thread::sleep_for(10ms);
        }
        return done();
    }

    std::unique_ptr<MemcachedProcess> servers_[2];
};

}  // namespace stickylb::agent
