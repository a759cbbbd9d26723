// SPDX-License-Identifier: Apache-2.0
#pragma once
// JSON from a peer (the control socket's requests, its replies to the CLI),
// parsed with a bound on its nesting.
#include <stdexcept>
#include <string_view>

#include <nlohmann/json.hpp>

namespace stickylb {

class JsonTooDeep : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// JSON from a peer, nested at most `max_depth` levels (the parser stops at the
// first level beyond: nothing deeper is ever built or walked). Throws
// nlohmann::json::parse_error for invalid JSON, JsonTooDeep for too deep.
nlohmann::json parse_json_bounded(std::string_view text, int max_depth);

}  // namespace stickylb
