// SPDX-License-Identifier: Apache-2.0
// The flow and affinity tables under pressure. A flood of spoofed handshakes from a
// million sources does not evict established users (the per-CPU new-flow guard: past
// its limit new flows are balanced by the ring but recorded nowhere), and the same flood
// without the guard does (so the first test can fail). With the flow table full, new
// flows are still balanced and established flows keep their backend while the ring holds.
#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bpf/fixture.h"

namespace stickylb::testing {
namespace {

constexpr std::uint16_t kFiveTuplePort = 80;
constexpr std::uint16_t kPersistentPort = 8080;

struct Family {
    bool v4;
    const char* vip;
    std::uint32_t five_tuple_index;
    std::uint32_t persistent_index;
};
const Family kFamilies[] = {{true, "192.0.2.10", 1, 2}, {false, "2001:db8::10", 3, 4}};

// The n-th distinct client of a family (n < 2^22).
IpAddress client(bool v4, std::uint32_t n) {
    stickylb_addr abi{};
    if (v4) {
        abi.v4 = htonl(0x64400000u + n);  // 100.64.0.0/10
    } else {
        const IpAddress base = IpAddress::parse("2001:db8:f::");
        std::memcpy(abi.bytes, base.bytes().data(), 16);
        abi.v6[3] = htonl(n);
    }
    return IpAddress::from_abi(abi, v4 ? STICKYLB_FAMILY_IPV4 : STICKYLB_FAMILY_IPV6);
}

struct Established {
    PacketSpec ack;  // an established packet of the flow
    std::uint32_t backend;
    bool persistent;
};

class FlowTablePressure : public DataPlaneTest {
protected:
    void load(std::uint32_t flow_entries, std::uint32_t affinity_entries) {
        LoadOptions options = small_load_options(kTestRingSize);
        options.flow_entries = flow_entries;
        options.affinity_entries = affinity_entries;
        plane_.emplace(DataPlane::load(options));
        set_new_flow_limit(0);
        for (const Family& family : kFamilies) {
            VipSettings five_tuple;
            five_tuple.index = family.five_tuple_index;
            plane().upsert_vip(VipKey{IpAddress::parse(family.vip), kFiveTuplePort, IPPROTO_TCP}, five_tuple);
            set_backends(family.five_tuple_index, three_backends());
            VipSettings persistent;
            persistent.index = family.persistent_index;
            persistent.persistent = true;
            plane().upsert_vip(VipKey{IpAddress::parse(family.vip), kPersistentPort, IPPROTO_TCP}, persistent);
            set_backends(family.persistent_index, three_backends());
        }
    }

    static std::vector<TestBackend> three_backends() {
        return {
            {1, IpAddress::parse("10.0.0.1")}, {2, IpAddress::parse("10.0.0.2")}, {3, IpAddress::parse("10.0.0.3")}};
    }

    void set_new_flow_limit(std::uint32_t limit) {
        RuntimeConfig config = runtime_config_;
        config.new_flow_limit = limit;
        plane().set_runtime_config(config);
    }

    static PacketSpec packet(const Family& family, bool persistent, const IpAddress& source, std::uint16_t port,
                             std::uint8_t flags) {
        PacketSpec spec;
        spec.source = source;
        spec.destination = IpAddress::parse(family.vip);
        spec.source_port = port;
        spec.destination_port = persistent ? kPersistentPort : kFiveTuplePort;
        spec.tcp_flags = flags;
        return spec;
    }

    // SYN then the ACK that completes the handshake (and records the flow).
    std::uint32_t handshake(PacketSpec spec) {
        spec.tcp_flags = kTcpSyn;
        const std::uint32_t backend = backend_of(run(spec));
        spec.tcp_flags = kTcpAck;
        EXPECT_EQ(backend_of(run(spec)), backend) << "one handshake, one backend";
        return backend;
    }

    // `count` clients per VIP (both families, both VIPs), clients numbered from `first`.
    std::vector<Established> establish(std::uint32_t first, std::uint32_t count) {
        std::vector<Established> flows;
        for (const Family& family : kFamilies)
            for (const bool persistent : {false, true})
                for (std::uint32_t n = first; n < first + count; ++n) {
                    const PacketSpec ack = packet(family, persistent, client(family.v4, n), 40000, kTcpAck);
                    const std::uint32_t backend = handshake(ack);
                    EXPECT_NE(backend, 0u);
                    flows.push_back({ack, backend, persistent});
                }
        return flows;
    }

    std::optional<stickylb_flow> flow_entry(const PacketSpec& spec) {
        const stickylb_flow_key key = flow_key_of(spec);
        stickylb_flow value{};
        if (bpf_map_lookup_elem(plane().flows_map_fd(), &key, &value) == 0)
            return value;
        EXPECT_EQ(errno, ENOENT);
        return std::nullopt;
    }

    std::optional<stickylb_affinity> affinity_entry(const Family& family, const IpAddress& source) {
        stickylb_affinity_key key{};
        key.vip_index = family.persistent_index;
        key.family = source.family();
        key.client = source.to_abi();  // client prefixes /32 and /128: unmasked
        stickylb_affinity value{};
        if (bpf_map_lookup_elem(plane().affinity_map_fd(), &key, &value) == 0)
            return value;
        EXPECT_EQ(errno, ENOENT);
        return std::nullopt;
    }

    const Family& family_of(const PacketSpec& spec) { return spec.source.is_v4() ? kFamilies[0] : kFamilies[1]; }

    // Established flows whose entries (flow, and affinity for persistent VIPs) are gone or changed.
    std::size_t entries_lost(const std::vector<Established>& flows) {
        std::size_t lost = 0;
        for (const Established& flow : flows) {
            const auto entry = flow_entry(flow.ack);
            bool intact = entry && entry->backend_index == flow.backend;
            if (flow.persistent) {
                const auto affinity = affinity_entry(family_of(flow.ack), flow.ack.source);
                intact = intact && affinity && affinity->backend_index == flow.backend;
            }
            lost += !intact;
        }
        return lost;
    }

    // The ring no longer names backend 3 (draining keeps its flows and clients): a flow or
    // client of backend 3 that lost its entry would move.
    void drain_backend_3() {
        for (const Family& family : kFamilies)
            for (const std::uint32_t index : {family.five_tuple_index, family.persistent_index})
                set_state_and_ring(index, 3, BackendState::draining);
    }

    struct Flood {
        std::uint64_t packets = 0;
        std::uint64_t acks = 0;       // packets that would record a flow
        std::uint64_t forwarded = 0;  // XDP_TX
        std::uint64_t off_ring = 0;   // forwarded elsewhere than the ring names
    };

    // One packet from each of `sources` distinct clients (numbered from `first`): both
    // families, both VIPs, SYNs and handshake-completing ACKs, all spoofed.
    Flood flood(std::uint32_t first, std::uint32_t sources) {
        struct Template {
            Bytes frame;
            std::size_t source_offset;
            const Family* family;
            bool persistent;
            std::uint8_t flags;
        };
        std::vector<Template> templates;
        for (const Family& family : kFamilies)
            for (const bool persistent : {false, true})
                for (const std::uint8_t flags : {kTcpSyn, kTcpAck}) {
                    const PacketSpec spec = packet(family, persistent, client(family.v4, 0), 50000, flags);
                    templates.push_back(
                        {build_packet(spec), l3_offset(spec) + (family.v4 ? 12 : 8), &family, persistent, flags});
                }
        Flood result;
        Bytes frame;
        Bytes output(256 + 128);
        for (std::uint32_t i = 0; i < sources; ++i) {
            const Template& t = templates[i % templates.size()];
            const IpAddress source = client(t.family->v4, first + i);
            frame = t.frame;
            std::memcpy(frame.data() + t.source_offset, source.bytes().data(), t.family->v4 ? 4 : 16);
            LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = frame.data(), .data_out = output.data(),
                        .data_size_in = static_cast<std::uint32_t>(frame.size()),
                        .data_size_out = static_cast<std::uint32_t>(output.size()), .repeat = 1);
            check_libbpf(bpf_prog_test_run_opts(plane().xdp_program_fd(), &options), "BPF_PROG_TEST_RUN");
            ++result.packets;
            result.acks += t.flags == kTcpAck;
            if (options.retval != XDP_TX)
                continue;
            ++result.forwarded;
            XdpRun sent{XDP_TX, Bytes(output.begin(), output.begin() + options.data_size_out)};
            PacketSpec spec = packet(*t.family, t.persistent, source, 50000, t.flags);
            const std::uint32_t hash = t.persistent ? client_hash_of(source) : flow_hash_of(spec);
            result.off_ring += backend_of(sent) != ring_backend(hash);
        }
        return result;
    }

    std::uint64_t new_flows() {
        std::uint64_t total = 0;
        for (std::uint32_t index = 1; index <= 4; ++index)
            total += plane().vip_stats(index).new_flows;
        return total;
    }
};

TEST_F(FlowTablePressure, EstablishedFlowsKeepTheirBackendDuringAMillionSourceFlood) {
    load(16384, 16384);
    const std::vector<Established> established = establish(0, 500);
    drain_backend_3();
    const auto on_backend_3 =
        std::count_if(established.begin(), established.end(), [](const Established& f) { return f.backend == 3; });
    ASSERT_GT(on_backend_3, 100) << "flows that would move if their entries went";
    ASSERT_EQ(entries_lost(established), 0u);

    // Low enough that however fast this machine runs the flood, what the guard lets in
    // fits the tables next to the established entries.
    set_new_flow_limit(100);
    const std::uint64_t recorded_before = new_flows();
    const std::uint64_t refused_before = plane().global_stats().flows_not_recorded;
    const auto started = std::chrono::steady_clock::now();
    const Flood result = flood(1000000, 1000000);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::uint64_t recorded = new_flows() - recorded_before;
    const std::uint64_t refused = plane().global_stats().flows_not_recorded - refused_before;
    std::cout << "flood: " << result.packets << " packets from distinct sources in " << seconds << " s; " << recorded
              << " flows recorded, " << refused << " refused by the new-flow guard" << std::endl;

    // Every flood packet was balanced by the ring, recorded or not.
    EXPECT_EQ(result.forwarded, result.packets);
    EXPECT_EQ(result.off_ring, 0u);
    // Each ACK of a new flow was either recorded or counted as refused; SYNs record nothing.
    EXPECT_EQ(recorded + refused, result.acks);
    EXPECT_GT(refused, 0u);

    EXPECT_EQ(entries_lost(established), 0u) << "established entries evicted or changed by the flood";
    for (const Established& flow : established) {
        SCOPED_TRACE(flow.ack.source.to_string() + (flow.persistent ? " persistent" : " 5-tuple"));
        EXPECT_EQ(backend_of(run(flow.ack)), flow.backend);
        if (flow.persistent) {
            PacketSpec next_connection = flow.ack;  // the same client's next connection
            next_connection.source_port = 40001;
            next_connection.tcp_flags = kTcpSyn;
            EXPECT_EQ(backend_of(run(next_connection)), flow.backend);
        }
    }
}

TEST_F(FlowTablePressure, WithoutTheGuardTheSameFloodEvictsEstablishedFlows) {
    load(16384, 16384);
    const std::vector<Established> established = establish(0, 500);
    ASSERT_EQ(entries_lost(established), 0u);
    // No limit: four times the table's size in recorded flood flows.
    const Flood result = flood(1000000, 2 * 4 * 16384);
    EXPECT_EQ(result.forwarded, result.packets);
    EXPECT_EQ(plane().global_stats().flows_not_recorded, 0u);
    EXPECT_GT(entries_lost(established), established.size() / 2);
}

TEST_F(FlowTablePressure, FullFlowTableStillBalancesNewFlowsAndKeepsEstablishedOnes) {
    constexpr std::uint32_t kEntries = 1024;
    load(kEntries, kEntries);
    // Four times as many flows (and clients) per VIP as the tables hold.
    const std::vector<Established> established = establish(0, 4 * kEntries);

    // Established flows (recorded, or evicted and re-picked by the unchanged ring) keep their backend.
    std::size_t moved = 0;
    for (const Established& flow : established)
        moved += backend_of(run(flow.ack)) != flow.backend;
    EXPECT_EQ(moved, 0u);
    // The table is full, and still records: the most recent flow is in it.
    EXPECT_TRUE(flow_entry(established.back().ack));

    // New flows: all forwarded, spread evenly over the three backends.
    for (const Family& family : kFamilies) {
        for (const bool persistent : {false, true}) {
            SCOPED_TRACE(std::string(family.vip) + (persistent ? " persistent" : " 5-tuple"));
            std::map<std::uint32_t, int> per_backend;
            constexpr int kNew = 3000;
            for (std::uint32_t n = 0; n < kNew; ++n) {
                const PacketSpec ack = packet(family, persistent, client(family.v4, 100000 + n), 41000, kTcpAck);
                const std::uint32_t backend = handshake(ack);
                ASSERT_NE(backend, 0u);
                ++per_backend[backend];
            }
            for (const std::uint32_t backend : {1u, 2u, 3u}) {
                EXPECT_GT(per_backend[backend], kNew / 4) << "backend " << backend;
                EXPECT_LT(per_backend[backend], kNew * 5 / 12) << "backend " << backend;
            }
        }
    }
}

}  // namespace
}  // namespace stickylb::testing
