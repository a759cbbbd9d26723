// SPDX-License-Identifier: Apache-2.0
#include "session/membership_view.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

namespace stickylb::session {

const Member* MembershipView::find(std::string_view backend) const {
    auto it = backends.find(std::string(backend));
    return it == backends.end() ? nullptr : &it->second;
}

std::optional<std::string> name_problem(std::string_view name) {
    if (name.empty())
        return "name is empty";
    if (name.size() > 200)
        return "name is longer than 200 bytes";
    for (unsigned char c : name) {
        if (c <= 0x20 || c >= 0x7f)
            return "name has a space, control or non-ASCII character";
    }
    return std::nullopt;
}

std::uint64_t next_counter(std::uint64_t value) {
    if (value >= kMaxViewCounter)
        throw std::overflow_error("membership counter at its limit of 2^53");
    return value + 1;
}

std::string members_key(std::string_view cluster) {
    if (auto problem = name_problem(cluster))
        throw std::invalid_argument("cluster \"" + std::string(cluster) + "\": " + *problem);
    return std::string(kMembersKeyPrefix) + std::string(cluster);
}

std::string encode_view(const MembershipView& view) {
    nlohmann::json backends = nlohmann::json::object();
    for (const auto& [name, member] : view.backends) {
        backends[name] = {{"state", std::string(to_string(member.state))}, {"incarnation", member.incarnation}};
    }
    nlohmann::json json = {{"cluster", view.cluster},
                           {"epoch", view.epoch},
                           {"written_ms", view.written_ms},
                           {"backends", std::move(backends)}};
    return json.dump();
}

std::optional<MembershipView> parse_view(std::string_view text, std::string* error) {
    auto fail = [&](const std::string& why) -> std::optional<MembershipView> {
        if (error != nullptr)
            *error = why;
        return std::nullopt;
    };
    nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded())
        return fail("not JSON");
    if (!json.is_object())
        return fail("not a JSON object");
    MembershipView view;
    auto cluster = json.find("cluster");
    if (cluster == json.end() || !cluster->is_string())
        return fail("\"cluster\" missing or not a string");
    view.cluster = cluster->get<std::string>();
    if (auto problem = name_problem(view.cluster))
        return fail("\"cluster\": " + *problem);
    auto epoch = json.find("epoch");
    if (epoch == json.end() || !epoch->is_number_unsigned())
        return fail("\"epoch\" missing or not an unsigned integer");
    view.epoch = epoch->get<std::uint64_t>();
    if (view.epoch > kMaxViewCounter)
        return fail("\"epoch\" is above 2^53");
    auto written = json.find("written_ms");
    if (written == json.end() || !written->is_number_integer())
        return fail("\"written_ms\" missing or not an integer");
    view.written_ms = written->get<std::int64_t>();
    auto backends = json.find("backends");
    if (backends == json.end() || !backends->is_object())
        return fail("\"backends\" missing or not an object");
    for (const auto& [name, entry] : backends->items()) {
        std::string where = "backend \"" + name + "\": ";
        if (auto problem = name_problem(name))
            return fail(where + *problem);
        if (!entry.is_object())
            return fail(where + "not an object");
        auto state = entry.find("state");
        if (state == entry.end() || !state->is_string())
            return fail(where + "\"state\" missing or not a string");
        auto parsed = parse_member_state(state->get<std::string>());
        if (!parsed)
            return fail(where + "\"state\" is not up, draining or down");
        auto incarnation = entry.find("incarnation");
        if (incarnation == entry.end() || !incarnation->is_number_unsigned()) {
            return fail(where + "\"incarnation\" missing or not an unsigned integer");
        }
        const auto value = incarnation->get<std::uint64_t>();
        if (value > kMaxViewCounter)
            return fail(where + "\"incarnation\" is above 2^53");
        view.backends[name] = Member{*parsed, value};
    }
    return view;
}

std::string store_view(const SigningKey* key, const MembershipView& view) {
    return sign_value(key, members_key(view.cluster), encode_view(view));
}

ViewReading read_stored_view(const SigningKey* key, std::string_view memcached_key, std::string_view stored,
                             std::int64_t now_ms, std::chrono::milliseconds freshness) {
    ViewReading reading;
    const OpenedValue opened = open_value(key, memcached_key, stored);
    if (opened.rejected) {
        reading.rejected = opened.rejected;
        reading.why = std::string(describe(*opened.rejected));
        return reading;
    }
    std::string why;
    std::optional<MembershipView> view = parse_view(opened.payload, &why);
    if (!view) {
        reading.rejected = Rejection::malformed;
        reading.why = why;
        return reading;
    }
    if (std::string(kMembersKeyPrefix) + view->cluster != memcached_key) {
        reading.rejected = Rejection::malformed;
        reading.why = "the view of cluster \"" + view->cluster + "\" stored under another cluster's key";
        return reading;
    }
    // A difference computed without overflow: written_ms may be anything a writer put there.
    const std::int64_t window = freshness.count();
    // The distance between two int64 values always fits in a uint64.
    const auto apart_s = [](std::int64_t later, std::int64_t earlier) {
        return std::to_string((static_cast<std::uint64_t>(later) - static_cast<std::uint64_t>(earlier)) / 1000);
    };
    if (view->written_ms < now_ms && now_ms - window > view->written_ms) {
        reading.rejected = Rejection::stale;
        reading.why = "written " + apart_s(now_ms, view->written_ms) + " s ago";
        return reading;
    }
    if (view->written_ms > now_ms && view->written_ms - now_ms > window) {
        reading.rejected = Rejection::future;
        reading.why = "written " + apart_s(view->written_ms, now_ms) + " s in the future";
        return reading;
    }
    reading.view = std::move(view);
    return reading;
}

bool EpochFloor::admit(const MembershipView& view, std::chrono::steady_clock::time_point now) {
    auto [highest, inserted] = highest_.try_emplace(view.cluster, Highest{view.epoch, now});
    if (inserted)
        return true;
    if (view.epoch < highest->second.epoch && now - highest->second.seen < forget_after_)
        return false;
    highest->second = {view.epoch, now};
    return true;
}

std::optional<std::uint64_t> EpochFloor::floor(const std::string& cluster) const {
    const auto found = highest_.find(cluster);
    if (found == highest_.end())
        return std::nullopt;
    return found->second.epoch;
}

}  // namespace stickylb::session
