// SPDX-License-Identifier: Apache-2.0
#pragma once
// What an agent stores upstream as the value of a session lock, so any agent
// can tell who holds it: "slb1 <backend> <incarnation> <instance> <token>".
//  - backend, incarnation: the holder's host and its incarnation in the
//    membership view when the lock was taken (0: the view did not say yet);
//  - instance: random per agent process, so a restarted agent recognises the
//    locks of its previous life;
//  - token: random per acquisition, so the agent recognises its own live locks.
// The stock handler's value "1" is not a tag: such locks are never broken.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "session/membership_view.h"

namespace stickylb::agent {

struct LockTag {
    std::string backend;
    std::uint64_t incarnation = 0;
    std::uint64_t instance = 0;
    std::uint64_t token = 0;
    bool operator==(const LockTag&) const = default;
};

std::string encode_lock_tag(const LockTag& tag);
std::optional<LockTag> parse_lock_tag(std::string_view value);

enum class BreakReason { none, owner_down, stale_incarnation, agent_restarted, orphaned };
std::string_view to_string(BreakReason reason);

struct LocalIdentity {
    std::string backend;
    std::uint64_t instance = 0;
};

// Whether a lock held by `holder` may be taken over now, and why:
//  - owner_down: the view says the holder's backend is down;
//  - stale_incarnation: the view knows a newer incarnation of the holder's
//    backend (it died and came back; its old requests are gone);
//  - agent_restarted: the holder is this backend but an earlier agent process
//    (its connections, hence its PHP workers' requests, are gone);
//  - orphaned: this very agent process, but no live connection holds the token.
// With no view, only the last two apply.
BreakReason break_reason(const LockTag& holder, const std::optional<session::MembershipView>& view,
                         const LocalIdentity& self, bool token_held_here);

}  // namespace stickylb::agent
