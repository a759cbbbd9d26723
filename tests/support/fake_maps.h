// SPDX-License-Identifier: Apache-2.0
#pragma once
// The data plane's maps held in memory, for unit tests of what drives them (the
// control plane): the same contracts as DataPlane and PinnedMaps, no kernel.
#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "dataplane/maps.h"

namespace stickylb::testing {

class FakeServiceMaps final : public ServiceMaps {
public:
    explicit FakeServiceMaps(LoadOptions options) : options_(std::move(options)) {}

    const LoadOptions& options() const override { return options_; }
    void set_runtime_config(const RuntimeConfig& config) override { runtime = config; }
    void upsert_vip(const VipKey& key, const VipSettings& settings) override { vips_[key] = settings; }
    void remove_vip(const VipKey& key) override { vips_.erase(key); }
    const std::map<VipKey, VipSettings>& vips() const override { return vips_; }
    void set_backend(const BackendEntry& backend) override { backends[backend.index] = backend; }
    std::optional<BackendEntry> read_backend(std::uint32_t index) const override {
        const auto found = backends.find(index);
        return found == backends.end() ? std::nullopt : std::optional(found->second);
    }
    void remove_backend(std::uint32_t index) override { backends.erase(index); }
    std::size_t write_ring(std::uint32_t vip_index, std::span<const std::uint32_t> ring) override {
        std::vector<std::uint32_t>& held = rings[vip_index];
        held.resize(options_.ring_size, STICKYLB_NO_BACKEND);
        std::size_t written = 0;
        for (std::size_t slot = 0; slot < ring.size(); ++slot)
            if (held[slot] != ring[slot]) {
                held[slot] = ring[slot];
                ++written;
            }
        return written;
    }
    std::vector<std::uint32_t> read_ring(std::uint32_t vip_index) const override {
        const auto found = rings.find(vip_index);
        return found == rings.end() ? std::vector<std::uint32_t>(options_.ring_size, STICKYLB_NO_BACKEND)
                                    : found->second;
    }
    stickylb_global_stats global_stats() const override { return global; }
    stickylb_vip_stats vip_stats(std::uint32_t vip_index) const override {
        const auto found = vip_counters.find(vip_index);
        return found == vip_counters.end() ? stickylb_vip_stats{} : found->second;
    }
    stickylb_backend_stats backend_stats(std::uint32_t backend_index) const override {
        const auto found = backend_counters.find(backend_index);
        return found == backend_counters.end() ? stickylb_backend_stats{} : found->second;
    }

    // How many ring slots of the VIP name the backend.
    std::size_t slots_of(std::uint32_t vip_index, std::uint32_t backend_index) const {
        const auto ring = read_ring(vip_index);
        return static_cast<std::size_t>(std::count(ring.begin(), ring.end(), backend_index));
    }

    RuntimeConfig runtime;
    std::map<std::uint32_t, BackendEntry> backends;
    std::map<std::uint32_t, std::vector<std::uint32_t>> rings;
    stickylb_global_stats global{};
    std::map<std::uint32_t, stickylb_vip_stats> vip_counters;
    std::map<std::uint32_t, stickylb_backend_stats> backend_counters;

private:
    LoadOptions options_;
    std::map<VipKey, VipSettings> vips_;
};

// Walked on the control plane's worker thread while the test reads it: locked.
class FakeClientTables final : public ClientTables {
public:
    std::vector<FlowRecord> flows(std::size_t limit = SIZE_MAX) const override {
        std::lock_guard lock(mutex_);
        return {flows_.begin(), flows_.begin() + static_cast<std::ptrdiff_t>(std::min(limit, flows_.size()))};
    }
    std::vector<AffinityRecord> affinities(std::size_t limit = SIZE_MAX) const override {
        std::lock_guard lock(mutex_);
        return {affinities_.begin(),
                affinities_.begin() + static_cast<std::ptrdiff_t>(std::min(limit, affinities_.size()))};
    }
    std::size_t delete_flows(std::function<bool(const FlowRecord&)> which) override {
        std::lock_guard lock(mutex_);
        return std::erase_if(flows_, which);
    }
    std::size_t delete_affinities(std::function<bool(const AffinityRecord&)> which) override {
        std::lock_guard lock(mutex_);
        return std::erase_if(affinities_, which);
    }
    AffinityWriteResult write_affinities(const std::vector<AffinityWrite>& entries, bool overwrite) override {
        std::lock_guard lock(mutex_);
        AffinityWriteResult result;
        for (const AffinityWrite& entry : entries) {
            auto present = std::find_if(affinities_.begin(), affinities_.end(), [&](const AffinityRecord& held) {
                return held.vip_index == entry.vip_index && held.client == entry.client;
            });
            if (present != affinities_.end() && !overwrite) {
                ++result.present;
                continue;
            }
            if (present == affinities_.end())
                present = affinities_.insert(affinities_.end(), AffinityRecord{entry.vip_index, entry.client});
            present->backend_index = entry.backend_index;
            ++result.written;
        }
        return result;
    }
    std::size_t reassign_affinities(std::function<std::optional<std::uint32_t>(const AffinityRecord&)> to) override {
        std::lock_guard lock(mutex_);
        std::size_t changed = 0;
        for (auto it = affinities_.begin(); it != affinities_.end();) {
            const auto next = to(*it);
            if (!next) {
                ++it;
                continue;
            }
            ++changed;
            if (*next == STICKYLB_NO_BACKEND) {
                it = affinities_.erase(it);
                continue;
            }
            it->backend_index = *next;
            ++it;
        }
        return changed;
    }

    std::size_t replace_peer_flows(const std::vector<FlowRecord>& flows) override {
        std::lock_guard lock(mutex_);
        peer_flows_ = flows;
        return flows.size();
    }
    std::vector<FlowRecord> peer_flows() const {
        std::lock_guard lock(mutex_);
        return peer_flows_;
    }

    void add(const FlowRecord& flow) {
        std::lock_guard lock(mutex_);
        flows_.push_back(flow);
    }
    void add(const AffinityRecord& affinity) {
        std::lock_guard lock(mutex_);
        affinities_.push_back(affinity);
    }

private:
    mutable std::mutex mutex_;
    std::vector<FlowRecord> flows_;
    std::vector<AffinityRecord> affinities_;
    std::vector<FlowRecord> peer_flows_;
};

}  // namespace stickylb::testing
