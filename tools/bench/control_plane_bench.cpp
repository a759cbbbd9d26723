// SPDX-License-Identifier: Apache-2.0
// Control-plane costs, as a markdown section on stdout (progress on stderr):
//   - Maglev ring build for 10 / 100 / 1,000 backends at 65,537 and 655,373 slots, in
//     full and as stickylbd redoes it when one backend goes down (MaglevRing::update);
//   - stickylbd's reconcile (desired state + Reconciler::apply) of 100 VIPs x 50
//     backends against real BPF maps (a loaded, unattached data plane): a periodic
//     refresh with nothing changed, one VIP's backend down, one server behind every
//     VIP down; map writes of each and the time it takes;
//   - exception sync's CPU work per LB host for 1 Mi flows of which 100 Ki are off the
//     ring: the scan (control/flow_exceptions.h), the chunks it publishes and their
//     bytes, and a peer's decode and translation into its own indexes.
// The reconcile part loads BPF maps and needs root; without it that part is skipped.
//
//   control_plane_bench [--quick] [--repeats N]
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <iostream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "dataplane/dataplane.h"
#include "dataplane/maglev.h"
#include "control/config.h"
#include "control/flow_exceptions.h"
#include "control/reconciler.h"
#include "control/ring_pick.h"
#include "session/flow_exception_chunks.h"

namespace stickylb {
namespace {

using stickylb::bench::fixed;
using stickylb::bench::median;

constexpr std::uint64_t kSeed = 0x5eed'cafe'f00d'0001ULL;
constexpr std::uint32_t kVips = 100;
constexpr std::uint32_t kBackendsPerVip = 50;
constexpr std::uint32_t kRingSize = 65537;  // stickylbd's default

struct Options {
    bool quick = false;
    int repeats = 7;
};

Options parse_options(int argc, char** argv) {
    Options options;
    bool repeats_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--quick") {
            options.quick = true;
        } else if (arg == "--repeats" && i + 1 < argc) {
            options.repeats = std::stoi(argv[++i]);
            repeats_given = true;
        } else {
            throw std::invalid_argument("unknown argument '" + arg +
                                        "' (usage: control_plane_bench [--quick] [--repeats N])");
        }
    }
    if (options.quick && !repeats_given)
        options.repeats = 3;
    if (options.repeats < 3)
        throw std::invalid_argument("--repeats must be at least 3 (figures are medians)");
    return options;
}

double thread_cpu_ms() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

// Wall and this thread's CPU time of one call: on a shared machine the wall time
// includes waiting for a core, the CPU time does not.
struct Timing {
    double wall_ms;
    double cpu_ms;
};

Timing timed(const std::function<void()>& work) {
    const double cpu_start = thread_cpu_ms();
    const auto wall_start = std::chrono::steady_clock::now();
    work();
    const auto wall_end = std::chrono::steady_clock::now();
    return {std::chrono::duration<double, std::milli>(wall_end - wall_start).count(), thread_cpu_ms() - cpu_start};
}

std::string thousands(std::uint64_t value) {
    std::string digits = std::to_string(value);
    for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3)
        digits.insert(static_cast<std::size_t>(at), ",");
    return digits;
}

std::string median_cell(const std::vector<Timing>& timings) {
    std::vector<double> wall, cpu;
    for (const Timing& timing : timings) {
        wall.push_back(timing.wall_ms);
        cpu.push_back(timing.cpu_ms);
    }
    const int decimals = median(wall) < 10 ? 2 : 1;
    return fixed(median(cpu), decimals) + " | " + fixed(median(wall), decimals);
}

void maglev_section(const Options& options) {
    std::cout << "### Maglev ring build\n\n"
              << "`build_maglev_ring` (stable Maglev, weight 1 each, all in service), median of " << options.repeats
              << " builds: this thread's CPU time and wall time in ms (on a busy machine the wall time includes\n"
              << "waiting for a core). Target: 1,000 backends x 65,537 slots under 20 ms. \"One down\" is what\n"
              << "stickylbd does when a backend fails: `MaglevRing::update` keeps the base table of the last build\n"
              << "(it depends only on names and weights) and only moves the failed backend's slots.\n\n"
              << "| backends | slots | full build CPU ms | wall ms | one down CPU ms | wall ms |\n"
              << "|---:|---:|---:|---:|---:|---:|\n";
    for (const std::uint32_t ring_size : {65537u, 655373u}) {
        for (const std::uint32_t count : {10u, 100u, 1000u}) {
            std::vector<MaglevBackend> backends;
            for (std::uint32_t i = 0; i < count; ++i)
                backends.push_back(
                    {.name = "backend-" + std::to_string(i), .index = i + 1, .weight = 1, .in_service = true});
            std::cerr << "control_plane_bench: maglev " << count << " backends x " << ring_size << " slots\n";
            std::vector<Timing> timings;
            for (int round = 0; round < options.repeats; ++round) {
                timings.push_back(timed([&] {
                    const auto ring = build_maglev_ring(backends, ring_size, kSeed);
                    if (ring.size() != ring_size)
                        throw std::logic_error("maglev ring of the wrong size");
                }));
            }
            // One backend alternates between down and up: every update has a change to apply.
            MaglevRing cached;
            cached.update(backends, ring_size, kSeed);
            std::vector<Timing> one_down;
            for (int round = 0; round < options.repeats; ++round) {
                backends[count / 2].in_service = !backends[count / 2].in_service;
                one_down.push_back(timed([&] {
                    if (!cached.update(backends, ring_size, kSeed))
                        throw std::logic_error("a backend changed state but the ring did not");
                }));
            }
            std::cout << "| " << thousands(count) << " | " << thousands(ring_size) << " | " << median_cell(timings)
                      << " | " << median_cell(one_down) << " |\n";
        }
    }
    std::cout << '\n';
}

// 100 VIPs on one port each, the same 50 servers behind every VIP (the usual shape:
// one web farm, many sites), persistence on.
DaemonConfig hundred_vips() {
    DaemonConfig config;
    config.interface = "bench0";
    config.ring_size = kRingSize;
    for (std::uint32_t v = 0; v < kVips; ++v) {
        VipConfig vip;
        vip.name = "site" + std::to_string(v + 1);
        vip.address = IpAddress::parse("10.200." + std::to_string(v / 250) + "." + std::to_string(v % 250 + 1));
        vip.port = 80;
        vip.persistence.enabled = true;
        for (std::uint32_t b = 0; b < kBackendsPerVip; ++b)
            vip.backends.push_back(BackendConfig{
                "be" + std::to_string(b + 1), IpAddress::parse("10.201.0." + std::to_string(b + 1)), 1, {}});
        config.vips.push_back(std::move(vip));
    }
    return config;
}

struct ReconcileSample {
    Timing timing;
    ReconcileStats stats;
};

struct Scenario {
    std::string name;
    std::set<BackendId> down;  // health verdicts of this reconcile
};

class ReconcileBench {
public:
    ReconcileBench()
        : config_(hundred_vips()),
          plane_(DataPlane::load(load_options())),
          indexes_(kVips + 28, kVips * kBackendsPerVip + 1024),
          reconciler_(plane_, kSeed, EgressInterface{MacAddress::parse("02:00:00:00:00:1b"), 0},
                      [](const DesiredBackend& backend, ForwardingMode) {
                          return MacAddress({0x02, 0x00, 0x00, 0x01, static_cast<std::uint8_t>(backend.index >> 8),
                                             static_cast<std::uint8_t>(backend.index)});
                      }) {}

    // What stickylbd does on a health change or its periodic refresh: desired state from
    // config + health, then apply.
    ReconcileSample reconcile(const std::set<BackendId>& down) {
        ReconcileSample sample{};
        sample.timing = timed([&] {
            const DesiredState desired = desired_state(
                config_, {},
                [&](const BackendId& id) { return down.count(id) ? HealthVerdict::down : HealthVerdict::up; },
                indexes_);
            sample.stats = reconciler_.apply(desired);
        });
        return sample;
    }

    // Slots of the ring of VIP `vip` that name its backend `backend` right now.
    std::size_t slots_owned(const std::string& vip, const std::string& backend) {
        const std::uint32_t vip_index = indexes_.vip_index(vip);
        const std::uint32_t backend_index = indexes_.backend_index({vip, backend});
        const auto ring = plane_.read_ring(vip_index);
        return static_cast<std::size_t>(std::ranges::count(ring, backend_index));
    }

private:
    static LoadOptions load_options() {
        LoadOptions options;
        options.ring_size = kRingSize;
        options.max_vips = kVips + 28;
        options.max_backends = kVips * kBackendsPerVip + 1024;
        // The flow and affinity tables play no part here; small keeps the load quick.
        options.flow_entries = 4096;
        options.affinity_entries = 4096;
        return options;
    }

    DaemonConfig config_;
    DataPlane plane_;
    IndexRegistry indexes_;
    Reconciler reconciler_;
};

std::string writes_row(const std::string& name, const std::vector<ReconcileSample>& samples,
                       const std::string& needed) {
    // Writes are the same every round (deterministic); times vary.
    const ReconcileStats& stats = samples.front().stats;
    std::vector<Timing> timings;
    for (const ReconcileSample& sample : samples)
        timings.push_back(sample.timing);
    const std::size_t total = stats.vips_written + stats.vips_removed + stats.backends_written +
                              stats.backends_removed + stats.ring_slots_written;
    return "| " + name + " | " + thousands(stats.backends_written) + " | " + thousands(stats.vips_written) + " | " +
           thousands(stats.ring_slots_written) + " | " + thousands(total) + " | " + needed + " | " +
           median_cell(timings) + " |\n";
}

void reconcile_section(const Options& options) {
    std::cout << "### Reconcile: " << kVips << " VIPs x " << kBackendsPerVip << " backends\n\n";
    if (geteuid() != 0) {
        std::cout << "Skipped: loading the BPF maps needs root (run as root).\n\n";
        std::cerr << "control_plane_bench: reconcile skipped, needs root\n";
        return;
    }
    std::cerr << "control_plane_bench: reconcile, loading the data plane (" << kVips << " rings of " << kRingSize
              << " slots)\n";
    ReconcileBench bench;
    const Timing first = bench.reconcile({}).timing;

    const std::string victim = "be7";
    const std::string one_vip = "site42";
    std::set<BackendId> everywhere;
    for (std::uint32_t v = 0; v < kVips; ++v)
        everywhere.insert({"site" + std::to_string(v + 1), victim});
    const std::size_t owned_in_one = bench.slots_owned(one_vip, victim);
    std::size_t owned_everywhere = 0;
    for (const BackendId& id : everywhere)
        owned_everywhere += bench.slots_owned(id.first, id.second);

    std::vector<ReconcileSample> refresh, one_down, one_up, all_down, all_up;
    for (int round = 0; round < options.repeats; ++round) {
        std::cerr << "control_plane_bench: reconcile round " << round + 1 << "/" << options.repeats << '\n';
        refresh.push_back(bench.reconcile({}));
        one_down.push_back(bench.reconcile({{one_vip, victim}}));
        one_up.push_back(bench.reconcile({}));
        all_down.push_back(bench.reconcile(everywhere));
        all_up.push_back(bench.reconcile({}));
    }

    std::cout << "stickylbd's reconcile (`desired_state` + `Reconciler::apply`) against real BPF maps: the data plane\n"
              << "loaded (not attached) with " << thousands(kRingSize) << "-slot rings, " << kVips << " VIPs, the same "
              << kBackendsPerVip << " servers behind each (" << thousands(kVips * kBackendsPerVip)
              << " backend entries: health is per VIP and backend; stickylbd's defaults hold "
              << STICKYLB_DEFAULT_MAX_VIPS << " VIPs and " << thousands(STICKYLB_DEFAULT_MAX_BACKENDS)
              << " backend entries,\nthis is `max_vips: " << kVips + 28
              << "` and `max_backends: " << kVips * kBackendsPerVip + 1024
              << "`). Backend and VIP writes are map updates\n"
              << "(bpf syscalls); ring slots are single stores into the memory-mapped rings map. \"Needed\" is the\n"
              << "least any reconcile could write: the slots the dead backend held plus its backend entries.\n"
              << "First full write of everything (an empty data plane): " << fixed(first.cpu_ms, 1) << " ms CPU, "
              << fixed(first.wall_ms, 1) << " ms wall. Medians of " << options.repeats << " rounds.\n\n"
              << "| event | backend writes | VIP writes | ring slots | total writes | needed | CPU ms | wall ms |\n"
              << "|---|---:|---:|---:|---:|---:|---:|---:|\n"
              << writes_row("periodic refresh, nothing changed", refresh, "0")
              << writes_row("one backend of one VIP down (" + one_vip + "/" + victim + ")", one_down,
                            thousands(owned_in_one + 1))
              << writes_row("it comes back up", one_up, "1 + its new slots")
              << writes_row("one server down behind all " + std::to_string(kVips) + " VIPs (" + victim + ")", all_down,
                            thousands(owned_everywhere + kVips))
              << writes_row("it comes back up everywhere", all_up, std::to_string(kVips) + " + its new slots") << '\n';
}

// One VIP hashing connections over 10 backends, 1 Mi flows from random clients, every
// tenth off its ring's pick (kept on the next backend, as after a backend's return).
// What a peer reads: every chunk of lb1's version 1.
std::vector<FlowException> decode_all(const std::vector<std::string>& chunks) {
    std::vector<FlowException> read;
    for (std::size_t chunk = 0; chunk < chunks.size(); ++chunk) {
        auto part = fleet::decode_exception_chunk(chunks[chunk], "lb1", 1, chunk, chunks.size());
        read.insert(read.end(), part.begin(), part.end());
    }
    return read;
}

// The table rows of publishing a list and a peer's reading it.
std::string exchange_rows(const std::vector<std::string>& chunks, std::size_t exceptions,
                          const std::vector<Timing>& encode, const std::vector<Timing>& decode,
                          const std::vector<Timing>& translate) {
    std::size_t bytes = 0;
    for (const std::string& chunk : chunks)
        bytes += chunk.size();
    return "| encode " + std::to_string(chunks.size()) + " chunks, " + thousands(bytes) + " bytes (" +
           fixed(static_cast<double>(bytes) / static_cast<double>(exceptions), 1) +
           " per exception) | the publishing host | " + median_cell(encode) + " |\n| decode them | every peer | " +
           median_cell(decode) + " |\n| into this host's indexes | every peer | " + median_cell(translate) + " |\n";
}

void exceptions_section(const Options& options) {
    constexpr std::uint32_t kFlows = 1u << 20;
    constexpr std::uint32_t kBackends = 10;
    std::cerr << "control_plane_bench: flow exceptions, " << kFlows << " flows\n";
    RingView view;
    view.hash_seed = 0x1234;
    RingView::Vip& vip = view.vips[0];
    vip.key = {IpAddress::parse("10.89.0.250"), 80, IPPROTO_TCP};
    std::vector<MaglevBackend> backends;
    for (std::uint32_t i = 1; i <= kBackends; ++i) {
        backends.push_back({.name = "be" + std::to_string(i), .index = i, .weight = 1, .in_service = true});
        view.backends[i] = {0, "6/10.89.0.250/80/be" + std::to_string(i), BackendState::up};
    }
    vip.ring = build_maglev_ring(backends, kRingSize, kSeed);
    std::vector<FlowRecord> flows(kFlows);
    std::uint64_t state = kSeed;
    const auto next = [&] {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<std::uint32_t>(state >> 32);
    };
    std::uint32_t off_ring = 0;
    for (std::uint32_t n = 0; n < kFlows; ++n) {
        FlowRecord& flow = flows[n];
        const std::uint32_t client = next();
        flow.client =
            IpAddress::parse(std::to_string(10 + client % 200) + "." + std::to_string((client >> 8) & 255) + "." +
                             std::to_string((client >> 16) & 255) + "." + std::to_string(1 + (client >> 24) % 254));
        flow.client_port = static_cast<std::uint16_t>(1024 + next() % 60000);
        flow.vip = vip.key.address;
        flow.vip_port = 80;
        flow.protocol = IPPROTO_TCP;
        flow.vip_index = 0;
        flow.backend_index = ring_pick(vip, view.hash_seed, flow);
        if (n % 10 == 0) {
            flow.backend_index = flow.backend_index % kBackends + 1;
            ++off_ring;
        }
    }
    std::vector<FlowException> found;
    std::vector<Timing> scan, encode, decode, translate;
    std::vector<std::string> chunks;
    std::size_t loaded = 0;
    for (int round = 0; round < options.repeats; ++round) {
        scan.push_back(timed([&] { found = find_flow_exceptions(flows, view); }));
        encode.push_back(timed([&] { chunks = fleet::encode_exception_chunks("lb1", 1, found); }));
        std::vector<FlowException> read;
        decode.push_back(timed([&] { read = decode_all(chunks); }));
        translate.push_back(timed([&] { loaded = to_local_flows(read, view).flows.size(); }));
    }
    if (found.size() > off_ring || loaded != found.size())
        throw std::logic_error("exceptions found or loaded do not match those made");
    std::cout << "### Exception sync, per LB host\n\n"
              << thousands(kFlows) << " flows of one VIP over " << kBackends << " backends (" << thousands(kRingSize)
              << "-slot ring), every tenth kept off its ring's pick: " << thousands(found.size())
              << " exceptions found of " << thousands(off_ring) << " made, median of " << options.repeats
              << " rounds, this thread's CPU ms and wall ms. The flow-table read (a batch lookup) is not in it.\n\n"
              << "| step | where | CPU ms | wall ms |\n|---|---|---:|---:|\n"
              << "| find the exceptions in 1 Mi flows | every host, after a ring change and every 5 s | "
              << median_cell(scan) << " |\n"
              << exchange_rows(chunks, found.size(), encode, decode, translate) << "\n";
}

// A persistent VIP's clients: 1 Mi affinities, every tenth kept off its client's
// ring pick; a peer holding the same clients on their ring picks writes them all.
void affinity_exceptions_section(const Options& options) {
    constexpr std::uint32_t kAffinities = 1u << 20;
    constexpr std::uint32_t kBackends = 10;
    constexpr std::int64_t kNow = 1'796'640'000;
    std::cerr << "control_plane_bench: affinity exceptions, " << kAffinities << " clients\n";
    RingView view;
    view.hash_seed = 0x1234;
    RingView::Vip& vip = view.vips[1];
    vip.key = {IpAddress::parse("10.89.0.251"), 80, IPPROTO_TCP};
    vip.settings.index = 1;
    vip.settings.persistent = true;
    vip.settings.affinity_timeout_s = 3600;
    std::vector<MaglevBackend> backends;
    for (std::uint32_t i = 1; i <= kBackends; ++i) {
        backends.push_back({.name = "be" + std::to_string(i), .index = i, .weight = 1, .in_service = true});
        view.backends[i] = {1, "6/10.89.0.251/80/be" + std::to_string(i), BackendState::up};
    }
    vip.ring = build_maglev_ring(backends, kRingSize, kSeed);
    std::vector<AffinityRecord> mine(kAffinities), peers_own(kAffinities);
    std::uint32_t off_ring = 0;
    for (std::uint32_t n = 0; n < kAffinities; ++n) {
        AffinityRecord& record = mine[n];
        record.vip_index = 1;
        // Distinct clients: 10.0.0.0 upwards.
        record.client = IpAddress::parse(std::to_string(10 + (n >> 24)) + "." + std::to_string((n >> 16) & 255) + "." +
                                         std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255));
        record.backend_index = ring_pick(vip.ring, view.hash_seed, record.client);
        record.age = std::chrono::seconds(n % 600);
        peers_own[n] = record;
        if (n % 10 == 0) {
            record.backend_index = record.backend_index % kBackends + 1;
            ++off_ring;
        }
    }
    std::vector<FlowException> found;
    std::vector<Timing> scan, encode, decode, translate, compare;
    std::vector<std::string> chunks;
    std::size_t writes = 0;
    for (int round = 0; round < options.repeats; ++round) {
        scan.push_back(timed([&] { found = find_affinity_exceptions(mine, view, kNow); }));
        encode.push_back(timed([&] { chunks = fleet::encode_exception_chunks("lb1", 1, found); }));
        std::vector<FlowException> read;
        decode.push_back(timed([&] { read = decode_all(chunks); }));
        LocalPeerFlows local;
        translate.push_back(timed([&] { local = to_local_flows(read, view); }));
        compare.push_back(timed(
            [&] { writes = affinity_writes(local.affinities, peers_own, view, kNow, 1'000'000'000'000'000).size(); }));
    }
    if (found.size() != off_ring || writes != found.size())
        throw std::logic_error("affinity exceptions found or written do not match those made");
    std::cout << "### Exception sync of client affinities, per LB host\n\n"
              << thousands(kAffinities) << " clients of one persistent VIP over " << kBackends
              << " backends, every tenth kept off its ring's pick: " << thousands(found.size())
              << " exceptions, median of " << options.repeats
              << " rounds, this thread's CPU ms and wall ms. The affinity-table reads (batch lookups) and the "
                 "writes of the peer's table are not in it.\n\n"
              << "| step | where | CPU ms | wall ms |\n|---|---|---:|---:|\n"
              << "| find them in 1 Mi affinities | every host, after a ring change and every 5 s | "
              << median_cell(scan) << " |\n"
              << exchange_rows(chunks, found.size(), encode, decode, translate)
              << "| against its own 1 Mi affinities: " << thousands(writes) << " to write | every peer | "
              << median_cell(compare) << " |\n\n";
}

}  // namespace
}  // namespace stickylb

int main(int argc, char** argv) {
    try {
        const auto options = stickylb::parse_options(argc, argv);
        std::cout << "## Control plane: control_plane_bench\n\n";
        stickylb::maglev_section(options);
        stickylb::reconcile_section(options);
        stickylb::exceptions_section(options);
        stickylb::affinity_exceptions_section(options);
        return 0;
    } catch (const std::exception& error) {
        std::cerr << "control_plane_bench: " << error.what() << '\n';
        return 1;
    }
}
