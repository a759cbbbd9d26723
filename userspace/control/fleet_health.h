// SPDX-License-Identifier: Apache-2.0
#pragma once
// One backend's health as the LB hosts of a fleet see it, from what each host's own
// checks say (the fleet roster carries them, session/fleet_roster.h). Every host that
// runs the fleet's config applies this rule to the same observations, so their rings
// come out equal.
//
// Down when at least half of the hosts that know say down, up otherwise, unknown while
// no host knows. The rule has no memory, so two hosts that saw different histories still
// agree on the same observations. With three hosts, one host cut off from a backend keeps
// it in every ring, and a backend that is really gone is down once two of the three have
// seen it fail. With two hosts, one host's failing checks are enough: otherwise the host
// that cannot reach the backend would go on sending it its users.
#include <string>
#include <string_view>

#include "control/config.h"
#include "control/reconciler.h"

namespace stickylb {

struct HealthVotes {
    unsigned up = 0, down = 0;
    bool operator==(const HealthVotes&) const = default;
};

HealthVerdict fleet_health(HealthVotes votes);
std::string_view to_string(HealthVerdict verdict);  // "up" | "down" | "unknown"
// A backend as the fleet roster names it: by what the config fingerprint compares
// (the VIP's protocol, address and port, the backend's name), not by VIP names,
// which may differ between hosts of one config. "6/10.89.0.10/80/be1".
std::string observation_key(const VipConfig& vip, const std::string& backend);
std::string observation_key(const VipKey& vip, const std::string& backend);
// Adds one host's own verdict (unknown adds nothing).
HealthVotes with_vote(HealthVotes votes, HealthVerdict verdict);

}  // namespace stickylb
