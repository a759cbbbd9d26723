// SPDX-License-Identifier: Apache-2.0
#pragma once
// The outcome counters of stickylb_global_stats: every packet the XDP program
// sees moves exactly one of them, so tests check which one moved.
#include <cstdint>
#include <string>
#include <vector>

#include "stickylb/abi.h"

namespace stickylb::testing {

// The outcome rows of the one counter table (stickylb/stats.h), by field name.
inline std::vector<GlobalCounter> outcome_counters() {
    std::vector<GlobalCounter> outcomes;
    for (const GlobalCounter& counter : kGlobalCounters)
        if (counter.outcome)
            outcomes.push_back(counter);
    return outcomes;
}
inline const std::vector<GlobalCounter> kOutcomes = outcome_counters();

inline std::uint64_t outcome_total(const stickylb_global_stats& stats) {
    std::uint64_t total = 0;
    for (const auto& outcome : kOutcomes)
        total += stats.*outcome.field;
    return total;
}

// The outcome fields that moved between two snapshots: "tx" if exactly tx moved by one,
// "tx pass_not_vip" or "tx+2" otherwise, "none" if nothing moved.
inline std::string moved_outcomes(const stickylb_global_stats& before, const stickylb_global_stats& after) {
    std::string moved;
    for (const auto& outcome : kOutcomes) {
        const std::uint64_t delta = after.*outcome.field - before.*outcome.field;
        if (delta == 0)
            continue;
        if (!moved.empty())
            moved += ' ';
        moved += outcome.field_name;
        if (delta != 1)
            moved += "+" + std::to_string(delta);
    }
    return moved.empty() ? "none" : moved;
}

}  // namespace stickylb::testing
