// SPDX-License-Identifier: Apache-2.0
#include "control/fleet_standing.h"

#include "base/named_rows.h"

namespace stickylb {
namespace {

constexpr NamedRow<FleetStanding> kStandings[] = {
#define STICKYLB_STANDING_ROW(name, text) {FleetStanding::name, #name, text},
    STICKYLB_FLEET_STANDINGS(STICKYLB_STANDING_ROW)
#undef STICKYLB_STANDING_ROW
};

}  // namespace

std::string_view to_string(FleetStanding standing) { return row_of<FleetStanding>(kStandings, standing).name; }
std::string_view description(FleetStanding standing) { return row_of<FleetStanding>(kStandings, standing).text; }
std::vector<FleetStanding> all_fleet_standings() { return values_of<FleetStanding>(kStandings); }

}  // namespace stickylb
