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

#include "dataplane/maps.h"
#include "dataplane/pinned_maps.h"

struct stickylb_bpf;  // generated skeletons
struct neigh_bpf;

namespace stickylb {

class DataPlane final : public ServiceMaps {
public:
    static DataPlane load(const LoadOptions& options);
    const LoadOptions& options() const override { return options_; }
    DataPlane(DataPlane&&) noexcept;
    DataPlane& operator=(DataPlane&&) noexcept;
    ~DataPlane() override;

    // XDP on the interface plus the tc ingress slow path. automatic: native when
    // the driver supports it, generic otherwise. With a pin_dir the XDP link is
    // pinned, so the attachment outlives this process; attaching again while a
    // pinned link exists swaps the program in place (no packet sees no program).
    AttachResult attach(const std::string& interface, AttachMode requested = AttachMode::automatic);
    // Removes XDP, the tc filter and the pinned link of that interface.
    void detach(const std::string& interface);
    // Removes every pinned map of pin_dir (after detach): the next load starts empty.
    void unpin_maps();

    void set_runtime_config(const RuntimeConfig& config) override;

    void upsert_vip(const VipKey& key, const VipSettings& settings) override;
    void remove_vip(const VipKey& key) override;
    const std::map<VipKey, VipSettings>& vips() const override { return vips_; }
    // What flow entries of the VIP at this index carry (stickylb_flow.vip_generation),
    // for tools that write flow entries themselves (restores, benchmarks).
    std::uint16_t vip_generation(std::uint32_t vip_index) const;

    void set_backend(const BackendEntry& backend) override;
    std::optional<BackendEntry> read_backend(std::uint32_t index) const override;
    void remove_backend(std::uint32_t index) override;

    std::size_t write_ring(std::uint32_t vip_index, std::span<const std::uint32_t> ring) override;
    std::vector<std::uint32_t> read_ring(std::uint32_t vip_index) const override;

    stickylb_global_stats global_stats() const override;
    stickylb_vip_stats vip_stats(std::uint32_t vip_index) const override;
    stickylb_backend_stats backend_stats(std::uint32_t backend_index) const override;

    // The flow and affinity tables of this program's maps, for walks on another thread.
    PinnedMaps client_tables() const;

    // For packet tests and benchmarks (BPF_PROG_TEST_RUN) and table dumps.
    int xdp_program_fd() const;
    int flows_map_fd() const;
    int affinity_map_fd() const;
    // What this load's XDP program puts in its slow-path trailers (stickylb/abi.h).
    std::uint64_t slow_path_key() const { return slow_path_key_; }

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
    std::uint64_t slow_path_key_ = 0;
};

}  // namespace stickylb
