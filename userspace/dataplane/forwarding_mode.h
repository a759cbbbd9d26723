// SPDX-License-Identifier: Apache-2.0
#pragma once
// A VIP's forwarding mode as every plane names it: the data plane's value, the
// config's and the CLI's word (stickylb/abi.h has the one list).
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "stickylb/abi.h"

namespace stickylb {

#define STICKYLB_FORWARDING_MODE_CLASS(NAME, name, word, value) name = STICKYLB_FWD_##NAME,
enum class ForwardingMode : std::uint8_t { STICKYLB_FORWARDING_MODES(STICKYLB_FORWARDING_MODE_CLASS) };
#undef STICKYLB_FORWARDING_MODE_CLASS

// Every mode with its config word, in the table's order.
#define STICKYLB_FORWARDING_MODE_ENTRY(NAME, name, word, value) std::pair{std::string_view(word), ForwardingMode::name},
inline constexpr std::array kForwardingModes{STICKYLB_FORWARDING_MODES(STICKYLB_FORWARDING_MODE_ENTRY)};
#undef STICKYLB_FORWARDING_MODE_ENTRY

// "l2", "ipip".
constexpr std::string_view forwarding_mode_name(ForwardingMode mode) {
    for (const auto& [word, value] : kForwardingModes)
        if (value == mode)
            return word;
    return "unknown";
}

// A value read from a map: nullopt for one this build does not know.
constexpr std::optional<ForwardingMode> forwarding_mode_from_abi(std::uint8_t value) {
    for (const auto& [word, mode] : kForwardingModes)
        if (static_cast<std::uint8_t>(mode) == value)
            return mode;
    return std::nullopt;
}

}  // namespace stickylb
