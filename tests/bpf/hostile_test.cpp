// SPDX-License-Identifier: Apache-2.0
// Hostile and unusual input. Traffic that is not ours passes untouched. Truncated or
// lying headers are never forwarded. IPv4 options, IPv6 extension headers, ICMP
// "too big" errors and fragments reach the backend of their flow or client. A down
// backend gets nothing. Every packet ends in exactly one outcome counter.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/if_ether.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bpf/fixture.h"
#include "bpf/outcomes.h"

namespace stickylb::testing {
namespace {

constexpr std::uint16_t kTcpPort = 80;
constexpr std::uint16_t kUdpPort = 53;

struct Family {
    const char* name;
    const char* vip;
    const char* client;
    const char* other;        // an address on the same network that is not a VIP
    const char* router;       // sends ICMP errors
    std::uint32_t tcp_index;  // VIP (ring, stats) index of tcp/80
    std::uint32_t udp_index;  // and of udp/53
    std::uint32_t index_of(std::uint8_t protocol) const { return protocol == IPPROTO_UDP ? udp_index : tcp_index; }
    bool v4() const { return IpAddress::parse(vip).is_v4(); }
};
const Family kV4{"ipv4", "192.0.2.10", "198.51.100.7", "192.0.2.99", "203.0.113.1", 1, 3};
const Family kV6{"ipv6", "2001:db8::10", "2001:db8:1::7", "2001:db8::99", "2001:db8:ff::1", 2, 4};
const Family* const kFamilies[] = {&kV4, &kV6};

// The n-th of a pool of clients (n < 80).
IpAddress client_of(const Family& family, int n) {
    const std::string suffix = std::to_string(10 + n);
    return IpAddress::parse(family.v4() ? "198.51.100." + suffix : "2001:db8:1::" + suffix);
}

PacketSpec tcp_to(const Family& family, const char* destination, std::uint16_t source_port = 40000,
                  std::uint8_t flags = kTcpSyn) {
    PacketSpec spec;
    spec.source = IpAddress::parse(family.client);
    spec.destination = IpAddress::parse(destination);
    spec.destination_port = kTcpPort;
    spec.source_port = source_port;
    spec.tcp_flags = flags;
    return spec;
}

PacketSpec tcp_syn(const Family& family, std::uint16_t source_port = 40000) {
    return tcp_to(family, family.vip, source_port);
}

PacketSpec udp_to(const Family& family, const char* destination, std::uint16_t source_port = 40000) {
    PacketSpec spec = tcp_to(family, destination, source_port);
    spec.protocol = IPPROTO_UDP;
    spec.destination_port = kUdpPort;
    spec.payload_bytes = 16;
    return spec;
}

// Offset of the L4 header in a frame built from spec (after IPv4 options / the hop-by-hop header).
std::size_t l4_offset(const PacketSpec& spec) {
    if (spec.source.is_v4())
        return l3_offset(spec) + 20 + spec.ipv4_options.size();
    return l3_offset(spec) + 40 + (spec.ipv6_hop_by_hop ? 8 : 0);
}

// The frame with extra 16-bit words (ether type, TCI pairs) inserted after the MAC addresses.
Bytes with_tags(const Bytes& frame, std::initializer_list<std::uint16_t> words) {
    Bytes tags;
    for (const std::uint16_t word : words) {
        tags.push_back(static_cast<std::uint8_t>(word >> 8));
        tags.push_back(static_cast<std::uint8_t>(word));
    }
    Bytes result(frame.begin(), frame.begin() + 12);
    result.insert(result.end(), tags.begin(), tags.end());
    result.insert(result.end(), frame.begin() + 12, frame.end());
    return result;
}

Bytes padded(Bytes frame, std::size_t size) {
    frame.resize(std::max(frame.size(), size), 0);
    return frame;
}

// Who has the v4 VIP?
Bytes arp_request() {
    const auto client = IpAddress::parse(kV4.client).bytes();
    const auto target = IpAddress::parse(kV4.vip).bytes();
    const auto mac = PacketSpec{}.source_mac.bytes();
    Bytes frame{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    frame.insert(frame.end(), mac.begin(), mac.end());
    frame.insert(frame.end(), {0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01});
    frame.insert(frame.end(), mac.begin(), mac.end());
    frame.insert(frame.end(), client.begin(), client.begin() + 4);
    frame.insert(frame.end(), 6, 0);
    frame.insert(frame.end(), target.begin(), target.begin() + 4);
    return padded(frame, 60);
}

Bytes lldp_frame() {
    const auto mac = PacketSpec{}.source_mac.bytes();
    Bytes frame{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e};
    frame.insert(frame.end(), mac.begin(), mac.end());
    frame.insert(frame.end(), {0x88, 0xcc});
    frame.insert(frame.end(), {0x02, 0x07, 0x04});  // chassis id: MAC
    frame.insert(frame.end(), mac.begin(), mac.end());
    frame.insert(frame.end(), {0x04, 0x03, 0x05, 'e', '0'});  // port id
    frame.insert(frame.end(), {0x06, 0x02, 0x00, 0x78});      // TTL 120
    frame.insert(frame.end(), {0x00, 0x00});                  // end
    return padded(frame, 60);
}

// The frame with `count` 8-byte destination-options headers (PadN) inserted after the
// IPv6 header, or after its hop-by-hop header if spec has one; payload length adjusted.
Bytes with_destination_options(const Bytes& frame, const PacketSpec& spec, int count) {
    const std::size_t l3 = l3_offset(spec);
    const std::size_t at = l3 + 40 + (spec.ipv6_hop_by_hop ? 8 : 0);
    const std::size_t next_field = spec.ipv6_hop_by_hop ? l3 + 40 : l3 + 6;  // who names the header at `at`
    std::uint8_t next = frame.at(next_field);
    Bytes headers;
    for (int i = 0; i < count; ++i) {
        const Bytes header{next, 0, 1, 4, 0, 0, 0, 0};
        headers.insert(headers.begin(), header.begin(), header.end());
        next = 60;  // NEXTHDR_DEST
    }
    Bytes result(frame.begin(), frame.begin() + static_cast<long>(at));
    result.insert(result.end(), headers.begin(), headers.end());
    result.insert(result.end(), frame.begin() + static_cast<long>(at), frame.end());
    if (count > 0)
        result[next_field] = 60;
    set16(result, l3 + 4, static_cast<std::uint16_t>(get16(result, l3 + 4) + 8 * count));
    return result;
}

// The first `length` bytes of the IP packet the VIP (through a backend) sent back to
// the client of `flow`, as a router quotes it in an ICMP error; `from` replaces its source.
Bytes quoted_reply(const PacketSpec& flow, std::size_t length, std::optional<IpAddress> from = std::nullopt) {
    PacketSpec reply = flow;
    std::swap(reply.source, reply.destination);
    std::swap(reply.source_port, reply.destination_port);
    reply.tcp_flags = kTcpAck;
    reply.payload_bytes = 64;
    reply.vlan_id.reset();
    if (from)
        reply.source = *from;
    const Bytes frame = build_packet(reply);
    const auto start = frame.begin() + static_cast<long>(l3_offset(reply));
    return Bytes(start, start + static_cast<long>(length));
}

// ICMP "fragmentation needed" / ICMPv6 "packet too big" from the family's router to the
// VIP of `flow`, carrying `quote`.
Bytes icmp_too_big_with(const Family& family, const PacketSpec& flow, const Bytes& quote) {
    Bytes message = family.v4() ? Bytes{3, 4, 0, 0, 0, 0, 0x05, 0x00} : Bytes{2, 0, 0, 0, 0, 0, 0x05, 0x00};
    message.insert(message.end(), quote.begin(), quote.end());
    PacketSpec outer = flow;
    outer.source = IpAddress::parse(family.router);
    outer.ipv4_options.clear();
    outer.ipv6_hop_by_hop = false;
    return build_icmp(outer, message);
}

Bytes icmp_echo(const Family& family, const char* destination) {
    PacketSpec spec = tcp_to(family, destination);
    Bytes message{static_cast<std::uint8_t>(family.v4() ? 8 : 128), 0, 0, 0, 0x12, 0x34, 0x00, 0x01};
    for (int i = 0; i < 32; ++i)
        message.push_back(static_cast<std::uint8_t>(i));
    return build_icmp(spec, message);
}

// --- outcome counters -------------------------------------------------------------

// The XDP verdict an outcome goes with.
int verdict_of(const std::string& outcome) {
    if (outcome == "tx")
        return XDP_TX;
    if (outcome == "redirect")
        return XDP_REDIRECT;
    if (outcome.rfind("pass_", 0) == 0)
        return XDP_PASS;
    if (outcome.rfind("drop_", 0) == 0)
        return XDP_DROP;
    return -1;
}

// --- fixture ----------------------------------------------------------------------

class Hostile : public DataPlaneTest {
protected:
    struct Sent {
        XdpRun run;
        std::string outcome;  // moved_outcomes() of this one packet
    };

    void SetUp() override {
        DataPlaneTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        configure(VipSettings{});
    }

    // tcp/80 and udp/53 on the v4 VIP address (indexes 1, 3) and the v6 one (2, 4), each
    // with `settings`, and the same three backends (known MACs, all up) in every ring.
    void configure(VipSettings settings) {
        for (const Family* family : kFamilies) {
            settings.index = family->tcp_index;
            plane().upsert_vip(VipKey{IpAddress::parse(family->vip), kTcpPort, IPPROTO_TCP}, settings);
            set_backends(family->tcp_index, three_backends(BackendState::up));
            settings.index = family->udp_index;
            plane().upsert_vip(VipKey{IpAddress::parse(family->vip), kUdpPort, IPPROTO_UDP}, settings);
            set_backends(family->udp_index, three_backends(BackendState::up));
        }
    }

    static std::vector<TestBackend> three_backends(BackendState state) {
        return {{1, IpAddress::parse("10.0.0.1"), state},
                {2, IpAddress::parse("10.0.0.2"), state},
                {3, IpAddress::parse("10.0.0.3"), state}};
    }

    Sent send(const Bytes& frame) {
        const stickylb_global_stats before = plane().global_stats();
        XdpRun result = run(frame);
        return {std::move(result), moved_outcomes(before, plane().global_stats())};
    }
    Sent send(const PacketSpec& spec) { return send(build_packet(spec)); }

    // SYN then ACK: a flow (and a persistent VIP's client) is recorded once the handshake completes.
    std::uint32_t handshake(const PacketSpec& syn) {
        const std::uint32_t backend = backend_of(send(syn).run);
        PacketSpec ack = syn;
        ack.tcp_flags = kTcpAck;
        EXPECT_EQ(backend_of(send(ack).run), backend) << "the packets of one handshake reach one backend";
        return backend;
    }

    // BPF_PROG_TEST_RUN without throwing: nullopt when the kernel refuses the input
    // (it does for XDP input shorter than an Ethernet header).
    std::optional<XdpRun> try_run(const Bytes& packet) {
        XdpRun result;
        result.output.resize(packet.size() + 256);
        LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = packet.data(), .data_out = result.output.data(),
                    .data_size_in = static_cast<std::uint32_t>(packet.size()),
                    .data_size_out = static_cast<std::uint32_t>(result.output.size()), .repeat = 1);
        const int rc = bpf_prog_test_run_opts(plane().xdp_program_fd(), &options);
        if (rc != 0) {
            EXPECT_EQ(rc, -EINVAL) << "test run of " << packet.size() << " bytes";
            return std::nullopt;
        }
        result.action = static_cast<int>(options.retval);
        result.output.resize(options.data_size_out);
        return result;
    }

    // Passed to the stack as it came, counted in `outcome`.
    void expect_passed_untouched(const Bytes& frame, const std::string& outcome) {
        const Sent sent = send(frame);
        EXPECT_EQ(sent.run.action, XDP_PASS);
        EXPECT_EQ(sent.outcome, outcome);
        EXPECT_EQ(hex(sent.run.output), hex(frame));
    }

    // Sent to `backend` with only the MAC addresses rewritten.
    void expect_forwarded_to(const Bytes& frame, std::uint32_t backend) {
        const Sent sent = send(frame);
        EXPECT_EQ(sent.run.action, XDP_TX);
        EXPECT_EQ(sent.outcome, "tx");
        EXPECT_EQ(backend_of(sent.run), backend);
        EXPECT_EQ(hex(sent.run.output), hex(with_macs(frame, kLbMac, backend_mac(backend))));
    }

    std::optional<stickylb_flow> flow_entry(const PacketSpec& spec) {
        const stickylb_flow_key key = flow_key_of(spec);
        stickylb_flow value{};
        if (bpf_map_lookup_elem(plane().flows_map_fd(), &key, &value) == 0)
            return value;
        EXPECT_EQ(errno, ENOENT) << "flow table lookup failed";
        return std::nullopt;
    }
};

// --- 1. not ours ------------------------------------------------------------------

TEST_F(Hostile, TrafficThatIsNotForAVipPassesUntouched) {
    struct Case {
        std::string name;
        Bytes frame;
        const char* outcome;
    };
    std::vector<Case> cases;
    for (const Family* family : kFamilies) {
        const std::string f = family->name;
        cases.push_back(
            {f + " tcp to a non-VIP address", build_packet(tcp_to(*family, family->other)), "pass_not_vip"});
        cases.push_back(
            {f + " udp to a non-VIP address", build_packet(udp_to(*family, family->other)), "pass_not_vip"});
        PacketSpec other_port = tcp_syn(*family);
        other_port.destination_port = 443;
        cases.push_back({f + " tcp to the VIP address, port 443", build_packet(other_port), "pass_not_vip"});
        PacketSpec udp_on_tcp_port = udp_to(*family, family->vip);
        udp_on_tcp_port.destination_port = kTcpPort;
        cases.push_back(
            {f + " udp to the VIP address, port 80 (tcp only)", build_packet(udp_on_tcp_port), "pass_not_vip"});
        PacketSpec port_zero = tcp_syn(*family);
        port_zero.destination_port = 0;
        cases.push_back({f + " tcp to the VIP address, port 0", build_packet(port_zero), "pass_not_vip"});
        cases.push_back({f + " icmp echo to the VIP address", icmp_echo(*family, family->vip), "pass_not_vip"});
        cases.push_back({f + " QinQ (0x88a8 outer tag) tcp to the VIP",
                         with_tags(build_packet(tcp_syn(*family)), {0x88a8, 100, 0x8100, 42}), "pass_not_ip"});
        cases.push_back({f + " single 0x88a8 (802.1ad) tag tcp to the VIP",
                         with_tags(build_packet(tcp_syn(*family)), {0x88a8, 100}), "pass_not_ip"});
        cases.push_back({f + " double 0x8100 tag tcp to the VIP",
                         with_tags(build_packet(tcp_syn(*family)), {0x8100, 100, 0x8100, 42}), "pass_not_ip"});
    }
    cases.push_back({"arp request for the VIP", arp_request(), "pass_not_ip"});
    cases.push_back({"lldp", lldp_frame(), "pass_not_ip"});
    cases.push_back({"unknown ether type 0x88b5", with_tags(lldp_frame(), {0x88b5}), "pass_not_ip"});

    for (const auto& test : cases) {
        SCOPED_TRACE(test.name);
        expect_passed_untouched(test.frame, test.outcome);
    }
    // The VIPs are live: their own traffic is forwarded.
    for (const Family* family : kFamilies) {
        EXPECT_EQ(send(tcp_syn(*family)).outcome, "tx") << family->name;
        EXPECT_EQ(send(udp_to(*family, family->vip)).outcome, "tx") << family->name;
    }
}

// --- 2. truncation ----------------------------------------------------------------

TEST_F(Hostile, TruncatedVipPacketsAreNeverForwarded) {
    struct Case {
        const char* name;
        PacketSpec spec;
    };
    PacketSpec vlan = tcp_syn(kV4);
    vlan.vlan_id = 42;
    PacketSpec vlan6 = tcp_syn(kV6);
    vlan6.vlan_id = 42;
    PacketSpec udp = udp_to(kV4, kV4.vip);
    const Case cases[] = {{"ipv4 syn", tcp_syn(kV4)},
                          {"ipv6 syn", tcp_syn(kV6)},
                          {"ipv4 syn with vlan", vlan},
                          {"ipv6 syn with vlan", vlan6},
                          {"ipv4 udp", udp}};
    for (const auto& test : cases) {
        SCOPED_TRACE(test.name);
        const Bytes full = build_packet(test.spec);
        ASSERT_EQ(send(full).outcome, "tx");  // whole, it is forwarded
        const std::size_t ip_header_end = l4_offset(test.spec);
        const stickylb_global_stats start = plane().global_stats();
        std::uint64_t ran = 0;
        for (std::size_t length = 1; length < full.size(); ++length) {
            SCOPED_TRACE("truncated to " + std::to_string(length) + " bytes");
            const Bytes cut(full.begin(), full.begin() + static_cast<long>(length));
            const stickylb_global_stats before = plane().global_stats();
            const std::optional<XdpRun> result = try_run(cut);
            if (!result) {
                EXPECT_LT(length, std::size_t{ETH_HLEN}) << "the kernel refused a frame with a whole Ethernet header";
                continue;
            }
            ++ran;
            const std::string outcome = moved_outcomes(before, plane().global_stats());
            EXPECT_NE(result->action, XDP_TX);
            EXPECT_NE(result->action, XDP_REDIRECT);
            EXPECT_EQ(result->action, verdict_of(outcome)) << outcome;
            if (result->action == XDP_PASS) {
                EXPECT_EQ(hex(result->output), hex(cut));
            }
            // The whole IP header is there and claims more than the frame holds.
            if (length >= ip_header_end) {
                EXPECT_EQ(outcome, "drop_malformed");
            }
        }
        const stickylb_global_stats end = plane().global_stats();
        EXPECT_GE(ran, full.size() - ETH_HLEN);
        EXPECT_EQ(outcome_total(end) - outcome_total(start), ran);
        EXPECT_EQ(end.tx, start.tx);
        EXPECT_EQ(end.redirect, start.redirect);
    }
}

// --- 3. lying headers -------------------------------------------------------------

struct Mutation {
    const char* name;
    bool ipv4;  // which family it applies to
    bool ipv6;
    std::uint8_t protocol;
    bool hop_by_hop;
    std::function<void(Bytes& frame, std::size_t l3, std::size_t l4)> apply;
};

const std::vector<Mutation>& mutations() {
    static const std::vector<Mutation> all{
        {"ipv4 ihl 4", true, false, IPPROTO_TCP, false, [](Bytes& f, std::size_t l3, std::size_t) { f[l3] = 0x44; }},
        {"ipv4 ihl 15, beyond the packet", true, false, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t l3, std::size_t) { f[l3] = 0x4f; }},
        {"ipv4 total length beyond the frame", true, false, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t l3, std::size_t) {
             set16(f, l3 + 2, static_cast<std::uint16_t>(f.size() - l3 + 1));
         }},
        {"ipv4 total length beyond the frame, udp", true, false, IPPROTO_UDP, false,
         [](Bytes& f, std::size_t l3, std::size_t) {
             set16(f, l3 + 2, static_cast<std::uint16_t>(f.size() - l3 + 1));
         }},
        {"ipv4 total length shorter than its header", true, false, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t l3, std::size_t) { set16(f, l3 + 2, 16); }},
        {"ipv6 payload length beyond the frame", false, true, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t l3, std::size_t) {
             set16(f, l3 + 4, static_cast<std::uint16_t>(f.size() - l3 - 40 + 1));
         }},
        {"ipv6 payload length beyond the frame, udp", false, true, IPPROTO_UDP, false,
         [](Bytes& f, std::size_t l3, std::size_t) {
             set16(f, l3 + 4, static_cast<std::uint16_t>(f.size() - l3 - 40 + 1));
         }},
        {"tcp data offset 4", true, true, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t, std::size_t l4) { f[l4 + 12] = 0x40; }},
        {"tcp data offset 0", true, true, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t, std::size_t l4) { f[l4 + 12] = 0x00; }},
        {"tcp data offset 6, beyond the segment", true, true, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t, std::size_t l4) { f[l4 + 12] = 0x60; }},
        {"tcp data offset 15, beyond the segment", true, true, IPPROTO_TCP, false,
         [](Bytes& f, std::size_t, std::size_t l4) { f[l4 + 12] = 0xf0; }},
        {"udp length 0", true, true, IPPROTO_UDP, false,
         [](Bytes& f, std::size_t, std::size_t l4) { set16(f, l4 + 4, 0); }},
        {"udp length 7", true, true, IPPROTO_UDP, false,
         [](Bytes& f, std::size_t, std::size_t l4) { set16(f, l4 + 4, 7); }},
        {"udp length beyond the datagram", true, true, IPPROTO_UDP, false,
         [](Bytes& f, std::size_t, std::size_t l4) {
             set16(f, l4 + 4, static_cast<std::uint16_t>(get16(f, l4 + 4) + 1));
         }},
        {"udp length beyond the datagram, behind hop-by-hop", false, true, IPPROTO_UDP, true,
         [](Bytes& f, std::size_t, std::size_t l4) {
             set16(f, l4 + 4, static_cast<std::uint16_t>(get16(f, l4 + 4) + 1));
         }},
        {"tcp data offset 4, behind hop-by-hop", false, true, IPPROTO_TCP, true,
         [](Bytes& f, std::size_t, std::size_t l4) { f[l4 + 12] = 0x40; }},
    };
    return all;
}

TEST_F(Hostile, LyingHeadersAreDroppedForAVipAndPassedOtherwise) {
    for (const auto& mutation : mutations()) {
        for (const Family* family : kFamilies) {
            if (!(family->v4() ? mutation.ipv4 : mutation.ipv6))
                continue;
            for (const char* destination : {family->vip, family->other}) {
                const bool to_vip = destination == family->vip;
                SCOPED_TRACE(std::string(mutation.name) + ", " + family->name +
                             (to_vip ? ", to the VIP" : ", to a non-VIP"));
                PacketSpec spec =
                    mutation.protocol == IPPROTO_TCP ? tcp_to(*family, destination) : udp_to(*family, destination);
                spec.ipv6_hop_by_hop = mutation.hop_by_hop;
                Bytes frame = build_packet(spec);
                if (to_vip) {
                    ASSERT_EQ(send(frame).outcome, "tx") << "the intact packet is forwarded";
                }
                mutation.apply(frame, l3_offset(spec), l4_offset(spec));
                if (to_vip) {
                    const Sent sent = send(frame);
                    EXPECT_EQ(sent.run.action, XDP_DROP);
                    EXPECT_EQ(sent.outcome, "drop_malformed");
                } else {
                    expect_passed_untouched(frame, "pass_malformed");
                }
            }
        }
    }
}

TEST_F(Hostile, EthernetPaddingIsNotMalformed) {
    // 60-byte minimum frames whose IPv4 packet is shorter: the total length excludes the padding.
    PacketSpec tcp = tcp_syn(kV4);
    PacketSpec udp = udp_to(kV4, kV4.vip);
    udp.payload_bytes = 2;
    PacketSpec vlan = tcp_syn(kV4, 40001);
    vlan.vlan_id = 7;
    // IPv6 frames are never that short; trailing bytes after the payload are the same case.
    PacketSpec tcp6 = tcp_syn(kV6);
    for (const PacketSpec& spec : {tcp, udp, vlan, tcp6}) {
        const Bytes frame = build_packet(spec);
        const Bytes with_padding = padded(frame, spec.source.is_v4() ? 60 : frame.size() + 6);
        SCOPED_TRACE(std::to_string(frame.size()) + " bytes padded to " + std::to_string(with_padding.size()));
        ASSERT_GT(with_padding.size(), frame.size());
        expect_forwarded_to(with_padding, ring_backend(flow_hash_of(spec)));
    }
}

// --- 4. IPv4 options --------------------------------------------------------------

TEST_F(Hostile, Ipv4OptionsReachTheSameBackendAsWithout) {
    Bytes forty(39, 1);  // NOPs
    forty.push_back(0);  // EOL
    const Bytes option_sets[] = {{1, 1, 1, 0}, forty};
    std::uint16_t port = 40000;
    for (const Bytes& options : option_sets) {
        for (int flow = 0; flow < 12; ++flow, ++port) {
            for (const bool tcp : {true, false}) {
                SCOPED_TRACE(std::to_string(options.size()) + " bytes of options, port " + std::to_string(port) +
                             (tcp ? " tcp" : " udp"));
                PacketSpec plain = tcp ? tcp_syn(kV4, port) : udp_to(kV4, kV4.vip, port);
                const std::uint32_t backend = backend_of(send(plain).run);
                ASSERT_NE(backend, 0u);
                ASSERT_EQ(backend, ring_backend(flow_hash_of(plain)));
                PacketSpec with_options = plain;
                with_options.ipv4_options = options;
                expect_forwarded_to(build_packet(with_options), backend);
                if (tcp) {
                    with_options.tcp_flags = kTcpAck;  // follows the flow table
                    expect_forwarded_to(build_packet(with_options), backend);
                }
            }
        }
    }
}

// --- 5. IPv6 extension headers ----------------------------------------------------

TEST_F(Hostile, Ipv6ExtensionHeadersReachTheSameBackendAsWithout) {
    for (std::uint16_t port = 40000; port < 40012; ++port) {
        for (const bool tcp : {true, false}) {
            SCOPED_TRACE("port " + std::to_string(port) + (tcp ? " tcp" : " udp"));
            PacketSpec plain = tcp ? tcp_syn(kV6, port) : udp_to(kV6, kV6.vip, port);
            const std::uint32_t backend = backend_of(send(plain).run);
            ASSERT_NE(backend, 0u);
            ASSERT_EQ(backend, ring_backend(flow_hash_of(plain)));
            PacketSpec hop = plain;
            hop.ipv6_hop_by_hop = true;
            {
                SCOPED_TRACE("hop-by-hop");
                expect_forwarded_to(build_packet(hop), backend);
            }
            {
                SCOPED_TRACE("four destination-options headers");
                expect_forwarded_to(with_destination_options(build_packet(plain), plain, 4), backend);
            }
            {
                SCOPED_TRACE("hop-by-hop and three destination-options headers");
                expect_forwarded_to(with_destination_options(build_packet(hop), hop, 3), backend);
            }
        }
    }
}

// A backend's kernel takes a valid chain of any length: so does the program, up to the
// eight headers it walks. Past that the transport is unknown, and the packet goes to the
// LB's own stack untouched, as the README says of what the program cannot parse.
TEST_F(Hostile, Ipv6ExtensionChainsUpToEightHeadersAreForwardedAndLongerOnesPassedUntouched) {
    PacketSpec plain = tcp_syn(kV6);
    PacketSpec hop = plain;
    hop.ipv6_hop_by_hop = true;
    PacketSpec udp = udp_to(kV6, kV6.vip);
    const std::uint32_t tcp_backend = backend_of(send(plain).run);
    const std::uint32_t udp_backend = backend_of(send(udp).run);
    ASSERT_NE(tcp_backend, 0u);
    ASSERT_NE(udp_backend, 0u);
    {
        SCOPED_TRACE("five destination-options headers");
        expect_forwarded_to(with_destination_options(build_packet(plain), plain, 5), tcp_backend);
    }
    {
        SCOPED_TRACE("eight destination-options headers");
        expect_forwarded_to(with_destination_options(build_packet(plain), plain, 8), tcp_backend);
    }
    {
        SCOPED_TRACE("hop-by-hop and seven destination-options headers");
        expect_forwarded_to(with_destination_options(build_packet(hop), hop, 7), tcp_backend);
    }
    {
        SCOPED_TRACE("five destination-options headers, udp");
        expect_forwarded_to(with_destination_options(build_packet(udp), udp, 5), udp_backend);
    }
    for (const PacketSpec& spec : {plain, udp}) {
        SCOPED_TRACE("nine headers: more than the parser walks");
        expect_passed_untouched(with_destination_options(build_packet(spec), spec, 9), "pass_not_vip");
    }
    PacketSpec other = tcp_to(kV6, kV6.other);
    expect_passed_untouched(with_destination_options(build_packet(other), other, 9), "pass_not_vip");
}

TEST_F(Hostile, Ipv6LyingAboutAnExtensionHeaderIsDroppedForAVipAndPassedOtherwise) {
    struct Case {
        const char* name;
        std::function<void(Bytes& frame, std::size_t l3)> apply;
    };
    const Case cases[] = {
        {"payload length beyond the frame",
         [](Bytes& f, std::size_t l3) { set16(f, l3 + 4, static_cast<std::uint16_t>(f.size() - l3 - 40 + 1)); }},
        {"hop-by-hop header longer than the payload", [](Bytes& f, std::size_t l3) { f[l3 + 41] = 10; }},
        {"frame ends inside the hop-by-hop header", [](Bytes& f, std::size_t l3) { f.resize(l3 + 44); }},
    };
    for (const auto& test : cases) {
        for (const char* destination : {kV6.vip, kV6.other}) {
            const bool to_vip = destination == kV6.vip;
            SCOPED_TRACE(std::string(test.name) + (to_vip ? ", to the VIP" : ", to a non-VIP"));
            PacketSpec spec = tcp_to(kV6, destination);
            spec.ipv6_hop_by_hop = true;
            Bytes frame = build_packet(spec);
            if (to_vip) {
                ASSERT_EQ(send(frame).outcome, "tx") << "the intact packet is forwarded";
            }
            test.apply(frame, l3_offset(spec));
            if (to_vip) {
                const Sent sent = send(frame);
                EXPECT_EQ(sent.run.action, XDP_DROP);
                EXPECT_EQ(sent.outcome, "drop_malformed") << "frame " << hex(frame);
            } else {
                expect_passed_untouched(frame, "pass_malformed");
            }
        }
    }
}

// --- 6. ICMP too big --------------------------------------------------------------

TEST_F(Hostile, IcmpTooBigReachesTheBackendOfItsFlow) {
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const PacketSpec syn = tcp_syn(*family);
        const std::uint32_t backend = handshake(syn);
        ASSERT_NE(backend, 0u);
        // Out of the ring (draining keeps its flows): only the flow table still names it.
        set_state_and_ring(family->tcp_index, backend, BackendState::draining);
        ASSERT_NE(ring_backend(flow_hash_of(syn)), backend);

        const std::uint64_t steered = plane().global_stats().icmp_too_big_steered;
        expect_forwarded_to(build_icmp_too_big(syn, IpAddress::parse(family->router), 1280), backend);
        EXPECT_EQ(plane().global_stats().icmp_too_big_steered, steered + 1);
        // A UDP flow's error too.
        const PacketSpec datagram = udp_to(*family, family->vip);
        const std::uint32_t udp_backend = backend_of(send(datagram).run);
        ASSERT_NE(udp_backend, 0u);
        expect_forwarded_to(build_icmp_too_big(datagram, IpAddress::parse(family->router), 1280), udp_backend);
        EXPECT_EQ(plane().global_stats().icmp_too_big_steered, steered + 2);
        set_state_and_ring(family->tcp_index, backend, BackendState::up);
    }
}

TEST_F(Hostile, IcmpTooBigWithoutAFlowFollowsTheClientsAffinity) {
    configure(VipSettings{.persistent = true});
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const PacketSpec syn = tcp_syn(*family, 40000);
        const std::uint32_t backend = handshake(syn);
        ASSERT_NE(backend, 0u);
        set_state_and_ring(family->tcp_index, backend, BackendState::draining);
        ASSERT_NE(ring_backend(client_hash_of(syn.source)), backend);  // prefix /32, /128

        PacketSpec unknown_flow = syn;
        unknown_flow.source_port = 41000;
        ASSERT_FALSE(flow_entry(unknown_flow));
        const std::uint64_t steered = plane().global_stats().icmp_too_big_steered;
        expect_forwarded_to(build_icmp_too_big(unknown_flow, IpAddress::parse(family->router), 1280), backend);
        EXPECT_EQ(plane().global_stats().icmp_too_big_steered, steered + 1);
        EXPECT_FALSE(flow_entry(unknown_flow)) << "an ICMP error recorded a flow";
        set_state_and_ring(family->tcp_index, backend, BackendState::up);
    }
}

TEST_F(Hostile, IcmpTooBigQuotingAForeignPacketPassesUntouched) {
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const PacketSpec syn = tcp_syn(*family);
        const std::uint32_t backend = backend_of(send(syn).run);
        ASSERT_NE(backend, 0u);
        const std::size_t quote_length = family->v4() ? 28 : 48;
        // Control: this builder's quote of the VIP's own reply is steered.
        expect_forwarded_to(icmp_too_big_with(*family, syn, quoted_reply(syn, quote_length)), backend);

        const std::uint64_t steered = plane().global_stats().icmp_too_big_steered;
        const Bytes foreign =
            icmp_too_big_with(*family, syn, quoted_reply(syn, quote_length, IpAddress::parse(family->other)));
        expect_passed_untouched(foreign, "pass_not_vip");
        EXPECT_EQ(plane().global_stats().icmp_too_big_steered, steered);
    }
}

TEST_F(Hostile, IcmpTooBigQuotingATruncatedHeaderIsNotForwarded) {
    for (const Family* family : kFamilies) {
        const PacketSpec syn = tcp_syn(*family);
        ASSERT_NE(backend_of(send(syn).run), 0u);
        const std::size_t ip_header = family->v4() ? 20 : 40;
        for (const std::size_t length : {std::size_t{0}, std::size_t{8}, ip_header - 1, ip_header, ip_header + 2}) {
            SCOPED_TRACE(std::string(family->name) + ", quote of " + std::to_string(length) + " bytes");
            const Bytes icmp = icmp_too_big_with(*family, syn, quoted_reply(syn, length));
            const std::uint64_t steered = plane().global_stats().icmp_too_big_steered;
            const Sent sent = send(icmp);
            EXPECT_NE(sent.run.action, XDP_TX);
            EXPECT_NE(sent.run.action, XDP_REDIRECT);
            EXPECT_EQ(sent.run.action, verdict_of(sent.outcome)) << sent.outcome;
            if (sent.run.action == XDP_PASS) {
                EXPECT_EQ(hex(sent.run.output), hex(icmp));
            }
            EXPECT_EQ(plane().global_stats().icmp_too_big_steered, steered);
        }
    }
}

// --- 7. fragments -----------------------------------------------------------------

// Every fragment but the last carries a multiple of 8 bytes: 20 + 60 of TCP, 8 + 64 of UDP.
PacketSpec first_fragment(PacketSpec spec) {
    spec.more_fragments = true;
    spec.tcp_flags = kTcpAck;
    spec.payload_bytes = spec.protocol == IPPROTO_TCP ? 60 : 64;
    return spec;
}

PacketSpec later_fragment(PacketSpec spec) {
    spec.fragment_offset_units = 100;
    spec.tcp_flags = kTcpAck;
    spec.payload_bytes = 64;
    return spec;
}

TEST_F(Hostile, FragmentsOfAPersistentVipFollowTheClientsBackend) {
    configure(VipSettings{.persistent = true});
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const std::uint64_t steered = plane().global_stats().fragments_steered;
        std::uint64_t sent_fragments = 0;
        std::vector<std::uint32_t> backends;
        for (int client = 0; client < 8; ++client) {
            SCOPED_TRACE("client " + client_of(*family, client).to_string());
            PacketSpec syn = tcp_syn(*family, static_cast<std::uint16_t>(40000 + client));
            syn.source = client_of(*family, client);
            const std::uint32_t backend = handshake(syn);
            ASSERT_NE(backend, 0u);
            backends.push_back(backend);
            PacketSpec datagram = udp_to(*family, family->vip, 50000);
            datagram.source = syn.source;
            const std::uint32_t udp_backend = backend_of(send(datagram).run);  // the udp VIP's own affinity
            ASSERT_NE(udp_backend, 0u);
            for (const auto& [fragment, expected] :
                 {std::pair{first_fragment(syn), backend}, std::pair{later_fragment(syn), backend},
                  std::pair{first_fragment(datagram), udp_backend}, std::pair{later_fragment(datagram), udp_backend}}) {
                expect_forwarded_to(build_packet(fragment), expected);
                ++sent_fragments;
            }
        }
        EXPECT_EQ(plane().global_stats().fragments_steered, steered + sent_fragments);
        // Fragments follow the affinity, not today's ring.
        PacketSpec syn = tcp_syn(*family);
        syn.source = client_of(*family, 0);
        set_state_and_ring(family->tcp_index, backends[0], BackendState::draining);
        ASSERT_NE(ring_backend(client_hash_of(syn.source)), backends[0]);
        expect_forwarded_to(build_packet(later_fragment(syn)), backends[0]);
        set_state_and_ring(family->tcp_index, backends[0], BackendState::up);
    }
}

TEST_F(Hostile, FragmentsOfAFiveTupleVipAreDropped) {
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const PacketSpec syn = tcp_syn(*family);
        ASSERT_EQ(send(syn).outcome, "tx");
        const PacketSpec datagram = udp_to(*family, family->vip);
        for (const PacketSpec& fragment :
             {first_fragment(syn), later_fragment(syn), first_fragment(datagram), later_fragment(datagram)}) {
            const Sent sent = send(fragment);
            EXPECT_EQ(sent.run.action, XDP_DROP);
            EXPECT_EQ(sent.outcome, "drop_fragment");
        }
    }
    EXPECT_EQ(plane().global_stats().fragments_steered, 0u);
}

TEST_F(Hostile, FragmentsToANonVipAddressPassUntouched) {
    configure(VipSettings{.persistent = true});
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        const PacketSpec tcp = tcp_to(*family, family->other);
        const PacketSpec udp = udp_to(*family, family->other);
        for (const PacketSpec& fragment :
             {first_fragment(tcp), later_fragment(tcp), first_fragment(udp), later_fragment(udp)})
            expect_passed_untouched(build_packet(fragment), "pass_not_vip");
    }
}

// --- 8. counters add up -----------------------------------------------------------

TEST_F(Hostile, OutcomeCountersAddUpOverAMixedSequence) {
    // v4: persistent (fragments steered); v6: 5-tuple (fragments dropped). Backend 3 is
    // down in the map but still in the ring: what hashes to it is dropped, no backend.
    VipSettings persistent{.persistent = true};
    persistent.index = kV4.tcp_index;
    plane().upsert_vip(VipKey{IpAddress::parse(kV4.vip), kTcpPort, IPPROTO_TCP}, persistent);
    persistent.index = kV4.udp_index;
    plane().upsert_vip(VipKey{IpAddress::parse(kV4.vip), kUdpPort, IPPROTO_UDP}, persistent);
    set_state(3, BackendState::down);

    enum Kind { ordinary, fragment, icmp_too_big, other_kind };
    struct Generated {
        Bytes frame;
        std::uint32_t vip_index;  // the VIP it is for, 0 if none
        Kind kind;
    };
    std::mt19937 random(20240611);
    auto pick = [&](int n) { return static_cast<int>(random() % static_cast<unsigned>(n)); };
    auto generate = [&]() -> Generated {
        const Family& family = pick(2) ? kV6 : kV4;
        PacketSpec spec = tcp_syn(family, static_cast<std::uint16_t>(1024 + pick(60000)));
        spec.source = client_of(family, pick(16));
        if (pick(3) == 0) {
            spec.protocol = IPPROTO_UDP;
            spec.destination_port = kUdpPort;
        }
        spec.payload_bytes = static_cast<std::size_t>(pick(200));
        const std::uint32_t vip = family.index_of(spec.protocol);
        switch (pick(18)) {
        case 0: spec.tcp_flags = kTcpAck; return {build_packet(spec), vip, ordinary};
        case 1: spec.tcp_flags = kTcpRst; return {build_packet(spec), vip, ordinary};
        case 2: spec.vlan_id = 42; return {build_packet(spec), vip, ordinary};
        case 3:
            spec.payload_bytes = 0;
            return {padded(build_packet(spec), 60 + static_cast<std::size_t>(pick(8))), vip, ordinary};
        case 4:
            if (family.v4())
                spec.ipv4_options = {1, 1, 1, 0};
            else
                spec.ipv6_hop_by_hop = true;
            return {build_packet(spec), vip, ordinary};
        case 5: spec.destination = IpAddress::parse(family.other); return {build_packet(spec), 0, other_kind};
        case 6: spec.destination_port = 8080; return {build_packet(spec), 0, other_kind};
        case 7: return {icmp_echo(family, family.vip), 0, other_kind};
        case 8: {
            const Bytes l2[] = {arp_request(), lldp_frame(), with_tags(build_packet(spec), {0x88a8, 100, 0x8100, 42})};
            return {l2[pick(3)], 0, other_kind};
        }
        case 9: {
            const Bytes full = build_packet(spec);
            return {Bytes(full.begin(), full.begin() + ETH_HLEN + pick(static_cast<int>(full.size()) - ETH_HLEN)), vip,
                    other_kind};
        }
        case 10:
        case 11: {
            std::vector<const Mutation*> fitting;
            for (const auto& mutation : mutations())
                if ((family.v4() ? mutation.ipv4 : mutation.ipv6) && mutation.protocol == spec.protocol)
                    fitting.push_back(&mutation);
            const Mutation& mutation = *fitting[static_cast<std::size_t>(pick(static_cast<int>(fitting.size())))];
            if (pick(2))
                spec.destination = IpAddress::parse(family.other);
            spec.ipv6_hop_by_hop = mutation.hop_by_hop;
            Bytes frame = build_packet(spec);
            mutation.apply(frame, l3_offset(spec), l4_offset(spec));
            return {frame, vip, other_kind};
        }
        case 12:
        case 13: {
            const PacketSpec piece = pick(2) ? first_fragment(spec) : later_fragment(spec);
            return {build_packet(piece), vip, fragment};
        }
        case 14: {
            spec.destination = IpAddress::parse(family.other);
            return {build_packet(pick(2) ? first_fragment(spec) : later_fragment(spec)), vip, other_kind};
        }
        case 15: return {build_icmp_too_big(spec, IpAddress::parse(family.router), 1280), vip, icmp_too_big};
        case 16: {
            if (family.v4())
                return {build_packet(spec), vip, ordinary};
            return {with_destination_options(build_packet(spec), spec, 5), vip, other_kind};
        }
        default: return {build_packet(spec), vip, ordinary};  // SYN / UDP
        }
    };

    constexpr int kPackets = 400;
    std::map<std::string, std::uint64_t> outcomes;
    std::map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>> per_vip;  // packets, bytes
    std::uint64_t forwarded = 0;
    std::uint64_t forwarded_bytes = 0;
    std::uint64_t fragments_forwarded = 0;
    std::uint64_t icmp_forwarded = 0;
    for (int i = 0; i < kPackets; ++i) {
        const Generated packet = generate();
        SCOPED_TRACE("packet " + std::to_string(i) + ": " + hex(packet.frame));
        const Sent sent = send(packet.frame);
        ASSERT_NE(verdict_of(sent.outcome), -1) << "not exactly one outcome: " << sent.outcome;
        EXPECT_EQ(sent.run.action, verdict_of(sent.outcome)) << sent.outcome;
        if (sent.run.action == XDP_PASS) {
            EXPECT_EQ(hex(sent.run.output), hex(packet.frame));
        }
        ++outcomes[sent.outcome];
        if (sent.outcome == "tx") {
            ASSERT_NE(packet.vip_index, 0u) << "forwarded a packet that is not for a VIP";
            EXPECT_NE(backend_of(sent.run), 3u) << "sent to a down backend";
            ++forwarded;
            forwarded_bytes += packet.frame.size();
            fragments_forwarded += packet.kind == fragment;
            icmp_forwarded += packet.kind == icmp_too_big;
        }
        if (sent.outcome == "tx" || sent.outcome == "drop_no_backend") {
            ASSERT_NE(packet.vip_index, 0u);
            per_vip[packet.vip_index].first += 1;
            per_vip[packet.vip_index].second += packet.frame.size();
        }
    }

    // The mix reached every outcome this set-up can produce.
    for (const char* outcome :
         {"pass_not_ip", "pass_not_vip", "pass_malformed", "drop_malformed", "drop_no_backend", "drop_fragment", "tx"})
        EXPECT_GT(outcomes[outcome], 0u) << outcome;

    const stickylb_global_stats stats = plane().global_stats();
    EXPECT_EQ(outcome_total(stats), std::uint64_t{kPackets});
    EXPECT_EQ(stats.tx, forwarded);
    EXPECT_EQ(stats.fragments_steered, fragments_forwarded);
    EXPECT_EQ(stats.icmp_too_big_steered, icmp_forwarded);
    EXPECT_GT(fragments_forwarded, 0u);
    EXPECT_GT(icmp_forwarded, 0u);
    for (std::uint32_t index = 1; index <= 4; ++index) {
        SCOPED_TRACE("VIP index " + std::to_string(index));
        const stickylb_vip_stats vip = plane().vip_stats(index);
        EXPECT_EQ(vip.packets, per_vip[index].first);
        EXPECT_EQ(vip.bytes, per_vip[index].second);
    }
    std::uint64_t backend_packets = 0;
    std::uint64_t backend_bytes = 0;
    for (std::uint32_t backend = 1; backend <= 3; ++backend) {
        backend_packets += plane().backend_stats(backend).packets;
        backend_bytes += plane().backend_stats(backend).bytes;
    }
    EXPECT_EQ(backend_packets, forwarded);
    EXPECT_EQ(backend_bytes, forwarded_bytes);
    EXPECT_EQ(plane().backend_stats(3).packets, 0u);
}

// --- 9. no usable backend ---------------------------------------------------------

TEST_F(Hostile, VipWithAnEmptyRingDropsAsNoBackend) {
    for (const Family* family : kFamilies)
        for (const std::uint8_t protocol : {IPPROTO_TCP, IPPROTO_UDP})
            set_backends(family->index_of(protocol), three_backends(BackendState::down));
    ASSERT_EQ(std::count(ring_.begin(), ring_.end(), 0u), static_cast<long>(ring_.size()));
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        for (const PacketSpec& spec : {tcp_syn(*family), udp_to(*family, family->vip)}) {
            const Bytes frame = build_packet(spec);
            const Sent sent = send(frame);
            EXPECT_EQ(sent.run.action, XDP_DROP);
            EXPECT_EQ(sent.outcome, "drop_no_backend");
            // Counted for the VIP, as traffic it could not serve.
            EXPECT_EQ(plane().vip_stats(family->index_of(spec.protocol)).packets, 1u);
            EXPECT_EQ(plane().vip_stats(family->index_of(spec.protocol)).bytes, frame.size());
        }
    }
    for (std::uint32_t backend = 1; backend <= 3; ++backend)
        EXPECT_EQ(plane().backend_stats(backend).packets, 0u);
}

TEST_F(Hostile, BackendDownInTheMapButStillInTheRingReceivesNothing) {
    constexpr std::uint32_t kDown = 2;
    for (const Family* family : kFamilies) {
        SCOPED_TRACE(family->name);
        set_state(kDown, BackendState::up);
        std::vector<std::pair<PacketSpec, std::uint32_t>> flows;
        for (std::uint16_t port = 40000; port < 40040; ++port) {
            PacketSpec syn = tcp_syn(*family, port);
            const std::uint32_t backend = backend_of(send(syn).run);
            ASSERT_NE(backend, 0u);
            flows.emplace_back(syn, backend);
        }
        ASSERT_GT(std::count_if(flows.begin(), flows.end(), [](const auto& f) { return f.second == kDown; }), 0);

        set_state(kDown, BackendState::down);  // the daemon has not rebuilt the ring yet
        const std::uint64_t received = plane().backend_stats(kDown).packets;
        for (auto [spec, backend] : flows) {
            spec.tcp_flags = kTcpAck;  // established flows
            SCOPED_TRACE("established, port " + std::to_string(spec.source_port));
            if (backend == kDown) {
                const Sent sent = send(spec);
                EXPECT_EQ(sent.run.action, XDP_DROP);
                EXPECT_EQ(sent.outcome, "drop_no_backend");
            } else {
                expect_forwarded_to(build_packet(spec), backend);
            }
        }
        int new_flows_on_down = 0;
        for (std::uint16_t port = 50000; port < 50040; ++port) {
            SCOPED_TRACE("new, port " + std::to_string(port));
            const PacketSpec syn = tcp_syn(*family, port);
            const std::uint32_t ring = ring_backend(flow_hash_of(syn));
            if (ring == kDown) {
                ++new_flows_on_down;
                const Sent sent = send(syn);
                EXPECT_EQ(sent.run.action, XDP_DROP);
                EXPECT_EQ(sent.outcome, "drop_no_backend");
            } else {
                expect_forwarded_to(build_packet(syn), ring);
            }
        }
        EXPECT_GT(new_flows_on_down, 0);
        EXPECT_EQ(plane().backend_stats(kDown).packets, received);
    }
}

// --- 10. RST ----------------------------------------------------------------------

TEST_F(Hostile, RstThatStartsNoFlowIsForwardedButRecordsNoFlow) {
    for (const Family* family : kFamilies) {
        for (const std::uint8_t flags : {kTcpRst, static_cast<std::uint8_t>(kTcpRst | kTcpAck)}) {
            SCOPED_TRACE(std::string(family->name) + (flags & kTcpAck ? " rst+ack" : " rst"));
            const PacketSpec rst = tcp_to(*family, family->vip, static_cast<std::uint16_t>(45000 + flags), flags);
            const std::uint64_t new_flows = plane().vip_stats(family->tcp_index).new_flows;
            expect_forwarded_to(build_packet(rst), ring_backend(flow_hash_of(rst)));
            EXPECT_FALSE(flow_entry(rst)) << "a RST recorded a flow";
            EXPECT_EQ(plane().vip_stats(family->tcp_index).new_flows, new_flows);

            // Control: a handshake of the same tuple is recorded under the same key, by its ACK.
            PacketSpec syn = rst;
            syn.tcp_flags = kTcpSyn;
            send(syn);
            EXPECT_FALSE(flow_entry(syn)) << "a SYN records nothing";
            const std::uint32_t backend = handshake(syn);
            ASSERT_NE(backend, 0u);
            const std::optional<stickylb_flow> entry = flow_entry(syn);
            ASSERT_TRUE(entry);
            EXPECT_EQ(entry->backend_index, backend);
            EXPECT_EQ(plane().vip_stats(family->tcp_index).new_flows, new_flows + 1);
        }
    }
}

}  // namespace
}  // namespace stickylb::testing
