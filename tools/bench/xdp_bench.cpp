// SPDX-License-Identifier: Apache-2.0
// Per-packet cost of the stickylb XDP program with BPF_PROG_TEST_RUN, as a
// ratio to a floor program (swap MACs + XDP_TX) timed the same way, interleaved
// with it round by round so machine noise hits both alike. Medians over rounds.
//
//   xdp_bench [--rounds N] [--repeat N] [--singles N] [--json FILE] [--quick]
//             [--cpu N] [--big-table N] [--flow-entries N] [--filter TEXT]
//             [--program FILE.bpf.o]
//
// --program times a modified copy of the XDP program (same maps, found by
// name and shared with the loaded data plane; maps only the copy has start
// empty) instead of the real one: for "where does the time go" experiments.
// The copy keeps its compiled-in ring_size and max_vips (the bench uses the
// default ring size, and fewer VIPs than the default maximum).
//
// Two timing methods, both read the kernel's own clock (opts.duration), never
// the syscall:
//  repeat  BPF_PROG_TEST_RUN with repeat=R; the kernel re-runs the program on
//          the buffer the previous run left behind. Only valid where that
//          buffer takes the same path again: the floor, non-VIP pass, L2 DSR
//          (the MAC rewrite is idempotent) and a SYN of one fixed tuple. Not
//          IPIP: after one run the buffer is a tunnel packet to a backend
//          (probed and reported at start-up).
//  single  N runs with repeat=1, each on a fresh copy of its packet (so IPIP
//          encapsulates the original packet, and every run can have its own
//          tuple). Each duration includes the kernel timer's per-run overhead;
//          that overhead is measured as (floor single - floor repeat) in the
//          same block and subtracted, and the ratio is to the floor (repeat).
// Floor and case alternate: repeat in 3 chunks each, single run by run, so a
// slow phase of the (shared, virtual) machine hits both alike. Every figure is
// the median over rounds.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "dataplane/dataplane.h"
#include "base/errors.h"
#include "dataplane/maglev.h"
#include "bench_stats.h"
#include "floor.skel.h"
#include "support/packets.h"
#include "xdp_case.h"
#include "xdp_machine.h"
#include "xdp_report.h"
#include "xdp_timing.h"

namespace {

using namespace stickylb::bench;
using stickylb::BackendEntry;
using stickylb::DataPlane;
using stickylb::ForwardingMode;
using stickylb::IpAddress;
using stickylb::MacAddress;
using stickylb::VipKey;
using stickylb::VipSettings;
using stickylb::testing::Bytes;
using stickylb::testing::PacketSpec;

constexpr std::uint32_t kRingSize = 65537;
constexpr std::uint64_t kRingSeed = 0x5eed;
constexpr std::uint32_t kHashSeed = 0x5eed;
constexpr std::uint32_t kFlowEntries = 1u << 21;  // default: room for the 1M-flow table and a round's new flows
constexpr std::uint32_t kAffinityEntries = 1u << 20;
constexpr std::uint32_t kBackendsPerFamily = 8;
constexpr std::uint32_t kSmallTable = 1000;
const MacAddress kLbMac = MacAddress::parse("02:00:00:00:00:1b");

// ---------------------------------------------------------------- arguments

struct Args {
    int rounds = 15;
    std::uint32_t repeat = 100000;
    std::uint32_t singles = 10000;
    std::uint32_t big_table = 1000000;
    std::uint32_t flow_entries = kFlowEntries;  // size of the flows map (preallocated)
    std::string json;
    std::string filter;   // only cases whose "name family mode method" contains one of A|B|...
    std::string program;  // a variant XDP object to time instead of the loaded one
    bool quick = false;
    int cpu = -1;  // -1: the last online CPU
};

[[noreturn]] void usage(const char* program, const std::string& error) {
    std::cerr << program << ": " << error << "\n"
              << "usage: " << program
              << " [--rounds N (>=5)] [--repeat N] [--singles N] [--json FILE] [--quick] [--cpu N] [--big-table N]"
                 " [--flow-entries N] [--filter TEXT] [--program FILE.bpf.o]\n";
    std::exit(2);
}

Args parse_args(int argc, char** argv) {
    Args args;
    std::optional<int> rounds;
    std::optional<std::uint32_t> repeat, singles;
    auto number = [&](int& i) -> long long {
        if (i + 1 >= argc)
            usage(argv[0], std::string(argv[i]) + " needs a value");
        try {
            std::size_t used = 0;
            const long long value = std::stoll(argv[i + 1], &used);
            if (used != std::strlen(argv[i + 1]) || value < 0)
                throw std::invalid_argument("");
            ++i;
            return value;
        } catch (const std::exception&) {
            usage(argv[0], std::string("bad number for ") + argv[i] + ": " + argv[i + 1]);
        }
    };
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--rounds")
            rounds = static_cast<int>(number(i));
        else if (arg == "--repeat")
            repeat = static_cast<std::uint32_t>(number(i));
        else if (arg == "--singles")
            singles = static_cast<std::uint32_t>(number(i));
        else if (arg == "--big-table")
            args.big_table = static_cast<std::uint32_t>(number(i));
        else if (arg == "--flow-entries")
            args.flow_entries = static_cast<std::uint32_t>(number(i));
        else if (arg == "--cpu")
            args.cpu = static_cast<int>(number(i));
        else if (arg == "--quick")
            args.quick = true;
        else if (arg == "--json" || arg == "--filter" || arg == "--program") {
            if (i + 1 >= argc)
                usage(argv[0], arg + " needs a value");
            (arg == "--json" ? args.json : arg == "--filter" ? args.filter : args.program) = argv[++i];
        } else if (arg == "-h" || arg == "--help")
            usage(argv[0], "help");
        else
            usage(argv[0], "unknown argument " + arg);
    }
    if (args.quick) {
        args.rounds = 5;
        args.repeat = 10000;
        args.singles = 1000;
    }
    if (rounds)
        args.rounds = *rounds;
    if (repeat)
        args.repeat = *repeat;
    if (singles)
        args.singles = *singles;
    if (args.rounds < 5)
        usage(argv[0], "--rounds must be at least 5 (medians over rounds)");
    if (args.repeat < 100 || args.singles < 100)
        usage(argv[0], "--repeat and --singles must be at least 100");
    // The LRU must hold the prefilled table and a round's new flows without evicting.
    const std::uint64_t room = args.flow_entries / 2;
    if (kSmallTable + 2ull * args.singles + 64 > room)
        usage(argv[0], "--flow-entries too small: half the table must hold 1000 flows plus the new flows of a round");
    if (args.big_table < kSmallTable || args.big_table > room)
        usage(argv[0], "--big-table must be between 1000 and half the flow entries (" + std::to_string(room) + ")");
    return args;
}

// ---------------------------------------------------------------- machine facts

// ---------------------------------------------------------------- cases

struct Vip {
    VipKey key;
    VipSettings settings;
    IpAddress address;
    bool v4;
};

// Flows recorded and affinity misses of all VIPs so far (the data plane's own counters).
struct Counted {
    std::uint64_t new_flows = 0, affinity_misses = 0;
};

// A client tuple: source address and port; the VIP gives the rest.
struct Tuple {
    IpAddress source;
    std::uint16_t port;
};

std::string family_name(bool v4) { return v4 ? "IPv4" : "IPv6"; }
std::string mode_name(ForwardingMode mode) { return mode == ForwardingMode::l2_dsr ? "L2 DSR" : "IPIP"; }

IpAddress v4_from(std::uint32_t prefix, std::uint32_t host) {
    const std::uint32_t value = prefix | host;
    char text[INET_ADDRSTRLEN];
    const std::uint32_t network = htonl(value);
    inet_ntop(AF_INET, &network, text, sizeof(text));
    return IpAddress::parse(text);
}

// fdXX:...: prefix text plus 64 host bits.
IpAddress v6_from(std::uint16_t tag, std::uint64_t host) {
    char text[INET6_ADDRSTRLEN];
    std::snprintf(text, sizeof(text), "fd00:%x:0:0:%x:%x:%x:%x", tag, static_cast<unsigned>(host >> 48 & 0xffff),
                  static_cast<unsigned>(host >> 32 & 0xffff), static_cast<unsigned>(host >> 16 & 0xffff),
                  static_cast<unsigned>(host & 0xffff));
    return IpAddress::parse(text);
}

class Bench {
public:
    explicit Bench(const Args& args) : args_(args), rng_(0x5b1b) {}

    void setup();
    void load_variant(const std::string& path);
    void apply_filter(std::vector<Case>& cases) const;
    void probe_ipip_repeat();
    void add_cases_small();
    void add_cases_big();
    void fill_flows(std::uint32_t total);
    void run_stage(std::vector<Case>& cases, const std::string& label);
    void report(const Machine& machine, double fill_seconds) const;

    std::vector<Case> small_cases_, big_cases_;
    std::vector<std::string> notes_;

private:
    Bytes packet(const Vip& vip, const Tuple& tuple, std::uint8_t flags) const {
        PacketSpec spec;
        spec.destination_mac = kLbMac;
        spec.source = tuple.source;
        spec.source_port = tuple.port;
        spec.destination = vip.address;
        spec.destination_port = vip.key.port;
        spec.tcp_flags = flags;
        return stickylb::testing::build_packet(spec);
    }
    stickylb_flow_key flow_key(const Vip& vip, const Tuple& tuple) const {
        stickylb_flow_key key{};
        key.src = tuple.source.to_abi();
        key.dst = vip.address.to_abi();
        key.sport = htons(tuple.port);
        key.dport = htons(vip.key.port);
        key.proto = IPPROTO_TCP;
        key.family = vip.address.family();
        return key;
    }
    // A source never used before in this process (distinct per call).
    Tuple fresh_tuple(bool v4) {
        const std::uint64_t n = ++fresh_counter_;
        if (v4)
            return {v4_from(0x0a000000u, static_cast<std::uint32_t>(n & 0xffffff)),
                    static_cast<std::uint16_t>(1024 + n % 60000)};
        return {v6_from(0xc1, n), static_cast<std::uint16_t>(1024 + n % 60000)};
    }
    const Vip& vip(bool v4, ForwardingMode mode, bool persistent) const {
        for (const auto& candidate : vips_)
            if (candidate.v4 == v4 && candidate.settings.forwarding == mode &&
                candidate.settings.persistent == persistent)
                return candidate;
        throw std::logic_error("no such VIP");
    }
    void add_floor(std::vector<Case>& cases, bool v4, bool with_single);
    Counted counted() const;
    void delete_flows(const std::vector<stickylb_flow_key>& keys) const;
    void delete_affinities(const std::vector<stickylb_affinity_key>& keys) const;
    void add_established(std::vector<Case>& cases, const std::string& table, bool v4, ForwardingMode mode);

    Args args_;
    std::mt19937_64 rng_;
    std::optional<DataPlane> plane_;
    std::unique_ptr<floor_bpf, void (*)(floor_bpf*)> floor_{nullptr, floor_bpf__destroy};
    std::unique_ptr<bpf_object, void (*)(bpf_object*)> variant_{nullptr, bpf_object__close};
    int variant_fd_ = -1;
    std::vector<Vip> vips_;
    // Prefilled flows by VIP index (non-persistent VIPs only).
    std::map<std::uint32_t, std::vector<Tuple>> table_;
    std::unordered_set<std::uint64_t> used_;  // prefilled tuples, to keep them distinct
    std::uint64_t fresh_counter_ = 0;
    std::uint32_t filled_ = 0;
};

void Bench::setup() {
    stickylb::LoadOptions options;
    options.ring_size = kRingSize;
    options.max_vips = 8;
    options.max_backends = 64;
    options.flow_entries = args_.flow_entries;
    options.affinity_entries = kAffinityEntries;
    plane_.emplace(DataPlane::load(options));
    stickylb::RuntimeConfig config;
    config.hash_seed = kHashSeed;
    plane_->set_runtime_config(config);

    floor_.reset(floor_bpf__open_and_load());
    if (!floor_)
        throw stickylb::SystemError("load the floor program", errno);

    // 8 IPv4 backends (1-8) for the IPv4 VIPs, 8 IPv6 backends (9-16) for the IPv6 VIPs.
    std::vector<stickylb::MaglevBackend> members_v4, members_v6;
    for (std::uint32_t i = 1; i <= 2 * kBackendsPerFamily; ++i) {
        const bool v4 = i <= kBackendsPerFamily;
        BackendEntry entry;
        entry.index = i;
        entry.address =
            v4 ? IpAddress::parse("10.1.0." + std::to_string(i)) : IpAddress::parse("fd00:b::" + std::to_string(i));
        entry.nexthop_mac = MacAddress({0x02, 0x00, 0x00, 0x00, 0x01, static_cast<std::uint8_t>(i)});
        entry.egress_mac = kLbMac;
        plane_->set_backend(entry);
        (v4 ? members_v4 : members_v6).push_back({"backend-" + std::to_string(i), i, 1, true});
    }
    const auto ring_v4 = stickylb::build_maglev_ring(members_v4, kRingSize, kRingSeed);
    const auto ring_v6 = stickylb::build_maglev_ring(members_v6, kRingSize, kRingSeed);

    std::uint32_t index = 0;
    for (const bool v4 : {true, false})
        for (const auto mode : {ForwardingMode::l2_dsr, ForwardingMode::ipip})
            for (const bool persistent : {false, true}) {
                Vip vip;
                vip.v4 = v4;
                vip.address = v4 ? IpAddress::parse("192.0.2." + std::to_string(10 + index))
                                 : IpAddress::parse("2001:db8::" + std::to_string(10 + index));
                vip.key = VipKey{vip.address, 80, IPPROTO_TCP};
                vip.settings.index = index;
                vip.settings.persistent = persistent;
                vip.settings.forwarding = mode;
                plane_->upsert_vip(vip.key, vip.settings);
                plane_->write_ring(index, v4 ? ring_v4 : ring_v6);
                vips_.push_back(vip);
                ++index;
            }
}

// A modified copy of the XDP program, sharing the loaded data plane's maps (matched by name).
void Bench::load_variant(const std::string& path) {
    const int plane_fd = plane_->xdp_program_fd();
    std::vector<__u32> ids(64);
    bpf_prog_info info{};
    info.nr_map_ids = static_cast<__u32>(ids.size());
    info.map_ids = reinterpret_cast<std::uintptr_t>(ids.data());
    __u32 length = sizeof(info);
    stickylb::check_libbpf(bpf_obj_get_info_by_fd(plane_fd, &info, &length), "read the XDP program's maps");
    std::map<std::string, int> by_name;
    for (__u32 i = 0; i < std::min<__u32>(info.nr_map_ids, static_cast<__u32>(ids.size())); ++i) {
        const int fd = bpf_map_get_fd_by_id(ids[i]);
        if (fd < 0)
            continue;
        bpf_map_info map_info{};
        __u32 map_length = sizeof(map_info);
        if (bpf_obj_get_info_by_fd(fd, &map_info, &map_length) == 0)
            by_name[map_info.name] = fd;
        else
            close(fd);
    }
    variant_.reset(bpf_object__open_file(path.c_str(), nullptr));
    if (!variant_)
        throw stickylb::SystemError("open " + path, errno);
    bpf_map* map;
    std::string own_maps;
    bpf_object__for_each_map(map, variant_.get()) {
        if (bpf_map__is_internal(map))
            continue;
        const std::string name = std::string(bpf_map__name(map)).substr(0, BPF_OBJ_NAME_LEN - 1);
        const auto found = by_name.find(name);
        if (found == by_name.end()) {
            own_maps += " " + name;  // the variant's own map: created empty
            continue;
        }
        stickylb::check_libbpf(bpf_map__reuse_fd(map, found->second), "reuse map " + name);
    }
    for (const auto& [name, fd] : by_name)
        close(fd);  // reuse_fd took its own copies
    stickylb::check_libbpf(bpf_object__load(variant_.get()), "load " + path);
    bpf_program* program = bpf_object__find_program_by_name(variant_.get(), "stickylb_xdp");
    if (!program)
        program = bpf_object__next_program(variant_.get(), nullptr);
    if (!program)
        throw std::runtime_error(path + " has no program");
    variant_fd_ = bpf_program__fd(program);
    notes_.push_back("timed program: variant " + path + " (maps shared with the data plane by name" +
                     (own_maps.empty() ? std::string() : "; its own empty maps:" + own_maps) +
                     "), not the built data plane");
}

void Bench::apply_filter(std::vector<Case>& cases) const {
    if (args_.filter.empty())
        return;
    // Alternatives separated by '|'; a case stays if its "name family mode method" contains one.
    std::vector<std::string> wanted;
    for (std::size_t start = 0;;) {
        const std::size_t bar = args_.filter.find('|', start);
        wanted.push_back(args_.filter.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
        if (bar == std::string::npos)
            break;
        start = bar + 1;
    }
    std::erase_if(cases, [&wanted](const Case& c) {
        const std::string text = c.name + " " + c.family + " " + c.mode + " " + c.method_text;
        return std::none_of(wanted.begin(), wanted.end(),
                            [&text](const std::string& part) { return text.find(part) != std::string::npos; });
    });
}

// What the kernel does with repeat > 1 on an encapsulating path: documented in the output.
void Bench::probe_ipip_repeat() {
    const Vip& target = vip(true, ForwardingMode::ipip, false);
    const Bytes syn = packet(target, fresh_tuple(true), stickylb::testing::kTcpSyn);
    std::string text = "IPIP with repeat > 1 (probe): ";
    for (const std::uint32_t repeat : {1u, 2u, 20u}) {
        Bytes out(syn.size() + 512);
        LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = syn.data(), .data_out = out.data(),
                    .data_size_in = static_cast<std::uint32_t>(syn.size()),
                    .data_size_out = static_cast<std::uint32_t>(out.size()), .repeat = static_cast<int>(repeat));
        stickylb::check_libbpf(bpf_prog_test_run_opts(plane_->xdp_program_fd(), &options), "probe IPIP repeat");
        text += "repeat=" + std::to_string(repeat) + " -> " + action_name(static_cast<int>(options.retval)) + ", " +
                std::to_string(syn.size()) + " -> " + std::to_string(options.data_size_out) + " bytes; ";
    }
    text +=
        "after the first run the buffer is an IPIP packet to a backend, not to a VIP, so later runs time the "
        "non-VIP pass path; IPIP is therefore timed with single runs.";
    notes_.push_back(text);
}

// Random client tuples to the four non-persistent VIPs, batch-inserted, until the table holds `total`.
void Bench::fill_flows(std::uint32_t total) {
    std::vector<const Vip*> targets;
    for (const auto& candidate : vips_)
        if (!candidate.settings.persistent)
            targets.push_back(&candidate);
    std::vector<stickylb_flow_key> keys;
    std::vector<stickylb_flow> values;
    const int fd = plane_->flows_map_fd();
    auto flush = [&] {
        std::size_t done = 0;
        while (done < keys.size()) {
            __u32 count = static_cast<__u32>(keys.size() - done);
            LIBBPF_OPTS(bpf_map_batch_opts, batch);  // elem_flags: only BPF_F_LOCK is allowed here
            const int rc = bpf_map_update_batch(fd, keys.data() + done, values.data() + done, &count, &batch);
            done += count;
            if (rc < 0)
                stickylb::check_libbpf(rc, "prefill the flows map (batch of " + std::to_string(keys.size()) + ")");
        }
        keys.clear();
        values.clear();
    };
    while (filled_ < total) {
        const Vip& target = *targets[filled_ % targets.size()];
        Tuple tuple;
        std::uint64_t identity;
        do {
            const std::uint64_t random = rng_();
            tuple.port = static_cast<std::uint16_t>(1024 + (random >> 48) % 64000);
            if (target.v4) {
                // 100.64.0.0/10: 2^22 addresses x 64000 ports
                const std::uint32_t host = static_cast<std::uint32_t>(random & 0x3fffff);
                tuple.source = v4_from(0x64400000u, host);
                identity = (std::uint64_t{target.settings.index} << 56) | (std::uint64_t{host} << 16) | tuple.port;
            } else {
                const std::uint64_t host = random & 0xffffffffffull;
                tuple.source = v6_from(0xa1, host);
                identity = (std::uint64_t{target.settings.index} << 56) | (host << 16) | tuple.port;
            }
        } while (!used_.insert(identity).second);
        keys.push_back(flow_key(target, tuple));
        const std::uint32_t backend =
            (target.v4 ? 1 : 1 + kBackendsPerFamily) + static_cast<std::uint32_t>(rng_() % kBackendsPerFamily);
        stickylb_flow value{};
        value.backend_index = backend;
        value.vip_index = static_cast<std::uint16_t>(target.settings.index);
        value.vip_generation = plane_->vip_generation(target.settings.index);
        values.push_back(value);
        table_[target.settings.index].push_back(tuple);
        ++filled_;
        if (keys.size() == 16384)
            flush();
    }
    flush();
}

void Bench::delete_flows(const std::vector<stickylb_flow_key>& keys) const {
    for (const auto& key : keys)
        bpf_map_delete_elem(plane_->flows_map_fd(), &key);  // ENOENT is fine: never inserted
}

void Bench::delete_affinities(const std::vector<stickylb_affinity_key>& keys) const {
    for (const auto& key : keys)
        bpf_map_delete_elem(plane_->affinity_map_fd(), &key);
}

using PacketSource = std::function<std::vector<Bytes>(int round)>;

PacketSource same_packet(const Bytes& packet) {
    return [packet](int) { return std::vector<Bytes>{packet}; };
}

Case make_case(std::string name, bool v4, std::string mode, std::string table, Method method, std::string method_text,
               PacketSource packets, Expect expect = Expect::nothing, int expected = XDP_TX,
               std::function<void()> cleanup = {}) {
    Case c;
    c.expect = expect;
    c.name = std::move(name);
    c.family = family_name(v4);
    c.mode = std::move(mode);
    c.table = std::move(table);
    c.method = method;
    c.method_text = std::move(method_text);
    c.expected = expected;
    c.packets = std::move(packets);
    c.cleanup = std::move(cleanup);
    return c;
}

std::string repeat_text(std::uint32_t repeat) { return "repeat " + std::to_string(repeat); }
std::string singles_text(std::uint32_t singles) { return "single x" + std::to_string(singles); }

void Bench::add_floor(std::vector<Case>& cases, bool v4, bool with_single) {
    const Vip& any = vip(v4, ForwardingMode::l2_dsr, false);
    const Bytes floor_packet = packet(any, table_.at(any.settings.index).front(), stickylb::testing::kTcpAck);
    Case floor = make_case("floor (MAC swap + XDP_TX)", v4, "-", "-", Method::repeat,
                           repeat_text(args_.repeat) + " (floor against floor: the noise)", same_packet(floor_packet));
    floor.on_floor = true;
    cases.push_back(floor);
    if (!with_single)
        return;
    Case single = make_case("floor, single runs (raw)", v4, "-", "-", Method::single_raw,
                            singles_text(args_.singles) + ", uncorrected: includes the per-run timer overhead",
                            same_packet(floor_packet));
    single.on_floor = true;
    cases.push_back(single);
}

Counted Bench::counted() const {
    Counted total;
    for (const auto& v : vips_) {
        const auto stats = plane_->vip_stats(v.settings.index);
        total.new_flows += stats.new_flows;
        total.affinity_misses += stats.affinity_misses;
    }
    return total;
}

void Bench::add_established(std::vector<Case>& cases, const std::string& table, bool v4, ForwardingMode mode) {
    const Vip& target = vip(v4, mode, false);
    const std::vector<Tuple>& tuples = table_.at(target.settings.index);
    const Bytes hot = packet(target, tuples.front(), stickylb::testing::kTcpAck);
    const std::string flows = "(" + table + " flows)";
    if (mode == ForwardingMode::l2_dsr)
        cases.push_back(make_case("established, one tuple " + flows, v4, mode_name(mode), table, Method::repeat,
                                  repeat_text(args_.repeat) + ", one ACK tuple (the MAC rewrite is idempotent)",
                                  same_packet(hot), Expect::no_new_flow));
    cases.push_back(make_case("established, one tuple " + flows, v4, mode_name(mode), table, Method::single,
                              singles_text(args_.singles) + ", one ACK tuple", same_packet(hot), Expect::no_new_flow));
    // Spread: every run another tuple of the table, so lookups miss the CPU caches as they
    // would with many flows. Tuples are re-picked every round.
    const std::size_t spread = std::min<std::size_t>(args_.singles, tuples.size());
    const bool all = spread == tuples.size();
    cases.push_back(make_case(
        "established, spread over the table " + flows, v4, mode_name(mode), table, Method::single,
        singles_text(args_.singles) + ", " +
            (all ? "cycling all " + std::to_string(spread) + " tuples of this VIP"
                 : std::to_string(spread) + " random tuples of this VIP per round"),
        [this, target, spread, all, &tuples](int) {
            std::vector<Bytes> packets;
            packets.reserve(spread);
            std::uniform_int_distribution<std::size_t> pick(0, tuples.size() - 1);
            for (std::size_t i = 0; i < spread; ++i)
                packets.push_back(packet(target, tuples[all ? i : pick(rng_)], stickylb::testing::kTcpAck));
            return packets;
        },
        Expect::no_new_flow));
}

void Bench::add_cases_small() {
    auto& cases = small_cases_;
    const std::uint32_t singles = args_.singles;
    for (const bool v4 : {true, false}) {
        add_floor(cases, v4, true);
        // A destination that is no VIP: parse, VIP lookup, pass (the forwarding mode does not apply).
        Vip other = vip(v4, ForwardingMode::l2_dsr, false);
        other.address = v4 ? IpAddress::parse("192.0.2.200") : IpAddress::parse("2001:db8::200");
        cases.push_back(make_case("non-VIP pass", v4, "-", "-", Method::repeat, repeat_text(args_.repeat),
                                  same_packet(packet(other, fresh_tuple(v4), stickylb::testing::kTcpAck)),
                                  Expect::no_new_flow, XDP_PASS));

        for (const auto mode : {ForwardingMode::l2_dsr, ForwardingMode::ipip}) {
            add_established(cases, "1k", v4, mode);
            const Vip& target = vip(v4, mode, false);
            const Vip& persistent = vip(v4, mode, true);

            // A SYN records nothing (the handshake's ACK does): ring pick and forward.
            const Bytes syn = packet(target, fresh_tuple(v4), stickylb::testing::kTcpSyn);
            const std::string syn_name = "new connection: SYN, one tuple (ring pick, records nothing)";
            if (mode == ForwardingMode::l2_dsr)
                cases.push_back(make_case(syn_name, v4, mode_name(mode), "1k", Method::repeat,
                                          repeat_text(args_.repeat) + ", one SYN tuple", same_packet(syn),
                                          Expect::no_new_flow));
            cases.push_back(make_case(syn_name, v4, mode_name(mode), "1k", Method::single,
                                      singles_text(singles) + ", one SYN tuple", same_packet(syn),
                                      Expect::no_new_flow));
            cases.push_back(make_case(
                "new connection: SYN, brand-new tuple each packet", v4, mode_name(mode), "1k", Method::single,
                singles_text(singles) + ", " + std::to_string(singles) + " distinct SYN tuples",
                [this, target, v4, singles](int) {
                    std::vector<Bytes> packets;
                    for (std::uint32_t i = 0; i < singles; ++i)
                        packets.push_back(packet(target, fresh_tuple(v4), stickylb::testing::kTcpSyn));
                    return packets;
                },
                Expect::no_new_flow));

            // The packet that completes a handshake: a real flow insert each run; removed after the round.
            auto inserted = std::make_shared<std::vector<stickylb_flow_key>>();
            cases.push_back(make_case(
                "new flow: first ACK, brand-new tuple each packet (records the flow)", v4, mode_name(mode), "1k",
                Method::single,
                singles_text(singles) + ", " + std::to_string(singles) +
                    " distinct ACK tuples, deleted after the round",
                [this, target, v4, singles, inserted](int) {
                    std::vector<Bytes> packets;
                    for (std::uint32_t i = 0; i < singles; ++i) {
                        const Tuple tuple = fresh_tuple(v4);
                        packets.push_back(packet(target, tuple, stickylb::testing::kTcpAck));
                        inserted->push_back(flow_key(target, tuple));
                    }
                    return packets;
                },
                Expect::new_flow, XDP_TX,
                [this, inserted] {
                    delete_flows(*inserted);
                    inserted->clear();
                }));

            // New affinity client: persistent VIP, a source never seen, its first ACK: affinity miss,
            // ring, two inserts.
            auto clients = std::make_shared<std::vector<stickylb_affinity_key>>();
            auto client_flows = std::make_shared<std::vector<stickylb_flow_key>>();
            cases.push_back(make_case(
                "new affinity client (persistent VIP, first ACK)", v4, mode_name(mode), "1k", Method::single,
                singles_text(singles) + ", " + std::to_string(singles) +
                    " distinct client addresses, entries deleted after the round",
                [this, persistent, v4, singles, clients, client_flows](int) {
                    std::vector<Bytes> packets;
                    for (std::uint32_t i = 0; i < singles; ++i) {
                        const Tuple tuple = fresh_tuple(v4);
                        packets.push_back(packet(persistent, tuple, stickylb::testing::kTcpAck));
                        client_flows->push_back(flow_key(persistent, tuple));
                        stickylb_affinity_key key{};
                        key.vip_index = persistent.settings.index;
                        key.family = tuple.source.family();
                        key.client = tuple.source.to_abi();  // client prefix /32 and /128: unmasked
                        clients->push_back(key);
                    }
                    return packets;
                },
                Expect::new_client, XDP_TX,
                [this, clients, client_flows] {
                    delete_flows(*client_flows);
                    delete_affinities(*clients);
                    client_flows->clear();
                    clients->clear();
                }));
        }
    }
}

std::string table_label(std::uint32_t entries) {
    if (entries % 1000000 == 0)
        return std::to_string(entries / 1000000) + "M";
    if (entries % 1000 == 0)
        return std::to_string(entries / 1000) + "k";
    return std::to_string(entries);
}

void Bench::add_cases_big() {
    for (const bool v4 : {true, false}) {
        add_floor(big_cases_, v4, false);
        for (const auto mode : {ForwardingMode::l2_dsr, ForwardingMode::ipip})
            add_established(big_cases_, table_label(filled_), v4, mode);
    }
}

// Empty if the runs did what the case names; else what went wrong.
std::string check_expectation(const Case& c, const Counted& before, const Counted& after, std::uint64_t runs) {
    const std::uint64_t flows = after.new_flows - before.new_flows;
    const std::uint64_t misses = after.affinity_misses - before.affinity_misses;
    std::string problem;
    switch (c.expect) {
    case Expect::nothing: break;
    case Expect::no_new_flow:
        if (flows != 0)
            problem = "packets recorded new flows (missed the flow table: evicted entries?)";
        break;
    case Expect::new_flow:
        if (flows != runs)
            problem = "not one new flow per packet";
        break;
    case Expect::new_client:
        if (misses != runs || flows != runs)
            problem = "not one new affinity client per packet";
        break;
    }
    if (problem.empty())
        return problem;
    return problem + " (" + std::to_string(runs) + " runs, " + std::to_string(flows) + " new flows, " +
           std::to_string(misses) + " affinity misses)";
}

// Interleaved: for every round, every case is timed right after its floor, by the same method.
void Bench::run_stage(std::vector<Case>& cases, const std::string& label) {
    const int floor_fd = bpf_program__fd(floor_->progs.stickylb_bench_floor);
    const int plane_fd = variant_fd_ >= 0 ? variant_fd_ : plane_->xdp_program_fd();
    std::cerr << label << ": " << cases.size() << " cases, round" << std::flush;
    for (int round = 0; round < args_.rounds; ++round) {
        std::cerr << " " << (round + 1) << std::flush;
        for (auto& c : cases) {
            const auto packets = c.packets(round);
            const int fd = c.on_floor ? floor_fd : plane_fd;
            const std::string what = c.name + " " + c.family + " " + c.mode;
            const Counted before = counted();
            std::uint64_t runs = 0;
            if (c.method == Method::repeat) {
                const Pair pair = time_repeat_pair(floor_fd, fd, packets.front(), args_.repeat, c.expected, what);
                runs = std::uint64_t{kChunks} * std::max<std::uint32_t>(args_.repeat / kChunks, 1);
                c.ns.push_back(pair.test);
                c.ratio.push_back(pair.test / pair.floor);
                c.floor_repeat.push_back(pair.floor);
            } else {
                // The floor by repeat converts the single runs' overhead away (see the header comment).
                const Pair pair =
                    time_singles_pair(floor_fd, fd, packets, args_.singles, args_.repeat, c.expected, what);
                runs = args_.singles;
                const double floor_repeat = pair.floor_repeat;
                const double ns = c.method == Method::single_raw ? pair.test : pair.test - (pair.floor - floor_repeat);
                c.ns.push_back(ns);
                c.ratio.push_back(ns / floor_repeat);
                c.floor_repeat.push_back(floor_repeat);
                c.floor_single.push_back(pair.floor);
                c.raw_single.push_back(pair.test);
            }
            const std::string problem = c.on_floor ? std::string() : check_expectation(c, before, counted(), runs);
            if (!problem.empty()) {
                const std::string text = what + ": " + problem + ": the case did not time the path it names";
                if (variant_fd_ < 0)
                    throw std::runtime_error(text);
                if (std::find(notes_.begin(), notes_.end(), text) == notes_.end())
                    notes_.push_back(text);  // a variant may well take another path: say so, keep timing
            }
            if (c.cleanup)
                c.cleanup();
        }
    }
    std::cerr << "\n";
}

void Bench::report(const Machine& machine, double fill_seconds) const {
    ReportSettings settings;
    settings.rounds = args_.rounds;
    settings.repeat = args_.repeat;
    settings.singles = args_.singles;
    settings.quick = args_.quick;
    settings.flow_entries = args_.flow_entries;
    settings.small_table = kSmallTable;
    settings.big_table = filled_;
    settings.ring_size = kRingSize;
    settings.fill_seconds = fill_seconds;
    settings.json_path = args_.json;
    write_report(machine, settings, notes_, {&small_cases_, &big_cases_});
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse_args(argc, argv);
    try {
        if (geteuid() != 0)
            throw std::runtime_error("needs root (CAP_BPF, CAP_NET_ADMIN) for BPF_PROG_TEST_RUN");
        // One CPU: the per-CPU flow cache the test runs fill is the one they read.
        const int cpu = pin_to_cpu(args.cpu);
        Machine machine = machine_facts(cpu);
        const CpuTicks ticks_before = cpu_ticks(cpu);
        Bench bench(args);
        bench.setup();
        if (!args.program.empty())
            bench.load_variant(args.program);
        bench.probe_ipip_repeat();
        bench.fill_flows(kSmallTable);
        bench.add_cases_small();
        bench.apply_filter(bench.small_cases_);
        bench.run_stage(bench.small_cases_, "flow table 1k");
        const auto start = std::chrono::steady_clock::now();
        bench.fill_flows(args.big_table);
        const double fill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        bench.add_cases_big();
        bench.apply_filter(bench.big_cases_);
        bench.run_stage(bench.big_cases_, "flow table " + std::to_string(args.big_table));
        const CpuTicks ticks_after = cpu_ticks(cpu);
        if (ticks_after.total > ticks_before.total)
            machine.steal_percent = 100.0 * static_cast<double>(ticks_after.steal - ticks_before.steal) /
                                    static_cast<double>(ticks_after.total - ticks_before.total);
        bench.report(machine, fill_seconds);
    } catch (const std::exception& error) {
        std::cerr << "xdp_bench: " << error.what() << "\n";
        return 1;
    }
    return 0;
}
