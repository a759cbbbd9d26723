// SPDX-License-Identifier: Apache-2.0
// stickylb-agent against two real memcached processes on loopback: the
// protocol it serves, lock ownership, release on disconnect, breaking of dead
// owners' locks, fencing, replication and repair, and upstream failures.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "agent/agent.h"
#include "agent/lock_tag.h"
#include "agent/placement.h"
#include "agent/session_record.h"
#include "session/membership_view.h"
#include "support/agent_fixture.h"
#include "support/promtool.h"
#include "support/reply_delaying_proxy.h"

namespace stickylb::agent {
namespace {

using testing::ReplyDelayingProxy;

class AgentTest : public AgentFixture {};

// ------------------------------------------------------------ protocol subset

TEST_F(AgentTest, PassesOtherKeysThroughToTheServerTheyHashTo) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    EXPECT_EQ(client->store("set", "user:42", "hello", 7), "STORED\r\n");
    EXPECT_EQ(client->get_raw("user:42"), "VALUE user:42 7 5\r\nhello\r\nEND\r\n");
    EXPECT_EQ(client->store("add", "user:42", "x"), "NOT_STORED\r\n");
    EXPECT_EQ(client->store("replace", "user:42", "hi"), "STORED\r\n");
    EXPECT_EQ(client->store("append", "user:42", "!!"), "STORED\r\n");
    EXPECT_EQ(client->store("prepend", "user:42", "<"), "STORED\r\n");
    EXPECT_EQ(client->get("user:42"), "<hi!!");
    EXPECT_EQ(client->store("set", "n", "10"), "STORED\r\n");
    EXPECT_EQ(client->command("incr n 5"), "15\r\n");
    EXPECT_EQ(client->command("decr n 20"), "0\r\n");
    EXPECT_EQ(client->command("touch n 100"), "TOUCHED\r\n");
    EXPECT_EQ(client->command("delete n"), "DELETED\r\n");
    EXPECT_EQ(client->command("delete n"), "NOT_FOUND\r\n");
    EXPECT_EQ(client->command("incr n 1"), "NOT_FOUND\r\n");

    // gets/cas through the agent: the CAS the client sees is the server's.
    std::string gets = client->get_raw("user:42", "gets");
    std::string cas =
        gets.substr(gets.rfind(' ', gets.find("\r\n")) + 1, gets.find("\r\n") - gets.rfind(' ', gets.find("\r\n")) - 1);
    client->send("cas user:42 0 0 1 " + cas + "\r\nz\r\n");
    EXPECT_EQ(client->read_line(), "STORED\r\n");
    client->send("cas user:42 0 0 1 " + cas + "\r\ny\r\n");
    EXPECT_EQ(client->read_line(), "EXISTS\r\n");

    // Several keys in one get, one missing.
    EXPECT_EQ(client->store("set", "a", "1"), "STORED\r\n");
    EXPECT_EQ(client->store("set", "b", "22"), "STORED\r\n");
    EXPECT_EQ(client->get_raw("a missing b"), "VALUE a 0 1\r\n1\r\nVALUE b 0 2\r\n22\r\nEND\r\n");

    // The key lives on exactly the server rendezvous hashing names, unchanged.
    std::vector<std::string_view> names;
    std::vector<std::string> owned = {server(0).address(), server(1).address()};
    for (const auto& name : owned)
        names.push_back(name);
    int home = static_cast<int>(rank_servers(names, "user:42").front());
    EXPECT_EQ(direct(home)->get("user:42"), "z");
    EXPECT_EQ(direct(1 - home)->get("user:42"), std::nullopt);
}

TEST_F(AgentTest, AnswersVersionVerbosityStatsAndQuit) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    EXPECT_TRUE(client->command("version").starts_with("VERSION 1.6.0-stickylb-agent-"));
    EXPECT_EQ(client->command("verbosity 1"), "OK\r\n");
    client->send("verbosity 1 noreply\r\nversion\r\n");
    EXPECT_TRUE(client->read_line().starts_with("VERSION"));
    client->get_raw("x");
    EXPECT_GE(agent.stat("cmd_get"), 1u);
    EXPECT_GE(agent.stat("cmd_version"), 2u);
    client->send("quit\r\n");
    EXPECT_TRUE(client->closed_by_peer());
}

TEST_F(AgentTest, BadInputGetsAnErrorAndTheConnectionStaysUsable) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    EXPECT_EQ(client->command(std::string("get ") + std::string(251, 'k')).substr(0, 12), "CLIENT_ERROR");
    EXPECT_EQ(client->command("get bad\x01key").substr(0, 12), "CLIENT_ERROR");
    EXPECT_EQ(client->command("bogus"), "ERROR\r\n");
    client->send("set k 0 0 2097152\r\n" + std::string(2097152, 'x') + "\r\n");
    EXPECT_EQ(client->read_line(), "SERVER_ERROR object too large for cache\r\n");
    EXPECT_EQ(client->store("set", "k", "fine"), "STORED\r\n");
    EXPECT_EQ(client->get("k"), "fine");
    EXPECT_GE(agent.stat("protocol_errors"), 4u);
}

// ------------------------------------------------------------ lock ownership

TEST_F(AgentTest, ALockBelongsToTheConnectionThatTookIt) {
    RunningAgent agent(config("be1"));
    auto owner = agent.client();
    auto other = agent.client();
    EXPECT_EQ(owner->store("add", lock_key("s1"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(other->store("add", lock_key("s1"), "1", 0, 30), "NOT_STORED\r\n");
    // Fenced: a delete of a lock the connection does not own is refused.
    EXPECT_TRUE(other->command("delete " + lock_key("s1")).starts_with("SERVER_ERROR fenced"));
    EXPECT_EQ(agent.stat("fenced_unlocks_refused"), 1u);
    EXPECT_EQ(other->store("add", lock_key("s1"), "1", 0, 30), "NOT_STORED\r\n");
    EXPECT_EQ(owner->command("delete " + lock_key("s1")), "DELETED\r\n");
    EXPECT_EQ(other->store("add", lock_key("s1"), "1", 0, 30), "STORED\r\n");

    // Upstream the lock carries its owner's tag, not the client's "1".
    std::vector<std::string> names = {server(0).address(), server(1).address()};
    std::vector<std::string_view> views(names.begin(), names.end());
    int home = static_cast<int>(rank_servers(views, lock_key("s1")).front());
    auto stored = direct(home)->get(lock_key("s1"));
    ASSERT_TRUE(stored.has_value());
    auto tag = parse_lock_tag(*stored);
    ASSERT_TRUE(tag.has_value()) << *stored;
    EXPECT_EQ(tag->backend, "be1");
}

// Many workers of one backend queue on one session, as PHP workers do: at no
// moment do two of them hold its lock, and no increment is lost. (The agent
// spreads requests over two connections per server, so the reply to one
// worker's add can arrive after another worker already sees the new lock.)
TEST_F(AgentTest, ConcurrentWorkersNeverHoldALockTogetherAndLoseNoUpdate) {
    AgentConfig settings = config("be1");
    settings.lock_wait = 2s;
    RunningAgent agent(settings);
    constexpr int kWorkers = 16;
    constexpr int kRounds = 40;
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    std::atomic<int> gave_up{0};
    EXPECT_EQ(agent.client()->store("set", data_key("c1"), "0"), "STORED\r\n");
    auto worker = [&] {
        for (int round = 0; round < kRounds; ++round) {
            auto client = agent.client();  // a new connection per request, like a PHP worker
            int tries = 0;
            while (client->store("add", lock_key("c1"), "1", 0, 30) != "STORED\r\n") {
                if (++tries == 200) {
                    ++gave_up;
                    return;
                }
            }
            if (inside.fetch_add(1) != 0)
                ++overlaps;
            std::optional<std::string> value = client->get(data_key("c1"));
            int n = value ? std::stoi(*value) : -1000000;
            client->store("set", data_key("c1"), std::to_string(n + 1));
            inside.fetch_sub(1);
            client->command("delete " + lock_key("c1"));
        }
    };
    std::vector<std::thread> workers;
    for (int i = 0; i < kWorkers; ++i)
        workers.emplace_back(worker);
    for (std::thread& thread : workers)
        thread.join();
    EXPECT_EQ(gave_up.load(), 0);
    EXPECT_EQ(overlaps.load(), 0) << "two workers held the lock at the same time";
    EXPECT_EQ(agent.client()->get(data_key("c1")), std::to_string(kWorkers * kRounds));
    EXPECT_EQ(agent.stat("locks_broken_orphaned"), 0u);
}

// The reply that gives a worker its lock is late on one upstream connection
// while another worker, on the agent's other connection to the same server,
// already sees the new lock: it must wait for it, not break it as an orphan.
TEST_F(AgentTest, ALockWhoseReplyIsLateIsNotTakenForAnOrphan) {
    std::unique_ptr<ReplyDelayingProxy> proxies[2] = {std::make_unique<ReplyDelayingProxy>(server(0).port()),
                                                      std::make_unique<ReplyDelayingProxy>(server(1).port())};
    AgentConfig settings = config("be1");
    settings.upstreams = {proxies[0]->address(), proxies[1]->address()};
    settings.lock_wait = 1s;
    RunningAgent agent(settings);
    auto holder = agent.client();
    for (int i = 0; i < 8; ++i)
        holder->get("warm-up-" + std::to_string(i));  // both connections of each server open

    for (auto& proxy : proxies)
        proxy->arm("ms " + lock_key("o1"), 400ms);
    auto held = std::async(std::launch::async, [&] { return holder->store("add", lock_key("o1"), "1", 0, 30); });
    std::this_thread::sleep_for(50ms);
    constexpr int kContenders = 6;
    std::vector<std::unique_ptr<MemcacheTextClient>> contenders;
    std::vector<std::future<std::string>> attempts;
    for (int i = 0; i < kContenders; ++i)
        contenders.push_back(agent.client());
    for (auto& contender : contenders) {
        attempts.push_back(std::async(std::launch::async,
                                      [&contender] { return contender->store("add", lock_key("o1"), "1", 0, 30); }));
    }
    EXPECT_EQ(held.get(), "STORED\r\n");
    for (auto& attempt : attempts)
        EXPECT_EQ(attempt.get(), "NOT_STORED\r\n") << "two owners of one lock";
    EXPECT_EQ(agent.stat("locks_broken_orphaned"), 0u);
    EXPECT_EQ(holder->command("delete " + lock_key("o1")), "DELETED\r\n");
}

TEST_F(AgentTest, ClosingTheConnectionReleasesItsLocksAtOnce) {
    RunningAgent agent(config("be1"));
    auto worker = agent.client();
    EXPECT_EQ(worker->store("add", lock_key("s2"), "1", 0, 30), "STORED\r\n");
    worker->close();  // a PHP worker killed mid-request
    auto next = agent.client();
    EXPECT_TRUE(eventually([&] { return next->store("add", lock_key("s2"), "1", 0, 30) == "STORED\r\n"; }));
    EXPECT_EQ(agent.stat("locks_released_on_disconnect"), 1u);
}

TEST_F(AgentTest, AWaiterIsWokenWhenALocalHolderReleases) {
    AgentConfig settings = config("be1");
    settings.lock_wait = 5s;
    RunningAgent agent(settings);
    auto holder = agent.client();
    auto waiter = agent.client();
    EXPECT_EQ(holder->store("add", lock_key("s3"), "1", 0, 30), "STORED\r\n");
    auto waited = std::async(std::launch::async, [&] { return waiter->store("add", lock_key("s3"), "1", 0, 30); });
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(holder->command("delete " + lock_key("s3")), "DELETED\r\n");
    // Well before lock_wait (5 s) runs out: the release woke it.
    ASSERT_EQ(waited.wait_for(3s), std::future_status::ready);
    EXPECT_EQ(waited.get(), "STORED\r\n");
}

TEST_F(AgentTest, AHeldLockIsRenewedPastItsLease) {
    AgentConfig settings = config("be1");
    settings.lock_lease = 2s;
    RunningAgent agent(settings);
    auto holder = agent.client();
    EXPECT_EQ(holder->store("add", lock_key("s4"), "1", 0, 1), "STORED\r\n");
    std::this_thread::sleep_for(5s);  // 2.5 leases
    auto other = agent.client();
    EXPECT_EQ(other->store("add", lock_key("s4"), "1", 0, 1), "NOT_STORED\r\n");
    EXPECT_GE(agent.stat("lock_renewals"), 2u);
    EXPECT_EQ(holder->command("delete " + lock_key("s4")), "DELETED\r\n");
}

// ------------------------------------------------------------ breaking dead owners' locks

TEST_F(AgentTest, ALockOfABackendTheViewSaysIsDownIsBrokenAtOnce) {
    RunningAgent be1(config("be1"));
    RunningAgent be2(config("be2"));
    write_view(1, {{"be1", {session::MemberState::up, 1}}, {"be2", {session::MemberState::up, 1}}});
    ASSERT_TRUE(eventually([&] { return be2.stat("incarnation") == 1 && be1.stat("view_epoch") == 1; }));
    auto on_be2 = be2.client();
    EXPECT_EQ(on_be2->store("add", lock_key("s5"), "1", 0, 30), "STORED\r\n");
    auto on_be1 = be1.client();
    EXPECT_EQ(on_be1->store("add", lock_key("s5"), "1", 0, 30), "NOT_STORED\r\n");  // a live owner

    write_view(2, {{"be1", {session::MemberState::up, 1}}, {"be2", {session::MemberState::down, 1}}});
    ASSERT_TRUE(eventually([&] { return be1.stat("view_epoch") == 2; }));
    EXPECT_EQ(on_be1->store("add", lock_key("s5"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(be1.stat("locks_broken_owner_down"), 1u);
}

TEST_F(AgentTest, ALockOfAnOlderIncarnationIsBroken) {
    RunningAgent be1(config("be1"));
    RunningAgent be2(config("be2"));
    write_view(1, {{"be1", {session::MemberState::up, 1}}, {"be2", {session::MemberState::up, 1}}});
    ASSERT_TRUE(eventually([&] { return be2.stat("incarnation") == 1; }));
    auto on_be2 = be2.client();
    EXPECT_EQ(on_be2->store("add", lock_key("s6"), "1", 0, 30), "STORED\r\n");
    // be2 died and came back: incarnation 2. Its old lock is stale.
    write_view(2, {{"be1", {session::MemberState::up, 1}}, {"be2", {session::MemberState::up, 2}}});
    ASSERT_TRUE(eventually([&] { return be1.stat("view_epoch") == 2; }));
    auto on_be1 = be1.client();
    EXPECT_EQ(on_be1->store("add", lock_key("s6"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(be1.stat("locks_broken_stale_incarnation"), 1u);
}

TEST_F(AgentTest, WithoutAViewALiveOwnersLockIsNeverBroken) {
    RunningAgent be1(config("be1"));
    RunningAgent be2(config("be2"));
    auto on_be2 = be2.client();
    EXPECT_EQ(on_be2->store("add", lock_key("s7"), "1", 0, 30), "STORED\r\n");
    auto on_be1 = be1.client();
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(on_be1->store("add", lock_key("s7"), "1", 0, 30), "NOT_STORED\r\n");
    // Nor a lock taken by a client that bypasses the agent (the stock "1").
    std::vector<std::string> names = {server(0).address(), server(1).address()};
    std::vector<std::string_view> views(names.begin(), names.end());
    int home = static_cast<int>(rank_servers(views, lock_key("s8")).front());
    EXPECT_EQ(direct(home)->store("add", lock_key("s8"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(on_be1->store("add", lock_key("s8"), "1", 0, 30), "NOT_STORED\r\n");
    EXPECT_EQ(be1.stat("locks_broken_owner_down") + be1.stat("locks_broken_stale_incarnation") +
                  be1.stat("locks_broken_agent_restarted") + be1.stat("locks_broken_orphaned"),
              0u);
}

TEST_F(AgentTest, ARestartedAgentBreaksTheLocksOfItsPreviousLife) {
    std::vector<std::string> names = {server(0).address(), server(1).address()};
    std::vector<std::string_view> views(names.begin(), names.end());
    int home = static_cast<int>(rank_servers(views, lock_key("s9")).front());
    {
        RunningAgent before(config("be1"));
        auto client = before.client();
        EXPECT_EQ(client->store("add", lock_key("s9"), "1", 0, 30), "STORED\r\n");
        // Simulate a crash: the agent's release never reaches memcached.
        auto stored = direct(home)->get(lock_key("s9"));
        ASSERT_TRUE(stored.has_value());
        client->close();
        ASSERT_TRUE(eventually([&] { return before.stat("locks_held") == 0; }));
        EXPECT_EQ(direct(home)->store("set", lock_key("s9"), *stored, 0, 30), "STORED\r\n");
    }
    RunningAgent after(config("be1"));
    auto client = after.client();
    EXPECT_EQ(client->store("add", lock_key("s9"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(after.stat("locks_broken_agent_restarted"), 1u);
}

// ------------------------------------------------------------ fencing and versions

TEST_F(AgentTest, ASessionWriteUnderSomeoneElsesLockIsRefused) {
    RunningAgent agent(config("be1"));
    auto holder = agent.client();
    auto intruder = agent.client();
    EXPECT_EQ(holder->store("add", lock_key("f1"), "1", 0, 30), "STORED\r\n");
    EXPECT_TRUE(intruder->store("set", data_key("f1"), "n|i:99;").starts_with("SERVER_ERROR fenced"));
    EXPECT_EQ(agent.stat("fenced_writes_refused"), 1u);
    EXPECT_EQ(holder->get(data_key("f1")), std::nullopt);
    EXPECT_EQ(holder->store("set", data_key("f1"), "n|i:1;", 0, 1440), "STORED\r\n");
    EXPECT_EQ(holder->command("delete " + lock_key("f1")), "DELETED\r\n");
    // Nobody holds it now: a write without the lock (locking off) is allowed.
    EXPECT_EQ(intruder->get(data_key("f1")), "n|i:1;");
    EXPECT_EQ(intruder->store("set", data_key("f1"), "n|i:2;", 0, 1440), "STORED\r\n");
    EXPECT_EQ(holder->get(data_key("f1")), "n|i:2;");
}

TEST_F(AgentTest, AWriteNeverReplacesACopyItHasNotSeen) {
    RunningAgent agent(config("be1"));
    auto first = agent.client();
    auto second = agent.client();
    EXPECT_EQ(first->store("set", data_key("v1"), "n|i:0;"), "STORED\r\n");
    // Both read version 1 (no locking, like sess_locking=Off).
    EXPECT_EQ(first->get(data_key("v1")), "n|i:0;");
    EXPECT_EQ(second->get(data_key("v1")), "n|i:0;");
    EXPECT_EQ(first->store("set", data_key("v1"), "n|i:1;"), "STORED\r\n");
    // The second would overwrite an update it never saw: refused, not lost silently.
    EXPECT_TRUE(second->store("set", data_key("v1"), "n|i:1;").starts_with("SERVER_ERROR conflict"));
    EXPECT_EQ(agent.stat("write_conflicts"), 1u);
    // After reading again, it may write.
    EXPECT_EQ(second->get(data_key("v1")), "n|i:1;");
    EXPECT_EQ(second->store("set", data_key("v1"), "n|i:2;"), "STORED\r\n");
}

TEST_F(AgentTest, ABrokenOwnersLateWriteIsRefused) {
    RunningAgent be1(config("be1"));
    RunningAgent be2(config("be2"));
    write_view(1, {{"be1", {session::MemberState::up, 1}}, {"be2", {session::MemberState::up, 1}}});
    ASSERT_TRUE(eventually([&] { return be1.stat("view_epoch") == 1 && be2.stat("view_epoch") == 1; }));
    auto slow = be2.client();
    EXPECT_EQ(slow->store("add", lock_key("z1"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(slow->get(data_key("z1")), std::nullopt);
    // be2 declared down while its request still runs (a partition): be1 takes over.
    write_view(2, {{"be1", {session::MemberState::up, 1}}, {"be2", {session::MemberState::down, 1}}});
    ASSERT_TRUE(eventually([&] { return be1.stat("view_epoch") == 2; }));
    auto next = be1.client();
    EXPECT_EQ(next->store("add", lock_key("z1"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(next->get(data_key("z1")), std::nullopt);
    EXPECT_EQ(next->store("set", data_key("z1"), "from-be1"), "STORED\r\n");
    // The old owner's write arrives late: refused, the newer session stays.
    EXPECT_TRUE(slow->store("set", data_key("z1"), "from-be2").starts_with("SERVER_ERROR"));
    EXPECT_EQ(next->get(data_key("z1")), "from-be1");
}

// ------------------------------------------------------------ replication

TEST_F(AgentTest, SessionsAreKeptOnTwoServersAndSurviveOneRestartingEmpty) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    for (int user = 0; user < 10; ++user) {
        EXPECT_EQ(
            client->store("set", data_key("r" + std::to_string(user)), "n|i:" + std::to_string(user) + ";", 0, 1440),
            "STORED\r\n");
    }
    // Both servers hold every session, behind the record header.
    for (int i = 0; i < 2; ++i) {
        auto copy = direct(i)->get(data_key("r3"));
        ASSERT_TRUE(copy.has_value());
        EXPECT_EQ(decode_session_record(*copy).payload, "n|i:3;");
        EXPECT_EQ(decode_session_record(*copy).version, 1u);
    }
    server(0).restart();  // back, empty
    // Every read finds the session; the reads that reach the restarted server
    // (once it is out of its connect backoff) put the copies back.
    auto read_everyone = [&] {
        for (int user = 0; user < 10; ++user) {
            EXPECT_EQ(client->get(data_key("r" + std::to_string(user))), "n|i:" + std::to_string(user) + ";")
                << "user " << user;
        }
        return agent.stat("replica_repairs") == 10;
    };
    EXPECT_TRUE(eventually(read_everyone));
    auto repaired = direct(0)->get(data_key("r3"));
    ASSERT_TRUE(repaired.has_value());
    EXPECT_EQ(decode_session_record(*repaired).payload, "n|i:3;");
    // And writes go on from the surviving version.
    EXPECT_EQ(client->store("set", data_key("r3"), "n|i:4;", 0, 1440), "STORED\r\n");
    EXPECT_EQ(decode_session_record(*direct(0)->get(data_key("r3"))).version, 2u);
}

TEST_F(AgentTest, AServerThatMissedWritesWhileDownIsRepairedOnRead) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    EXPECT_EQ(client->store("set", data_key("m1"), "v1", 0, 1440), "STORED\r\n");
    server(1).pause();  // hangs: writes to it time out
    EXPECT_EQ(client->get(data_key("m1")), "v1");
    EXPECT_EQ(client->store("set", data_key("m1"), "v2", 0, 1440), "STORED\r\n");
    server(1).resume();
    // Its copy is version 1; reading through the agent repairs it to version 2.
    auto fresh = agent.client();
    EXPECT_TRUE(eventually([&] {
        return fresh->get(data_key("m1")) == std::optional<std::string>("v2") &&
               decode_session_record(direct(1)->get(data_key("m1")).value_or("")).payload == "v2";
    }));
}

// ------------------------------------------------------------ deletes (logout)

// A copy as a server holds it, decoded; a miss decodes as an empty version 0.
SessionRecord held_on(MemcacheTextClient& server, const std::string& key) {
    return decode_session_record(server.get(key).value_or(""));
}

// The session's expiry left on a server, from memcached's own "mg <key> t".
std::int64_t seconds_left(MemcacheTextClient& server, const std::string& key) {
    std::string reply = server.command("mg " + key + " t");
    std::size_t t = reply.find(" t");
    return t == std::string::npos ? -2 : std::stoll(reply.substr(t + 2));
}

TEST_F(AgentTest, ADeletedSessionReadsAsAMissAndBothServersHoldATombstone) {
    RunningAgent agent(config("be1"));
    const std::string key = data_key("d1");
    auto client = agent.client();
    ASSERT_EQ(client->store("set", key, "user|s:5:\"alice\";", 0, 1440), "STORED\r\n");
    EXPECT_EQ(client->command("delete " + key), "DELETED\r\n");  // what php-memcached's destroy sends and expects
    EXPECT_EQ(client->get_raw(key), "END\r\n");
    EXPECT_EQ(agent.client()->get_raw(key), "END\r\n");
    // As memcached answers for a key already deleted.
    EXPECT_EQ(client->command("delete " + key), "NOT_FOUND\r\n");
    EXPECT_EQ(client->command("touch " + key + " 1440"), "NOT_FOUND\r\n");
    EXPECT_EQ(client->store("replace", key, "x", 0, 1440), "NOT_STORED\r\n");
    for (int i = 0; i < 2; ++i) {
        SessionRecord copy = held_on(*direct(i), key);
        EXPECT_TRUE(copy.deleted) << "server " << i;
        EXPECT_EQ(copy.version, 2u) << "server " << i;
        EXPECT_EQ(copy.payload, "") << "server " << i;
        // Kept longer than the session it deleted would have lived, and bounded.
        std::int64_t left = seconds_left(*direct(i), key);
        EXPECT_GT(left, 1440) << "server " << i;
        EXPECT_LE(left, 3600) << "server " << i;
    }
    EXPECT_EQ(agent.stat("session_deletes"), 1u);
    EXPECT_GE(agent.stat("tombstone_reads"), 2u);
}

// The race: a read is repairing B's missing copy from what it read on A when
// the user logs out. Its repair lands after the delete and must not bring
// the session back (before tombstones its `add` of the old copy did).
TEST_F(AgentTest, ARepairThatReadBeforeALogoutDoesNotBringTheSessionBack) {
    std::unique_ptr<ReplyDelayingProxy> proxies[2] = {std::make_unique<ReplyDelayingProxy>(server(0).port()),
                                                      std::make_unique<ReplyDelayingProxy>(server(1).port())};
    AgentConfig settings = config("be1");
    settings.upstreams = {proxies[0]->address(), proxies[1]->address()};
    RunningAgent agent(settings);
    const std::string key = data_key("x1");
    auto user = agent.client();
    // The logout runs under the session lock, as PHP's session_destroy does.
    ASSERT_EQ(user->store("add", lock_key("x1"), "1", 0, 30), "STORED\r\n");
    ASSERT_EQ(user->store("set", key, "user|s:5:\"alice\";", 0, 1440), "STORED\r\n");
    ASSERT_EQ(direct(1)->command("delete " + key), "DELETED\r\n");  // B lost its copy: the next read repairs it

    proxies[0]->arm("mg " + key, 400ms);  // that read's answer from A comes late
    auto reader = agent.client();
    auto repairing = std::async(std::launch::async, [&] { return reader->get(key); });
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(user->command("delete " + key), "DELETED\r\n");
    repairing.get();  // it read before the logout, so it may still answer the session; its repair is over
    EXPECT_EQ(agent.client()->get(key), std::nullopt) << "the logout did not log out";
    for (int i = 0; i < 2; ++i) {
        SessionRecord copy = held_on(*direct(i), key);
        EXPECT_NE(copy.payload, "user|s:5:\"alice\";") << "server " << i << " holds the deleted session";
    }
    EXPECT_EQ(user->command("delete " + lock_key("x1")), "DELETED\r\n");
}

// B is away (stopped: requests to it time out) while the user logs out, and
// returns with the copy it held.
TEST_F(AgentTest, ASessionDeletedWhileAServerIsAwayStaysDeletedWhenReadAfterItReturns) {
    AgentConfig settings = config("be1");
    settings.resync_sessions = 0;  // no resync: the read alone meets B's old copy
    RunningAgent agent(settings);
    const std::string key = data_key("g1");
    auto client = agent.client();
    ASSERT_EQ(client->store("set", key, "user|s:5:\"alice\";", 0, 1440), "STORED\r\n");
    server(1).pause();
    EXPECT_EQ(client->command("delete " + key), "DELETED\r\n");
    server(1).resume();
    // B came back with the session the user logged out of.
    ASSERT_EQ(held_on(*direct(1), key).payload, "user|s:5:\"alice\";");
    ASSERT_FALSE(held_on(*direct(1), key).deleted);
    // Every read is a miss, and one that reaches B gives it the tombstone.
    auto reader = agent.client();
    EXPECT_TRUE(eventually(
        [&] {
            EXPECT_EQ(reader->get(key), std::nullopt);
            return held_on(*direct(1), key).deleted;
        },
        10s))
        << "B kept the deleted session";
    EXPECT_EQ(reader->get(key), std::nullopt);
}

TEST_F(AgentTest, AResyncGivesAReturningServerTheTombstoneOfASessionDeletedWhileItWasAway) {
    RunningAgent agent(config("be1"));
    const std::string key = data_key("g2");
    auto client = agent.client();
    ASSERT_EQ(client->store("set", key, "user|s:5:\"alice\";", 0, 1440), "STORED\r\n");
    server(1).pause();
    EXPECT_EQ(client->command("delete " + key), "DELETED\r\n");
    std::this_thread::sleep_for(1500ms);  // away long enough for a probe (one a second) to find it gone
    server(1).resume();
    // No user reads: the resync that follows B's return replaces its old copy.
    ASSERT_TRUE(eventually([&] { return agent.stat("resync_runs") >= 1; }, 30s)) << "no resync of B finished";
    SessionRecord on_b = held_on(*direct(1), key);
    EXPECT_TRUE(on_b.deleted);
    EXPECT_EQ(on_b.version, 2u);
    EXPECT_EQ(agent.client()->get(key), std::nullopt);
    EXPECT_TRUE(held_on(*direct(0), key).deleted);
}

// A new session under the id of a deleted one (rare, legal): it goes on above the tombstone.
TEST_F(AgentTest, ASessionIdCanBeUsedAgainAfterItsDeletion) {
    RunningAgent agent(config("be1"));
    const std::string key = data_key("n1");
    auto client = agent.client();
    ASSERT_EQ(client->store("set", key, "old", 0, 1440), "STORED\r\n");
    ASSERT_EQ(client->command("delete " + key), "DELETED\r\n");
    EXPECT_EQ(client->get(key), std::nullopt);
    EXPECT_EQ(client->store("add", key, "new", 0, 1440), "STORED\r\n");
    EXPECT_EQ(client->get(key), "new");
    EXPECT_EQ(agent.client()->get(key), "new");
    for (int i = 0; i < 2; ++i) {
        SessionRecord copy = held_on(*direct(i), key);
        EXPECT_FALSE(copy.deleted) << "server " << i;
        EXPECT_EQ(copy.version, 3u) << "server " << i;
        EXPECT_EQ(copy.payload, "new") << "server " << i;
    }
    // And by a connection that never read it, after a second delete.
    ASSERT_EQ(client->command("delete " + key), "DELETED\r\n");
    auto other = agent.client();
    EXPECT_EQ(other->store("set", key, "newer", 0, 1440), "STORED\r\n");
    EXPECT_EQ(agent.client()->get(key), "newer");
    EXPECT_EQ(held_on(*direct(1), key).version, 5u);
}

// ------------------------------------------------------------ resync of a returning server

std::string user_value(int user, int version) {
    return "n|i:" + std::to_string(user) + ";v|i:" + std::to_string(version) + ";";
}

// The window read repair alone leaves open: memcached A restarts empty and,
// before any user comes back, B fails for good. The agent copied every session
// it had served back to A as soon as A returned, so none is lost.
TEST_F(AgentTest, SessionsAreCopiedBackToARestartedServerBeforeTheOtherFails) {
    RunningAgent agent(config("be1"));
    constexpr int kSessions = 200;
    auto client = agent.client();
    for (int user = 0; user < kSessions; ++user) {
        for (int version = 1; version <= 2; ++version) {
            ASSERT_EQ(client->store("set", data_key("w" + std::to_string(user)), user_value(user, version), 0, 1440),
                      "STORED\r\n");
        }
    }
    const std::string a_up = "upstream:" + server(0).address() + ":up";
    server(0).kill();
    ASSERT_TRUE(eventually([&] { return agent.stat(a_up) == 0; }, 10s)) << "the agent never saw A down";
    server(0).restart();  // back, empty; no user reads or writes from here on
    ASSERT_TRUE(eventually([&] { return agent.stat(a_up) == 1 && agent.stat("resync_runs") >= 1; }, 30s))
        << "no resync of A finished";
    server(1).kill();  // for good

    auto later = agent.client();
    for (int user = 0; user < kSessions; ++user) {
        const std::string key = data_key("w" + std::to_string(user));
        EXPECT_EQ(later->get(key), user_value(user, 2)) << "user " << user;
        SessionRecord on_a = decode_session_record(direct(0)->get(key).value_or(""));
        EXPECT_EQ(on_a.payload, user_value(user, 2)) << "user " << user;
        EXPECT_EQ(on_a.version, 2u) << "user " << user;
    }
}

// The agent remembers only the --resync-sessions most recently served
// sessions: those are copied back, the older ones wait for their users.
TEST_F(AgentTest, OnlyTheMostRecentlyServedSessionsAreCopiedBack) {
    AgentConfig settings = config("be1");
    settings.resync_sessions = 5;
    settings.view_poll = 60s;  // no request but the probe reaches A: it alone sees the restart
    RunningAgent agent(settings);
    auto client = agent.client();
    for (int user = 0; user < 10; ++user) {
        ASSERT_EQ(client->store("set", data_key("b" + std::to_string(user)), user_value(user, 1), 0, 1440),
                  "STORED\r\n");
    }
    EXPECT_EQ(client->get(data_key("b0")), user_value(0, 1));  // read last: now the most recent
    EXPECT_EQ(agent.stat("resync_sessions_remembered"), 5u);
    server(0).restart();
    ASSERT_TRUE(eventually([&] { return agent.stat("resync_runs") >= 1; }, 30s)) << "no resync of A finished";
    EXPECT_EQ(agent.stat("resync_sessions_copied"), 5u);
    const std::set<int> remembered = {0, 6, 7, 8, 9};
    for (int user = 0; user < 10; ++user) {
        EXPECT_EQ(direct(0)->get(data_key("b" + std::to_string(user))).has_value(), remembered.contains(user))
            << "user " << user;
    }
}

// Users keep writing while a slow resync walks their sessions: every write
// stays, on both servers (the resync's copies are conditional on what it read),
// and a lock held meanwhile stays its owner's.
TEST_F(AgentTest, WritesAndLocksDuringAResyncAreNotDisturbed) {
    AgentConfig settings = config("be1");
    settings.resync_rate = 100;  // 300 sessions: the run lasts about 3 s
    RunningAgent agent(settings);
    constexpr int kSessions = 300;
    auto client = agent.client();
    // A session whose lock lives on B, which stays up: held through the whole run.
    std::vector<std::string> names = {server(0).address(), server(1).address()};
    std::vector<std::string_view> views(names.begin(), names.end());
    std::string locked = "L0";
    for (int i = 1; rank_servers(views, lock_key(locked)).front() != 1; ++i)
        locked = "L" + std::to_string(i);
    auto holder = agent.client();
    ASSERT_EQ(holder->store("add", lock_key(locked), "1", 0, 30), "STORED\r\n");
    ASSERT_EQ(holder->store("set", data_key(locked), "held", 0, 1440), "STORED\r\n");
    for (int user = 0; user < kSessions; ++user) {
        ASSERT_EQ(client->store("set", data_key("c" + std::to_string(user)), user_value(user, 1), 0, 1440),
                  "STORED\r\n");
    }
    server(0).restart();
    ASSERT_TRUE(eventually([&] { return agent.stat("resync_sessions_examined") >= 10; }, 30s))
        << "no resync of A started";
    // The resync walks the most recent first (c299 down); the users write from c0 up to meet it.
    auto writer = agent.client();
    for (int user = 0; user < kSessions; ++user) {
        ASSERT_EQ(writer->store("set", data_key("c" + std::to_string(user)), user_value(user, 2), 0, 1440),
                  "STORED\r\n")
            << "user " << user;
    }
    ASSERT_TRUE(eventually([&] { return agent.stat("resync_runs") >= 1; }, 30s)) << "the resync of A never ended";
    EXPECT_EQ(agent.client()->store("add", lock_key(locked), "1", 0, 30), "NOT_STORED\r\n");
    EXPECT_EQ(holder->store("set", data_key(locked), "held, written again", 0, 1440), "STORED\r\n");
    EXPECT_EQ(holder->command("delete " + lock_key(locked)), "DELETED\r\n");
    EXPECT_EQ(agent.stat("locks_lost"), 0u);
    EXPECT_EQ(decode_session_record(direct(0)->get(data_key(locked)).value_or("")).payload, "held, written again");
    auto reader = agent.client();
    for (int user = 0; user < kSessions; ++user) {
        const std::string key = data_key("c" + std::to_string(user));
        EXPECT_EQ(reader->get(key), user_value(user, 2)) << "user " << user;
        for (int i = 0; i < 2; ++i) {
            SessionRecord copy = decode_session_record(direct(i)->get(key).value_or(""));
            EXPECT_EQ(copy.payload, user_value(user, 2)) << "user " << user << " on server " << i;
            EXPECT_EQ(copy.version, 2u) << "user " << user << " on server " << i;
        }
    }
    EXPECT_EQ(agent.stat("write_conflicts"), 0u);
}

// ------------------------------------------------------------ upstream failures

TEST_F(AgentTest, UpstreamsDownGiveErrorsAndTheAgentRecovers) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    EXPECT_EQ(client->store("set", "k", "v"), "STORED\r\n");
    server(0).kill();
    server(1).kill();
    EXPECT_TRUE(client->store("set", "k", "v").starts_with("SERVER_ERROR"));
    EXPECT_TRUE(client->get_raw(data_key("gone")).starts_with("END") ||
                client->get_raw(data_key("gone")).starts_with("SERVER_ERROR"));
    server(0).restart();
    server(1).restart();
    EXPECT_TRUE(eventually([&] { return client->store("set", "k", "again") == "STORED\r\n"; }, 5s));
}

TEST_F(AgentTest, AHungServerDoesNotBlockRequestsToTheOtherAndItsKeysGoThere) {
    RunningAgent agent(config("be1"));
    std::vector<std::string> names = {server(0).address(), server(1).address()};
    std::vector<std::string_view> views(names.begin(), names.end());
    std::string on_hung, on_healthy;
    for (int i = 0; on_hung.empty() || on_healthy.empty(); ++i) {
        std::string key = "key" + std::to_string(i);
        (rank_servers(views, key).front() == 0 ? on_hung : on_healthy) = key;
    }
    server(0).pause();
    auto stuck = agent.client();
    auto free = agent.client();
    auto pending = std::async(std::launch::async, [&] { return stuck->store("set", on_hung, "x"); });
    // Served while the other request waits on the hung server.
    EXPECT_EQ(free->store("set", on_healthy, "y"), "STORED\r\n");
    EXPECT_EQ(free->get(on_healthy), "y");
    // After the hung server's timeout the request goes to the next server in its order.
    EXPECT_EQ(pending.get(), "STORED\r\n");
    EXPECT_EQ(direct(1)->get(on_hung), "x");
    EXPECT_GE(agent.stat("upstream_failovers"), 1u);
    server(0).resume();
}

TEST_F(AgentTest, MetricsPassPromtool) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    EXPECT_EQ(client->store("add", lock_key("p1"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(client->store("set", data_key("p1"), "x"), "STORED\r\n");
    std::string text = agent.metrics();
    EXPECT_NE(text.find("stickylb_agent_locks_taken_total 1"), std::string::npos) << text;
    EXPECT_NE(text.find("stickylb_agent_upstream_up{server=\"" + server(0).address() + "\"} 1"), std::string::npos);
    testing::expect_promtool_passes(text);
}

}  // namespace
}  // namespace stickylb::agent
