// SPDX-License-Identifier: Apache-2.0
#include "control/reload_rules.h"

namespace stickylb {

namespace {

struct RestartOnlyKey {
    std::string_view name;
    bool (*differs)(const DaemonConfig& running, const DaemonConfig& next);
    void (*keep)(DaemonConfig& next, const DaemonConfig& running);
};

template <auto Member>
constexpr RestartOnlyKey restart_only(std::string_view name) {
    return {name, [](const DaemonConfig& running, const DaemonConfig& next) { return running.*Member != next.*Member; },
            [](DaemonConfig& next, const DaemonConfig& running) { next.*Member = running.*Member; }};
}

// Map sizes and the ring size are the loaded BPF maps'; the interface, attach mode
// and pins the attached program's; the sockets are bound; memcached and session
// settings are the coordinator's, built once; the announcement's
// lock and guard are taken at start.
constexpr RestartOnlyKey kRestartOnlyKeys[] = {
    restart_only<&DaemonConfig::interface>("interface"),
    restart_only<&DaemonConfig::attach_mode>("attach_mode"),
    restart_only<&DaemonConfig::pin_dir>("pin_dir"),
    restart_only<&DaemonConfig::ring_size>("ring_size"),
    restart_only<&DaemonConfig::max_vips>("max_vips"),
    restart_only<&DaemonConfig::max_backends>("max_backends"),
    restart_only<&DaemonConfig::flow_table_size>("flow_table_size"),
    restart_only<&DaemonConfig::affinity_table_size>("affinity_table_size"),
    restart_only<&DaemonConfig::hash_seed>("hash_seed"),
    restart_only<&DaemonConfig::control_socket>("control_socket"),
    restart_only<&DaemonConfig::control_group>("control_group"),
    restart_only<&DaemonConfig::metrics_listen>("metrics_listen"),
    restart_only<&DaemonConfig::memcached_servers>("memcached_servers"),
    restart_only<&DaemonConfig::session>("session"),
    restart_only<&DaemonConfig::announce>("announce"),
};

}  // namespace

std::vector<std::string_view> restart_only_changes(const DaemonConfig& running, const DaemonConfig& next) {
    std::vector<std::string_view> changed;
    for (const RestartOnlyKey& key : kRestartOnlyKeys)
        if (key.differs(running, next))
            changed.push_back(key.name);
    return changed;
}

void keep_restart_only_keys(DaemonConfig& next, const DaemonConfig& running) {
    for (const RestartOnlyKey& key : kRestartOnlyKeys)
        key.keep(next, running);
}

std::vector<std::string_view> restart_only_keys() {
    std::vector<std::string_view> names;
    for (const RestartOnlyKey& key : kRestartOnlyKeys)
        names.push_back(key.name);
    return names;
}

}  // namespace stickylb
