// SPDX-License-Identifier: Apache-2.0
#include "control/announce.h"

#include <algorithm>
#include <set>

#include "base/named_rows.h"

namespace stickylb {

namespace {

constexpr NamedRow<AnnounceReason> kReasons[] = {
#define STICKYLB_REASON_ROW(name, text) {AnnounceReason::name, #name, text},
    STICKYLB_ANNOUNCE_REASONS(STICKYLB_REASON_ROW)
#undef STICKYLB_REASON_ROW
};

}  // namespace

std::string_view to_string(AnnounceReason reason) { return row_of<AnnounceReason>(kReasons, reason).name; }
std::string_view description(AnnounceReason reason) { return row_of<AnnounceReason>(kReasons, reason).text; }
std::vector<AnnounceReason> all_announce_reasons() { return values_of<AnnounceReason>(kReasons); }

Announcer::Announcer(AnnouncedRoutes& routes, DataPlaneSelfTest& self_test) : routes_(routes), self_test_(self_test) {}

AnnounceReason Announcer::decide(const VipReadiness& vip, bool attached, FleetStanding standing, bool peers_loaded) {
    if (!attached)
        return AnnounceReason::data_plane_detached;
    if (standing == FleetStanding::differs)
        return AnnounceReason::config_differs;
    if (!vip.backends_checked)
        return AnnounceReason::checks_pending;
    if (!vip.backend_passing)
        return AnnounceReason::no_backend_passing;
    if (!self_test_.forwards(vip.address, vip.port, vip.protocol))
        return AnnounceReason::data_plane_not_forwarding;
    // Last: a host that could serve keeps its route while it learns whether its peers
    // agree, and one that cannot withdraws without waiting for them.
    if (standing == FleetStanding::pending)
        return AnnounceReason::fleet_pending;
    if (!peers_loaded)
        return AnnounceReason::exceptions_pending;
    return AnnounceReason::announced;
}

std::vector<VipAnnouncement> Announcer::apply(const std::vector<VipReadiness>& vips, FleetStanding standing,
                                              bool peers_loaded) {
    const bool attached = self_test_.attached();
    // An address is announced when any VIP on it (several ports or protocols) can be
    // served, and kept as it is while one of them waits for its first checks.
    std::set<IpAddress> wanted, kept;
    std::vector<VipAnnouncement> next;
    for (const VipReadiness& vip : vips) {
        VipAnnouncement announcement{vip.vip, vip.address, decide(vip, attached, standing, peers_loaded)};
        if (announcement.announced())
            wanted.insert(vip.address);
        else if (announcement.reason == AnnounceReason::checks_pending ||
                 announcement.reason == AnnounceReason::fleet_pending ||
                 announcement.reason == AnnounceReason::exceptions_pending)
            kept.insert(vip.address);
        next.push_back(std::move(announcement));
    }

    std::set<IpAddress> found, present;
    bool route_failed = false;
    try {
        for (const IpAddress& address : routes_.list())
            found.insert(address);
        present = found;
        for (const IpAddress& address : wanted)
            if (!present.contains(address)) {
                routes_.add(address);
                present.insert(address);
            }
        for (auto it = present.begin(); it != present.end();)
            if (!wanted.contains(*it) && !kept.contains(*it)) {
                routes_.remove(*it);
                it = present.erase(it);
            } else {
                ++it;
            }
    } catch (const std::exception& error) {
        route_failed = true;
        route_error_ = error.what();
    }
    if (!route_failed)
        route_error_.clear();

    const auto now = std::chrono::system_clock::now();
    std::vector<VipAnnouncement> changed;
    for (VipAnnouncement& announcement : next) {
        announcement.route_present = present.contains(announcement.address);
        if (route_failed && announcement.announced() && !announcement.route_present)
            announcement.reason = AnnounceReason::route_error;
        const auto previous = std::find_if(state_.begin(), state_.end(), [&](const VipAnnouncement& old) {
            return old.vip == announcement.vip && old.address == announcement.address;
        });
        if (previous == state_.end()) {
            announcement.since = now;
            announcement.changes = found.contains(announcement.address) != announcement.route_present;
        } else {
            announcement.changes = previous->changes + (previous->route_present != announcement.route_present);
            const bool same =
                previous->reason == announcement.reason && previous->route_present == announcement.route_present;
            announcement.since = same ? previous->since : now;
            if (same)
                continue;
        }
        changed.push_back(announcement);
    }
    state_ = std::move(next);
    return changed;
}

}  // namespace stickylb
