// SPDX-License-Identifier: Apache-2.0
// Reading and flushing the flow and affinity tables from the pinned maps alone,
// as the CLI does, while the data plane that pinned them keeps serving packets.
#include <sched.h>

#include <set>
#include <tuple>

#include "bpf/fixture.h"
#include "dataplane/pinned_maps.h"
#include "support/bpffs.h"

namespace stickylb::testing {
namespace {

constexpr std::uint32_t kPlainVip = 1;
constexpr std::uint32_t kPersistentVip = 2;

class PinnedMapsTest : public DataPlaneTest {
protected:
    void SetUp() override {
        STICKYLB_REQUIRE_ROOT();
        // BPF_PROG_TEST_RUN runs on the calling CPU and the flow cache is per CPU:
        // stay on one CPU so every packet sees the cache the previous one filled.
        cpu_set_t one{};
        CPU_SET(sched_getcpu(), &one);
        ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);

        bpffs_.emplace();
        pins_ = bpffs_->path() + "/stickylb";
        plane_.emplace(DataPlane::load(small_load_options(kTestRingSize, pins_)));
        RuntimeConfig config;
        config.hash_seed = kTestSeed;
        plane().set_runtime_config(config);

        VipSettings plain;
        plain.index = kPlainVip;
        plane().upsert_vip(tcp_vip("192.0.2.10"), plain);
        VipSettings persistent;
        persistent.index = kPersistentVip;
        persistent.persistent = true;
        persistent.affinity_timeout_s = 300;
        plane().upsert_vip(tcp_vip("192.0.2.20"), persistent);
        std::vector<TestBackend> backends;
        for (std::uint32_t index = 1; index <= 4; ++index)
            backends.push_back({index, IpAddress::parse("10.0.0." + std::to_string(index))});
        set_backends(kPlainVip, backends);
        plane().write_ring(kPersistentVip, ring_);
    }
    void TearDown() override {
        plane_.reset();  // closes the program and map fds before the bpffs goes
        bpffs_.reset();
    }

    static PacketSpec client(const char* vip, int number) {
        PacketSpec spec;
        spec.source = IpAddress::parse("198.51.100." + std::to_string(number));
        spec.source_port = static_cast<std::uint16_t>(
            40000 + 101 * number);  // not in step with the address (the cache slot hash would fold them together)
        spec.destination = IpAddress::parse(vip);
        return spec;
    }
    // SYN, then the ACK that completes the handshake (and records the flow).
    std::uint32_t connect(PacketSpec spec) {
        spec.tcp_flags = kTcpSyn;
        const std::uint32_t syn_backend = backend_of(run(spec));
        spec.tcp_flags = kTcpAck;
        const std::uint32_t backend = backend_of(run(spec));
        EXPECT_EQ(backend, syn_backend);
        return backend;
    }
    std::uint32_t ack(PacketSpec spec) {
        spec.tcp_flags = kTcpAck;
        return backend_of(run(spec));
    }

    using FlowTuple =
        std::tuple<IpAddress, std::uint16_t, IpAddress, std::uint16_t, std::uint8_t, std::uint32_t, std::uint16_t>;
    static FlowTuple tuple_of(const FlowRecord& record) {
        return {record.client,   record.client_port,   record.vip,      record.vip_port,
                record.protocol, record.backend_index, record.vip_index};
    }
    static FlowTuple tuple_of(const PacketSpec& spec, std::uint32_t backend, std::uint32_t vip_index) {
        return {spec.source,
                spec.source_port,
                spec.destination,
                spec.destination_port,
                IPPROTO_TCP,
                backend,
                static_cast<std::uint16_t>(vip_index)};
    }

    std::optional<PrivateBpffs> bpffs_;
    std::string pins_;
};

TEST_F(PinnedMapsTest, ListsExactlyTheEstablishedFlowsAndTheAffinities) {
    std::set<FlowTuple> expected;
    for (int number = 1; number <= 6; ++number) {
        const auto spec = client("192.0.2.10", number);
        const std::uint32_t backend = connect(spec);
        ASSERT_NE(backend, 0u);
        expected.insert(tuple_of(spec, backend, kPlainVip));
    }
    std::map<IpAddress, std::uint32_t> persistent_clients;
    for (int number = 11; number <= 13; ++number) {
        const auto spec = client("192.0.2.20", number);
        const std::uint32_t backend = connect(spec);
        ASSERT_NE(backend, 0u);
        expected.insert(tuple_of(spec, backend, kPersistentVip));
        persistent_clients[spec.source] = backend;
    }
    // A SYN alone (and a RST) records nothing.
    run(client("192.0.2.10", 50));
    auto reset = client("192.0.2.10", 51);
    reset.tcp_flags = kTcpRst;
    run(reset);

    const auto maps = PinnedMaps::open(pins_);
    std::set<FlowTuple> listed;
    for (const auto& record : maps.flows())
        listed.insert(tuple_of(record));
    EXPECT_EQ(listed, expected);
    EXPECT_EQ(maps.flows().size(), expected.size()) << "each flow once";
    EXPECT_EQ(maps.flows(2).size(), 2u) << "the limit";

    const auto affinities = maps.affinities();
    ASSERT_EQ(affinities.size(), persistent_clients.size());
    for (const auto& record : affinities) {
        EXPECT_EQ(record.vip_index, kPersistentVip);
        ASSERT_TRUE(persistent_clients.count(record.client)) << record.client.to_string();
        EXPECT_EQ(record.backend_index, persistent_clients[record.client]);
        EXPECT_GE(record.age.count(), 0);
        EXPECT_LT(record.age, std::chrono::seconds(5)) << "just seen";
    }
    EXPECT_EQ(maps.backend_address(3), IpAddress::parse("10.0.0.3"));
    EXPECT_FALSE(maps.backend_address(9));
}

// stickylbd walks the tables of the program it loaded (one handle on its maps):
// what it deletes there is gone from the pinned maps too.
TEST_F(PinnedMapsTest, TheLoadedProgramsTablesAreThePinnedOnes) {
    for (int number = 1; number <= 3; ++number)
        ASSERT_NE(connect(client("192.0.2.10", number)), 0u);
    auto own = plane_->client_tables();
    EXPECT_EQ(own.flows().size(), 3u);
    const IpAddress second = IpAddress::parse("198.51.100.2");
    EXPECT_EQ(own.delete_flows([&](const FlowRecord& flow) { return flow.client == second; }), 1u);
    const auto pinned = PinnedMaps::open(pins_).flows();
    EXPECT_EQ(pinned.size(), 2u);
    for (const FlowRecord& flow : pinned)
        EXPECT_NE(flow.client, second);
}

TEST_F(PinnedMapsTest, DeletedFlowsAreNotServedFromThePerCpuCache) {
    std::vector<std::pair<PacketSpec, std::uint32_t>> flows;
    std::set<std::uint32_t> slots;
    for (int number = 1; number <= 12; ++number) {
        const auto spec = client("192.0.2.10", number);
        flows.emplace_back(spec, connect(spec));
        slots.insert(cache_slot_of(spec));
    }
    ASSERT_EQ(slots.size(), flows.size()) << "test flows must not share a cache slot";
    const std::uint32_t victim = flows.front().second;
    ASSERT_NE(victim, 0u);
    std::uint32_t elsewhere = victim % 4 + 1;  // another backend, up
    std::size_t victims = 0;
    for (const auto& [spec, backend] : flows)
        victims += backend == victim;

    // The ring now sends every new pick elsewhere: a flow served from its
    // entry goes to its backend, a re-picked one goes elsewhere.
    plane().write_ring(kPlainVip, std::vector<std::uint32_t>(kTestRingSize, elsewhere));

    // Control: deleting from the flow table alone leaves the cached copy serving,
    // which is what delete_flows() must not do.
    const auto [control, control_backend] = flows.front();
    const stickylb_flow_key control_key = flow_key_of(control);
    ASSERT_EQ(bpf_map_delete_elem(plane().flows_map_fd(), &control_key), 0);
    EXPECT_EQ(ack(control), control_backend) << "served from this CPU's flow cache";

    auto maps = PinnedMaps::open(pins_);
    const std::size_t deleted =
        maps.delete_flows([&](const FlowRecord& record) { return record.backend_index == victim; });
    EXPECT_EQ(deleted, victims - 1) << "the control flow was already gone from the table";
    for (const auto& record : maps.flows())
        EXPECT_NE(record.backend_index, victim) << record.client.to_string();
    EXPECT_EQ(maps.flows().size(), flows.size() - victims);

    for (const auto& [spec, backend] : flows) {
        SCOPED_TRACE(spec.source.to_string());
        if (backend == victim)
            EXPECT_EQ(ack(spec), elsewhere) << "deleted: re-picked from the ring, not served from the cache";
        else
            EXPECT_EQ(ack(spec), backend) << "kept flows stay where they are";
    }
    // The re-picked flows were recorded afresh, on their new backend.
    std::size_t moved = 0;
    for (const auto& record : maps.flows())
        moved += record.backend_index == elsewhere && record.vip_index == kPlainVip;
    EXPECT_GE(moved, victims);
}

TEST_F(PinnedMapsTest, DeletingAffinitiesByVip) {
    for (int number = 1; number <= 3; ++number)
        connect(client("192.0.2.20", number));
    auto maps = PinnedMaps::open(pins_);
    ASSERT_EQ(maps.affinities().size(), 3u);
    EXPECT_EQ(maps.delete_affinities([](const AffinityRecord& record) { return record.vip_index == kPlainVip; }), 0u);
    EXPECT_EQ(maps.delete_affinities([](const AffinityRecord& record) { return record.vip_index == kPersistentVip; }),
              3u);
    EXPECT_TRUE(maps.affinities().empty());
}

TEST_F(PinnedMapsTest, AnEmptyDirectoryGivesTheClearError) {
    for (const std::string& directory : {bpffs_->path(), bpffs_->path() + "/nothing-here"}) {
        try {
            PinnedMaps::open(directory);
            FAIL() << "opened maps in " << directory;
        } catch (const std::runtime_error& error) {
            EXPECT_EQ(std::string(error.what()), "no stickylb maps pinned in " + directory + ": is stickylbd running?");
        }
    }
}

}  // namespace
}  // namespace stickylb::testing
