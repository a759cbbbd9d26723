// SPDX-License-Identifier: Apache-2.0
#pragma once
// Map sizes for tests: small enough that a load takes milliseconds.
#include <string>

#include "dataplane/dataplane.h"

namespace stickylb::testing {

inline LoadOptions small_load_options(std::uint32_t ring_size, std::string pin_dir = {}) {
    LoadOptions options;
    options.ring_size = ring_size;
    options.max_vips = 8;
    options.max_backends = 64;
    options.flow_entries = 8192;
    options.affinity_entries = 8192;
    options.pin_dir = std::move(pin_dir);
    return options;
}

}  // namespace stickylb::testing
