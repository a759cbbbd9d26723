// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace stickylb {

// Slot value meaning "no backend"; backend index 0 is reserved for it.
inline constexpr std::uint32_t kNoBackend = 0;

struct MaglevBackend {
    // Stable identity: the backend's permutation derives from name + seed, never from
    // index or position, so renumbering or reordering backends does not reshuffle the ring.
    std::string name;
    // Value written into ring slots; must be >= 1 (kNoBackend is reserved).
    std::uint32_t index = kNoBackend;
    // Configured weight; only backends with weight > 0 own slots.
    std::uint32_t weight = 1;
    // false = down or draining: the backend keeps its place in the base table but its
    // slots are served by in-service backends in the effective ring.
    bool in_service = true;
};

// Builds the effective lookup ring (slot -> backend index) with "stable Maglev":
//  * Base table: weighted Maglev population over every backend with weight > 0,
//    whether in service or not, so it only changes when membership or weights change.
//  * Effective ring: slots whose base owner is out of service go to the in-service
//    backend with the highest weighted rendezvous score for that slot. Taking a backend
//    out of service therefore moves only that backend's slots, spread in proportion to
//    weight, and bringing it back restores exactly its old slots.
//  * With no weighted backend in service every slot is kNoBackend.
// The result depends only on (the set of backends, ring_size, seed), not on the order of
// `backends` or on earlier builds, so independent control planes agree on the ring.
//
// Throws std::invalid_argument if ring_size is not prime, ring_size is smaller than the
// number of backends with weight > 0, a name or index is duplicated, or an index is 0.
std::vector<std::uint32_t> build_maglev_ring(std::span<const MaglevBackend> backends, std::uint32_t ring_size,
                                             std::uint64_t seed);

// build_maglev_ring for one VIP over time. The base table depends only on the backends'
// names and weights, the ring size and the seed, so it is kept (2 bytes a slot): when
// only in_service or indexes change (a health check, a drain) the ring is one pass over
// the base table instead of a new population, and when nothing changed there is no work.
class MaglevRing {
public:
    // build_maglev_ring(backends, ring_size, seed), or nullopt when the backends, ring
    // size and seed are those of the last successful call (the ring would be the same).
    // Throws what build_maglev_ring throws.
    std::optional<std::vector<std::uint32_t>> update(std::span<const MaglevBackend> backends, std::uint32_t ring_size,
                                                     std::uint64_t seed);

private:
    struct Member {
        std::string name;
        std::uint32_t index;
        std::uint32_t weight;
        bool in_service;
        bool operator==(const Member&) const = default;
    };
    std::vector<Member> members_;  // in name order, as last built
    std::uint32_t ring_size_ = 0;
    std::uint64_t seed_ = 0;
    bool built_ = false;
    // Slot -> rank among the weighted backends in name order; empty when not kept
    // (more than 65,535 weighted backends, or none in service at the last build).
    std::vector<std::uint16_t> base_ranks_;
};

bool is_prime(std::uint32_t n);

}  // namespace stickylb
