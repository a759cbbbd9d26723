// SPDX-License-Identifier: Apache-2.0
#pragma once
// An enum expanded from an X-macro table (name, text) and looked up by value: the
// metric label, the CLI's words and the log line all come from the same row.
#include <span>
#include <string_view>
#include <vector>

namespace stickylb {

template <typename Enum>
struct NamedRow {
    Enum value;
    std::string_view name, text;
};

template <typename Enum>
const NamedRow<Enum>& row_of(std::span<const NamedRow<Enum>> rows, Enum value) {
    for (const NamedRow<Enum>& row : rows)
        if (row.value == value)
            return row;
    return rows.front();
}

template <typename Enum>
std::vector<Enum> values_of(std::span<const NamedRow<Enum>> rows) {
    std::vector<Enum> values;
    for (const NamedRow<Enum>& row : rows)
        values.push_back(row.value);
    return values;
}

}  // namespace stickylb
