// SPDX-License-Identifier: Apache-2.0
// LB hosts comparing their config through real memcached processes on loopback:
// hosts with one config agree, a host with another seed is told it differs (and
// which part), the majority wins, a host whose memcached is gone is alone, a
// forged roster is refused and overwritten, a reload moves a host's standing, and
// what one host's checks see reaches the peers of its config between heartbeats, as do
// its flow exceptions (session/flow_exception_exchange.h).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "control/config_fingerprint.h"
#include "session/fleet_presence.h"
#include "session/flow_exception_chunks.h"
#include "session/flow_exception_exchange.h"
#include "session/memcached_client.h"
#include "session/memcached_link.h"
#include "session/signed_value.h"
#include "support/memcached_process.h"

namespace stickylb {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::shared_ptr<MemcachedLink> link_to(const std::string& server) {
    MemcachedLinkOptions options;
    options.timeouts = {300ms, 300ms};
    options.backoff_initial = 50ms;
    options.backoff_max = 200ms;
    return std::make_shared<MemcachedLink>(server, options);
}

ConfigFingerprint fingerprint(std::uint32_t hash_seed) {
    DaemonConfig config = parse_config(R"(
interface: eth0
vips:
  - address: 10.0.0.10
    port: 80
    backends:
      - {name: a, address: 10.0.1.1}
      - {name: b, address: 10.0.1.2}
)",
                                       "test.yaml");
    config.hash_seed = hash_seed;
    return config_fingerprint(config);
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

class Fleet : public ::testing::Test {
protected:
    void SetUp() override { STICKYLB_REQUIRE_MEMCACHED(); }

    // One LB host of fleet "web" on the given servers, beating every 100 ms unless told.
    std::unique_ptr<FleetPresence> host(const std::string& name, std::uint32_t seed,
                                        const std::vector<std::string>& servers,
                                        std::chrono::milliseconds heartbeat = 100ms,
                                        std::chrono::milliseconds poll = 100ms) {
        std::vector<std::shared_ptr<MemcachedLink>> links;
        for (const std::string& server : servers)
            links.push_back(link_to(server));
        auto presence = std::make_unique<FleetPresence>(
            io, std::move(links), FleetSettings{"web", name, heartbeat, poll}, fingerprint(seed), &key,
            [this] { ++changes; }, [this] { ++peer_changes; });
        presence->start();
        return presence;
    }

    boost::asio::io_context io;
    session::SigningKey key{"a fleet secret of sixteen bytes or more"};
    int changes = 0, peer_changes = 0;
};

TEST_F(Fleet, HostsWithOneConfigAgree) {
    testing::MemcachedProcess first, second;
    const std::vector<std::string> servers = {first.address(), second.address()};
    auto lb1 = host("lb1", 1, servers);
    auto lb2 = host("lb2", 1, servers);
    ASSERT_TRUE(run_until(io, [&] {
        return lb1->verdict().agreeing.size() == 2 && lb2->verdict().agreeing.size() == 2;
    })) << lb1->show().dump();
    EXPECT_EQ(lb1->standing(), FleetStanding::agrees);
    EXPECT_EQ(lb2->standing(), FleetStanding::agrees);
    EXPECT_EQ(lb1->verdict().fleet_digest, fingerprint(1).digest);
    EXPECT_GT(changes, 0) << "the announcer is told when the standing is known";
    const nlohmann::json shown = lb1->show();
    EXPECT_EQ(shown["hosts"].size(), 2u);
    EXPECT_EQ(shown["servers"].size(), 2u);
    for (const auto& server : shown["servers"])
        EXPECT_EQ(server["error"], "") << server.dump();
    EXPECT_GT(lb1->counters().heartbeats, 0u);
}

TEST_F(Fleet, TheMinorityWithAnotherSeedDiffersAndIsToldWhy) {
    testing::MemcachedProcess server;
    auto lb1 = host("lb1", 1, {server.address()});
    auto lb2 = host("lb2", 1, {server.address()});
    auto lb3 = host("lb3", 2, {server.address()});
    ASSERT_TRUE(run_until(io, [&] {
        return lb3->standing() == FleetStanding::differs && lb1->verdict().differing.size() == 1 &&
               lb1->verdict().agreeing.size() == 2;
    })) << lb3->show().dump();
    EXPECT_EQ(lb1->standing(), FleetStanding::agrees);
    EXPECT_EQ(lb2->standing(), FleetStanding::agrees);
    EXPECT_EQ(lb3->verdict().parts, std::vector<std::string>{"hash_seed"});
    EXPECT_NE(lb3->verdict().reason.find("hash_seed"), std::string::npos) << lb3->verdict().reason;
    EXPECT_EQ(lb3->verdict().fleet_digest, fingerprint(1).digest);
    EXPECT_EQ(lb1->verdict().differing, std::vector<std::string>{"lb3"});

    // The odd host takes the fleet's config on reload: it agrees at its next heartbeat.
    lb3->set_fingerprint(fingerprint(1));
    ASSERT_TRUE(run_until(io, [&] {
        return lb3->standing() == FleetStanding::agrees && lb1->verdict().agreeing.size() == 3;
    })) << lb3->show().dump();
    EXPECT_TRUE(lb1->verdict().differing.empty());
}

// memcached counts expiry in whole seconds: the roster's key must outlive the gaps
// between writes, or a host with another config finds it empty, alone, and agrees.
TEST_F(Fleet, TheMinorityNeverAgreesWhileTheMajorityBeats) {
    testing::MemcachedProcess server;
    auto lb1 = host("lb1", 1, {server.address()});
    auto lb2 = host("lb2", 1, {server.address()});
    auto lb3 = host("lb3", 2, {server.address()}, 100ms, 20ms);
    ASSERT_TRUE(run_until(io, [&] { return lb3->standing() == FleetStanding::differs; })) << lb3->show().dump();
    int agreed = 0, looks = 0;  // after every handler: a standing held for a moment counts
    for (const auto until = Clock::now() + 3s; Clock::now() < until; ++looks) {
        io.restart();
        io.run_one_for(10ms);
        agreed += lb3->standing() == FleetStanding::agrees;
    }
    EXPECT_EQ(agreed, 0) << "of " << looks << " looks over 3 s";
}

// memcached gone: the roster cannot be read, so the host cannot know its peers; it
// is alone (and announces on its own health), then agrees again once it is back.
TEST_F(Fleet, AHostThatCannotReachMemcachedIsAloneUntilItCanAgain) {
    testing::MemcachedProcess server;
    auto lb1 = host("lb1", 1, {server.address()});
    auto lb2 = host("lb2", 1, {server.address()});
    ASSERT_TRUE(run_until(io, [&] { return lb1->verdict().agreeing.size() == 2; }));
    server.kill();
    ASSERT_TRUE(run_until(io, [&] { return lb1->standing() == FleetStanding::alone; })) << lb1->show().dump();
    EXPECT_GT(lb1->counters().write_failures, 0u);
    EXPECT_NE(lb1->show()["servers"][0]["error"], "");
    server.restart();
    ASSERT_TRUE(run_until(io, [&] {
        return lb1->standing() == FleetStanding::agrees && lb1->verdict().agreeing.size() == 2;
    })) << lb1->show().dump();
}

// A roster written without the fleet's key is not believed: it is counted and replaced.
TEST_F(Fleet, AForgedRosterIsRefusedAndOverwritten) {
    testing::MemcachedProcess server;
    MemcachedClient(server.address(), {}).set(fleet::roster_key("web"), "{\"members\":[]}", 60s);
    auto lb1 = host("lb1", 1, {server.address()});
    ASSERT_TRUE(run_until(io, [&] { return lb1->counters().heartbeats > 0; }));
    EXPECT_EQ(lb1->counters().rejected_rosters, 1u);
    EXPECT_EQ(lb1->standing(), FleetStanding::agrees);
    const auto stored = MemcachedClient(server.address(), {}).get(fleet::roster_key("web"));
    ASSERT_TRUE(stored);
    const session::OpenedValue opened = session::open_value(&key, fleet::roster_key("web"), *stored);
    ASSERT_FALSE(opened.rejected);
    EXPECT_EQ(fleet::decode(opened.payload).members.at(0).host, "lb1");
}

// Heartbeats 10 s apart: what lb2's checks see reaches lb1 by lb2's write at once and
// lb1's reads between heartbeats. lb3 runs another config, so it counts nobody's checks.
TEST_F(Fleet, WhatAHostsChecksSeeReachesThePeersOfItsConfigBetweenHeartbeats) {
    testing::MemcachedProcess server;
    auto lb1 = host("lb1", 1, {server.address()}, 10s, 20ms);
    auto lb2 = host("lb2", 1, {server.address()}, 10s, 20ms);
    auto lb3 = host("lb3", 2, {server.address()}, 10s, 20ms);
    ASSERT_TRUE(run_until(
        io, [&] { return lb1->sharing_peers().size() == 1 && lb2->sharing_peers().size() == 1; }, 5s))
        << lb1->show().dump();
    EXPECT_EQ(lb1->sharing_peers().at(0).host, "lb2");
    EXPECT_EQ(lb1->peer_votes("6/10.0.0.10/80/a"), (HealthVotes{1, 0})) << "a peer that lists nothing finds all up";
    const int before = peer_changes;
    lb2->set_own_health({"6/10.0.0.10/80/a"}, {"6/10.0.0.10/80/b"});
    ASSERT_TRUE(run_until(
        io, [&] { return lb1->peer_votes("6/10.0.0.10/80/a").down == 1; }, 5s))
        << lb1->show().dump();
    EXPECT_EQ(lb1->peer_votes("6/10.0.0.10/80/b"), (HealthVotes{0, 0})) << "unchecked: no vote";
    EXPECT_GT(peer_changes, before);
    EXPECT_GT(lb1->counters().reads, 0u);
    EXPECT_TRUE(lb3->sharing_peers().empty());
    EXPECT_EQ(lb3->peer_votes("6/10.0.0.10/80/a"), (HealthVotes{0, 0}));
    const nlohmann::json shown_hosts = lb1->show()["hosts"];
    for (const auto& shown : shown_hosts) {
        if (shown["host"] == "lb2") {
            EXPECT_EQ(shown["backends_down"], nlohmann::json::array({"6/10.0.0.10/80/a"}));
        }
    }
}

// A host that stops beating leaves the verdict of those that stay once its entry is stale.
TEST_F(Fleet, AStoppedHostDropsOutOfTheFleet) {
    testing::MemcachedProcess server;
    auto lb1 = host("lb1", 1, {server.address()});
    auto lb2 = host("lb2", 2, {server.address()});
    auto lb3 = host("lb3", 2, {server.address()});
    ASSERT_TRUE(run_until(io, [&] { return lb1->standing() == FleetStanding::differs; }));
    lb2.reset();
    lb3.reset();
    ASSERT_TRUE(run_until(io, [&] {
        return lb1->standing() == FleetStanding::agrees && lb1->verdict().agreeing.size() == 1;
    })) << lb1->show().dump();
}

std::vector<FlowException> exceptions_of(const std::string& backend, int count) {
    std::vector<FlowException> list;
    for (int n = 0; n < count; ++n)
        list.push_back({backend,
                        IpAddress::parse("10.9." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1)),
                        static_cast<std::uint16_t>(40000 + n % 1000)});
    std::sort(list.begin(), list.end());
    return list;
}

// One host's flow exceptions reach the peers of its config whole; a newer version
// replaces the older, whose chunks go; the list of a host that left is kept for a
// while (the router moves its flows to the others), then dropped.
TEST_F(Fleet, FlowExceptionsReachThePeersAndOutliveAHostThatLeftForAWhile) {
    testing::MemcachedProcess first, second;
    const std::vector<std::string> servers = {first.address(), second.address()};
    auto lb1 = host("lb1", 1, servers, 100ms, 20ms);
    auto lb2 = host("lb2", 1, servers, 100ms, 20ms);
    const auto links = [&] {
        std::vector<std::shared_ptr<MemcachedLink>> list;
        for (const std::string& server : servers)
            list.push_back(link_to(server));
        return list;
    };
    FlowExceptionExchange out(
        io, links(), {"web", "lb1"}, &key,
        [&](std::uint64_t version, std::uint32_t chunks) { lb1->set_flow_exceptions(version, chunks); }, {});
    int loads = 0;
    FlowExceptionExchange in(io, links(), {"web", "lb2", 3600s, 300ms}, &key, {}, [&] { ++loads; });
    lb2->on_peer_exceptions_change([&] { in.track(lb2->sharing_peers()); });

    const auto few = exceptions_of("6/10.0.0.10/80/a", 3);
    out.publish(1000, fleet::encode_exception_chunks("lb1", 1000, few), few.size());
    ASSERT_TRUE(run_until(io, [&] { return in.peer_exceptions() == few; })) << in.show().dump();
    EXPECT_EQ(lb1->show()["hosts"].size(), 2u);

    const auto many = exceptions_of("6/10.0.0.10/80/b", 2000);
    const auto chunks = fleet::encode_exception_chunks("lb1", 2000, many, 4096);
    ASSERT_GT(chunks.size(), 5u);
    out.publish(2000, chunks, many.size());
    ASSERT_TRUE(run_until(io, [&] { return in.peer_exceptions() == many; })) << in.show().dump();
    EXPECT_EQ(in.counters().fetched_versions, 2u);
    EXPECT_EQ(out.counters().published_exceptions, many.size());
    for (const std::string& server : servers) {
        MemcachedClient reader(server, {});
        EXPECT_TRUE(run_until(io, [&] { return !reader.get(fleet::exception_chunk_key("web", "lb1", 1000, 0)); }))
            << "the older version's chunk is still on " << server;
        EXPECT_TRUE(reader.get(fleet::exception_chunk_key("web", "lb1", 2000, chunks.size() - 1)));
    }

    out.publish(3000, {}, 0);  // no exceptions left: nothing to read
    ASSERT_TRUE(run_until(io, [&] { return in.peer_exceptions().empty(); })) << in.show().dump();
    out.publish(4000, fleet::encode_exception_chunks("lb1", 4000, few), few.size());
    ASSERT_TRUE(run_until(io, [&] { return in.peer_exceptions() == few; })) << in.show().dump();

    lb1.reset();
    ASSERT_TRUE(run_until(io, [&] { return lb2->sharing_peers().empty(); })) << lb2->show().dump();
    in.tick();
    EXPECT_EQ(in.peer_exceptions(), few) << "the list of a host just gone";
    EXPECT_FALSE(in.show()["peers"].at(0)["departed_age_ms"].is_null());
    const int before = loads;
    ASSERT_TRUE(run_until(io, [&] {
        in.tick();
        return in.peer_exceptions().empty();
    })) << in.show().dump();
    EXPECT_GT(loads, before) << "dropping it is a change the peer-flow table follows";
}

}  // namespace
}  // namespace stickylb
