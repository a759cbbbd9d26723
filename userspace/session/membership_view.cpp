// SPDX-License-Identifier: Apache-2.0
#include "session/membership_view.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

namespace stickylb::session {

std::string_view to_string(MemberState state) {
    switch (state) {
    case MemberState::up: return "up";
    case MemberState::draining: return "draining";
    case MemberState::down: return "down";
    }
    return "down";
}

std::optional<MemberState> parse_member_state(std::string_view text) {
    if (text == "up") return MemberState::up;
    if (text == "draining") return MemberState::draining;
    if (text == "down") return MemberState::down;
    return std::nullopt;
}

const Member* MembershipView::find(std::string_view backend) const {
    auto it = backends.find(std::string(backend));
    return it == backends.end() ? nullptr : &it->second;
}

std::optional<std::string> name_problem(std::string_view name) {
    if (name.empty()) return "name is empty";
    if (name.size() > 200) return "name is longer than 200 bytes";
    for (unsigned char c : name) {
        if (c <= 0x20 || c >= 0x7f) return "name has a space, control or non-ASCII character";
    }
    return std::nullopt;
}

std::string members_key(std::string_view cluster) {
    if (auto problem = name_problem(cluster)) throw std::invalid_argument("cluster \"" + std::string(cluster) + "\": " + *problem);
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
        if (error != nullptr) *error = why;
        return std::nullopt;
    };
    nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) return fail("not JSON");
    if (!json.is_object()) return fail("not a JSON object");
    MembershipView view;
    auto cluster = json.find("cluster");
    if (cluster == json.end() || !cluster->is_string()) return fail("\"cluster\" missing or not a string");
    view.cluster = cluster->get<std::string>();
    if (auto problem = name_problem(view.cluster)) return fail("\"cluster\": " + *problem);
    auto epoch = json.find("epoch");
    if (epoch == json.end() || !epoch->is_number_unsigned()) return fail("\"epoch\" missing or not an unsigned integer");
    view.epoch = epoch->get<std::uint64_t>();
    auto written = json.find("written_ms");
    if (written == json.end() || !written->is_number_integer()) return fail("\"written_ms\" missing or not an integer");
    view.written_ms = written->get<std::int64_t>();
    auto backends = json.find("backends");
    if (backends == json.end() || !backends->is_object()) return fail("\"backends\" missing or not an object");
    for (const auto& [name, entry] : backends->items()) {
        std::string where = "backend \"" + name + "\": ";
        if (auto problem = name_problem(name)) return fail(where + *problem);
        if (!entry.is_object()) return fail(where + "not an object");
        auto state = entry.find("state");
        if (state == entry.end() || !state->is_string()) return fail(where + "\"state\" missing or not a string");
        auto parsed = parse_member_state(state->get<std::string>());
        if (!parsed) return fail(where + "\"state\" is not up, draining or down");
        auto incarnation = entry.find("incarnation");
        if (incarnation == entry.end() || !incarnation->is_number_unsigned()) {
            return fail(where + "\"incarnation\" missing or not an unsigned integer");
        }
        view.backends[name] = Member{*parsed, incarnation->get<std::uint64_t>()};
    }
    return view;
}

}  // namespace stickylb::session
