// SPDX-License-Identifier: Apache-2.0
#pragma once
// The data-plane handle: loads the XDP program (libbpf skeleton), pins and
// re-opens its maps, attaches it to an interface (with the tc slow path), and
// writes VIPs, backends and rings with minimal diffs. With a pin_dir, data plane
// state lives in the kernel: destroying the handle never detaches or unpins
// anything. Without one (tests, benchmarks) attachments end with the handle.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/address.h"
#include "base/backend_state.h"
#include "stickylb/abi.h"
#include "stickylb/stats.h"

struct stickylb_bpf;  // generated skeletons
struct neigh_bpf;

namespace stickylb {

enum class AttachMode { automatic, native, generic };
std::string to_string(AttachMode mode);

enum class ForwardingMode : std::uint8_t { l2_dsr = STICKYLB_FWD_L2_DSR, ipip = STICKYLB_FWD_IPIP };

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

class DataPlane {
public:
    static DataPlane load(const LoadOptions& options);
    const LoadOptions& options() const { return options_; }
    DataPlane(DataPlane&&) noexcept;
    DataPlane& operator=(DataPlane&&) noexcept;
    ~DataPlane();

    // XDP on the interface plus the tc ingress slow path. automatic: native when
    // the driver supports it, generic otherwise. With a pin_dir the XDP link is
    // pinned, so the attachment outlives this process; attaching again while a
    // pinned link exists swaps the program in place (no packet sees no program).
    AttachResult attach(const std::string& interface, AttachMode requested = AttachMode::automatic);
    // Removes XDP, the tc filter and the pinned link of that interface.
    void detach(const std::string& interface);
    // Removes every pinned map of pin_dir (after detach): the next load starts empty.
    void unpin_maps();

    void set_runtime_config(const RuntimeConfig& config);

    // Also maintains the port-0 address entry of each VIP address (fragments and
    // malformed packets): it follows the lowest-port source-hashed VIP there.
    void upsert_vip(const VipKey& key, const VipSettings& settings);
    void remove_vip(const VipKey& key);
    const std::map<VipKey, VipSettings>& vips() const { return vips_; }
    // What flow entries of the VIP at this index carry (stickylb_flow.vip_generation),
    // for tools that write flow entries themselves (restores, benchmarks).
    std::uint16_t vip_generation(std::uint32_t vip_index) const;

    void set_backend(const BackendEntry& backend);
    // What the map holds at index (adopting pinned state); nullopt for an empty slot.
    std::optional<BackendEntry> read_backend(std::uint32_t index) const;
    void remove_backend(std::uint32_t index);

    // Writes only the slots that differ from what the map holds; returns how many.
    std::size_t write_ring(std::uint32_t vip_index, std::span<const std::uint32_t> ring);
    std::vector<std::uint32_t> read_ring(std::uint32_t vip_index) const;
    std::uint32_t ring_size() const { return options_.ring_size; }

    stickylb_global_stats global_stats() const;
    stickylb_vip_stats vip_stats(std::uint32_t vip_index) const;
    stickylb_backend_stats backend_stats(std::uint32_t backend_index) const;

    // For packet tests and benchmarks (BPF_PROG_TEST_RUN) and table dumps.
    int xdp_program_fd() const;
    int flows_map_fd() const;
    int affinity_map_fd() const;

private:
    explicit DataPlane(const LoadOptions& options);
    void adopt_vips();
    void adopt_vip_filter();
    void write_vip_filter();
    void write_vip_by_index(std::uint32_t index, const stickylb_vip_meta& meta);
    void attach_slow_path(const std::string& interface, std::uint32_t ifindex);
    void write_address_entry(const IpAddress& address, std::uint8_t protocol);
    std::string pin_path(const std::string& name) const;
    // Array map elements are 8-byte aligned in the kernel: a u32 slot every 8 bytes.
    using RingSlot = std::uint64_t;
    RingSlot* ring_of(std::uint32_t vip_index) const;

    LoadOptions options_;
    std::unique_ptr<stickylb_bpf, void (*)(stickylb_bpf*)> skeleton_;
    std::unique_ptr<neigh_bpf, void (*)(neigh_bpf*)> neigh_skeleton_;
    std::map<VipKey, VipSettings> vips_;
    std::map<std::uint32_t, std::uint16_t> generations_;  // per VIP index
    std::vector<std::uint64_t> vip_filter_words_;         // what vip_filter holds
    std::map<std::string, int> unpinned_links_;           // interface -> XDP link fd
    struct Unmap {
        std::size_t bytes;
        void operator()(RingSlot* memory) const;
    };
    std::unique_ptr<RingSlot, Unmap> ring_memory_;  // the rings map, memory-mapped
    int possible_cpus_ = 0;
};

}  // namespace stickylb
