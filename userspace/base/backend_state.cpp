// SPDX-License-Identifier: Apache-2.0
#include "base/backend_state.h"

namespace stickylb {

namespace {
struct StateName {
    BackendState state;
    std::string_view name;
};
#define STICKYLB_BACKEND_STATE_ROW(NAME, name, value) StateName{BackendState::name, #name},
constexpr StateName kStateNames[] = {STICKYLB_BACKEND_STATES(STICKYLB_BACKEND_STATE_ROW)};
#undef STICKYLB_BACKEND_STATE_ROW
}  // namespace

std::string_view to_string(BackendState state) {
    for (const StateName& row : kStateNames)
        if (row.state == state)
            return row.name;
    return "unknown";
}

std::optional<BackendState> parse_backend_state(std::string_view text) {
    for (const StateName& row : kStateNames)
        if (row.name == text)
            return row.state;
    return std::nullopt;
}

}  // namespace stickylb
