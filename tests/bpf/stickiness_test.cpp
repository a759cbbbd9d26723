// SPDX-License-Identifier: Apache-2.0
// Stickiness as users rely on it: flows stay on their backend across ring
// changes, persistent VIPs keep a client on one backend until its affinity
// expires, draining keeps existing users, down moves them for good.
#include <time.h>

#include <set>

#include "bpf/fixture.h"

namespace stickylb::testing {
namespace {

constexpr std::uint32_t kVip = 0;

class Stickiness : public DataPlaneTest {
protected:
    void SetUp() override {
        DataPlaneTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        set_backends(kVip, {{1, IpAddress::parse("10.0.0.1")},
                            {2, IpAddress::parse("10.0.0.2")},
                            {3, IpAddress::parse("10.0.0.3")},
                            {4, IpAddress::parse("10.0.0.4")}});
    }

    void make_vip(bool persistent, std::uint32_t timeout_s = 300, std::uint8_t prefix_v4 = 32) {
        VipSettings settings;
        settings.index = kVip;
        settings.persistent = persistent;
        settings.affinity_timeout_s = timeout_s;
        settings.client_prefix_v4 = prefix_v4;
        plane().upsert_vip(tcp_vip("192.0.2.10"), settings);
    }

    static PacketSpec connection(const std::string& client, std::uint16_t source_port, std::uint8_t flags = kTcpSyn) {
        PacketSpec spec;
        spec.source = IpAddress::parse(client);
        spec.source_port = source_port;
        spec.tcp_flags = flags;
        return spec;
    }

    std::uint32_t send(const std::string& client, std::uint16_t source_port, std::uint8_t flags = kTcpSyn) {
        return backend_of(run(connection(client, source_port, flags)));
    }

    // SYN then ACK: the handshake's ACK is what records the flow (and the client's affinity).
    std::uint32_t connect(const std::string& client, std::uint16_t source_port) {
        const std::uint32_t syn = send(client, source_port, kTcpSyn);
        const std::uint32_t ack = send(client, source_port, kTcpAck);
        EXPECT_EQ(syn, ack) << "the packets of one handshake reach one backend";
        return ack;
    }

    // Connects clients until one lands on the backend; that client keeps its connection (port 5000) open.
    std::string first_client_on(std::uint32_t backend) {
        for (int n = 0; n < 500; ++n)
            if (connect(client_address(n), 5000) == backend)
                return client_address(n);
        return {};
    }

    static std::string client_address(int n) {
        return "198.51." + std::to_string(100 + n / 250) + "." + std::to_string(1 + n % 250);
    }

    stickylb_affinity_key affinity_key_of(const std::string& client) const {
        stickylb_affinity_key key{};
        key.vip_index = kVip;
        key.family = STICKYLB_FAMILY_IPV4;
        key.client = IpAddress::parse(client).to_abi();
        return key;
    }

    std::optional<stickylb_affinity> affinity_of(const std::string& client) {
        const auto key = affinity_key_of(client);
        stickylb_affinity entry{};
        if (bpf_map_lookup_elem(plane().affinity_map_fd(), &key, &entry) != 0)
            return std::nullopt;
        return entry;
    }

    // Makes the client's affinity entry look last used `age_ns` ago.
    void age_affinity(const std::string& client, std::uint64_t age_ns) {
        auto entry = affinity_of(client);
        ASSERT_TRUE(entry.has_value());
        entry->last_seen_ns = monotonic_coarse_ns() - age_ns;
        const auto key = affinity_key_of(client);
        ASSERT_EQ(bpf_map_update_elem(plane().affinity_map_fd(), &key, &*entry, BPF_EXIST), 0);
    }

    // The clock of bpf_ktime_get_coarse_ns().
    static std::uint64_t monotonic_coarse_ns() {
        timespec now{};
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
        return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(now.tv_nsec);
    }

    // Points every slot of the ring at one backend: the next ring pick is known.
    void ring_all_to(std::uint32_t index) {
        ring_.assign(kTestRingSize, index);
        plane().write_ring(kVip, ring_);
    }
};

TEST_F(Stickiness, PersistentVipKeepsEveryConnectionOfAClientOnOneBackend) {
    make_vip(true);
    std::set<std::uint32_t> used_by_all_clients;
    for (int client = 0; client < 40; ++client) {
        const std::string address = client_address(client);
        const std::uint32_t first = connect(address, 10000);
        ASSERT_NE(first, 0u);
        EXPECT_EQ(first, ring_backend(client_hash_of(IpAddress::parse(address))));
        for (std::uint16_t port = 10001; port < 10020; ++port)
            EXPECT_EQ(connect(address, port), first) << address << ":" << port;
        used_by_all_clients.insert(first);
    }
    EXPECT_GE(used_by_all_clients.size(), 3u) << "40 clients should spread over the 4 backends";
    const auto stats = plane().vip_stats(kVip);
    EXPECT_EQ(stats.affinity_misses, 40u) << "one recorded client each";
    EXPECT_EQ(stats.affinity_hits, 40u * 19u * 2u) << "later SYNs and ACKs find the client";
}

TEST_F(Stickiness, NonPersistentVipSpreadsConnectionsOfOneClient) {
    make_vip(false);
    std::map<std::uint32_t, int> per_backend;
    for (std::uint16_t port = 20000; port < 20200; ++port) {
        const PacketSpec spec = connection("198.51.100.7", port);
        const std::uint32_t backend = backend_of(run(spec));
        EXPECT_EQ(backend, ring_backend(flow_hash_of(spec)));
        ++per_backend[backend];
    }
    EXPECT_EQ(per_backend.size(), 4u);
    for (const auto& [backend, count] : per_backend)
        EXPECT_GT(count, 20) << "backend " << backend << " got " << count << " of 200 connections";
}

TEST_F(Stickiness, ClientPrefixGroupsNeighboursOnOneBackend) {
    make_vip(true, 300, 24);
    const std::uint32_t first = connect("198.51.100.7", 1000);
    ASSERT_NE(first, 0u);
    ring_all_to(first == 1 ? 2 : 1);  // only the recorded prefix can keep the neighbours on `first`
    for (int host = 1; host < 255; host += 17)
        EXPECT_EQ(send("198.51.100." + std::to_string(host), 2000), first);
}

TEST_F(Stickiness, SynsRecordNothingSoAFloodCannotDisplaceRealUsers) {
    make_vip(true);
    const std::uint32_t user = connect("198.51.100.7", 1000);
    ASSERT_NE(user, 0u);
    for (int n = 0; n < 3000; ++n)  // spoofed SYNs from 3000 sources, none completing a handshake
        ASSERT_NE(send(client_address(n + 1000), static_cast<std::uint16_t>(2000 + n % 50000)), 0u);
    const auto stats = plane().vip_stats(kVip);
    EXPECT_EQ(stats.new_flows, 1u) << "only the completed handshake recorded a flow";
    EXPECT_EQ(stats.affinity_misses, 1u) << "only the real user was recorded as a client";
    EXPECT_FALSE(affinity_of(client_address(1000)).has_value());
    ring_all_to(user == 1 ? 2 : 1);
    EXPECT_EQ(send("198.51.100.7", 1000, kTcpAck), user) << "the real user's flow is intact";
    EXPECT_EQ(connect("198.51.100.7", 1001), user) << "and so is its affinity";
}

TEST_F(Stickiness, ExpiredAffinityIsReplacedByAFreshPick) {
    make_vip(true, 2);
    const std::string client = "198.51.100.7";
    const std::uint32_t original = connect(client, 1000);
    ASSERT_NE(original, 0u);
    const std::uint32_t other = original == 1 ? 2 : 1;
    ring_all_to(other);

    EXPECT_EQ(connect(client, 1001), original) << "a live affinity outranks the ring";
    age_affinity(client, 3'000'000'000ull);
    EXPECT_EQ(connect(client, 1002), other) << "an expired affinity is ignored";
    ASSERT_TRUE(affinity_of(client).has_value());
    EXPECT_EQ(affinity_of(client)->backend_index, other) << "and replaced by the new pick";
    EXPECT_EQ(send(client, 1003), other);
}

TEST_F(Stickiness, AffinityIsRefreshedWhenUsed) {
    make_vip(true, 2);
    const std::string client = "198.51.100.7";
    const std::uint32_t original = connect(client, 1000);
    age_affinity(client, 1'500'000'000ull);
    EXPECT_EQ(connect(client, 1001), original);
    const std::uint64_t age = monotonic_coarse_ns() - affinity_of(client)->last_seen_ns;
    EXPECT_LT(age, 1'000'000'000ull) << "a hit must refresh last_seen";
}

TEST_F(Stickiness, RingChangeDoesNotMoveEstablishedFlows) {
    make_vip(false);
    std::map<std::uint16_t, std::uint32_t> established;
    for (std::uint16_t port = 30000; port < 30100; ++port)
        established[port] = connect("198.51.100.7", port);

    set_backends(kVip, {{1, IpAddress::parse("10.0.0.1")},
                        {2, IpAddress::parse("10.0.0.2")},
                        {3, IpAddress::parse("10.0.0.3")},
                        {4, IpAddress::parse("10.0.0.4")},
                        {5, IpAddress::parse("10.0.0.5")}});
    for (const auto& [port, backend] : established)
        EXPECT_EQ(send("198.51.100.7", port, kTcpAck), backend) << "port " << port;

    int to_new_backend = 0;
    for (std::uint16_t port = 40000; port < 40100; ++port) {
        const PacketSpec spec = connection("198.51.100.7", port);
        const std::uint32_t backend = backend_of(run(spec));
        EXPECT_EQ(backend, ring_backend(flow_hash_of(spec))) << "new connections follow the new ring";
        to_new_backend += backend == 5;
    }
    EXPECT_GT(to_new_backend, 0);
}

// The router moved a connection here from another LB of the fleet, which carried it
// on a backend today's ring no longer picks: it goes where that LB had it.
TEST_F(Stickiness, FlowOfAPeerLbGoesWhereThePeerHadIt) {
    make_vip(false);
    ring_all_to(1);
    auto peer_flow = [](std::uint16_t port, std::uint32_t backend) {
        FlowRecord record;
        record.client = IpAddress::parse("198.51.100.7");
        record.client_port = port;
        record.vip = IpAddress::parse("192.0.2.10");
        record.vip_port = 80;
        record.protocol = IPPROTO_TCP;
        record.backend_index = backend;
        return record;
    };
    PinnedMaps tables = plane().client_tables();
    EXPECT_EQ(tables.replace_peer_flows({peer_flow(7000, 3), peer_flow(7001, 2), peer_flow(7002, 4)}), 3u);
    set_state(4, BackendState::down);

    EXPECT_EQ(send("198.51.100.7", 7000, kTcpSyn), 1u) << "a new connection's SYN follows the ring";
    EXPECT_EQ(send("198.51.100.7", 7000, kTcpAck), 3u) << "a packet under way follows the peer";
    EXPECT_EQ(send("198.51.100.7", 7001, static_cast<std::uint8_t>(kTcpAck | kTcpPsh)), 2u);
    EXPECT_EQ(send("198.51.100.7", 7002, kTcpAck), 1u) << "a peer's flow to a down backend is re-picked";
    EXPECT_EQ(send("198.51.100.7", 7003, kTcpAck), 1u) << "no peer entry: the ring";
    EXPECT_EQ(plane().global_stats().peer_flows_followed, 2u);

    EXPECT_EQ(tables.replace_peer_flows({peer_flow(7001, 4)}), 1u) << "replaced, not added";
    EXPECT_EQ(send("198.51.100.7", 7000, kTcpAck), 3u) << "recorded here at its first packet";
    EXPECT_EQ(send("198.51.100.7", 7001, kTcpAck), 2u);
    EXPECT_EQ(tables.replace_peer_flows({}), 0u);
    EXPECT_EQ(plane().global_stats().peer_flows_followed, 2u) << "only flow misses look";
}

TEST_F(Stickiness, DrainingBackendKeepsItsUsersAndGetsNoNewOnes) {
    make_vip(true);
    const std::string user = first_client_on(1);
    ASSERT_FALSE(user.empty());

    set_state_and_ring(kVip, 1, BackendState::draining);
    EXPECT_EQ(send(user, 5000, kTcpAck), 1u) << "its flow stays";
    EXPECT_EQ(send(user, 5001), 1u) << "its affinity stays";
    for (int n = 500; n < 700; ++n)
        EXPECT_NE(send(client_address(n), 6000), 1u) << "no new client on a draining backend";
}

TEST_F(Stickiness, DownBackendsUsersMoveAndStayMovedWhenItReturns) {
    make_vip(true);
    const std::string user = first_client_on(1);
    ASSERT_FALSE(user.empty());

    set_state_and_ring(kVip, 1, BackendState::down);
    const std::uint32_t moved = send(user, 5000, kTcpAck);
    EXPECT_NE(moved, 1u) << "the open flow moves";
    EXPECT_NE(moved, 0u);
    EXPECT_EQ(send(user, 5001), moved) << "new connections follow it";
    EXPECT_EQ(affinity_of(user)->backend_index, moved) << "the affinity was overwritten";

    set_state_and_ring(kVip, 1, BackendState::up);
    EXPECT_EQ(send(user, 5000, kTcpAck), moved) << "no failback of the flow";
    EXPECT_EQ(send(user, 5002), moved) << "no failback of the client";
}

TEST_F(Stickiness, DownBackendsFlowsMoveOnNonPersistentVip) {
    make_vip(false);
    std::vector<std::uint16_t> on_backend_1;
    for (std::uint16_t port = 30000; port < 30200; ++port)
        if (connect("198.51.100.7", port) == 1)
            on_backend_1.push_back(port);
    ASSERT_FALSE(on_backend_1.empty());

    set_state_and_ring(kVip, 1, BackendState::down);
    std::map<std::uint16_t, std::uint32_t> moved;
    for (const std::uint16_t port : on_backend_1) {
        moved[port] = send("198.51.100.7", port, kTcpAck);
        EXPECT_NE(moved[port], 1u);
        EXPECT_NE(moved[port], 0u);
    }
    set_state_and_ring(kVip, 1, BackendState::up);
    for (const std::uint16_t port : on_backend_1)
        EXPECT_EQ(send("198.51.100.7", port, kTcpAck), moved[port]) << "moved flows stay moved";
}

TEST_F(Stickiness, FlowsSharingAFlowCacheSlotKeepTheirOwnBackends) {
    make_vip(false);
    // Two connections whose flow hashes pick the same per-CPU cache slot, on different backends.
    const PacketSpec first = connection("198.51.100.7", 1000);
    const std::uint32_t slot = cache_slot_of(first);
    std::optional<PacketSpec> second;
    for (std::uint16_t port = 1001; port < 60000 && !second; ++port) {
        const PacketSpec candidate = connection("198.51.100.8", port);
        if (cache_slot_of(candidate) == slot &&
            ring_backend(flow_hash_of(candidate)) != ring_backend(flow_hash_of(first)))
            second = candidate;
    }
    ASSERT_TRUE(second.has_value());
    const std::uint32_t first_backend = connect("198.51.100.7", 1000);
    const std::uint32_t second_backend = connect("198.51.100.8", second->source_port);
    ASSERT_NE(first_backend, second_backend);

    ring_all_to(first_backend);  // from now on only the flow entries know the second backend
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(send("198.51.100.7", 1000, kTcpAck), first_backend);
        EXPECT_EQ(send("198.51.100.8", second->source_port, kTcpAck), second_backend);
    }
    EXPECT_EQ(plane().vip_stats(kVip).new_flows, 2u) << "evicting each other from the cache re-created nothing";
}

TEST_F(Stickiness, RemovedVipStopsForwardingItsEstablishedFlows) {
    make_vip(false);
    ASSERT_NE(connect("198.51.100.7", 1000), 0u);
    plane().remove_vip(tcp_vip("192.0.2.10"));
    const XdpRun after = run(connection("198.51.100.7", 1000, kTcpAck));
    EXPECT_EQ(after.action, XDP_PASS) << "a flow of a removed VIP is not forwarded";
    EXPECT_EQ(after.output, build_packet(connection("198.51.100.7", 1000, kTcpAck)));
}

TEST_F(Stickiness, ReusedVipIndexDoesNotInheritTheOldVipsFlows) {
    make_vip(false);
    ASSERT_NE(connect("198.51.100.7", 1000), 0u);
    plane().remove_vip(tcp_vip("192.0.2.10"));
    VipSettings other;
    other.index = kVip;
    plane().upsert_vip(tcp_vip("192.0.2.99"), other);
    const XdpRun old_flow = run(connection("198.51.100.7", 1000, kTcpAck));
    EXPECT_EQ(old_flow.action, XDP_PASS) << "the old VIP's flow entry names an index now held by another VIP";
}

TEST_F(Stickiness, ChangedVipSettingsReachEstablishedFlows) {
    make_vip(false);
    const std::uint32_t backend = connect("198.51.100.7", 1000);
    ASSERT_NE(backend, 0u);
    VipSettings tunnelled;
    tunnelled.index = kVip;
    tunnelled.forwarding = ForwardingMode::ipip;
    plane().upsert_vip(tcp_vip("192.0.2.10"), tunnelled);
    const XdpRun result = run(connection("198.51.100.7", 1000, kTcpAck));
    ASSERT_EQ(result.action, XDP_TX);
    EXPECT_EQ(backend_of(result), backend) << "same flow, same backend";
    EXPECT_EQ(result.output.size(), build_packet(connection("198.51.100.7", 1000, kTcpAck)).size() + 20)
        << "now encapsulated";
    EXPECT_EQ(plane().vip_stats(kVip).new_flows, 1u) << "the flow entry was kept, not re-created";
}

}  // namespace
}  // namespace stickylb::testing
