// SPDX-License-Identifier: Apache-2.0
// What a reload may change: one table of restart-only keys (control/reload_rules.h)
// that the reload compares, warns about and keeps. A key changed in the file is
// reported and kept at its running value; everything else is applied.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "control/config.h"
#include "control/reload_rules.h"

namespace stickylb {
namespace {

const std::string kVips = R"(vips:
  - name: web
    address: 192.0.2.10
    port: 80
    backends:
      - address: 10.0.1.11
)";

DaemonConfig running_config() { return parse_config("interface: eth0\n" + kVips, "lb.yaml"); }

// One line of YAML per restart-only key, each a value other than the default.
struct KeyChange {
    std::string_view key;
    std::string yaml;
};
const std::vector<KeyChange> kChanges = {
    {"interface", "interface: eth1\n"},
    {"attach_mode", "attach_mode: generic\n"},
    {"pin_dir", "pin_dir: /sys/fs/bpf/other\n"},
    {"ring_size", "ring_size: 251\n"},
    {"max_vips", "max_vips: 8\n"},
    {"max_backends", "max_backends: 64\n"},
    {"flow_table_size", "flow_table_size: 4096\n"},
    {"affinity_table_size", "affinity_table_size: 4096\n"},
    {"hash_seed", "hash_seed: 7\n"},
    {"control_socket", "control_socket: /run/other.sock\n"},
    {"control_group", "control_group: root\n"},
    {"metrics_listen", "metrics_listen: 127.0.0.1:9999\n"},
    {"memcached_servers", "memcached_servers: [127.0.0.1:11211]\n"},
    {"session", "memcached_servers: []\nsession: {view_refresh_interval: 2s, view_ttl: 10s}\n"},
    {"announce", "announce: {routing_table: 90}\n"},
};

DaemonConfig with_change(const KeyChange& change) {
    const std::string interface = change.key == "interface" ? "" : "interface: eth0\n";
    return parse_config(interface + change.yaml + kVips, "lb.yaml");
}

TEST(ReloadRules, EveryRestartOnlyKeyIsSeenChangedAndKept) {
    const DaemonConfig running = running_config();
    std::vector<std::string_view> tested;
    for (const KeyChange& change : kChanges) {
        DaemonConfig next = with_change(change);
        EXPECT_EQ(restart_only_changes(running, next), std::vector<std::string_view>{change.key}) << change.yaml;
        keep_restart_only_keys(next, running);
        EXPECT_TRUE(restart_only_changes(running, next).empty()) << change.key << " was not kept";
        tested.push_back(change.key);
    }
    // A key added to the table without a case here fails this.
    EXPECT_EQ(tested, restart_only_keys());
}

TEST(ReloadRules, VipsBackendsAndLimitsAreApplied) {
    const DaemonConfig running = running_config();
    DaemonConfig next = parse_config(R"(interface: eth0
new_flow_limit_per_cpu: 5000
vips:
  - name: web
    address: 192.0.2.10
    port: 80
    backends:
      - address: 10.0.1.11
        weight: 3
      - address: 10.0.1.12
)",
                                     "lb.yaml");
    EXPECT_TRUE(restart_only_changes(running, next).empty());
    keep_restart_only_keys(next, running);
    ASSERT_EQ(next.vips.size(), 1u);
    EXPECT_EQ(next.vips[0].backends.size(), 2u);
    EXPECT_EQ(next.vips[0].backends[0].weight, 3u);
    EXPECT_EQ(next.new_flow_limit_per_cpu, 5000u);
}

}  // namespace
}  // namespace stickylb
