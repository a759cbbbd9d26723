// SPDX-License-Identifier: Apache-2.0
#include "dataplane/dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "base/protocol.h"
#include "base/errors.h"
#include "dataplane/maglev.h"
#include "neigh.skel.h"
#include "stickylb/flow_hash.h"
#include "stickylb.skel.h"

namespace stickylb {
namespace {

std::string map_shape(std::uint32_t entries, std::uint32_t key_size, std::uint32_t value_size) {
    return std::to_string(entries) + " entries, " + std::to_string(key_size) + "-byte keys, " +
           std::to_string(value_size) + "-byte values";
}

// libbpf refuses a pinned map unlike the program's with a bare EINVAL. Say which
// map differs and how, and how to start over, before it gets there.
void check_pinned_map_fits(const bpf_map* map, const std::string& path) {
    const int fd = bpf_obj_get(path.c_str());
    if (fd < 0)
        return;  // not pinned yet: it will be created
    bpf_map_info info{};
    std::uint32_t length = sizeof(info);
    const int rc = bpf_obj_get_info_by_fd(fd, &info, &length);
    close(fd);
    check_libbpf(rc, "read the pinned map " + path);
    if (info.type == bpf_map__type(map) && info.max_entries == bpf_map__max_entries(map) &&
        info.key_size == bpf_map__key_size(map) && info.value_size == bpf_map__value_size(map))
        return;
    throw SystemError("pinned map " + path + " has " + map_shape(info.max_entries, info.key_size, info.value_size) +
                          ", this configuration needs " +
                          map_shape(bpf_map__max_entries(map), bpf_map__key_size(map), bpf_map__value_size(map)) +
                          " (a map size changed in the config, or stickylb was upgraded): `stickylbd --detach` "
                          "removes the pinned maps, then start again (flows re-pick their backend; with "
                          "memcached_servers, affinities come back from the last snapshot)",
                      EINVAL);
}

// tc handle and priority of the slow-path filter: ours to find and replace.
constexpr std::uint32_t kTcHandle = 0x5b1;
constexpr std::uint32_t kTcPriority = 1;

std::uint32_t interface_index(const std::string& interface) {
    const unsigned index = if_nametoindex(interface.c_str());
    if (index == 0)
        throw std::invalid_argument("no network interface named '" + interface + "'");
    return index;
}

stickylb_vip_key to_abi(const VipKey& key) {
    stickylb_vip_key abi{};
    abi.addr = key.address.to_abi();
    abi.port = htons(key.port);
    abi.proto = key.protocol;
    abi.family = key.address.family();
    return abi;
}

stickylb_vip_meta to_abi(const VipSettings& settings, std::uint16_t generation) {
    stickylb_vip_meta meta{};
    meta.vip_index = settings.index;
    meta.generation = generation;
    meta.flags = (settings.persistent ? STICKYLB_VIP_F_PERSISTENT : 0u) |
                 (settings.hash_source ? STICKYLB_VIP_F_HASH_SOURCE : 0u);
    meta.affinity_timeout_s = settings.affinity_timeout_s;
    meta.client_prefix_v4 = settings.client_prefix_v4;
    meta.client_prefix_v6 = settings.client_prefix_v6;
    meta.forwarding_mode = static_cast<std::uint8_t>(settings.forwarding);
    return meta;
}

VipSettings from_abi(const stickylb_vip_meta& meta) {
    VipSettings settings;
    settings.index = meta.vip_index;
    settings.persistent = meta.flags & STICKYLB_VIP_F_PERSISTENT;
    settings.hash_source = meta.flags & STICKYLB_VIP_F_HASH_SOURCE;
    settings.affinity_timeout_s = meta.affinity_timeout_s;
    settings.client_prefix_v4 = meta.client_prefix_v4;
    settings.client_prefix_v6 = meta.client_prefix_v6;
    const auto mode = forwarding_mode_from_abi(meta.forwarding_mode);
    // Written by a program of another version, or not by stickylbd: adopting it would
    // forward in a mode nobody configured.
    if (!mode)
        throw std::runtime_error("VIP index " + std::to_string(meta.vip_index) + " has forwarding mode " +
                                 std::to_string(meta.forwarding_mode) + ", which this stickylbd does not know");
    settings.forwarding = *mode;
    return settings;
}

// Per-CPU values are arrays of u64 counters by contract (stickylb/stats.h).
template <typename Counters>
Counters sum_per_cpu(int map_fd, std::uint32_t key, int cpus, const std::string& what) {
    static_assert(sizeof(Counters) % sizeof(std::uint64_t) == 0);
    constexpr std::size_t fields = sizeof(Counters) / sizeof(std::uint64_t);
    std::vector<std::uint64_t> per_cpu(fields * static_cast<std::size_t>(cpus));
    check_libbpf(bpf_map_lookup_elem(map_fd, &key, per_cpu.data()), "read " + what);
    std::uint64_t total[fields] = {};
    for (int cpu = 0; cpu < cpus; ++cpu)
        for (std::size_t field = 0; field < fields; ++field)
            total[field] += per_cpu[cpu * fields + field];
    Counters result;
    std::memcpy(&result, total, sizeof(result));
    return result;
}

// libbpf's own messages go to stderr, less one: creating the clsact qdisc that
// already exists is expected on every attach after the first.
int print_libbpf_message(libbpf_print_level level, const char* format, va_list arguments) {
    if (level == LIBBPF_DEBUG)
        return 0;
    char message[1024];
    std::vsnprintf(message, sizeof(message), format, arguments);
    if (std::strstr(message, "Exclusivity flag on") != nullptr)
        return 0;
    return std::fprintf(stderr, "libbpf: %s", message);
}

void destroy_skeleton(stickylb_bpf* skeleton) { stickylb_bpf__destroy(skeleton); }
void destroy_neigh(neigh_bpf* skeleton) { neigh_bpf__destroy(skeleton); }

// Never 0: the tc program takes 0 for a key never set.
std::uint64_t random_slow_path_key() {
    std::uint64_t key = 0;
    while (key == 0)
        if (getrandom(&key, sizeof(key), 0) != static_cast<ssize_t>(sizeof(key)))
            throw SystemError("getrandom for the slow path's key", errno);
    return key;
}

}  // namespace

std::string to_string(AttachMode mode) {
    switch (mode) {
    case AttachMode::native: return "native";
    case AttachMode::generic: return "generic";
    case AttachMode::automatic: return "automatic";
    }
    return "unknown";
}

std::string VipKey::to_string() const {
    const std::string host = address.is_v4() ? address.to_string() : "[" + address.to_string() + "]";
    return protocol_name(protocol) + " " + host + ":" + std::to_string(port);
}

DataPlane::DataPlane(const LoadOptions& options)
    : options_(options),
      skeleton_(nullptr, destroy_skeleton),
      neigh_skeleton_(nullptr, destroy_neigh),
      ring_memory_(nullptr, Unmap{0}) {}
DataPlane::DataPlane(DataPlane&&) noexcept = default;
DataPlane& DataPlane::operator=(DataPlane&&) noexcept = default;

void DataPlane::Unmap::operator()(RingSlot* memory) const { munmap(memory, bytes); }

DataPlane::~DataPlane() {
    for (auto& [interface, fd] : unpinned_links_)
        close(fd);  // detaches: without a pin_dir the attachment lives as long as the handle
}

std::string DataPlane::pin_path(const std::string& name) const { return options_.pin_dir + "/" + name; }

DataPlane DataPlane::load(const LoadOptions& options) {
    if (!is_prime(options.ring_size))
        throw std::invalid_argument("ring size " + std::to_string(options.ring_size) + " is not prime");
    if (options.max_vips == 0 || options.ring_size > UINT32_MAX / options.max_vips)
        throw std::invalid_argument("max_vips x ring_size does not fit the rings map");
    if (options.max_vips > 65536)
        throw std::invalid_argument("max_vips is at most 65536 (flow entries keep a 16-bit VIP index)");
    if (options.max_backends < 2)
        throw std::invalid_argument("max_backends must be at least 2 (index 0 is reserved)");

    static std::once_flag print_installed;
    std::call_once(print_installed, [] { libbpf_set_print(print_libbpf_message); });

    DataPlane plane(options);
    plane.skeleton_.reset(stickylb_bpf__open());
    if (!plane.skeleton_)
        throw SystemError("open the stickylb BPF object", errno);
    auto* skeleton = plane.skeleton_.get();
    skeleton->rodata->ring_size = options.ring_size;
    skeleton->rodata->max_vips = options.max_vips;
    skeleton->rodata->slow_path_key = plane.slow_path_key_ = random_slow_path_key();

    const struct {
        bpf_map* map;
        std::uint32_t entries;
    } sizes[] = {
        {skeleton->maps.rings, options.max_vips * options.ring_size}, {skeleton->maps.vip_stats, options.max_vips},
        {skeleton->maps.vip_meta_by_index, options.max_vips},         {skeleton->maps.backends, options.max_backends},
        {skeleton->maps.backend_stats, options.max_backends},         {skeleton->maps.flows, options.flow_entries},
        {skeleton->maps.affinity, options.affinity_entries},
    };
    for (const auto& [map, entries] : sizes)
        check_libbpf(bpf_map__set_max_entries(map, entries), std::string("size map ") + bpf_map__name(map));

    if (!options.pin_dir.empty()) {
        std::filesystem::create_directories(options.pin_dir);
        bpf_map* map;
        bpf_object__for_each_map(map, skeleton->obj) {
            if (bpf_map__is_internal(map))
                continue;  // .rodata belongs to this program instance
            const std::string path = plane.pin_path(bpf_map__name(map));
            check_pinned_map_fits(map, path);
            check_libbpf(bpf_map__set_pin_path(map, path.c_str()),
                         std::string("set pin path of map ") + bpf_map__name(map));
        }
    }
    check_libbpf(stickylb_bpf__load(skeleton), "load the XDP program (pinned maps in " +
                                                   (options.pin_dir.empty() ? std::string("-") : options.pin_dir) +
                                                   " must match the sizes asked for)");

    plane.possible_cpus_ = check_libbpf(libbpf_num_possible_cpus(), "count possible CPUs");
    const std::size_t ring_bytes = std::size_t{options.max_vips} * options.ring_size * sizeof(RingSlot);
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t mapped_bytes = (ring_bytes + page - 1) / page * page;
    void* memory =
        mmap(nullptr, mapped_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skeleton->maps.rings), 0);
    if (memory == MAP_FAILED)
        throw SystemError("mmap the rings map", errno);
    plane.ring_memory_ = std::unique_ptr<RingSlot, Unmap>(static_cast<RingSlot*>(memory), Unmap{mapped_bytes});
    plane.adopt_vips();
    plane.adopt_vip_filter();
    return plane;
}

// Pinned maps may hold VIPs written by an earlier process: take them as ours.
void DataPlane::adopt_vips() {
    const int fd = bpf_map__fd(skeleton_->maps.vips);
    stickylb_vip_key key{}, next{};
    const void* previous = nullptr;
    while (bpf_map_get_next_key(fd, previous, &next) == 0) {
        stickylb_vip_meta meta{};
        if (bpf_map_lookup_elem(fd, &next, &meta) == 0 && !(meta.flags & STICKYLB_VIP_F_ADDRESS_ENTRY)) {
            const VipKey vip{IpAddress::from_abi(next.addr, next.family), ntohs(next.port), next.proto};
            vips_[vip] = from_abi(meta);
            generations_[meta.vip_index] = meta.generation;
        }
        key = next;
        previous = &key;
    }
}

void DataPlane::adopt_vip_filter() {
    vip_filter_words_.assign(STICKYLB_VIP_FILTER_WORDS, 0);
    const int fd = bpf_map__fd(skeleton_->maps.vip_filter);
    for (std::uint32_t word = 0; word < STICKYLB_VIP_FILTER_WORDS; ++word)
        check_libbpf(bpf_map_lookup_elem(fd, &word, &vip_filter_words_[word]), "read the VIP filter");
}

// One bit per VIP; only words that change are written. Bits are added before
// the VIP entry exists and cleared after it is gone, so no VIP packet is ever
// turned away by the filter.
void DataPlane::write_vip_filter() {
    std::vector<std::uint64_t> wanted(STICKYLB_VIP_FILTER_WORDS, 0);
    for (const auto& [key, settings] : vips_) {
        const stickylb_addr address = key.address.to_abi();
        const std::uint32_t bit = stickylb_vip_filter_bit(address.v6, htons(key.port), key.protocol);
        wanted[bit / 64] |= 1ull << (bit % 64);
    }
    const int fd = bpf_map__fd(skeleton_->maps.vip_filter);
    for (std::uint32_t word = 0; word < STICKYLB_VIP_FILTER_WORDS; ++word) {
        if (wanted[word] == vip_filter_words_[word])
            continue;
        check_libbpf(bpf_map_update_elem(fd, &word, &wanted[word], BPF_ANY), "write the VIP filter");
        vip_filter_words_[word] = wanted[word];
    }
}

void DataPlane::write_vip_by_index(std::uint32_t index, const stickylb_vip_meta& meta) {
    check_libbpf(bpf_map_update_elem(bpf_map__fd(skeleton_->maps.vip_meta_by_index), &index, &meta, BPF_ANY),
                 "write settings of VIP index " + std::to_string(index));
}

AttachResult DataPlane::attach(const std::string& interface, AttachMode requested) {
    const std::uint32_t ifindex = interface_index(interface);
    const int program_fd = xdp_program_fd();
    AttachResult result{AttachMode::native, false};
    const std::string link_pin = options_.pin_dir.empty() ? "" : pin_path("link_xdp_" + interface);

    if (!link_pin.empty() && std::filesystem::exists(link_pin)) {
        bpf_link* link = bpf_link__open(link_pin.c_str());
        if (link == nullptr)
            throw SystemError("open pinned XDP link " + link_pin, errno);
        const int rc = bpf_link__update_program(link, skeleton_->progs.stickylb_xdp);
        bpf_link__disconnect(link);  // the pin keeps the attachment; this handle goes
        bpf_link__destroy(link);
        check_libbpf(rc, "replace the XDP program on " + interface);
        bpf_xdp_query_opts query{};
        query.sz = sizeof(query);
        check_libbpf(bpf_xdp_query(static_cast<int>(ifindex), 0, &query), "query XDP mode of " + interface);
        result = {query.attach_mode == XDP_ATTACHED_SKB ? AttachMode::generic : AttachMode::native, true};
    } else {
        int link_fd = -1;
        int native_error = 0;
        if (requested != AttachMode::generic) {
            LIBBPF_OPTS(bpf_link_create_opts, native_options, .flags = XDP_FLAGS_DRV_MODE);
            link_fd = bpf_link_create(program_fd, static_cast<int>(ifindex), BPF_XDP, &native_options);
            native_error = link_fd < 0 ? -link_fd : 0;
            if (link_fd < 0 && (requested == AttachMode::native || native_error == EBUSY || native_error == EEXIST))
                check_libbpf(link_fd, "attach XDP (native) to " + interface +
                                          (native_error == EBUSY ? " (another XDP program is attached)" : ""));
        }
        if (link_fd < 0) {
            LIBBPF_OPTS(bpf_link_create_opts, generic_options, .flags = XDP_FLAGS_SKB_MODE);
            link_fd = check_libbpf(bpf_link_create(program_fd, static_cast<int>(ifindex), BPF_XDP, &generic_options),
                                   "attach XDP (generic) to " + interface);
            result.mode = AttachMode::generic;
        }
        if (!link_pin.empty()) {
            const int rc = bpf_obj_pin(link_fd, link_pin.c_str());
            close(link_fd);
            check_libbpf(rc, "pin XDP link at " + link_pin);
        } else {
            unpinned_links_[interface] = link_fd;
        }
    }
    attach_slow_path(interface, ifindex);
    return result;
}

void DataPlane::attach_slow_path(const std::string& interface, std::uint32_t ifindex) {
    if (!neigh_skeleton_) {
        neigh_skeleton_.reset(neigh_bpf__open());
        if (!neigh_skeleton_)
            throw SystemError("open the tc slow-path program", errno);
        neigh_skeleton_->rodata->slow_path_key = slow_path_key_;
        check_libbpf(neigh_bpf__load(neigh_skeleton_.get()), "load the tc slow-path program");
    }
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = BPF_TC_INGRESS);
    const int rc = bpf_tc_hook_create(&hook);
    if (rc < 0 && rc != -EEXIST)
        check_libbpf(rc, "create clsact qdisc on " + interface);
    LIBBPF_OPTS(bpf_tc_opts, filter, .prog_fd = bpf_program__fd(neigh_skeleton_->progs.stickylb_neigh),
                .flags = BPF_TC_F_REPLACE, .handle = kTcHandle, .priority = kTcPriority);
    check_libbpf(bpf_tc_attach(&hook, &filter), "attach tc slow path to " + interface);
}

void DataPlane::detach(const std::string& interface) {
    const std::uint32_t ifindex = interface_index(interface);
    if (auto link = unpinned_links_.find(interface); link != unpinned_links_.end()) {
        close(link->second);
        unpinned_links_.erase(link);
    }
    if (!options_.pin_dir.empty()) {
        const std::string link_pin = pin_path("link_xdp_" + interface);
        if (std::filesystem::exists(link_pin)) {
            bpf_link* link = bpf_link__open(link_pin.c_str());
            if (link == nullptr)
                throw SystemError("open pinned XDP link " + link_pin, errno);
            const int rc = bpf_link__detach(link);
            bpf_link__destroy(link);
            check_libbpf(rc, "detach XDP from " + interface);
            std::filesystem::remove(link_pin);
        }
    }
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, filter, .handle = kTcHandle, .priority = kTcPriority);
    const int rc = bpf_tc_detach(&hook, &filter);
    if (rc < 0 && rc != -ENOENT && rc != -EINVAL)
        check_libbpf(rc, "detach tc slow path from " + interface);
}

void DataPlane::unpin_maps() {
    bpf_map* map;
    bpf_object__for_each_map(map, skeleton_->obj) {
        if (bpf_map__is_pinned(map))
            check_libbpf(bpf_map__unpin(map, nullptr), std::string("unpin map ") + bpf_map__name(map));
    }
}

void DataPlane::set_runtime_config(const RuntimeConfig& config) {
    if (!config.tunnel_source_v4.is_v4() || config.tunnel_source_v6.is_v4())
        throw std::invalid_argument("tunnel sources must be one IPv4 and one IPv6 address");
    stickylb_config abi{};
    abi.hash_seed = config.hash_seed;
    abi.new_flow_limit = config.new_flow_limit;
    abi.tunnel_source_v4 = config.tunnel_source_v4.to_abi();
    abi.tunnel_source_v6 = config.tunnel_source_v6.to_abi();
    const std::uint32_t zero = 0;
    check_libbpf(bpf_map_update_elem(bpf_map__fd(skeleton_->maps.runtime_config), &zero, &abi, BPF_ANY),
                 "write runtime config");
}

void DataPlane::upsert_vip(const VipKey& key, const VipSettings& settings) {
    const std::string name = "VIP " + key.to_string();
    if (key.address.family() == STICKYLB_FAMILY_NONE)
        throw std::invalid_argument(name + ": no address");
    if (key.protocol != IPPROTO_TCP && key.protocol != IPPROTO_UDP)
        throw std::invalid_argument(name + ": protocol must be tcp or udp");
    if (key.port == 0)
        throw std::invalid_argument(name + ": port 0 is not a service port");
    if (settings.index >= options_.max_vips)
        throw std::invalid_argument(name + ": index " + std::to_string(settings.index) + " >= max_vips " +
                                    std::to_string(options_.max_vips));
    if (settings.client_prefix_v4 > 32 || settings.client_prefix_v6 > 128)
        throw std::invalid_argument(name + ": client prefix length out of range");
    for (const auto& [other_key, other] : vips_)
        if (other.index == settings.index && other_key != key)
            throw std::invalid_argument(name + ": index " + std::to_string(settings.index) + " already used by VIP " +
                                        other_key.to_string());
    // Flows recorded for a VIP stay valid while it keeps its index; an index given
    // to another VIP gets a new generation, so the old VIP's flows stop matching.
    const auto existing = vips_.find(key);
    const std::optional<std::uint32_t> previous_index =
        existing == vips_.end() ? std::nullopt : std::optional(existing->second.index);
    const bool same_index = previous_index == settings.index;
    vips_[key] = settings;
    write_vip_filter();
    if (previous_index && !same_index)
        write_vip_by_index(*previous_index, stickylb_vip_meta{});
    const std::uint16_t generation = same_index ? generations_[settings.index] : ++generations_[settings.index];
    auto meta = to_abi(settings, generation);
    meta.flags |= STICKYLB_VIP_F_ACTIVE;
    write_vip_by_index(settings.index, meta);
    const auto abi_key = to_abi(key);
    check_libbpf(bpf_map_update_elem(bpf_map__fd(skeleton_->maps.vips), &abi_key, &meta, BPF_ANY), "write " + name);
    write_address_entry(key.address, key.protocol);
}

std::uint16_t DataPlane::vip_generation(std::uint32_t vip_index) const {
    const auto found = generations_.find(vip_index);
    return found == generations_.end() ? 0 : found->second;
}

void DataPlane::remove_vip(const VipKey& key) {
    if (const auto existing = vips_.find(key); existing != vips_.end())
        write_vip_by_index(existing->second.index, stickylb_vip_meta{});  // its flows stop first
    const auto abi_key = to_abi(key);
    const int rc = bpf_map_delete_elem(bpf_map__fd(skeleton_->maps.vips), &abi_key);
    if (rc < 0 && rc != -ENOENT)
        check_libbpf(rc, "remove VIP " + key.to_string());
    vips_.erase(key);
    write_address_entry(key.address, key.protocol);
    write_vip_filter();
}

void DataPlane::write_address_entry(const IpAddress& address, std::uint8_t protocol) {
    // The lowest-port source-hashed VIP at this address (fragments can follow it),
    // else the lowest-port VIP (its fragments are dropped and counted).
    const std::pair<const VipKey, VipSettings>* chosen = nullptr;
    for (const auto& entry : vips_) {
        if (entry.first.address != address || entry.first.protocol != protocol)
            continue;
        const bool by_source = entry.second.persistent || entry.second.hash_source;
        const bool chosen_by_source = chosen && (chosen->second.persistent || chosen->second.hash_source);
        if (!chosen || (by_source && !chosen_by_source))
            chosen = &entry;
    }
    const auto abi_key = to_abi(VipKey{address, 0, protocol});
    const int fd = bpf_map__fd(skeleton_->maps.vips);
    const std::string what = "address entry of " + protocol_name(protocol) + " " + address.to_string();
    if (chosen == nullptr) {
        const int rc = bpf_map_delete_elem(fd, &abi_key);
        if (rc < 0 && rc != -ENOENT)
            check_libbpf(rc, "remove " + what);
        return;
    }
    auto meta = to_abi(chosen->second, generations_[chosen->second.index]);
    meta.flags |= STICKYLB_VIP_F_ADDRESS_ENTRY;
    check_libbpf(bpf_map_update_elem(fd, &abi_key, &meta, BPF_ANY), "write " + what);
}

void DataPlane::set_backend(const BackendEntry& backend) {
    const std::string name = "backend " + std::to_string(backend.index) + " (" + backend.address.to_string() + ")";
    if (backend.index == STICKYLB_NO_BACKEND || backend.index >= options_.max_backends)
        throw std::invalid_argument(name + ": index must be in [1, " + std::to_string(options_.max_backends) + ")");
    if (backend.address.family() == STICKYLB_FAMILY_NONE)
        throw std::invalid_argument(name + ": no address");
    stickylb_backend abi{};
    abi.addr = backend.address.to_abi();
    abi.family = backend.address.family();
    abi.index = backend.index;
    abi.state = static_cast<std::uint8_t>(backend.state);
    abi.egress_ifindex = backend.egress_ifindex;
    std::copy(backend.egress_mac.bytes().begin(), backend.egress_mac.bytes().end(), abi.egress_mac);
    if (backend.nexthop_mac) {
        std::copy(backend.nexthop_mac->bytes().begin(), backend.nexthop_mac->bytes().end(), abi.nexthop_mac);
        abi.flags |= STICKYLB_BACKEND_F_NEXTHOP_KNOWN;
    }
    check_libbpf(bpf_map_update_elem(bpf_map__fd(skeleton_->maps.backends), &backend.index, &abi, BPF_ANY),
                 "write " + name);
}

std::optional<BackendEntry> DataPlane::read_backend(std::uint32_t index) const {
    stickylb_backend abi{};
    check_libbpf(bpf_map_lookup_elem(bpf_map__fd(skeleton_->maps.backends), &index, &abi),
                 "read backend " + std::to_string(index));
    if (abi.index != index || abi.family == STICKYLB_FAMILY_NONE)
        return std::nullopt;
    BackendEntry entry;
    entry.index = index;
    entry.address = IpAddress::from_abi(abi.addr, abi.family);
    entry.state = static_cast<BackendState>(abi.state);
    if (abi.flags & STICKYLB_BACKEND_F_NEXTHOP_KNOWN) {
        std::array<std::uint8_t, 6> mac;
        std::copy(std::begin(abi.nexthop_mac), std::end(abi.nexthop_mac), mac.begin());
        entry.nexthop_mac = MacAddress(mac);
    }
    std::array<std::uint8_t, 6> egress;
    std::copy(std::begin(abi.egress_mac), std::end(abi.egress_mac), egress.begin());
    entry.egress_mac = MacAddress(egress);
    entry.egress_ifindex = abi.egress_ifindex;
    return entry;
}

void DataPlane::remove_backend(std::uint32_t index) {
    const stickylb_backend empty{};
    check_libbpf(bpf_map_update_elem(bpf_map__fd(skeleton_->maps.backends), &index, &empty, BPF_ANY),
                 "remove backend " + std::to_string(index));
}

DataPlane::RingSlot* DataPlane::ring_of(std::uint32_t vip_index) const {
    if (vip_index >= options_.max_vips)
        throw std::invalid_argument("VIP index " + std::to_string(vip_index) + " >= max_vips");
    return ring_memory_.get() + std::size_t{vip_index} * options_.ring_size;
}

std::size_t DataPlane::write_ring(std::uint32_t vip_index, std::span<const std::uint32_t> ring) {
    if (ring.size() != options_.ring_size)
        throw std::invalid_argument("ring for VIP index " + std::to_string(vip_index) + " has " +
                                    std::to_string(ring.size()) + " slots, the data plane " +
                                    std::to_string(options_.ring_size));
    RingSlot* slots = ring_of(vip_index);
    std::size_t written = 0;
    for (std::size_t slot = 0; slot < ring.size(); ++slot) {
        if (slots[slot] != ring[slot]) {
            // One aligned store: the XDP program sees the old or the new backend.
            __atomic_store_n(&slots[slot], RingSlot{ring[slot]}, __ATOMIC_RELAXED);
            ++written;
        }
    }
    return written;
}

std::vector<std::uint32_t> DataPlane::read_ring(std::uint32_t vip_index) const {
    const RingSlot* slots = ring_of(vip_index);
    return std::vector<std::uint32_t>(slots, slots + options_.ring_size);
}

stickylb_global_stats DataPlane::global_stats() const {
    return sum_per_cpu<stickylb_global_stats>(bpf_map__fd(skeleton_->maps.global_stats), 0, possible_cpus_,
                                              "global counters");
}

stickylb_vip_stats DataPlane::vip_stats(std::uint32_t vip_index) const {
    return sum_per_cpu<stickylb_vip_stats>(bpf_map__fd(skeleton_->maps.vip_stats), vip_index, possible_cpus_,
                                           "counters of VIP index " + std::to_string(vip_index));
}

stickylb_backend_stats DataPlane::backend_stats(std::uint32_t backend_index) const {
    return sum_per_cpu<stickylb_backend_stats>(bpf_map__fd(skeleton_->maps.backend_stats), backend_index,
                                               possible_cpus_, "counters of backend " + std::to_string(backend_index));
}

int DataPlane::xdp_program_fd() const { return bpf_program__fd(skeleton_->progs.stickylb_xdp); }
PinnedMaps DataPlane::client_tables() const {
    const auto& maps = skeleton_->maps;
    return PinnedMaps::adopt({bpf_map__fd(maps.flows), bpf_map__fd(maps.flow_cache), bpf_map__fd(maps.affinity),
                              bpf_map__fd(maps.backends), bpf_map__fd(maps.vips), bpf_map__fd(maps.peer_flows)},
                             options_.pin_dir.empty() ? std::string("the loaded program's maps") : options_.pin_dir);
}

int DataPlane::flows_map_fd() const { return bpf_map__fd(skeleton_->maps.flows); }
int DataPlane::affinity_map_fd() const { return bpf_map__fd(skeleton_->maps.affinity); }

}  // namespace stickylb
