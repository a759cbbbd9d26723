// SPDX-License-Identifier: Apache-2.0
// affinity_restore_bench: what restoring the affinity table on a new LB host
// costs, step by step, for N entries (default 1 million, 90% IPv4 clients, 10%
// IPv6, over 4 VIPs and 16 backends each, last seen within the hour):
//
//   snapshot   the table's records to a name-keyed snapshot (what a save does
//              after its walk)
//   encode     snapshot -> 256 KiB chunks + manifest
//   decode     chunks + manifest -> snapshot (checksums, bounds)
//   plan       names -> this host's indexes, expiry, wall clock -> monotonic
//   fill       the plan into a real LRU affinity map (bpf_map_update_batch where
//              the kernel has it; needs root, skipped otherwise)
//   walk       reading the filled map back (what a save or `affinity show` does)
//   memcached  with --memcached HOST:PORT: save to and load from that server
//
//   affinity_restore_bench [--entries N] [--rounds R] [--memcached HOST:PORT]
//
// Prints one line per step: the median of R rounds (default 3), in ms and ns
// per entry, plus the snapshot's size.
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "dataplane/dataplane.h"
#include "dataplane/pinned_maps.h"
#include "session/affinity_snapshot.h"
#include "session/affinity_store.h"
#include "support/bpffs.h"

namespace {

using stickylb::bench::median;

using namespace stickylb;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kVips = 4, kBackendsPerVip = 16, kTimeoutS = 3600;

struct Options {
    std::size_t entries = 1'000'000;
    int rounds = 3;
    std::string memcached;
};

int usage(const char* problem) {
    std::fprintf(stderr,
                 "affinity_restore_bench: %s\nusage: affinity_restore_bench [--entries N] [--rounds R] "
                 "[--memcached HOST:PORT]\n",
                 problem);
    return 2;
}

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Indexes as a desired state would give them: VIP v at index v, its backends at 1 + v * 16 + b.
AffinityLayout bench_layout() {
    AffinityLayout layout;
    for (std::uint32_t v = 0; v < kVips; ++v) {
        const std::string vip = "vip" + std::to_string(v);
        layout.vips[vip] = {v, kTimeoutS, 32, 128};
        for (std::uint32_t b = 0; b < kBackendsPerVip; ++b)
            layout.backends[{vip, "be" + std::to_string(b)}] = {1 + v * kBackendsPerVip + b, false};
    }
    return layout;
}

// Distinct clients: IPv4 10.0.0.0/8 counting up (scrambled), IPv6 random.
std::vector<AffinityRecord> bench_records(std::size_t count) {
    std::vector<AffinityRecord> records;
    records.reserve(count);
    std::mt19937_64 random(42);
    for (std::size_t i = 0; i < count; ++i) {
        AffinityRecord record;
        record.vip_index = static_cast<std::uint32_t>(i % kVips);
        record.backend_index =
            1 + record.vip_index * kBackendsPerVip + static_cast<std::uint32_t>(random() % kBackendsPerVip);
        stickylb_addr address{};
        if (i % 10 == 9) {
            for (auto& word : address.v6)
                word = static_cast<std::uint32_t>(random());
            record.client = IpAddress::from_abi(address, STICKYLB_FAMILY_IPV6);
        } else {
            // An odd multiplier permutes 2^24: distinct addresses in 10.0.0.0/8 up to 16 Mi entries.
            const std::uint32_t n = static_cast<std::uint32_t>(i) * 2654435761u;
            address.v4 = htonl((10u << 24) | (n & 0xffffff));
            record.client = IpAddress::from_abi(address, STICKYLB_FAMILY_IPV4);
        }
        record.age = std::chrono::milliseconds(random() % (kTimeoutS * 1000 - 60'000));
        records.push_back(record);
    }
    return records;
}

struct Step {
    std::string name;
    std::vector<double> ms;
};

template <typename F>
double time_ms(F&& body) {
    const auto start = Clock::now();
    body();
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string argument = argv[i];
        if (argument == "--entries" && i + 1 < argc)
            options.entries = std::stoul(argv[++i]);
        else if (argument == "--rounds" && i + 1 < argc)
            options.rounds = std::max(1, std::stoi(argv[++i]));
        else if (argument == "--memcached" && i + 1 < argc)
            options.memcached = argv[++i];
        else
            return usage(("unknown argument " + argument).c_str());
    }
    const AffinityLayout layout = bench_layout();
    const std::vector<AffinityRecord> records = bench_records(options.entries);
    std::vector<Step> steps = {{"snapshot", {}}, {"encode", {}}, {"decode", {}}, {"plan", {}}};
    const bool root = geteuid() == 0;
    if (root) {
        steps.push_back({"fill", {}});
        steps.push_back({"walk", {}});
    }
    if (!options.memcached.empty()) {
        steps.push_back({"memcached save", {}});
        steps.push_back({"memcached load", {}});
    }
    const auto record = [&](const std::string& name, double ms) {
        for (Step& step : steps)
            if (step.name == name)
                step.ms.push_back(ms);
    };

    std::size_t chunks = 0, bytes = 0, restored = 0, walked = 0;
    bool batched = false;
    for (int round = 0; round < options.rounds; ++round) {
        AffinitySnapshot snapshot;
        const std::int64_t now = wall_ms();
        record("snapshot", time_ms([&] { snapshot = snapshot_of(records, layout, now); }));
        EncodedSnapshot encoded;
        record("encode", time_ms([&] { encoded = encode_snapshot(snapshot, 0x5eed + round, now); }));
        chunks = encoded.chunks.size();
        bytes = encoded.manifest.bytes();
        AffinitySnapshot decoded;
        record("decode", time_ms([&] {
                   decoded = decode_snapshot(parse_manifest(encode_manifest(encoded.manifest), {}, now),
                                             {encoded.chunks.begin(), encoded.chunks.end()});
               }));
        if (decoded.entries.size() != snapshot.entries.size()) {
            std::fprintf(stderr, "decode lost entries: %zu of %zu\n", decoded.entries.size(), snapshot.entries.size());
            return 1;
        }
        RestorePlan plan;
        record("plan", time_ms([&] { plan = plan_restore(decoded, layout, wall_ms(), affinity_clock_ns()); }));
        if (root) {
            // A fresh pinned data plane per round: the new LB host's empty table.
            stickylb::testing::PrivateBpffs bpffs;
            LoadOptions load;
            load.pin_dir = bpffs.path() + "/stickylb";
            // The daemon's size (1 Mi): an LRU this full may evict a few of its own on the way.
            load.affinity_entries =
                std::max<std::uint32_t>(STICKYLB_DEFAULT_AFFINITY_ENTRIES, static_cast<std::uint32_t>(options.entries));
            DataPlane plane = DataPlane::load(load);
            PinnedMaps tables = PinnedMaps::open(load.pin_dir);
            AffinityWriteResult written;
            record("fill", time_ms([&] { written = tables.write_affinities(plan.writes, /*overwrite=*/true); }));
            restored = written.written;
            batched = written.batched;
            record("walk", time_ms([&] { walked = tables.affinities().size(); }));
            plane.unpin_maps();
        }
        if (!options.memcached.empty()) {
            auto link = std::make_shared<MemcachedLink>(options.memcached, MemcachedLinkOptions{});
            const AffinityStore store({link}, std::chrono::seconds(120));
            SnapshotSaveResult saved;
            record("memcached save", time_ms([&] { saved = store.save(snapshot, std::chrono::seconds(600)); }));
            if (saved.servers_written.empty()) {
                std::fprintf(stderr, "memcached save failed: %s\n",
                             saved.errors.empty() ? "?" : saved.errors[0].c_str());
                return 1;
            }
            SnapshotLoadResult loaded;
            record("memcached load", time_ms([&] { loaded = store.load(); }));
            if (!loaded.snapshot || loaded.snapshot->entries.size() != snapshot.entries.size()) {
                std::fprintf(stderr, "memcached load failed: %s\n",
                             loaded.errors.empty() ? "?" : loaded.errors[0].c_str());
                return 1;
            }
        }
    }

    std::printf(
        "# affinity_restore_bench: %zu entries (90%% IPv4, 10%% IPv6; %u VIPs x %u backends), median of %d "
        "rounds\n",
        options.entries, kVips, kBackendsPerVip, options.rounds);
    std::printf("snapshot size: %zu chunks, %zu bytes (%.1f bytes per entry)\n", chunks, bytes,
                static_cast<double>(bytes) / static_cast<double>(std::max<std::size_t>(1, options.entries)));
    for (const Step& step : steps) {
        const double ms = median(step.ms);
        std::printf("%-15s %10.1f ms  %7.1f ns/entry\n", step.name.c_str(), ms,
                    ms * 1e6 / static_cast<double>(std::max<std::size_t>(1, options.entries)));
    }
    if (root) {
        std::printf("fill: %zu entries written (%s), %zu read back by the walk\n", restored,
                    batched ? "bpf_map_update_batch" : "one bpf_map_update_elem each", walked);
    } else {
        std::printf("fill, walk: skipped (not root: BPF maps need CAP_BPF)\n");
    }
    return 0;
}
