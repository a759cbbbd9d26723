// SPDX-License-Identifier: Apache-2.0
#pragma once
// Durations as operators write them, in stickylbd's and the agent's configs.
#include <chrono>
#include <string_view>

namespace stickylb {

inline constexpr std::string_view kDurationHint = "use e.g. 200ms, 1.5s, 2m or an integer number of milliseconds";

// "200ms", "1s", "1.5s", "2m", "1h", or an integer (milliseconds). Whole milliseconds,
// not negative. Throws std::invalid_argument with a message that quotes the text.
std::chrono::milliseconds parse_duration(std::string_view text);

}  // namespace stickylb
