// SPDX-License-Identifier: Apache-2.0
#pragma once
// IP and MAC addresses as the user writes them and as the maps store them.
#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "stickylb/abi.h"

namespace stickylb {

class IpAddress {
public:
    IpAddress() = default;
    // Throws std::invalid_argument naming the text that is not an address.
    static IpAddress parse(std::string_view text);
    static IpAddress from_abi(const stickylb_addr& addr, std::uint8_t family);

    std::uint8_t family() const { return family_; }  // STICKYLB_FAMILY_IPV4 / _IPV6
    bool is_v4() const { return family_ == STICKYLB_FAMILY_IPV4; }
    const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
    stickylb_addr to_abi() const;
    std::string to_string() const;
    // The address with only its first prefix_length bits kept.
    IpAddress masked(unsigned prefix_length) const;

    auto operator<=>(const IpAddress&) const = default;

private:
    std::uint8_t family_ = STICKYLB_FAMILY_NONE;
    std::array<std::uint8_t, 16> bytes_{};  // v4 in the first 4 bytes
};

class MacAddress {
public:
    MacAddress() = default;
    explicit MacAddress(const std::array<std::uint8_t, 6>& bytes) : bytes_(bytes) {}
    static MacAddress parse(std::string_view text);  // "aa:bb:cc:dd:ee:ff"
    // The interface's MAC, as this network namespace's sysfs shows it.
    static MacAddress of_interface(const std::string& interface);
    const std::array<std::uint8_t, 6>& bytes() const { return bytes_; }
    std::string to_string() const;
    auto operator<=>(const MacAddress&) const = default;

private:
    std::array<std::uint8_t, 6> bytes_{};
};

}  // namespace stickylb
