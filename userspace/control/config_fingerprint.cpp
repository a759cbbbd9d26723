// SPDX-License-Identifier: Apache-2.0
#include "control/config_fingerprint.h"

#include <algorithm>
#include <tuple>

#include "control/sha256.h"

namespace stickylb {
namespace {

constexpr std::pair<std::string_view, std::string_view> kParts[] = {
#define STICKYLB_FINGERPRINT_PART_ENTRY(name, text) {#name, text},
    STICKYLB_FINGERPRINT_PARTS(STICKYLB_FINGERPRINT_PART_ENTRY)
#undef STICKYLB_FINGERPRINT_PART_ENTRY
};

// One line per VIP and one per backend, order-free: a reordered config is the same
// config. Names of backends count (their Maglev permutation derives from them).
std::string vips_text(const DaemonConfig& config) {
    std::vector<const VipConfig*> vips;
    for (const VipConfig& vip : config.vips)
        vips.push_back(&vip);
    std::sort(vips.begin(), vips.end(), [](const VipConfig* a, const VipConfig* b) {
        return std::tuple(a->address, a->port, a->protocol) < std::tuple(b->address, b->port, b->protocol);
    });
    std::string text;
    for (const VipConfig* vip : vips) {
        const PersistenceConfig& p = vip->persistence;
        text += "vip " + vip->address.to_string() + " " + std::to_string(vip->port) + " " +
                std::to_string(vip->protocol) + " " + std::string(forwarding_mode_name(vip->forwarding)) +
                (vip->hash_source ? " hash_source" : " hash_tuple") + " persistence " +
                (p.enabled ? std::to_string(p.timeout_s) + "s /" + std::to_string(p.client_prefix_v4) + " /" +
                                 std::to_string(p.client_prefix_v6)
                           : std::string("off")) +
                "\n";
        std::vector<const BackendConfig*> backends;
        for (const BackendConfig& backend : vip->backends)
            backends.push_back(&backend);
        std::sort(backends.begin(), backends.end(),
                  [](const BackendConfig* a, const BackendConfig* b) { return a->name < b->name; });
        for (const BackendConfig* backend : backends)
            text += "backend " + std::to_string(backend->name.size()) + ":" + backend->name + " " +
                    backend->address.to_string() + " " + std::to_string(backend->weight) + "\n";
    }
    return text;
}

}  // namespace

ConfigFingerprint config_fingerprint(const DaemonConfig& config) {
    ConfigFingerprint fingerprint;
    fingerprint.parts["hash_seed"] = std::to_string(config.hash_seed);
    fingerprint.parts["ring_size"] = std::to_string(config.ring_size);
    fingerprint.parts["table_sizes"] = std::to_string(config.max_vips) + "/" + std::to_string(config.max_backends) +
                                       "/" + std::to_string(config.flow_table_size) + "/" +
                                       std::to_string(config.affinity_table_size);
    fingerprint.parts["vips"] = sha256_hex(vips_text(config));
    Sha256 hash;
    for (const auto& [name, text] : kParts) {
        hash.update(name);
        hash.update("=");
        hash.update(fingerprint.parts.at(std::string(name)));
        hash.update("\n");
    }
    fingerprint.digest = hash.hex();
    return fingerprint;
}

std::vector<std::string> differing_parts(const ConfigFingerprint& a, const ConfigFingerprint& b) {
    std::vector<std::string> names;
    const auto differs = [&](const std::string& name) {
        const auto in_a = a.parts.find(name);
        const auto in_b = b.parts.find(name);
        if (in_a == a.parts.end() || in_b == b.parts.end())
            return in_a != a.parts.end() || in_b != b.parts.end();
        return in_a->second != in_b->second;
    };
    for (const auto& [name, text] : kParts)
        if (differs(std::string(name)))
            names.emplace_back(name);
    const auto unknown = [&](const ConfigFingerprint& f) {
        for (const auto& part : f.parts) {
            const std::string& name = part.first;
            if (std::none_of(std::begin(kParts), std::end(kParts), [&](const auto& p) { return p.first == name; }) &&
                std::find(names.begin(), names.end(), name) == names.end() && differs(name))
                names.push_back(name);
        }
    };
    unknown(a);
    unknown(b);
    return names;
}

std::string_view describe_fingerprint_part(std::string_view part) {
    for (const auto& [name, text] : kParts)
        if (name == part)
            return text;
    return part;
}

std::vector<std::string_view> fingerprint_part_names() {
    std::vector<std::string_view> names;
    for (const auto& [name, text] : kParts)
        names.push_back(name);
    return names;
}

}  // namespace stickylb
