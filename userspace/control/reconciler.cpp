// SPDX-License-Identifier: Apache-2.0
#include "control/reconciler.h"

#include <stdexcept>

#include "dataplane/maglev.h"

namespace stickylb {
namespace {

// Lowest index not taken, from `first`. A bitmap, not a set: a first start with
// thousands of backends allocates them one by one.
template <typename Map>
std::uint32_t allocate(const Map& taken, std::uint32_t first, std::uint32_t limit, const std::string& what) {
    std::vector<bool> used(limit, false);
    for (const auto& [key, index] : taken)
        if (index < limit)
            used[index] = true;
    for (std::uint32_t index = first; index < limit; ++index)
        if (!used[index])
            return index;
    throw std::runtime_error("no free " + what + " index: all " + std::to_string(limit - first) + " are in use");
}

}  // namespace

std::string to_string(const BackendId& id) { return id.first + "/" + id.second; }

BackendId parse_backend_id(const std::string& text) {
    const auto slash = text.find('/');
    if (slash == std::string::npos)
        throw std::runtime_error("'" + text + "' is not VIP/BACKEND");
    return {text.substr(0, slash), text.substr(slash + 1)};
}

IndexRegistry::IndexRegistry(std::uint32_t max_vips, std::uint32_t max_backends)
    : max_vips_(max_vips), max_backends_(max_backends) {}

std::uint32_t IndexRegistry::vip_index(const std::string& vip) {
    if (auto found = vips_.find(vip); found != vips_.end())
        return found->second;
    return vips_[vip] = allocate(vips_, 0, max_vips_, "VIP");
}

std::uint32_t IndexRegistry::backend_index(const BackendId& backend) {
    if (auto found = backends_.find(backend); found != backends_.end())
        return found->second;
    return backends_[backend] = allocate(backends_, 1, max_backends_, "backend");  // 0 means none
}

void IndexRegistry::retain(const std::set<std::string>& vips, const std::set<BackendId>& backends) {
    std::erase_if(vips_, [&](const auto& entry) { return !vips.count(entry.first); });
    std::erase_if(backends_, [&](const auto& entry) { return !backends.count(entry.first); });
}

nlohmann::json IndexRegistry::to_json() const {
    nlohmann::json saved{{"vips", nlohmann::json::object()}, {"backends", nlohmann::json::object()}};
    for (const auto& [vip, index] : vips_)
        saved["vips"][vip] = index;
    for (const auto& [backend, index] : backends_)
        saved["backends"][to_string(backend)] = index;
    return saved;
}

// Indexes past the current sizes were saved before the maps shrank (which took a
// detach, so nothing holds them any more): those get new ones.
void IndexRegistry::load_json(const nlohmann::json& saved) {
    for (const auto& [vip, index] : saved.at("vips").items())
        if (const auto value = index.get<std::uint32_t>(); value < max_vips_)
            vips_[vip] = value;
    for (const auto& [name, index] : saved.at("backends").items())
        if (const auto value = index.get<std::uint32_t>(); value < max_backends_)
            backends_[parse_backend_id(name)] = value;
}

DesiredState desired_state(const DaemonConfig& config, const AdminOverrides& overrides,
                           const std::function<HealthVerdict(const BackendId&)>& health, IndexRegistry& indexes) {
    DesiredState desired;
    std::set<std::string> vip_names;
    std::set<BackendId> backend_ids;
    for (const VipConfig& vip : config.vips) {
        DesiredVip out;
        out.name = vip.name;
        out.key = VipKey{vip.address, vip.port, vip.protocol};
        out.settings.index = indexes.vip_index(vip.name);
        out.settings.forwarding = vip.forwarding;
        out.settings.hash_source = vip.hash_source;
        out.settings.persistent = vip.persistence.enabled;
        out.settings.affinity_timeout_s = vip.persistence.timeout_s;
        out.settings.client_prefix_v4 = vip.persistence.client_prefix_v4;
        out.settings.client_prefix_v6 = vip.persistence.client_prefix_v6;
        vip_names.insert(vip.name);
        for (const BackendConfig& backend : vip.backends) {
            const BackendId id{vip.name, backend.name};
            backend_ids.insert(id);
            DesiredBackend b;
            b.id = id;
            b.index = indexes.backend_index(id);
            b.address = backend.address;
            b.next_hop = backend.next_hop;
            b.weight = backend.weight;
            const auto override_of = overrides.find(id);
            if (override_of != overrides.end() && override_of->second.weight)
                b.weight = *override_of->second.weight;
            if (health(id) == HealthVerdict::down)
                b.state = BackendState::down;
            else if ((override_of != overrides.end() && override_of->second.drained) || b.weight == 0)
                b.state = BackendState::draining;
            out.backends.push_back(std::move(b));
        }
        desired.vips.push_back(std::move(out));
    }
    indexes.retain(vip_names, backend_ids);
    return desired;
}

Reconciler::Reconciler(ServiceMaps& plane, std::uint64_t maglev_seed, EgressInterface egress, MacResolver resolve_mac)
    : plane_(plane), maglev_seed_(maglev_seed), egress_(egress), resolve_mac_(std::move(resolve_mac)) {}

void Reconciler::adopt(const std::vector<std::uint32_t>& backend_indexes) {
    for (const std::uint32_t index : backend_indexes)
        if (auto entry = plane_.read_backend(index))
            written_backends_[index] = *entry;
}

BackendEntry Reconciler::entry_for(const DesiredBackend& backend, ForwardingMode mode) const {
    BackendEntry entry;
    entry.index = backend.index;
    entry.address = backend.address;
    entry.state = backend.state;
    entry.nexthop_mac = resolve_mac_(backend, mode);
    entry.egress_mac = egress_.mac;
    entry.egress_ifindex = egress_.ifindex;
    return entry;
}

bool Reconciler::write_backend(const BackendEntry& entry) {
    const auto written = written_backends_.find(entry.index);
    if (written != written_backends_.end() && written->second == entry)
        return false;
    plane_.set_backend(entry);
    written_backends_[entry.index] = entry;
    return true;
}

// Order matters for packets in flight: a backend leaving service leaves the ring
// before it is marked, one entering is written before the ring names it, so no
// ring pick ever lands on a backend the data plane would refuse.
// VIPs that leave go first, so a VIP that moved to a new address can take its
// index (and ring) at the new one; rings of indexes nothing uses any more are
// emptied last.
ReconcileStats Reconciler::apply(const DesiredState& desired) {
    ReconcileStats stats;
    std::set<VipKey> wanted_vips;
    std::set<std::uint32_t> wanted_rings;
    for (const DesiredVip& vip : desired.vips) {
        wanted_vips.insert(vip.key);
        wanted_rings.insert(vip.settings.index);
    }
    std::set<std::uint32_t> rings_in_use;
    for (const auto& [index, ring] : rings_)
        rings_in_use.insert(index);
    const auto written_vips = plane_.vips();  // a copy: removing changes the handle's map
    for (const auto& [key, settings] : written_vips) {
        rings_in_use.insert(settings.index);
        if (wanted_vips.count(key))
            continue;
        plane_.remove_vip(key);
        ++stats.vips_removed;
    }

    std::set<std::uint32_t> wanted_backends;
    std::vector<BackendEntry> leaving_service;
    for (const DesiredVip& vip : desired.vips) {
        std::vector<MaglevBackend> members;
        for (const DesiredBackend& backend : vip.backends) {
            wanted_backends.insert(backend.index);
            members.push_back(
                {to_string(backend.id), backend.index, backend.weight, backend.state == BackendState::up});
            BackendEntry entry = entry_for(backend, vip.settings.forwarding);
            if (backend.state == BackendState::up)
                stats.backends_written += write_backend(entry);
            else
                leaving_service.push_back(entry);
        }
        const auto current = plane_.vips().find(vip.key);
        if (current == plane_.vips().end() || current->second != vip.settings) {
            plane_.upsert_vip(vip.key, vip.settings);
            ++stats.vips_written;
        }
        // Unchanged members: the ring is what the map holds, no rebuild, no write.
        const auto ring = rings_[vip.settings.index].update(members, plane_.ring_size(), maglev_seed_);
        const std::size_t slots = ring ? plane_.write_ring(vip.settings.index, *ring) : 0;
        stats.ring_slots_written += slots;
        if (slots > 0)
            stats.ring_slots_written_by_vip[vip.name] = slots;
    }
    for (const BackendEntry& entry : leaving_service)
        stats.backends_written += write_backend(entry);

    for (const std::uint32_t index : rings_in_use) {
        if (wanted_rings.count(index))
            continue;
        plane_.write_ring(index, std::vector<std::uint32_t>(plane_.ring_size(), STICKYLB_NO_BACKEND));
        rings_.erase(index);
    }
    for (auto it = written_backends_.begin(); it != written_backends_.end();) {
        if (wanted_backends.count(it->first)) {
            ++it;
            continue;
        }
        plane_.remove_backend(it->first);
        ++stats.backends_removed;
        it = written_backends_.erase(it);
    }
    return stats;
}

}  // namespace stickylb
