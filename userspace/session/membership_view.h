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
//
// What a reader takes (read_stored_view): the MAC checked when a key is set
// (signed_value.h), the JSON parsed strictly, epoch and incarnations at most
// kMaxViewCounter, written_ms within a freshness window of now either way; and
// per cluster never an epoch below the highest seen (EpochFloor).
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/backend_state.h"
#include "session/signed_value.h"

namespace stickylb::session {

using MemberState = BackendState;
using stickylb::to_string;  // a member's state, named as everywhere else

inline std::optional<MemberState> parse_member_state(std::string_view text) { return parse_backend_state(text); }

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

// Epochs and incarnations stay at most this (2^53, exact in every JSON reader):
// a view with a larger one is refused, so no increment can wrap.
inline constexpr std::uint64_t kMaxViewCounter = std::uint64_t{1} << 53;
// A view is fresh while its written_ms is within this many of stickylbd's
// view_ttl of now (before or after: clocks of LB and backend hosts differ).
// Real views live one TTL in memcached; older ones are replayed or forged.
inline constexpr int kViewFreshnessTtls = 3;

// value + 1; throws std::overflow_error past kMaxViewCounter.
std::uint64_t next_counter(std::uint64_t value);

// A cluster or backend name usable inside a memcached key: 1..200 bytes of
// printable ASCII without spaces. Returns the problem, or nullopt when valid.
std::optional<std::string> name_problem(std::string_view name);

// "stickylb:v1:members:<cluster>"; throws std::invalid_argument for a bad name.
std::string members_key(std::string_view cluster);

std::string encode_view(const MembershipView& view);

// Strict: every field present with its type, states spelled as above, names
// valid, counters at most kMaxViewCounter. On failure returns nullopt and, if
// given, sets *error to why.
std::optional<MembershipView> parse_view(std::string_view text, std::string* error = nullptr);

// The value stored under members_key(view.cluster): encoded, signed when a key is given.
std::string store_view(const SigningKey* key, const MembershipView& view);

struct ViewReading {
    std::optional<MembershipView> view;  // set when accepted
    std::optional<Rejection> rejected;   // set when refused, `why` says more
    std::string why;
};
// A value read from memcached_key, as every reader takes it: MAC (with a key),
// strict parse, the cluster the key names, written_ms no further than
// `freshness` from now_ms, before or after.
ViewReading read_stored_view(const SigningKey* key, std::string_view memcached_key, std::string_view stored,
                             std::int64_t now_ms, std::chrono::milliseconds freshness);

// The highest epoch a reader has taken, per cluster. A lower epoch is refused
// (an old view replayed, a forged one), unless the highest has not been seen
// again for `forget_after`: then its writer is gone, and a writer that lost
// its count (state file and memcached both gone) is followed again.
class EpochFloor {
public:
    explicit EpochFloor(std::chrono::milliseconds forget_after) : forget_after_(forget_after) {}
    // True when `view` may be taken; a taken view raises the floor or refreshes it.
    bool admit(const MembershipView& view, std::chrono::steady_clock::time_point now);
    std::optional<std::uint64_t> floor(const std::string& cluster) const;

private:
    struct Highest {
        std::uint64_t epoch = 0;
        std::chrono::steady_clock::time_point seen;
    };
    std::chrono::milliseconds forget_after_;
    std::map<std::string, Highest> highest_;
};

}  // namespace stickylb::session
