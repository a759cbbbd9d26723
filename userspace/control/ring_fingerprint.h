// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a VIP's Maglev ring forwards to, whatever map indexes this host gave its
// backends: SHA-256 over the address of every slot's backend, in slot order ("-"
// for a slot with none). LB hosts whose fingerprints are equal pick the same
// backend for every new flow, so a flow that the router moves between them keeps
// its backend.
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "base/address.h"

namespace stickylb {

// Lowercase hex, 64 characters. A slot whose index is not in backends counts as "-".
std::string ring_fingerprint(std::span<const std::uint32_t> ring, const std::map<std::uint32_t, IpAddress>& backends);

}  // namespace stickylb
