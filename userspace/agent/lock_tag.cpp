// SPDX-License-Identifier: Apache-2.0
#include "agent/lock_tag.h"

#include <charconv>
#include <cstdio>
#include <vector>

namespace stickylb::agent {

namespace {

constexpr std::string_view kMagic = "slb1";

std::string hex64(std::uint64_t value) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
    return text;
}

bool parse_u64(std::string_view text, int base, std::uint64_t& out) {
    if (text.empty())
        return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
    return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::string encode_lock_tag(const LockTag& tag) {
    return std::string(kMagic) + ' ' + tag.backend + ' ' + std::to_string(tag.incarnation) + ' ' + hex64(tag.instance) +
           ' ' + hex64(tag.token);
}

std::optional<LockTag> parse_lock_tag(std::string_view value) {
    std::vector<std::string_view> fields;
    while (!value.empty()) {
        auto space = value.find(' ');
        fields.push_back(value.substr(0, space));
        if (space == std::string_view::npos)
            break;
        value.remove_prefix(space + 1);
    }
    if (fields.size() != 5 || fields[0] != kMagic)
        return std::nullopt;
    LockTag tag;
    tag.backend = std::string(fields[1]);
    if (session::name_problem(tag.backend))
        return std::nullopt;
    if (!parse_u64(fields[2], 10, tag.incarnation) || !parse_u64(fields[3], 16, tag.instance) ||
        !parse_u64(fields[4], 16, tag.token)) {
        return std::nullopt;
    }
    return tag;
}

std::string_view to_string(BreakReason reason) {
    switch (reason) {
    case BreakReason::none: return "none";
    case BreakReason::owner_down: return "owner_down";
    case BreakReason::stale_incarnation: return "stale_incarnation";
    case BreakReason::agent_restarted: return "agent_restarted";
    case BreakReason::orphaned: return "orphaned";
    }
    return "none";
}

BreakReason break_reason(const LockTag& holder, const std::optional<session::MembershipView>& view,
                         const LocalIdentity& self, bool token_held_here) {
    if (holder.instance == self.instance)
        return token_held_here ? BreakReason::none : BreakReason::orphaned;
    if (holder.backend == self.backend)
        return BreakReason::agent_restarted;
    if (!view)
        return BreakReason::none;
    const session::Member* member = view->find(holder.backend);
    if (member == nullptr)
        return BreakReason::none;
    if (member->state == session::MemberState::down)
        return BreakReason::owner_down;
    // 0: the holder did not know its incarnation yet; it cannot be judged stale.
    if (holder.incarnation != 0 && holder.incarnation < member->incarnation)
        return BreakReason::stale_incarnation;
    return BreakReason::none;
}

}  // namespace stickylb::agent
