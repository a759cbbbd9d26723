// SPDX-License-Identifier: Apache-2.0
#include "control/fleet_health.h"

namespace stickylb {

HealthVerdict fleet_health(HealthVotes votes) {
    if (votes.up + votes.down == 0)
        return HealthVerdict::unknown;
    return 2 * votes.down >= votes.up + votes.down ? HealthVerdict::down : HealthVerdict::up;
}

std::string_view to_string(HealthVerdict verdict) {
    switch (verdict) {
    case HealthVerdict::up: return "up";
    case HealthVerdict::down: return "down";
    case HealthVerdict::unknown: return "unknown";
    }
    return "unknown";
}

std::string observation_key(const VipKey& vip, const std::string& backend) {
    return std::to_string(vip.protocol) + "/" + vip.address.to_string() + "/" + std::to_string(vip.port) + "/" +
           backend;
}

std::string observation_key(const VipConfig& vip, const std::string& backend) {
    return observation_key(VipKey{vip.address, vip.port, vip.protocol}, backend);
}

HealthVotes with_vote(HealthVotes votes, HealthVerdict verdict) {
    votes.up += verdict == HealthVerdict::up;
    votes.down += verdict == HealthVerdict::down;
    return votes;
}

}  // namespace stickylb
