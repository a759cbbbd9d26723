// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the control and session planes read and write in the data plane, apart from
// the kernel objects that hold it: DataPlane (the BPF maps of a loaded program) and
// PinnedMaps (the flow and affinity tables, reopened from bpffs) implement these,
// and unit tests hold the same state in memory. No libbpf here.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/address.h"
#include "base/backend_state.h"
#include "dataplane/forwarding_mode.h"
#include "stickylb/abi.h"
#include "stickylb/stats.h"

namespace stickylb {

enum class AttachMode { automatic, native, generic };
std::string to_string(AttachMode mode);

struct LoadOptions {
    std::uint32_t ring_size = STICKYLB_DEFAULT_RING_SIZE;  // must be prime
    std::uint32_t max_vips = STICKYLB_DEFAULT_MAX_VIPS;
    std::uint32_t max_backends = STICKYLB_DEFAULT_MAX_BACKENDS;
    std::uint32_t flow_entries = STICKYLB_DEFAULT_FLOW_ENTRIES;
    std::uint32_t affinity_entries = STICKYLB_DEFAULT_AFFINITY_ENTRIES;
    // bpffs directory; maps found there are reused, missing ones created and pinned.
    // Empty: nothing pinned (tests, benchmarks).
    std::string pin_dir;
};

struct VipKey {
    IpAddress address;
    std::uint16_t port = 0;     // host order
    std::uint8_t protocol = 0;  // IPPROTO_TCP / IPPROTO_UDP
    auto operator<=>(const VipKey&) const = default;
    std::string to_string() const;  // "tcp 10.0.0.1:80", "udp [fd00::1]:53"
};

struct VipSettings {
    std::uint32_t index = 0;  // ring and stats slot, < max_vips
    bool persistent = false;
    bool hash_source = false;
    std::uint32_t affinity_timeout_s = 300;
    std::uint8_t client_prefix_v4 = 32;
    std::uint8_t client_prefix_v6 = 128;
    ForwardingMode forwarding = ForwardingMode::l2_dsr;
    auto operator<=>(const VipSettings&) const = default;
};

struct BackendEntry {
    std::uint32_t index = 0;  // >= 1
    IpAddress address;
    BackendState state = BackendState::up;
    std::optional<MacAddress> nexthop_mac;  // unset: tc slow path resolves the neighbour
    MacAddress egress_mac;                  // MAC of the interface packets leave by
    std::uint32_t egress_ifindex = 0;       // 0: out of the interface they came in on
    auto operator<=>(const BackendEntry&) const = default;
};

struct RuntimeConfig {
    std::uint32_t hash_seed = 0;
    IpAddress tunnel_source_v4 = IpAddress::parse("172.16.0.0");   // low 16 bits: flow hash
    IpAddress tunnel_source_v6 = IpAddress::parse("fd00:5b1b::");  // low 32 bits: flow hash
    // Flows (and clients) one CPU records per second; past it new flows are balanced by
    // the ring without being recorded (SYN-flood guard). 0: no limit.
    std::uint32_t new_flow_limit = STICKYLB_DEFAULT_NEW_FLOW_LIMIT;
};

struct AttachResult {
    AttachMode mode;  // native or generic: what the kernel actually did
    bool replaced;    // an existing stickylb attachment was atomically replaced
};

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

// VIPs, backends, rings, the runtime config and the counters: the reconciler's and
// the daemon's side of the data plane, on the I/O thread.
class ServiceMaps {
public:
    virtual ~ServiceMaps() = default;

    virtual const LoadOptions& options() const = 0;
    virtual void set_runtime_config(const RuntimeConfig& config) = 0;

    // Also maintains the port-0 address entry of each VIP address (fragments and
    // malformed packets): it follows the lowest-port source-hashed VIP there.
    virtual void upsert_vip(const VipKey& key, const VipSettings& settings) = 0;
    virtual void remove_vip(const VipKey& key) = 0;
    virtual const std::map<VipKey, VipSettings>& vips() const = 0;

    virtual void set_backend(const BackendEntry& backend) = 0;
    // What the map holds at index (adopting pinned state); nullopt for an empty slot.
    virtual std::optional<BackendEntry> read_backend(std::uint32_t index) const = 0;
    virtual void remove_backend(std::uint32_t index) = 0;

    // Writes only the slots that differ from what the map holds; returns how many.
    virtual std::size_t write_ring(std::uint32_t vip_index, std::span<const std::uint32_t> ring) = 0;
    virtual std::vector<std::uint32_t> read_ring(std::uint32_t vip_index) const = 0;
    std::uint32_t ring_size() const { return options().ring_size; }

    virtual stickylb_global_stats global_stats() const = 0;
    virtual stickylb_vip_stats vip_stats(std::uint32_t vip_index) const = 0;
    virtual stickylb_backend_stats backend_stats(std::uint32_t backend_index) const = 0;
};

// The flow and affinity tables, walked on a background thread (they hold millions
// of entries), while the I/O thread keeps ServiceMaps.
class ClientTables {
public:
    virtual ~ClientTables() = default;

    // A snapshot (the tables change while they are read: an entry may be missing
    // or, on kernels without batch lookups, listed twice). At most limit entries.
    virtual std::vector<FlowRecord> flows(std::size_t limit = SIZE_MAX) const = 0;
    virtual std::vector<AffinityRecord> affinities(std::size_t limit = SIZE_MAX) const = 0;

    // Deletes the flow entries which() picks, and every cached copy of them, so the
    // data plane stops serving them. Returns how many flow-table entries went.
    virtual std::size_t delete_flows(std::function<bool(const FlowRecord&)> which) = 0;
    virtual std::size_t delete_affinities(std::function<bool(const AffinityRecord&)> which) = 0;

    // overwrite false leaves keys already present alone (counted in `present`).
    virtual AffinityWriteResult write_affinities(const std::vector<AffinityWrite>& entries, bool overwrite) = 0;
    // For every entry, to(record) says what becomes of it: nullopt nothing,
    // STICKYLB_NO_BACKEND deleted, another index rewritten to that backend (its
    // last-seen time kept). Returns how many entries changed.
    virtual std::size_t reassign_affinities(std::function<std::optional<std::uint32_t>(const AffinityRecord&)> to) = 0;

    // The flows the fleet's other LB hosts keep off today's ring (vip_index ignored):
    // afterwards the peer-flow table holds exactly these. Returns how many were written.
    virtual std::size_t replace_peer_flows(const std::vector<FlowRecord>& flows) = 0;
};

}  // namespace stickylb
