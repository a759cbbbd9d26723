// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the benchmarks report their rounds with: one median, one number format.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace stickylb::bench {

// The middle value (the mean of the two middle ones for an even count); NaN for none.
inline double median(std::vector<double> values) {
    if (values.empty())
        return NAN;
    std::sort(values.begin(), values.end());
    const std::size_t middle = values.size() / 2;
    return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// VALUE with DIGITS decimals ("12.35").
inline std::string fixed(double value, int digits) {
    char text[64];
    std::snprintf(text, sizeof(text), "%.*f", digits, value);
    return text;
}

}  // namespace stickylb::bench
