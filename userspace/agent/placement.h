// SPDX-License-Identifier: Apache-2.0
#pragma once
// Where a key lives: rendezvous (highest random weight) hashing of the key over
// the upstream servers' names. Every agent computes the same ranking from the
// same server list, whatever order the list was given in, and removing one
// server moves only the keys it held.
#include <cstdint>
#include <string_view>
#include <vector>

namespace stickylb::agent {

// 64-bit FNV-1a of `server` then `key`, finished with a murmur3 fmix64 so
// similar names still spread. Stable across builds and hosts (part of the
// placement contract between agents).
std::uint64_t placement_score(std::string_view server, std::string_view key);

// Indexes into `servers`, best first.
std::vector<std::size_t> rank_servers(const std::vector<std::string_view>& servers, std::string_view key);

}  // namespace stickylb::agent
