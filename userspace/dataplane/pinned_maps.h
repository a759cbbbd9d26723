// SPDX-License-Identifier: Apache-2.0
#pragma once
// The flow and affinity tables read (and flushed) through the maps stickylbd
// pinned (open: no program load, for tools and tests), or through the maps of the
// program stickylbd loaded (DataPlane::client_tables: one handle on its maps). stickylbd walks them on its background worker (the
// control socket's flow and affinity commands, affinity snapshots) while DataPlane
// keeps serving the I/O thread; the CLI asks stickylbd and never opens maps.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/maps.h"

namespace stickylb {

class PinnedMaps final : public ClientTables {
public:
    // bpf_obj_get of "flows", "flow_cache", "affinity", "backends", "vips" and "peer_flows" under
    // pin_dir. Throws std::runtime_error "no stickylb maps pinned in DIR: is stickylbd
    // running?" when they are not there, SystemError for other failures, and
    // std::runtime_error when a map's layout is not this build's abi.h.
    static PinnedMaps open(const std::string& pin_dir);
    // The same maps from descriptors of a program loaded here (DataPlane::client_tables):
    // PinnedMaps owns these (duplicates) and checks their layout as open() does.
    struct Descriptors {
        int flows = -1, flow_cache = -1, affinity = -1, backends = -1, vips = -1, peer_flows = -1;
    };
    static PinnedMaps adopt(const Descriptors& descriptors, const std::string& where);
    PinnedMaps(PinnedMaps&& other) noexcept;
    PinnedMaps& operator=(PinnedMaps&& other) noexcept;
    PinnedMaps(const PinnedMaps&) = delete;
    PinnedMaps& operator=(const PinnedMaps&) = delete;
    ~PinnedMaps() override;

    std::vector<FlowRecord> flows(std::size_t limit = SIZE_MAX) const override;
    std::vector<AffinityRecord> affinities(std::size_t limit = SIZE_MAX) const override;
    // Clears the per-CPU flow cache copies of the flows it deletes (and any cached
    // flow which() picks) on every CPU.
    std::size_t delete_flows(std::function<bool(const FlowRecord&)> which) override;
    std::size_t delete_affinities(std::function<bool(const AffinityRecord&)> which) override;
    // With bpf_map_update_batch where the kernel has it for the LRU hash (5.6+), in
    // batches, else one update each.
    AffinityWriteResult write_affinities(const std::vector<AffinityWrite>& entries, bool overwrite) override;
    std::size_t reassign_affinities(std::function<std::optional<std::uint32_t>(const AffinityRecord&)> to) override;
    std::size_t replace_peer_flows(const std::vector<FlowRecord>& flows) override;

    // Address of a backend index as the backends map holds it; nullopt for an
    // index out of range or an empty slot.
    std::optional<IpAddress> backend_address(std::uint32_t backend_index) const;

private:
    PinnedMaps() = default;
    void close_all() noexcept;

    std::string pin_dir_;
    Descriptors fds_{};
    int possible_cpus_ = 0;
};

}  // namespace stickylb
