// SPDX-License-Identifier: Apache-2.0
#pragma once
// An IP protocol number as config, CLI, logs and metrics name it.
#include <netinet/in.h>

#include <cstdint>
#include <string>

namespace stickylb {

// "tcp", "udp"; any other number as "protoN" (never mistaken for one of those).
inline std::string protocol_name(std::uint8_t protocol) {
    switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    default: return "proto" + std::to_string(protocol);
    }
}

}  // namespace stickylb
