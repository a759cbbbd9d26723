// SPDX-License-Identifier: Apache-2.0
// Exceptions: which flows an LB host must tell its peers about (those off today's
// ring), how a peer turns them into its own entries, and their memcached chunks.
#include <gtest/gtest.h>
#include <map>
#include <netinet/in.h>

#include "control/flow_exceptions.h"
#include "session/flow_exception_chunks.h"
#include "stickylb/flow_hash.h"

namespace stickylb {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kSeed = 0x5eed;
constexpr std::uint32_t kRingSize = 1021;

// One VIP (tcp 10.89.0.10:80) at index 3, backends be1..be3 at base+1..base+3.
RingView view(std::uint32_t base_index, bool persistent, std::vector<std::uint32_t> ring) {
    RingView view;
    view.hash_seed = kSeed;
    VipSettings settings;
    settings.index = 3;
    settings.persistent = persistent;
    settings.client_prefix_v4 = 24;
    const VipKey key{IpAddress::parse("10.89.0.10"), 80, IPPROTO_TCP};
    view.vips[3] = {key, settings, std::move(ring)};
    for (std::uint32_t n = 1; n <= 3; ++n)
        view.backends[base_index + n] = {3, "6/10.89.0.10/80/be" + std::to_string(n), BackendState::up};
    return view;
}

FlowRecord flow(const char* client, std::uint16_t port, std::uint32_t backend) {
    FlowRecord record;
    record.client = IpAddress::parse(client);
    record.client_port = port;
    record.vip = IpAddress::parse("10.89.0.10");
    record.vip_port = 80;
    record.protocol = IPPROTO_TCP;
    record.backend_index = backend;
    record.vip_index = 3;
    return record;
}

TEST(FlowExceptions, FlowsOffTheRingAreTheExceptionsAndDownBackendsAreNot) {
    RingView ring_to_1 = view(0, false, std::vector<std::uint32_t>(kRingSize, 1));
    ring_to_1.backends[3].state = BackendState::down;
    FlowRecord other_vip = flow("10.89.1.9", 40009, 2);
    other_vip.vip_port = 443;
    const std::vector<FlowRecord> flows = {flow("10.89.1.5", 40000, 1),
                                           flow("10.89.1.6", 40001, 2),
                                           flow("10.89.1.7", 40002, 3),
                                           flow("10.89.1.8", 40003, 9),
                                           other_vip,
                                           flow("10.89.1.6", 40001, 2)};
    const auto exceptions = find_flow_exceptions(flows, ring_to_1);
    ASSERT_EQ(exceptions.size(), 1u) << "on its ring pick, on a down backend (re-picked by every LB alike), "
                                        "unknown backend, another VIP's address, a duplicate from the walk";
    EXPECT_EQ(exceptions[0], (FlowException{"6/10.89.0.10/80/be2", IpAddress::parse("10.89.1.6"), 40001}));
}

// The pick must be the XDP program's own: by 5-tuple, or by the masked client for
// persistent VIPs; a different hash would publish every flow, or none.
TEST(FlowExceptions, RingPickIsTheDataPlanesHash) {
    std::vector<std::uint32_t> ring(kRingSize);
    for (std::uint32_t slot = 0; slot < kRingSize; ++slot)
        ring[slot] = 1 + slot % 3;
    const FlowRecord record = flow("10.89.1.77", 40123, 1);
    const auto client = record.client.to_abi(), vip = record.vip.to_abi();
    const std::uint32_t by_flow =
        stickylb_hash_flow(kSeed, client.v6, vip.v6, htons(40123), htons(80), IPPROTO_TCP, STICKYLB_FAMILY_IPV4);
    const RingView plain = view(0, false, ring);
    EXPECT_EQ(ring_pick(plain.vips.at(3), kSeed, record), ring[by_flow % kRingSize]);

    const RingView persistent = view(0, true, ring);
    const auto masked = IpAddress::parse("10.89.1.0").to_abi();
    const std::uint32_t by_client = stickylb_hash_client(kSeed, masked.v6, STICKYLB_FAMILY_IPV4);
    EXPECT_EQ(ring_pick(persistent.vips.at(3), kSeed, record), ring[by_client % kRingSize]);
    EXPECT_EQ(ring_pick(persistent.vips.at(3), kSeed, flow("10.89.1.200", 1, 1)), ring[by_client % kRingSize])
        << "one /24, one pick";
}

TEST(FlowExceptions, APeerWritesThemUnderItsOwnIndexes) {
    const std::vector<FlowException> published = {{"6/10.89.0.10/80/be2", IpAddress::parse("10.89.1.6"), 40001},
                                                  {"6/10.89.0.10/80/be9", IpAddress::parse("10.89.1.7"), 40002},
                                                  {"6/10.89.0.10/80/be3", IpAddress::parse("fd00::7"), 40003}};
    const RingView peer = view(40, false, std::vector<std::uint32_t>(kRingSize, 41));
    const LocalPeerFlows local = to_local_flows(published, peer);
    ASSERT_EQ(local.flows.size(), 1u);
    EXPECT_EQ(local.unknown, 2u) << "a backend it has not, an address of another family than the VIP's";
    const FlowRecord& written = local.flows[0];
    EXPECT_EQ(written.backend_index, 42u) << "be2 by this host's index";
    EXPECT_EQ(written.client, IpAddress::parse("10.89.1.6"));
    EXPECT_EQ(written.client_port, 40001);
    EXPECT_EQ(written.vip, IpAddress::parse("10.89.0.10"));
    EXPECT_EQ(written.vip_port, 80);
    EXPECT_EQ(written.protocol, IPPROTO_TCP);
}

AffinityRecord affinity(const char* client, std::uint32_t backend, std::chrono::seconds age) {
    return {.vip_index = 3, .client = IpAddress::parse(client), .backend_index = backend, .age = age};
}

FlowException affinity_exception(const char* backend, const char* client, std::int64_t seen_s) {
    return {.backend = std::string("6/10.89.0.10/80/") + backend,
            .client = IpAddress::parse(client),
            .client_port = 0,
            .kind = ExceptionKind::affinity,
            .seen_s = seen_s};
}

constexpr std::int64_t kNow = 1'796'640'000;

// A persistent VIP's clients kept on a backend their ring pick is not are published with
// when they were last seen, in steps of a tenth of the timeout (300 s: 30 s), so that a
// client's entry changes once a step and not with every refresh.
TEST(AffinityExceptions, ClientsOffTheRingAreTheExceptionsWithWhenTheyWereSeen) {
    RingView ring_to_1 = view(0, true, std::vector<std::uint32_t>(kRingSize, 1));
    ring_to_1.vips[3].settings.affinity_timeout_s = 300;
    ring_to_1.backends[3].state = BackendState::down;
    const std::vector<AffinityRecord> table = {affinity("10.89.1.0", 1, 10s), affinity("10.89.2.0", 2, 44s),
                                               affinity("10.89.3.0", 3, 1s),  affinity("10.89.4.0", 2, 300s),
                                               affinity("10.89.5.0", 9, 1s),  affinity("10.89.6.0", 2, 1s)};
    const auto exceptions = find_affinity_exceptions(table, ring_to_1, kNow);
    EXPECT_EQ(exceptions, (std::vector<FlowException>{affinity_exception("be2", "10.89.2.0", kNow - 30),
                                                      affinity_exception("be2", "10.89.6.0", kNow)}))
        << "on its ring pick, on a down backend, timed out, unknown backend: not exceptions";
    EXPECT_EQ(find_affinity_exceptions(table, view(0, false, std::vector<std::uint32_t>(kRingSize, 1)), kNow).size(),
              0u)
        << "a VIP without persistence keeps no clients";
    EXPECT_EQ(affinity_seen_step(300), 30);
    EXPECT_EQ(affinity_seen_step(5), 1);
    EXPECT_EQ(affinity_seen_step(86400), 30);
}

// A peer's client goes where the peer keeps it unless this host knows better: it has the
// client on a third backend seen more lately, or on the same backend as lately.
TEST(AffinityExceptions, APeersClientGoesIntoTheAffinityTableUnlessThisHostKnowsBetter) {
    RingView ring_to_41 = view(40, true, std::vector<std::uint32_t>(kRingSize, 41));
    ring_to_41.vips[3].settings.affinity_timeout_s = 300;
    const std::vector<FlowException> published = {
        affinity_exception("be2", "10.89.1.0", kNow - 60),   // not here: written
        affinity_exception("be2", "10.89.2.0", kNow - 60),   // here on the ring's pick: written
        affinity_exception("be2", "10.89.3.0", kNow - 60),   // here on be3, seen later: kept
        affinity_exception("be2", "10.89.4.0", kNow - 60),   // here on be3, seen earlier: written
        affinity_exception("be2", "10.89.5.0", kNow - 60),   // here on be2, as lately: kept
        affinity_exception("be2", "10.89.6.0", kNow - 60),   // here on be2, two steps earlier: refreshed
        affinity_exception("be2", "10.89.7.0", kNow - 400),  // timed out: not written
        affinity_exception("be3", "10.89.8.0", kNow - 90),   // two peers: the later seen counts
        affinity_exception("be2", "10.89.8.0", kNow - 30),
    };
    const LocalPeerFlows local = to_local_flows(published, ring_to_41);
    EXPECT_TRUE(local.flows.empty());
    ASSERT_EQ(local.affinities.size(), published.size());
    const std::vector<AffinityRecord> table = {affinity("10.89.2.0", 41, 1s), affinity("10.89.3.0", 43, 10s),
                                               affinity("10.89.4.0", 43, 100s), affinity("10.89.5.0", 42, 55s),
                                               affinity("10.89.6.0", 42, 120s)};
    constexpr std::uint64_t kClock = 5'000'000'000'000;
    const auto writes = affinity_writes(local.affinities, table, ring_to_41, kNow, kClock);
    std::map<std::string, AffinityWrite> by_client;
    for (const AffinityWrite& write : writes)
        by_client[write.client.to_string()] = write;
    EXPECT_EQ(by_client.size(), 5u);
    for (const char* client : {"10.89.1.0", "10.89.2.0", "10.89.4.0", "10.89.6.0"}) {
        ASSERT_TRUE(by_client.contains(client)) << client;
        EXPECT_EQ(by_client[client].backend_index, 42u) << client;
        EXPECT_EQ(by_client[client].vip_index, 3u);
        EXPECT_EQ(by_client[client].last_seen_ns, kClock - 60'000'000'000) << "seen 60 s ago, on this host's clock";
    }
    ASSERT_TRUE(by_client.contains("10.89.8.0"));
    EXPECT_EQ(by_client["10.89.8.0"].backend_index, 42u);
    EXPECT_EQ(by_client["10.89.8.0"].last_seen_ns, kClock - 30'000'000'000);

    EXPECT_EQ(to_local_flows(published, view(40, false, std::vector<std::uint32_t>(kRingSize, 41))).unknown,
              published.size())
        << "this host keeps no clients on that VIP";
}

std::vector<FlowException> many(std::size_t count) {
    std::vector<FlowException> exceptions;
    for (std::size_t n = 0; n < count; ++n) {
        const std::string client = n % 2 ? "10.89." + std::to_string(n / 250 % 250) + "." + std::to_string(n % 250)
                                         : "fd00:89::" + std::to_string(n % 9999);
        FlowException exception{"6/10.89.0.10/80/be" + std::to_string(n * 3 / count), IpAddress::parse(client),
                                static_cast<std::uint16_t>(n % 65536)};
        if (n % 5 == 0) {
            exception.kind = ExceptionKind::affinity;
            exception.client_port = 0;
            exception.seen_s = kNow - static_cast<std::int64_t>(n);
        }
        exceptions.push_back(std::move(exception));
    }
    std::sort(exceptions.begin(), exceptions.end());
    return exceptions;
}

TEST(ExceptionChunks, ManyExceptionsComeBackWholeFromChunksBelowTheLimit) {
    const auto exceptions = many(3000);
    const auto chunks = fleet::encode_exception_chunks("lb-1", 77, exceptions, 4096);
    ASSERT_GT(chunks.size(), 10u);
    std::vector<FlowException> decoded;
    for (std::size_t chunk = 0; chunk < chunks.size(); ++chunk) {
        EXPECT_LE(chunks[chunk].size(), 4096u);
        const auto part = fleet::decode_exception_chunk(chunks[chunk], "lb-1", 77, chunk, chunks.size());
        decoded.insert(decoded.end(), part.begin(), part.end());
    }
    EXPECT_EQ(decoded, exceptions);

    const auto none = fleet::encode_exception_chunks("lb-1", 78, {}, 4096);
    ASSERT_EQ(none.size(), 1u);
    EXPECT_TRUE(fleet::decode_exception_chunk(none[0], "lb-1", 78, 0, 1).empty());
    EXPECT_EQ(fleet::exception_chunk_key("web", "lb-1", 77, 2), "stickylb:v1:fleet:web:flows:lb-1:77:2");
}

TEST(ExceptionChunks, AChunkThatIsNotWhatItsKeySaysIsRefused) {
    const std::string chunk = fleet::encode_exception_chunks("lb-1", 77, many(10), 4096).at(0);
    EXPECT_NO_THROW(fleet::decode_exception_chunk(chunk, "lb-1", 77, 0, 1));
    EXPECT_THROW(fleet::decode_exception_chunk(chunk, "lb-2", 77, 0, 1), fleet::ExceptionChunkError);
    EXPECT_THROW(fleet::decode_exception_chunk(chunk, "lb-1", 76, 0, 1), fleet::ExceptionChunkError);
    EXPECT_THROW(fleet::decode_exception_chunk(chunk, "lb-1", 77, 1, 2), fleet::ExceptionChunkError);

    const std::string head = "stickylb-flow-exceptions 1 lb-1 5 0 1\n";
    for (const std::string body :
         {"10.0.0.1 80\n", "b 6/10.89.0.10/80/be1\n10.0.0.1 70000\n", "b 6/10.89.0.10/80/be1\nnot-an-address 80\n",
          "b 6/10.89.0.10/80/be1\n10.0.0.1\n", "b 6/10.89.0.10/80/be1\n10.0.0.1 80", "b \n10.0.0.1 80\n",
          "b 6/10.89.0.10/80/be1\n10.0.0.1 -1\n", "b 6/10.89.0.10/80/be1\na 10.0.0.1\n",
          "b 6/10.89.0.10/80/be1\na 10.0.0.1 -5\n", "b 6/10.89.0.10/80/be1\na 10.0.0.1 100000000001\n",
          "a 10.0.0.1 1796640000\n"})
        EXPECT_THROW(fleet::decode_exception_chunk(head + body, "lb-1", 5, 0, 1), fleet::ExceptionChunkError) << body;
    EXPECT_THROW(
        fleet::decode_exception_chunk(head + std::string(fleet::kMaxExceptionChunkBytes, 'x'), "lb-1", 5, 0, 1),
        fleet::ExceptionChunkError);
}

}  // namespace
}  // namespace stickylb
