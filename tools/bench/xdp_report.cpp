// SPDX-License-Identifier: Apache-2.0
#include "xdp_report.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "bench_stats.h"

namespace stickylb::bench {
namespace {

const Case* find_case(const std::vector<Case>& cases, const std::string& name, const std::string& family,
                      const std::string& mode, Method method) {
    for (const auto& c : cases)
        if (c.name == name && c.family == family && c.mode == mode && c.method == method)
            return &c;
    return nullptr;
}

}  // namespace

void write_report(const Machine& machine, const ReportSettings& settings, const std::vector<std::string>& notes,
                  const std::vector<const std::vector<Case>*>& stages) {
    std::ostringstream out;
    out << "# xdp_bench: stickylb XDP per-packet cost (BPF_PROG_TEST_RUN)\n\n";
    out << "- kernel: " << machine.kernel << "\n";
    out << "- CPU: " << machine.cpu_model << " (" << machine.cpus << " online; bench pinned to CPU "
        << machine.bench_cpu << ")\n";
    out << "- date: " << machine.date << "\n";
    out << "- libbpf: " << machine.libbpf << "\n";
    out << "- load average at start: " << machine.loadavg << "\n";
    if (machine.steal_percent >= 0)
        out << "- CPU " << machine.bench_cpu
            << " time stolen by the hypervisor during the run: " << fixed(machine.steal_percent, 1) << "%\n";
    out << "- rounds: " << settings.rounds << ", repeat: " << settings.repeat
        << ", single runs per measurement: " << settings.singles << (settings.quick ? " (--quick)" : "") << "\n";
    out << "- flow table: LRU hash, " << settings.flow_entries
        << " entries (one LRU list; per-CPU flow cache of 4096 slots in front), prefilled from userspace "
        << "with random tuples by bpf_map_update_batch: " << settings.small_table << " entries, then "
        << settings.big_table << " (fill took " << fixed(settings.fill_seconds, 1) << " s)\n";
    out << "- ring: " << settings.ring_size << " slots, 8 backends per family, next-hop MACs known (XDP_TX)\n\n";
    out << "Methods. `repeat R`: BPF_PROG_TEST_RUN with repeat=R (in 3 chunks, alternating with the floor), "
           "the kernel's average; valid only where the rewritten buffer takes the same path again (floor, non-VIP, "
           "L2 DSR MAC rewrite, a SYN of one tuple). `single xN`: N runs with repeat=1, each on a fresh copy of its "
           "packet (so IPIP encapsulates the original, and each run can carry another tuple), alternating run by run "
           "with the floor; runs hit by an interrupt (> 10x the median) are dropped; the per-run timer overhead, "
           "(floor single - floor repeat) measured in the same block, is subtracted. Single runs start with colder "
           "caches than back-to-back repeats, so a single row costs more than the repeat row of the same path. "
           "Every figure is the median over rounds of the per-round value; ratio = case / floor (repeat) of the "
           "same round.\n\n";
    for (const auto& note : notes)
        out << "Note: " << note << "\n\n";

    out << "| case | family | mode | ns/packet | ratio to floor | method |\n";
    out << "|---|---|---|---:|---:|---|\n";
    for (const auto* cases : stages)
        for (const auto& c : *cases)
            out << "| " << c.name << " | " << c.family << " | " << c.mode << " | " << fixed(median(c.ns), 1) << " | "
                << fixed(median(c.ratio), 2) << "x | " << c.method_text << " |\n";

    // Targets: L2 DSR rows against the floor; IPIP rows against L2 DSR rows timed by the same method.
    out << "\nTargets (L2 DSR: established <= 2.5x floor, new flow <= 5x, checked on the SYN and on the first ACK"
           " that records the flow; IPIP within 20% of L2 DSR):\n\n";
    auto verdict = [](bool met) { return met ? "met" : "MISSED"; };
    for (const auto* cases : stages) {
        for (const auto& c : *cases) {
            if (c.mode != "L2 DSR")
                continue;
            const char* method = c.method == Method::repeat ? "repeat" : "single";
            const bool established = c.name.rfind("established", 0) == 0;
            const bool new_flow = c.name.rfind("new flow", 0) == 0 || c.name.rfind("new connection", 0) == 0;
            if (established || new_flow) {
                const double limit = established ? 2.5 : 5.0;
                const double ratio = median(c.ratio);
                out << "- " << c.family << " L2 DSR, " << c.name << " [" << method << "]: " << fixed(ratio, 2)
                    << "x floor (target <= " << fixed(limit, 1) << "x): " << verdict(ratio <= limit) << "\n";
            }
            if (c.method == Method::repeat)
                continue;  // IPIP has no repeat rows: compare single with single
            if (const Case* ipip = find_case(*cases, c.name, c.family, "IPIP", c.method)) {
                const double l2 = median(c.ns), tunnel = median(ipip->ns);
                out << "- " << c.family << " IPIP, " << c.name << " [single]: " << fixed(tunnel, 1) << " ns vs L2 DSR "
                    << fixed(l2, 1) << " ns: " << (tunnel >= l2 ? "+" : "") << fixed(100.0 * (tunnel - l2) / l2, 0)
                    << "% (target <= +20%): " << verdict(tunnel <= 1.2 * l2) << "\n";
            }
        }
    }
    std::cout << out.str() << std::flush;

    if (settings.json_path.empty())
        return;
    const auto rounded = [](double value, int digits) {
        const double scale = std::pow(10.0, digits);
        return std::round(value * scale) / scale;
    };
    const auto rounds = [&](const std::vector<double>& values) {
        nlohmann::json list = nlohmann::json::array();
        for (const double value : values)
            list.push_back(rounded(value, 2));
        return list;
    };
    nlohmann::json rows = nlohmann::json::array();
    for (const auto* cases : stages)
        for (const auto& c : *cases) {
            nlohmann::json row{{"case", c.name},
                               {"family", c.family},
                               {"mode", c.mode},
                               {"flow_table", c.table},
                               {"ns_per_packet", rounded(median(c.ns), 2)},
                               {"ratio_to_floor", rounded(median(c.ratio), 3)},
                               {"method", c.method_text},
                               {"floor_repeat_ns", rounded(median(c.floor_repeat), 2)}};
            if (!c.raw_single.empty()) {
                row["raw_single_ns"] = rounded(median(c.raw_single), 2);
                row["floor_single_ns"] = rounded(median(c.floor_single), 2);
            }
            row["rounds_ns"] = rounds(c.ns);
            row["rounds_ratio"] = rounds(c.ratio);
            rows.push_back(std::move(row));
        }
    const nlohmann::json report{{"machine",
                                 {{"kernel", machine.kernel},
                                  {"cpu", machine.cpu_model},
                                  {"online_cpus", machine.cpus},
                                  {"bench_cpu", machine.bench_cpu},
                                  {"date", machine.date},
                                  {"libbpf", machine.libbpf},
                                  {"loadavg", machine.loadavg},
                                  {"steal_percent", rounded(machine.steal_percent, 1)}}},
                                {"settings",
                                 {{"rounds", settings.rounds},
                                  {"repeat", settings.repeat},
                                  {"singles", settings.singles},
                                  {"quick", settings.quick},
                                  {"flow_entries", settings.flow_entries},
                                  {"small_table", settings.small_table},
                                  {"big_table", settings.big_table},
                                  {"ring_size", settings.ring_size}}},
                                {"notes", notes},
                                {"rows", std::move(rows)}};
    std::ofstream json(settings.json_path);
    json << report.dump(2) << "\n";
    if (!json)
        throw std::runtime_error("cannot write " + settings.json_path);
}

}  // namespace stickylb::bench
