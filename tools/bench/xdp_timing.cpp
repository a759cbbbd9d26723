// SPDX-License-Identifier: Apache-2.0
#include "xdp_timing.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <stdexcept>

#include "base/errors.h"

namespace stickylb::bench {

const char* action_name(int action) {
    switch (action) {
    case XDP_ABORTED: return "XDP_ABORTED";
    case XDP_DROP: return "XDP_DROP";
    case XDP_PASS: return "XDP_PASS";
    case XDP_TX: return "XDP_TX";
    case XDP_REDIRECT: return "XDP_REDIRECT";
    default: return "?";
    }
}

// ns per run as the kernel measured it over `repeat` back-to-back runs.
double time_repeat(int fd, const Bytes& packet, std::uint32_t repeat, int expected, const std::string& what) {
    LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = packet.data(),
                .data_size_in = static_cast<std::uint32_t>(packet.size()), .repeat = static_cast<int>(repeat));
    stickylb::check_libbpf(bpf_prog_test_run_opts(fd, &options), "BPF_PROG_TEST_RUN " + what);
    if (static_cast<int>(options.retval) != expected)
        throw std::runtime_error(what + ": expected " + action_name(expected) + ", got " +
                                 action_name(static_cast<int>(options.retval)));
    return options.duration;
}

// One run (repeat=1) on a fresh copy of packet: the kernel-timed ns.
double time_once(int fd, const Bytes& packet, int expected, const std::string& what) {
    LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = packet.data(),
                .data_size_in = static_cast<std::uint32_t>(packet.size()), .repeat = 1);
    stickylb::check_libbpf(bpf_prog_test_run_opts(fd, &options), "BPF_PROG_TEST_RUN " + what);
    if (static_cast<int>(options.retval) != expected)
        throw std::runtime_error(what + ": expected " + action_name(expected) + ", got " +
                                 action_name(static_cast<int>(options.retval)));
    return options.duration;
}

Pair time_repeat_pair(int floor_fd, int fd, const Bytes& packet, std::uint32_t repeat, int expected,
                      const std::string& what) {
    const std::uint32_t chunk = std::max<std::uint32_t>(repeat / kChunks, 1);
    double floor_sum = 0, test_sum = 0;
    for (std::uint32_t i = 0; i < kChunks; ++i) {
        floor_sum += time_repeat(floor_fd, packet, chunk, XDP_TX, "floor");
        test_sum += time_repeat(fd, packet, chunk, expected, what);
    }
    return {floor_sum / kChunks, test_sum / kChunks};
}

namespace {

// Mean of runs, without the runs an interrupt or preemption landed in (> 10x the median).
double mean_without_interrupts(std::vector<double>& each) {
    std::vector<double> sorted = each;
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    const double limit = 10 * std::max(sorted[sorted.size() / 2], 10.0);
    double sum = 0;
    std::size_t kept = 0;
    for (const double value : each)
        if (value <= limit) {
            sum += value;
            ++kept;
        }
    return sum / static_cast<double>(kept);
}

}  // namespace

// count single runs of the floor and of the case, alternating, over packets (cycled); and, spread
// between them in kSingleReferenceChunks blocks, `repeat` floor runs by repeat: the reference of
// the correction, timed in the same phase as the single runs.
Pair time_singles_pair(int floor_fd, int fd, const std::vector<Bytes>& packets, std::size_t count, std::uint32_t repeat,
                       int expected, const std::string& what) {
    std::vector<double> floor_runs, test_runs;
    floor_runs.reserve(count);
    test_runs.reserve(count);
    double floor_repeat = 0;
    const std::size_t every = std::max<std::size_t>(count / kSingleReferenceChunks, 1);
    std::uint32_t chunks = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const Bytes& packet = packets[i % packets.size()];
        if (i % every == 0) {
            floor_repeat += time_repeat(floor_fd, packet, std::max<std::uint32_t>(repeat / kSingleReferenceChunks, 1),
                                        XDP_TX, "floor");
            ++chunks;
        }
        floor_runs.push_back(time_once(floor_fd, packet, XDP_TX, "floor"));
        test_runs.push_back(time_once(fd, packet, expected, what));
    }
    return {mean_without_interrupts(floor_runs), mean_without_interrupts(test_runs), floor_repeat / chunks};
}

}  // namespace stickylb::bench
