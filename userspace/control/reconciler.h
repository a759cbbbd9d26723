// SPDX-License-Identifier: Apache-2.0
#pragma once
// Desired state = config file + operator overrides + health results. The pure
// part (desired_state) decides backend states, indexes and rings without the
// kernel; the Reconciler writes only what differs from what the maps hold.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dataplane/maps.h"
#include "dataplane/maglev.h"
#include "control/config.h"

namespace stickylb {

using BackendId = std::pair<std::string, std::string>;  // (VIP name, backend name)
std::string to_string(const BackendId& id);             // "web/be1"
BackendId parse_backend_id(const std::string& text);    // the reverse; throws for text without '/'

// Operator changes made with the CLI; kept in the state file across restarts.
struct AdminOverride {
    bool drained = false;
    std::optional<std::uint32_t> weight;
    bool operator==(const AdminOverride&) const = default;
};
using AdminOverrides = std::map<BackendId, AdminOverride>;

enum class HealthVerdict { unknown, up, down };

// Data-plane indexes that never change while their VIP or backend exists, so
// flow entries (which hold them) stay right across reloads and restarts.
class IndexRegistry {
public:
    IndexRegistry(std::uint32_t max_vips, std::uint32_t max_backends);
    std::uint32_t vip_index(const std::string& vip);
    std::uint32_t backend_index(const BackendId& backend);
    // Frees the indexes of everything not named.
    void retain(const std::set<std::string>& vips, const std::set<BackendId>& backends);
    const std::map<BackendId, std::uint32_t>& backends() const { return backends_; }
    nlohmann::json to_json() const;
    void load_json(const nlohmann::json& saved);

private:
    std::uint32_t max_vips_, max_backends_;
    std::map<std::string, std::uint32_t> vips_;
    std::map<BackendId, std::uint32_t> backends_;
};

struct DesiredBackend {
    BackendId id;
    std::uint32_t index = 0;
    IpAddress address;
    std::optional<IpAddress> next_hop;
    std::uint32_t weight = 1;
    BackendState state = BackendState::up;
    bool operator==(const DesiredBackend&) const = default;
};

struct DesiredVip {
    std::string name;
    VipKey key;
    VipSettings settings;
    std::vector<DesiredBackend> backends;
};

struct DesiredState {
    std::vector<DesiredVip> vips;
};

// Admin drain or weight 0: draining (keeps its users, gets no new ones). Health
// down: down. Otherwise up (unknown counts as up: a restarted daemon seeds its
// checks with the states it adopted, so unknown only happens on a first start).
DesiredState desired_state(const DaemonConfig& config, const AdminOverrides& overrides,
                           const std::function<HealthVerdict(const BackendId&)>& health, IndexRegistry& indexes);

struct ReconcileStats {
    std::size_t vips_written = 0;
    std::size_t vips_removed = 0;
    std::size_t backends_written = 0;
    std::size_t backends_removed = 0;
    std::size_t ring_slots_written = 0;
    std::map<std::string, std::size_t> ring_slots_written_by_vip;  // VIP name -> slots; only VIPs with some
    bool changed() const {
        return vips_written || vips_removed || backends_written || backends_removed || ring_slots_written;
    }
};

struct EgressInterface {
    MacAddress mac;
    std::uint32_t ifindex = 0;
};

class Reconciler {
public:
    // resolve_mac: the next hop's MAC, or nullopt (the tc slow path resolves it meanwhile).
    using MacResolver = std::function<std::optional<MacAddress>(const DesiredBackend&, ForwardingMode)>;
    Reconciler(ServiceMaps& plane, std::uint64_t maglev_seed, EgressInterface egress, MacResolver resolve_mac);

    // Takes what pinned maps already hold as written, so a restart rewrites nothing that is right.
    void adopt(const std::vector<std::uint32_t>& backend_indexes);
    ReconcileStats apply(const DesiredState& desired);

private:
    BackendEntry entry_for(const DesiredBackend& backend, ForwardingMode mode) const;
    bool write_backend(const BackendEntry& entry);

    ServiceMaps& plane_;
    std::uint64_t maglev_seed_;
    EgressInterface egress_;
    MacResolver resolve_mac_;
    std::map<std::uint32_t, BackendEntry> written_backends_;
    // Per VIP index: what its ring was last built from. A restart starts empty, so the
    // first apply rebuilds every ring (and writes only the slots that differ).
    std::map<std::uint32_t, MaglevRing> rings_;
};

}  // namespace stickylb
