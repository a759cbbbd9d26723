// SPDX-License-Identifier: Apache-2.0
// Affinity snapshots: bounded chunks, a round trip of many entries, torn
// snapshots rejected whole, clock conversion, and what a restore skips; then the
// store against real memcached processes on loopback (several servers, one
// unreachable, an old snapshot cleaned up).
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "session/affinity_snapshot.h"
#include "session/affinity_store.h"
#include "support/memcached_process.h"

namespace stickylb {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1763700000000;  // wall clock, ms

// n entries over two VIPs and three backends, IPv4 and IPv6 clients.
AffinitySnapshot many(std::size_t n) {
    AffinitySnapshot snapshot;
    snapshot.vips = {"web", "api"};
    snapshot.backends = {"be1", "be2", "be3"};
    std::mt19937 random(7);
    for (std::size_t i = 0; i < n; ++i) {
        stickylb_addr address{};
        std::uint8_t family = STICKYLB_FAMILY_IPV4;
        if (i % 3 == 0) {
            family = STICKYLB_FAMILY_IPV6;
            for (auto& word : address.v6)
                word = random();
        } else {
            address.v4 = random();
        }
        snapshot.entries.push_back({static_cast<std::uint32_t>(i % 2), static_cast<std::uint32_t>(i % 3),
                                    IpAddress::from_abi(address, family),
                                    kNow - static_cast<std::int64_t>(random() % 3'600'000)});
    }
    return snapshot;
}

std::vector<std::optional<std::string>> present(const EncodedSnapshot& encoded) {
    return {encoded.chunks.begin(), encoded.chunks.end()};
}

TEST(AffinitySnapshot, ChunksAreBoundedAndRoundTripManyEntries) {
    const AffinitySnapshot snapshot = many(100'000);
    const EncodedSnapshot encoded = encode_snapshot(snapshot, 0x1234'5678'9abc'def0, kNow, 64 * 1024);
    ASSERT_GT(encoded.chunks.size(), 5u);
    for (const std::string& chunk : encoded.chunks)
        EXPECT_LE(chunk.size(), 64u * 1024);
    EXPECT_EQ(encoded.manifest.entries(), 100'000u);
    // The manifest goes through its text form, as it does through memcached.
    const SnapshotManifest manifest = parse_manifest(encode_manifest(encoded.manifest), {}, kNow);
    EXPECT_EQ(manifest, encoded.manifest);
    EXPECT_EQ(decode_snapshot(manifest, present(encoded)), snapshot);
    // The default bound is far under memcached's 1 MiB item limit.
    for (const std::string& chunk : encode_snapshot(many(200'000), 1, kNow).chunks)
        EXPECT_LE(chunk.size(), kDefaultChunkBytes);
    EXPECT_LT(kDefaultChunkBytes, 1024u * 1024 / 2);
}

TEST(AffinitySnapshot, EmptyTableIsAnEmptySnapshot) {
    const EncodedSnapshot encoded = encode_snapshot(AffinitySnapshot{}, 9, kNow);
    EXPECT_TRUE(encoded.chunks.empty());
    EXPECT_EQ(decode_snapshot(parse_manifest(encode_manifest(encoded.manifest), {}, kNow), {}), AffinitySnapshot{});
}

TEST(AffinitySnapshot, ChunksTooSmallForAnEntryAreRefused) {
    EXPECT_THROW(encode_snapshot(many(1), 1, kNow, 40), std::invalid_argument);
}

TEST(AffinitySnapshot, KeysCarryTheGeneration) {
    EXPECT_EQ(affinity_chunk_key(0x00ab, 3), "stickylb:v1:affinity:00000000000000ab:3");
    EXPECT_EQ(kAffinityManifestKey, "stickylb:v1:affinity:manifest");
}

TEST(AffinitySnapshot, TornSnapshotsAreRejectedWhole) {
    const AffinitySnapshot snapshot = many(20'000);
    const EncodedSnapshot encoded = encode_snapshot(snapshot, 1, kNow, 16 * 1024);
    const EncodedSnapshot other = encode_snapshot(snapshot, 2, kNow + 1000, 16 * 1024);
    ASSERT_GE(encoded.chunks.size(), 3u);
    ASSERT_EQ(other.chunks.size(), encoded.chunks.size());

    auto missing = present(encoded);
    missing[1].reset();  // evicted, or its write failed
    EXPECT_THROW(decode_snapshot(encoded.manifest, missing), SnapshotError);

    auto mixed = present(encoded);
    mixed[2] = other.chunks[2];  // same place, another snapshot
    EXPECT_THROW(decode_snapshot(encoded.manifest, mixed), SnapshotError);

    auto shortened = present(encoded);
    shortened[0]->pop_back();
    EXPECT_THROW(decode_snapshot(encoded.manifest, shortened), SnapshotError);

    auto flipped = present(encoded);
    (*flipped[0])[100] ^= 0x40;
    EXPECT_THROW(decode_snapshot(encoded.manifest, flipped), SnapshotError);

    auto fewer = present(encoded);
    fewer.pop_back();
    EXPECT_THROW(decode_snapshot(encoded.manifest, fewer), SnapshotError);

    try {
        decode_snapshot(encoded.manifest, missing);
    } catch (const SnapshotError& error) {
        EXPECT_NE(std::string(error.what()).find("chunk 1 is missing"), std::string::npos) << error.what();
    }
}

TEST(AffinitySnapshot, ManifestsThatAreNotOursAreRefused) {
    for (const char* bad : {"", "not json", "[]", R"({"format":2,"generation":"0000000000000001","written_ms":1,
                            "vips":[],"backends":[],"chunks":[]})",
                            R"({"format":1,"generation":"xyz","written_ms":1,"vips":[],"backends":[],"chunks":[]})",
                            R"({"format":1,"generation":"0000000000000001","written_ms":1,"vips":[]})"})
        EXPECT_THROW(parse_manifest(bad, {}, kNow), SnapshotError) << bad;
}

// A layout like desired_state's: VIP web (index 3, persistent, 600 s, /24 for v4)
// with be1 (index 5) and be2 (index 6, down); VIP api (index 4) with be1 (index 7).
AffinityLayout layout() {
    AffinityLayout layout;
    layout.vips["web"] = {3, 600, 24, 64};
    layout.vips["api"] = {4, 60, 32, 128};
    layout.backends[{"web", "be1"}] = {5, false};
    layout.backends[{"web", "be2"}] = {6, true};
    layout.backends[{"api", "be1"}] = {7, false};
    return layout;
}

TEST(AffinityRestore, SnapshotOfTheTableKeepsLiveEntriesByName) {
    const std::vector<AffinityRecord> records = {
        {3, IpAddress::parse("192.0.2.0"), 5, 2s},     // web/be1, 2 s old
        {4, IpAddress::parse("2001:db8::7"), 7, 59s},  // api/be1
        {4, IpAddress::parse("2001:db8::8"), 7, 61s},  // api: expired (60 s)
        {9, IpAddress::parse("192.0.2.9"), 5, 1s},     // unknown VIP index
        {3, IpAddress::parse("192.0.2.10"), 77, 1s},   // unknown backend index
        {3, IpAddress::parse("192.0.2.11"), 7, 1s},    // api's backend under web: not a backend of web
    };
    const AffinitySnapshot snapshot = snapshot_of(records, layout(), kNow);
    ASSERT_EQ(snapshot.entries.size(), 2u);
    const auto name = [&](const SnapshotEntry& entry) {
        return snapshot.vips[entry.vip] + "/" + snapshot.backends[entry.backend];
    };
    EXPECT_EQ(name(snapshot.entries[0]), "web/be1");
    EXPECT_EQ(snapshot.entries[0].client, IpAddress::parse("192.0.2.0"));
    EXPECT_EQ(snapshot.entries[0].last_seen_ms, kNow - 2000);
    EXPECT_EQ(name(snapshot.entries[1]), "api/be1");
    EXPECT_EQ(snapshot.entries[1].last_seen_ms, kNow - 59'000);
}

TEST(AffinityRestore, SkipsExpiredUnknownAndDownAndConvertsTheClock) {
    AffinitySnapshot snapshot;
    snapshot.vips = {"web", "gone", "api"};
    snapshot.backends = {"be1", "be2", "be9"};
    const auto entry = [](std::uint32_t vip, std::uint32_t backend, const char* client, std::int64_t age_ms) {
        return SnapshotEntry{vip, backend, IpAddress::parse(client), kNow - age_ms};
    };
    snapshot.entries = {
        entry(0, 0, "192.0.2.77", 10'000),     // web/be1: restored, masked to /24 here
        entry(0, 0, "198.51.100.1", 600'000),  // web: 600 s timeout, exactly expired
        entry(1, 0, "192.0.2.2", 1'000),       // VIP not configured here
        entry(0, 2, "192.0.2.3", 1'000),       // no be9 in web
        entry(0, 1, "192.0.2.4", 1'000),       // web/be2 is down
        entry(2, 0, "2001:db8::1", 59'000),    // api/be1: restored
        entry(2, 0, "2001:db8::2", 70'000),    // api: expired
    };
    const std::uint64_t monotonic_now = 5'000'000'000'000;  // 5000 s since boot
    const RestorePlan plan = plan_restore(snapshot, layout(), kNow, monotonic_now);
    EXPECT_EQ(plan.expired, 2u);
    EXPECT_EQ(plan.unknown_vip, 1u);
    EXPECT_EQ(plan.unknown_backend, 1u);
    EXPECT_EQ(plan.backend_down, 1u);
    ASSERT_EQ(plan.writes.size(), 2u);
    EXPECT_EQ(plan.writes[0].vip_index, 3u);
    EXPECT_EQ(plan.writes[0].backend_index, 5u);
    EXPECT_EQ(plan.writes[0].client, IpAddress::parse("192.0.2.0"));
    EXPECT_EQ(plan.writes[0].last_seen_ns, monotonic_now - 10'000'000'000ull) << "10 s old, on this host's clock";
    EXPECT_EQ(plan.writes[1].vip_index, 4u);
    EXPECT_EQ(plan.writes[1].backend_index, 7u);
    EXPECT_EQ(plan.writes[1].last_seen_ns, monotonic_now - 59'000'000'000ull);

    // A host up for less time than an entry's age: the entry starts at boot.
    const RestorePlan young = plan_restore(snapshot, layout(), kNow, 1'000'000'000);
    ASSERT_EQ(young.writes.size(), 2u);
    EXPECT_EQ(young.writes[0].last_seen_ns, 1u);
}

// --- the store, against real memcached ------------------------------------------

std::shared_ptr<MemcachedLink> link_to(const std::string& server) {
    MemcachedLinkOptions options;
    options.timeouts = {200ms, 500ms};
    return std::make_shared<MemcachedLink>(server, options);
}

class AffinityStoreTest : public ::testing::Test {
protected:
    void SetUp() override { STICKYLB_REQUIRE_MEMCACHED(); }
};

TEST_F(AffinityStoreTest, SavedToEveryServerAndLoadedBack) {
    testing::MemcachedProcess first, second;
    const std::vector<std::shared_ptr<MemcachedLink>> links = {link_to(first.address()), link_to(second.address())};
    const AffinityStore store(links, 30s, 32 * 1024);
    const AffinitySnapshot snapshot = many(30'000);
    const SnapshotSaveResult saved = store.save(snapshot, 600s);
    EXPECT_TRUE(saved.errors.empty()) << saved.errors.front();
    EXPECT_EQ(saved.servers_written.size(), 2u);
    EXPECT_EQ(saved.entries, 30'000u);
    EXPECT_GT(saved.chunks, 3u);

    SnapshotLoadResult loaded = store.load();
    ASSERT_TRUE(loaded.snapshot) << (loaded.errors.empty() ? "" : loaded.errors.front());
    EXPECT_EQ(*loaded.snapshot, snapshot);

    // Either server alone has all of it.
    first.restart();  // empty
    loaded = store.load();
    ASSERT_TRUE(loaded.snapshot);
    EXPECT_EQ(loaded.server, second.address());
    EXPECT_EQ(*loaded.snapshot, snapshot);
}

TEST_F(AffinityStoreTest, ATornSnapshotIsSkippedForACompleteOne) {
    testing::MemcachedProcess newer, older;
    const auto newer_link = link_to(newer.address());
    const auto older_link = link_to(older.address());
    const AffinitySnapshot first = many(5'000), second = many(6'000);
    ASSERT_FALSE(AffinityStore({older_link}, 30s, 16 * 1024).save(first, 600s).servers_written.empty());
    const SnapshotSaveResult saved = AffinityStore({newer_link}, 30s, 16 * 1024).save(second, 600s);
    ASSERT_FALSE(saved.servers_written.empty());
    // A chunk of the newer snapshot goes missing (evicted): that snapshot is unusable.
    MemcachedClient(newer.address(), {}).remove(affinity_chunk_key(saved.generation, 1));

    const SnapshotLoadResult loaded = AffinityStore({newer_link, older_link}, 30s).load();
    ASSERT_TRUE(loaded.snapshot);
    EXPECT_EQ(loaded.server, older.address());
    EXPECT_EQ(*loaded.snapshot, first) << "the complete, older snapshot; nothing of the torn one";
    ASSERT_FALSE(loaded.errors.empty());
    EXPECT_NE(loaded.errors.front().find("chunk 1 is missing"), std::string::npos) << loaded.errors.front();

    // Only the torn one: nothing at all is restored.
    EXPECT_FALSE(AffinityStore({newer_link}, 30s).load().snapshot);
}

TEST_F(AffinityStoreTest, ANewSnapshotDeletesTheOldOnesChunks) {
    testing::MemcachedProcess server;
    const auto link = link_to(server.address());
    const AffinityStore store({link}, 30s, 16 * 1024);
    const SnapshotSaveResult old = store.save(many(5'000), 600s);
    ASSERT_FALSE(old.servers_written.empty());
    const SnapshotSaveResult fresh = store.save(many(100), 600s);
    ASSERT_FALSE(fresh.servers_written.empty());
    MemcachedClient client(server.address(), {});
    for (std::uint32_t index = 0; index < old.chunks; ++index)
        EXPECT_FALSE(client.get(affinity_chunk_key(old.generation, index))) << "old chunk " << index;
    EXPECT_TRUE(client.get(affinity_chunk_key(fresh.generation, 0)));
}

TEST_F(AffinityStoreTest, AnUnreachableServerFailsWithoutStoppingTheOthers) {
    testing::MemcachedProcess server;
    const auto nowhere = link_to("127.0.0.1:" + std::to_string(testing::MemcachedProcess::unused_port()));
    const auto link = link_to(server.address());
    const AffinityStore store({nowhere, link}, 30s);
    const SnapshotSaveResult saved = store.save(many(1'000), 60s);
    EXPECT_EQ(saved.servers_written, std::vector<std::string>{server.address()});
    ASSERT_EQ(saved.errors.size(), 1u);
    EXPECT_NE(saved.errors[0].find(nowhere->server()), std::string::npos) << saved.errors[0];
    const SnapshotLoadResult loaded = store.load();
    ASSERT_TRUE(loaded.snapshot);
    EXPECT_EQ(loaded.snapshot->entries.size(), 1'000u);
}

}  // namespace
}  // namespace stickylb
