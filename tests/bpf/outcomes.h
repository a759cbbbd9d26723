// SPDX-License-Identifier: Apache-2.0
#pragma once
// The outcome counters of stickylb_global_stats: every packet the XDP program
// sees moves exactly one of them, so tests check which one moved.
#include <cstdint>
#include <string>

#include "stickylb/abi.h"

namespace stickylb::testing {

using Counter = __u64 stickylb_global_stats::*;
struct NamedCounter {
    const char* name;
    Counter field;
};
inline const NamedCounter kOutcomes[] = {
    {"pass_not_ip", &stickylb_global_stats::pass_not_ip},
    {"pass_not_vip", &stickylb_global_stats::pass_not_vip},
    {"pass_malformed", &stickylb_global_stats::pass_malformed},
    {"pass_slow_path", &stickylb_global_stats::pass_slow_path},
    {"drop_malformed", &stickylb_global_stats::drop_malformed},
    {"drop_no_backend", &stickylb_global_stats::drop_no_backend},
    {"drop_fragment", &stickylb_global_stats::drop_fragment},
    {"drop_error", &stickylb_global_stats::drop_error},
    {"tx", &stickylb_global_stats::tx},
    {"redirect", &stickylb_global_stats::redirect},
};

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
        moved += outcome.name;
        if (delta != 1)
            moved += "+" + std::to_string(delta);
    }
    return moved.empty() ? "none" : moved;
}

}  // namespace stickylb::testing
