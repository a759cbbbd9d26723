// SPDX-License-Identifier: Apache-2.0
#include "base/address.h"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

namespace stickylb {

IpAddress IpAddress::parse(std::string_view text) {
    const std::string input(text);
    IpAddress result;
    if (inet_pton(AF_INET, input.c_str(), result.bytes_.data()) == 1) {
        result.family_ = STICKYLB_FAMILY_IPV4;
        return result;
    }
    if (inet_pton(AF_INET6, input.c_str(), result.bytes_.data()) == 1) {
        result.family_ = STICKYLB_FAMILY_IPV6;
        return result;
    }
    throw std::invalid_argument("'" + input + "' is not an IP address");
}

IpAddress IpAddress::from_abi(const stickylb_addr& addr, std::uint8_t family) {
    IpAddress result;
    result.family_ = family;
    std::memcpy(result.bytes_.data(), addr.bytes, family == STICKYLB_FAMILY_IPV4 ? 4 : 16);
    return result;
}

stickylb_addr IpAddress::to_abi() const {
    stickylb_addr addr{};
    std::memcpy(addr.bytes, bytes_.data(), bytes_.size());
    return addr;
}

std::string IpAddress::to_string() const {
    char buffer[INET6_ADDRSTRLEN] = {};
    if (family_ == STICKYLB_FAMILY_NONE)
        return "none";
    inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buffer, sizeof(buffer));
    return buffer;
}

IpAddress IpAddress::masked(unsigned prefix_length) const {
    IpAddress result = *this;
    const unsigned total_bits = is_v4() ? 32 : 128;
    for (unsigned bit = std::min(prefix_length, total_bits); bit < total_bits; ++bit)
        result.bytes_[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    return result;
}

MacAddress MacAddress::parse(std::string_view text) {
    std::array<std::uint8_t, 6> bytes{};
    unsigned values[6];
    char trailing;
    const std::string input(text);
    if (std::sscanf(input.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &values[0], &values[1], &values[2], &values[3],
                    &values[4], &values[5], &trailing) != 6)
        throw std::invalid_argument("'" + input + "' is not a MAC address");
    for (int i = 0; i < 6; ++i)
        bytes[i] = static_cast<std::uint8_t>(values[i]);
    return MacAddress(bytes);
}

MacAddress MacAddress::of_interface(const std::string& interface) {
    std::FILE* file = std::fopen(("/sys/class/net/" + interface + "/address").c_str(), "r");
    if (file == nullptr)
        throw std::invalid_argument("no network interface named '" + interface + "'");
    char text[32] = {};
    const bool read = std::fgets(text, sizeof(text), file) != nullptr;
    std::fclose(file);
    if (!read)
        throw std::runtime_error("cannot read the MAC address of interface '" + interface + "'");
    return parse(std::string(text).substr(0, 17));
}

std::string MacAddress::to_string() const {
    char buffer[18];
    std::snprintf(buffer, sizeof(buffer), "%02x:%02x:%02x:%02x:%02x:%02x", bytes_[0], bytes_[1], bytes_[2], bytes_[3],
                  bytes_[4], bytes_[5]);
    return buffer;
}

}  // namespace stickylb
