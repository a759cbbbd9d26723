// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which VIPs this LB host announces to its router, and why the others are withdrawn.
// A VIP is announced only while this host can serve it: the XDP program is attached
// and forwards a probe packet for it, and at least one of its backends passes this
// host's checks. The announcement itself is a route that the host's BGP speaker
// learns (AnnouncedRoutes; the kernel's in production, a set in tests), so stickylbd
// never speaks BGP and the speaker never needs to know stickylbd. In a fleet, a host
// whose config would pick other backends than its peers' announces nothing.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/address.h"
#include "dataplane/kernel_routes.h"
#include "control/fleet_standing.h"
#include "dataplane/self_test.h"

namespace stickylb {

// Why a VIP is (not) announced; the metric label and the CLI's words.
#define STICKYLB_ANNOUNCE_REASONS(X)                                                                    \
    X(announced, "announced")                                                                           \
    X(checks_pending, "no backend has been checked yet: the route is kept as it was")                   \
    X(no_backend_passing, "no backend passes this host's checks")                                       \
    X(data_plane_detached, "the XDP program is not attached to the interface")                          \
    X(data_plane_not_forwarding, "the XDP program does not forward a probe packet for it")              \
    X(route_error, "the announcement route could not be written")                                       \
    X(fleet_pending, "the fleet's config fingerprint is not known yet: the route is kept as it was")    \
    X(exceptions_pending, "the peers' flow exceptions are not loaded yet: the route is kept as it was") \
    X(config_differs, "this host's config fingerprint is not the fleet's")

enum class AnnounceReason {
#define STICKYLB_REASON_ENUM(name, text) name,
    STICKYLB_ANNOUNCE_REASONS(STICKYLB_REASON_ENUM)
#undef STICKYLB_REASON_ENUM
};
std::string_view to_string(AnnounceReason reason);    // "no_backend_passing"
std::string_view description(AnnounceReason reason);  // "no backend passes this host's checks"
std::vector<AnnounceReason> all_announce_reasons();

struct VipReadiness {
    std::string vip;  // name
    IpAddress address;
    std::uint16_t port = 0;
    std::uint8_t protocol = 0;
    bool backend_passing = false;
    // False until a check of one of its backends has decided: a restarted stickylbd
    // then keeps the route its predecessor left, neither flapping nor announcing early.
    bool backends_checked = false;
};

struct VipAnnouncement {
    std::string vip;
    IpAddress address;
    AnnounceReason reason = AnnounceReason::no_backend_passing;
    std::uint64_t changes = 0;  // route added or removed
    std::chrono::system_clock::time_point since{};
    bool announced() const { return reason == AnnounceReason::announced; }
    bool route_present = false;  // what the routing table held after the last apply
};

class Announcer {
public:
    Announcer(AnnouncedRoutes& routes, DataPlaneSelfTest& self_test);

    // Decides every VIP of the running config and brings the routes in line: routes of
    // VIPs no longer configured go too. Returns the VIPs whose announcement changed.
    // standing: this host's among its fleet's (agrees when it has none).
    // peers_loaded: this host holds its peers' flow exceptions (or needs none), as a
    // host joining the fleet must before the router gives it their flows.
    std::vector<VipAnnouncement> apply(const std::vector<VipReadiness>& vips,
                                       FleetStanding standing = FleetStanding::agrees, bool peers_loaded = true);
    const std::vector<VipAnnouncement>& state() const { return state_; }
    // Why the routes could not be read or written in the last apply; empty if they could.
    const std::string& route_error() const { return route_error_; }

private:
    AnnounceReason decide(const VipReadiness& vip, bool attached, FleetStanding standing, bool peers_loaded);

    AnnouncedRoutes& routes_;
    DataPlaneSelfTest& self_test_;
    std::vector<VipAnnouncement> state_;
    std::string route_error_;
};

}  // namespace stickylb
