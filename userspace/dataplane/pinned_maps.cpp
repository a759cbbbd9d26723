// SPDX-License-Identifier: Apache-2.0
#include "dataplane/pinned_maps.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <stdexcept>
#include <utility>

#include "base/errors.h"
#include "stickylb/abi.h"

namespace stickylb {
namespace {

constexpr int kEnotsupp = 524;  // the kernel's ENOTSUPP, not in userspace errno.h

using FlowKeyBytes = std::array<std::uint8_t, sizeof(stickylb_flow_key)>;

FlowKeyBytes bytes_of(const stickylb_flow_key& key) {
    FlowKeyBytes bytes;
    std::memcpy(bytes.data(), &key, sizeof(key));
    return bytes;
}

FlowRecord record_of(const stickylb_flow_key& key, const stickylb_flow& flow) {
    FlowRecord record;
    record.client = IpAddress::from_abi(key.src, key.family);
    record.client_port = ntohs(key.sport);
    record.vip = IpAddress::from_abi(key.dst, key.family);
    record.vip_port = ntohs(key.dport);
    record.protocol = key.proto;
    record.backend_index = flow.backend_index;
    record.vip_index = flow.vip_index;
    return record;
}

stickylb_flow_key key_of(const FlowRecord& record) {
    stickylb_flow_key key{};
    key.src = record.client.to_abi();
    key.dst = record.vip.to_abi();
    key.sport = htons(record.client_port);
    key.dport = htons(record.vip_port);
    key.proto = record.protocol;
    key.family = record.client.family();
    return key;
}

std::uint64_t monotonic_coarse_ns() { return affinity_clock_ns(); }

AffinityRecord record_of(const stickylb_affinity_key& key, const stickylb_affinity& value, std::uint64_t now) {
    AffinityRecord record;
    record.vip_index = key.vip_index;
    record.client = IpAddress::from_abi(key.client, key.family);
    record.backend_index = value.backend_index;
    record.age = std::chrono::nanoseconds(now > value.last_seen_ns ? now - value.last_seen_ns : 0);
    return record;
}

// Calls visit(key, value) for every entry until it returns false: batch lookups
// where the kernel has them (5.6+), else a get_next_key walk.
template <typename Key, typename Value, typename Visit>
void for_each_entry(int fd, const std::string& what, Visit visit) {
    std::uint32_t chunk = 256;
    std::vector<Key> keys(chunk);
    std::vector<Value> values(chunk);
    alignas(8) std::uint8_t in_batch[sizeof(Key) < 8 ? 8 : sizeof(Key)] = {};
    alignas(8) std::uint8_t out_batch[sizeof(in_batch)] = {};
    bool first = true;
    LIBBPF_OPTS(bpf_map_batch_opts, options);
    for (;;) {
        std::uint32_t count = chunk;
        const int rc = bpf_map_lookup_batch(fd, first ? nullptr : in_batch, out_batch, keys.data(), values.data(),
                                            &count, &options);
        if (rc < 0 && rc != -ENOENT) {
            if (rc == -ENOSPC && chunk < (1u << 20)) {  // one hash bucket holds more than a chunk
                chunk *= 2;
                keys.resize(chunk);
                values.resize(chunk);
                continue;
            }
            if (first && (rc == -EINVAL || rc == -EOPNOTSUPP || rc == -kEnotsupp))
                break;  // no batch operations: walk the keys below
            check_libbpf(rc, "read " + what);
        }
        for (std::uint32_t i = 0; i < count; ++i)
            if (!visit(keys[i], values[i]))
                return;
        if (rc == -ENOENT)
            return;
        std::memcpy(in_batch, out_batch, sizeof(in_batch));
        first = false;
    }

    Key key{}, next{};
    const void* previous = nullptr;
    for (;;) {
        const int rc = bpf_map_get_next_key(fd, previous, &next);
        if (rc == -ENOENT)
            return;
        check_libbpf(rc, "walk " + what);
        Value value{};
        if (bpf_map_lookup_elem(fd, &next, &value) == 0 && !visit(next, value))
            return;
        key = next;
        previous = &key;
    }
}

void check_layout(int fd, const std::string& path, std::uint32_t type, std::uint32_t key_size,
                  std::uint32_t value_size) {
    bpf_map_info info{};
    std::uint32_t length = sizeof(info);
    check_libbpf(bpf_obj_get_info_by_fd(fd, &info, &length), "inspect pinned map " + path);
    if (info.type != type || info.key_size != key_size || info.value_size != value_size)
        throw std::runtime_error(path + " is not the map this stickylb expects (type " + std::to_string(info.type) +
                                 ", key " + std::to_string(info.key_size) + " bytes, value " +
                                 std::to_string(info.value_size) + " bytes; wanted type " + std::to_string(type) +
                                 ", " + std::to_string(key_size) + ", " + std::to_string(value_size) +
                                 "): pinned by another stickylb version?");
}

stickylb_affinity_key affinity_key_of(std::uint32_t vip_index, const IpAddress& client) {
    stickylb_affinity_key key{};
    key.vip_index = vip_index;
    key.family = client.family();
    key.client = client.to_abi();
    return key;
}

}  // namespace

std::uint64_t affinity_clock_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);  // bpf_ktime_get_coarse_ns()'s clock
    return static_cast<std::uint64_t>(now.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(now.tv_nsec);
}

namespace {

struct WantedMap {
    const char* name;
    int PinnedMaps::Descriptors::*fd;
    std::uint32_t type, key_size, value_size;
};

constexpr WantedMap kWanted[] = {
    {"flows", &PinnedMaps::Descriptors::flows, BPF_MAP_TYPE_LRU_HASH, sizeof(stickylb_flow_key), sizeof(stickylb_flow)},
    {"flow_cache", &PinnedMaps::Descriptors::flow_cache, BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(std::uint32_t),
     sizeof(stickylb_flow_cache_entry)},
    {"affinity", &PinnedMaps::Descriptors::affinity, BPF_MAP_TYPE_LRU_HASH, sizeof(stickylb_affinity_key),
     sizeof(stickylb_affinity)},
    {"backends", &PinnedMaps::Descriptors::backends, BPF_MAP_TYPE_ARRAY, sizeof(std::uint32_t),
     sizeof(stickylb_backend)},
    {"vips", &PinnedMaps::Descriptors::vips, BPF_MAP_TYPE_HASH, sizeof(stickylb_vip_key), sizeof(stickylb_vip_meta)},
    {"peer_flows", &PinnedMaps::Descriptors::peer_flows, BPF_MAP_TYPE_HASH, sizeof(stickylb_flow_key),
     sizeof(stickylb_peer_flow)},
};

}  // namespace

PinnedMaps PinnedMaps::open(const std::string& pin_dir) {
    PinnedMaps maps;
    maps.pin_dir_ = pin_dir;
    for (const WantedMap& map : kWanted) {
        const std::string path = pin_dir + "/" + map.name;
        const int fd = bpf_obj_get(path.c_str());
        if (fd < 0) {
            const int error = -fd;
            if (error == ENOENT || error == ENOTDIR)
                throw std::runtime_error("no stickylb maps pinned in " + pin_dir + ": is stickylbd running?" +
                                         (maps.fds_.flows >= 0 ? std::string(" (") + map.name + " is missing)" : ""));
            throw SystemError("open pinned map " + path, error);
        }
        maps.fds_.*(map.fd) = fd;
        check_layout(fd, path, map.type, map.key_size, map.value_size);
    }
    maps.possible_cpus_ = check_libbpf(libbpf_num_possible_cpus(), "count possible CPUs");
    return maps;
}

PinnedMaps PinnedMaps::adopt(const Descriptors& descriptors, const std::string& where) {
    PinnedMaps maps;
    maps.pin_dir_ = where;
    for (const WantedMap& map : kWanted) {
        const int fd = fcntl(descriptors.*(map.fd), F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            throw SystemError(std::string("duplicate the descriptor of map ") + map.name, errno);
        maps.fds_.*(map.fd) = fd;
        check_layout(fd, where + "/" + map.name, map.type, map.key_size, map.value_size);
    }
    maps.possible_cpus_ = check_libbpf(libbpf_num_possible_cpus(), "count possible CPUs");
    return maps;
}

PinnedMaps::PinnedMaps(PinnedMaps&& other) noexcept { *this = std::move(other); }

PinnedMaps& PinnedMaps::operator=(PinnedMaps&& other) noexcept {
    if (this != &other) {
        close_all();
        pin_dir_ = std::move(other.pin_dir_);
        fds_ = std::exchange(other.fds_, Descriptors{});
        possible_cpus_ = other.possible_cpus_;
    }
    return *this;
}

PinnedMaps::~PinnedMaps() { close_all(); }

void PinnedMaps::close_all() noexcept {
    for (int* fd : {&fds_.flows, &fds_.flow_cache, &fds_.affinity, &fds_.backends, &fds_.vips, &fds_.peer_flows})
        if (*fd >= 0)
            close(std::exchange(*fd, -1));
}

std::vector<FlowRecord> PinnedMaps::flows(std::size_t limit) const {
    std::vector<FlowRecord> records;
    if (limit == 0)
        return records;
    for_each_entry<stickylb_flow_key, stickylb_flow>(fds_.flows, "the flow table in " + pin_dir_,
                                                     [&](const stickylb_flow_key& key, const stickylb_flow& flow) {
                                                         records.push_back(record_of(key, flow));
                                                         return records.size() < limit;
                                                     });
    return records;
}

std::vector<AffinityRecord> PinnedMaps::affinities(std::size_t limit) const {
    std::vector<AffinityRecord> records;
    if (limit == 0)
        return records;
    const std::uint64_t now = monotonic_coarse_ns();
    for_each_entry<stickylb_affinity_key, stickylb_affinity>(
        fds_.affinity, "the affinity table in " + pin_dir_,
        [&](const stickylb_affinity_key& key, const stickylb_affinity& value) {
            records.push_back(record_of(key, value, now));
            return records.size() < limit;
        });
    return records;
}

std::size_t PinnedMaps::delete_flows(std::function<bool(const FlowRecord&)> which) {
    std::vector<stickylb_flow_key> doomed;
    for_each_entry<stickylb_flow_key, stickylb_flow>(fds_.flows, "the flow table in " + pin_dir_,
                                                     [&](const stickylb_flow_key& key, const stickylb_flow& flow) {
                                                         if (which(record_of(key, flow)))
                                                             doomed.push_back(key);
                                                         return true;
                                                     });
    // The table first, then the caches: a cache miss in between finds nothing to
    // re-cache, while the other order lets a packet copy a doomed entry back in.
    std::size_t deleted = 0;
    std::vector<FlowKeyBytes> doomed_bytes;
    doomed_bytes.reserve(doomed.size());
    for (const auto& key : doomed) {
        const int rc = bpf_map_delete_elem(fds_.flows, &key);
        if (rc == 0)
            ++deleted;
        else if (rc != -ENOENT)  // evicted or expired meanwhile: gone all the same
            check_libbpf(rc, "delete a flow from " + pin_dir_ + "/flows");
        doomed_bytes.push_back(bytes_of(key));
    }
    std::sort(doomed_bytes.begin(), doomed_bytes.end());

    // Per-CPU values are laid out 8-byte aligned, one per possible CPU.
    constexpr std::size_t stride = (sizeof(stickylb_flow_cache_entry) + 7) / 8 * 8;
    std::vector<std::uint8_t> per_cpu(stride * static_cast<std::size_t>(possible_cpus_));
    for (std::uint32_t slot = 0; slot < STICKYLB_FLOW_CACHE_SLOTS; ++slot) {
        check_libbpf(bpf_map_lookup_elem(fds_.flow_cache, &slot, per_cpu.data()),
                     "read slot " + std::to_string(slot) + " of " + pin_dir_ + "/flow_cache");
        bool changed = false;
        for (int cpu = 0; cpu < possible_cpus_; ++cpu) {
            std::uint8_t* raw = per_cpu.data() + stride * static_cast<std::size_t>(cpu);
            stickylb_flow_cache_entry entry;
            std::memcpy(&entry, raw, sizeof(entry));
            if (entry.key.family == STICKYLB_FAMILY_NONE)
                continue;  // empty slot
            // A cached flow the table may already have lost (LRU) is judged by which() too.
            if (std::binary_search(doomed_bytes.begin(), doomed_bytes.end(), bytes_of(entry.key)) ||
                which(record_of(entry.key, entry.flow))) {
                std::memset(raw, 0, sizeof(entry));
                changed = true;
            }
        }
        // Writes every CPU's copy: one the program refilled since the read above goes
        // back to what was read (a stale entry that is either doomed, now zero, or the
        // same flow: the table stays the truth and a cache miss re-reads it).
        if (changed)
            check_libbpf(bpf_map_update_elem(fds_.flow_cache, &slot, per_cpu.data(), BPF_ANY),
                         "clear slot " + std::to_string(slot) + " of " + pin_dir_ + "/flow_cache");
    }
    return deleted;
}

std::size_t PinnedMaps::delete_affinities(std::function<bool(const AffinityRecord&)> which) {
    std::vector<stickylb_affinity_key> doomed;
    const std::uint64_t now = monotonic_coarse_ns();
    for_each_entry<stickylb_affinity_key, stickylb_affinity>(
        fds_.affinity, "the affinity table in " + pin_dir_,
        [&](const stickylb_affinity_key& key, const stickylb_affinity& value) {
            if (which(record_of(key, value, now)))
                doomed.push_back(key);
            return true;
        });
    std::size_t deleted = 0;
    for (const auto& key : doomed) {
        const int rc = bpf_map_delete_elem(fds_.affinity, &key);
        if (rc == 0)
            ++deleted;
        else if (rc != -ENOENT)
            check_libbpf(rc, "delete an affinity from " + pin_dir_ + "/affinity");
    }
    return deleted;
}

AffinityWriteResult PinnedMaps::write_affinities(const std::vector<AffinityWrite>& entries, bool overwrite) {
    AffinityWriteResult result;
    const std::string where = pin_dir_ + "/affinity";
    std::vector<stickylb_affinity_key> keys;
    std::vector<stickylb_affinity> values;
    keys.reserve(entries.size());
    values.reserve(entries.size());
    for (const AffinityWrite& entry : entries) {
        keys.push_back(affinity_key_of(entry.vip_index, entry.client));
        stickylb_affinity value{};
        value.backend_index = entry.backend_index;
        value.last_seen_ns = entry.last_seen_ns;
        values.push_back(value);
    }
    const std::uint64_t flags = overwrite ? BPF_ANY : BPF_NOEXIST;
    // Batches bound the time one syscall holds the kernel; the kernel stops a
    // batch at the first failing element (an existing key with BPF_NOEXIST) and
    // says how many went before it, so that one is skipped and the rest resumed.
    constexpr std::size_t kBatch = 4096;
    LIBBPF_OPTS(bpf_map_batch_opts, options, .elem_flags = flags);
    std::size_t next = 0;
    while (next < keys.size()) {
        std::uint32_t count = static_cast<std::uint32_t>(std::min(kBatch, keys.size() - next));
        const int rc = bpf_map_update_batch(fds_.affinity, keys.data() + next, values.data() + next, &count, &options);
        if (rc == 0) {
            result.written += count;
            next += count;
            result.batched = true;
            continue;
        }
        if (!result.batched && next == 0 && (rc == -EINVAL || rc == -EOPNOTSUPP || rc == -kEnotsupp)) {
            break;  // no batch updates here (before 5.6): one by one below
        }
        result.written += count;
        next += count;
        if (rc == -EEXIST && next < keys.size()) {
            ++result.present;
            ++next;
            continue;
        }
        check_libbpf(rc, "write affinities to " + where);
    }
    for (; next < keys.size(); ++next) {
        const int rc = bpf_map_update_elem(fds_.affinity, &keys[next], &values[next], flags);
        if (rc == -EEXIST) {
            ++result.present;
            continue;
        }
        check_libbpf(rc, "write an affinity to " + where);
        ++result.written;
    }
    return result;
}

std::size_t PinnedMaps::reassign_affinities(std::function<std::optional<std::uint32_t>(const AffinityRecord&)> to) {
    std::vector<std::pair<stickylb_affinity_key, stickylb_affinity>> changes;
    const std::uint64_t now = monotonic_coarse_ns();
    for_each_entry<stickylb_affinity_key, stickylb_affinity>(
        fds_.affinity, "the affinity table in " + pin_dir_,
        [&](const stickylb_affinity_key& key, const stickylb_affinity& value) {
            if (auto target = to(record_of(key, value, now)); target && *target != value.backend_index) {
                stickylb_affinity changed = value;
                changed.backend_index = *target;
                changes.emplace_back(key, changed);
            }
            return true;
        });
    std::size_t changed = 0;
    for (const auto& [key, value] : changes) {
        // BPF_EXIST: an entry evicted or expired meanwhile is not brought back.
        const int rc = value.backend_index == STICKYLB_NO_BACKEND
                           ? bpf_map_delete_elem(fds_.affinity, &key)
                           : bpf_map_update_elem(fds_.affinity, &key, &value, BPF_EXIST);
        if (rc == 0)
            ++changed;
        else if (rc != -ENOENT)
            check_libbpf(rc, "move an affinity in " + pin_dir_ + "/affinity");
    }
    return changed;
}

std::size_t PinnedMaps::replace_peer_flows(const std::vector<FlowRecord>& flows) {
    const std::string where = pin_dir_ + "/peer_flows";
    std::map<FlowKeyBytes, stickylb_peer_flow> wanted;
    for (const FlowRecord& flow : flows) {
        stickylb_peer_flow value{};
        value.backend_index = flow.backend_index;
        wanted[bytes_of(key_of(flow))] = value;
    }
    std::vector<stickylb_flow_key> doomed;
    for_each_entry<stickylb_flow_key, stickylb_peer_flow>(
        fds_.peer_flows, where, [&](const stickylb_flow_key& key, const stickylb_peer_flow& value) {
            const auto found = wanted.find(bytes_of(key));
            if (found == wanted.end())
                doomed.push_back(key);
            else if (found->second.backend_index == value.backend_index)
                wanted.erase(found);  // already there
            return true;
        });
    for (const auto& key : doomed) {
        const int rc = bpf_map_delete_elem(fds_.peer_flows, &key);
        if (rc != 0 && rc != -ENOENT)
            check_libbpf(rc, "delete a peer flow from " + where);
    }
    for (const auto& [bytes, value] : wanted) {
        stickylb_flow_key key{};
        std::memcpy(&key, bytes.data(), sizeof(key));
        check_libbpf(bpf_map_update_elem(fds_.peer_flows, &key, &value, BPF_ANY), "write a peer flow to " + where);
    }
    return wanted.size();
}

std::optional<IpAddress> PinnedMaps::backend_address(std::uint32_t backend_index) const {
    stickylb_backend backend{};
    if (backend_index == STICKYLB_NO_BACKEND || bpf_map_lookup_elem(fds_.backends, &backend_index, &backend) != 0)
        return std::nullopt;
    if (backend.index != backend_index || backend.family == STICKYLB_FAMILY_NONE)
        return std::nullopt;
    return IpAddress::from_abi(backend.addr, backend.family);
}

}  // namespace stickylb
