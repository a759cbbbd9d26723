// SPDX-License-Identifier: Apache-2.0
// Kernel memory of the data plane, as a markdown section on stdout (progress on
// stderr): the XDP program and its maps are loaded at their default sizes (not
// attached), and every map the program uses is read back from the kernel: type, key
// and value sizes, entries, and the kernel's own figure for its memory (the memlock
// line of the map's fdinfo, which `bpftool map show` prints as bytes_memlock; on
// kernels >= 6.4 it is what the map really allocated). Bytes per flow-table and per
// affinity-table entry are that figure divided by the entries: key + value plus the
// hash table's per-element overhead (element header, LRU node, alignment).
// The loads are repeated and must agree (the figure is a median all the same).
//
//   memory_bench [--quick] [--repeats N]
// Needs root (loading BPF programs and maps).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "stickylb/abi.h"

namespace stickylb {
namespace {

struct MapFigures {
    std::string name;
    std::uint32_t type = 0;
    std::uint32_t key_size = 0, value_size = 0, max_entries = 0, flags = 0;
    std::uint64_t memlock = 0;
    bool operator==(const MapFigures&) const = default;
};

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0)
            close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

std::uint64_t memlock_of(int fd, const std::string& map) {
    std::ifstream fdinfo("/proc/self/fdinfo/" + std::to_string(fd));
    std::string line;
    while (std::getline(fdinfo, line))
        if (line.rfind("memlock:", 0) == 0)
            return std::stoull(line.substr(8));
    throw std::runtime_error("no memlock line in the fdinfo of map " + map);
}

std::string type_name(std::uint32_t type) {
    const char* name = libbpf_bpf_map_type_str(static_cast<bpf_map_type>(type));
    return name ? name : "type " + std::to_string(type);
}

// Every map the XDP program uses, as the kernel reports it.
std::vector<MapFigures> load_and_measure() {
    DataPlane plane = DataPlane::load(LoadOptions{});  // defaults, nothing pinned
    bpf_prog_info program{};
    std::uint32_t length = sizeof program;
    if (bpf_obj_get_info_by_fd(plane.xdp_program_fd(), &program, &length) != 0)
        throw std::runtime_error("reading the XDP program's info failed");
    std::vector<std::uint32_t> ids(program.nr_map_ids);
    program = bpf_prog_info{};
    program.nr_map_ids = static_cast<std::uint32_t>(ids.size());
    program.map_ids = reinterpret_cast<std::uint64_t>(ids.data());
    length = sizeof program;
    if (bpf_obj_get_info_by_fd(plane.xdp_program_fd(), &program, &length) != 0)
        throw std::runtime_error("reading the XDP program's map ids failed");

    std::vector<MapFigures> maps;
    for (const std::uint32_t id : ids) {
        const Fd fd(bpf_map_get_fd_by_id(id));
        if (fd.get() < 0)
            throw std::runtime_error("opening map id " + std::to_string(id) + " failed");
        bpf_map_info info{};
        std::uint32_t info_length = sizeof info;
        if (bpf_obj_get_info_by_fd(fd.get(), &info, &info_length) != 0)
            throw std::runtime_error("reading the info of map id " + std::to_string(id) + " failed");
        maps.push_back({.name = info.name,
                        .type = info.type,
                        .key_size = info.key_size,
                        .value_size = info.value_size,
                        .max_entries = info.max_entries,
                        .flags = info.map_flags,
                        .memlock = memlock_of(fd.get(), info.name)});
    }
    std::ranges::sort(maps, [](const MapFigures& a, const MapFigures& b) { return a.memlock > b.memlock; });
    return maps;
}

std::string thousands(std::uint64_t value) {
    std::string digits = std::to_string(value);
    for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3)
        digits.insert(static_cast<std::size_t>(at), ",");
    return digits;
}

std::string mib(std::uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return text;
}

const MapFigures& find(const std::vector<MapFigures>& maps, const std::string& name) {
    for (const MapFigures& map : maps)
        if (map.name == name)
            return map;
    throw std::runtime_error("the XDP program uses no map named '" + name + "'");
}

void print_report(const std::vector<MapFigures>& maps, int loads) {
    const int cpus = libbpf_num_possible_cpus();
    utsname system{};
    uname(&system);
    std::cout << "## Memory: memory_bench\n\n"
              << "The data plane loaded at its default sizes (" << thousands(STICKYLB_DEFAULT_FLOW_ENTRIES)
              << " flows, " << thousands(STICKYLB_DEFAULT_AFFINITY_ENTRIES) << " affinities, "
              << STICKYLB_DEFAULT_MAX_VIPS << " VIPs x " << thousands(STICKYLB_DEFAULT_RING_SIZE) << "-slot rings, "
              << thousands(STICKYLB_DEFAULT_MAX_BACKENDS) << " backends), kernel " << system.release << ", " << cpus
              << " possible CPUs (per-CPU maps scale with them). Kernel memory is the map's memlock figure\n"
              << "(`bpftool map show`: bytes_memlock); loads that agreed: " << loads
              << ". Map names are cut at 15 characters by the kernel.\n\n";

    std::cout << "| table | key + value bytes | kernel bytes per entry | entries | kernel MiB |\n"
              << "|---|---:|---:|---:|---:|\n";
    for (const char* name : {"flows", "affinity"}) {
        const MapFigures& map = find(maps, name);
        std::cout << "| " << name << " | " << map.key_size << " + " << map.value_size << " = "
                  << map.key_size + map.value_size << " | " << map.memlock / map.max_entries << " | "
                  << thousands(map.max_entries) << " | " << mib(map.memlock) << " |\n";
    }

    std::uint64_t total = 0;
    std::cout << "\nEvery map of the XDP program:\n\n"
              << "| map | type | key | value | entries | kernel bytes | MiB |\n|---|---|---:|---:|---:|---:|---:|\n";
    for (const MapFigures& map : maps) {
        total += map.memlock;
        std::cout << "| " << map.name << " | " << type_name(map.type) << " | " << map.key_size << " | "
                  << map.value_size << " | " << thousands(map.max_entries) << " | " << thousands(map.memlock) << " | "
                  << mib(map.memlock) << " |\n";
    }
    std::cout << "| **total** | | | | | " << thousands(total) << " | " << mib(total) << " |\n\n";
}

}  // namespace
}  // namespace stickylb

int main(int argc, char** argv) {
    int loads = 3;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--quick") {
            loads = 1;  // the figures are the kernel's allocation sizes: one load tells
        } else if (arg == "--repeats" && i + 1 < argc) {
            loads = std::max(1, std::atoi(argv[++i]));
        } else {
            std::cerr << "memory_bench: unknown argument '" << arg
                      << "' (usage: memory_bench [--quick] [--repeats N])\n";
            return 2;
        }
    }
    if (geteuid() != 0) {
        std::cerr << "memory_bench: needs root (it loads the XDP program and its maps); try: sudo " << argv[0] << '\n';
        return 1;
    }
    try {
        std::vector<stickylb::MapFigures> first;
        for (int load = 0; load < loads; ++load) {
            std::cerr << "memory_bench: load " << load + 1 << "/" << loads << " at default sizes\n";
            auto maps = stickylb::load_and_measure();
            if (load == 0)
                first = std::move(maps);
            else if (maps != first)
                throw std::runtime_error("two loads of the same maps report different memory");
        }
        stickylb::print_report(first, loads);
        return 0;
    } catch (const std::exception& error) {
        std::cerr << "memory_bench: " << error.what() << '\n';
        return 1;
    }
}
