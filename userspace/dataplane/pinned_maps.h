// SPDX-License-Identifier: Apache-2.0
#pragma once
// The flow and affinity tables read (and flushed) through the maps stickylbd
// pinned: no program load. stickylbd walks them on its background worker (the
// control socket's flow and affinity commands, affinity snapshots) while DataPlane
// keeps serving the I/O thread; the CLI asks stickylbd and never opens maps.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/address.h"

namespace stickylb {

struct FlowRecord {
    IpAddress client;
    std::uint16_t client_port = 0;  // host order
    IpAddress vip;
    std::uint16_t vip_port = 0;  // host order
    std::uint8_t protocol = 0;
    std::uint32_t backend_index = 0;
    std::uint16_t vip_index = 0;
};

struct AffinityRecord {
    std::uint32_t vip_index = 0;
    IpAddress client;  // masked to the VIP's client prefix
    std::uint32_t backend_index = 0;
    std::chrono::nanoseconds age{0};  // now(CLOCK_MONOTONIC_COARSE) - last_seen, never negative
};

// An affinity entry to write: last_seen_ns on the map's own clock (affinity_clock_ns()).
struct AffinityWrite {
    std::uint32_t vip_index = 0;
    IpAddress client;  // already masked to the VIP's client prefix
    std::uint32_t backend_index = 0;
    std::uint64_t last_seen_ns = 0;
};

struct AffinityWriteResult {
    std::size_t written = 0;
    std::size_t present = 0;  // not written: the key was there and overwrite was false
    bool batched = false;     // bpf_map_update_batch did the work
};

// The clock of stickylb_affinity.last_seen_ns (CLOCK_MONOTONIC_COARSE, as
// bpf_ktime_get_coarse_ns()), now.
std::uint64_t affinity_clock_ns();

class PinnedMaps {
public:
    // bpf_obj_get of "flows", "flow_cache", "affinity", "backends" and "vips" under
    // pin_dir. Throws std::runtime_error "no stickylb maps pinned in DIR: is stickylbd
    // running?" when they are not there, SystemError for other failures, and
    // std::runtime_error when a map's layout is not this build's abi.h.
    static PinnedMaps open(const std::string& pin_dir);
    PinnedMaps(PinnedMaps&& other) noexcept;
    PinnedMaps& operator=(PinnedMaps&& other) noexcept;
    PinnedMaps(const PinnedMaps&) = delete;
    PinnedMaps& operator=(const PinnedMaps&) = delete;
    ~PinnedMaps();

    // A snapshot (the tables change while they are read: an entry may be missing
    // or, on kernels without batch lookups, listed twice). At most limit entries.
    std::vector<FlowRecord> flows(std::size_t limit = SIZE_MAX) const;
    std::vector<AffinityRecord> affinities(std::size_t limit = SIZE_MAX) const;

    // Deletes the flow entries which() picks, then clears the per-CPU flow cache
    // copies of those flows (and any cached flow which() picks) on every CPU, so
    // the XDP program stops serving them. Returns how many flow-table entries went.
    std::size_t delete_flows(std::function<bool(const FlowRecord&)> which);
    std::size_t delete_affinities(std::function<bool(const AffinityRecord&)> which);

    // Writes the entries, with bpf_map_update_batch where the kernel has it for
    // the LRU hash (5.6+), in batches, else one update each. overwrite false
    // leaves keys already present alone (counted in `present`).
    AffinityWriteResult write_affinities(const std::vector<AffinityWrite>& entries, bool overwrite);
    // For every entry, to(record) says what becomes of it: nullopt nothing,
    // STICKYLB_NO_BACKEND deleted, another index rewritten to that backend (its
    // last-seen time kept). Returns how many entries changed.
    std::size_t reassign_affinities(std::function<std::optional<std::uint32_t>(const AffinityRecord&)> to);

    // Address of a backend index as the backends map holds it; nullopt for an
    // index out of range or an empty slot.
    std::optional<IpAddress> backend_address(std::uint32_t backend_index) const;

private:
    PinnedMaps() = default;
    void close_all() noexcept;

    std::string pin_dir_;
    int flows_ = -1;
    int flow_cache_ = -1;
    int affinity_ = -1;
    int backends_ = -1;
    int vips_ = -1;
    int possible_cpus_ = 0;
};

}  // namespace stickylb
