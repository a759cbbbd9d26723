// SPDX-License-Identifier: Apache-2.0
#pragma once
// One LB host's flow exceptions (control/flow_exceptions.h) as memcached values: text
// chunks below memcached's item size, each one whole on its own, under keys that
// name the host and the version, so that a reader never mixes two versions:
//
//   stickylb:v1:fleet:<fleet>:flows:<host>:<version>:<chunk>
//
//   stickylb-flow-exceptions 1 <host> <version> <chunk> <chunks>
//   b 6/10.89.0.10/80/be2
//   10.89.1.5 40000
//   10.89.1.9 40112
//   b 6/10.89.0.10/80/be3
//   a 10.89.1.7 1796640030        a client's affinity, last seen (wall clock, s)
//   ...
//
// The host's roster entry says which version is current and how many chunks it has.
// Decoding is strict and bounded: a chunk that is not what its key says is refused.
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "control/flow_exceptions.h"

namespace stickylb::fleet {

// Below memcached's default item size (1 MiB), with the key and a signature.
inline constexpr std::size_t kMaxExceptionChunkBytes = 900 * 1024;
inline constexpr std::size_t kMaxExceptionChunks = 64;
// One host's exceptions published at most: the peer-flow and affinity tables' default sizes.
inline constexpr std::size_t kMaxExceptions = STICKYLB_DEFAULT_PEER_FLOW_ENTRIES + STICKYLB_DEFAULT_AFFINITY_ENTRIES;

class ExceptionChunkError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

std::string exception_chunk_key(std::string_view fleet, std::string_view host, std::uint64_t version,
                                std::size_t chunk);

// Sorted exceptions (find_flow_exceptions) in chunks of at most max_chunk_bytes; at
// most kMaxExceptions are encoded (the caller says how many were left out).
std::vector<std::string> encode_exception_chunks(std::string_view host, std::uint64_t version,
                                                 std::span<const FlowException> exceptions,
                                                 std::size_t max_chunk_bytes = kMaxExceptionChunkBytes);

// The exceptions of one chunk; throws ExceptionChunkError unless it is chunk `chunk`
// of `chunks` of that host's version.
std::vector<FlowException> decode_exception_chunk(std::string_view text, std::string_view host, std::uint64_t version,
                                                  std::size_t chunk, std::size_t chunks);

}  // namespace stickylb::fleet
