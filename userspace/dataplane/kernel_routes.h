// SPDX-License-Identifier: Apache-2.0
#pragma once
// The announced VIPs as routes in a kernel routing table of their own: the host's
// BGP speaker learns the table (BIRD's kernel protocol with `learn`, FRR's
// `ip import-table`) and advertises what is in it, and operators read it with
// `ip route show table N`. Each route is `VIP dev lo proto stickylb` (protocol 89);
// nothing but the speaker reads the table, so it changes no forwarding on the host.
#include <cstdint>
#include <vector>

#include "base/address.h"
#include "dataplane/netlink.h"

namespace stickylb {

// The routes the host's BGP speaker announces. Implementations throw on failure.
class AnnouncedRoutes {
public:
    virtual ~AnnouncedRoutes() = default;
    virtual void add(const IpAddress& vip) = 0;     // idempotent
    virtual void remove(const IpAddress& vip) = 0;  // absent is fine
    virtual std::vector<IpAddress> list() = 0;
};

// The rtnetlink route protocol of stickylb's routes (rt_protos: "stickylb").
inline constexpr std::uint8_t kAnnounceRouteProtocol = 89;

class KernelRoutes final : public AnnouncedRoutes {
public:
    explicit KernelRoutes(std::uint32_t table);
    void add(const IpAddress& vip) override;
    void remove(const IpAddress& vip) override;
    std::vector<IpAddress> list() override;
    // Every route of ours in the table; returns how many went.
    std::size_t remove_all();

private:
    netlink::RouteSocket socket_;
    std::uint32_t table_;
    std::uint32_t loopback_ = 0;
};

}  // namespace stickylb
