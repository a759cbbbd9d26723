// SPDX-License-Identifier: Apache-2.0
#pragma once
// A backend's state as every plane names it: the data plane's value, the view's
// and the CLI's word, the metric's number (stickylb/abi.h has the one list).
#include <cstdint>
#include <optional>
#include <string_view>

#include "stickylb/abi.h"

namespace stickylb {

#define STICKYLB_BACKEND_STATE_CLASS(NAME, name, value) name = STICKYLB_BACKEND_##NAME,
enum class BackendState : std::uint8_t { STICKYLB_BACKEND_STATES(STICKYLB_BACKEND_STATE_CLASS) };
#undef STICKYLB_BACKEND_STATE_CLASS

// "up", "draining", "down".
std::string_view to_string(BackendState state);
std::optional<BackendState> parse_backend_state(std::string_view text);

}  // namespace stickylb
