// SPDX-License-Identifier: Apache-2.0
#include "dataplane/maglev.h"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t kSeed = 0x5eed'cafe'f00d'0001ULL;

std::vector<stickylb::MaglevBackend> make_backends(std::int64_t count, std::int64_t down_count) {
    std::vector<stickylb::MaglevBackend> backends;
    for (std::int64_t i = 0; i < count; ++i) {
        backends.push_back({.name = "backend-" + std::to_string(i),
                            .index = static_cast<std::uint32_t>(i + 1),
                            .weight = 1,
                            .in_service = i >= down_count});
    }
    return backends;
}

// Arguments: backend count, ring size, backends out of service.
void BM_BuildMaglevRing(benchmark::State& state) {
    const auto backends = make_backends(state.range(0), state.range(2));
    const auto ring_size = static_cast<std::uint32_t>(state.range(1));
    for (auto _ : state) {
        benchmark::DoNotOptimize(stickylb::build_maglev_ring(backends, ring_size, kSeed));
    }
    state.SetItemsProcessed(state.iterations() * ring_size);
}

BENCHMARK(BM_BuildMaglevRing)
    ->ArgNames({"backends", "slots", "down"})
    ->ArgsProduct({{10, 100, 1000}, {65537, 655373}, {0, 1}})
    ->Unit(benchmark::kMillisecond);

}  // namespace
