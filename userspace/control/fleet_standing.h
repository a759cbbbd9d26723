// SPDX-License-Identifier: Apache-2.0
#pragma once
// Where this LB host stands among its fleet's hosts (session/fleet_presence.h
// judges it): whether its config fingerprint is the one the fleet follows. The
// announcer withdraws every VIP of a host that differs.
#include <string_view>
#include <vector>

namespace stickylb {

// The metric label and the CLI's words.
#define STICKYLB_FLEET_STANDINGS(X)                                                           \
    X(pending, "no memcached server has answered yet: announcements are kept as they were")   \
    X(agrees, "this host's config fingerprint is the fleet's")                                \
    X(differs, "this host's config fingerprint is not the fleet's: it announces nothing")     \
    X(alone,                                                                                  \
      "no memcached server answered within the freshness window: this host judges alone and " \
      "announces on its own checks")

enum class FleetStanding {
#define STICKYLB_STANDING_ENUM(name, text) name,
    STICKYLB_FLEET_STANDINGS(STICKYLB_STANDING_ENUM)
#undef STICKYLB_STANDING_ENUM
};
std::string_view to_string(FleetStanding standing);
std::string_view description(FleetStanding standing);
std::vector<FleetStanding> all_fleet_standings();

}  // namespace stickylb
