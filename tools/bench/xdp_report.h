// SPDX-License-Identifier: Apache-2.0
#pragma once
// xdp_bench's report: a markdown table of every case with its targets on stdout, and
// the same rows with every round's figures as JSON (--json).
#include <cstdint>
#include <string>
#include <vector>

#include "xdp_case.h"
#include "xdp_machine.h"

namespace stickylb::bench {

struct ReportSettings {
    int rounds = 0;
    std::uint32_t repeat = 0, singles = 0;
    bool quick = false;
    std::uint32_t flow_entries = 0, small_table = 0, big_table = 0, ring_size = 0;
    double fill_seconds = 0;  // prefilling the big table
    std::string json_path;    // "": no JSON
};

// stages: the cases of each flow-table size, in the order they ran.
void write_report(const Machine& machine, const ReportSettings& settings, const std::vector<std::string>& notes,
                  const std::vector<const std::vector<Case>*>& stages);

}  // namespace stickylb::bench
