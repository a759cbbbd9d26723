// SPDX-License-Identifier: Apache-2.0
#include "base/duration.h"

#include <charconv>
#include <stdexcept>
#include <string>

namespace stickylb {

namespace {
std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }
}  // namespace

std::chrono::milliseconds parse_duration(std::string_view text) {
    const auto fail = [&](const std::string& why) -> std::invalid_argument {
        return std::invalid_argument(quoted(text) + " " + why);
    };
    std::size_t digits_end = 0;
    while (digits_end < text.size() &&
           ((text[digits_end] >= '0' && text[digits_end] <= '9') || text[digits_end] == '.'))
        ++digits_end;
    const std::string_view number = text.substr(0, digits_end);
    const std::string_view unit = text.substr(digits_end);
    const auto dot = number.find('.');
    if (number.empty() || number.front() == '.' || number.back() == '.' ||
        (dot != std::string_view::npos && number.find('.', dot + 1) != std::string_view::npos))
        throw fail("is not a duration (" + std::string(kDurationHint) + ")");
    long long factor;
    if (unit.empty() || unit == "ms")
        factor = 1;
    else if (unit == "s")
        factor = 1000;
    else if (unit == "m")
        factor = 60'000;
    else if (unit == "h")
        factor = 3'600'000;
    else
        throw fail("is not a duration (" + std::string(kDurationHint) + ")");
    // Exact decimal arithmetic: integer part and fraction, no floating point.
    const std::string_view whole = number.substr(0, dot);
    const std::string_view fraction = dot == std::string_view::npos ? std::string_view{} : number.substr(dot + 1);
    // A bound on the value, not on the digits: whatever is accepted in one unit reads
    // back from its millisecond count.
    constexpr long long kMaxMilliseconds = 1'000'000'000'000'000LL;  // some 31,000 years
    const auto too_long = [&] {
        return fail("is too long a duration (at most " + std::to_string(kMaxMilliseconds) + " ms)");
    };
    if (whole.size() > 18)
        throw too_long();
    long long whole_value = 0;
    std::from_chars(whole.data(), whole.data() + whole.size(), whole_value);
    if (whole_value > kMaxMilliseconds / factor)
        throw too_long();
    long long result = whole_value * factor;
    long long scale = 1;
    long long fraction_value = 0;
    for (const char c : fraction) {
        if (scale > 1'000'000'000LL)
            throw fail("has too many decimals");
        fraction_value = fraction_value * 10 + (c - '0');
        scale *= 10;
    }
    if ((fraction_value * factor) % scale != 0)
        throw fail("is not a whole number of milliseconds");
    result += fraction_value * factor / scale;
    if (result > kMaxMilliseconds)
        throw too_long();
    return std::chrono::milliseconds(result);
}

}  // namespace stickylb
