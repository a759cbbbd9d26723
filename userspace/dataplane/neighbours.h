// SPDX-License-Identifier: Apache-2.0
#pragma once
// Next-hop MACs from the kernel's neighbour table, over raw rtnetlink: the
// daemon reads backends' (or their routers') MACs from it, asks the kernel to
// resolve the ones it lacks and to keep them resolved (managed entries), and
// finds a destination's next hop with a route lookup.
//
// Not thread-safe: one NeighbourTable (one netlink socket) per thread.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "base/address.h"
#include "dataplane/netlink.h"

namespace stickylb {

struct Neighbour {
    IpAddress address;
    std::optional<MacAddress> mac;  // unset while INCOMPLETE/FAILED (or not Ethernet)
    std::uint32_t ifindex = 0;
    std::uint16_t state = 0;  // NUD_*
    bool managed = false;     // NTF_EXT_MANAGED: the kernel keeps resolving it
};

class NeighbourTable {
public:
    // Opens a NETLINK_ROUTE socket in the caller's network namespace (throws SystemError).
    NeighbourTable();
    NeighbourTable(NeighbourTable&& other) noexcept;
    NeighbourTable& operator=(NeighbourTable&& other) noexcept;
    NeighbourTable(const NeighbourTable&) = delete;
    NeighbourTable& operator=(const NeighbourTable&) = delete;
    ~NeighbourTable();

    // The kernel's entry of address on ifindex, whatever its state; nullopt if none.
    std::optional<Neighbour> entry(std::uint32_t ifindex, const IpAddress& address);

    // The MAC of address on ifindex if the kernel has a usable one
    // (NUD_REACHABLE|STALE|DELAY|PROBE|PERMANENT|NOARP).
    std::optional<MacAddress> lookup(std::uint32_t ifindex, const IpAddress& address);

    // Asks the kernel to resolve address and keep it resolved: a "managed" entry
    // (NTF_EXT_MANAGED, kernel >= 5.16, like `ip neigh add ADDR dev IF managed`).
    // Where the kernel refuses or ignores managed, triggers one resolution with an
    // empty UDP datagram from a socket bound to the interface (call again later).
    // Entries that are PERMANENT/NOARP or already managed are left alone. Never
    // waits for the resolution itself.
    void ensure_resolving(std::uint32_t ifindex, const IpAddress& address);

    // Route lookup (RTM_GETROUTE): the gateway if the route has one, else the
    // destination itself (on-link), and the output interface. Throws SystemError
    // (e.g. ENETUNREACH) when there is no route.
    std::pair<IpAddress, std::uint32_t> next_hop(const IpAddress& destination);

    // True after ensure_resolving() found that the kernel supports managed entries.
    bool managed_supported() const { return managed_supported_.value_or(false); }

private:
    // Sends one request; the payload of the reply of reply_type (if any) goes to
    // reply. Returns 0 or -errno (the kernel's extended ack message, if any, in
    // extack_message).
    int request(netlink::Message& message, std::uint16_t reply_type, std::string& reply, std::string& extack_message);
    void trigger_by_udp(std::uint32_t ifindex, const IpAddress& address);

    netlink::RouteSocket socket_;
    std::optional<bool> managed_supported_;
};

}  // namespace stickylb
