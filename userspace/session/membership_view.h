// SPDX-License-Identifier: Apache-2.0
#pragma once
// The membership view: which backends of a cluster the load balancer considers
// up, draining or down. stickylbd writes it to every memcached server; each
// stickylb-agent reads it to break the session locks of dead backends. This is
// the one definition of its key and JSON form, used by both sides:
//
//   key   stickylb:v1:members:<cluster>
//   value {"cluster":"web","epoch":12,"written_ms":1763700000000,
//          "backends":{"be1":{"state":"up","incarnation":3}}}
//
// epoch grows on every change of the view; a backend's incarnation grows each
// time it comes back up after being down. Readers take the highest epoch.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace stickylb::session {

enum class MemberState { up, draining, down };

std::string_view to_string(MemberState state);
std::optional<MemberState> parse_member_state(std::string_view text);

struct Member {
    MemberState state = MemberState::up;
    std::uint64_t incarnation = 0;
    bool operator==(const Member&) const = default;
};

struct MembershipView {
    std::string cluster;
    std::uint64_t epoch = 0;
    std::int64_t written_ms = 0;  // wall clock, ms since the Unix epoch
    std::map<std::string, Member> backends;
    bool operator==(const MembershipView&) const = default;

    const Member* find(std::string_view backend) const;
};

inline constexpr std::string_view kMembersKeyPrefix = "stickylb:v1:members:";

// A cluster or backend name usable inside a memcached key: 1..200 bytes of
// printable ASCII without spaces. Returns the problem, or nullopt when valid.
std::optional<std::string> name_problem(std::string_view name);

// "stickylb:v1:members:<cluster>"; throws std::invalid_argument for a bad name.
std::string members_key(std::string_view cluster);

std::string encode_view(const MembershipView& view);

// Strict: every field present with its type, states spelled as above, names
// valid. On failure returns nullopt and, if given, sets *error to why.
std::optional<MembershipView> parse_view(std::string_view text, std::string* error = nullptr);

}  // namespace stickylb::session
