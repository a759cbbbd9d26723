// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one host:port syntax of every endpoint stickylb reads (memcached servers,
// listen addresses): "host:port", "[v6]:port", brackets required around IPv6.
#include <cstdint>
#include <string>
#include <string_view>

namespace stickylb {

struct HostPort {
    std::string host;  // an IP address or a DNS name, without brackets
    std::uint16_t port = 0;
    bool operator==(const HostPort&) const = default;
    // The canonical form, which parse_host_port reads back.
    std::string text() const;
};
// Port 0 means "any free port" to a listener and nothing to a client.
enum class PortZero { refused, allowed };
// Throws std::invalid_argument with a message that quotes the text.
HostPort parse_host_port(std::string_view text, PortZero port_zero = PortZero::refused);

// Letters, digits, '-', '.', '_', at most 253 characters.
bool is_dns_name(std::string_view host);

}  // namespace stickylb
