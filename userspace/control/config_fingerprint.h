// SPDX-License-Identifier: Apache-2.0
#pragma once
// What LB hosts of one fleet must agree on for every one of them to pick the same
// backend for a flow or a client: the settings that shape each VIP's ring and
// tables. Hosts compare fingerprints before announcing (docs/scale-out.md). What
// may differ per host is left out: the interface, paths, health-check settings,
// next hops, names used only for display.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "control/config.h"

namespace stickylb {

// The parts, in the order they are hashed; each names what an operator must make equal.
#define STICKYLB_FINGERPRINT_PARTS(X)                                                 \
    X(hash_seed, "hash_seed")                                                         \
    X(ring_size, "ring_size")                                                         \
    X(table_sizes, "max_vips, max_backends, flow_table_size, affinity_table_size")    \
    X(vips,                                                                           \
      "the VIPs: address, port, protocol, forwarding, hash_source, persistence, and " \
      "every backend's name, address and weight")

struct ConfigFingerprint {
    // Part name -> its text (vips: the SHA-256 of every VIP's settings, in address order).
    std::map<std::string, std::string> parts;
    std::string digest;  // SHA-256 of every part, lowercase hex
    bool operator==(const ConfigFingerprint&) const = default;
};

ConfigFingerprint config_fingerprint(const DaemonConfig& config);

// Names of the parts in which a and b differ (a part only one of them has counts), in
// STICKYLB_FINGERPRINT_PARTS order, then any unknown ones.
std::vector<std::string> differing_parts(const ConfigFingerprint& a, const ConfigFingerprint& b);
// "the VIPs: address, ..." for a known part, the name itself otherwise.
std::string_view describe_fingerprint_part(std::string_view part);
std::vector<std::string_view> fingerprint_part_names();

}  // namespace stickylb
