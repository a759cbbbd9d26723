// SPDX-License-Identifier: Apache-2.0
// What stickylbd and the agents read back from memcached is input from anyone
// who can write to memcached: the MAC over views and snapshots, the key file's
// checks, freshness and epoch rules, counters that cannot wrap, and snapshot
// manifests whose sizes are checked before anything is allocated. The store
// part runs against real memcached processes on loopback.
#include <arpa/inet.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>

#include "session/affinity_snapshot.h"
#include "session/affinity_store.h"
#include "session/membership.h"
#include "session/memcached_client.h"
#include "session/membership_view.h"
#include "session/signed_value.h"
#include "support/memcached_process.h"

namespace stickylb {
namespace {

using namespace std::chrono_literals;
using session::MembershipView;
using session::MemberState;
using session::Rejection;
using session::SigningKey;

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

const SigningKey kKey{"0123456789abcdef-a-test-key"};

std::string key_file(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = ::testing::TempDir() + "/" + name + "-" + std::to_string(::getpid());
    std::filesystem::remove(path);
    std::ofstream(path) << content;
    ::chmod(path.c_str(), mode);
    return path;
}

// ------------------------------------------------------------ MAC

TEST(SignedValue, WithAKeyOnlyValuesItSignedUnderTheSameMemcachedKeyAreTaken) {
    const std::string stored = session::sign_value(&kKey, "stickylb:v1:members:web", "{\"x\":1}");
    ASSERT_TRUE(stored.starts_with(session::kSignedValueMagic));
    const auto opened = session::open_value(&kKey, "stickylb:v1:members:web", stored);
    EXPECT_FALSE(opened.rejected);
    EXPECT_EQ(opened.payload, "{\"x\":1}");

    std::string tampered = stored;
    tampered.back() = '2';
    EXPECT_EQ(session::open_value(&kKey, "stickylb:v1:members:web", tampered).rejected, Rejection::bad_signature);
    EXPECT_EQ(session::open_value(&kKey, "stickylb:v1:members:api", stored).rejected, Rejection::bad_signature)
        << "a value moved to another key";
    const SigningKey other{"another-key-of-enough-bytes"};
    EXPECT_EQ(session::open_value(&other, "stickylb:v1:members:web", stored).rejected, Rejection::bad_signature);
    EXPECT_EQ(session::open_value(&kKey, "stickylb:v1:members:web", "{\"x\":1}").rejected, Rejection::unsigned_value);
    EXPECT_EQ(session::open_value(&kKey, "k", std::string(session::kSignedValueMagic) + "abc").rejected,
              Rejection::malformed);
    // Without a key: the payload either way (nothing to check it with).
    EXPECT_EQ(session::open_value(nullptr, "k", "plain").payload, "plain");
    EXPECT_EQ(session::open_value(nullptr, "stickylb:v1:members:web", stored).payload, "{\"x\":1}");
    EXPECT_EQ(session::sign_value(nullptr, "k", "plain"), "plain");
}

TEST(SigningKey, TheKeyFileMustBeTheOwnersAloneAndOfASaneSize) {
    EXPECT_NO_THROW(SigningKey::load(key_file("good", "0123456789abcdef\n", 0600)));
    EXPECT_NO_THROW(SigningKey::load(key_file("owner-only", "0123456789abcdef", 0400)));
    const auto refused = [](const std::string& path, const std::string& why) {
        try {
            SigningKey::load(path);
            ADD_FAILURE() << path << " was accepted";
        } catch (const std::runtime_error& error) {
            EXPECT_NE(std::string(error.what()).find(why), std::string::npos) << error.what();
            EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << "names the file: " << error.what();
        }
    };
    refused(key_file("group", "0123456789abcdef", 0640), "group or others");
    refused(key_file("world", "0123456789abcdef", 0604), "group or others");
    refused(key_file("short", "too short", 0600), "too short");
    refused(key_file("large", std::string(5000, 'k'), 0600), "larger than");
    refused(::testing::TempDir(), "not a regular file");
    refused("/nonexistent/stickylb.key", "No such file");
}

// ------------------------------------------------------------ views

MembershipView web_view(std::uint64_t epoch, std::int64_t written_ms) {
    return MembershipView{"web", epoch, written_ms, {{"be1", {MemberState::up, 1}}}};
}

TEST(ViewReading, ViewsAreTakenOnlyFreshSignedForTheirOwnKeyAndWithinTheCounterLimits) {
    const std::string key = session::members_key("web");
    const std::int64_t now = now_ms();
    const auto read = [&](const std::string& stored) {
        return session::read_stored_view(&kKey, key, stored, now, 15s);
    };

    EXPECT_TRUE(read(session::store_view(&kKey, web_view(7, now - 2000))).view);
    EXPECT_EQ(read(session::encode_view(web_view(7, now))).rejected, Rejection::unsigned_value);
    EXPECT_EQ(read(session::store_view(&kKey, web_view(7, now - 365LL * 24 * 3600 * 1000))).rejected, Rejection::stale);
    EXPECT_EQ(read(session::store_view(&kKey, web_view(7, std::numeric_limits<std::int64_t>::max()))).rejected,
              Rejection::future);
    EXPECT_EQ(read(session::store_view(&kKey, web_view(7, std::numeric_limits<std::int64_t>::min()))).rejected,
              Rejection::stale);
    // An epoch that the next change would wrap, signed even: refused as out of range.
    const std::string huge =
        "{\"cluster\":\"web\",\"epoch\":18446744073709551615,\"written_ms\":" + std::to_string(now) +
        ",\"backends\":{}}";
    EXPECT_EQ(read(session::sign_value(&kKey, key, huge)).rejected, Rejection::malformed);
    // Another cluster's view under this key (signed for this key by someone holding it: still refused).
    MembershipView api = web_view(7, now);
    api.cluster = "api";
    EXPECT_EQ(read(session::sign_value(&kKey, key, session::encode_view(api))).rejected, Rejection::malformed);
    // Without a key the same rules of freshness and range hold.
    EXPECT_EQ(session::read_stored_view(nullptr, key, session::sign_value(nullptr, key, huge), now, 15s).rejected,
              Rejection::malformed);
    EXPECT_EQ(
        session::read_stored_view(nullptr, key, session::encode_view(web_view(1, now - 60'000)), now, 15s).rejected,
        Rejection::stale);
}

TEST(EpochFloor, AnEpochBelowTheHighestSeenIsRefusedUntilItsWriterHasBeenGoneLongEnough) {
    session::EpochFloor floor(10s);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(floor.admit(web_view(12, 0), t0));
    EXPECT_TRUE(floor.admit(web_view(12, 0), t0 + 1s)) << "the same epoch again: the writer refreshing";
    EXPECT_FALSE(floor.admit(web_view(11, 0), t0 + 2s)) << "a replayed older view";
    EXPECT_TRUE(floor.admit(web_view(13, 0), t0 + 3s));
    EXPECT_FALSE(floor.admit(web_view(2, 0), t0 + 12s)) << "13 was seen 9 s ago";
    EXPECT_TRUE(floor.admit(web_view(2, 0), t0 + 14s)) << "13 not seen for 11 s: a writer that lost its count";
    EXPECT_EQ(floor.floor("web"), 2u);
    MembershipView api = web_view(1, 0);
    api.cluster = "api";
    EXPECT_TRUE(floor.admit(api, t0 + 14s)) << "clusters have floors of their own";
}

TEST(MembershipCounters, NoEpochOrIncarnationCanWrap) {
    EXPECT_EQ(session::next_counter(1), 2u);
    EXPECT_THROW(session::next_counter(session::kMaxViewCounter), std::overflow_error);
    MembershipBook book;
    EXPECT_THROW(
        book.load_json(nlohmann::json::parse(R"({"web":{"epoch":18446744073709551615,"backends":{},"retired":{}}})")),
        std::runtime_error);
    EXPECT_THROW(book.load_json(nlohmann::json::parse(
                     R"({"web":{"epoch":3,"backends":{"be1":{"state":"up","incarnation":18446744073709551615}}}})")),
                 std::runtime_error);
    // The largest view a reader takes still leaves room for the next change.
    book.recover(MembershipView{"web", session::kMaxViewCounter - 1, 0, {{"be1", {MemberState::up, 1}}}});
    EXPECT_EQ(book.update({{"web", {{"be1", MemberState::down}}}}), std::vector<std::string>{"web"});
    EXPECT_EQ(book.find("web")->epoch, session::kMaxViewCounter);
    EXPECT_THROW(book.update({{"web", {{"be1", MemberState::up}}}}), std::overflow_error);
}

// ------------------------------------------------------------ affinity snapshots

AffinitySnapshot two_clients(std::int64_t seen_ms) {
    AffinitySnapshot snapshot;
    snapshot.vips = {"web"};
    snapshot.backends = {"be1"};
    snapshot.entries = {{0, 0, IpAddress::parse("10.0.0.1"), seen_ms}, {0, 0, IpAddress::parse("10.0.0.2"), seen_ms}};
    return snapshot;
}

std::string manifest_with(const std::string& chunks_json, std::int64_t written_ms) {
    return R"({"format":1,"generation":"0000000000000001","written_ms":)" + std::to_string(written_ms) +
           R"(,"vips":["web"],"backends":["be1"],"chunks":)" + chunks_json + "}";
}

Rejection rejection_of(const std::function<void()>& parse) {
    try {
        parse();
    } catch (const SnapshotError& error) {
        return error.reason().value_or(Rejection::malformed);
    }
    ADD_FAILURE() << "accepted";
    return Rejection::malformed;
}

TEST(SnapshotBounds, CountsAreCheckedAgainstTheBytesAndTheTableBeforeAnythingIsAllocated) {
    const std::int64_t now = now_ms();
    SnapshotLimits limits;
    limits.max_entries = 1000;
    const auto parse = [&](const std::string& text) { return [&, text] { parse_manifest(text, limits, now); }; };
    // The forged manifest of 4294967295 entries: refused from its numbers alone.
    EXPECT_EQ(rejection_of(
                  parse(manifest_with(R"([{"entries":4294967295,"bytes":262144,"fnv1a":"0000000000000000"}])", now))),
              Rejection::too_large);
    EXPECT_EQ(rejection_of(parse(manifest_with(R"([{"entries":10,"bytes":40,"fnv1a":"0000000000000000"}])", now))),
              Rejection::too_large)
        << "10 entries cannot fit in 40 bytes";
    EXPECT_EQ(
        rejection_of(parse(manifest_with(R"([{"entries":1,"bytes":4294967295,"fnv1a":"0000000000000000"}])", now))),
        Rejection::too_large);
    std::string many = "[";
    for (int i = 0; i < 3; ++i)
        many += std::string(i ? "," : "") + R"({"entries":400,"bytes":262144,"fnv1a":"0000000000000000"})";
    EXPECT_EQ(rejection_of(parse(manifest_with(many + "]", now))), Rejection::too_large) << "1200 over a table of 1000";
    EXPECT_EQ(rejection_of(parse(manifest_with("[]", std::numeric_limits<std::int64_t>::max()))), Rejection::future);
    EXPECT_EQ(rejection_of(parse(R"({"format":1,"generation":"0000000000000001","written_ms":1,"vips":["bad name"],)"
                                 R"("backends":[],"chunks":[]})")),
              Rejection::malformed);
    EXPECT_NO_THROW(parse_manifest(manifest_with("[]", now - 3600'000), limits, now)) << "an old snapshot is fine";
    // Numbers that are not integers in range (found by affinity_snapshot_fuzz: a float
    // written_ms was converted out of range, undefined behaviour).
    EXPECT_EQ(rejection_of(parse(R"({"format":1,"generation":"0000000000000001","written_ms":1.8e21,"vips":[],)"
                                 R"("backends":[],"chunks":[]})")),
              Rejection::malformed);
    EXPECT_EQ(rejection_of(parse(manifest_with(R"([{"entries":1.5,"bytes":262144,"fnv1a":"0000000000000000"}])", now))),
              Rejection::malformed);
    EXPECT_EQ(rejection_of(parse(manifest_with(R"([{"entries":-1,"bytes":262144,"fnv1a":"0000000000000000"}])", now))),
              Rejection::malformed);
}

TEST(SnapshotBounds, EntriesSeenAfterTheSnapshotWasWrittenOrOutOfRangeRejectTheSnapshot) {
    const std::int64_t now = now_ms();
    const EncodedSnapshot after = encode_snapshot(two_clients(now + 60'000), 1, now);
    EXPECT_THROW(decode_snapshot(after.manifest, {after.chunks.begin(), after.chunks.end()}), SnapshotError);
    // A chunk whose base time plus an entry's offset leaves the 64-bit range.
    const EncodedSnapshot edge = encode_snapshot(two_clients(std::numeric_limits<std::int64_t>::max() - 5), 1,
                                                 std::numeric_limits<std::int64_t>::max());
    std::string chunk = edge.chunks[0];
    chunk.back() = 0x7e;  // the last entry's zigzag offset: +63
    SnapshotManifest manifest = edge.manifest;
    manifest.chunks[0].checksum = [&] {
        std::uint64_t hash = 0xcbf29ce484222325ull;
        for (const unsigned char byte : chunk)
            hash = (hash ^ byte) * 0x100000001b3ull;
        return hash;
    }();
    EXPECT_THROW(decode_snapshot(manifest, {chunk}), SnapshotError);
    const EncodedSnapshot fine = encode_snapshot(two_clients(now - 1000), 1, now);
    EXPECT_EQ(decode_snapshot(fine.manifest, {fine.chunks.begin(), fine.chunks.end()}), two_clients(now - 1000));
}

class SignedStore : public ::testing::Test {
protected:
    void SetUp() override { STICKYLB_REQUIRE_MEMCACHED(); }
    static std::shared_ptr<MemcachedLink> link_to(const std::string& server) {
        MemcachedLinkOptions options;
        options.timeouts = {200ms, 500ms};
        return std::make_shared<MemcachedLink>(server, options);
    }
};

TEST_F(SignedStore, WithAKeyAForgedSnapshotIsRefusedAndCountedAndASignedOneLoads) {
    testing::MemcachedProcess server;
    const auto link = link_to(server.address());
    const AffinityStore signed_store({link}, 30s, kDefaultChunkBytes, &kKey);
    ASSERT_FALSE(signed_store.save(two_clients(now_ms() - 1000), 600s).servers_written.empty());
    const SnapshotLoadResult loaded = signed_store.load();
    ASSERT_TRUE(loaded.snapshot) << (loaded.errors.empty() ? "" : loaded.errors.front());
    EXPECT_EQ(loaded.snapshot->entries.size(), 2u);

    // Someone writes their own snapshot, unsigned: 100,000 clients on be1.
    AffinitySnapshot forged = two_clients(now_ms());
    forged.entries.clear();
    for (std::uint32_t i = 0; i < 100'000; ++i) {
        stickylb_addr address{};
        address.v4 = htonl(0x0a000000 + i);
        forged.entries.push_back({0, 0, IpAddress::from_abi(address, STICKYLB_FAMILY_IPV4), now_ms()});
    }
    ASSERT_FALSE(AffinityStore({link}, 30s).save(forged, 600s).servers_written.empty());
    SnapshotLoadResult refused = signed_store.load();
    EXPECT_FALSE(refused.snapshot) << "an unsigned snapshot was taken";
    EXPECT_EQ(refused.rejected, std::vector<Rejection>{Rejection::unsigned_value});

    // A signed manifest over chunks someone replaced: the chunk's own MAC refuses it.
    ASSERT_FALSE(signed_store.save(two_clients(now_ms() - 1000), 600s).servers_written.empty());
    MemcachedClient client(server.address(), {});
    const auto manifest = client.get(kAffinityManifestKey);
    ASSERT_TRUE(manifest);
    const SnapshotManifest parsed =
        parse_manifest(session::open_value(&kKey, kAffinityManifestKey, *manifest).payload, {}, now_ms());
    const EncodedSnapshot other = encode_snapshot(forged, parsed.generation, now_ms());
    client.set(affinity_chunk_key(parsed.generation, 0), other.chunks[0], 600s);
    refused = signed_store.load();
    EXPECT_FALSE(refused.snapshot);
    EXPECT_EQ(refused.rejected, std::vector<Rejection>{Rejection::unsigned_value});
}

TEST_F(SignedStore, WithoutAKeyASnapshotFromTheFutureNeverWinsOverARealOne) {
    testing::MemcachedProcess real_server, forged_server;
    const auto real = link_to(real_server.address());
    const auto forged = link_to(forged_server.address());
    ASSERT_FALSE(AffinityStore({real}, 30s).save(two_clients(now_ms() - 1000), 600s).servers_written.empty());
    MemcachedClient(forged_server.address(), {})
        .set(kAffinityManifestKey, manifest_with("[]", std::numeric_limits<std::int64_t>::max()), 600s);
    const SnapshotLoadResult loaded = AffinityStore({forged, real}, 30s).load();
    ASSERT_TRUE(loaded.snapshot);
    EXPECT_EQ(loaded.server, real_server.address());
    EXPECT_EQ(loaded.rejected, std::vector<Rejection>{Rejection::future});
}

}  // namespace
}  // namespace stickylb
