// SPDX-License-Identifier: Apache-2.0
// Exceptions: which flows an LB host must tell its peers about (those off today's
// ring), how a peer turns them into its own entries, and their memcached chunks.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "control/flow_exceptions.h"
#include "session/flow_exception_chunks.h"
#include "stickylb/flow_hash.h"

namespace stickylb {
namespace {

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

std::vector<FlowException> many(std::size_t count) {
    std::vector<FlowException> exceptions;
    for (std::size_t n = 0; n < count; ++n) {
        const std::string client = n % 2 ? "10.89." + std::to_string(n / 250 % 250) + "." + std::to_string(n % 250)
                                         : "fd00:89::" + std::to_string(n % 9999);
        exceptions.push_back({"6/10.89.0.10/80/be" + std::to_string(n * 3 / count), IpAddress::parse(client),
                              static_cast<std::uint16_t>(n % 65536)});
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
          "b 6/10.89.0.10/80/be1\n10.0.0.1 -1\n"})
        EXPECT_THROW(fleet::decode_exception_chunk(head + body, "lb-1", 5, 0, 1), fleet::ExceptionChunkError) << body;
    EXPECT_THROW(
        fleet::decode_exception_chunk(head + std::string(fleet::kMaxExceptionChunkBytes, 'x'), "lb-1", 5, 0, 1),
        fleet::ExceptionChunkError);
}

}  // namespace
}  // namespace stickylb
