// SPDX-License-Identifier: Apache-2.0
#include "control/ring_fingerprint.h"

#include "control/sha256.h"

namespace stickylb {

std::string ring_fingerprint(std::span<const std::uint32_t> ring, const std::map<std::uint32_t, IpAddress>& backends) {
    Sha256 hash;
    // Each slot's text and a newline: names cannot run into each other.
    std::string text;
    for (const std::uint32_t index : ring) {
        const auto backend = backends.find(index);
        text = backend == backends.end() ? "-" : backend->second.to_string();
        text += '\n';
        hash.update(text);
    }
    return hash.hex();
}

}  // namespace stickylb
