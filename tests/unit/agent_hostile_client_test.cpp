// SPDX-License-Identifier: Apache-2.0
// stickylb-agent against clients that misbehave (never read, never finish,
// never leave, open too many connections, write lock keys directly, send
// session ids too long for memcached) and against a memcached server that
// is down: nothing grows without bound, nothing wedges, every lock a dead
// connection held is released, and no request fails while one server of two
// answers. Real memcached processes on loopback.
// <utility> first: Boost 1.74 Asio uses std::exchange without including it (C++20, GCC 12).
#include <utility>

#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <limits>
#include <fstream>
#include <regex>
#include <vector>

#include "agent/lock_tag.h"
#include "agent/placement.h"
#include "agent/session_service.h"
#include "session/membership_view.h"
#include "session/signed_value.h"
#include "support/agent_fixture.h"
#include "support/agent_process.h"

namespace stickylb::agent {
namespace {

using testing::AgentProcess;

// A key other than the cluster's: what an attacker without the key can sign with.
const session::SigningKey& attackers_key() {
    static const session::SigningKey key("not-the-cluster-key-at-all");
    return key;
}

class HostileClients : public AgentFixture {
protected:
    // The agent binary on a free port; returns once it answers.
    std::unique_ptr<AgentProcess> start_agent_process(std::vector<std::string> extra, std::uint16_t& port) {
        port = MemcachedProcess::unused_port();
        std::vector<std::string> arguments = {"--backend",        "be1",
                                              "--cluster",        "web",
                                              "--listen",         "127.0.0.1:" + std::to_string(port),
                                              "--metrics-listen", "off",
                                              "--upstream",       server(0).address(),
                                              "--upstream",       server(1).address()};
        arguments.insert(arguments.end(), extra.begin(), extra.end());
        auto agent = std::make_unique<AgentProcess>(STICKYLB_AGENT_PATH,
                                                    AgentProcess::Options{arguments, log_path(), {}, false});
        const bool up = eventually(
            [&] {
                try {
                    return MemcacheTextClient(port).command("version").starts_with("VERSION");
                } catch (const std::runtime_error&) {
                    return false;
                }
            },
            5s);
        EXPECT_TRUE(up) << agent->log();
        return agent;
    }
    std::string log_path() const { return ::testing::TempDir() + "/agent-" + std::to_string(::getpid()) + ".log"; }
    // A STAT of an agent reached on `port`.
    static std::uint64_t stat_at(std::uint16_t port, const std::string& name) {
        MemcacheTextClient client(port);
        client.send("stats\r\n");
        std::uint64_t value = 0;
        bool found = false;
        for (std::string line = client.read_line(); line != "END\r\n"; line = client.read_line()) {
            if (line.starts_with("STAT " + name + " ")) {
                value = std::stoull(line.substr(6 + name.size()));
                found = true;
            }
        }
        EXPECT_TRUE(found) << "no STAT " << name;
        return value;
    }
};

// A lock add that succeeds once `key` is free again (bounded), and how long that took.
std::optional<std::chrono::milliseconds> time_until_lock_taken(std::uint16_t port, const std::string& key,
                                                               std::chrono::milliseconds limit) {
    const auto start = std::chrono::steady_clock::now();
    MemcacheTextClient client(port);
    while (std::chrono::steady_clock::now() - start < limit) {
        if (client.store("add", key, "1", 0, 30) == "STORED\r\n") {
            return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        }
    }
    return std::nullopt;
}

// ------------------------------------------------------------ clients that do not read

TEST_F(HostileClients, AClientThatNeverReadsItsRepliesCannotGrowTheAgentAndItsLockIsReleased) {
    std::uint16_t port = 0;
    auto agent = start_agent_process({"--client-write-timeout", "2s"}, port);
    MemcacheTextClient setter(port);
    ASSERT_EQ(setter.store("set", "big", std::string(1000 * 1000, 'x')), "STORED\r\n");

    MemcacheTextClient wedged(port);
    ASSERT_EQ(wedged.store("add", lock_key("S"), "1", 0, 30), "STORED\r\n");
    // 16 KiB of pipelined gets of the 1 MB value: about 4 GB of replies, none ever read.
    std::string line = "get";
    while (line.size() < 1000)
        line += " big";
    line += "\r\n";
    std::string flood;
    while (flood.size() < 16 * 1024)
        flood += line;
    const auto flood_start = std::chrono::steady_clock::now();
    wedged.send(flood);

    std::uint64_t peak_rss = 0;
    for (int sample = 0; sample < 40; ++sample) {  // 2 s, up to the write timeout
        peak_rss = std::max(peak_rss, agent->rss_bytes());
        std::this_thread::sleep_for(50ms);
    }
    const auto freed = time_until_lock_taken(port, lock_key("S"), 10s);
    ASSERT_TRUE(freed) << "the wedged connection's lock was never released\n" << agent->log();
    const auto since_flood =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - flood_start);
    EXPECT_LT(peak_rss, 200u * 1024 * 1024) << "RSS grew to " << peak_rss / (1024 * 1024) << " MiB";
    EXPECT_EQ(stat_at(port, "connections_closed_write_timeout"), 1u);
    std::cout << "[ figures  ] non-reading client: agent peak RSS " << peak_rss / (1024 * 1024)
              << " MiB; its lock taken by another client " << since_flood.count()
              << " ms after the flood began (write timeout 2 s)\n";

    agent->signal(SIGTERM);
    EXPECT_EQ(agent->wait_exit(5s), std::optional<int>(0)) << "SIGTERM did not stop the agent\n" << agent->log();
}

// ------------------------------------------------------------ descriptors

TEST_F(HostileClients, RunningOutOfDescriptorsPausesAcceptsInsteadOfSpinning) {
    RunningAgent agent(config("be1"));
    auto watcher = agent.client();  // accepted before the shortage: it reads the stats
    ASSERT_EQ(watcher->command("version").substr(0, 7), "VERSION");
    std::vector<int> waiting;  // sockets made now, connected once no descriptor is left
    for (int i = 0; i < 5; ++i)
        waiting.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));

    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    // Fill every descriptor slot under a limit just above what is open now.
    std::size_t open_now = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        (void)entry, ++open_now;
    rlimit tight = saved;
    tight.rlim_cur = open_now + 16;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
    std::vector<int> fillers;
    for (int fd = ::dup(0); fd >= 0; fd = ::dup(0))
        fillers.push_back(fd);

    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(agent.port());
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int fd : waiting) {
        EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
    }
    std::this_thread::sleep_for(1s);
    watcher->send("stats\r\n");
    std::uint64_t refused = 0;
    for (std::string line = watcher->read_line(); line != "END\r\n"; line = watcher->read_line()) {
        if (line.starts_with("STAT accepts_refused_descriptors "))
            refused = std::stoull(line.substr(33));
    }
    for (int fd : fillers)
        ::close(fd);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
    // About one failed accept per 100 ms of shortage, not a busy loop.
    EXPECT_GE(refused, 1u);
    EXPECT_LE(refused, 20u);
    // Descriptors free again: the clients that waited in the backlog are served.
    for (int fd : waiting) {
        const std::string request = "version\r\n";
        ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
        char reply[64] = {};
        pollfd ready{fd, POLLIN, 0};
        ASSERT_EQ(::poll(&ready, 1, 5000), 1) << "a client that waited during the shortage was never served";
        EXPECT_GT(::recv(fd, reply, sizeof reply - 1, 0), 0);
        EXPECT_TRUE(std::string(reply).starts_with("VERSION"));
        ::close(fd);
    }
}

TEST_F(HostileClients, MaxClientsBeyondTheDescriptorLimitIsRefusedAtStartWithTheReason) {
    const std::vector<std::string> arguments = {
        "--backend", "be1",        "--cluster",         "web",        "--listen", "127.0.0.1:0", "--metrics-listen",
        "off",       "--upstream", server(0).address(), "--replicas", "1"};
    std::vector<std::string> too_many = arguments;
    too_many.insert(too_many.end(), {"--max-clients", "4096"});
    AgentProcess refused(STICKYLB_AGENT_PATH, {too_many, log_path(), 256, true});
    EXPECT_EQ(refused.wait_exit(5s), std::optional<int>(2)) << refused.log();
    EXPECT_NE(refused.log().find("max_clients 4096 needs"), std::string::npos) << refused.log();
    EXPECT_NE(refused.log().find("LimitNOFILE"), std::string::npos) << refused.log();

    std::vector<std::string> fitting = arguments;
    fitting.insert(fitting.end(), {"--max-clients", "100"});
    AgentProcess started(STICKYLB_AGENT_PATH, {fitting, log_path() + ".2", 256, true});
    EXPECT_EQ(started.wait_exit(500ms), std::nullopt) << started.log();

    // The unit gives the default max_clients what it needs.
    std::ifstream unit(std::string(STICKYLB_SOURCE_DIR) + "/userspace/agent/stickylb-agent.service");
    std::stringstream text;
    text << unit.rdbuf();
    std::smatch limit;
    const std::string unit_text = text.str();
    ASSERT_TRUE(std::regex_search(unit_text, limit, std::regex("\nLimitNOFILE=([0-9]+)"))) << unit_text;
    EXPECT_GE(std::stoul(limit[1]), AgentConfig{}.max_clients + 200);
}

// ------------------------------------------------------------ idle and slow clients

TEST_F(HostileClients, IdleConnectionsAreClosedAndTheirLocksReleased) {
    AgentConfig settings = config("be1");
    settings.client_idle_timeout = 300ms;
    RunningAgent agent(settings);
    auto idle = agent.client();
    auto holder = agent.client();
    ASSERT_EQ(holder->store("add", lock_key("idle"), "1", 0, 30), "STORED\r\n");
    auto busy = agent.client();
    for (int i = 0; i < 10; ++i) {  // a request every 100 ms keeps a connection
        ASSERT_EQ(busy->command("version").substr(0, 7), "VERSION");
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(idle->closed_by_peer());
    EXPECT_TRUE(holder->closed_by_peer());
    auto taker = agent.client();
    EXPECT_EQ(taker->store("add", lock_key("idle"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(busy->command("version").substr(0, 7), "VERSION");
    // Counted once the release has reached memcached, just after the close.
    EXPECT_TRUE(eventually([&] { return agent.stat("connections_closed_idle_timeout") == 2; }));
    EXPECT_EQ(agent.stat("locks_released_on_disconnect"), 1u);
}

TEST_F(HostileClients, ARequestThatArrivesSlowlyIsCutAtItsDeadlineEvenWhileBytesKeepComing) {
    AgentConfig settings = config("be1");
    settings.client_request_timeout = 500ms;
    RunningAgent agent(settings);
    auto slow = agent.client();
    slow->send("set slow 0 0 100\r\n0123456789");
    const auto start = std::chrono::steady_clock::now();
    bool cut = false;
    for (int i = 0; i < 30 && !cut; ++i) {  // a byte every 100 ms: progress, never completion
        std::this_thread::sleep_for(100ms);
        try {
            slow->send("x");
        } catch (const std::runtime_error&) {
            cut = true;
        }
    }
    cut = cut || slow->closed_by_peer();
    EXPECT_TRUE(cut) << "a request dribbling in was never cut";
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2500ms);
    EXPECT_TRUE(eventually([&] { return agent.stat("connections_closed_request_timeout") == 1; }));
}

TEST_F(HostileClients, UnfinishedRequestsOfAllConnectionsShareOneCeiling) {
    AgentConfig settings = config("be1");
    settings.max_buffered_bytes = 3 * 1024 * 1024;
    RunningAgent agent(settings);
    std::vector<std::unique_ptr<MemcacheTextClient>> clients;
    for (int i = 0; i < 6; ++i) {
        clients.push_back(std::make_unique<MemcacheTextClient>(agent.port(), 300ms));
        clients.back()->send("set part" + std::to_string(i) + " 0 0 1048576\r\n" + std::string(700 * 1024, 'p'));
    }
    std::this_thread::sleep_for(300ms);
    EXPECT_LE(agent.stat("buffered_bytes"), settings.max_buffered_bytes);
    // Refused clients were told why and closed; the others still wait for the rest of their data.
    int refused = 0;
    for (auto& client : clients) {
        try {
            if (client->read_line() == "SERVER_ERROR out of memory storing object\r\n")
                ++refused;
        } catch (const std::runtime_error&) {
            // no reply: still mid-request
        }
    }
    EXPECT_GE(refused, 2);
    EXPECT_TRUE(eventually([&] { return agent.stat("connections_closed_buffer_limit") >= 2; }));
    auto fresh = agent.client();
    EXPECT_EQ(fresh->store("set", "small", "ok"), "STORED\r\n");
}

// ------------------------------------------------------------ lock keys

TEST_F(HostileClients, EveryWriteToALockKeyOtherThanAddAndDeleteIsRefusedAndTheLockStaysItsOwners) {
    RunningAgent agent(config("be1"));
    auto holder = agent.client();
    ASSERT_EQ(holder->store("add", lock_key("S"), "1", 0, 30), "STORED\r\n");
    const std::vector<std::string> placement_names = {server(0).address(), server(1).address()};
    const std::vector<std::string_view> names(placement_names.begin(), placement_names.end());
    const int lock_home = static_cast<int>(rank_servers(names, lock_key("S")).front());
    const auto upstream_lock = [&] { return direct(lock_home)->get(lock_key("S")); };
    const std::optional<std::string> owned = upstream_lock();
    ASSERT_TRUE(owned && parse_lock_tag(*owned)) << "the lock upstream is not an agent's tag";

    auto attacker = agent.client();
    const std::string key = lock_key("S");
    for (const char* verb : {"set", "replace", "append", "prepend"}) {
        EXPECT_TRUE(attacker->store(verb, key, "1", 0, -1).starts_with("CLIENT_ERROR")) << verb;
        EXPECT_TRUE(attacker->store(verb, key, "1", 0, 0).starts_with("CLIENT_ERROR")) << verb;
    }
    EXPECT_TRUE(attacker->command("cas " + key + " 0 0 1 1\r\n1").starts_with("CLIENT_ERROR"));
    for (const std::string& command : std::vector<std::string>{"touch " + key + " 0", "touch " + key + " -1",
                                                               "incr " + key + " 1", "decr " + key + " 1"}) {
        EXPECT_TRUE(attacker->command(command).starts_with("CLIENT_ERROR")) << command;
    }
    // Commands the agent does not speak at all (meta commands, gat) are refused as memcached refuses unknown ones.
    for (const std::string& command : std::vector<std::string>{"gat 0 " + key, "gats 0 " + key, "mg " + key + " v",
                                                               "md " + key, "ma " + key, "mn", "me " + key}) {
        EXPECT_EQ(attacker->command(command), "ERROR\r\n") << command;
    }
    EXPECT_EQ(attacker->command("ms " + key + " 1 T0"), "ERROR\r\n");
    EXPECT_EQ(attacker->command("1"), "ERROR\r\n");  // the data block of that ms, read as a line
    EXPECT_EQ(upstream_lock(), owned) << "a refused command changed the lock";
    EXPECT_EQ(attacker->store("add", key, "1", 0, 30), "NOT_STORED\r\n");
    EXPECT_GE(agent.stat("lock_commands_refused"), 11u);

    // No owner-less lock can be made either.
    EXPECT_TRUE(attacker->store("set", lock_key("T"), "1", 0, 0).starts_with("CLIENT_ERROR"));
    EXPECT_EQ(direct(0)->get(lock_key("T")), std::nullopt);
    EXPECT_EQ(direct(1)->get(lock_key("T")), std::nullopt);
    EXPECT_EQ(holder->command("delete " + key), "DELETED\r\n");
}

// ------------------------------------------------------------ session ids near memcached's key limit

TEST_F(HostileClients, ASessionIdWhoseLockKeyIsTooLongIsWrittenAndItsLockRefusedClearly) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    for (std::size_t length : {232, 236}) {
        std::string sid;
        while (sid.size() < length)
            sid += "abcdefghijklmnopqrstuvwxyz0123456789"[sid.size() % 36];
        ASSERT_LE(data_key(sid).size(), 250u);
        ASSERT_GT(lock_key(sid).size(), 250u);
        EXPECT_EQ(client->store("set", data_key(sid), "long id " + std::to_string(length), 0, 1440), "STORED\r\n")
            << length << "-byte session id";
        EXPECT_EQ(client->get(data_key(sid)), "long id " + std::to_string(length));
        // Refused as memcached refuses any key over 250 bytes (libmemcached does not even send it).
        EXPECT_EQ(client->store("add", lock_key(sid), "1", 0, 30), "CLIENT_ERROR bad command line format\r\n");
    }
    EXPECT_EQ(agent.stat("fenced_writes_refused"), 0u);
}

// ------------------------------------------------------------ one memcached server down

TEST_F(HostileClients, WithOneServerOfTwoDownNoLockOrSessionRequestFails) {
    RunningAgent agent(config("be1"));
    auto client = agent.client();
    ASSERT_EQ(client->store("set", data_key("warm"), "x", 0, 1440), "STORED\r\n");  // connections to both are open
    server(1).kill();
    // Through the agent's reconnect attempts to the dead server (100 ms doubling to 2 s).
    const auto until = std::chrono::steady_clock::now() + 3s;
    int cycles = 0;
    std::vector<std::string> failures;
    while (std::chrono::steady_clock::now() < until && cycles < 2000) {
        const std::string sid = "down" + std::to_string(cycles++);
        const std::vector<std::string> replies = {
            client->store("add", lock_key(sid), "1", 0, 30),
            client->store("set", data_key(sid), "v" + sid, 0, 1440),
            client->get_raw(data_key(sid)),
            client->command("delete " + lock_key(sid)),
            client->store("set", "other:" + sid, "o"),
        };
        const std::vector<std::string> expected = {
            "STORED\r\n", "STORED\r\n",
            "VALUE " + data_key(sid) + " 0 " + std::to_string(1 + sid.size()) + "\r\nv" + sid + "\r\nEND\r\n",
            "DELETED\r\n", "STORED\r\n"};
        for (std::size_t i = 0; i < replies.size(); ++i) {
            if (replies[i] != expected[i])
                failures.push_back(sid + ": " + replies[i]);
        }
        std::this_thread::sleep_for(5ms);
    }
    EXPECT_TRUE(failures.empty()) << failures.size() << " of " << cycles * 5
                                  << " requests failed, first: " << failures.front();
    // Whether a request still tried the dead server (upstream_failovers) or found it in
    // its backoff depends on when the agent noticed the close; either way the keys whose
    // home is the dead server must be on the live one.
    const std::vector<std::string> placement_names = {server(0).address(), server(1).address()};
    const std::vector<std::string_view> names(placement_names.begin(), placement_names.end());
    std::size_t homed_on_dead = 0, found_on_live = 0;
    for (int i = 0; i < cycles; ++i) {
        const std::string key = "other:down" + std::to_string(i);
        if (rank_servers(names, key).front() != 1)
            continue;
        ++homed_on_dead;
        found_on_live += direct(0)->get(key) == std::optional<std::string>("o");
    }
    EXPECT_GT(homed_on_dead, 0u);
    EXPECT_EQ(found_on_live, homed_on_dead);
    std::cout << "[ figures  ] one memcached of two down for 3 s: " << cycles * 5 << " requests, " << failures.size()
              << " failed, " << homed_on_dead << " keys homed on the dead server stored on the live one, "
              << agent.stat("upstream_failovers") << " requests tried the dead server first\n";
}

// ------------------------------------------------------------ forged membership views

class ForgedViews : public HostileClients {
protected:
    void SetUp() override {
        HostileClients::SetUp();
        key_path_ = ::testing::TempDir() + "/agent-key-" + std::to_string(::getpid());
        std::filesystem::remove(key_path_);
        std::ofstream(key_path_) << "a-session-key-of-the-cluster\n";
        std::filesystem::permissions(key_path_,
                                     std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    }
    void TearDown() override { std::filesystem::remove(key_path_); }
    AgentConfig keyed(const std::string& backend) const {
        AgentConfig settings = config(backend);
        settings.key_file = key_path_;
        return settings;
    }
    void put_view(const std::string& stored) {
        for (int i = 0; i < 2; ++i) {
            EXPECT_EQ(direct(i)->store("set", session::members_key("web"), stored, 0, 30), "STORED\r\n");
        }
    }
    static session::MembershipView view(std::uint64_t epoch, session::MemberState be2, std::int64_t written_ms) {
        return {"web", epoch, written_ms, {{"be1", {session::MemberState::up, 1}}, {"be2", {be2, 1}}}};
    }
    std::string signed_view(std::uint64_t epoch, session::MemberState be2, std::int64_t written_ms) const {
        const session::SigningKey key = session::SigningKey::load(key_path_);
        return session::store_view(&key, view(epoch, be2, written_ms));
    }
    std::string key_path_;
};

// Each forged "be2 is down" would break be2's live lock; none may.
TEST_F(ForgedViews, ViewsThatAreUnsignedStaleFromTheFutureOutOfRangeOrOlderNeverBreakALiveLock) {
    using session::MemberState;
    RunningAgent be1(keyed("be1"));
    RunningAgent be2(keyed("be2"));
    put_view(signed_view(10, MemberState::up, wall_clock_ms()));
    ASSERT_TRUE(eventually([&] { return be1.stat("view_epoch") == 10 && be2.stat("view_epoch") == 10; }));
    auto on_be2 = be2.client();
    ASSERT_EQ(on_be2->store("add", lock_key("live"), "1", 0, 30), "STORED\r\n");
    auto on_be1 = be1.client();

    const std::string huge_epoch =
        "{\"cluster\":\"web\",\"epoch\":18446744073709551615,\"written_ms\":" + std::to_string(wall_clock_ms()) +
        ",\"backends\":{\"be2\":{\"state\":\"down\",\"incarnation\":1}}}";
    const session::SigningKey key = session::SigningKey::load(key_path_);
    const std::vector<std::pair<std::string, std::string>> forgeries = {
        {"unsigned", session::encode_view(view(11, MemberState::down, wall_clock_ms()))},
        {"bad_signature", session::store_view(&attackers_key(), view(11, MemberState::down, wall_clock_ms()))},
        {"stale", signed_view(11, MemberState::down, wall_clock_ms() - 365LL * 24 * 3600 * 1000)},
        {"future", signed_view(11, MemberState::down, std::numeric_limits<std::int64_t>::max())},
        {"malformed", session::sign_value(&key, session::members_key("web"), huge_epoch)},
        {"epoch_regressed", signed_view(9, MemberState::down, wall_clock_ms())},
    };
    for (const auto& [reason, stored] : forgeries) {
        const std::uint64_t before = be1.stat("memcached_rejected_" + reason);
        put_view(stored);
        EXPECT_TRUE(eventually([&] { return be1.stat("memcached_rejected_" + reason) > before; }))
            << reason << " was not refused";
        EXPECT_EQ(on_be1->store("add", lock_key("live"), "1", 0, 30), "NOT_STORED\r\n")
            << "a " << reason << " view broke a live lock";
    }
    EXPECT_EQ(be1.stat("locks_broken_owner_down"), 0u);
    EXPECT_EQ(be1.stat("view_epoch"), 10u);

    // The real writer's next view is taken at once.
    put_view(signed_view(11, MemberState::down, wall_clock_ms()));
    ASSERT_TRUE(eventually([&] { return be1.stat("view_epoch") == 11; }));
    EXPECT_EQ(on_be1->store("add", lock_key("live"), "1", 0, 30), "STORED\r\n");
    EXPECT_EQ(be1.stat("locks_broken_owner_down"), 1u);
}

// ------------------------------------------------------------ what a connection keeps

TEST(ClientStateBounds, ReadsAndLockAttemptsOfOneConnectionAreBoundedAndHoldNoPayload) {
    ClientState state;
    for (int i = 0; i < 200000; ++i) {
        ClientState::SessionRead read;
        read.newest = SessionRecord{1, 1, std::string(100, 'p'), false};
        state.remember_read("sid" + std::to_string(i), std::move(read));
        state.first_lock_attempt("lock" + std::to_string(i), std::chrono::steady_clock::now());
    }
    EXPECT_LE(state.reads.size(), ClientState::kMaxKept);
    EXPECT_LE(state.lock_attempts.size(), ClientState::kMaxKept);
    ASSERT_TRUE(state.reads.contains("sid199999")) << "the latest read must be kept";
    EXPECT_TRUE(state.reads.at("sid199999").newest->payload.empty());
    EXPECT_TRUE(state.lock_attempts.contains("lock199999"));
}

}  // namespace
}  // namespace stickylb::agent
