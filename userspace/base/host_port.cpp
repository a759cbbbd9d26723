// SPDX-License-Identifier: Apache-2.0
#include "base/host_port.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "base/address.h"

namespace stickylb {

namespace {
std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }
}  // namespace

bool is_dns_name(std::string_view host) {
    if (host.empty() || host.size() > 253)
        return false;
    return std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
               c == '_';
    });
}

HostPort parse_host_port(std::string_view text, PortZero port_zero) {
    const auto fail = [&](const std::string& why) -> std::invalid_argument {
        return std::invalid_argument(quoted(text) + " " + why);
    };
    HostPort result;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            throw fail("is not [address]:port");
        result.host = std::string(text.substr(1, close - 1));
        port = text.substr(close + 2);
        IpAddress address;
        try {
            address = IpAddress::parse(result.host);
        } catch (const std::invalid_argument&) {
            throw fail("is not [address]:port: " + quoted(result.host) + " is not an IPv6 address");
        }
        if (address.is_v4())
            throw fail("is not [address]:port: brackets are for IPv6 addresses only");
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            throw fail("is not host:port (no port)");
        result.host = std::string(text.substr(0, colon));
        port = text.substr(colon + 1);
        if (result.host.find(':') != std::string::npos)
            throw fail("is not host:port (an IPv6 address goes in brackets: [" + result.host +
                       "]:" + std::string(port) + ")");
        if (!is_dns_name(result.host))
            throw fail("is not host:port: " + quoted(result.host) + " is not a host name or address");
    }
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || error != std::errc{} || end != port.data() + port.size() || value > 65535 ||
        (value == 0 && port_zero == PortZero::refused))
        throw fail("is not host:port: " + quoted(port) + " is not a port (" +
                   (port_zero == PortZero::refused ? "1" : "0") + "-65535)");
    result.port = static_cast<std::uint16_t>(value);
    return result;
}

std::string HostPort::text() const {
    const std::string port_text = std::to_string(port);
    return host.find(':') == std::string::npos ? host + ":" + port_text : "[" + host + "]:" + port_text;
}

}  // namespace stickylb
