// SPDX-License-Identifier: Apache-2.0
#pragma once
// One row of xdp_bench: what is timed, how, what every packet must do, and the
// figures of each round.
#include <linux/bpf.h>

#include <functional>
#include <string>
#include <vector>

#include "support/packets.h"

namespace stickylb::bench {

using stickylb::testing::Bytes;

enum class Method { repeat, single, single_raw };
enum class Expect {
    nothing,
    no_new_flow,  // established or non-VIP: no flow recorded
    new_flow,     // one new flow recorded per packet
    new_client,   // one affinity miss (and one new flow) per packet
};

struct Case {
    std::string name;
    std::string family;  // "IPv4" / "IPv6"
    std::string mode;    // "L2 DSR" / "IPIP" / "-"
    std::string table;   // "1k" / "1M" / "-": flow-table size while timed
    Method method;
    std::string method_text;
    bool on_floor = false;  // time the floor program itself (the floor rows)
    // What every timed packet must do, checked with the data plane's own VIP counters, so a
    // case cannot silently time another path (an evicted entry, a client seen before).
    Expect expect = Expect::nothing;
    int expected = XDP_TX;
    // Packets for one round: repeat uses the first; single cycles through them.
    std::function<std::vector<Bytes>(int round)> packets;
    std::function<void()> cleanup;  // after each round: undo what the runs inserted
    // Results, one per round.
    std::vector<double> ns, ratio, floor_repeat, floor_single, raw_single;
};

}  // namespace stickylb::bench
