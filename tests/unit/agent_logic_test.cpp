// SPDX-License-Identifier: Apache-2.0
// stickylb-agent's pure parts: settings, key classes, placement, lock tags and
// the rules for breaking a lock, session records, the remembered sessions.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "agent/agent_config.h"
#include "agent/lock_tag.h"
#include "agent/placement.h"
#include "agent/recent_sessions.h"
#include "agent/session_keys.h"
#include "agent/session_record.h"
#include "agent/session_resync.h"

namespace stickylb::agent {
namespace {

using session::Member;
using session::MembershipView;
using session::MemberState;

ParsedArgs parse(std::vector<std::string> args) {
    args.insert(args.begin(), "stickylb-agent");
    std::vector<char*> argv;
    for (std::string& arg : args)
        argv.push_back(arg.data());
    argv.push_back(nullptr);
    return parse_agent_args(static_cast<int>(args.size()), argv.data());
}

std::string parse_error(std::vector<std::string> args) {
    try {
        parse(std::move(args));
    } catch (const AgentConfigError& error) {
        return error.what();
    }
    return "(accepted)";
}

TEST(AgentConfig, FlagsSetEverySetting) {
    ParsedArgs parsed = parse({"--backend", "be1", "--cluster", "web", "--upstream", "10.0.0.1:11211", "--upstream",
                               "[fd00::1]:11211", "--listen", "127.0.0.1:11400", "--lock-wait", "250ms", "--lock-lease",
                               "3s", "--replicas", "1", "--metrics-listen", "off"});
    const AgentConfig& c = parsed.config;
    EXPECT_EQ(c.backend, "be1");
    EXPECT_EQ(c.cluster, "web");
    EXPECT_EQ(c.upstreams, (std::vector<std::string>{"10.0.0.1:11211", "[fd00::1]:11211"}));
    EXPECT_EQ(c.listen, "127.0.0.1:11400");
    EXPECT_EQ(c.lock_wait, std::chrono::milliseconds(250));
    EXPECT_EQ(c.lock_lease, std::chrono::seconds(3));
    EXPECT_EQ(c.replicas, 1u);
    EXPECT_EQ(c.metrics_listen, "off");
}

TEST(AgentConfig, BadInputIsExplained) {
    EXPECT_EQ(parse_error({"--cluster", "web", "--upstream", "h:1"}), "--backend is required");
    EXPECT_EQ(parse_error({"--backend", "be1", "--cluster", "web"}), "at least one --upstream is required");
    EXPECT_EQ(parse_error({"--backend", "be 1", "--cluster", "web", "--upstream", "h:1"}),
              "--backend: name has a space, control or non-ASCII character");
    EXPECT_EQ(parse_error({"--backend", "be1", "--cluster", "web", "--upstream", "h:1", "--replicas", "2"}),
              "--replicas must be 1..1 (the number of upstream servers)");
    EXPECT_NE(parse_error({"--backend", "be1", "--cluster", "web", "--upstream", "h:1", "--lock-wait", "soon"})
                  .find("lock_wait"),
              std::string::npos);
    EXPECT_EQ(parse_error({"--backend", "be1", "--cluster", "web", "--upstream", "h:1", "--bogus"}),
              "unknown option --bogus (see --help)");
    EXPECT_EQ(parse_error({"--backend"}), "option --backend needs a value");
    EXPECT_NE(parse_error({"--backend", "be1", "--cluster", "web", "--upstream", "nohost"}).find("--upstream"),
              std::string::npos);
}

TEST(AgentConfig, FileSettingsAndFlagsOverThem) {
    std::string path = ::testing::TempDir() + "/agent.yaml";
    std::ofstream(path)
        << "backend: be7\ncluster: shop\nupstreams: [10.0.0.1:11211, 10.0.0.2:11211]\nlock_wait: 40ms\n";
    ParsedArgs parsed = parse({"--config", path, "--lock-wait", "80ms"});
    EXPECT_EQ(parsed.config.backend, "be7");
    EXPECT_EQ(parsed.config.cluster, "shop");
    EXPECT_EQ(parsed.config.upstreams.size(), 2u);
    EXPECT_EQ(parsed.config.lock_wait, std::chrono::milliseconds(80));
    std::ofstream(path) << "backend: be7\ncluster: shop\nupstreams: [10.0.0.1:11211]\nlock_wiat: 40ms\n";
    EXPECT_EQ(parse_error({"--config", path}), path + ":4: lock_wiat: unknown setting 'lock_wiat'");
}

// A config file that is not a mapping of plain settings, or not a file, is a
// located error, never an abort.
TEST(AgentConfig, OddFilesAreLocatedErrors) {
    std::string path = ::testing::TempDir() + "/agent-odd.yaml";
    std::ofstream(path) << "? [a,b]\n: x\n";
    EXPECT_EQ(parse_error({"--config", path}), path + ":1: a setting's name must be a plain word");
    std::ofstream(path) << "backend: [be1]\n";
    EXPECT_EQ(parse_error({"--config", path}), path + ":1: backend: expected a single value");
    std::ofstream(path) << "backend: \"be\\u0000\"\n";
    EXPECT_EQ(parse_error({"--config", path}), path + ":1: backend: contains a control character (0x00) at byte 2");
    EXPECT_EQ(parse_error({"--config", ::testing::TempDir()}),
              ::testing::TempDir() + ": is a directory, not a regular file");
    EXPECT_EQ(parse_error({"--config", "/dev/zero"}), "/dev/zero: is a character device, not a regular file");
}

// The man page documents every long option the agent accepts, and no other.
TEST(AgentConfig, ManPageListsEveryOption) {
    std::ifstream man(STICKYLB_SOURCE_DIR "/docs/man/stickylb-agent.8");
    std::stringstream text;
    text << man.rdbuf();
    std::set<std::string> in_man, in_usage;
    // roff spells a hyphen "\-".
    std::string page = std::regex_replace(text.str(), std::regex(R"(\\-)"), "-");
    std::regex option(R"(--([a-z][a-z-]*))");
    for (std::sregex_iterator it(page.begin(), page.end(), option), end; it != end; ++it)
        in_man.insert((*it)[1]);
    std::regex usage_option(R"(--([a-z][a-z-]*))");
    std::string usage = usage_text();
    for (std::sregex_iterator it(usage.begin(), usage.end(), usage_option), end; it != end; ++it) {
        in_usage.insert((*it)[1]);
    }
    EXPECT_EQ(in_man, in_usage);
    EXPECT_GE(in_usage.size(), 15u);
}

TEST(RecentSessions, KeepsTheMostRecentlyServedUpToItsCapacity) {
    RecentSessions recent(3);
    for (std::string sid : {"a", "b", "c"})
        recent.remember(sid);
    EXPECT_EQ(recent.snapshot(), (std::vector<std::string>{"c", "b", "a"}));
    recent.remember("a");  // served again: the most recent now
    recent.remember("d");  // over capacity: the least recent (b) is forgotten
    EXPECT_EQ(recent.snapshot(), (std::vector<std::string>{"d", "a", "c"}));
    EXPECT_EQ(recent.size(), 3u);
    for (int i = 0; i < 1000; ++i)
        recent.remember("s" + std::to_string(i));
    EXPECT_EQ(recent.snapshot(), (std::vector<std::string>{"s999", "s998", "s997"}));
    recent.remember("e");
    recent.remember("f");
    EXPECT_EQ(recent.snapshot(), (std::vector<std::string>{"f", "e", "s999"}));
}

TEST(RecentSessions, CapacityZeroRemembersNothing) {
    RecentSessions recent(0);
    recent.remember("a");
    EXPECT_EQ(recent.size(), 0u);
    EXPECT_TRUE(recent.snapshot().empty());
}

TEST(AgentConfig, ResyncSettings) {
    const std::vector<std::string> required = {"--backend",  "be1", "--cluster",  "web",
                                               "--upstream", "h:1", "--upstream", "h:2"};
    auto with = [&](std::vector<std::string> extra) {
        extra.insert(extra.begin(), required.begin(), required.end());
        return extra;
    };
    ParsedArgs parsed = parse(with({"--resync-sessions", "500", "--resync-rate", "300"}));
    EXPECT_EQ(parsed.config.resync_sessions, 500u);
    EXPECT_EQ(parsed.config.resync_rate, 300u);
    EXPECT_EQ(parse(required).config.resync_sessions, 100000u);
    EXPECT_EQ(parse(with({"--resync-sessions", "0"})).config.resync_sessions, 0u);
    EXPECT_EQ(parse_error(with({"--resync-rate", "0"})), "--resync-rate must be 1..100000 sessions per second");
}

TEST(ReturnDetector, SaysWhenAServerIsBackOrRestarted) {
    ReturnDetector detector;
    auto answered = [](std::string pid, std::uint64_t uptime, std::uint64_t connect_failures = 0) {
        return ServerProbe{true, std::move(pid), uptime, connect_failures};
    };
    EXPECT_EQ(detector.observe(answered("100", 50)), std::nullopt);  // first sight: nothing missed
    EXPECT_EQ(detector.observe(answered("100", 51)), std::nullopt);
    // Unreachable for a while, then back (same process: a network outage).
    EXPECT_EQ(detector.observe(ServerProbe{false, "", 0, 1}), std::nullopt);
    EXPECT_EQ(detector.observe(ServerProbe{false, "", 0, 2}), std::nullopt);
    EXPECT_EQ(detector.observe(answered("100", 60, 2)), "reachable again");
    EXPECT_EQ(detector.observe(answered("100", 61, 2)), std::nullopt);
    // Restarted between two probes, faster than any request noticed: a new pid.
    EXPECT_EQ(detector.observe(answered("200", 1, 2)), "restarted (pid 100 -> 200)");
    EXPECT_EQ(detector.observe(answered("200", 2, 2)), std::nullopt);
    // Same pid (a container's pid 1), uptime gone backwards: restarted too.
    EXPECT_EQ(detector.observe(answered("200", 0, 2)), "restarted (pid 200 -> 200)");
    // The agent's own requests failed to connect between two probes that both answered.
    EXPECT_EQ(detector.observe(answered("200", 5, 3)), "reachable again");
    EXPECT_EQ(detector.observe(answered("200", 6, 3)), std::nullopt);
}

TEST(SessionKeys, ClassifiesThePhpHandlersKeys) {
    EXPECT_EQ(classify_key("memc.sess.key.abc123", kDefaultSessionPrefix).kind, SessionKey::Kind::data);
    EXPECT_EQ(classify_key("memc.sess.key.abc123", kDefaultSessionPrefix).session_id, "abc123");
    SessionKey lock = classify_key("memc.sess.key.lock.abc123", kDefaultSessionPrefix);
    EXPECT_EQ(lock.kind, SessionKey::Kind::lock);
    EXPECT_EQ(lock.session_id, "abc123");
    EXPECT_EQ(classify_key("user:1", kDefaultSessionPrefix).kind, SessionKey::Kind::other);
    EXPECT_EQ(classify_key("memc.sess.key.", kDefaultSessionPrefix).kind, SessionKey::Kind::other);
    EXPECT_EQ(classify_key("memc.sess.key.lock.", kDefaultSessionPrefix).kind, SessionKey::Kind::other);
    EXPECT_EQ(lock_key_of(kDefaultSessionPrefix, "abc123"), "memc.sess.key.lock.abc123");
}

TEST(Placement, RankingIsStableBalancedAndMovesOnlyARemovedServersKeys) {
    std::vector<std::string> names = {"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"};
    std::vector<std::string_view> three(names.begin(), names.end());
    std::vector<std::string_view> reversed(three.rbegin(), three.rend());
    std::vector<std::string_view> two = {three[0], three[2]};
    std::map<std::string_view, int> primaries;
    int moved_without_reason = 0;
    for (int i = 0; i < 30000; ++i) {
        std::string key = "memc.sess.key." + std::to_string(i);
        std::string_view first = three[rank_servers(three, key)[0]];
        EXPECT_EQ(reversed[rank_servers(reversed, key)[0]], first);  // list order does not matter
        ++primaries[first];
        std::string_view after = two[rank_servers(two, key)[0]];
        if (first != three[1] && after != first)
            ++moved_without_reason;
    }
    EXPECT_EQ(moved_without_reason, 0);
    for (const auto& [server, count] : primaries)
        EXPECT_NEAR(count, 10000, 500) << server;
    // Part of the contract between agents on different hosts: fixed values.
    EXPECT_EQ(placement_score("a", "b"), placement_score("a", "b"));
    EXPECT_NE(placement_score("ab", "c"), placement_score("a", "bc"));
}

TEST(LockTag, RoundTripsAndRejectsOtherValues) {
    LockTag tag{"be3", 7, 0x0123456789abcdefULL, 42};
    std::string text = encode_lock_tag(tag);
    EXPECT_EQ(text, "slb1 be3 7 0123456789abcdef 000000000000002a");
    EXPECT_EQ(parse_lock_tag(text), tag);
    for (std::string bad : {"1", "", "slb1 be3 7 0123456789abcdef", "slb2 be3 7 1 2", "slb1 be3 x 1 2",
                            "slb1 be3 7 1 2 extra", "slb1 be3 -1 1 2", "slb1  7 1 2"}) {
        EXPECT_FALSE(parse_lock_tag(bad).has_value()) << bad;
    }
}

TEST(LockTag, BreakRules) {
    LocalIdentity self{"be1", 100};
    MembershipView view{"web",
                        5,
                        0,
                        {{"be1", Member{MemberState::up, 2}},
                         {"be2", Member{MemberState::up, 3}},
                         {"be3", Member{MemberState::down, 1}},
                         {"be4", Member{MemberState::draining, 1}}}};
    auto reason = [&](LockTag tag, bool held_here = false, bool with_view = true) {
        return break_reason(tag, with_view ? std::optional(view) : std::nullopt, self, held_here);
    };
    EXPECT_EQ(reason({"be2", 3, 200, 1}), BreakReason::none);  // live, current
    EXPECT_EQ(reason({"be3", 1, 300, 1}), BreakReason::owner_down);
    EXPECT_EQ(reason({"be2", 2, 200, 1}), BreakReason::stale_incarnation);
    EXPECT_EQ(reason({"be2", 0, 200, 1}), BreakReason::none);             // incarnation unknown when taken
    EXPECT_EQ(reason({"be4", 1, 400, 1}), BreakReason::none);             // draining still serves
    EXPECT_EQ(reason({"be9", 1, 900, 1}), BreakReason::none);             // not in the view
    EXPECT_EQ(reason({"be1", 2, 99, 1}), BreakReason::agent_restarted);   // our backend, earlier agent
    EXPECT_EQ(reason({"be1", 2, 100, 1}, false), BreakReason::orphaned);  // ours, no live holder
    EXPECT_EQ(reason({"be1", 2, 100, 1}, true), BreakReason::none);       // ours, held
    // Without a view only this host's own knowledge counts.
    EXPECT_EQ(reason({"be3", 1, 300, 1}, false, false), BreakReason::none);
    EXPECT_EQ(reason({"be1", 2, 99, 1}, false, false), BreakReason::agent_restarted);
}

TEST(SessionRecord, RoundTripsAndReadsForeignValuesAsVersionZero) {
    SessionRecord record{41, 0xfeedULL, std::string("n|i:3;\0\r\nbinary", 15)};
    std::string stored = encode_session_record(record);
    EXPECT_EQ(stored.size(), kSessionRecordHeaderBytes + record.payload.size());
    EXPECT_EQ(decode_session_record(stored), record);
    EXPECT_EQ(decode_session_record("n|i:3;"), (SessionRecord{0, 0, "n|i:3;"}));
    EXPECT_EQ(decode_session_record(""), (SessionRecord{0, 0, ""}));
    EXPECT_TRUE(newer_than({2, 1, ""}, {1, 9, ""}));
    EXPECT_TRUE(newer_than({2, 9, ""}, {2, 1, ""}));
    EXPECT_FALSE(newer_than({2, 1, ""}, {2, 1, ""}));
}

// Records written before tombstones existed decode exactly as before; the
// bytes of a live record are unchanged.
TEST(SessionRecord, ExistingRecordsKeepTheirEncoding) {
    std::string legacy("SLB\x01", 4);
    for (int i = 0; i < 8; ++i)
        legacy.push_back(i == 0 ? '\x07' : '\0');  // version 7
    for (int i = 0; i < 8; ++i)
        legacy.push_back(i == 0 ? '\x2a' : '\0');  // write id 42
    legacy += "a|s:1:\"b\";";
    EXPECT_EQ(decode_session_record(legacy), (SessionRecord{7, 42, "a|s:1:\"b\";", false}));
    EXPECT_EQ(encode_session_record({7, 42, "a|s:1:\"b\";"}), legacy);
}

TEST(SessionRecord, ATombstoneRoundTripsWithoutPayloadAndOrdersLikeAWrite) {
    const SessionRecord tombstone{8, 0xabcULL, "", true};
    const std::string stored = encode_session_record(tombstone);
    EXPECT_EQ(stored.size(), kSessionRecordHeaderBytes);
    EXPECT_EQ(stored.substr(0, 4), std::string("SLB\x02", 4));
    EXPECT_EQ(decode_session_record(stored), tombstone);
    // A payload given to a tombstone is not stored.
    EXPECT_EQ(decode_session_record(encode_session_record({8, 0xabcULL, "left over", true})), tombstone);
    // Above the copy it deletes, below the write that follows it.
    EXPECT_TRUE(newer_than(tombstone, {7, 0xfffULL, "old session"}));
    EXPECT_TRUE(newer_than({9, 1, "new session"}, tombstone));
    // Too short for a header: a foreign value, not a tombstone.
    EXPECT_EQ(decode_session_record(stored.substr(0, 10)), (SessionRecord{0, 0, stored.substr(0, 10), false}));
}

}  // namespace
}  // namespace stickylb::agent
