// SPDX-License-Identifier: Apache-2.0
#pragma once
// The backend a VIP's Maglev ring gives a client of a persistent (or
// source-hashed) VIP, computed exactly as the XDP program does: the same hash
// (include/stickylb/flow_hash.h) of the masked client address, modulo the ring.
#include <cstdint>
#include <span>

#include "base/address.h"
#include "stickylb/abi.h"
#include "stickylb/flow_hash.h"

namespace stickylb {

inline std::uint32_t ring_pick(std::span<const std::uint32_t> ring, std::uint32_t hash_seed,
                               const IpAddress& masked_client) {
    if (ring.empty())
        return STICKYLB_NO_BACKEND;
    const stickylb_addr address = masked_client.to_abi();
    return ring[stickylb_hash_client(hash_seed, address.v6, masked_client.family()) % ring.size()];
}

}  // namespace stickylb
