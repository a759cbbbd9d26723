// SPDX-License-Identifier: Apache-2.0
#pragma once
// The two ways xdp_bench times a program with BPF_PROG_TEST_RUN, on the kernel's own
// clock (opts.duration), each interleaved with the floor program so that a slow phase
// of the machine hits both alike (see xdp_bench.cpp for when each is valid).
#include <cstdint>
#include <string>
#include <vector>

#include "support/packets.h"

namespace stickylb::bench {

using stickylb::testing::Bytes;

const char* action_name(int action);  // "XDP_TX"

// ns per run as the kernel measured it over `repeat` back-to-back runs; throws when
// the program's verdict is not `expected`.
double time_repeat(int fd, const Bytes& packet, std::uint32_t repeat, int expected, const std::string& what);
// One run (repeat=1) on a fresh copy of packet: the kernel-timed ns.
double time_once(int fd, const Bytes& packet, int expected, const std::string& what);

// Floor and case alternate in chunks (repeat method: kChunks chunks of repeat/kChunks each;
// single method: run by run), so a slow phase of the machine hits both alike. Few chunks:
// every BPF_PROG_TEST_RUN with repeat > 1 swaps the program into the XDP dispatcher and
// back, and each swap waits for an RCU grace period (wall time, not measured time).
constexpr std::uint32_t kChunks = 3;
constexpr std::uint32_t kSingleReferenceChunks = 2;  // floor-by-repeat blocks among single runs

struct Pair {
    double floor;
    double test;
    double floor_repeat = 0;  // single method: the floor by repeat, timed between the single runs
};

// repeat: floor and case alternate in a few chunks of repeat/chunks runs each.
Pair time_repeat_pair(int floor_fd, int fd, const Bytes& packet, std::uint32_t repeat, int expected,
                      const std::string& what);
// single: count runs of each, alternating, over packets (cycled), without the runs an
// interrupt landed in; and, spread between them, `repeat` floor runs by repeat: the
// reference of the timer-overhead correction, timed in the same phase.
Pair time_singles_pair(int floor_fd, int fd, const std::vector<Bytes>& packets, std::size_t count, std::uint32_t repeat,
                       int expected, const std::string& what);

}  // namespace stickylb::bench
