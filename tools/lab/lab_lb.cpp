// SPDX-License-Identifier: Apache-2.0
// stickylb-lab-lb: drives the data plane in the namespace lab until stickylbd
// (the daemon) takes over. Stateless: every `apply` states the whole desired
// set-up and the handle writes only what differs from the pinned maps, the
// way the daemon's reconciler will.
//
//   stickylb-lab-lb apply --interface IF --pin-dir DIR [--mode l2|ipip] [--persistent SECONDS]
//                         --vip ADDR:PORT ... --backend NAME=ADDR,MAC[,up|draining|down] ...
//   stickylb-lab-lb stats --pin-dir DIR [--vips N] [--backends N]
//   stickylb-lab-lb detach --interface IF --pin-dir DIR
#include <netinet/in.h>

#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dataplane.h"
#include "core/maglev.h"

namespace {

using namespace stickylb;

constexpr std::uint64_t kLabSeed = 0x5eed;

struct BackendArgument {
    std::string name;
    BackendEntry entry;
};

struct Arguments {
    std::string command;
    std::string interface;
    std::string pin_dir;
    ForwardingMode mode = ForwardingMode::l2_dsr;
    std::uint32_t persistent_seconds = 0;
    std::vector<VipKey> vips;
    std::vector<BackendArgument> backends;
};

VipKey parse_vip(const std::string& text) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos)
        throw std::invalid_argument("--vip " + text + ": expected ADDR:PORT or [ADDR6]:PORT");
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    return VipKey{IpAddress::parse(host), static_cast<std::uint16_t>(std::stoul(text.substr(colon + 1))), IPPROTO_TCP};
}

BackendState parse_state(const std::string& text) {
    if (text == "up")
        return BackendState::up;
    if (text == "draining")
        return BackendState::draining;
    if (text == "down")
        return BackendState::down;
    throw std::invalid_argument("backend state '" + text + "': expected up, draining or down");
}

BackendArgument parse_backend(const std::string& text, std::uint32_t index) {
    const auto equals = text.find('=');
    if (equals == std::string::npos)
        throw std::invalid_argument("--backend " + text + ": expected NAME=ADDR,MAC[,STATE]");
    BackendArgument backend{text.substr(0, equals), {}};
    std::vector<std::string> fields;
    std::string rest = text.substr(equals + 1);
    for (std::size_t start = 0;;) {
        const auto comma = rest.find(',', start);
        fields.push_back(rest.substr(start, comma - start));
        if (comma == std::string::npos)
            break;
        start = comma + 1;
    }
    if (fields.size() < 2 || fields.size() > 3)
        throw std::invalid_argument("--backend " + text + ": expected NAME=ADDR,MAC[,STATE]");
    backend.entry.index = index;
    backend.entry.address = IpAddress::parse(fields[0]);
    backend.entry.nexthop_mac = MacAddress::parse(fields[1]);
    backend.entry.state = fields.size() == 3 ? parse_state(fields[2]) : BackendState::up;
    return backend;
}

Arguments parse(int argc, char** argv) {
    if (argc < 2)
        throw std::invalid_argument("usage: stickylb-lab-lb apply|stats|detach [OPTIONS]");
    Arguments arguments;
    arguments.command = argv[1];
    for (int i = 2; i < argc; ++i) {
        const std::string option = argv[i];
        if (i + 1 >= argc)
            throw std::invalid_argument(option + ": missing value");
        const std::string value = argv[++i];
        if (option == "--interface")
            arguments.interface = value;
        else if (option == "--pin-dir")
            arguments.pin_dir = value;
        else if (option == "--mode")
            arguments.mode = value == "ipip" ? ForwardingMode::ipip
                             : value == "l2" ? ForwardingMode::l2_dsr
                                             : throw std::invalid_argument("--mode " + value + ": expected l2 or ipip");
        else if (option == "--persistent")
            arguments.persistent_seconds = static_cast<std::uint32_t>(std::stoul(value));
        else if (option == "--vip")
            arguments.vips.push_back(parse_vip(value));
        else if (option == "--backend")
            arguments.backends.push_back(parse_backend(value, static_cast<std::uint32_t>(arguments.backends.size() + 1)));
        else
            throw std::invalid_argument("unknown option " + option);
    }
    if (arguments.pin_dir.empty())
        throw std::invalid_argument("--pin-dir is required");
    return arguments;
}

// The lab's table sizes: every command must ask for the sizes the pinned maps have.
LoadOptions lab_load_options(const std::string& pin_dir) {
    LoadOptions options;
    options.pin_dir = pin_dir;
    options.flow_entries = 65536;
    options.affinity_entries = 65536;
    return options;
}

void apply(const Arguments& arguments) {
    if (arguments.interface.empty() || arguments.vips.empty() || arguments.backends.empty())
        throw std::invalid_argument("apply needs --interface, --vip and --backend");
    const LoadOptions options = lab_load_options(arguments.pin_dir);
    DataPlane plane = DataPlane::load(options);
    RuntimeConfig config;
    config.hash_seed = static_cast<std::uint32_t>(kLabSeed);
    plane.set_runtime_config(config);

    // Ring before states: a backend going down leaves the ring before it is marked,
    // so no ring pick lands on a backend the data plane would refuse.
    std::vector<MaglevBackend> members;
    for (const auto& backend : arguments.backends)
        members.push_back({backend.name, backend.entry.index, 1, backend.entry.state == BackendState::up});
    const auto ring = build_maglev_ring(members, options.ring_size, kLabSeed);
    for (std::uint32_t vip_index = 0; vip_index < arguments.vips.size(); ++vip_index) {
        VipSettings settings;
        settings.index = vip_index;
        settings.forwarding = arguments.mode;
        settings.persistent = arguments.persistent_seconds > 0;
        settings.affinity_timeout_s = arguments.persistent_seconds;
        const std::size_t written = plane.write_ring(vip_index, ring);
        plane.upsert_vip(arguments.vips[vip_index], settings);
        std::cout << "vip " << arguments.vips[vip_index].to_string() << ": " << written << " ring slots written\n";
    }
    const MacAddress own_mac = MacAddress::of_interface(arguments.interface);
    for (auto backend : arguments.backends) {
        backend.entry.egress_mac = own_mac;
        plane.set_backend(backend.entry);
    }
    const AttachResult attached = plane.attach(arguments.interface);
    std::cout << "xdp on " << arguments.interface << ": " << to_string(attached.mode)
              << (attached.replaced ? " (program replaced in place)" : " (attached)") << "\n";
}

void stats(const Arguments& arguments) {
    const DataPlane plane = DataPlane::load(lab_load_options(arguments.pin_dir));
    const auto global = plane.global_stats();
    std::cout << "forwarded: tx " << global.tx << ", redirect " << global.redirect << ", slow path "
              << global.pass_slow_path << "\npassed: not ip " << global.pass_not_ip << ", not vip "
              << global.pass_not_vip << "\n";
    for (const auto& [key, settings] : plane.vips()) {
        const auto vip = plane.vip_stats(settings.index);
        std::cout << "vip " << key.to_string() << ": packets " << vip.packets << ", new flows " << vip.new_flows
                  << ", affinity hits " << vip.affinity_hits << ", misses " << vip.affinity_misses << "\n";
    }
}

void detach(const Arguments& arguments) {
    DataPlane plane = DataPlane::load(lab_load_options(arguments.pin_dir));
    plane.detach(arguments.interface);
    plane.unpin_maps();
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Arguments arguments = parse(argc, argv);
        if (arguments.command == "apply")
            apply(arguments);
        else if (arguments.command == "stats")
            stats(arguments);
        else if (arguments.command == "detach")
            detach(arguments);
        else
            throw std::invalid_argument("unknown command '" + arguments.command + "': apply, stats or detach");
        return 0;
    } catch (const std::exception& error) {
        std::cerr << "Error: " << error.what() << "\n";
        return 1;
    }
}
