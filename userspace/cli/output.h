// SPDX-License-Identifier: Apache-2.0
#pragma once
// How the CLI prints the daemon's result: -j compact JSON, -p pretty JSON (the
// result as the daemon sent it), otherwise readable text, bpftool style:
//  - an array of objects: one line per element, "key value key value ...";
//    nested objects flatten to "outer.inner value", arrays of scalars to "a,b,c";
//  - an object: one "key value" line per scalar member; a member that is an
//    array or object gets a "key:" line and its contents indented below;
//  - a scalar: its value (strings without quotes); null: nothing.
// Keys keep the order the daemon sent them in (ordered_json).
#include <string>

#include <nlohmann/json.hpp>

namespace stickylb::cli {

enum class OutputFormat { plain, json, pretty };

// The text to print, ending with a newline unless empty.
std::string format_result(const nlohmann::ordered_json& result, OutputFormat format);
std::string format_plain(const nlohmann::ordered_json& result);

}  // namespace stickylb::cli
