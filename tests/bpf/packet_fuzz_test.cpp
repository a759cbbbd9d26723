// SPDX-License-Identifier: Apache-2.0
// A million random and mutated frames (seeded, reproducible) through BPF_PROG_TEST_RUN,
// IPv4 and IPv6, L2 DSR and IPIP VIPs, to VIP addresses and elsewhere. Every verdict is
// checked against an independent reading of the frame (reference_parser.h):
//  - not for a VIP address: passed, bytes untouched;
//  - malformed: never forwarded (not XDP_TX, not redirected, not the tc slow path);
//  - forwarded: well formed (MACs of the backend, or an outer header with valid lengths
//    and checksum from the LB's tunnel prefix to a backend of that VIP, inner untouched);
//  - counters: exactly one outcome counter moves per packet, by one.
// STICKYLB_FUZZ_SEED and STICKYLB_FUZZ_PACKETS change the seed and the count; a failure
// prints the seed, the packet's number and its bytes.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bpf/fixture.h"
#include "bpf/reference_parser.h"

namespace stickylb::testing {
namespace {

using reference::Kind;
using reference::Reading;

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
    const char* value = std::getenv(name);
    return value && *value ? std::stoull(value, nullptr, 0) : fallback;
}

const char* kind_name(Kind kind) {
    switch (kind) {
    case Kind::not_ip: return "not_ip";
    case Kind::truncated: return "truncated";
    case Kind::malformed: return "malformed";
    case Kind::flow: return "flow";
    case Kind::fragment: return "fragment";
    case Kind::icmp_too_big: return "icmp_too_big";
    case Kind::other: return "other";
    }
    return "?";
}

// The outcome counters, in stickylb_global_stats order (the table of stickylb/stats.h).
#define OUTCOME_ENUM(field, name, help) field,
#define OUTCOME_FIELD_NAME(field, name, help) #field,
enum Outcome { STICKYLB_OUTCOME_COUNTERS(OUTCOME_ENUM) kOutcomes };
const char* const kOutcomeNames[kOutcomes] = {STICKYLB_OUTCOME_COUNTERS(OUTCOME_FIELD_NAME)};
#undef OUTCOME_ENUM
#undef OUTCOME_FIELD_NAME
static_assert(offsetof(stickylb_global_stats, redirect) == 9 * sizeof(__u64));

// Reads the summed outcome counters with one syscall, into buffers allocated once.
class OutcomeCounters {
public:
    explicit OutcomeCounters(int program_fd) : cpus_(libbpf_num_possible_cpus()) {
        bpf_prog_info info{};
        std::array<std::uint32_t, 64> ids{};
        info.nr_map_ids = ids.size();
        info.map_ids = reinterpret_cast<std::uint64_t>(ids.data());
        std::uint32_t length = sizeof(info);
        if (bpf_obj_get_info_by_fd(program_fd, &info, &length) != 0)
            throw SystemError("read the XDP program's map ids", errno);
        for (std::uint32_t i = 0; i < info.nr_map_ids && fd_ < 0; ++i) {
            const int fd = bpf_map_get_fd_by_id(ids[i]);
            bpf_map_info map{};
            std::uint32_t map_length = sizeof(map);
            if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &map, &map_length) == 0 &&
                std::string(map.name) == "global_stats")
                fd_ = fd;
            else if (fd >= 0)
                close(fd);
        }
        if (fd_ < 0)
            throw std::runtime_error("the XDP program has no global_stats map");
        per_cpu_.resize(static_cast<std::size_t>(cpus_) * kFields);
    }
    ~OutcomeCounters() { close(fd_); }
    OutcomeCounters(const OutcomeCounters&) = delete;
    OutcomeCounters& operator=(const OutcomeCounters&) = delete;

    std::array<std::uint64_t, kOutcomes> read() {
        const std::uint32_t zero = 0;
        check_libbpf(bpf_map_lookup_elem(fd_, &zero, per_cpu_.data()), "read global_stats");
        std::array<std::uint64_t, kOutcomes> sums{};
        for (int cpu = 0; cpu < cpus_; ++cpu)
            for (std::size_t field = 0; field < kOutcomes; ++field)
                sums[field] += per_cpu_[static_cast<std::size_t>(cpu) * kFields + field];
        return sums;
    }

private:
    static constexpr std::size_t kFields = sizeof(stickylb_global_stats) / sizeof(__u64);
    int cpus_;
    int fd_ = -1;
    std::vector<std::uint64_t> per_cpu_;
};

// --- the set-up: two addresses per family, four VIPs on them --------------------------

struct Backend {
    std::uint32_t index;
    const char* address;
    bool mac_known;
    bool down;  // down in the map but still in the rings: never receives anything
};
const Backend kBackends[] = {
    {1, "10.0.0.1", true, false}, {2, "10.0.0.2", true, false}, {3, "10.0.0.3", false, false},
    {4, "fd00::4", true, false},  {5, "fd00::5", false, false}, {6, "10.0.0.6", true, true},
};

struct FuzzVip {
    bool v4;
    bool address_a;  // on the family's first address, else its second
    std::uint8_t protocol;
    std::uint16_t port;
    VipSettings settings;
    std::vector<std::uint32_t> ring_members;
};

VipSettings settings(std::uint32_t index, ForwardingMode mode, bool persistent, bool hash_source) {
    VipSettings s;
    s.index = index;
    s.forwarding = mode;
    s.persistent = persistent;
    s.hash_source = hash_source;
    return s;
}

std::vector<FuzzVip> fuzz_vips() {
    std::vector<FuzzVip> vips;
    for (const bool v4 : {true, false}) {
        const std::uint32_t base = v4 ? 1 : 5;
        // L2 DSR: tcp/80 by 5-tuple, udp/53 persistent. IPIP (4in4/4in6, 6in4/6in6): tcp/443 by
        // source, udp/4500 by 5-tuple. Backend 3/5: next hop unknown (tc slow path), 6: down.
        vips.push_back({v4, true, IPPROTO_TCP, 80, settings(base, ForwardingMode::l2_dsr, false, false), {1, 2, 3, 6}});
        vips.push_back(
            {v4, true, IPPROTO_UDP, 53, settings(base + 1, ForwardingMode::l2_dsr, true, false), {1, 2, 3, 6}});
        vips.push_back(
            {v4, false, IPPROTO_TCP, 443, settings(base + 2, ForwardingMode::ipip, false, true), {1, 4, 5, 6}});
        vips.push_back(
            {v4, false, IPPROTO_UDP, 4500, settings(base + 3, ForwardingMode::ipip, false, false), {2, 4, 5}});
    }
    return vips;
}

const char* vip_address(bool v4, bool address_a) {
    if (v4)
        return address_a ? "192.0.2.10" : "192.0.2.11";
    return address_a ? "2001:db8::10" : "2001:db8::11";
}

class PacketFuzz : public DataPlaneTest {
protected:
    void SetUp() override {
        DataPlaneTest::SetUp();
        if (IsSkipped() || HasFatalFailure())
            return;
        LoadOptions options = small_load_options(kTestRingSize);
        options.max_vips = 16;
        plane_.emplace(DataPlane::load(options));
        // A new-flow limit the run exceeds now and then: flows refused by the guard are
        // forwarded the same way, so both paths face the same invariants.
        RuntimeConfig config = runtime_config_;
        config.new_flow_limit = 200;
        plane().set_runtime_config(config);
        for (const Backend& backend : kBackends) {
            BackendEntry entry;
            entry.index = backend.index;
            entry.address = IpAddress::parse(backend.address);
            entry.state = backend.down ? BackendState::down : BackendState::up;
            entry.egress_mac = kLbMac;
            if (backend.mac_known)
                entry.nexthop_mac = backend_mac(backend.index);
            plane().set_backend(entry);
        }
        vips_ = fuzz_vips();
        for (const FuzzVip& vip : vips_) {
            std::vector<MaglevBackend> members;
            for (const std::uint32_t index : vip.ring_members)
                members.push_back({"be" + std::to_string(index), index, 1, true});
            plane().write_ring(vip.settings.index, build_maglev_ring(members, kTestRingSize, kTestSeed));
            plane().upsert_vip(VipKey{IpAddress::parse(vip_address(vip.v4, vip.address_a)), vip.port, vip.protocol},
                               vip.settings);
        }
        for (const bool v4 : {true, false})
            for (const bool a : {true, false})
                addresses_.push_back(IpAddress::parse(vip_address(v4, a)).to_abi());
    }

public:
    static bool same(const stickylb_addr& a, const stickylb_addr& b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

    std::uint64_t slow_path_key() const { return plane().slow_path_key(); }
    bool is_vip_address(const Reading& r) const {
        for (const auto& address : addresses_)
            if (same(address, r.destination))
                return true;
        return false;
    }

    const FuzzVip* vip_of(const Reading& r, std::uint16_t port) const {
        for (const FuzzVip& vip : vips_) {
            const bool family = vip.v4 == (r.family == STICKYLB_FAMILY_IPV4);
            if (family && vip.protocol == r.protocol && vip.port == port &&
                same(IpAddress::parse(vip_address(vip.v4, vip.address_a)).to_abi(), r.destination))
                return &vip;
        }
        return nullptr;
    }

    // Fragments of an address and protocol follow its source-hashed VIP (if any).
    const FuzzVip* fragment_vip(const Reading& r) const {
        for (const FuzzVip& vip : vips_) {
            const bool family = vip.v4 == (r.family == STICKYLB_FAMILY_IPV4);
            if (family && vip.protocol == r.protocol && (vip.settings.persistent || vip.settings.hash_source) &&
                same(IpAddress::parse(vip_address(vip.v4, vip.address_a)).to_abi(), r.destination))
                return &vip;
        }
        return nullptr;
    }

protected:
    std::vector<FuzzVip> vips_;
    std::vector<stickylb_addr> addresses_;
};

// --- generation ---------------------------------------------------------------------

class Generator {
public:
    explicit Generator(std::uint64_t seed) : random_(seed) {
        for (int i = 1; i <= 64; ++i) {
            clients_v4_.push_back(IpAddress::parse("198.51.100." + std::to_string(i)));
            clients_v6_.push_back(IpAddress::parse("2001:db8:1::" + std::to_string(i)));
        }
        for (const bool v4 : {true, false})
            for (const bool a : {true, false})
                (v4 ? vips_v4_ : vips_v6_).push_back(IpAddress::parse(vip_address(v4, a)));
    }

    Bytes next() {
        const unsigned roll = below(100);
        if (roll < 30)
            return valid();
        if (roll < 88) {
            Bytes frame = valid();
            const unsigned mutations = 1 + below(3);
            for (unsigned i = 0; i < mutations; ++i)
                mutate(frame);
            return frame;
        }
        return garbage();
    }

private:
    unsigned below(unsigned n) { return static_cast<unsigned>(random_() % n); }
    bool chance(unsigned percent) { return below(100) < percent; }
    std::uint8_t byte() { return static_cast<std::uint8_t>(random_()); }

    IpAddress random_address(bool v4) {
        std::array<std::uint8_t, 16> bytes{};
        for (std::size_t i = 0; i < (v4 ? 4u : 16u); ++i)
            bytes[i] = byte();
        stickylb_addr abi{};
        std::memcpy(abi.bytes, bytes.data(), 16);
        return IpAddress::from_abi(abi, v4 ? STICKYLB_FAMILY_IPV4 : STICKYLB_FAMILY_IPV6);
    }

    PacketSpec spec() {
        const bool v4 = chance(50);
        PacketSpec spec;
        const auto& clients = v4 ? clients_v4_ : clients_v6_;
        spec.source = chance(70) ? clients[below(static_cast<unsigned>(clients.size()))] : random_address(v4);
        const unsigned where = below(100);
        if (where < 75)
            spec.destination = (v4 ? vips_v4_ : vips_v6_)[below(2)];
        else if (where < 90)
            spec.destination = IpAddress::parse(v4 ? "192.0.2.99" : "2001:db8::99");
        else
            spec.destination = random_address(v4);
        const unsigned protocol = below(100);
        spec.protocol = protocol < 55 ? IPPROTO_TCP : protocol < 95 ? IPPROTO_UDP : 47;  // 47: GRE
        static const std::uint16_t ports[] = {80, 53, 443, 4500, 8080, 0};
        spec.destination_port = chance(85) ? ports[below(6)] : static_cast<std::uint16_t>(random_());
        if (where < 75 && chance(50)) {  // a service of that VIP address: what gets forwarded
            const bool a = spec.destination == (v4 ? vips_v4_ : vips_v6_)[0];
            const bool tcp = chance(60);
            spec.protocol = tcp ? IPPROTO_TCP : IPPROTO_UDP;
            spec.destination_port = a ? (tcp ? 80 : 53) : (tcp ? 443 : 4500);
        }
        spec.source_port =
            chance(50) ? static_cast<std::uint16_t>(40000 + below(16)) : static_cast<std::uint16_t>(random_());
        static const std::uint8_t flags[] = {
            kTcpSyn, kTcpAck, kTcpSyn | kTcpAck, kTcpRst, kTcpRst | kTcpAck, kTcpFin | kTcpAck, 0x18, 0};
        spec.tcp_flags = chance(90) ? flags[below(8)] : byte();
        spec.payload_bytes = chance(90) ? below(200) : below(1400);
        if (chance(15))
            spec.vlan_id = static_cast<std::uint16_t>(below(4096));
        if (v4 && chance(10))
            spec.ipv4_options = chance(50) ? Bytes(4 * (1 + below(10)), 1) : ipv4_options();
        if (!v4 && chance(10))
            spec.ipv6_hop_by_hop = true;
        return spec;
    }

    // IPv4 options, 4..40 bytes, often not what a kernel takes: options of any type
    // (source routes among them) with lengths that fit, run past the header, or are 0 or 1.
    Bytes ipv4_options() {
        static const std::uint8_t types[] = {0, 1, 7, 68, 130, 131, 137, 148, 0x9e};
        Bytes options;
        const std::size_t size = 4 * (1 + below(10));
        while (options.size() < size) {
            const std::uint8_t type = chance(90) ? types[below(9)] : byte();
            options.push_back(type);
            if (type <= 1 || options.size() == size)
                continue;
            const std::size_t room = size - options.size() + 1;
            const std::uint8_t length = chance(70) ? static_cast<std::uint8_t>(2 + below(static_cast<unsigned>(room)))
                                                   : static_cast<std::uint8_t>(below(6));
            options.push_back(length);
            for (std::size_t i = 2; i < length && options.size() < size; ++i)
                options.push_back(byte());
        }
        options.resize(size);
        return options;
    }

    // The TLVs of a hop-by-hop or destination-options header of `length` bytes (bytes 2..):
    // mostly tiling it, with padding, skippable options, router alerts; sometimes a jumbo
    // option, long padding runs, many options, or lengths that run past the header.
    Bytes ipv6_options(std::size_t length) {
        Bytes options;
        const std::size_t room = length - 2;
        while (options.size() < room) {
            const std::size_t left = room - options.size();
            const unsigned pick = below(100);
            if (pick < 25 || left == 1) {
                options.push_back(0);  // Pad1
                continue;
            }
            std::uint8_t type = pick < 50 ? 1 : pick < 75 ? 0x1e : pick < 85 ? 5 : pick < 92 ? 0xc2 : byte();
            std::size_t data = below(static_cast<unsigned>(std::min<std::size_t>(left - 1, 9)));
            if (chance(10))
                data = left + below(8);  // runs past the header
            options.push_back(type);
            options.push_back(static_cast<std::uint8_t>(data));
            for (std::size_t i = 0; i < data && options.size() < room; ++i)
                options.push_back(type == 1 && chance(90) ? 0 : byte());
        }
        options.resize(room);
        return options;
    }

    // Cuts `bytes` from the end of the IP packet of `frame`, its IP length fields following.
    static void shorten(Bytes& frame, std::size_t l3, std::size_t bytes) {
        if (frame.size() < l3 + 40 + bytes)
            return;
        frame.resize(frame.size() - bytes);
        const bool v4 = (frame[l3] >> 4) == 4;
        const std::size_t field = v4 ? l3 + 2 : l3 + 4;
        const std::size_t value = frame.size() - l3 - (v4 ? 0 : 40);
        frame[field] = static_cast<std::uint8_t>(value >> 8);
        frame[field + 1] = static_cast<std::uint8_t>(value);
    }

    Bytes valid() {
        PacketSpec s = spec();
        const unsigned shape = below(100);
        if (shape < 8 && (s.protocol == IPPROTO_TCP || s.protocol == IPPROTO_UDP)) {
            // ICMP frag-needed / packet-too-big from a router quoting the VIP's reply; now and
            // then quoting fewer than the 8 transport bytes RFC 1122 asks for.
            const IpAddress router = IpAddress::parse(s.source.is_v4() ? "203.0.113.1" : "2001:db8:ff::1");
            Bytes frame = build_icmp_too_big(s, router, static_cast<std::uint16_t>(1280 + below(200)));
            if (chance(20))
                shorten(frame, l3_offset(s), 1 + below(8));
            return frame;
        }
        if (shape == 98 && !s.source.is_v4()) {
            // Nothing after the IPv6 header: next header 59, payload length 0.
            s.protocol = 59;
            Bytes frame = build_packet(s);
            frame.resize(l3_offset(s) + 40 + (s.ipv6_hop_by_hop ? 8 : 0));
            const std::size_t payload = s.ipv6_hop_by_hop ? 8 : 0;
            frame[l3_offset(s) + 4] = 0;
            frame[l3_offset(s) + 5] = static_cast<std::uint8_t>(payload);
            return frame;
        }
        if (shape < 16) {
            // A fragment; all but the last carry a multiple of 8 bytes.
            s.more_fragments = chance(60);
            s.fragment_offset_units = chance(40) ? 0 : static_cast<std::uint16_t>(2 + below(1000));
            if (!s.more_fragments && s.fragment_offset_units == 0)
                s.more_fragments = true;
            const std::size_t header = s.protocol == IPPROTO_TCP ? 20 : s.protocol == IPPROTO_UDP ? 8 : 0;
            if (s.more_fragments)
                s.payload_bytes = 8 * (1 + below(40)) + (8 - header % 8) % 8;
            else
                s.payload_bytes = 8 + below(100);
            if (s.fragment_offset_units == 0 && chance(15)) {
                // A first fragment cut inside its transport header.
                Bytes frame = build_packet(s);
                const std::size_t cut = s.payload_bytes + (header > 0 ? below(static_cast<unsigned>(header)) : 0);
                shorten(frame, l3_offset(s), std::min<std::size_t>(cut, frame.size() - l3_offset(s) - 48));
                return frame;
            }
        }
        Bytes frame = build_packet(s);
        if (shape >= 16 && shape < 22 && !s.source.is_v4() && !s.more_fragments && s.fragment_offset_units == 0)
            frame = with_extension_headers(frame, s);
        if (chance(10))
            frame.resize(frame.size() + 1 + below(40), 0);  // Ethernet padding, trailing bytes
        return frame;
    }

    // 1-10 extension headers (destination options, their TLVs as ipv6_options() makes them;
    // a routing header with no segments left) inserted after the IPv6 header (after
    // hop-by-hop if there is one): chains shorter and longer than the parser walks.
    Bytes with_extension_headers(const Bytes& frame, const PacketSpec& s) {
        const std::size_t l3 = l3_offset(s);
        const std::size_t at = l3 + 40 + (s.ipv6_hop_by_hop ? 8 : 0);
        const std::size_t next_field = s.ipv6_hop_by_hop ? l3 + 40 : l3 + 6;
        std::uint8_t next = frame[next_field];
        Bytes headers;
        const unsigned count = chance(80) ? 1 + below(4) : 5 + below(6);
        std::uint8_t first = 0;
        for (unsigned i = 0; i < count; ++i) {
            const bool routing = chance(30);
            const std::size_t length = 8 * (1 + below(2));
            Bytes header(length, 0);
            header[0] = next;
            header[1] = static_cast<std::uint8_t>(length / 8 - 1);
            if (routing) {
                header[2] = 4;  // segment routing; segments left 0
            } else if (chance(50)) {
                header[2] = 1;  // PadN
                header[3] = static_cast<std::uint8_t>(length - 4);
            } else {
                const Bytes options = ipv6_options(length);
                std::copy(options.begin(), options.end(), header.begin() + 2);
            }
            headers.insert(headers.begin(), header.begin(), header.end());
            next = first = routing ? 43 : 60;
        }
        Bytes result(frame.begin(), frame.begin() + static_cast<long>(at));
        result.insert(result.end(), headers.begin(), headers.end());
        result.insert(result.end(), frame.begin() + static_cast<long>(at), frame.end());
        result[next_field] = first;
        const std::size_t payload = static_cast<std::size_t>(result[l3 + 4] << 8 | result[l3 + 5]) + headers.size();
        result[l3 + 4] = static_cast<std::uint8_t>(payload >> 8);
        result[l3 + 5] = static_cast<std::uint8_t>(payload);
        return result;
    }

    void put16(Bytes& f, std::size_t at, std::uint16_t value) {
        if (at + 1 < f.size()) {
            f[at] = static_cast<std::uint8_t>(value >> 8);
            f[at + 1] = static_cast<std::uint8_t>(value);
        }
    }

    std::uint16_t near(std::size_t exact) {
        static const int deltas[] = {-8, -2, -1, 1, 2, 8};
        switch (below(4)) {
        case 0: return static_cast<std::uint16_t>(static_cast<int>(exact) + deltas[below(6)]);
        case 1: return static_cast<std::uint16_t>(below(64));
        case 2: return 0xffff;
        default: return static_cast<std::uint16_t>(random_());
        }
    }

    void mutate(Bytes& f) {
        const Reading r = reference::read(f);
        const std::size_t l3 = r.l3 ? r.l3 : 14;
        const std::size_t l4 = r.l4 ? r.l4 : l3 + (r.family == STICKYLB_FAMILY_IPV6 ? 40 : 20);
        const bool v6 = f.size() > 13 && f[l3 - 2] == 0x86 && f[l3 - 1] == 0xdd;
        switch (below(12)) {
        case 0: f[below(static_cast<unsigned>(f.size()))] = byte(); break;
        case 1: {
            const std::size_t end = std::min(f.size(), l4 + 24);
            f[12 + below(static_cast<unsigned>(end - 12))] = byte();
            break;
        }
        case 2: {
            const std::size_t end = std::min(f.size(), l4 + 24);
            f[12 + below(static_cast<unsigned>(end - 12))] ^= static_cast<std::uint8_t>(1u << below(8));
            break;
        }
        case 3:  // IP lengths and header length
            if (l3 >= f.size())
                break;
            if (v6)
                put16(f, l3 + 4, near(f.size() - l3 - 40));
            else if (chance(50))
                put16(f, l3 + 2, near(f.size() - l3));
            else
                f[l3] = static_cast<std::uint8_t>(0x40 | below(16));
            break;
        case 4:  // fragment fields, next header / protocol
            if (v6) {
                static const std::uint8_t next[] = {0, 43, 44, 60, 58, 59, 6, 17};
                if (l3 + 6 < f.size())
                    f[l3 + 6] = chance(80) ? next[below(8)] : byte();
            } else if (chance(60)) {
                static const std::uint16_t fragment[] = {0x2000, 0x0001, 0x2001, 0x1fff, 0x3fff, 0x4000, 0x2003};
                put16(f, l3 + 6, chance(80) ? fragment[below(7)] : static_cast<std::uint16_t>(random_()));
            } else if (l3 + 9 < f.size()) {
                static const std::uint8_t protocol[] = {6, 17, 1, 0, 4, 41};
                f[l3 + 9] = protocol[below(6)];
            }
            break;
        case 5:  // L4 header: TCP data offset, UDP length, ports
            if (l4 + 14 < f.size()) {
                if (chance(40))
                    f[l4 + 12] = static_cast<std::uint8_t>(below(16) << 4);
                else if (chance(50))
                    put16(f, l4 + 4, near(f.size() - l4));
                else
                    put16(f, l4 + 2 * below(2), chance(50) ? 0 : 80);
            }
            break;
        case 6:  // truncated
            if (f.size() > 14)
                f.resize(14 + below(static_cast<unsigned>(f.size() - 14)));
            break;
        case 7: {
            const unsigned extra = 1 + below(64);
            for (unsigned i = 0; i < extra; ++i)
                f.push_back(chance(50) ? 0 : byte());
            break;
        }
        case 8: {
            const std::size_t at = 12 + below(static_cast<unsigned>(f.size() - 12));
            const unsigned count = 1 + below(8);
            for (unsigned i = 0; i < count; ++i)
                f.insert(f.begin() + static_cast<long>(at), byte());
            break;
        }
        case 9: {
            if (f.size() <= 14)
                break;
            const std::size_t at = 12 + below(static_cast<unsigned>(f.size() - 14));
            const std::size_t count = std::min<std::size_t>({1 + below(8), f.size() - 14, f.size() - at});
            f.erase(f.begin() + static_cast<long>(at), f.begin() + static_cast<long>(at + count));
            break;
        }
        case 10: {  // one more tag: VLAN-in-VLAN, QinQ
            const std::uint16_t type = chance(50) ? 0x8100 : 0x88a8;
            const Bytes tag{static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type), byte(), byte()};
            f.insert(f.begin() + 12, tag.begin(), tag.end());
            break;
        }
        default:  // ICMP type and code, bytes of the quote
            if (r.l4 && r.l4 + 8 < f.size()) {
                if (chance(50))
                    f[r.l4 + below(2)] = chance(50) ? byte() : static_cast<std::uint8_t>(below(5));
                else
                    f[r.l4 + 8 + below(static_cast<unsigned>(f.size() - r.l4 - 8))] = byte();
            }
            break;
        }
    }

    Bytes garbage() {
        Bytes f(14 + below(200));
        for (auto& b : f)
            b = byte();
        const auto lb = kLbMac.bytes();
        std::copy(lb.begin(), lb.end(), f.begin());
        static const std::uint16_t types[] = {0x0800, 0x86dd, 0x8100, 0x0806};
        const std::uint16_t type = chance(90) ? types[below(4)] : static_cast<std::uint16_t>(random_());
        f[12] = static_cast<std::uint8_t>(type >> 8);
        f[13] = static_cast<std::uint8_t>(type);
        std::size_t l3 = 14;
        bool v4 = type == 0x0800;
        if (type == 0x8100 && f.size() >= 18) {
            v4 = chance(50);
            f[16] = v4 ? 0x08 : 0x86;
            f[17] = v4 ? 0x00 : 0xdd;
            l3 = 18;
        }
        if (l3 < f.size() && chance(70))
            f[l3] = static_cast<std::uint8_t>((v4 ? 0x40 : 0x60) | (f[l3] & 0x0f));
        const std::size_t destination = l3 + (v4 ? 16 : 24);
        const IpAddress vip = (v4 ? vips_v4_ : vips_v6_)[below(2)];
        if (chance(60) && destination + (v4 ? 4 : 16) <= f.size())
            std::copy(vip.bytes().begin(), vip.bytes().begin() + (v4 ? 4 : 16),
                      f.begin() + static_cast<long>(destination));
        return f;
    }

    std::mt19937_64 random_;
    std::vector<IpAddress> clients_v4_, clients_v6_, vips_v4_, vips_v6_;
};

// --- checking one verdict -----------------------------------------------------------

std::uint16_t be16(const Bytes& f, std::size_t at) { return static_cast<std::uint16_t>(f[at] << 8 | f[at + 1]); }

std::uint32_t flow_hash_of(const Reading& r, bool with_ports) {
    return stickylb_hash_flow(kTestSeed, r.source.v6, r.destination.v6, with_ports ? htons(r.source_port) : 0,
                              with_ports ? htons(r.destination_port) : 0, r.protocol, r.family);
}

class Checker {
public:
    explicit Checker(const PacketFuzz* fixture) : fixture_(fixture) {}

    // The outcomes the frame may end in.
    std::set<Outcome> allowed(const Reading& r, const FuzzVip** target) const {
        *target = nullptr;
        switch (r.kind) {
        case Kind::not_ip: return {pass_not_ip};
        case Kind::truncated: return {pass_malformed};
        case Kind::malformed: return {fixture_->is_vip_address(r) ? drop_malformed : pass_malformed};
        case Kind::other: return {pass_not_vip};
        case Kind::flow:
        case Kind::icmp_too_big:
            *target = fixture_->vip_of(r, r.destination_port);
            if (*target)
                return {tx, pass_slow_path, drop_no_backend};
            return {pass_not_vip};
        case Kind::fragment:
            if (!fixture_->is_vip_address(r) || (r.protocol != IPPROTO_TCP && r.protocol != IPPROTO_UDP))
                return {pass_not_vip};
            *target = fixture_->fragment_vip(r);
            if (*target)
                return {tx, pass_slow_path, drop_no_backend};
            return {drop_fragment};
        }
        return {};
    }

    // Empty if a forwarded frame is what forwarding `in` to a backend of `vip` must give.
    // The slow path's output holds its shim behind the layer 2 header (what the tc
    // program reads).
    std::string forwarded(const Bytes& in, const Bytes& with_shim, const Reading& r, const FuzzVip& vip,
                          bool slow_path) const {
        Bytes out = with_shim;
        if (slow_path) {
            stickylb_slow_path_shim meta;
            if (out.size() < r.l3 + sizeof(meta))
                return "slow path without its shim";
            std::memcpy(&meta, out.data() + r.l3, sizeof(meta));
            out.erase(out.begin() + static_cast<long>(r.l3), out.begin() + static_cast<long>(r.l3 + sizeof(meta)));
            const bool l2 = vip.settings.forwarding == ForwardingMode::l2_dsr;
            const Backend* next_hop = nullptr;
            for (const Backend& b : kBackends)
                if (std::memcmp(IpAddress::parse(b.address).to_abi().bytes, meta.nexthop.bytes, 16) == 0)
                    next_hop = &b;
            if (meta.key != fixture_->slow_path_key() || meta.zero != 0 || meta.egress_ifindex != 0 || !next_hop ||
                meta.family != (l2 ? IpAddress::parse(next_hop->address).family() : std::uint8_t{STICKYLB_FAMILY_NONE}))
                return "slow path shim";
            if (l2) {
                if (const std::string problem = backend_allowed(next_hop->index, vip, true); !problem.empty())
                    return problem;
            }
        }
        const auto lb = kLbMac.bytes();
        auto macs_ok = [&](std::uint32_t index) {
            if (slow_path)
                return std::equal(in.begin(), in.begin() + 12, out.begin());
            const auto mac = backend_mac(index).bytes();
            return std::equal(mac.begin(), mac.end(), out.begin()) && std::equal(lb.begin(), lb.end(), out.begin() + 6);
        };
        if (vip.settings.forwarding == ForwardingMode::l2_dsr) {
            if (out.size() != in.size() || !std::equal(in.begin() + 12, in.end(), out.begin() + 12))
                return "L2 DSR changed more than the MAC addresses";
            if (slow_path)
                return macs_ok(0) ? "" : "slow path changed the MAC addresses";
            for (const Backend& b : kBackends)
                if (macs_ok(b.index))
                    return backend_allowed(b.index, vip, slow_path);
            return "MAC addresses of no backend";
        }
        // IPIP: Ethernet (+ the same tag), outer header, the IP packet as it came (+ its padding).
        const std::size_t l3 = r.l3;
        if (out.size() < l3 || (be16(out, l3 - 2) != 0x0800 && be16(out, l3 - 2) != 0x86dd))
            return "no outer IP header";
        const bool outer_v4 = be16(out, l3 - 2) == 0x0800;
        const std::size_t outer = outer_v4 ? 20 : 40;
        if (out.size() != in.size() + outer ||
            !std::equal(in.begin() + static_cast<long>(l3), in.end(), out.begin() + static_cast<long>(l3 + outer)))
            return "inner packet not carried as it came";
        if (l3 == 18 && !std::equal(in.begin() + 12, in.begin() + 16, out.begin() + 12))
            return "VLAN tag not kept";
        const std::uint8_t inner_protocol = r.family == STICKYLB_FAMILY_IPV4 ? 4 : 41;
        // Fragments carry no ports: their hash is of addresses and protocol.
        const std::uint32_t hash = flow_hash_of(r, r.kind != Kind::fragment);
        stickylb_addr destination{};
        if (outer_v4) {
            const std::uint8_t* h = &out[l3];
            if (h[0] != 0x45 || be16(out, l3 + 2) != r.ip_length + 20 || h[8] != 64 || h[9] != inner_protocol)
                return "outer IPv4 header fields";
            if (internet_checksum(h, 20) != 0)
                return "outer IPv4 checksum";
            if (h[12] != 172 || h[13] != 16 || be16(out, l3 + 14) != (hash & 0xffff))
                return "outer IPv4 source is not the tunnel prefix with the flow hash";
            std::memcpy(destination.bytes, h + 16, 4);
        } else {
            const std::uint8_t* h = &out[l3];
            const std::uint32_t label = static_cast<std::uint32_t>((h[1] & 0x0f) << 16 | h[2] << 8 | h[3]);
            if ((h[0] >> 4) != 6 || be16(out, l3 + 4) != r.ip_length || h[6] != inner_protocol || h[7] != 64)
                return "outer IPv6 header fields";
            const auto prefix = IpAddress::parse("fd00:5b1b::").bytes();
            const std::uint32_t low = static_cast<std::uint32_t>(h[20] << 24 | h[21] << 16 | h[22] << 8 | h[23]);
            if (!std::equal(prefix.begin(), prefix.begin() + 12, h + 8) || low != hash || label != (hash & 0xfffff))
                return "outer IPv6 source/flow label is not the tunnel prefix with the flow hash";
            std::memcpy(destination.bytes, h + 24, 16);
        }
        for (const Backend& b : kBackends) {
            const IpAddress address = IpAddress::parse(b.address);
            if (address.is_v4() == outer_v4 && std::memcmp(address.to_abi().bytes, destination.bytes, 16) == 0) {
                if (!macs_ok(b.index))
                    return "MAC addresses do not match the outer destination's backend";
                return backend_allowed(b.index, vip, slow_path);
            }
        }
        return "outer destination is no backend";
    }

private:
    static std::string backend_allowed(std::uint32_t index, const FuzzVip& vip, bool slow_path) {
        bool member = false;
        for (const std::uint32_t m : vip.ring_members)
            member |= m == index;
        if (!member)
            return "backend " + std::to_string(index) + " is not in the VIP's ring";
        for (const Backend& b : kBackends)
            if (b.index == index) {
                if (b.down)
                    return "sent to a down backend";
                if (b.mac_known == slow_path)
                    return slow_path ? "slow path for a known next hop" : "XDP_TX to an unknown next hop";
            }
        return "";
    }

    const PacketFuzz* fixture_;
};

TEST_F(PacketFuzz, RandomAndMutatedFramesKeepEveryInvariant) {
    const std::uint64_t seed = env_number("STICKYLB_FUZZ_SEED", 20261121);
    const std::uint64_t packets = env_number("STICKYLB_FUZZ_PACKETS", 1000000);
    std::cout << "packet fuzz: seed " << seed << ", " << packets
              << " packets (STICKYLB_FUZZ_SEED / STICKYLB_FUZZ_PACKETS change them)" << std::endl;

    Generator generator(seed);
    Checker checker(this);
    OutcomeCounters counters(plane().xdp_program_fd());
    const int program = plane().xdp_program_fd();
    Bytes output;
    std::array<std::uint64_t, kOutcomes> outcome_counts{};
    std::map<std::string, std::uint64_t> kind_counts;
    std::vector<std::string> failures;
    std::uint64_t failed = 0;
    std::array<std::uint64_t, kOutcomes> before = counters.read();
    const auto start_counters = before;
    const auto started = std::chrono::steady_clock::now();

    for (std::uint64_t n = 0; n < packets && failed < 1000; ++n) {
        const Bytes frame = generator.next();
        const Reading reading = reference::read(frame);
        output.resize(frame.size() + 256);
        LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = frame.data(), .data_out = output.data(),
                    .data_size_in = static_cast<std::uint32_t>(frame.size()),
                    .data_size_out = static_cast<std::uint32_t>(output.size()), .repeat = 1);
        const int rc = bpf_prog_test_run_opts(program, &options);
        std::string problem;
        if (rc != 0) {
            problem = "BPF_PROG_TEST_RUN failed: " + std::to_string(rc);
        } else {
            output.resize(options.data_size_out);
            const int action = static_cast<int>(options.retval);
            const auto after = counters.read();
            int outcome = -1;
            int moved = 0;
            for (int i = 0; i < kOutcomes; ++i)
                if (after[i] != before[i]) {
                    moved += static_cast<int>(after[i] - before[i]);
                    outcome = i;
                }
            before = after;
            const FuzzVip* target = nullptr;
            const std::set<Outcome> allowed = checker.allowed(reading, &target);
            if (moved != 1) {
                problem = "outcome counters moved by " + std::to_string(moved) + ", not 1";
            } else {
                ++outcome_counts[outcome];
                const Outcome o = static_cast<Outcome>(outcome);
                const int verdict = o == tx               ? XDP_TX
                                    : o == redirect       ? XDP_REDIRECT
                                    : o <= pass_slow_path ? XDP_PASS
                                                          : XDP_DROP;
                if (!allowed.count(o))
                    problem = std::string("outcome ") + kOutcomeNames[o] + " not allowed";
                else if (action != verdict)
                    problem = std::string("action ") + std::to_string(action) + " for outcome " + kOutcomeNames[o];
                else if (o == tx || o == pass_slow_path)
                    problem = checker.forwarded(frame, output, reading, *target, o == pass_slow_path);
                else if (action == XDP_PASS && output != frame)
                    problem = "passed, but the bytes changed";
            }
        }
        ++kind_counts[kind_name(reading.kind)];
        if (!problem.empty()) {
            ++failed;
            if (failures.size() < 10)
                failures.push_back("packet " + std::to_string(n) + " (" + kind_name(reading.kind) + "): " + problem +
                                   "\n  frame " + hex(frame) + "\n  out   " + hex(output));
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    std::cout << "packet fuzz: " << packets << " packets in " << seconds << " s, "
              << plane().global_stats().flows_not_recorded << " refused by the new-flow guard;";
    for (const auto& [kind, count] : kind_counts)
        std::cout << ' ' << kind << '=' << count;
    std::cout << "\npacket fuzz: outcomes";
    for (int i = 0; i < kOutcomes; ++i)
        std::cout << ' ' << kOutcomeNames[i] << '=' << outcome_counts[i];
    std::cout << std::endl;

    for (const auto& failure : failures)
        ADD_FAILURE() << failure;
    ASSERT_EQ(failed, 0u) << "seed " << seed << ": " << failed << " packets broke an invariant (first 10 above)";

    // Counters add up over the whole run, and the mix reached every outcome it can.
    const auto end = counters.read();
    std::uint64_t total = 0;
    for (int i = 0; i < kOutcomes; ++i)
        total += end[i] - start_counters[i];
    EXPECT_EQ(total, packets);
    if (packets >= 100000) {
        for (const Outcome o : {pass_not_ip, pass_not_vip, pass_malformed, pass_slow_path, drop_malformed,
                                drop_no_backend, drop_fragment, tx})
            EXPECT_GT(outcome_counts[o], 0u) << kOutcomeNames[o];
    }
}

}  // namespace
}  // namespace stickylb::testing
